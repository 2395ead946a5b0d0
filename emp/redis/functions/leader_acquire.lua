--[[
  emp_leader_acquire: take the lease of a role when it is free or expired, with a new fencing token
  (INCR of leadertoken:<role>, so tokens only grow). Asked again by the holder of a live lease (a
  retried call whose reply was lost), it extends that lease and keeps its token.

  KEYS[1]  leader:<role>   KEYS[2]  leadertoken:<role>
  ARGV[1]  P, ARGV[2] role, ARGV[3] holder (the process asking), ARGV[4] ttl_ms (lease length)
  Reply    {'OK', token, expires_ms} | {'BUSY', holder, token, expires_ms} (someone else leads)
  Errors   EMP_INVALID role | holder | ttl_ms (nothing written)
  Events   none (leadership is not a fleet object; the processes log it)
]]

local function leader_acquire(keys, args)
  local P, role, holder, ttl = args[1], args[2], args[3], tonumber(args[4])
  if not valid_role(role) then return invalid('role') end
  if not nonempty(holder) or #holder > D.TEXT_FIELD_MAX then return invalid('holder') end
  if not ttl or ttl < 1 or ttl ~= math.floor(ttl) then return invalid('ttl_ms') end
  local now = now_ms()
  local key = K.leader(P, role)
  local cur = redis.call('HMGET', key, 'holder', 'token', 'expires')
  local live = cur[1] and (tonumber(cur[3]) or 0) > now
  if live and cur[1] ~= holder then return {'BUSY', cur[1], cur[2], cur[3]} end
  local expires = fmt(now + ttl)
  local token = cur[2]
  if live then
    redis.call('HSET', key, 'expires', expires)
  else
    token = fmt(redis.call('INCR', K.leader_token(P, role)))
    redis.call('DEL', key)
    redis.call('HSET', key, 'holder', holder, 'token', token, 'expires', expires, 'since', fmt(now))
  end
  redis.call('PEXPIRE', key, fmt(ttl))
  return {'OK', token, expires}
end

redis.register_function{function_name = 'emp_leader_acquire', callback = leader_acquire, flags = {'allow-oom'}}
