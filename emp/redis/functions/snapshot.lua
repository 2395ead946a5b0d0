--[[
  emp_snapshot (read-only): the fleet's state and the id of the last event it includes. A view
  shows the snapshot, then reads `events` after `stream_id`; when that id has been trimmed away
  (or Redis restarted) it takes a new snapshot instead: no phantom and no missing jobs.

  KEYS[1]  events
  ARGV[1]  P, ARGV[2] max active jobs listed, ARGV[3] max workers listed, ARGV[4] recent ended jobs
  Reply    JSON {"stream_id", "first_id", "now", "stats", "services": {svc: {"pending", "unworkable",
           "signatures"}}, "scheduled", "active", "unworkable", "done": {status: n},
           "workers": [...], "active_jobs": [...], "recent": [...]}
]]

local SNAP_JOB_FIELDS = {'service', 'status', 'attempt', 'worker_id', 'machine_id', 'progress', 'message',
  'started_at', 'assigned_at', 'finished_at', 'failure_class', 'created_at', 'priority', 'workflow_id'}

local function job_rows(P, ids)
  local rows = {}
  for _, id in ipairs(ids) do
    local v = redis.call('HMGET', k_job(P, id), unpack(SNAP_JOB_FIELDS))
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

local function snapshot(keys, args)
  local P = args[1]
  local max_active, max_workers, max_recent = tonumber(args[2]) or 200, tonumber(args[3]) or 500, tonumber(args[4]) or 20
  local now = now_ms()
  local last = redis.call('XREVRANGE', P .. 'events', '+', '-', 'COUNT', 1)
  local first = redis.call('XRANGE', P .. 'events', '-', '+', 'COUNT', 1)
  local snap = {now = now, stream_id = last[1] and last[1][1] or '0-0', first_id = first[1] and first[1][1] or '0-0'}
  snap.stats = hash_to_table(redis.call('HGETALL', P .. 'stats'))
  local services = {}
  for _, svc in ipairs(redis.call('SMEMBERS', P .. 'services')) do
    local pending, unw, nsig = 0, 0, 0
    for _, sig in ipairs(redis.call('HKEYS', k_sigs(P, svc))) do
      nsig = nsig + 1
      pending = pending + redis.call('ZCARD', k_queue(P, svc, sig))
    end
    for _, sig in ipairs(redis.call('HKEYS', k_usigs(P, svc))) do
      unw = unw + redis.call('ZCARD', k_uqueue(P, svc, sig))
    end
    services[svc] = {pending = pending, unworkable = unw, signatures = nsig}
  end
  snap.services = services
  snap.scheduled = redis.call('ZCARD', P .. 'scheduled')
  snap.active = redis.call('ZCARD', P .. 'leases')
  snap.unworkable = redis.call('ZCARD', P .. 'unworkable')
  snap.done = {}
  for _, s in ipairs({'completed', 'failed', 'cancelled'}) do snap.done[s] = redis.call('ZCARD', k_done(P, s)) end
  local workers = {}
  local wids = redis.call('ZRANGEBYSCORE', P .. 'workers', now, '+inf', 'LIMIT', 0, max_workers)
  for _, wid in ipairs(wids) do
    local v = redis.call('HMGET', k_worker(P, wid), 'status', 'job', 'machine_id', 'services', 'completed', 'failed',
      'last_seen')
    workers[#workers + 1] = {id = wid, status = v[1] or '', job = v[2] or '', machine_id = v[3] or '',
      services = v[4] or '', completed = tonumber(v[5]) or 0, failed = tonumber(v[6]) or 0, last_seen = v[7] or ''}
  end
  snap.workers = workers
  snap.active_jobs = job_rows(P, redis.call('ZRANGE', P .. 'leases', 0, max_active - 1))
  local recent = {}
  for _, s in ipairs({'completed', 'failed', 'cancelled'}) do
    for _, row in ipairs(job_rows(P, redis.call('ZREVRANGE', k_done(P, s), 0, max_recent - 1))) do
      recent[#recent + 1] = row
    end
  end
  snap.recent = recent
  return cjson.encode(snap)
end

redis.register_function{function_name = 'emp_snapshot', callback = snapshot, flags = {'no-writes'}}
