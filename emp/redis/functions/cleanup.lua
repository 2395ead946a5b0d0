--[[
  emp_cleanup: retention and lapsed registrations, one bounded page each.
  Terminal jobs expire by themselves (EXPIRE of D.RETENTION_S set when they end); this trims the
  listing indexes (done:<status>, by end time) of ids older than the retention, and marks workers
  whose registration lapsed (they died without saying so) offline, so no phantom worker stays
  listed. It also fails jobs unworkable for longer than D.UNWORKABLE_RETENTION_MS and prunes the
  `services` set (_housekeeping.lua).
  A retention shorter than D.RETENTION_S (ARGV[3]) also deletes, with their index entry, the jobs
  that ended before it (hash, payload, events stream) instead of waiting for their EXPIRE; a
  longer one only keeps index entries longer (the job itself still expires at D.RETENTION_S).

  KEYS[1]  workers
  ARGV[1]  P, ARGV[2] page size (clamped to 1..D.MAINTENANCE_PAGE_MAX, '' = D.MAINTENANCE_PAGE),
  ARGV[3]  retention_ms ('' = D.RETENTION_S * 1000),
  ARGV[4]  fence role, ARGV[5] fence token (optional, _fence.lua: refused unless current)
  Reply    {trimmed index entries (and the jobs deleted with them), workers marked offline,
           unworkable jobs failed, services pruned}
  Errors   EMP_INVALID retention_ms (nothing written); EMP_FENCED role token current (nothing written)
  Events   worker_offline {reason: 'registration lapsed'} per worker marked offline;
           job_failed {failure_class: 'unworkable', error} per unworkable job failed
]]

local function cleanup(keys, args)
  local P, page = args[1], clamp(args[2], 1, D.MAINTENANCE_PAGE_MAX, D.MAINTENANCE_PAGE)
  local retention = D.RETENTION_S * 1000
  if nonempty(args[3]) then
    retention = tonumber(args[3])
    if not retention or retention < 0 or retention ~= math.floor(retention) then return invalid('retention_ms') end
  end
  local fenced = leader_fenced(P, args[4], args[5])
  if fenced then return fenced end
  local now = now_ms()
  local cutoff = now - retention
  local trimmed = 0
  for _, s in ipairs(ENDED) do
    local old = redis.call('ZRANGEBYSCORE', K.done(P, s), '-inf', fmt(cutoff), 'LIMIT', 0, page)
    if #old > 0 then
      redis.call('ZREM', K.done(P, s), unpack(old))
      trimmed = trimmed + #old
      for _, id in ipairs(old) do
        -- Still there only when the retention is shorter than its EXPIRE; a job retried since
        -- left this index (emp_retry), so one found here in a terminal state ended before the cutoff.
        if TERMINAL[redis.call('HGET', K.job(P, id), 'status') or ''] then
          redis.call('DEL', K.job(P, id), K.payload(P, id), K.job_events(P, id))
        end
      end
    end
  end
  local lapsed = redis.call('ZRANGEBYSCORE', K.workers(P), '-inf', now, 'LIMIT', 0, page)
  for _, wid in ipairs(lapsed) do
    redis.call('ZREM', K.workers(P), wid)
    local W = load_worker(P, wid)
    if W then
      leave_idle(P, wid, true)
      redis.call('HSET', K.worker(P, wid), 'status', 'offline', 'offline_at', fmt(now))
      redis.call('EXPIRE', K.worker(P, wid), D.OFFLINE_RECORD_TTL_S)
      redis.call('DEL', K.worker_matches(P, wid))
      leave_class(P, wid)
    end
    emit(P, now, 'worker_offline', nil, wid, nil, '{"reason":"registration lapsed"}', false)
  end
  local expired = expire_unworkable(P, now, page)
  drop_idle_classes(P)
  return {trimmed, #lapsed, expired, prune_services(P, now, D.PRUNE_SERVICES_PAGE)}
end

redis.register_function{function_name = 'emp_cleanup', callback = cleanup, flags = {'allow-oom'}}
