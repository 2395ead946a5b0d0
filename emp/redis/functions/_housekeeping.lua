--[[
  _housekeeping.lua: work any call may do when it is due, one bounded page at a time: promote due
  scheduled jobs, requeue jobs whose lease expired (their worker died).
]]

local function promote_due(P, now, limit)
  local due = redis.call('ZRANGEBYSCORE', K.scheduled(P), '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    redis.call('ZREM', K.scheduled(P), id)
    local j = load_job(P, id)
    if j and j.status == 'scheduled' then
      redis.call('HDEL', K.job(P, id), 'run_at')
      local st = enqueue(P, now, id, j)
      emit(P, now, st == 'pending' and 'job_requeued' or 'job_unworkable', id, nil, nil,
        '{"from":"scheduled"}', true)
    end
  end
  return #due
end

local function requeue_expired(P, now, limit, max_lost)
  local expired = redis.call('ZRANGEBYSCORE', K.leases(P), '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(expired) do
    redis.call('ZREM', K.leases(P), id)
    local j = load_job(P, id)
    if j and ACTIVE[j.status] then
      local lost = (tonumber(j.lost) or 0) + 1
      redis.call('HSET', K.job(P, id), 'lost', lost)
      add_history(P, id, j, now, 'lease_expired', 'worker_lost', 'lease expired')
      if nonempty(j.worker_id) then free_worker(P, j.worker_id, id) end
      local wid, attempt = j.worker_id, j.attempt
      if lost >= max_lost then
        -- The event first: fail_final settles a flow's children, whose events must follow it.
        emit(P, now, 'job_failed', id, wid, attempt,
          '{"failure_class":"worker_lost","lost":' .. lost .. '}', true)
        fail_final(P, now, id, j, 'worker_lost',
          'lease expired ' .. lost .. ' times (the worker died or lost Redis)')
      else
        requeue(P, now, id, j, 0)
        redis.call('HINCRBY', K.stats(P), 'requeued', 1)
        emit(P, now, 'job_requeued', id, wid, attempt, '{"reason":"lease_expired","lost":' .. lost .. '}', true)
      end
    end
  end
  return #expired
end

-- Cheap check of both heads; returns the next due time (ms) of either (or nil), and the next
-- scheduled job's time (or nil).
local function housekeep(P, now, max_lost)
  local worked = false
  local s = redis.call('ZRANGE', K.scheduled(P), '0', '0', 'WITHSCORES')
  if s[2] and tonumber(s[2]) <= now then
    worked = promote_due(P, now, D.MAINTENANCE_PAGE) > 0 or worked
    s = redis.call('ZRANGE', K.scheduled(P), '0', '0', 'WITHSCORES')
  end
  local l = redis.call('ZRANGE', K.leases(P), '0', '0', 'WITHSCORES')
  if l[2] and tonumber(l[2]) <= now then
    worked = requeue_expired(P, now, D.MAINTENANCE_PAGE, max_lost) > 0 or worked
    l = redis.call('ZRANGE', K.leases(P), '0', '0', 'WITHSCORES')
  end
  local sched = s[2] and tonumber(s[2]) or nil
  local nxt = sched
  if l[2] and (nxt == nil or tonumber(l[2]) < nxt) then nxt = tonumber(l[2]) end
  return nxt, sched, worked
end

-- A claim that finds work runs housekeep at most every D.HOUSEKEEP_EVERY_MS per namespace (the
-- time of the last run is kept in the library's Lua state: lost on restart, which only means one
-- early run); a claim that finds nothing always runs it, then looks again if it promoted or
-- requeued anything.
local housekeep_next = {}

-- The next due time (scheduled job or lease deadline) without doing any work.
local function next_due(P)
  local s = redis.call('ZRANGE', K.scheduled(P), 0, 0, 'WITHSCORES')
  local l = redis.call('ZRANGE', K.leases(P), 0, 0, 'WITHSCORES')
  local nxt = s[2] and tonumber(s[2]) or nil
  if l[2] and (nxt == nil or tonumber(l[2]) < nxt) then nxt = tonumber(l[2]) end
  return nxt
end

-- Unworkable retention (docs/internals.md "Unworkable jobs end"): a job that has been unworkable for
-- D.UNWORKABLE_RETENTION_MS (its score in `unworkable` is when it got there) fails with class
-- `unworkable`, visibly, one bounded page a call (emp_cleanup). A flagged signature whose last job
-- left goes too: a later job of it is judged afresh after the grace period.
local function expire_unworkable(P, now, limit)
  local old = redis.call('ZRANGEBYSCORE', K.unworkable(P), '-inf', now - D.UNWORKABLE_RETENTION_MS, 'LIMIT', 0, limit)
  for _, id in ipairs(old) do
    redis.call('ZREM', K.unworkable(P), id)
    local j = load_job(P, id)
    if j and j.status == 'unworkable' then
      local ukey = K.unworkable_queue(P, j.service, j.sig)
      redis.call('ZREM', ukey, job_member(j, id))
      if redis.call('ZCARD', ukey) == 0 then redis.call('HDEL', K.usigs(P, j.service), j.sig) end
      local err = 'unworkable for ' .. fmt(D.UNWORKABLE_RETENTION_MS / 1000)
        .. ' s: no live worker can run its requirements'
      -- The event first: a job that never reached a worker may have no stream yet (finish()).
      emit(P, now, 'job_failed', id, nil, j.attempt, '{"failure_class":"unworkable","error":' .. json_str(err) .. '}', true)
      fail_final(P, now, id, j, 'unworkable', err)
    end
  end
  return #old
end

-- The `services` set lists every service that ever had a job. A service leaves it when it has no
-- queue, no signature (live or unworkable) and no live worker serves it, looked at a page of
-- members a call (SSCAN; the cursor lives in the library's Lua state like housekeep_next: lost on
-- restart, which only means starting over). A later submit adds the service back.
local prune_cursor = {}

local function prune_services(P, now, limit)
  local scan = redis.call('SSCAN', K.services(P), prune_cursor[P] or '0', 'COUNT', limit)
  prune_cursor[P] = scan[1]
  local empty = {}
  for _, svc in ipairs(scan[2]) do
    if redis.call('EXISTS', K.heads(P, svc), K.sigs(P, svc), K.usigs(P, svc)) == 0 then empty[svc] = true end
  end
  if next(empty) == nil then return 0 end
  local live = redis.call('ZRANGEBYSCORE', K.workers(P), now, '+inf', 'LIMIT', 0, D.LIVE_WORKER_SCAN + 1)
  if #live > D.LIVE_WORKER_SCAN then return 0 end -- too many to look at: keep them all this time
  for _, wid in ipairs(live) do
    for _, svc in ipairs(split_csv(redis.call('HGET', K.worker(P, wid), 'services'))) do empty[svc] = nil end
  end
  local pruned = 0
  for svc in pairs(empty) do
    redis.call('SREM', K.services(P), svc)
    redis.call('DEL', K.idle(P, svc)) -- only lapsed entries can be left: nobody live serves it
    -- No queue and no signature is left, so its claim-index bookkeeping has nothing to index.
    redis.call('DEL', K.classes(P, svc), K.sig_classes(P, svc))
    pruned = pruned + 1
  end
  return pruned
end

-- Machines whose reports lapsed (the box vanished, SIGKILL, a spot machine taken back) leave the
-- live set, at most `page` of them, each marked offline with the event a clean shutdown sends
-- (reason 'report lapsed'); its record is kept D.OFFLINE_RECORD_TTL_S for post-mortems. The ZREM
-- decides who marks a machine, so this is idempotent. Run by the upkeep (emp_machines_offline) and
-- by every machine report (so a fleet without a coordinator still sees its vanished machines go).
local function mark_machines_offline(P, now, page)
  local lapsed = redis.call('ZRANGEBYSCORE', K.machines(P), '-inf', now, 'LIMIT', 0, page)
  for _, mid in ipairs(lapsed) do
    redis.call('ZREM', K.machines(P), mid)
    local key = K.machine(P, mid)
    redis.call('HSET', key, 'id', mid, 'status', 'offline', 'offline_at', fmt(now), 'last_event', 'machine_shutdown')
    redis.call('EXPIRE', key, D.OFFLINE_RECORD_TTL_S)
    append_event(P, {'type', 'machine_shutdown', 'ts', fmt(now), 'machine', mid, 'data', '{"reason":"report lapsed"}'})
  end
  return #lapsed
end
