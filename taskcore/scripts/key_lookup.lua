local row = redis.call('HMGET', KEYS[1], 'tenant', 'key_id')
if not row[1] then return false end
local enabled = redis.call('HGET', k_tenant(row[1]), 'enabled')
if not enabled then return false end
redis.call('HSET', k_key_info(row[2]), 'last_used_ms', ARGV[1])
return {row[1], row[2], enabled}
