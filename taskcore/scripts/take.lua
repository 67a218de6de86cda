-- A worker with ``count`` free slots takes up to that many tasks in one step: it feeds the
-- pool as deep as it can take (plus the usual look-ahead) and pops them, so an asyncio
-- worker whose hundreds of slots free at once refills them in one round trip, not one
-- claim-and-feed per task. The choice between tenants is still the feed's.
local count = tonumber(ARGV[1])
fq_feed(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], tonumber(ARGV[2]) + count, clock_ms())
return redis.call('RPOP', KEYS[1], count) or {}
