--[[
  emp_get_job (read-only): everything about one job, consistent at one instant: its fields, payload,
  requirements (from its signature, or the job's own copy once the signature retired) and its most
  recent events.

  KEYS[1]  job:<id>
  ARGV[1]  P, ARGV[2] id, ARGV[3] how many recent events (clamped to 0..D.LIST_PAGE_MAX,
           '' = D.JOB_EVENTS_PAGE)
  Reply    JSON {"fields": {...}, "payload": text|null, "requirements": text|null,
                 "events": [[stream id, {field: value}], ...]} | '' when the job does not exist
  Errors   none
  Events   none
]]

local function get_job(keys, args)
  local P, id, nev = args[1], args[2], clamp(args[3], 0, D.LIST_PAGE_MAX, D.JOB_EVENTS_PAGE)
  local flat = redis.call('HGETALL', K.job(P, id))
  if #flat == 0 then return '' end
  local f = hash_to_table(flat)
  local req = nil
  if f.service and f.sig then
    req = redis.call('HGET', K.sigs(P, f.service), f.sig) or redis.call('HGET', K.usigs(P, f.service), f.sig)
    if req and string.sub(req, 1, 1) == '~' then req = string.sub(req, 2) end
  end
  -- A retired signature (its queue emptied) is gone from sigs/usigs: the job keeps its own copy
  -- in `req` (stored only when not '{}', so its absence means no requirements).
  if not req and f.sig then req = f.req or '{}' end
  f.req = nil
  local evs = {}
  if nev > 0 then
    local raw = redis.call('XREVRANGE', K.job_events(P, id), '+', '-', 'COUNT', nev)
    for i = #raw, 1, -1 do evs[#evs + 1] = {raw[i][1], hash_to_table(raw[i][2])} end
  end
  return cjson.encode({fields = f, payload = redis.call('GET', K.payload(P, id)) or cjson.null,
    requirements = req or cjson.null, events = evs})
end

redis.register_function{function_name = 'emp_get_job', callback = get_job, flags = {'no-writes'}}
