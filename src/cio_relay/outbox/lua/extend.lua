-- Push lease deadlines forward (a busy worker's heartbeat). ARGV: lease_until, then consumers.
-- A deadline is kept per consumer, that is per lease call: each consumer still holding entries
-- keeps them until lease_until, never less than it had. XX: a consumer already retired (its
-- entries settled, released or taken over) is not brought back.
local lease_until = ARGV[1]
for i = 2, #ARGV do
  redis.call('ZADD', LEASES, 'XX', 'GT', lease_until, ARGV[i])
end
return #ARGV - 1
