-- Shared by every outbox script (prepended when the script is loaded; see redis.py).
-- KEYS come in the order of redis_keys.SCRIPT_KEY_NAMES; every key shares the shard's hash tag.
-- Each redis.call has a fixed Lua overhead (docs/benchmarks.md), so per-operation calls are kept
-- to those whose answer is needed one by one (XADD, RPUSH, LPOP); the rest are variadic, once
-- per chunk, with the state in between held in Lua tables.
local OPS, HEADS, LEASES, RETRY = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ATTEMPTS, AGE_COUNT, AGE_MIN, STREAM = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local DONE, DEAD, DEAD_INFO, DEAD_AT = KEYS[9], KEYS[10], KEYS[11], KEYS[12]
local IDLE, DEAD_SEQ, WAITING = KEYS[13], KEYS[14], KEYS[15]

-- The consumer that holds released leases until the next lease claims them (deadline 0).
-- Real consumers are named host:pid:random:n, never with a '~'.
local RELEASED = '~released'

-- Lua's unpack() is bounded by the C stack (8000 values): variadic calls go in chunks.
local CHUNK = 1000

local function call_chunked(command, key, prefix, items)
  for first = 1, #items, CHUNK do
    local last = math.min(first + CHUNK - 1, #items)
    if prefix then
      redis.call(command, key, prefix, unpack(items, first, last))
    else
      redis.call(command, key, unpack(items, first, last))
    end
  end
end

-- HMGET of any number of fields, in chunks.
local function hmget(key, fields)
  local values = {}
  for first = 1, #fields, CHUNK do
    local found = redis.call('HMGET', key, unpack(fields, first, math.min(first + CHUNK - 1, #fields)))
    for i = 1, #found do values[first + i - 1] = found[i] end
  end
  return values
end

-- Make a head operation ready: one stream entry, read later by XREADGROUP. Returns its id.
local function activate(op_id)
  return redis.call('XADD', STREAM, '*', 'o', op_id)
end

-- People's heads, read once per call (read_heads) and written back once (write_heads): HEADS
-- maps a person to "<hint><stream entry id of the head, or - while it waits to retry> <head op
-- id>", kept here as that string. The hint is '+' when operations may wait behind the head in
-- WAITING .. person and '.' when none do: enqueue sets it, and the pop that finds the queue empty
-- ends it; so a person's head is rewritten only when it changes or the hint flips, and nothing is
-- counted. (The op id comes last: it may hold spaces.)
local heads, heads_changed = {}, {}
local find, sub, byte = string.find, string.sub, string.byte
local MORE = 43  -- '+'

local function read_heads(persons)
  local values = hmget(HEADS, persons)
  for i, person in ipairs(persons) do
    if heads[person] == nil then heads[person] = values[i] or false end
  end
end

-- A head's op id, stream entry id (or '-') and whether operations may wait behind it.
local function parse_head(head)
  local space = find(head, ' ', 2, true)
  return sub(head, space + 1), sub(head, 2, space - 1), byte(head) == MORE
end

local function set_head(person, op_id, entry_id, more)
  heads[person] = (more and '+' or '.') .. entry_id .. ' ' .. op_id
  heads_changed[person] = true
end

local function write_heads()
  local set, gone = {}, {}
  for person in pairs(heads_changed) do
    local head = heads[person]
    if head then
      set[#set + 1] = person
      set[#set + 1] = head
    else
      gone[#gone + 1] = person
    end
  end
  call_chunked('HSET', HEADS, nil, set)
  call_chunked('HDEL', HEADS, nil, gone)
end

-- A new pending operation joins its person: the head if the person had none, else it waits.
local function append(person, op_id)
  local head = heads[person]
  if head then
    redis.call('RPUSH', WAITING .. person, op_id)
    if byte(head) ~= MORE then
      heads[person] = '+' .. sub(head, 2)
      heads_changed[person] = true
    end
  else
    set_head(person, op_id, activate(op_id), false)
  end
end

-- Take `op_id`, which is not its person's head, out of the person's queue (a stale ack of an
-- op replayed behind others). Returns whether it was there.
local function remove_waiting(person, op_id)
  local head = heads[person]
  return head and byte(head) == MORE and redis.call('LREM', WAITING .. person, 1, op_id) > 0
end

-- The operation left for good (delivered or dead) through the lease on `entry_id`: if it was the
-- person's head, the next one becomes ready. Returns whether it was pending (the head, or
-- waiting behind it).
local function advance(person, op_id, entry_id)
  local head = heads[person]
  if not head then return false end
  local head_op, head_entry, more = parse_head(head)
  if head_op ~= op_id then return remove_waiting(person, op_id) end
  if head_entry == '-' then
    redis.call('ZREM', RETRY, person)  -- a stale ack of a head waiting to retry
  elseif head_entry ~= entry_id then
    -- A stale ack of a head that was retried and made ready again: drop its current entry.
    redis.call('XACK', STREAM, GROUP, head_entry)
    redis.call('XDEL', STREAM, head_entry)
  end
  local next_op = more and redis.call('LPOP', WAITING .. person)
  if next_op then
    set_head(person, next_op, activate(next_op), true)
  else
    heads[person] = false
    heads_changed[person] = true
  end
  return true
end

-- Whether the lease (consumer, entry) still holds its entry: false once taken over, released or
-- settled.
local function held(consumer, entry_id)
  local pending = redis.call('XPENDING', STREAM, GROUP, entry_id, entry_id, 1)[1]
  return pending ~= nil and pending[2] == consumer
end

-- A consumer with nothing left pending is deleted with its deadline. (XGROUP DELCONSUMER would
-- drop pending entries from the ledger, so it only ever runs on an empty consumer.)
local function retire_if_empty(consumer)
  if #redis.call('XPENDING', STREAM, GROUP, '-', '+', 1, consumer) == 0 then
    redis.call('XGROUP', 'DELCONSUMER', STREAM, GROUP, consumer)
    redis.call('ZREM', LEASES, consumer)
  end
end

-- Pending operations are counted per second of created_at ("buckets", computed by the caller):
-- AGE_COUNT holds the counts and AGE_MIN the oldest created_at seen in each second, so the oldest
-- waiting age is one ZRANGE, exact to within a second. `oldest` maps bucket -> created_at when
-- adding.
local function count_ages(buckets, sign, oldest)
  local counts = {}
  for _, bucket in ipairs(buckets) do counts[bucket] = (counts[bucket] or 0) + 1 end
  for bucket, count in pairs(counts) do
    if sign > 0 then
      redis.call('HINCRBY', AGE_COUNT, bucket, count)
      redis.call('ZADD', AGE_MIN, 'LT', oldest[bucket], bucket)
    elseif redis.call('HINCRBY', AGE_COUNT, bucket, -count) <= 0 then
      redis.call('HDEL', AGE_COUNT, bucket)
      redis.call('ZREM', AGE_MIN, bucket)
    end
  end
end

-- Read "n, (bucket, oldest created_at) x n" from ARGV at `at`; returns the map and the next index.
local function read_oldest(at)
  local oldest = {}
  for i = at + 1, at + 2 * tonumber(ARGV[at]), 2 do oldest[ARGV[i]] = ARGV[i + 1] end
  return oldest, at + 1 + 2 * tonumber(ARGV[at])
end

-- Drop pending operations' records and attempts; their people advance separately.
local function forget(op_ids, buckets)
  if #op_ids == 0 then return end
  call_chunked('HDEL', OPS, nil, op_ids)
  if redis.call('HLEN', ATTEMPTS) > 0 then call_chunked('HDEL', ATTEMPTS, nil, op_ids) end
  count_ages(buckets, -1)
end

-- Remove acknowledged entries: everything older than the oldest entry still pending or unread.
-- MINID trimming below that point never drops an unacknowledged entry (MAXLEN would); '~' frees
-- whole radix-tree nodes only, which is cheap.
local function trim_stream()
  local ok, pending = pcall(redis.call, 'XPENDING', STREAM, GROUP, '-', '+', 1)
  if not ok then return end  -- no group yet: nothing was ever read
  local threshold = pending[1] and pending[1][1]
  if not threshold then
    local group = redis.call('XINFO', 'GROUPS', STREAM)[1]
    for i = 1, #group, 2 do
      if group[i] == 'last-delivered-id' then threshold = group[i + 1] end
    end
  end
  redis.call('XTRIM', STREAM, 'MINID', '~', threshold)
end

-- Wake whoever waits for the shard to empty (RedisOutbox.wait_until_empty).
local function signal_if_empty()
  if redis.call('HLEN', OPS) == 0 then
    redis.call('LPUSH', IDLE, 1)
    redis.call('LTRIM', IDLE, 0, 0)
  end
end
