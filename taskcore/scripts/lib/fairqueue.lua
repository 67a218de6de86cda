-- A tenant's levels, highest first (taskcore.priority.ORDER).
local FQ_LEVELS = {'interactive', 'normal', 'batch'}

-- Integer strides keep passes exact (a float 1/3 would drift and reorder ties).
local function fq_stride(weight)
  return math.floor(1000000 / weight + 0.5)
end

-- Tasks waiting in all of a tenant's levels.
local function fq_waiting(pending)
  local total = 0
  for _, level in ipairs(FQ_LEVELS) do
    total = total + redis.call('LLEN', k_pending_level(pending, level))
  end
  return total
end

-- The tenant's next task: the oldest of its highest non-empty level.
local function fq_pop(pending)
  for _, level in ipairs(FQ_LEVELS) do
    local task = redis.call('RPOP', k_pending_level(pending, level))
    if task then return task end
  end
  return false
end

local function fq_enqueue(pending, backlog, ready, fair, task, stride, level)
  redis.call('LPUSH', k_pending_level(pending, level or 'normal'), task)
  redis.call('LPUSH', backlog, 1)
  redis.call('HSET', fair, 's|' .. pending, stride)
  if not redis.call('ZSCORE', ready, pending) then
    local vtime = tonumber(redis.call('HGET', fair, 'vtime') or 0)
    local last = tonumber(redis.call('HGET', fair, 'p|' .. pending) or 0)
    redis.call('ZADD', ready, math.max(vtime, last), pending)
  end
end

local function fq_retire(ready, fair, pending, pass)
  redis.call('ZREM', ready, pending)
  redis.call('HSET', fair, 'p|' .. pending, pass)
end

-- Take a canceled task out of its tenant list (its record names the level); true when it
-- was there.
local function fq_remove(pending, backlog, ready, fair, task)
  local level = redis.call('HGET', task, 'priority') or 'normal'
  if redis.call('LREM', k_pending_level(pending, level), 1, task) == 0 then return false end
  redis.call('RPOP', backlog)
  if fq_waiting(pending) == 0 then
    fq_retire(ready, fair, pending, redis.call('ZSCORE', ready, pending) or 0)
  end
  return true
end

local function fq_feed(queue, backlog, ready, fair, starting, depth, now)
  local moved = 0
  while redis.call('ZCARD', starting) < depth do
    local head = redis.call('ZRANGE', ready, 0, 0, 'WITHSCORES')
    if #head == 0 then break end
    local pending, pass = head[1], tonumber(head[2])
    local task = fq_pop(pending)
    if task then
      redis.call('RPOP', backlog)
      local row = redis.call('HMGET', task, 'status', 'envelope')
      -- a record that expired while it waited has nothing left to run
      if row[1] == 'PENDING' and row[2] then
        redis.call('LPUSH', queue, row[2])
        redis.call('HSET', task, 'stage', 'sent')
        redis.call('ZADD', starting, now, task)
        moved = moved + 1
      end
      redis.call('HSET', fair, 'vtime', head[2])
      pass = pass + tonumber(redis.call('HGET', fair, 's|' .. pending) or fq_stride(1))
    end
    if fq_waiting(pending) > 0 then
      redis.call('ZADD', ready, pass, pending)
    else
      fq_retire(ready, fair, pending, pass)
    end
  end
  return moved
end
