--[[
  emp_snapshot (read-only): the fleet's state and the id of the last event it includes. A view
  shows the snapshot, then reads `events` after `stream_id`; when that id has been trimmed away
  (or Redis restarted) it takes a new snapshot instead: no phantom and no missing jobs.

  KEYS[1]  events
  ARGV[1]  P, ARGV[2] max active jobs listed, ARGV[3] max workers listed, ARGV[4] recent ended jobs
           per status: each clamped to 0..D.LIST_PAGE_MAX ('' = D.SNAPSHOT_ACTIVE_JOBS,
           D.SNAPSHOT_WORKERS, D.SNAPSHOT_RECENT)
  Reply    JSON {"stream_id", "first_id", "now", "stats", "services": {svc: {"pending", "unworkable",
           "signatures"}}, "scheduled", "active", "unworkable", "done": {status: n},
           "workers": [...], "active_jobs": [...], "recent": [...]}
  Errors   none
  Events   none
  Cost     O(services x signatures) for the counts, plus the rows asked for
]]

local SNAP_JOB_FIELDS = {'service', 'status', 'attempt', 'worker_id', 'machine_id', 'progress', 'message',
  'started_at', 'assigned_at', 'finished_at', 'failure_class', 'created_at', 'priority', 'workflow_id'}

local function job_rows(P, ids)
  local rows = {}
  for _, id in ipairs(ids) do
    local v = redis.call('HMGET', K.job(P, id), unpack(SNAP_JOB_FIELDS))
    if v[1] then
      local row = {id = id}
      for i, f in ipairs(SNAP_JOB_FIELDS) do
        if v[i] then row[f] = v[i] end
      end
      rows[#rows + 1] = row
    end
  end
  return rows
end

-- The first n members of an index (0 = none: ZRANGE 0 -1 would be all of them).
local function first_ids(key, n, newest_first)
  if n < 1 then return {} end
  return redis.call(newest_first and 'ZREVRANGE' or 'ZRANGE', key, 0, n - 1)
end

local function snapshot(keys, args)
  local P = args[1]
  local max_active = clamp(args[2], 0, D.LIST_PAGE_MAX, D.SNAPSHOT_ACTIVE_JOBS)
  local max_workers = clamp(args[3], 0, D.LIST_PAGE_MAX, D.SNAPSHOT_WORKERS)
  local max_recent = clamp(args[4], 0, D.LIST_PAGE_MAX, D.SNAPSHOT_RECENT)
  local now = now_ms()
  local last = redis.call('XREVRANGE', K.events(P), '+', '-', 'COUNT', 1)
  local first = redis.call('XRANGE', K.events(P), '-', '+', 'COUNT', 1)
  local snap = {now = now, stream_id = last[1] and last[1][1] or '0-0', first_id = first[1] and first[1][1] or '0-0'}
  snap.stats = hash_to_table(redis.call('HGETALL', K.stats(P)))
  local services = {}
  for _, svc in ipairs(redis.call('SMEMBERS', K.services(P))) do
    local pending, unw, nsig = 0, 0, 0
    for _, sig in ipairs(redis.call('HKEYS', K.sigs(P, svc))) do
      nsig = nsig + 1
      pending = pending + redis.call('ZCARD', K.queue(P, svc, sig))
    end
    for _, sig in ipairs(redis.call('HKEYS', K.usigs(P, svc))) do
      unw = unw + redis.call('ZCARD', K.unworkable_queue(P, svc, sig))
    end
    services[svc] = {pending = pending, unworkable = unw, signatures = nsig}
  end
  snap.services = services
  snap.scheduled = redis.call('ZCARD', K.scheduled(P))
  snap.active = redis.call('ZCARD', K.leases(P))
  snap.unworkable = redis.call('ZCARD', K.unworkable(P))
  snap.done = {}
  for _, s in ipairs(ENDED) do snap.done[s] = redis.call('ZCARD', K.done(P, s)) end
  local workers = {}
  local wids = redis.call('ZRANGEBYSCORE', K.workers(P), now, '+inf', 'LIMIT', 0, max_workers)
  for _, wid in ipairs(wids) do
    local v = redis.call('HMGET', K.worker(P, wid), 'status', 'job', 'machine_id', 'services', 'completed', 'failed',
      'last_seen')
    workers[#workers + 1] = {id = wid, status = v[1] or '', job = v[2] or '', machine_id = v[3] or '',
      services = v[4] or '', completed = tonumber(v[5]) or 0, failed = tonumber(v[6]) or 0, last_seen = v[7] or ''}
  end
  snap.workers = workers
  snap.active_jobs = job_rows(P, first_ids(K.leases(P), max_active, false))
  local recent = {}
  for _, s in ipairs(ENDED) do
    for _, row in ipairs(job_rows(P, first_ids(K.done(P, s), max_recent, true))) do
      recent[#recent + 1] = row
    end
  end
  snap.recent = recent
  return cjson.encode(snap)
end

redis.register_function{function_name = 'emp_snapshot', callback = snapshot, flags = {'no-writes'}}
