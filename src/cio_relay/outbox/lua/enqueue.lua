-- Store operations once by op id; a person's first pending operation becomes ready at once.
-- ARGV: quadruples (op_id, person_key, record, created_at). Returns how many were new.
-- An op id is a duplicate while pending, dead-lettered, or delivered within the remembered window.
local added = 0
for i = 1, #ARGV, 4 do
  local op_id = ARGV[i]
  if redis.call('HEXISTS', DEAD, op_id) == 0
    and not redis.call('ZSCORE', DONE, op_id)
    and redis.call('HSETNX', OPS, op_id, ARGV[i + 2]) == 1
  then
    redis.call('ZADD', CREATED, ARGV[i + 3], op_id)
    if redis.call('RPUSH', QUEUE .. ARGV[i + 1], op_id) == 1 then activate(op_id) end
    added = added + 1
  end
end
return added
