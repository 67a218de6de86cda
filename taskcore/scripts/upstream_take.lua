-- An upstream worker with `count` free slots takes up to that many tasks of one upstream
-- pool (one model), as many as its DashScope accounts have room for: a running slot
-- (max_running per account and model) and a submit in the window (submit_per_second).
-- Each task taken gets its slot here, atomically for every worker: the record names the
-- account (`upstream_account`) and the account's running set holds the record. A task that
-- already names an account (a takeover resumes its upstream task, which only that
-- account's key can poll) keeps it, room or not. A message taken with no room left goes
-- back to the head of the queue. The tenants' order is the feed's.
-- Returns {message, account, message, account, ...}; account '' for a task that no longer
-- waits (canceled, expired): its claim cleans it up.
local now = clock_ms()
local count, depth = tonumber(ARGV[1]), tonumber(ARGV[2])
local accounts, room = {}, 0
for i = 0, (#KEYS - 6) / 3 - 1 do
  local running, submits, rest = KEYS[7 + 3 * i], KEYS[8 + 3 * i], KEYS[9 + 3 * i]
  local name, limit = ARGV[3 + 4 * i], tonumber(ARGV[4 + 4 * i])
  local per_window, window = tonumber(ARGV[5 + 4 * i]), tonumber(ARGV[6 + 4 * i])
  redis.call('ZREMRANGEBYSCORE', submits, '-inf', now - window)
  local free = 0
  if redis.call('EXISTS', rest) == 0 then  -- not resting after a 429
    free = math.min(limit - redis.call('SCARD', running), per_window - redis.call('ZCARD', submits))
  end
  free = math.max(free, 0)
  accounts[#accounts + 1] = {name = name, running = running, free = free}
  room = room + free
end
fq_feed(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], depth + math.min(count, room), now)
local taken = {}
while #taken < 2 * count do
  local message = redis.call('RPOP', KEYS[1])
  if not message then break end
  local id = msg_task_id(message)
  local task = id and k_task(id)
  local row = task and redis.call('HMGET', task, 'status', 'upstream_account') or {}
  local chosen = ''
  if row[1] == 'PENDING' or row[1] == 'RUNNING' then
    if row[2] then
      chosen = row[2]
      for _, account in ipairs(accounts) do
        if account.name == chosen then
          redis.call('SADD', account.running, task)
          redis.call('SADD', KEYS[6], account.running)
        end
      end
    else
      local best = nil
      for _, account in ipairs(accounts) do
        if account.free > 0 and (not best or account.free > best.free) then best = account end
      end
      if not best then
        redis.call('RPUSH', KEYS[1], message)  -- no room: it stays next in line
        break
      end
      best.free = best.free - 1
      chosen = best.name
      redis.call('SADD', best.running, task)
      redis.call('SADD', KEYS[6], best.running)
      redis.call('HSET', task, 'upstream_account', chosen)
    end
  end
  taken[#taken + 1] = message
  taken[#taken + 1] = chosen
end
return taken
