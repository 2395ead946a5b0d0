--[[
  emp_start: the worker has started the job in its service (assigned -> in_progress).

  KEYS[1]  job:<id>
  ARGV[1]  P, ARGV[2] id, ARGV[3] attempt, ARGV[4] wid
  Reply    {'OK'} | {'ALREADY'} (already in progress) | {'STALE', status, attempt} | {'NOT_FOUND', '', ''}
  Errors   none
  Events   job_started
]]

local function start(keys, args)
  local P, id, attempt, wid = args[1], args[2], args[3], args[4]
  local j, err = current_attempt(P, id, attempt, wid)
  if err then return stale_reply(j, err) end
  if j.status == 'in_progress' then return {'ALREADY'} end
  local now = now_ms()
  redis.call('HSET', K.job(P, id), 'status', 'in_progress', 'started_at', fmt(now))
  emit(P, now, 'job_started', id, wid, attempt, nil, true)
  return {'OK'}
end

redis.register_function{function_name = 'emp_start', callback = start, flags = {'allow-oom'}}
