--[[
  emp_leader_resign: give the lease up at once (a graceful stop), so another process takes over at
  its next attempt instead of after the lease. Only the holder with its current token can; the
  token counter stays (the next leader's token is larger).

  KEYS[1]  leader:<role>
  ARGV[1]  P, ARGV[2] role, ARGV[3] holder, ARGV[4] token
  Reply    {'OK'} | {'NOT_HOLDER'} (nothing changed)
  Errors   EMP_INVALID role (nothing written)
  Events   none
]]

local function leader_resign(keys, args)
  local P, role, holder, token = args[1], args[2], args[3], args[4]
  if not valid_role(role) then return invalid('role') end
  local key = K.leader(P, role)
  local cur = redis.call('HMGET', key, 'holder', 'token')
  if not cur[1] or cur[1] ~= holder or cur[2] ~= token then return {'NOT_HOLDER'} end
  redis.call('DEL', key)
  return {'OK'}
end

redis.register_function{function_name = 'emp_leader_resign', callback = leader_resign, flags = {'allow-oom'}}
