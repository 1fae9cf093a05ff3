-- Success counting and the result line shared by every load scenario.
--
-- `benches/load/wrk.rs` prepends a few lines that set `wrk.method`, `wrk.body`
-- and `wrk.headers` for one scenario, then appends this file. The same
-- script runs against blogql and against the bare "ceiling" handler, so
-- both are measured with the same client-side work per response.
--
-- A response counts as a success only when its status is 2xx and its body
-- carries `"data"` and no `"errors"`: an HTTP 200 with a GraphQL error in
-- it is a failure, not throughput.

local threads = {}

-- Runs in the main Lua state once per wrk thread: keep a handle so that
-- `done` can read each thread's counters.
function setup(thread)
   table.insert(threads, thread)
end

-- Runs inside each thread before it sends anything.
function init(args)
   ok = 0
   responses = 0
   sample = nil
end

function response(status, headers, body)
   responses = responses + 1
   if status >= 200 and status < 300
      and body ~= nil
      and string.find(body, '"data"', 1, true)
      and not string.find(body, '"errors"', 1, true) then
      ok = ok + 1
   elseif sample == nil then
      -- Keep the first failure of each thread, so a broken scenario shows
      -- what the server actually answered.
      sample = tostring(status) .. " " .. string.sub(body or "", 1, 400)
   end
end

-- Escapes a string for a JSON string literal.
local function json_string(s)
   s = string.gsub(s, '[%c"\\]', function(c)
      if c == '"' then return '\\"' end
      if c == '\\' then return '\\\\' end
      return string.format('\\u%04x', string.byte(c))
   end)
   return '"' .. s .. '"'
end

-- Prints one machine-readable line, prefixed with BENCH_RESULT, that
-- `benches/load.rs` parses. Durations and latencies are in microseconds.
function done(summary, latency, requests)
   local total_ok, total_responses, first_sample = 0, 0, nil
   for _, thread in ipairs(threads) do
      total_ok = total_ok + (thread:get("ok") or 0)
      total_responses = total_responses + (thread:get("responses") or 0)
      if first_sample == nil then first_sample = thread:get("sample") end
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"ok":%d,"responses":%d,"requests":%d,"duration_us":%d,' ..
      '"p50_us":%d,"p99_us":%d,"connect_errors":%d,"read_errors":%d,' ..
      '"write_errors":%d,"timeouts":%d,"sample":%s}\n',
      total_ok, total_responses, summary.requests, summary.duration,
      latency:percentile(50), latency:percentile(99),
      e.connect, e.read, e.write, e.timeout,
      first_sample and json_string(first_sample) or "null"))
end
