--[[
  emp_register_worker: a worker announces itself and its capabilities (again after a restart or a
  lapsed registration). Its match cache is dropped, so new capabilities take effect at once.

  KEYS[1]  worker:<wid>
  ARGV[1]  P, ARGV[2] wid, ARGV[3] machine_id, ARGV[4] services (comma list), ARGV[5] caps JSON,
  ARGV[6]  wake token (the worker process blocks on wake:<token>), ARGV[7] worker_ttl_ms,
  ARGV[8]  'paused' when its service is not up yet (it registers, so its capabilities count, but
           is not seen as taking jobs until it claims); anything else: 'idle'
  Reply    {'OK', revived}  revived: unworkable jobs this worker can run, moved back to the queue
  Errors   EMP_INVALID when the id or services are empty, worker_ttl_ms is not positive or caps are not
           a JSON object (nothing written)
  Events   worker_registered {machine_id, services}; job_requeued {from: 'unworkable'} per job revived
]]

local function register_worker(keys, args)
  local P, wid, machine, services, caps_text, wake, ttl = args[1], args[2], args[3], args[4], args[5],
    args[6], tonumber(args[7])
  if not nonempty(wid) then return invalid('worker id is empty') end
  if #split_csv(services) == 0 then return invalid('worker has no services') end
  if not ttl or ttl <= 0 then return invalid('worker_ttl_ms') end
  local ok, caps = pcall(cjson.decode, caps_text)
  if not ok or type(caps) ~= 'table' or string.sub(caps_text, 1, 1) ~= '{' then
    return invalid('capabilities must be a JSON object')
  end
  local wf = caps.workflow_id
  if type(wf) ~= 'string' then wf = '' end
  local cr, allowed = '0', ''
  local ca = caps.customer_access
  if type(ca) == 'table' then
    local a, d = ca.allowed_customers, ca.denied_customers
    if (type(a) == 'table' and #a > 0) or (type(d) == 'table' and #d > 0) or ca.isolation == 'strict' then cr = '1' end
    if type(a) == 'table' and #a > 0 then allowed = cjson.encode(a) end
  end
  local status = 'idle'
  if args[8] == 'paused' then status = 'paused' end
  local now = now_ms()
  local wkey = K.worker(P, wid)
  -- Leave every idle set (its capabilities may have changed: its next empty claim joins the right ones).
  local exists = redis.call('EXISTS', wkey) == 1
  if exists then
    leave_idle(P, wid, true)
    local old_cls = redis.call('HGET', wkey, 'cls')
    if nonempty(old_cls) then redis.call('SREM', K.class_workers(P, old_cls), wid) end
  end
  -- Its capability class (docs/internals.md "Claim index"): workers with the same capabilities text
  -- share one claim index. Workflow / allowed-customers workers claim from their own indexes.
  local cls = ''
  if wf == '' and allowed == '' then
    cls = string.sub(redis.sha1hex(caps_text), 1, 16)
    redis.call('SADD', K.class_workers(P, cls), wid)
  end
  redis.call('DEL', K.worker_matches(P, wid))
  redis.call('HSET', wkey, 'id', wid, 'machine_id', machine or '', 'services', services, 'caps', caps_text,
    'wake', wake or '', 'wf', wf, 'cr', cr, 'allowed', allowed, 'cls', cls, 'status', status, 'job', '',
    'idle', '0', 'registered_at', fmt(now), 'last_seen', fmt(now))
  redis.call('PERSIST', wkey)
  redis.call('ZADD', K.workers(P), now + ttl, wid)
  emit(P, now, 'worker_registered', nil, wid, nil,
    '{"machine_id":' .. json_str(machine or '') .. ',"services":' .. json_str(services) .. '}', false)
  -- A worker that can run an unworkable signature revives it at once (one page; the maintenance
  -- pass moves the rest), so its jobs do not wait for the next pass, and a --burst worker finds them.
  local W = {id = wid, P = P, caps_t = caps}
  local revived = 0
  for _, svc in ipairs(split_csv(services)) do
    for _, sig in ipairs(redis.call('HKEYS', K.usigs(P, svc))) do
      if sig_matches(P, W, svc, sig) then
        revived = revived + (revive_signature(P, now, svc, sig, D.UNWORKABLE_PAGE) or 0)
      end
    end
  end
  return {'OK', revived}
end

redis.register_function{function_name = 'emp_register_worker', callback = register_worker, flags = {'allow-oom'}}
