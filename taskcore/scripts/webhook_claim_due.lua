-- KEYS: the due set; ARGV: now, lease until (ms), most
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, task in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], task) end
return due
