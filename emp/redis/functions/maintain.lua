--[[
  emp_maintain: promote due scheduled jobs and requeue expired leases, one bounded page each.
  Claims already do this when it is due; coordinators and idle workers call it too, so recovery
  happens whoever is alive. Idempotent: a lease is requeued once (the ZREM decides who does it).
  After a stall of Redis itself, leases get a grace first (stall grace, _housekeeping.lua).

  KEYS[1]  leases
  ARGV[1]  P, ARGV[2] page size (clamped to 1..D.MAINTENANCE_PAGE_MAX, '' = D.MAINTENANCE_PAGE),
  ARGV[3]  max_lost ('' = D.MAX_LOST_LEASES),
  ARGV[4]  fence role, ARGV[5] fence token (optional, _fence.lua: refused unless current)
  Reply    {promoted, requeued, next_due_ms|''} (next_due_ms: stall grace applied)
  Errors   EMP_FENCED role token current (a stale leader; nothing written)
  Events   job_requeued {from: 'scheduled'} | job_unworkable (promoted jobs);
           job_requeued {reason: 'lease_expired', lost} | job_failed {failure_class: 'worker_lost'}
]]

local function maintain(keys, args)
  local P, page = args[1], clamp(args[2], 1, D.MAINTENANCE_PAGE_MAX, D.MAINTENANCE_PAGE)
  local max_lost = tonumber(args[3]) or D.MAX_LOST_LEASES
  local fenced = leader_fenced(P, args[4], args[5])
  if fenced then return fenced end
  local now = now_ms()
  HK.judge(P, now)
  local promoted = promote_due(P, now, page)
  local requeued = requeue_expired(P, now, page, max_lost)
  local nxt = next_due(P)
  return {promoted, requeued, nxt and fmt(nxt) or ''}
end

redis.register_function{function_name = 'emp_maintain', callback = maintain, flags = {'allow-oom'}}
