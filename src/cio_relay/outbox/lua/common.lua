-- Shared by every outbox script (prepended when the script is loaded; see redis.py).
-- KEYS come in the order of redis_keys.SCRIPT_KEY_NAMES; every key shares the shard's hash tag.
local OPS, ENTRY, LEASED, DEADLINES = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local RETRY, ATTEMPTS, CREATED, STREAM = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local DONE, DEAD, DEAD_INFO, DEAD_AT = KEYS[9], KEYS[10], KEYS[11], KEYS[12]
local IDLE, QUEUE = KEYS[13], KEYS[14]

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

-- Make a person's head operation ready: one stream entry, read later by XREADGROUP.
local function activate(op_id)
  local entry_id = redis.call('XADD', STREAM, '*', 'o', op_id)
  redis.call('HSET', ENTRY, op_id, entry_id)
end

-- Drop every trace of pending operations except their person queues: acknowledged stream
-- entries are deleted at once (XDEL), never trimmed by MAXLEN.
local function forget(op_ids)
  if #op_ids == 0 then return end
  local entry_ids = {}
  for first = 1, #op_ids, CHUNK do
    local found = redis.call('HMGET', ENTRY, unpack(op_ids, first, math.min(first + CHUNK - 1, #op_ids)))
    for _, entry_id in ipairs(found) do
      if entry_id then entry_ids[#entry_ids + 1] = entry_id end
    end
  end
  if #entry_ids > 0 then
    call_chunked('XACK', STREAM, GROUP, entry_ids)
    call_chunked('XDEL', STREAM, nil, entry_ids)
  end
  for _, key in ipairs({ENTRY, LEASED, ATTEMPTS, OPS}) do call_chunked('HDEL', key, nil, op_ids) end
  for _, key in ipairs({DEADLINES, RETRY, CREATED}) do call_chunked('ZREM', key, nil, op_ids) end
end

-- The operation left for good (delivered or dead): the person's next one becomes ready.
local function advance(person_key, op_id)
  local queue = QUEUE .. person_key
  local head = redis.call('LPOP', queue)
  if head and head ~= op_id then
    -- Not the head (a stale ack of a replayed op): put the head back, remove op_id where it is.
    redis.call('LPUSH', queue, head)
    redis.call('LREM', queue, 1, op_id)
    return
  end
  local next_op = redis.call('LINDEX', queue, 0)
  if next_op then activate(next_op) end
end

-- Wake whoever waits for the shard to empty (RedisOutbox.wait_until_empty).
local function signal_if_empty()
  if redis.call('HLEN', OPS) == 0 then
    redis.call('LPUSH', IDLE, 1)
    redis.call('LTRIM', IDLE, 0, 0)
  end
end

-- Whether `token` is the token of op_id's live lease (false once taken over or released).
local function held_by(op_id, token)
  return redis.call('HGET', LEASED, op_id) == token
end
