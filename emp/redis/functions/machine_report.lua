--[[
  emp_machine_report: a machine agent's heartbeat: its record (host, GPUs, processes, phase) and
  its liveness. Sent every MACHINE_REPORT_INTERVAL with a TTL, so a box that vanished (spot
  machine gone, SIGKILL) drops out of every view on its own: no phantom machines.

  KEYS[1]  machine:<mid>   KEYS[2]  machines (zset: mid -> expiry ms)
  ARGV[1]  P, ARGV[2] mid, ARGV[3] ttl_ms, ARGV[4] record: JSON object
           {status, host{}, gpus[], processes[], workers[], services[], health_url, started_at, ready_at}
  Reply    {'OK'}
  Errors   EMP_INVALID machine id | ttl_ms | record: not a JSON object (nothing written)
  Events   none of its own (lifecycle changes go through emp_machine_event); machine_shutdown
           {reason: 'report lapsed'} for other machines whose reports lapsed (_housekeeping.lua)
]]

local function machine_report(keys, args)
  local P, mid, ttl_ms, record = args[1], args[2], tonumber(args[3]), args[4]
  if not nonempty(mid) then return invalid('machine id') end
  if not ttl_ms or ttl_ms <= 0 then return invalid('ttl_ms') end
  local ok, rec = pcall(cjson.decode, record or '')
  if not ok or type(rec) ~= 'table' then return invalid('record: not a JSON object') end
  local now = now_ms()
  local key = K.machine(P, mid)
  redis.call('HSET', key, 'id', mid, 'record', record, 'updated', fmt(now))
  if nonempty(rec.status) then redis.call('HSET', key, 'status', tostring(rec.status)) end
  redis.call('PEXPIRE', key, ttl_ms)
  redis.call('ZADD', K.machines(P), now + ttl_ms, mid)
  mark_machines_offline(P, now, D.LAPSED_SWEEP_PAGE)
  return {'OK'}
end

redis.register_function{function_name = 'emp_machine_report', callback = machine_report, flags = {'allow-oom'}}
