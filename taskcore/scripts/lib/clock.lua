-- Now, in ms, by Redis' clock: every host's scripts agree on it, whatever their own clocks.
local function redis_now_ms()
  local clock = redis.call('TIME')
  return tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end
