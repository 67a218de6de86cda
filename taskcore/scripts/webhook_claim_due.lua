-- The deliveries due by Redis' clock, at most ``most``, leased to the caller for ``lease ms``
-- (their score pushed that far ahead). A tenant that has ``cap`` deliveries in the caller's
-- hands already (the pairs from ARGV[6] on) gets no more: its due deliveries are put off by
-- ``defer ms``, so a stalled receiver's backlog never stands in front of the others'.
-- KEYS: the due set; ARGV: lease ms, most, cap, defer ms, look at, then tenant, count, ...
-- Returns record key, tenant, record key, tenant, ...
local now = clock_ms()
local most, cap = tonumber(ARGV[2]), tonumber(ARGV[3])
local held = {}
for i = 6, #ARGV, 2 do held[ARGV[i]] = tonumber(ARGV[i + 1]) end
local taken = {}
for _, task in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[5])) do
  if #taken >= 2 * most then break end
  local tenant = redis.call('HGET', task, 'tenant') or ''  -- '': the record is gone
  local count = held[tenant] or 0
  if tenant ~= '' and count >= cap then
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[4]), task)
  else
    held[tenant] = count + 1
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), task)
    taken[#taken + 1] = task
    taken[#taken + 1] = tenant
  end
end
return taken
