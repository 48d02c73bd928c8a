-- Counts by state at `now`: pending, leased (deadline in the future), scheduled (retry in the
-- future), dead, and the oldest pending created_at (or false). ARGV: now.
local oldest = redis.call('ZRANGE', CREATED, 0, 0, 'WITHSCORES')
return {
  redis.call('HLEN', OPS),
  redis.call('ZCOUNT', DEADLINES, '(' .. ARGV[1], '+inf'),
  redis.call('ZCOUNT', RETRY, '(' .. ARGV[1], '+inf'),
  redis.call('HLEN', DEAD),
  oldest[2] or false,
}
