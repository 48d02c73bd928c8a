-- Lease up to `limit` ready heads to a new consumer (this lease call): expired or released leases
-- first (longest due first), then the stream's unread entries (after moving due retries into
-- the stream) in stream order. ARGV: now, lease_until, limit, consumer.
-- Returns quadruples (op_id, record, attempts or false, entry_id).
local now, lease_until, limit, consumer = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local op_ids, entry_ids = {}, {}

local function collect(entries)
  for _, entry in ipairs(entries) do
    if entry[2] then  -- an entry claimed (XCLAIM) or read (XREADGROUP)
      op_ids[#op_ids + 1] = entry[2][2]
      entry_ids[#entry_ids + 1] = entry[1]
    end
  end
end

-- 1. Consumers whose deadline passed (a worker died or stalled) or that hold released leases:
--    claim their very entries (XCLAIM), keeping their place and counting the delivery.
local expired = redis.call('ZRANGEBYSCORE', LEASES, '-inf', now, 'LIMIT', 0, 100)
for _, old in ipairs(expired) do
  local want = limit - #op_ids
  if want <= 0 then break end
  local pending = redis.call('XPENDING', STREAM, GROUP, '-', '+', want, old)
  if #pending > 0 then
    local ids = {}
    for i, item in ipairs(pending) do ids[i] = item[1] end
    for first = 1, #ids, CHUNK do
      collect(redis.call('XCLAIM', STREAM, GROUP, consumer, 0,
        unpack(ids, first, math.min(first + CHUNK - 1, #ids))))
    end
  end
  if #pending < want then retire_if_empty(old) end
end

-- 2. Heads whose retry is due go back into the stream behind what is already ready.
local retries = redis.call('ZRANGEBYSCORE', RETRY, '-inf', now, 'LIMIT', 0, limit)
if #retries > 0 then
  call_chunked('ZREM', RETRY, nil, retries)
  read_heads(retries)
  for _, person in ipairs(retries) do
    local op_id, _, more = parse_head(heads[person])
    set_head(person, op_id, activate(op_id), more)
  end
  write_heads()
end

-- 3. Unread heads, oldest first.
if #op_ids < limit then
  local ok, read = pcall(redis.call, 'XREADGROUP', 'GROUP', GROUP, consumer,
    'COUNT', limit - #op_ids, 'STREAMS', STREAM, '>')
  if not ok then
    -- The group is missing (first use, or the stream was deleted): create it from the start.
    redis.call('XGROUP', 'CREATE', STREAM, GROUP, '0', 'MKSTREAM')
    read = redis.call('XREADGROUP', 'GROUP', GROUP, consumer,
      'COUNT', limit - #op_ids, 'STREAMS', STREAM, '>')
  end
  if read then collect(read[1][2]) end
end

local with_attempts = redis.call('HLEN', ATTEMPTS) > 0
local records = hmget(OPS, op_ids)
local attempts = with_attempts and hmget(ATTEMPTS, op_ids) or {}
local out, stale = {}, {}
for i, op_id in ipairs(op_ids) do
  if records[i] then
    out[#out + 1] = op_id
    out[#out + 1] = records[i]
    out[#out + 1] = attempts[i] or false
    out[#out + 1] = entry_ids[i]
  else
    stale[#stale + 1] = entry_ids[i]  -- acknowledged through a stale lease while unread
  end
end
call_chunked('XACK', STREAM, GROUP, stale)
if #out > 0 then
  redis.call('ZADD', LEASES, lease_until, consumer)
elseif redis.call('EXISTS', STREAM) == 1 then
  redis.pcall('XGROUP', 'DELCONSUMER', STREAM, GROUP, consumer)  -- created by the read
end
return out
