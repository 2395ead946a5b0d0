--[[
  emp_heartbeat: keep a worker registered and its jobs' leases alive.

  KEYS[1]  workers
  ARGV[1]  P, ARGV[2] wid, ARGV[3] lease_ms, ARGV[4] worker_ttl_ms,
  ARGV[5..] pairs of (job id, attempt) the worker is running
  Reply    {registered: 1|0, state_1, ..., state_n}, state = 'ok' | 'cancelled' | 'stale' | 'gone'
           registered = 0 tells the worker its registration lapsed: register again.
  Errors   EMP_INVALID lease_ms / worker_ttl_ms (nothing written)
  Events   none (liveness is not an event: views read the workers zset)
  Also     judges the silence before it and leaves the heartbeat note (stall grace, _housekeeping.lua)
]]

local function heartbeat(keys, args)
  local P, wid, lease_ms, ttl_ms = args[1], args[2], tonumber(args[3]), tonumber(args[4])
  if not lease_ms or not ttl_ms then return invalid('lease_ms / worker_ttl_ms') end
  local now = now_ms()
  HK.heard(P, now, lease_ms) -- a silence before it that went on too long was a stall (_housekeeping.lua)
  -- A worker marked offline (its registration lapsed while it was paused) must register again,
  -- so views see it come back; its hash existing is not enough.
  local wstatus = redis.call('HGET', K.worker(P, wid), 'status')
  local registered = 0
  if wstatus and wstatus ~= 'offline' then registered = 1 end
  if registered == 1 then
    redis.call('ZADD', K.workers(P), int_str(now + ttl_ms), wid)
    redis.call('HSET', K.worker(P, wid), 'last_seen', fmt(now))
  end
  local reply = {registered}
  local deadline = int_str(now + lease_ms)
  for i = 5, #args - 1, 2 do
    local id, attempt = args[i], args[i + 1]
    local j, err = current_attempt(P, id, attempt, wid)
    if err == nil then
      redis.call('ZADD', K.leases(P), 'XX', deadline, id)
      reply[#reply + 1] = 'ok'
    elseif j == nil then
      reply[#reply + 1] = 'gone'
    elseif j.status == 'cancelled' then
      reply[#reply + 1] = 'cancelled'
    else
      reply[#reply + 1] = 'stale'
    end
  end
  return reply
end

redis.register_function{function_name = 'emp_heartbeat', callback = heartbeat, flags = {'allow-oom'}}
