--[[
  emp_maintain: promote due scheduled jobs and requeue expired leases, one bounded page each.
  Claims already do this when it is due; coordinators and idle workers call it too, so recovery
  happens whoever is alive. Idempotent: a lease is requeued once (the ZREM decides who does it).

  KEYS[1]  leases
  ARGV[1]  P, ARGV[2] page size, ARGV[3] max_lost
  Reply    {promoted, requeued, next_due_ms|''}
]]

local function maintain(keys, args)
  local P, page, max_lost = args[1], tonumber(args[2]) or D.MAINTENANCE_PAGE, tonumber(args[3]) or D.MAX_LOST_LEASES
  local now = now_ms()
  local promoted = promote_due(P, now, page)
  local requeued = requeue_expired(P, now, page, max_lost)
  local nxt = next_due(P)
  return {promoted, requeued, nxt and fmt(nxt) or ''}
end

redis.register_function('emp_maintain', maintain)
