-- wrk script for bench/recommend_bench.py. REC_MODE picks the request:
--   similar   GET /products/{id}/similar?k=10, id drawn from the file REC_IDS (one a line)
--   semantic  GET /search?mode=semantic&size=10&q=..., a query from the file REC_QUERIES
--             (one a line, URL-encoded) with a per-request suffix, so no two are alike
--   hybrid    the same query in the default (hybrid) mode
--   healthz   GET /healthz, answered by the replica's edge: the floor of the HTTP stack
--   detail    GET /products/{id} (the catalog's cached hot read): a peer route in the app
-- Counts answers per status; done() prints one "RECJSON {...}" line.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local function lines(path)
  local out = {}
  for line in io.lines(path) do
    if #line > 0 then out[#out + 1] = line end
  end
  return out
end

function init(args)
  mode = os.getenv("REC_MODE")
  if mode == "similar" or mode == "detail" then
    ids = lines(os.getenv("REC_IDS"))
  elseif mode == "semantic" or mode == "hybrid" then
    queries = lines(os.getenv("REC_QUERIES"))
  end
  math.randomseed(7919 * (id + 1))
  n = id * 1000003
  counts = {}
end

function request()
  n = n + 1
  local path
  if mode == "similar" then
    path = "/products/" .. ids[math.random(#ids)] .. "/similar?k=10"
  elseif mode == "detail" then
    path = "/products/" .. ids[math.random(#ids)]
  elseif mode == "semantic" or mode == "hybrid" then
    path = "/search?size=10&q=" .. queries[n % #queries + 1] .. "%20%23" .. n
    if mode == "semantic" then path = path .. "&mode=semantic" end
  else
    path = "/healthz"
  end
  return wrk.format("GET", path)
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for status, k in pairs(t:get("counts")) do
      total[status] = (total[status] or 0) + k
    end
  end
  local parts = {}
  for status, k in pairs(total) do parts[#parts + 1] = string.format('"%d": %d', status, k) end
  local e = summary.errors
  io.write(string.format(
    'RECJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "socket_errors": %d, "status": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect + e.read + e.write + e.timeout,
    table.concat(parts, ", ")))
end
