-- Redis' own clock, in ms: every time that decides a lease, a deadline, a requeue or a due
-- webhook is read here, so hosts whose clocks disagree still agree on them.
local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
