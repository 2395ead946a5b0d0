--[[
  emp_worker_pause: a worker stops claiming because its service is down (or restarting). It stays
  registered (its capabilities still count: jobs for it do not turn unworkable while a ComfyUI
  restarts), but it leaves the idle sets at once, so submissions wake a worker that can run the
  job instead of this one. Its next claim, once the service is back, makes it idle again.

  KEYS[1]  worker:<wid>
  ARGV[1]  P, ARGV[2] wid, ARGV[3] reason
  Reply    {'OK'} | {'NOT_FOUND'}
  Errors   none
  Events   worker_status {status: 'paused', reason}
]]

local function worker_pause(keys, args)
  local P, wid, reason = args[1], args[2], args[3] or ''
  local W = load_worker(P, wid)
  if W == nil then return {'NOT_FOUND'} end
  local now = now_ms()
  leave_idle(P, wid, true)
  redis.call('HSET', K.worker(P, wid), 'status', 'paused', 'paused_reason', reason)
  emit(P, now, 'worker_status', nil, wid, nil,
    '{"status":"paused","reason":' .. json_str(reason) .. '}', false)
  return {'OK'}
end

redis.register_function{function_name = 'emp_worker_pause', callback = worker_pause, flags = {'allow-oom'}}
