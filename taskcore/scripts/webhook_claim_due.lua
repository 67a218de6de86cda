-- The deliveries due by Redis' clock, leased for ``lease ms`` to the caller (their score
-- pushed that far ahead); at most ``most``.
-- KEYS: the due set; ARGV: lease ms, most
local now = clock_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[2])
local until_ms = now + tonumber(ARGV[1])
for _, task in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', until_ms, task) end
return due
