-- Delete dead letters for good. ARGV: op ids. Returns how many existed.
local purged = 0
for first = 1, #ARGV, CHUNK do
  local last = math.min(first + CHUNK - 1, #ARGV)
  purged = purged + redis.call('HDEL', DEAD, unpack(ARGV, first, last))
  redis.call('HDEL', DEAD_INFO, unpack(ARGV, first, last))
  redis.call('ZREM', DEAD_AT, unpack(ARGV, first, last))
end
return purged
