-- wrk script for bench/flash_sale.py: POSTs to FLASH_PATH and counts answers per status;
-- done() prints one "FLASHJSON {...}" line. Two modes:
--
-- * FLASH_TOKENS (a file of access tokens, one per line): for as long as wrk runs, each
--   request carries the next token in turn (each thread starts at its own offset);
--   With FLASH_RATE set, the requests are paced at that rate (see below);
-- * FLASH_ATTEMPTS (a file of "token key" lines) and FLASH_THREADS: a fixed list of
--   attempts, each sent once with its Idempotency-Key. Thread t sends lines t, t + n,
--   t + 2n, ... (n = FLASH_THREADS); once all of its lines are answered it prints
--   "FLASHDONE" and stops. A connection with nothing left to send waits (delay()), so
--   nothing beyond the list is ever sent. The caller ends wrk after n FLASHDONE lines.
local threads = {}
local counter = 0
local fixed = os.getenv("FLASH_ATTEMPTS") ~= nil

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  path = os.getenv("FLASH_PATH")
  counts = {}
  if fixed then
    local n = tonumber(os.getenv("FLASH_THREADS"))
    attempts, sent, answered = {}, 0, 0
    local i = 0
    for line in io.lines(os.getenv("FLASH_ATTEMPTS")) do
      local token, key = line:match("^(%S+)%s+(%S+)$")
      if token then
        if i % n == id then
          attempts[#attempts + 1] = wrk.format(
            "POST", path, { ["Authorization"] = "Bearer " .. token, ["Idempotency-Key"] = key },
            nil)
        end
        i = i + 1
      end
    end
    if #attempts == 0 then  -- nothing to send: done at once (its connections just wait)
      io.write("FLASHDONE\n")
      io.flush()
    end
    return
  end
  tokens = {}
  for line in io.lines(os.getenv("FLASH_TOKENS")) do
    if #line > 0 then tokens[#tokens + 1] = "Bearer " .. line end
  end
  idx = (id * 7919) % #tokens
end

-- FLASH_RATE (req/s over FLASH_RATE_THREADS wrk threads, token mode): paced open loop
-- (pace.lua, beside this script).
local rate = tonumber(os.getenv("FLASH_RATE") or "0")
if not fixed and rate > 0 then
  local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
  delay = dofile(here .. "pace.lua")(rate, tonumber(os.getenv("FLASH_RATE_THREADS") or "1"))
end

if fixed then
  -- called before every request a connection sends; one whose thread has sent its whole
  -- list waits here until wrk is ended
  function delay()
    running = true
    if sent >= #attempts then return 3600000 end
    return 0
  end
end

function request()
  if fixed then
    if not running then  -- wrk checks the script by building one request: send nothing
      return attempts[1] or wrk.format("POST", path)
    end
    sent = sent + 1
    return attempts[sent]
  end
  idx = idx % #tokens + 1
  return wrk.format("POST", path, { ["Authorization"] = tokens[idx] }, nil)
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
  if fixed then
    answered = answered + 1
    if answered == #attempts then
      io.write("FLASHDONE\n")
      io.flush()
      wrk.thread:stop()
    end
  end
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("counts")) do
      total[status] = (total[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(total) do parts[#parts + 1] = string.format('"%d": %d', status, n) end
  local e = summary.errors
  io.write(string.format(
    'FLASHJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "socket_errors": %d, "status": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, e.connect + e.read + e.write + e.timeout,
    table.concat(parts, ", ")))
end
