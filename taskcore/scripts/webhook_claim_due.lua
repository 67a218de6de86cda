-- The deliveries due by Redis' clock, at most ``most``, leased to the caller for ``lease ms``
-- (their score pushed that far ahead). A tenant that has ``cap`` deliveries in the caller's
-- hands already (the pairs from ARGV[6] on) gets no more now: its due deliveries stay due
-- for the next claim. Only when such deliveries fill the whole window looked at (``look
-- at``) while slots stay free are they put off by ``defer ms``, so that the deliveries
-- behind them come into view: a stalled receiver's backlog never stands in front of the
-- others' for long.
-- KEYS: the due set; ARGV: lease ms, most, cap, defer ms, look at, then tenant, count, ...
-- Returns record key, tenant, record key, tenant, ...
local now = clock_ms()
local most, cap = tonumber(ARGV[2]), tonumber(ARGV[3])
local held = {}
for i = 6, #ARGV, 2 do held[ARGV[i]] = tonumber(ARGV[i + 1]) end
local taken, skipped = {}, {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[5])
for _, task in ipairs(due) do
  if #taken >= 2 * most then break end
  local tenant = redis.call('HGET', task, 'tenant') or ''  -- '': the record is gone
  local count = held[tenant] or 0
  if tenant ~= '' and count >= cap then
    skipped[#skipped + 1] = task
  else
    held[tenant] = count + 1
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), task)
    taken[#taken + 1] = task
    taken[#taken + 1] = tenant
  end
end
if #due == tonumber(ARGV[5]) and #taken < 2 * most then
  for _, task in ipairs(skipped) do
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[4]), task)
  end
end
return taken
