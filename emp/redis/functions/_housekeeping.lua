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
        fail_final(P, now, id, j, 'worker_lost',
          'lease expired ' .. lost .. ' times (the worker died or lost Redis)')
        emit(P, now, 'job_failed', id, wid, attempt,
          '{"failure_class":"worker_lost","lost":' .. lost .. '}', true)
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
  local s = redis.call('ZRANGE', K.scheduled(P), 0, 0, 'WITHSCORES')
  if s[2] and tonumber(s[2]) <= now then
    worked = promote_due(P, now, D.MAINTENANCE_PAGE) > 0 or worked
    s = redis.call('ZRANGE', K.scheduled(P), 0, 0, 'WITHSCORES')
  end
  local l = redis.call('ZRANGE', K.leases(P), 0, 0, 'WITHSCORES')
  if l[2] and tonumber(l[2]) <= now then
    worked = requeue_expired(P, now, D.MAINTENANCE_PAGE, max_lost) > 0 or worked
    l = redis.call('ZRANGE', K.leases(P), 0, 0, 'WITHSCORES')
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
