-- The dev key (SYNTHGATE_DEV_API_KEY), registered at a gateway's start. It goes only to a
-- tenant made for a dev key (marked ``dev_key``; one that had a ``dev-`` key before the
-- mark existed counts too), and a revoked dev key is never brought back.
-- Returns 'ok', or why not: 'revoked', 'taken' (the key is another tenant's), 'not dev'.
local info = redis.call('HMGET', KEYS[5], 'tenant', 'revoked_ms')
if info[2] then return 'revoked' end
if info[1] and info[1] ~= ARGV[1] then return 'taken' end
local owner = redis.call('HGET', KEYS[4], 'tenant')
if owner and owner ~= ARGV[1] then return 'taken' end
if not create_tenant() and redis.call('HGET', KEYS[2], 'dev_key') ~= '1' then
  local made_for_dev = false
  for _, key_id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    if string.sub(key_id, 1, 4) == 'dev-' then made_for_dev = true end
  end
  if not made_for_dev then return 'not dev' end
end
redis.call('HSET', KEYS[2], 'dev_key', '1')
add_key()
return 'ok'
