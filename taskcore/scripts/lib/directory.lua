-- KEYS: tenants set, tenant hash, tenant's key set, api key entry, key info
-- ARGV: name, now, key id, label, key hash, then the tenant's fields as pairs
local function create_tenant()
  if redis.call('EXISTS', KEYS[2]) == 1 then return false end
  redis.call('HSET', KEYS[2], 'name', ARGV[1], 'enabled', '1', 'created_ms', ARGV[2],
             'updated_ms', ARGV[2], unpack(ARGV, 6))
  redis.call('SADD', KEYS[1], ARGV[1])
  return true
end

local function add_key()
  if redis.call('EXISTS', KEYS[2]) == 0 then return false end
  redis.call('HSET', KEYS[4], 'tenant', ARGV[1], 'key_id', ARGV[3])
  redis.call('HSET', KEYS[5], 'tenant', ARGV[1], 'label', ARGV[4], 'hash', ARGV[5],
             'created_ms', ARGV[2])
  redis.call('SADD', KEYS[3], ARGV[3])
  return true
end
