--[[
  emp_service_status: a connector reports the state of the service it drives (a ComfyUI, an
  A1111, ...): when the state changes and every SERVICE_REPORT_INTERVAL, with a TTL, so a service
  whose worker died disappears from the fleet view instead of lingering as a phantom.

  KEYS[1]  svc:<sid>   KEYS[2]  svcs (zset: sid -> expiry ms)
  ARGV[1]  P, ARGV[2] sid, ARGV[3] status (starting|idle|active|error|offline), ARGV[4] ttl_ms,
  ARGV[5]  record: JSON object {connector, url, services[], machine_id, workers[], message, info{}}
  Reply    {changed 1|0, since_ms}
  Errors   EMP_INVALID service id | status | ttl_ms | record: not a JSON object (nothing written)
  Events   service_status {id, status, previous, changed, connector, machine_id, url, message}
]]

local SERVICE_STATES = {starting = true, idle = true, active = true, error = true, offline = true}

local function service_status(keys, args)
  local P, sid, status, ttl_ms, record = args[1], args[2], args[3], tonumber(args[4]), args[5]
  if not nonempty(sid) then return invalid('service id') end
  if not SERVICE_STATES[status] then return invalid('status ' .. tostring(status)) end
  if not ttl_ms or ttl_ms <= 0 then return invalid('ttl_ms') end
  local ok, rec = pcall(cjson.decode, record or '')
  if not ok or type(rec) ~= 'table' then return invalid('record: not a JSON object') end
  local now = now_ms()
  local key = K.service_instance(P, sid)
  local prev = redis.call('HMGET', key, 'status', 'since')
  local changed = prev[1] ~= status
  local since = now
  if not changed and prev[2] then since = tonumber(prev[2]) or now end
  local function text(v)
    if v == nil or v == cjson.null then return '' end
    if type(v) == 'table' then return cjson.encode(v) end
    return tostring(v)
  end
  redis.call('HSET', key, 'id', sid, 'status', status, 'since', fmt(since), 'updated', fmt(now),
    'connector', text(rec.connector), 'url', text(rec.url), 'services', text(rec.services),
    'machine_id', text(rec.machine_id), 'workers', text(rec.workers), 'message', text(rec.message),
    'info', text(rec.info), 'models', text(rec.models))
  redis.call('PEXPIRE', key, ttl_ms)
  redis.call('ZADD', K.service_instances(P), now + ttl_ms, sid)
  sweep_lapsed(K.service_instances(P), now)
  local data = cjson.encode({id = sid, status = status, previous = prev[1] or '', changed = changed,
    connector = text(rec.connector), machine_id = text(rec.machine_id), url = text(rec.url),
    message = text(rec.message)})
  emit(P, now, 'service_status', nil, nil, nil, data, false)
  return {changed and 1 or 0, since}
end

redis.register_function{function_name = 'emp_service_status', callback = service_status, flags = {'allow-oom'}}
