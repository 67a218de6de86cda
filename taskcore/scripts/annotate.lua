-- Sets one field of a RUNNING task, for its lease holder only: a worker that lost the task
-- to another (its lease lapsed) must not overwrite, say, the new holder's upstream task id.
-- KEYS: the task record; ARGV: worker, field, value
local row = redis.call('HMGET', KEYS[1], 'status', 'worker')
if row[1] ~= 'RUNNING' or row[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
