-- A GPU worker that just claimed a task takes, for the same pipeline call, the tasks fed
-- right after it that may share the call: same model, width, height and steps, never claimed
-- before, at most `room` images between them. It takes them off the consuming end of the
-- pool's Celery queue in the order they were fed and stops at the first that does not fit,
-- so no task starts ahead of one fed before it. When the queue runs dry it feeds the fair
-- queue's next task (one at a time, in the tenants' stride order), so the depth the feed
-- keeps (SYNTHGATE_FEED_DEPTH) does not bound a batch. A message whose task ended (canceled)
-- or expired is taken too: its claim cleans it up. Taken tasks stay in `starting` until the
-- worker claims them; the reaper queues them again should it die first.
-- Returns {why it stopped: 'full' | 'blocked' | 'empty', task id, task id, ...}.
local model, width, height, steps = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4])
local room, most, now = tonumber(ARGV[5]), tonumber(ARGV[6]), clock_ms()
local taken = {'full'}
while room > 0 and #taken <= most do
  local message = redis.call('LINDEX', KEYS[1], -1)
  if not message then
    local fed = fq_feed(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5],
                        redis.call('ZCARD', KEYS[5]) + 1, now)
    if fed == 0 then
      taken[1] = 'empty'
      break
    end
    message = redis.call('LINDEX', KEYS[1], -1)
  end
  local id = msg_task_id(message)
  local row = id and redis.call('HMGET', k_task(id), 'status', 'attempts', 'request') or {}
  if row[1] == 'PENDING' and tonumber(row[2] or 0) == 0 and row[3] then
    local ok, request = pcall(cjson.decode, row[3])
    if not ok or request.model ~= model or request.width ~= width
        or request.height ~= height or request.steps ~= steps then
      taken[1] = 'blocked'
      break
    end
    if request.n > room then break end
    room = room - request.n
  elseif not id or row[1] == 'PENDING' or row[1] == 'RUNNING' then
    -- not a task, or one claimed before (a takeover): it runs alone, and first
    taken[1] = 'blocked'
    break
  end
  redis.call('RPOP', KEYS[1])
  taken[#taken + 1] = id
end
return taken
