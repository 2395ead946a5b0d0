--[[
  emp_leader_renew: extend a live lease, only for its holder with its token. A lease that expired is
  lost even if nobody took it yet: its holder must acquire again (and gets a new token).

  KEYS[1]  leader:<role>
  ARGV[1]  P, ARGV[2] role, ARGV[3] holder, ARGV[4] token, ARGV[5] ttl_ms (new length from now)
  Reply    {'OK', expires_ms} | {'LOST', holder|'', token|''} (who holds it now, if anyone)
  Errors   EMP_INVALID role | ttl_ms (nothing written)
  Events   none
]]

local function leader_renew(keys, args)
  local P, role, holder, token, ttl = args[1], args[2], args[3], args[4], tonumber(args[5])
  if not valid_role(role) then return invalid('role') end
  if not ttl or ttl < 1 or ttl ~= math.floor(ttl) then return invalid('ttl_ms') end
  local now = now_ms()
  local key = K.leader(P, role)
  local cur = redis.call('HMGET', key, 'holder', 'token', 'expires')
  local live = cur[1] and (tonumber(cur[3]) or 0) > now
  if not live or cur[1] ~= holder or cur[2] ~= token then
    if live then return {'LOST', cur[1], cur[2]} end
    return {'LOST', '', ''}
  end
  local expires = fmt(now + ttl)
  redis.call('HSET', key, 'expires', expires)
  redis.call('PEXPIRE', key, fmt(ttl))
  return {'OK', expires}
end

redis.register_function{function_name = 'emp_leader_renew', callback = leader_renew, flags = {'allow-oom'}}
