-- One step of the sweep over every tenant's unfinished set: a task there whose record is
-- gone (it expired) or already final gives its slot back. A step looks at about ``budget``
-- tasks and tenants, whatever their numbers; where the sweep stands is kept in Redis, so
-- the passes of every worker share one sweep and each goes on where the last stopped.
-- KEYS: the tenants set, the sweep's state (hash), the tenants not swept yet (set)
-- ARGV: budget
local budget = tonumber(ARGV[1])
local state = redis.call('HMGET', KEYS[2], 'tenant', 'cursor')
local tenant, cursor = state[1], state[2] or '0'
local looked, released, refilled = 0, 0, false
while looked < budget do
  if not tenant then
    tenant = redis.call('SPOP', KEYS[3])
    if not tenant then
      if refilled then break end  -- every tenant visited in this step
      refilled = true
      if redis.call('SUNIONSTORE', KEYS[3], KEYS[1]) == 0 then break end  -- a new sweep
      tenant = redis.call('SPOP', KEYS[3])
    end
    cursor = '0'
    looked = looked + 1
  end
  local active = k_active(tenant)
  local page = redis.call('ZSCAN', active, cursor, 'COUNT', math.max(budget - looked, 1))
  cursor = page[1]
  for i = 1, #page[2], 2 do
    local task = page[2][i]
    local status = redis.call('HGET', task, 'status')
    if not status or status == 'SUCCEEDED' or status == 'FAILED' or status == 'CANCELED' then
      redis.call('ZREM', active, task)
      released = released + 1
    end
  end
  looked = looked + #page[2] / 2
  if cursor == '0' then tenant = false end
end
if tenant then
  redis.call('HSET', KEYS[2], 'tenant', tenant, 'cursor', cursor)
else
  redis.call('DEL', KEYS[2])
end
return released
