-- Replay dead letters: back to the tail of their person's queue, op id kept, attempts reset.
-- ARGV: the oldest created_at per bucket (see read_oldest), then triples (op_id, person_key,
-- bucket), oldest dead letter first. Returns how many.
local oldest, first = read_oldest(1)
local persons = {}
for i = first, #ARGV, 3 do persons[#persons + 1] = ARGV[i + 1] end
read_heads(persons)
local buckets = {}
for i = first, #ARGV, 3 do
  local op_id = ARGV[i]
  local record = redis.call('HGET', DEAD, op_id)
  if record then
    redis.call('HDEL', DEAD, op_id)
    redis.call('HDEL', DEAD_INFO, op_id)
    redis.call('ZREM', DEAD_AT, op_id)
    redis.call('HSET', OPS, op_id, record)
    buckets[#buckets + 1] = ARGV[i + 2]
    append(ARGV[i + 1], op_id)
  end
end
write_heads()
count_ages(buckets, 1, oldest)
return #buckets
