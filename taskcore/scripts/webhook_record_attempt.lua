-- KEYS: the task record, the due set; ARGV: the attempt (JSON), the next one in (ms; '' for
-- never), counted on Redis' clock
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], KEYS[1])
  return 0
end
local raw = redis.call('HGET', KEYS[1], 'webhook')
local attempts = raw and cjson.decode(raw) or {}
attempts[#attempts + 1] = cjson.decode(ARGV[1])
redis.call('HSET', KEYS[1], 'webhook', cjson.encode(attempts))
if ARGV[2] == '' then
  redis.call('ZREM', KEYS[2], KEYS[1])
else
  redis.call('ZADD', KEYS[2], clock_ms() + tonumber(ARGV[2]), KEYS[1])
end
return #attempts
