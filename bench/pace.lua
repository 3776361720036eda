-- Paced open loop for wrk scripts: dofile() this file and call the function it returns,
-- pace(rate, threads), for a delay() that gives each wrk thread a schedule of send times,
-- one every threads/rate s. A free connection waits for its thread's next slot, so a slow
-- answer does not push the schedule back; a schedule more than a second behind starts
-- again from now (no burst to catch up).
local ffi = require("ffi")
pcall(ffi.cdef, [[
  typedef struct { long tv_sec; long tv_nsec; } pace_ts;
  int clock_gettime(int, pace_ts *);
]])
local ts = ffi.new("pace_ts")

local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

return function(rate, threads)
  local interval = 1000 * threads / rate
  local next_at = nil
  return function()
    local now = now_ms()
    if next_at == nil or next_at < now - 1000 then next_at = now + math.random() * interval end
    local at = next_at
    next_at = next_at + interval
    if at <= now then return 0 end
    return math.floor(at - now + 0.5)
  end
end
