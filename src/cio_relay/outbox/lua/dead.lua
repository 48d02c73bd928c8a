-- Move a leased operation to the dead letters; the person's next operation becomes ready.
-- ARGV: op_id, consumer, entry_id, person_key, bucket, info (orjson [kind, reason, detail,
-- attempts, dead_at], to which the dead-letter sequence number is appended), dead_at. Ignored
-- unless the lease is still held.
local op_id, consumer, entry_id, person = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if not held(consumer, entry_id) then return 0 end
redis.call('XACK', STREAM, GROUP, entry_id)
local record = redis.call('HGET', OPS, op_id)
forget({op_id}, {ARGV[5]})
read_heads({person})
advance(person, op_id, entry_id)
write_heads()
redis.call('HSET', DEAD, op_id, record)
local seq = redis.call('INCR', DEAD_SEQ)
redis.call('HSET', DEAD_INFO, op_id, string.sub(ARGV[6], 1, -2) .. ',' .. seq .. ']')
redis.call('ZADD', DEAD_AT, ARGV[7], op_id)
retire_if_empty(consumer)
trim_stream()
signal_if_empty()
return 1
