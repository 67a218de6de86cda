local function slim_final(task)
  redis.call('HDEL', task, 'stage', 'claimed_ms', 'attempts', 'day', 'n', 'priority')
  local row = redis.call('HMGET', task, 'code', 'message')
  if row[1] == '' then redis.call('HDEL', task, 'code') end
  if row[2] == '' then redis.call('HDEL', task, 'message') end
end

-- An upstream task holds a running slot of its DashScope account until it ends.
local function release_upstream_slot(task)
  local row = redis.call('HMGET', task, 'upstream_account', 'model')
  if row[1] and row[2] then
    redis.call('SREM', k_upstream_running(row[1], row[2]), task)
    redis.call('HDEL', task, 'upstream_account')
  end
end

local function release(task, status, succeeded)
  release_upstream_slot(task)
  local row = redis.call('HMGET', task, 'tenant', 'day', 'n')
  if row[1] then
    ix_final(task, row[1], status)  -- listed under its final status
    slim_final(task)
  end
  if not row[1] or redis.call('ZREM', k_active(row[1]), task) == 0 then return end
  webhook_enqueue(task, row[1])
  if not row[2] then return end
  local usage = k_usage(row[1], row[2])
  if redis.call('EXISTS', usage) == 0 then return end
  local n = tonumber(row[3] or 0)
  redis.call('HINCRBY', usage, 'images', succeeded - n)
  redis.call('HINCRBY', usage, 'tasks_' .. string.lower(status), 1)
  if status ~= 'CANCELED' then
    redis.call('HINCRBY', usage, 'images_succeeded', succeeded)
    redis.call('HINCRBY', usage, 'images_failed', n - succeeded)
  end
end

-- A RUNNING task FAILS where it stands (a poison task, one past its deadline): its lease
-- fields go, it leaves its pool's leases and claimed sets, and it lets go of its limits.
local function fail_running(task, pool, now, ttl, code, message)
  redis.call('HSET', task, 'status', 'FAILED', 'end_ms', now, 'code', code, 'message', message)
  redis.call('HDEL', task, 'envelope', 'worker', 'lease_ms', 'stored')
  redis.call('EXPIRE', task, ttl)
  if pool then
    redis.call('ZREM', k_leases(pool), task)
    redis.call('ZREM', k_claimed(pool), task)
  end
  release(task, 'FAILED', 0)
end
