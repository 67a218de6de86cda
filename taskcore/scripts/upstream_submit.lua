-- May the account submit one more task to DashScope now? Every submit, a retry too, asks
-- first, so all upstream workers together stay within the account's submit_per_second
-- (`per_window` submits in any `window` ms: a little more than a second, since the submit
-- reaches DashScope a few milliseconds after this). Returns 0 when the submit is counted, else how many ms
-- until one may be.
local now = clock_ms()
local window, per_window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local rest = redis.call('PTTL', KEYS[2])  -- resting after a 429
if rest > 0 then return rest end
if redis.call('ZCARD', KEYS[1]) < per_window then
  redis.call('ZADD', KEYS[1], now, ARGV[3] .. ':' .. now)
  redis.call('PEXPIRE', KEYS[1], window * 2)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
