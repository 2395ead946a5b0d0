--[[
  emp_revive_unworkable: a live worker can run this signature again: unflag it and move one page of
  its unworkable jobs back to their places in the queue. Call again while `remaining` > 0.

  KEYS[1]  usigs:<service>
  ARGV[1]  P, ARGV[2] service, ARGV[3] sig,
  ARGV[4]  page size (clamped to 1..D.MAINTENANCE_PAGE_MAX, '' = D.UNWORKABLE_PAGE),
  ARGV[5]  fence role, ARGV[6] fence token (optional, _fence.lua: refused unless current)
  Reply    {'OK', moved, remaining} | {'NOT_FOUND'}
  Errors   EMP_FENCED role token current (a stale leader; nothing written)
  Events   job_requeued {from: 'unworkable'} per job moved
]]

local function revive_unworkable(keys, args)
  local P, svc, sig = args[1], args[2], args[3]
  local page = clamp(args[4], 1, D.MAINTENANCE_PAGE_MAX, D.UNWORKABLE_PAGE)
  local fenced = leader_fenced(P, args[5], args[6])
  if fenced then return fenced end
  local moved, remaining = revive_signature(P, now_ms(), svc, sig, page)
  if moved == nil then return {'NOT_FOUND'} end
  return {'OK', moved, remaining}
end

redis.register_function{function_name = 'emp_revive_unworkable', callback = revive_unworkable, flags = {'allow-oom'}}
