-- Count an attempt and wait until retry_at; the head keeps its place as its person's head.
-- ARGV: op_id, consumer, entry_id, retry_at, attempts record. Ignored unless the lease is held.
local op_id, consumer, entry_id = ARGV[1], ARGV[2], ARGV[3]
if not held(consumer, entry_id) then return 0 end
redis.call('XACK', STREAM, GROUP, entry_id)
redis.call('ZADD', RETRY, ARGV[4], op_id)
redis.call('HSET', ATTEMPTS, op_id, ARGV[5])
retire_if_empty(consumer)
return 1
