-- Give leases back untouched: their entries move to the RELEASED consumer, whose deadline is 0,
-- so the next lease claims them first; no attempt is counted. ARGV: pairs (consumer, entry_id).
local released, owners = 0, {}
for i = 1, #ARGV, 2 do
  if held(ARGV[i], ARGV[i + 1]) then
    redis.call('XCLAIM', STREAM, GROUP, RELEASED, 0, ARGV[i + 1], 'JUSTID')
    owners[ARGV[i]] = true
    released = released + 1
  end
end
if released > 0 then redis.call('ZADD', LEASES, 0, RELEASED) end
for consumer in pairs(owners) do retire_if_empty(consumer) end
return released
