-- A canceled task still waiting in its tenant's list leaves it. One already fed stays where
-- it is, in the Celery queue and the pool's starting set: the worker that takes it skips it,
-- and its claim makes room for the next task (feeding here instead would feed tasks that a
-- bulk cancel then cancels in the queue, one after the other).
-- ARGV: tenant, record ttl
local status = redis.call('HGET', KEYS[1], 'status')
if not status or redis.call('HGET', KEYS[1], 'tenant') ~= ARGV[1] then return 'UNKNOWN' end
if status ~= 'PENDING' then return status end
redis.call('HSET', KEYS[1], 'status', 'CANCELED', 'end_ms', clock_ms())
redis.call('EXPIRE', KEYS[1], ARGV[2])
local row = redis.call('HMGET', KEYS[1], 'pool', 'stage')
if row[1] and row[2] == 'queued' then
  local pool = row[1]
  fq_remove(k_pending(pool, ARGV[1]), k_backlog(pool), k_ready(pool), k_fair(pool), KEYS[1])
  redis.call('HDEL', KEYS[1], 'envelope')
end
release(KEYS[1], 'CANCELED', 0)
return status
