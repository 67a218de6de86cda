-- A task RUNNING since a claim older than the deadline FAILS (a hung pipeline's lease
-- thread renews its lease all the same). The candidates come from the pool's claimed set,
-- scored by claim time on Redis' clock, so a pass looks only at tasks claimed before the
-- cutoff, however many others wait; each one it looks at leaves the range.
-- KEYS: the pool's claimed set; ARGV: deadline ms, record ttl, batch, code, message
local now = clock_ms()
local cutoff = now - tonumber(ARGV[1])
local failed = 0
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff, 'LIMIT', 0, ARGV[3])
for _, task in ipairs(due) do
  local row = redis.call('HMGET', task, 'status', 'claimed_ms', 'pool')
  local claimed = tonumber(row[2] or 0)
  if row[1] ~= 'RUNNING' then
    redis.call('ZREM', KEYS[1], task)
  elseif claimed >= cutoff then
    redis.call('ZADD', KEYS[1], claimed, task)  -- claimed again since
  else
    redis.call('ZREM', KEYS[1], task)
    fail_running(task, row[3], now, ARGV[2], ARGV[4], ARGV[5])
    failed = failed + 1
  end
end
return failed
