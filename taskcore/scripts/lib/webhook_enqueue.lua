local function webhook_enqueue(task, tenant)
  local target = redis.call('HGET', task, 'callback')
  if not target or target == '' then
    target = redis.call('HGET', k_tenant(tenant), 'webhook_url')
  end
  if not target or target == '' then return end
  local now = clock_ms()
  redis.call('ZADD', k_webhooks_due(), 'NX', now, task)
end
