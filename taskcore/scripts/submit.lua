-- KEYS: 1 tenant, 2 api key entry, 3 key info, 4 rate log, 5 active tasks, 6 usage of the day,
--       7 task record, 8 tenant's task index, 9 tenant's pending list, 10-14 the pool's keys,
--       15 the idempotency entry (only with an Idempotency-Key)
-- ARGV: 1 tenant, 2 model, 3 n, 4 submit ms, 5 task id, 6 pool, 7 request, 8 message, 9 day,
--       10 record ttl, 11 usage ttl, 12 feed depth, 13 ms to the end of the day,
--       14 callback URL ('' for none), 15 priority, 16 request fingerprint,
--       17 idempotency entry ttl
local function reject(reason, limit, remaining, reset)
  if reason ~= 'key' and reason ~= 'disabled' then
    redis.call('HINCRBY', KEYS[6], 'rejected_' .. reason, 1)
    redis.call('EXPIRE', KEYS[6], ARGV[11])
  end
  return {reason, limit or 0, remaining or 0, reset or 0}
end

local t = redis.call('HMGET', KEYS[1], 'enabled', 'rpm', 'max_concurrent', 'daily_images',
                     'models', 'weight')
if not t[1] or redis.call('HGET', KEYS[2], 'tenant') ~= ARGV[1] then return reject('key') end
if t[1] ~= '1' then return reject('disabled') end
if KEYS[15] then
  local seen = redis.call('HMGET', KEYS[15], 'task_id', 'fingerprint')
  -- an entry whose task record is gone names nothing: the key is free again
  if seen[1] and redis.call('EXISTS', k_task(seen[1])) == 1 then
    if seen[2] ~= ARGV[16] then return {'conflict', seen[1]} end
    return {'replay', seen[1]}
  end
end
if t[5] and t[5] ~= '' and not string.find(',' .. t[5] .. ',', ',' .. ARGV[2] .. ',', 1, true) then
  return reject('model')
end

local now = clock_ms()
local rpm, n = tonumber(t[2] or 0), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - 60000)
local recent = redis.call('ZCARD', KEYS[4])
local reset = 60000
if recent > 0 then
  reset = tonumber(redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')[2]) + 60000 - now
end
if rpm > 0 and recent >= rpm then return reject('rate', rpm, 0, reset) end
local most = tonumber(t[3] or 0)
if most > 0 and redis.call('ZCARD', KEYS[5]) >= most then
  return reject('concurrency', most, 0, 0)
end
local daily, used = tonumber(t[4] or 0), tonumber(redis.call('HGET', KEYS[6], 'images') or 0)
if daily > 0 and used + n > daily then
  return reject('daily', daily, math.max(daily - used, 0), tonumber(ARGV[13]))
end

redis.call('ZADD', KEYS[4], now, ARGV[5])
redis.call('PEXPIRE', KEYS[4], 60000)
redis.call('ZADD', KEYS[5], ARGV[4], KEYS[7])
redis.call('HINCRBY', KEYS[6], 'tasks', 1)
redis.call('HINCRBY', KEYS[6], 'images', n)
redis.call('EXPIRE', KEYS[6], ARGV[11])
redis.call('HSET', KEYS[7], 'tenant', ARGV[1], 'status', 'PENDING', 'model', ARGV[2],
           'pool', ARGV[6], 'request', ARGV[7], 'submit_ms', ARGV[4], 'n', ARGV[3],
           'day', ARGV[9], 'envelope', ARGV[8], 'stage', 'queued')
if ARGV[14] ~= '' then redis.call('HSET', KEYS[7], 'callback', ARGV[14]) end
redis.call('HSET', KEYS[7], 'priority', ARGV[15])
redis.call('EXPIRE', KEYS[7], ARGV[10])
if KEYS[15] then
  redis.call('HSET', KEYS[15], 'task_id', ARGV[5], 'fingerprint', ARGV[16])
  redis.call('EXPIRE', KEYS[15], ARGV[17])
end
-- listed (KEYS[8] is k_tasks(tenant)), and a few expired finished tasks unlisted
ix_submitted(ARGV[1], ARGV[2], ARGV[5], tonumber(ARGV[4]), tonumber(ARGV[10]) * 1000)
ix_prune(ARGV[1], tonumber(ARGV[4]), 4)
redis.call('HSET', KEYS[3], 'last_used_ms', ARGV[4])
local stride = fq_stride(tonumber(t[6] or 1))
fq_enqueue(KEYS[9], KEYS[11], KEYS[12], KEYS[13], KEYS[7], stride, ARGV[15])
fq_feed(KEYS[10], KEYS[11], KEYS[12], KEYS[13], KEYS[14], tonumber(ARGV[12]), now)
return {'ok', rpm, math.max(rpm - recent - 1, 0), reset}
