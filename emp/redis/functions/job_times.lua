--[[
  emp_job_times (read-only): the jobs that ended recently, for the coordinator's GET /api/stats
  and /metrics. Per ended status: how many jobs ended within each window (exact: ZCOUNT of
  done:<status>, O(log n)), and the times of the newest ones that ended within the largest window
  (a bounded sample, at most `limit` per status), from which the caller computes wait and run
  percentiles (emp/coordinator/api/stats.py). Windows are counted back from the server's clock.

  KEYS[1]  services (slot anchor)
  ARGV[1]  P, ARGV[2] sample size per status (clamped to 0..D.LIST_PAGE_MAX),
  ARGV[3..] window lengths in ms (at least one; each a positive integer)
  Reply    JSON {"now": ms, "counts": {"completed": [n per window], "failed": [...], "cancelled": [...]},
                 "rows": [{"id", "status", "service", "failure_class", "created_at", "run_at",
                           "assigned_at", "started_at", "finished_at"}]}
           rows: newest first per status; a job whose hash expired meanwhile is left out
  Errors   EMP_INVALID bad window <value>
  Events   none
  Cost     O(windows x log n + limit) per status: 3 x `limit` HMGETs at most
]]

local TIME_FIELDS = {'status', 'service', 'failure_class', 'created_at', 'run_at', 'assigned_at', 'started_at',
  'finished_at'}

local function job_times(keys, args)
  local P = args[1]
  local limit = clamp(args[2], 0, D.LIST_PAGE_MAX, D.LIST_PAGE)
  local windows = {}
  for i = 3, #args do
    local w = tonumber(args[i])
    if w == nil or w <= 0 or w ~= math.floor(w) then return invalid('bad window ' .. tostring(args[i])) end
    windows[#windows + 1] = w
  end
  if #windows == 0 then return invalid('bad window (none given)') end
  local now = now_ms()
  local widest = 0
  for _, w in ipairs(windows) do
    if w > widest then widest = w end
  end
  local counts, rows = {}, {}
  for _, st in ipairs(ENDED) do
    local key = K.done(P, st)
    local per = {}
    for i, w in ipairs(windows) do per[i] = redis.call('ZCOUNT', key, fmt(now - w), '+inf') end
    counts[st] = per
    if limit > 0 then
      local ids = redis.call('ZREVRANGEBYSCORE', key, '+inf', fmt(now - widest), 'LIMIT', 0, limit)
      for _, id in ipairs(ids) do
        local v = redis.call('HMGET', K.job(P, id), unpack(TIME_FIELDS))
        if v[1] then
          local row = {id = id}
          for k, f in ipairs(TIME_FIELDS) do
            if v[k] and v[k] ~= '' then row[f] = v[k] end
          end
          rows[#rows + 1] = row
        end
      end
    end
  end
  local reply = {now = now, counts = counts}
  local encoded = cjson.encode(reply)
  -- cjson encodes an empty table as {}: the rows go in by hand so that none is always [].
  local rows_json = '[]'
  if #rows > 0 then rows_json = cjson.encode(rows) end
  return string.sub(encoded, 1, -2) .. ',"rows":' .. rows_json .. '}'
end

redis.register_function{function_name = 'emp_job_times', callback = job_times, flags = {'no-writes'}}
