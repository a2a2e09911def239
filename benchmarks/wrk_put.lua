-- wrk script of the HTTP benchmark (benchmarks/_http.py): PUT <path><n>, n = 1, 2, ...
-- (one wrk thread: one counter), and a JSON line of the figures when done.
local counter = 0

request = function()
  counter = counter + 1
  return wrk.format("PUT", wrk.path .. counter)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"status_errors":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
