-- Extends the worker's leases on the tasks it still holds to Redis' now + the lease (0: ends
-- them now, a hand-back); returns those it no longer holds.
-- KEYS: task records; ARGV: worker, lease ms
local until_ms = clock_ms() + tonumber(ARGV[2])
local lost = {}
for _, task in ipairs(KEYS) do
  local row = redis.call('HMGET', task, 'status', 'worker', 'pool')
  if row[1] == 'RUNNING' and row[2] == ARGV[1] then
    redis.call('HSET', task, 'lease_ms', until_ms)
    if row[3] then redis.call('ZADD', k_leases(row[3]), until_ms, task) end
  else
    lost[#lost + 1] = task
  end
end
return lost
