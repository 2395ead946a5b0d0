--[[
  emp_machine_event: a machine lifecycle event, in the event stream and on the machine's record.

  machine_startup (the agent began), machine_step (one startup step done, with its duration),
  machine_ready (total startup time), machine_failed (startup or a process gave up),
  machine_shutdown (with its reason: the machine leaves the live set at once and its record is
  kept a day, marked offline, for post-mortems).

  KEYS[1]  machine:<mid>   KEYS[2]  machines
  ARGV[1]  P, ARGV[2] mid, ARGV[3] event type, ARGV[4] data: JSON object, ARGV[5] ttl_ms
  Reply    {'OK'}
  Errors   EMP_INVALID machine id | event type | ttl_ms | data: not a JSON object (nothing written)
  Events   the event itself (machine_startup, machine_step, ...) with fields machine and data
]]

local MACHINE_EVENTS = {machine_startup = 'starting', machine_step = nil, machine_ready = 'ready',
  machine_failed = 'failed', machine_shutdown = 'offline'}
local KNOWN = {machine_startup = true, machine_step = true, machine_ready = true, machine_failed = true,
  machine_shutdown = true}

local function machine_event(keys, args)
  local P, mid, etype, data, ttl_ms = args[1], args[2], args[3], args[4], tonumber(args[5])
  if not nonempty(mid) then return invalid('machine id') end
  if not KNOWN[etype] then return invalid('event type ' .. tostring(etype)) end
  if not ttl_ms or ttl_ms <= 0 then return invalid('ttl_ms') end
  local ok, t = pcall(cjson.decode, data or '')
  if not ok or type(t) ~= 'table' then return invalid('data: not a JSON object') end
  local now = now_ms()
  local key = K.machine(P, mid)
  local status = MACHINE_EVENTS[etype]
  redis.call('HSET', key, 'id', mid, 'updated', fmt(now), 'last_event', etype)
  if status then redis.call('HSET', key, 'status', status) end
  if etype == 'machine_startup' then redis.call('HSET', key, 'started_at', fmt(now)) end
  if etype == 'machine_ready' then redis.call('HSET', key, 'ready_at', fmt(now)) end
  if etype == 'machine_shutdown' then
    redis.call('HSET', key, 'offline_at', fmt(now))
    redis.call('ZREM', K.machines(P), mid)
    redis.call('EXPIRE', key, D.OFFLINE_RECORD_TTL_S)
  else
    redis.call('PEXPIRE', key, ttl_ms)
    redis.call('ZADD', K.machines(P), now + ttl_ms, mid)
  end
  append_event(P, {'type', etype, 'ts', fmt(now), 'machine', mid, 'data', data})
  return {'OK'}
end

redis.register_function{function_name = 'emp_machine_event', callback = machine_event, flags = {'allow-oom'}}
