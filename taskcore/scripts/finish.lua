-- Only the lease holder finishes a task: a worker that lost its lease (it was cut off
-- from Redis while another took the task over) leaves the record to the new holder.
local row = redis.call('HMGET', KEYS[1], 'status', 'worker', 'pool')
if row[1] ~= 'RUNNING' then return 0 end
if row[2] and row[2] ~= '' and row[2] ~= ARGV[7] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'end_ms', clock_ms(), 'results', ARGV[2],
           'code', ARGV[3], 'message', ARGV[4])
if ARGV[1] == 'SUCCEEDED' then
  redis.call('HSET', KEYS[1], 'progress', 100, 'images_done', ARGV[6])
end
redis.call('HDEL', KEYS[1], 'envelope', 'worker', 'lease_ms', 'stored')
redis.call('EXPIRE', KEYS[1], ARGV[5])
if row[3] then
  redis.call('ZREM', k_leases(row[3]), KEYS[1])
  redis.call('ZREM', k_claimed(row[3]), KEYS[1])
end
release(KEYS[1], ARGV[1], tonumber(ARGV[6]))
return 1
