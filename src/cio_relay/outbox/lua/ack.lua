-- Delivered: remove for good, whatever lease they were under (an ack always applies), and make
-- each person's next operation ready. ARGV: now, forget_before (remembered delivered ids older
-- than this are dropped; empty = remember none), then pairs (op_id, person_key).
local now, forget_before = ARGV[1], ARGV[2]
local gone, persons = {}, {}
for i = 3, #ARGV, 2 do
  if redis.call('HEXISTS', OPS, ARGV[i]) == 1 then
    gone[#gone + 1] = ARGV[i]
    persons[#persons + 1] = ARGV[i + 1]
  end
end
forget(gone)
for i, op_id in ipairs(gone) do advance(persons[i], op_id) end
if forget_before ~= '' then
  local done = {}
  for _, op_id in ipairs(gone) do
    done[#done + 1] = now
    done[#done + 1] = op_id
  end
  call_chunked('ZADD', DONE, nil, done)
  redis.call('ZREMRANGEBYSCORE', DONE, '-inf', '(' .. forget_before)
end
signal_if_empty()
return #gone
