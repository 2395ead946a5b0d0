--[[
  emp_cleanup: retention and lapsed registrations, one bounded page each.
  Terminal jobs expire by themselves (EXPIRE set when they end); this trims the listing indexes of
  expired ids, and marks workers whose registration lapsed (they died without saying so) offline,
  so no phantom worker stays listed. It also fails jobs unworkable for longer than
  D.UNWORKABLE_RETENTION_MS and prunes the `services` set (_housekeeping.lua).

  KEYS[1]  workers
  ARGV[1]  P, ARGV[2] page size (clamped to 1..D.MAINTENANCE_PAGE_MAX, '' = D.MAINTENANCE_PAGE)
  Reply    {trimmed index entries, workers marked offline, unworkable jobs failed, services pruned}
  Errors   none
  Events   worker_offline {reason: 'registration lapsed'} per worker marked offline;
           job_failed {failure_class: 'unworkable', error} per unworkable job failed
]]

local function cleanup(keys, args)
  local P, page = args[1], clamp(args[2], 1, D.MAINTENANCE_PAGE_MAX, D.MAINTENANCE_PAGE)
  local now = now_ms()
  local cutoff = now - D.RETENTION_S * 1000
  local trimmed = 0
  for _, s in ipairs(ENDED) do
    local old = redis.call('ZRANGEBYSCORE', K.done(P, s), '-inf', cutoff, 'LIMIT', 0, page)
    if #old > 0 then
      redis.call('ZREM', K.done(P, s), unpack(old))
      trimmed = trimmed + #old
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

redis.register_function('emp_cleanup', cleanup)
