-- wrk script: POST precomputed signed requests, each with its own event id.
-- The requests file (written by benchmarks/loadgen.py before the timed window) holds one
-- request per line: "<TW-Signature value>\t<body>". Thread i of n sends lines i, i+n, ...
-- so no two connections ever send the same event. WRK_DELAY_MS (optional) makes each
-- connection pause between requests, to hold a rate below the peak.

local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path = os.getenv("WRK_REQUESTS_FILE")
  local nthreads = tonumber(os.getenv("WRK_THREADS") or "1")
  local webhook = os.getenv("WRK_PATH") or "/webhooks/tw"
  local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "0")
  requests = {}
  local n = 0
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == id then
      local tab = string.find(line, "\t", 1, true)
      local sig = string.sub(line, 1, tab - 1)
      local body = string.sub(line, tab + 1)
      n = n + 1
      requests[n] = wrk.format("POST", webhook,
        {["Content-Type"] = "application/json", ["TW-Signature"] = sig}, body)
    end
    i = i + 1
  end
  count = n
  nxt = 0
  if delay_ms > 0 then
    delay = function() return delay_ms end
  end
end

function request()
  nxt = nxt + 1
  if nxt > count then nxt = 1 end
  return requests[nxt]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d status_errors=%d socket_errors=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
