--[[
  emp_worker_offline: a worker leaves (clean shutdown). It stops being woken or listed as live; its
  record stays a day for post-mortems. Jobs it still holds are not touched: release them first.

  KEYS[1]  worker:<wid>
  ARGV[1]  P, ARGV[2] wid, ARGV[3] reason
  Reply    {'OK'} | {'NOT_FOUND'}
  Errors   none
  Events   worker_offline {reason}
]]

local function worker_offline(keys, args)
  local P, wid, reason = args[1], args[2], args[3] or ''
  local W = load_worker(P, wid)
  if W == nil then return {'NOT_FOUND'} end
  local now = now_ms()
  leave_idle(P, wid, true)
  redis.call('ZREM', K.workers(P), wid)
  redis.call('HSET', K.worker(P, wid), 'status', 'offline', 'offline_at', fmt(now), 'job', '')
  redis.call('EXPIRE', K.worker(P, wid), D.OFFLINE_RECORD_TTL_S)
  redis.call('DEL', K.worker_matches(P, wid))
  leave_class(P, wid)
  emit(P, now, 'worker_offline', nil, wid, nil, '{"reason":' .. json_str(reason) .. '}', false)
  return {'OK'}
end

redis.register_function{function_name = 'emp_worker_offline', callback = worker_offline, flags = {'allow-oom'}}
