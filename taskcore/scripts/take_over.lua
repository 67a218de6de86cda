-- KEYS: the pool's leases, its Celery queue
-- ARGV: batch, max attempts, record ttl, lease ms, poison code, poison message
local now = clock_ms()
local moved, failed = 0, 0
for _, task in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[1])) do
  local row = redis.call('HMGET', task, 'status', 'lease_ms', 'attempts', 'envelope', 'pool')
  if row[1] ~= 'RUNNING' then
    redis.call('ZREM', KEYS[1], task)
  elseif tonumber(row[2] or 0) > now then
    redis.call('ZADD', KEYS[1], row[2], task)
  elseif tonumber(row[3] or 0) >= tonumber(ARGV[2]) or not row[4] then
    redis.call('ZREM', KEYS[1], task)
    fail_running(task, row[5], now, ARGV[3], ARGV[5], ARGV[6])
    failed = failed + 1
  else
    -- Back to the consuming end of the queue (kombu pushes on the left, pops on the right);
    -- until the next worker claims it, it is nobody's, for one more lease at most.
    local until_ms = now + tonumber(ARGV[4])
    redis.call('RPUSH', KEYS[2], row[4])
    redis.call('HSET', task, 'worker', '', 'lease_ms', until_ms)
    redis.call('ZADD', KEYS[1], until_ms, task)
    moved = moved + 1
  end
end
return {moved, failed}
