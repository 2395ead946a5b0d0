--[[
  emp_submit: add one job or a batch, all or nothing.

  KEYS[1]  events      the event stream (declared so the call routes to the namespace's slot)
  ARGV[1]  P           key prefix "{ns}:"
  ARGV[2]  max_payload largest accepted payload, bytes: the client's setting ('' = D.MAX_PAYLOAD_BYTES)
  ARGV[3]  n           number of jobs that follow (1..D.MAX_BATCH), SUBMIT_FIELDS (14) values each:
           id, service, priority, payload (JSON object text), requirements (canonical JSON text),
           customer_id, workflow_id, workflow_priority, workflow_datetime, step, total_steps,
           max_attempts, timeout_s, run_at ('' = not set)
  Reply    {'OK', status_1, ..., status_n}  status = pending | scheduled | unworkable
  Errors   EMP_INVALID batch: ...             (bad count or argument count; nothing written)
           EMP_INVALID job <index>: <reason>  (nothing written). The limits are those of
           emp/model/job.py, from emp/defaults.py: id 1..D.JOB_ID_MAX characters without spaces,
           service 1..D.SERVICE_NAME_MAX of [a-z0-9_.-], priorities in PRIORITY_MIN..MAX,
           max_attempts 1..D.MAX_ATTEMPTS_CEILING, customer_id / workflow_id at most
           D.TEXT_FIELD_MAX, times at most D.MAX_MS, payload a JSON object of at most max_payload
           bytes nested at most D.MAX_JSON_DEPTH deep, requirements a JSON object
           EMP_EXISTS <id>                    (a job with that id exists; nothing written)
  Events   job_submitted {service, priority} per job; then job_scheduled {run_at} (on the job's
           stream) | job_unworkable, and a pending job wakes one idle worker that can run it
]]

local NF = 14

local function check_int(v, lo, hi)
  local n = tonumber(v)
  return n ~= nil and n == math.floor(n) and n >= lo and n <= hi
end

-- cjson's own depth limit refuses a too-deep payload while it decodes it: no second walk over
-- the value and no copy of the text on the hot path. The setting belongs to the Lua VM that every
-- Function library shares, so it is put back to cjson's default at once.
local CJSON_DEFAULT_DEPTH = 1000
local function decode_payload(text)
  cjson.decode_max_depth(D.MAX_JSON_DEPTH)
  local ok, value = pcall(cjson.decode, text)
  cjson.decode_max_depth(CJSON_DEFAULT_DEPTH)
  return ok, value
end

local function submit(keys, args)
  local P, max_payload, n = args[1], tonumber(args[2]) or D.MAX_PAYLOAD_BYTES, tonumber(args[3])
  if not n or n < 1 or #args ~= 3 + n * NF then return invalid('batch: wrong argument count') end
  if n > D.MAX_BATCH then return invalid('batch: ' .. n .. ' jobs, at most ' .. D.MAX_BATCH .. ' per call') end
  local jobs, seen = {}, {}
  -- Check everything before the first write.
  for i = 1, n do
    local b = 3 + (i - 1) * NF
    local j = {id = args[b + 1], service = args[b + 2], priority = args[b + 3], payload = args[b + 4],
      requirements = args[b + 5], customer_id = args[b + 6], workflow_id = args[b + 7],
      workflow_priority = args[b + 8], workflow_datetime = args[b + 9], step = args[b + 10],
      total_steps = args[b + 11], max_attempts = args[b + 12], timeout_s = args[b + 13], run_at = args[b + 14]}
    local where = 'job ' .. i .. ': '
    if not nonempty(j.id) or string.find(j.id, '[%s%c]') then return invalid(where .. 'id must be non-empty, no spaces') end
    if #j.id > D.JOB_ID_MAX then return invalid(where .. 'id must be at most ' .. D.JOB_ID_MAX .. ' characters') end
    if seen[j.id] then return invalid(where .. 'duplicate id in batch: ' .. j.id) end
    seen[j.id] = true
    if not string.find(j.service, '^[a-z0-9][a-z0-9_.%-]*$') then
      return invalid(where .. 'service must be lower-case letters, digits, - _ .')
    end
    if #j.service > D.SERVICE_NAME_MAX then
      return invalid(where .. 'service must be at most ' .. D.SERVICE_NAME_MAX .. ' characters')
    end
    if #j.customer_id > D.TEXT_FIELD_MAX then
      return invalid(where .. 'customer_id must be at most ' .. D.TEXT_FIELD_MAX .. ' characters')
    end
    if #j.workflow_id > D.TEXT_FIELD_MAX then
      return invalid(where .. 'workflow_id must be at most ' .. D.TEXT_FIELD_MAX .. ' characters')
    end
    if not check_int(j.priority, D.PRIORITY_MIN, D.PRIORITY_MAX) then
      return invalid(where .. 'priority must be an integer ' .. D.PRIORITY_MIN .. '..' .. D.PRIORITY_MAX)
    end
    if nonempty(j.workflow_priority) and not check_int(j.workflow_priority, D.PRIORITY_MIN, D.PRIORITY_MAX) then
      return invalid(where .. 'workflow_priority must be an integer ' .. D.PRIORITY_MIN .. '..' .. D.PRIORITY_MAX)
    end
    if nonempty(j.workflow_datetime) and not check_int(j.workflow_datetime, 0, D.MAX_MS) then
      return invalid(where .. 'workflow_datetime must be epoch milliseconds')
    end
    if not check_int(j.max_attempts, 1, D.MAX_ATTEMPTS_CEILING) then
      return invalid(where .. 'max_attempts must be 1..' .. D.MAX_ATTEMPTS_CEILING)
    end
    if nonempty(j.timeout_s) and not (tonumber(j.timeout_s) and tonumber(j.timeout_s) > 0) then
      return invalid(where .. 'timeout_s must be a positive number')
    end
    if nonempty(j.run_at) and not check_int(j.run_at, 0, D.MAX_MS) then return invalid(where .. 'run_at must be epoch ms') end
    if #j.payload > max_payload then
      return invalid(where .. 'payload is ' .. #j.payload .. ' bytes, limit ' .. fmt(max_payload))
    end
    if string.sub(j.payload, 1, 1) ~= '{' then return invalid(where .. 'payload must be a JSON object') end
    -- Decoded once here so a client that skips its own check cannot queue a payload no worker can read.
    local pok, pdec = decode_payload(j.payload)
    if not pok and string.find(tostring(pdec), 'too many nested', 1, true) then
      return invalid(where .. 'payload is nested more than ' .. D.MAX_JSON_DEPTH .. ' levels deep')
    end
    if not pok or type(pdec) ~= 'table' then return invalid(where .. 'payload is not valid JSON') end
    local ok, req = pcall(cjson.decode, j.requirements)
    if not ok or type(req) ~= 'table' or string.sub(j.requirements, 1, 1) ~= '{' then
      return invalid(where .. 'requirements must be a JSON object')
    end
    if redis.call('EXISTS', K.job(P, j.id)) == 1 then
      return redis.error_reply('EMP_EXISTS ' .. j.id)
    end
    jobs[i] = j
  end

  local now = now_ms()
  local first_seq = redis.call('INCRBY', K.seq(P), n) - n
  local reply = {'OK'}
  -- Per-call caches: a batch usually repeats a few (service, requirements) pairs.
  local ctx = {no_status = true, flagged = {}, no_idle = {}, sig_known = true}
  local sig_of = {}
  for i, j in ipairs(jobs) do
    local id, svc = j.id, j.service
    j.seq = first_seq + i
    j.created_at = now
    local skey = svc .. '\n' .. j.requirements
    local sig = sig_of[skey]
    if sig == nil then
      sig = string.sub(redis.sha1hex(skey), 1, 16)
      sig_of[skey] = sig
      local flagged = redis.call('HGET', K.usigs(P, svc), sig)
      ctx.flagged[svc .. '\n' .. sig] = (flagged and string.sub(flagged, 1, 1) ~= '~') and true or false
      if not flagged and redis.call('HSETNX', K.sigs(P, svc), sig, j.requirements) == 1 then
        fill_idle_sig(P, now, svc, sig) -- a new signature: its matching idle workers can be woken
      end
    end
    j.sig = sig
    local run_at = tonumber(j.run_at)
    local status = 'pending'
    if run_at and run_at > now then
      status = 'scheduled'
    elseif ctx.flagged[svc .. '\n' .. sig] then
      status = 'unworkable'
    end
    local fields = {'service', svc, 'priority', j.priority, 'created_at', fmt(now), 'sig', sig,
      'seq', fmt(j.seq), 'max_attempts', j.max_attempts, 'status', status}
    for _, f in ipairs({'customer_id', 'workflow_id', 'workflow_priority', 'workflow_datetime', 'step',
      'total_steps', 'timeout_s'}) do
      if nonempty(j[f]) then fields[#fields + 1] = f; fields[#fields + 1] = j[f] end
    end
    if status == 'scheduled' then fields[#fields + 1] = 'run_at'; fields[#fields + 1] = fmt(run_at) end
    -- Kept on the job so a requeue can bring back a signature retired meanwhile (_queue.lua ensure_sig).
    if j.requirements ~= '{}' then fields[#fields + 1] = 'req'; fields[#fields + 1] = j.requirements end
    redis.call('HSET', K.job(P, id), unpack(fields))
    redis.call('SET', K.payload(P, id), j.payload)
    emit(P, now, 'job_submitted', id, nil, nil, '{"service":' .. json_str(svc) .. ',"priority":' .. j.priority .. '}',
      false)
    if status == 'scheduled' then
      redis.call('ZADD', K.scheduled(P), run_at, id)
      emit(P, now, 'job_scheduled', id, nil, nil, '{"run_at":' .. fmt(run_at) .. '}', true)
    else
      enqueue(P, now, id, j, ctx)
      if status == 'unworkable' then emit(P, now, 'job_unworkable', id, nil, nil, nil, true) end
    end
    reply[#reply + 1] = status
  end
  redis.call('SADD', K.services(P), unpack((function()
    local s, out = {}, {}
    for _, j in ipairs(jobs) do if not s[j.service] then s[j.service] = true; out[#out + 1] = j.service end end
    return out
  end)()))
  redis.call('HINCRBY', K.stats(P), 'submitted', n)
  return reply
end

redis.register_function('emp_submit', submit)
