--[[
  emp_machines_offline: machines whose reports stopped (the box vanished, SIGKILL, a spot machine
  taken back) leave the live set, one bounded page a call, and the fleet is told: the same
  machine_shutdown event a machine that stops cleanly sends, with reason 'report lapsed'. Its record
  (whatever is left of it: it expires with its last report) is kept a day, marked offline, for
  post-mortems, like a clean shutdown's. Idempotent: the ZREM decides who marks a machine.

  KEYS[1]  machines
  ARGV[1]  P, ARGV[2] page size (clamped to 1..D.MAINTENANCE_PAGE_MAX, '' = D.MAINTENANCE_PAGE),
  ARGV[3]  fence role, ARGV[4] fence token (optional, _fence.lua: refused unless current)
  Reply    {machines marked offline}
  Errors   EMP_FENCED role token current (a stale leader; nothing written)
  Events   machine_shutdown {reason: 'report lapsed'} per machine
]]

local function machines_offline(keys, args)
  local P, page = args[1], clamp(args[2], 1, D.MAINTENANCE_PAGE_MAX, D.MAINTENANCE_PAGE)
  local fenced = leader_fenced(P, args[3], args[4])
  if fenced then return fenced end
  return {mark_machines_offline(P, now_ms(), page)}
end

redis.register_function{function_name = 'emp_machines_offline', callback = machines_offline, flags = {'allow-oom'}}
