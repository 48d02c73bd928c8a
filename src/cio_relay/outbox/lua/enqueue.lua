-- Store operations once by op id; a person's first pending operation becomes ready at once.
-- ARGV: remember ('1' to check remembered delivered ids), the oldest created_at per bucket
-- (see read_oldest), then quadruples (op_id, person_key, record, bucket). Returns how many were
-- new. An op id is a duplicate while pending or dead-lettered, and while remembered as delivered.
local check_dead = redis.call('HLEN', DEAD) > 0
local check_done = ARGV[1] == '1' and redis.call('EXISTS', DONE) == 1
local oldest, first = read_oldest(2)
local ids, persons = {}, {}
for i = first, #ARGV, 4 do
  ids[#ids + 1] = ARGV[i]
  persons[#persons + 1] = ARGV[i + 1]
end
local known = {}
for i, record in ipairs(hmget(OPS, ids)) do
  if record then known[ids[i]] = true end
end
read_heads(persons)
local records, buckets = {}, {}
for i = first, #ARGV, 4 do
  local op_id = ARGV[i]
  if not known[op_id]
    and not (check_dead and redis.call('HEXISTS', DEAD, op_id) == 1)
    and not (check_done and redis.call('ZSCORE', DONE, op_id))
  then
    known[op_id] = true
    records[#records + 1] = op_id
    records[#records + 1] = ARGV[i + 2]
    buckets[#buckets + 1] = ARGV[i + 3]
    append(ARGV[i + 1], op_id)
  end
end
call_chunked('HSET', OPS, nil, records)
write_heads()
count_ages(buckets, 1, oldest)
return #buckets
