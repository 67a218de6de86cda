-- A worker took the task's message: it is no longer starting, so the pool has room for the
-- next one from the fair queue (fed here, in the same step). The worker then holds a lease on
-- the task (see docs/reliability.md): while the lease runs, a second delivery of the task's
-- message (a copy put back by the reaper or by Celery) is skipped; once it expired, whoever
-- claims the task takes it over. Each claim counts an attempt; a task claimed more than
-- ``max attempts`` times kept killing its workers and FAILS instead of running again.
-- Times are Redis' (clock_ms), never the worker's: see lib/clock.lua.
-- ARGV: 1 feed depth, 2 worker, 3 lease ms, 4 max attempts, 5 record ttl,
--       6 poison code, 7 poison message
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
local now = clock_ms()
local pool = redis.call('HGET', KEYS[1], 'pool')
if pool then
  redis.call('ZREM', k_starting(pool), KEYS[1])
  fq_feed(k_queue(pool), k_backlog(pool), k_ready(pool), k_fair(pool), k_starting(pool),
          tonumber(ARGV[1]), now)
end
if status ~= 'PENDING' and status ~= 'RUNNING' then
  redis.call('HDEL', KEYS[1], 'envelope')
  return {status, 0}
end
if status == 'RUNNING' then
  local lease = redis.call('HMGET', KEYS[1], 'worker', 'lease_ms')
  if lease[1] and lease[1] ~= '' and lease[1] ~= ARGV[2] and tonumber(lease[2] or 0) > now then
    return {status, -1}
  end
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempts > tonumber(ARGV[4]) then
  fail_running(KEYS[1], pool, now, ARGV[5], ARGV[6], ARGV[7])
  return {'FAILED', attempts}
end
local until_ms = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'status', 'RUNNING', 'stage', 'running', 'claimed_ms', now,
           'worker', ARGV[2], 'lease_ms', until_ms)
redis.call('HSETNX', KEYS[1], 'scheduled_ms', now)
if pool then
  redis.call('ZADD', k_leases(pool), until_ms, KEYS[1])
  redis.call('ZADD', k_claimed(pool), now, KEYS[1])  -- its deadline runs from here
end
local row = redis.call('HMGET', KEYS[1], 'request', 'tenant', 'submit_ms', 'scheduled_ms',
                      'pool', 'upstream_task_id', 'stored')
return {status, attempts, row[1], row[2], row[3], row[4], row[5] or '', row[6] or '',
        row[7] or ''}
