local function webhook_enqueue(task, tenant)
  local target = redis.call('HGET', task, 'callback')
  if not target or target == '' then
    target = redis.call('HGET', k_tenant(tenant), 'webhook_url')
  end
  if not target or target == '' then return end
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  redis.call('ZADD', k_webhooks_due(), 'NX', now, task)
end
