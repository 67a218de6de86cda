local row = redis.call('HMGET', KEYS[1], 'hash', 'revoked_ms')
if not row[1] then return 0 end
if not row[2] then redis.call('HSET', KEYS[1], 'revoked_ms', ARGV[1]) end
redis.call('DEL', k_api_key(row[1]))
return 1
