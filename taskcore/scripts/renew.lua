-- Extends the worker's leases on the tasks it still holds to Redis' now + the lease (0: ends
-- them now, a hand-back); returns those it lost: RUNNING under another worker (or nobody's:
-- the reaper queued them again), or their records gone. A task that ended (its finish may
-- land between a renewer's look at what it holds and this call) is no longer held but was
-- not lost: it is left out.
-- KEYS: task records; ARGV: worker, lease ms
local until_ms = clock_ms() + tonumber(ARGV[2])
local lost = {}
for _, task in ipairs(KEYS) do
  local row = redis.call('HMGET', task, 'status', 'worker', 'pool')
  if row[1] == 'RUNNING' and row[2] == ARGV[1] then
    redis.call('HSET', task, 'lease_ms', until_ms)
    if row[3] then redis.call('ZADD', k_leases(row[3]), until_ms, task) end
  elseif row[1] == 'RUNNING' or not row[1] then
    lost[#lost + 1] = task
  end
end
return lost
