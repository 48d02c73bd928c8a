-- Count an attempt and wait until retry_at; the op stays its person's head, out of the stream
-- (RETRY is keyed by person: a person has one head). ARGV: op_id, consumer, entry_id,
-- person_key, retry_at, attempts record. Ignored unless the lease is still held.
local op_id, consumer, entry_id, person = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if not held(consumer, entry_id) then return 0 end
redis.call('XACK', STREAM, GROUP, entry_id)
read_heads({person})
local head_op, _, more = parse_head(heads[person])
set_head(person, head_op, '-', more)
write_heads()
redis.call('ZADD', RETRY, ARGV[5], person)
redis.call('HSET', ATTEMPTS, op_id, ARGV[6])
retire_if_empty(consumer)
return 1
