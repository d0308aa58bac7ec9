-- wrk script for bench_service.py: POST one JSON body; each request gets its own pre-signed JWT
-- (a JWT's jti can be used once). Arguments: <body file> [<tokens file>]. Prints one JSON line.
local threads = {}
local counter = 1

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local file = io.open(args[1], "rb")
  body = file:read("*a")
  file:close()
  tokens, index = {}, 0
  if args[2] then
    local n = 0
    for line in io.lines(args[2]) do
      n = n + 1
      -- thread k takes lines k, k + T, … so no token is sent twice
      if (n - id) % tonumber(args[3]) == 0 then table.insert(tokens, line) end
    end
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  if #tokens > 0 then
    index = index + 1
    wrk.headers["Authorization"] = "Bearer " .. (tokens[index] or "exhausted")
  end
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  -- the latency at every 0.1 % step, so that runs cut into slices can be pooled again
  local quantiles = {}
  for step = 1, 1000 do quantiles[step] = string.format("%d", latency:percentile(step / 10)) end
  io.write(string.format('{"requests": %d, "errors": %d, "seconds": %.3f, "quantiles_us": [%s]}\n',
    summary.requests, errors, summary.duration / 1e6, table.concat(quantiles, ",")))
end
