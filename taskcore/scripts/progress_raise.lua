if redis.call('HGET', KEYS[1], 'status') ~= 'RUNNING' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'progress') or -1) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[1])
return 1
