if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'updated_ms', ARGV[1], unpack(ARGV, 2))
return 1
