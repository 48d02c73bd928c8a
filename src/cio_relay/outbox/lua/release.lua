-- Give leases back untouched: due again at once (deadline 0), no attempt counted. The entry stays
-- in the pending list and is claimed by the next lease. ARGV: pairs (op_id, token).
local released = 0
for i = 1, #ARGV, 2 do
  if held_by(ARGV[i], ARGV[i + 1]) then
    redis.call('HDEL', LEASED, ARGV[i])
    redis.call('ZADD', DEADLINES, 0, ARGV[i])
    released = released + 1
  end
end
return released
