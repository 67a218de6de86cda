-- Raises a RUNNING task's progress, for its lease holder only (see annotate.lua).
-- KEYS: the task record; ARGV: worker, percent
local row = redis.call('HMGET', KEYS[1], 'status', 'worker', 'progress')
if row[1] ~= 'RUNNING' or row[2] ~= ARGV[1] then return 0 end
if tonumber(row[3] or -1) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[2])
return 1
