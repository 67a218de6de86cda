-- Keep an index at least as long as a record it lists (ttl: ms the record has left).
local function ix_keep(index, ttl)
  if redis.call('PTTL', index) < ttl then redis.call('PEXPIRE', index, ttl) end
end

-- A submitted task: in its tenant's index and its model's; entries older than an unfinished
-- record lives (ttl, ms) leave them.
local function ix_submitted(tenant, model, id, submit, ttl)
  for _, index in ipairs({k_tasks(tenant), k_model_tasks(tenant, model)}) do
    redis.call('ZADD', index, submit, id)
    redis.call('ZREMRANGEBYSCORE', index, '-inf', submit - ttl)
    ix_keep(index, ttl)
  end
end

-- A task that just reached a final status (its record's TTL already set).
local function ix_final(task, tenant, status)
  local row = redis.call('HMGET', task, 'model', 'submit_ms')
  local ttl = redis.call('PTTL', task)
  if not row[1] or not row[2] or ttl < 0 then return end
  local id = string.sub(task, string.len(k_task('')) + 1)
  for _, index in ipairs({k_status_tasks(tenant, status),
                          k_model_status_tasks(tenant, row[1], status)}) do
    redis.call('ZADD', index, row[2], id)
    ix_keep(index, ttl)
  end
  local now = clock_ms()
  redis.call('ZADD', k_expiring(tenant), now + ttl, status .. '|' .. row[1] .. '|' .. id)
  for _, index in ipairs({k_expiring(tenant), k_tasks(tenant), k_model_tasks(tenant, row[1])}) do
    ix_keep(index, ttl)
  end
end

-- Take up to `batch` tasks whose records expired by `now` out of every index.
local function ix_prune(tenant, now, batch)
  local expiring = k_expiring(tenant)
  local due = redis.call('ZRANGEBYSCORE', expiring, '-inf', now, 'LIMIT', 0, batch)
  for _, entry in ipairs(due) do
    local status, model, id = string.match(entry, '^([^|]+)|([^|]+)|(.+)$')
    local left = redis.call('PTTL', k_task(id))
    if left > 0 then
      redis.call('ZADD', expiring, now + left, entry)  -- its TTL was extended: it lives on
    elseif left == -1 then
      redis.call('ZREM', expiring, entry)  -- it no longer expires: neither do its entries
    else
      redis.call('ZREM', expiring, entry)
      redis.call('ZREM', k_tasks(tenant), id)
      redis.call('ZREM', k_model_tasks(tenant, model), id)
      redis.call('ZREM', k_status_tasks(tenant, status), id)
      redis.call('ZREM', k_model_status_tasks(tenant, model, status), id)
    end
  end
end

-- Ranks [first, last] of the entries scored in [min, max], newest first (last < first: none).
local function ix_ranks(index, min, max)
  local above = 0
  if max ~= '+inf' then above = redis.call('ZCOUNT', index, '(' .. max, '+inf') end
  return above, above + redis.call('ZCOUNT', index, min, max) - 1
end
