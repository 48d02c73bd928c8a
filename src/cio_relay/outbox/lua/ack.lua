-- Delivered: remove for good, whatever lease they were under (an ack always applies), and make
-- each person's next operation ready. ARGV: now, forget_before (remembered delivered ids older
-- than this are dropped; empty = remember none), the number of lease consumers, the consumers,
-- then quadruples (op_id, person_key, entry_id, bucket).
local now, forget_before = ARGV[1], ARGV[2]
local first = 4 + tonumber(ARGV[3])
local asked, entry_ids = {}, {}
for i = first, #ARGV, 4 do
  asked[#asked + 1] = ARGV[i]
  entry_ids[#entry_ids + 1] = ARGV[i + 2]
end
call_chunked('XACK', STREAM, GROUP, entry_ids)
local gone, persons, entries, buckets = {}, {}, {}, {}
for i, record in ipairs(hmget(OPS, asked)) do
  if record then
    local at = first + 4 * (i - 1)
    gone[#gone + 1] = ARGV[at]
    persons[#persons + 1] = ARGV[at + 1]
    entries[#entries + 1] = ARGV[at + 2]
    buckets[#buckets + 1] = ARGV[at + 3]
  end
end
forget(gone, buckets)
read_heads(persons)
for i, op_id in ipairs(gone) do advance(persons[i], op_id, entries[i]) end
write_heads()
if forget_before ~= '' and #gone > 0 then
  local done = {}
  for _, op_id in ipairs(gone) do
    done[#done + 1] = now
    done[#done + 1] = op_id
  end
  call_chunked('ZADD', DONE, nil, done)
  redis.call('ZREMRANGEBYSCORE', DONE, '-inf', '(' .. forget_before)
end
for i = 4, first - 1 do retire_if_empty(ARGV[i]) end
trim_stream()
signal_if_empty()
return #gone
