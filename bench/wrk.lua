-- Load script for wrk: sends Outpost's caller headers on every request and
-- prints one machine-readable summary line when the run ends.
-- Environment: BENCH_PSK (X-Outpost-Auth), BENCH_PROVIDER (X-Provider),
-- BENCH_DELAY_MS (optional pause before each request on a connection, which
-- turns the run into a paced latency measurement).

local psk = os.getenv("BENCH_PSK")
local provider = os.getenv("BENCH_PROVIDER")
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "")

if psk then
  wrk.headers["X-Outpost-Auth"] = psk
end
if provider then
  wrk.headers["X-Provider"] = provider
end

if pause then
  delay = function()
    return pause
  end
end

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_SUMMARY {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": %d, "non_2xx": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect + errors.read + errors.write + errors.timeout,
    errors.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
