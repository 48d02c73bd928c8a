-- Count an attempt and wait until retry_at; the head keeps its place in the person's queue.
-- ARGV: op_id, token, retry_at, attempts record. Ignored unless the lease is still held.
local op_id, token = ARGV[1], ARGV[2]
if not held_by(op_id, token) then return 0 end
local entry_id = redis.call('HGET', ENTRY, op_id)
redis.call('XACK', STREAM, GROUP, entry_id)
redis.call('XDEL', STREAM, entry_id)
redis.call('HDEL', ENTRY, op_id)
redis.call('HDEL', LEASED, op_id)
redis.call('ZREM', DEADLINES, op_id)
redis.call('ZADD', RETRY, ARGV[3], op_id)
redis.call('HSET', ATTEMPTS, op_id, ARGV[4])
return 1
