-- Delivered: remove for good, whatever lease they were under (an ack always applies), and make
-- each person's next operation ready. ARGV: now, forget_before (remembered delivered ids older
-- than this are dropped; empty = remember none), the number of lease consumers, the consumers,
-- then quadruples (op_id, person_key, entry_id, bucket).
-- Whether an op is still pending is read from its person's head (no HMGET of the records): a
-- pending op is its person's head or waits in the person's queue, so it is pending exactly when
-- it is the head, or when LREM takes it out of the queue (a stale ack of an op replayed behind
-- others; rare).
local now, forget_before = ARGV[1], ARGV[2]
local first = 4 + tonumber(ARGV[3])
local entry_ids, persons = {}, {}
for i = first, #ARGV, 4 do
  entry_ids[#entry_ids + 1] = ARGV[i + 2]
  persons[#persons + 1] = ARGV[i + 1]
end
call_chunked('XACK', STREAM, GROUP, entry_ids)
read_heads(persons)
local gone, buckets = {}, {}
for i = first, #ARGV, 4 do
  if advance(ARGV[i + 1], ARGV[i], ARGV[i + 2]) then
    gone[#gone + 1] = ARGV[i]
    buckets[#buckets + 1] = ARGV[i + 3]
  end
end
forget(gone, buckets)
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
