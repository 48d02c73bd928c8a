-- Lease up to `limit` ready heads: expired or released leases first (longest due first), then
-- the stream's unread entries (after promoting retries that are due) in stream order.
-- ARGV: now, lease_until, limit, token, consumer.
-- Returns triples (op_id, record, attempts or false).
local now, lease_until, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local token, consumer = ARGV[4], ARGV[5]
local leased = {}

-- 1. Leases whose deadline passed (a worker died or stalled) or that were released: claim the
--    very entries (XCLAIM), keeping their place in the pending list and counting the delivery.
local expired = redis.call('ZRANGEBYSCORE', DEADLINES, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
if #expired > 0 then
  local due = {}
  for i = 1, #expired, 2 do
    local op_id = expired[i]
    local entry_id = redis.call('HGET', ENTRY, op_id)
    local ms, seq = string.match(entry_id, '(%d+)-(%d+)')
    due[#due + 1] = {op_id, entry_id, tonumber(expired[i + 1]), tonumber(ms), tonumber(seq)}
  end
  table.sort(due, function(a, b)
    if a[3] ~= b[3] then return a[3] < b[3] end
    if a[4] ~= b[4] then return a[4] < b[4] end
    return a[5] < b[5]
  end)
  for _, item in ipairs(due) do
    redis.call('XCLAIM', STREAM, GROUP, consumer, 0, item[2])
    leased[#leased + 1] = item[1]
  end
end

-- 2. Retries that are due go back into the stream behind what is already ready.
local retries = redis.call('ZRANGEBYSCORE', RETRY, '-inf', now, 'LIMIT', 0, limit)
if #retries > 0 then
  call_chunked('ZREM', RETRY, nil, retries)
  for _, op_id in ipairs(retries) do activate(op_id) end
end

-- 3. Unread heads, oldest first.
if #leased < limit then
  local ok, read = pcall(redis.call, 'XREADGROUP', 'GROUP', GROUP, consumer,
    'COUNT', limit - #leased, 'STREAMS', STREAM, '>')
  if not ok then
    -- The group is missing (first use, or the stream was deleted): create it from the start.
    redis.call('XGROUP', 'CREATE', STREAM, GROUP, '0', 'MKSTREAM')
    read = redis.call('XREADGROUP', 'GROUP', GROUP, consumer,
      'COUNT', limit - #leased, 'STREAMS', STREAM, '>')
  end
  if read then
    for _, entry in ipairs(read[1][2]) do leased[#leased + 1] = entry[2][2] end
  end
end

if #leased == 0 then return {} end
local tokens, deadlines = {}, {}
for _, op_id in ipairs(leased) do
  tokens[#tokens + 1] = op_id
  tokens[#tokens + 1] = token
  deadlines[#deadlines + 1] = lease_until
  deadlines[#deadlines + 1] = op_id
end
call_chunked('HSET', LEASED, nil, tokens)
call_chunked('ZADD', DEADLINES, nil, deadlines)

local out = {}
for first = 1, #leased, CHUNK do
  local last = math.min(first + CHUNK - 1, #leased)
  local records = redis.call('HMGET', OPS, unpack(leased, first, last))
  local attempts = redis.call('HMGET', ATTEMPTS, unpack(leased, first, last))
  for i = 1, last - first + 1 do
    out[#out + 1] = leased[first + i - 1]
    out[#out + 1] = records[i]
    out[#out + 1] = attempts[i]
  end
end
return out
