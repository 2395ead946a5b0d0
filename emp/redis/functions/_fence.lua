--[[
  _fence.lua: leadership leases and the fencing of the leader's sweeps (docs/upkeep.md).

  A role (e.g. 'upkeep') has one lease, the hash leader:<role> {holder, token, expires, since}, and
  a counter leadertoken:<role> that every acquisition increments: the token. A sweep Function given
  (role, token) in its last ARGV runs only while that token is the role's current, unexpired lease;
  otherwise it writes nothing and answers an EMP_FENCED error. A leader that paused (GC, SIGSTOP, a
  network partition) past its lease and wakes up cannot sweep, even before it learns it lost.
]]

-- A role names keys: non-empty, short, no ':' (so leader:<role> never collides) and no spaces.
local function valid_role(role)
  return nonempty(role) and #role <= D.SERVICE_NAME_MAX and not string.find(role, '[:%s{}]')
end

-- nil when the call may go on: no fence asked (role nil or ''), or `token` is the role's current
-- lease and it has not expired (server time). Otherwise the refusal to return, before any write.
local function leader_fenced(P, role, token)
  if not nonempty(role) then return nil end
  local cur = redis.call('HMGET', K.leader(P, role), 'token', 'expires')
  if cur[1] and cur[1] == token and (tonumber(cur[2]) or 0) > now_ms() then return nil end
  return redis.error_reply('EMP_FENCED ' .. tostring(role) .. ' ' .. tostring(token) .. ' '
    .. (cur[1] and cur[1] or '-'))
end
