-- wrk script for bench/ingest.py: POSTs unique signed bodies, one per line of BODIES_FILE.
-- Each wrk thread takes its own share of the lines (line i goes to thread i mod threads), sends
-- each once and then stops sending; only 202 answers count as accepted.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path = os.getenv("BODIES_FILE")
  local total = tonumber(os.getenv("WRK_THREADS"))
  bodies = {}
  local i = 0
  for line in io.lines(path) do
    if i % total == id then table.insert(bodies, line) end
    i = i + 1
  end
  next_body = 1
  accepted = 0
  other = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local body = bodies[next_body]
  if body == nil then
    body = bodies[#bodies]  -- share used up: repeats answer 200 (idempotent) and are not counted
  else
    next_body = next_body + 1
  end
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status == 202 then accepted = accepted + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local a, o = 0, 0
  for _, thread in ipairs(threads) do
    a = a + thread:get("accepted")
    o = o + thread:get("other")
  end
  io.write(string.format("ACCEPTED %d OTHER %d SECONDS %.3f P50_US %d P99_US %d\n", a, o,
    summary.duration / 1e6, latency:percentile(50), latency:percentile(99)))
end
