-- The reaper's check of the upstream running sets: a record that has ended or expired
-- (every ending releases its slot, so this only catches what no ending saw, such as a
-- message whose record expired after its take) leaves its account's running set.
-- Returns how many slots it freed.
local freed = 0
for _, running in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  for _, task in ipairs(redis.call('SMEMBERS', running)) do
    local status = redis.call('HGET', task, 'status')
    if status ~= 'PENDING' and status ~= 'RUNNING' then
      redis.call('SREM', running, task)
      freed = freed + 1
    end
  end
  if redis.call('SCARD', running) == 0 then redis.call('SREM', KEYS[1], running) end
end
return freed
