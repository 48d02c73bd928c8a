-- Mark a held op as being sent (its attempts record's error becomes the sending mark), so a
-- worker that dies mid-request leaves a trace for the next leaser. ARGV: op_id, consumer,
-- entry_id, attempts record. Ignored unless the lease is still held.
local op_id, consumer, entry_id = ARGV[1], ARGV[2], ARGV[3]
if not held(consumer, entry_id) then return 0 end
redis.call('HSET', ATTEMPTS, op_id, ARGV[4])
return 1
