-- Extends the worker's leases on the tasks it still holds; returns those it no longer holds.
-- KEYS: task records; ARGV: worker, lease until (ms)
local lost = {}
for _, task in ipairs(KEYS) do
  local row = redis.call('HMGET', task, 'status', 'worker', 'pool')
  if row[1] == 'RUNNING' and row[2] == ARGV[1] then
    redis.call('HSET', task, 'lease_ms', ARGV[2])
    if row[3] then redis.call('ZADD', k_leases(row[3]), ARGV[2], task) end
  else
    lost[#lost + 1] = task
  end
end
return lost
