-- KEYS: the pool's Celery queue, its starting set; ARGV: requeue after (ms)
local now = clock_ms()
local requeued, dropped = 0, 0
local cutoff = now - tonumber(ARGV[1])
for _, task in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cutoff, 'LIMIT', 0, 100)) do
  local row = redis.call('HMGET', task, 'status', 'envelope')
  if row[1] == 'PENDING' and row[2] then
    if not redis.call('LPOS', KEYS[1], row[2]) then
      redis.call('RPUSH', KEYS[1], row[2])
      requeued = requeued + 1
    end
    redis.call('ZADD', KEYS[2], now, task)
  else
    redis.call('ZREM', KEYS[2], task)
    dropped = dropped + 1
  end
end
return {requeued, dropped}
