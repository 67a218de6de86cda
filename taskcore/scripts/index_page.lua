-- KEYS: 1 the index; ARGV: 1 tenant, 2 min, 3 max (scores), 4 offset, 5 limit, 6 prune batch
ix_prune(ARGV[1], clock_ms(), tonumber(ARGV[6]))
local offset, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {}
for _ = 1, 3 do
  local first, last = ix_ranks(KEYS[1], ARGV[2], ARGV[3])
  local dead, stop = {}, math.min(first + offset + limit - 1, last)
  out = {last - first + 1}
  if first + offset <= stop then
    for _, id in ipairs(redis.call('ZREVRANGE', KEYS[1], first + offset, stop)) do
      local record = redis.call('HGETALL', k_task(id))
      if #record == 0 then dead[#dead + 1] = id else
        out[#out + 1] = id
        out[#out + 1] = record
      end
    end
  end
  if #dead == 0 then break end
  -- records that vanished without expiring (deleted, evicted): out of this index and the
  -- tenant's, then the page is read again
  redis.call('ZREM', KEYS[1], unpack(dead))
  redis.call('ZREM', k_tasks(ARGV[1]), unpack(dead))
end
return out
