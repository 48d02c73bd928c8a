-- Counts by state at `now`: pending, leased (held by consumers whose deadline is in the future),
-- scheduled (retry in the future), dead, and the oldest pending created_at (or false; exact to
-- the second, see count_ages). ARGV: now.
local now = tonumber(ARGV[1])
local leased = 0
local ok, summary = pcall(redis.call, 'XPENDING', STREAM, GROUP)
if ok and type(summary[4]) == 'table' then
  for _, holder in ipairs(summary[4]) do
    local deadline = redis.call('ZSCORE', LEASES, holder[1])
    if deadline and tonumber(deadline) > now then leased = leased + tonumber(holder[2]) end
  end
end
local oldest = redis.call('ZRANGE', AGE_MIN, 0, 0, 'WITHSCORES')
return {
  redis.call('HLEN', OPS),
  leased,
  redis.call('ZCOUNT', RETRY, '(' .. ARGV[1], '+inf'),
  redis.call('HLEN', DEAD),
  oldest[2] or false,
}
