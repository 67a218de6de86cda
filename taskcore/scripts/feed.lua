-- KEYS: the pool's keys (taskcore.fairqueue.pool_keys); ARGV: depth
return fq_feed(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], tonumber(ARGV[1]), clock_ms())
