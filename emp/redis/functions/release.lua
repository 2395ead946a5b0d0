--[[
  emp_release: give a job back to the queue without using an attempt (graceful shutdown, or a
  worker whose service went away before the job started). It goes back to its original place.

  KEYS[1]  job:<id>
  ARGV[1]  P, ARGV[2] id, ARGV[3] attempt, ARGV[4] wid, ARGV[5] reason
  Reply    {'OK', status} | {'STALE', status, attempt} | {'NOT_FOUND', '', ''}
  Errors   none
  Events   job_released {reason} (the reply's status says where the job went)
]]

local function release(keys, args)
  local P, id, attempt, wid, reason = args[1], args[2], args[3], args[4], args[5] or ''
  local j, err = current_attempt(P, id, attempt, wid, true)
  if err then return stale_reply(j, err) end
  local now = now_ms()
  redis.call('ZREM', K.leases(P), id)
  free_worker(P, wid, id)
  add_history(P, id, j, now, 'released', nil, reason)
  local status = requeue(P, now, id, j, 0)
  emit(P, now, 'job_released', id, wid, attempt, '{"reason":' .. json_str(reason) .. '}', true)
  return {'OK', status}
end

redis.register_function{function_name = 'emp_release', callback = release, flags = {'allow-oom'}}
