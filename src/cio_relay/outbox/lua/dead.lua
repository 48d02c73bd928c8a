-- Move a leased operation to the dead letters; the person's next operation becomes ready.
-- ARGV: op_id, token, person_key, info (orjson [kind, reason, detail, attempts, dead_at]), dead_at.
local op_id, token = ARGV[1], ARGV[2]
if not held_by(op_id, token) then return 0 end
local record = redis.call('HGET', OPS, op_id)
forget({op_id})
advance(ARGV[3], op_id)
redis.call('HSET', DEAD, op_id, record)
redis.call('HSET', DEAD_INFO, op_id, ARGV[4])
redis.call('ZADD', DEAD_AT, ARGV[5], op_id)
signal_if_empty()
return 1
