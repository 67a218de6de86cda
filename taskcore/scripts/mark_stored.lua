-- The images of a task stored so far (indexes), so that a worker taking the task over
-- makes and stores only the others.
local row = redis.call('HMGET', KEYS[1], 'status', 'worker', 'stored')
if row[1] ~= 'RUNNING' or row[2] ~= ARGV[1] then return 0 end
local stored = row[3] or ''
for i = 2, #ARGV do
  if not string.find(',' .. stored .. ',', ',' .. ARGV[i] .. ',', 1, true) then
    stored = (stored == '' and ARGV[i]) or (stored .. ',' .. ARGV[i])
  end
end
local _, commas = string.gsub(stored, ',', '')
redis.call('HSET', KEYS[1], 'stored', stored, 'images_done', stored == '' and 0 or commas + 1)
return 1
