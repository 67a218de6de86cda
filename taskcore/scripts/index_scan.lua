-- KEYS: 1 the tenant's unfinished set (record keys)
-- ARGV: 1 min, 2 max (scores), 3 status, 4 model ('' for any), 5 cursor, 6 chunk,
--       7 matches to skip, 8 matches wanted
local first, last = ix_ranks(KEYS[1], ARGV[1], ARGV[2])
local from = first + tonumber(ARGV[5])
local to = math.min(from + tonumber(ARGV[6]) - 1, last)
local skip, want, matched, page = tonumber(ARGV[7]), tonumber(ARGV[8]), 0, {}
local tasks = {}
if from <= to then tasks = redis.call('ZREVRANGE', KEYS[1], from, to) end
for _, task in ipairs(tasks) do
  local row = redis.call('HMGET', task, 'status', 'model')
  if row[1] == ARGV[3] and (ARGV[4] == '' or row[2] == ARGV[4]) then
    matched = matched + 1
    if matched > skip and #page < want then page[#page + 1] = task end
  end
end
return {#tasks, matched, page}
