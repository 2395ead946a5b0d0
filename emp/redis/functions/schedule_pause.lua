--[[
  emp_schedule_pause: pause a schedule (no occurrence fires while paused) or resume it from a next
  occurrence the client computed after the server's time (occurrences that fell while it was paused
  are not fired: pausing means "not those").

  KEYS[1]  scheddue
  ARGV[1]  P, ARGV[2] name, ARGV[3] '1' pause | '0' resume, ARGV[4] next_ms (resume)
  Reply    {'OK', '1' if it was paused before | '0'} | {'NOT_FOUND'}
  Errors   EMP_INVALID schedule: <reason> (nothing written)
  Events   none
]]

-- A block of its own: the library is one Lua chunk, whose top level may hold at most 200 locals.
do
  local function schedule_pause(keys, args)
    local P, name, pause, next_ms = args[1], args[2], args[3], args[4]
    if pause ~= '1' and pause ~= '0' then return invalid('schedule: pause must be 1 or 0') end
    local nxt = tonumber(next_ms)
    if pause == '0' and (not nxt or nxt ~= math.floor(nxt) or nxt < 0 or nxt > D.MAX_MS) then
      return invalid('schedule: next_ms must be epoch ms')
    end
    local skey = K.schedule(P, name)
    local was = redis.call('HGET', skey, 'paused')
    if not was then return {'NOT_FOUND'} end
    local now = fmt(now_ms())
    if pause == '1' then
      redis.call('HSET', skey, 'paused', '1', 'updated_at', now)
      redis.call('ZREM', K.schedules_due(P), name)
    else
      redis.call('HSET', skey, 'paused', '0', 'next_ms', fmt(nxt), 'updated_at', now)
      redis.call('ZADD', K.schedules_due(P), fmt(nxt), name)
    end
    return {'OK', was}
  end

  redis.register_function{function_name = 'emp_schedule_pause', callback = schedule_pause, flags = {'allow-oom'}}
end
