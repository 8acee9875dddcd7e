-- wrk script for bench/onpublish_load.py: every request is a different
-- nginx-rtmp on_publish form body (one line of the bodies file each), so no
-- two requests publish the same channel. Arguments (after `--`):
--   PATH  NTHREADS  BODIES_FILE  WANT_PER_THREAD  DONE_PREFIX
-- Thread i takes lines i, i+NTHREADS, ...; it stops once WANT_PER_THREAD
-- answers came back and creates DONE_PREFIX<i> (wrk itself runs until its
-- -d duration or a SIGINT, which the driver sends once every thread is done). Requests already in flight then (at most one per
-- connection) use the spare lines at the end of its share, never a channel
-- another request used. done() prints one JSON line, marked, with the
-- client-side latency percentiles in microseconds.

local threads = {}
local next_id = 0

function setup(thread)
    thread:set("id", next_id)
    next_id = next_id + 1
    table.insert(threads, thread)
end

function init(args)
    path = args[1]
    local nthreads = tonumber(args[2])
    want = tonumber(args[4])
    done_file = args[5] .. id
    bodies = {}
    local i = 0
    for line in io.lines(args[3]) do
        if i % nthreads == id then
            table.insert(bodies, line)
        end
        i = i + 1
    end
    sent = 0
    answered = 0
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
end

function request()
    sent = sent + 1
    -- Past the end only if a thread overshoots by more than its spares;
    -- the driver sizes the spares so that this does not happen.
    local body = bodies[sent] or bodies[#bodies]
    return wrk.format("POST", path, headers, body)
end

function response(status, hdrs, body)
    answered = answered + 1
    if answered == want then
        local f = io.open(done_file, "w")
        f:close()
        wrk.thread:stop()
    end
end

function done(summary, latency, requests)
    local p = {}
    for _, q in ipairs({ 50, 90, 99, 99.9 }) do
        table.insert(p, string.format('"%s": %d', tostring(q), latency:percentile(q)))
    end
    io.write(string.format(
        'WRK-RESULT {"requests": %d, "duration_us": %d, "errors_status": %d, "errors_connect": %d, '
            .. '"errors_read": %d, "errors_write": %d, "errors_timeout": %d, "min_us": %d, "max_us": %d, '
            .. '"mean_us": %.1f, "percentiles_us": {%s}}\n',
        summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
        summary.errors.read, summary.errors.write, summary.errors.timeout,
        latency.min, latency.max, latency.mean, table.concat(p, ", ")
    ))
end
