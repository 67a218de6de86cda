-- The reaper only ends or moves work that exists: it runs on a full Redis too.
-- KEYS: the tenant's unfinished set; ARGV: now, cutoff (ms), record ttl, batch, code, message
local reaped = 0
local now, cutoff = tonumber(ARGV[1]), tonumber(ARGV[2])
for _, task in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, ARGV[4])) do
  local row = redis.call('HMGET', task, 'status', 'claimed_ms', 'pool')
  if not row[1] or row[1] == 'SUCCEEDED' or row[1] == 'FAILED' or row[1] == 'CANCELED' then
    redis.call('ZREM', KEYS[1], task)
    reaped = reaped + 1
  elseif row[1] == 'RUNNING' and tonumber(row[2] or 0) < cutoff then
    redis.call('HSET', task, 'status', 'FAILED', 'end_ms', now, 'code', ARGV[5],
               'message', ARGV[6])
    redis.call('HDEL', task, 'envelope', 'worker', 'lease_ms', 'stored')
    redis.call('EXPIRE', task, ARGV[3])
    if row[3] then redis.call('ZREM', k_leases(row[3]), task) end
    release(task, 'FAILED', 0)
    reaped = reaped + 1
  end
end
return reaped
