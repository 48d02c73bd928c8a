-- Replay dead letters: back to the tail of their person's queue, op id kept, attempts reset.
-- ARGV: triples (op_id, person_key, created_at), oldest dead letter first. Returns how many.
local revived = 0
for i = 1, #ARGV, 3 do
  local op_id = ARGV[i]
  local record = redis.call('HGET', DEAD, op_id)
  if record then
    redis.call('HDEL', DEAD, op_id)
    redis.call('HDEL', DEAD_INFO, op_id)
    redis.call('ZREM', DEAD_AT, op_id)
    redis.call('HSET', OPS, op_id, record)
    redis.call('ZADD', CREATED, ARGV[i + 2], op_id)
    if redis.call('RPUSH', QUEUE .. ARGV[i + 1], op_id) == 1 then activate(op_id) end
    revived = revived + 1
  end
end
return revived
