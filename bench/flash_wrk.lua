-- wrk script for bench/flash_sale.py: POST to FLASH_PATH, rotating the pre-minted access
-- tokens in the file FLASH_TOKENS (one per line; each thread starts at its own offset),
-- counting answers per status; done() prints one "FLASHJSON {...}" line.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  tokens = {}
  for line in io.lines(os.getenv("FLASH_TOKENS")) do
    if #line > 0 then tokens[#tokens + 1] = "Bearer " .. line end
  end
  path = os.getenv("FLASH_PATH")
  idx = (id * 7919) % #tokens
  counts = {}
end

function request()
  idx = idx % #tokens + 1
  return wrk.format("POST", path, { ["Authorization"] = tokens[idx] }, nil)
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
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
