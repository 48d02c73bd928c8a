-- A rate limit shared by every worker: GCRA (generic cell rate algorithm) on one clock.
-- KEYS[1]: the limit's hash (tat = theoretical arrival time, paused_until; microseconds).
-- ARGV: 'acquire' now interval tolerance | 'pause' now microseconds. now: microseconds on the
-- caller's clock, or '' for the server's (the default: one clock for every machine).
-- acquire reserves the next send time and returns how long the caller waits for it (us): a
-- request may go at s >= tat - tolerance (tolerance = (burst - 1) * interval) and not before a
-- pause ends; it moves tat to max(tat, s) + interval. Reserving instead of polling makes every
-- acquire one round trip, first come first served; a reservation never used (a crash) only
-- wastes its slot, which errs on the side of staying under the limit.
local key = KEYS[1]
local now = tonumber(ARGV[2])
if not now then
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
end
local state = redis.call('HMGET', key, 'tat', 'paused_until')
local tat, paused = tonumber(state[1]) or 0, tonumber(state[2]) or 0
-- Once tat and the pause are in the past the state means nothing: let Redis drop it (relative
-- to now, so that a caller's clock need not be the server's).
local function expire_after(keep_until)
  redis.call('PEXPIRE', key, math.ceil((keep_until - now) / 1000) + 1000)
end
if ARGV[1] == 'pause' then
  paused = math.max(paused, now + tonumber(ARGV[3]))
  redis.call('HSET', key, 'paused_until', string.format('%.0f', paused))
  expire_after(math.max(tat, paused))
  return 0
end
local interval, tolerance = tonumber(ARGV[3]), tonumber(ARGV[4])
local send_at = math.max(now, tat - tolerance, paused)
tat = math.max(tat, send_at) + interval
redis.call('HSET', key, 'tat', string.format('%.0f', tat))
expire_after(math.max(tat, paused))
return string.format('%.0f', send_at - now)
