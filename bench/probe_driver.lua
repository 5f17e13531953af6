-- wrk script driving blackbox_exporter's /probe at a paced rate: each connection waits
-- BENCH_DELAY_MS between requests. Counts answers whose body says probe_success 1.
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "10")
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; bad = 0 end
function delay() return delay_ms end
function response(status, headers, body)
  if status == 200 and body:find("\nprobe_success 1", 1, true) then ok = ok + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local o, b = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); b = b + t:get("bad") end
  io.write(string.format("probes_ok=%d probes_failed=%d\n", o, b))
end
