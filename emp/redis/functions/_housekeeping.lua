--[[
  _housekeeping.lua: work any call may do when it is due, one bounded page at a time: promote due
  scheduled jobs, requeue jobs whose lease expired (their worker died).

  Stall grace (docs/reliability.md "T9"): Redis's clock runs on while the server is stopped
  (SIGSTOP, a paused VM, a swapped-out host), so when it wakes every lease looks expired though no
  worker could heartbeat meanwhile. Every heartbeat leaves a note (K.clock = "<ms>:<lease ms>:<judged>")
  with the shortest lease heartbeating lately. Live workers heartbeat every third of their lease;
  a lease is lost to a stall only when it lasts over two thirds of it. So the first heartbeat or
  sweep that finds the note older than D.STALL_LEASE_PCT (half) of that lease, and than
  D.STALL_MIN_MS (a shorter silence only matters to leases under 1.5 s), judges the silence,
  once (judged = 1 until the next heartbeat): a stall (K.stall = "<wake ms>:<gap ms>", expiring after
  the gap, the gap capped at D.STALL_GRACE_MAX_MS). While it lasts, a lease whose deadline fell
  before the wake expires `gap` later: it keeps the time it had left when the silence began, so the
  workers heartbeat before anything is requeued. Every worker dying at once looks the same, but a
  coordinator or a live worker judges it half a lease after the last heartbeat, before any of
  their leases lapsed, so their recovery is not delayed; a lease that lapsed before its silence was
  judged (nobody swept meanwhile) is requeued at most its own length later. Claims leave no note:
  a claimer may die at once.
]]

-- Housekeeping's state and stall-grace helpers, in one table: the library is one Lua chunk, whose
-- top level may hold no more than 200 locals.
local HK = {prune_cursor = {}}

-- The last heartbeat's note: (ms, shortest lease heartbeating lately, judged 0|1), or nil.
function HK.note(P)
  local raw = redis.call('GET', K.clock(P))
  if not raw then return nil end
  local at, lease, judged = string.match(raw, '^(%d+):(%d+):([01])$')
  if not at then return nil end
  return tonumber(at), tonumber(lease), judged == '1'
end

-- Judge the silence since the last heartbeat, once: longer than D.STALL_LEASE_PCT of the lease (and
-- than D.STALL_MIN_MS) is a stall.
function HK.judge(P, now)
  local at, lease, judged = HK.note(P)
  if not at or judged or now - at <= math.max(lease * D.STALL_LEASE_PCT / 100, D.STALL_MIN_MS) then return end
  redis.call('SET', K.clock(P), int_str(at) .. ':' .. int_str(lease) .. ':1')
  local gap = math.min(now - at, D.STALL_GRACE_MAX_MS)
  local wake, granted = HK.stall(P)
  -- A stall still being granted keeps what it has left (merged, never lengthened).
  if wake then gap = math.max(gap, wake + granted - now) end
  redis.call('SET', K.stall(P), int_str(now) .. ':' .. int_str(gap), 'PX', gap)
end

-- A heartbeat of a worker with leases of `lease_ms`: judge the silence it ends, then leave the note.
-- The note keeps the shortest lease among the heartbeats of the last such lease (mixed fleets).
function HK.heard(P, now, lease_ms)
  HK.judge(P, now)
  local at, lease = HK.note(P)
  if at and now - at < lease and lease < lease_ms then lease_ms = lease end
  redis.call('SET', K.clock(P), int_str(now) .. ':' .. int_str(lease_ms) .. ':0')
end

-- The stall being granted: (wake ms, gap ms), or nil.
function HK.stall(P)
  local rec = redis.call('GET', K.stall(P))
  if not rec then return nil end
  local wake, gap = string.match(rec, '^(%d+):(%d+)$')
  if not wake then return nil end
  return tonumber(wake), tonumber(gap)
end

-- Up to `limit` ids of leases expired at `now`, stall grace applied: with a stall (wake, gap), a
-- deadline up to the wake counts `gap` later; one after the wake (a heartbeat since) as it is.
function HK.expired_leases(P, now, limit)
  local wake, gap = HK.stall(P)
  if not wake then return redis.call('ZRANGEBYSCORE', K.leases(P), '-inf', now, 'LIMIT', 0, limit) end
  local ids = redis.call('ZRANGEBYSCORE', K.leases(P), '-inf', now - gap, 'LIMIT', 0, limit)
  if #ids < limit then
    local from = '(' .. int_str(math.max(wake, now - gap))
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', K.leases(P), from, now, 'LIMIT', 0, limit - #ids)) do
      ids[#ids + 1] = id
    end
  end
  return ids
end

-- When the first lease falls due, stall grace applied (nil: no lease).
function HK.lease_due(P)
  local head = redis.call('ZRANGE', K.leases(P), 0, 0, 'WITHSCORES')
  if not head[2] then return nil end
  local due = tonumber(head[2])
  local wake, gap = HK.stall(P)
  if wake and due <= wake then
    due = due + gap
    local after = redis.call('ZRANGEBYSCORE', K.leases(P), '(' .. int_str(wake), '+inf',
      'WITHSCORES', 'LIMIT', 0, 1)
    if after[2] and tonumber(after[2]) < due then due = tonumber(after[2]) end
  end
  return due
end

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
  local expired = HK.expired_leases(P, now, limit)
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
  HK.judge(P, now)
  local s = redis.call('ZRANGE', K.scheduled(P), '0', '0', 'WITHSCORES')
  if s[2] and tonumber(s[2]) <= now then
    worked = promote_due(P, now, D.MAINTENANCE_PAGE) > 0 or worked
    s = redis.call('ZRANGE', K.scheduled(P), '0', '0', 'WITHSCORES')
  end
  local lease = HK.lease_due(P)
  if lease and lease <= now then
    worked = requeue_expired(P, now, D.MAINTENANCE_PAGE, max_lost) > 0 or worked
    lease = HK.lease_due(P)
  end
  local sched = s[2] and tonumber(s[2]) or nil
  local nxt = sched
  if lease and (nxt == nil or lease < nxt) then nxt = lease end
  return nxt, sched, worked
end

-- A claim that finds work runs housekeep at most every D.HOUSEKEEP_EVERY_MS per namespace (the
-- time of the last run is kept in the library's Lua state: lost on restart, which only means one
-- early run); a claim that finds nothing always runs it, then looks again if it promoted or
-- requeued anything.
local housekeep_next = {}

-- The next due time (scheduled job or lease deadline, stall grace applied) without doing any work.
local function next_due(P)
  local s = redis.call('ZRANGE', K.scheduled(P), 0, 0, 'WITHSCORES')
  local lease = HK.lease_due(P)
  local nxt = s[2] and tonumber(s[2]) or nil
  if lease and (nxt == nil or lease < nxt) then nxt = lease end
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
-- members a call (SSCAN; the cursor, HK.prune_cursor, lives in the library's Lua state like
-- housekeep_next: lost on restart, which only means starting over). A later submit adds the service back.
local function prune_services(P, now, limit)
  local scan = redis.call('SSCAN', K.services(P), HK.prune_cursor[P] or '0', 'COUNT', limit)
  HK.prune_cursor[P] = scan[1]
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
