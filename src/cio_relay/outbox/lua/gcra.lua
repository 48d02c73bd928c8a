-- A rate limit shared by every worker: GCRA (generic cell rate algorithm) on the server's clock.
-- KEYS[1]: the limit's hash (tat = theoretical arrival time, paused_until; microseconds).
-- ARGV: 'acquire' interval tolerance | 'pause' microseconds.
-- acquire reserves the next send time and returns how long the caller waits for it (us): a
-- request may go at s >= tat - tolerance (tolerance = (burst - 1) * interval) and not before a
-- pause ends; it moves tat to max(tat, s) + interval. Reserving instead of polling makes every
-- acquire one round trip, first come first served; a reservation never used (a crash) only
-- wastes its slot, which errs on the side of staying under the limit.
local key = KEYS[1]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local state = redis.call('HMGET', key, 'tat', 'paused_until')
local tat, paused = tonumber(state[1]) or 0, tonumber(state[2]) or 0
local keep_until
if ARGV[1] == 'pause' then
  paused = math.max(paused, now + tonumber(ARGV[2]))
  redis.call('HSET', key, 'paused_until', string.format('%.0f', paused))
  keep_until = math.max(tat, paused)
  redis.call('PEXPIREAT', key, math.ceil(keep_until / 1000) + 1000)
  return 0
end
local interval, tolerance = tonumber(ARGV[2]), tonumber(ARGV[3])
local send_at = math.max(now, tat - tolerance, paused)
tat = math.max(tat, send_at) + interval
redis.call('HSET', key, 'tat', string.format('%.0f', tat))
-- Once tat and the pause are in the past the state means nothing: let Redis drop it.
redis.call('PEXPIREAT', key, math.ceil(math.max(tat, paused) / 1000) + 1000)
return string.format('%.0f', send_at - now)
