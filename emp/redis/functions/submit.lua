--[[
  emp_submit: add one job or a batch, all or nothing.

  KEYS[1]  events      the event stream (declared so the call routes to the namespace's slot)
  ARGV[1]  P           key prefix "{ns}:"
  ARGV[2]  max_payload largest accepted payload, bytes: the client's setting ('' = D.MAX_PAYLOAD_BYTES)
  ARGV[3]  n           number of jobs that follow (1..D.MAX_BATCH), SUBMIT_FIELDS (14) values each:
           id, service, priority, payload (JSON object text), requirements (canonical JSON text),
           customer_id, workflow_id, workflow_priority, workflow_datetime, step, total_steps,
           max_attempts, timeout_s, run_at ('' = not set)
     or    'n:t'       the shared form (what emp's client sends): n jobs over t templates (1..n).
           Then t templates of the 13 values after the id, then n pairs: id, template number.
           A batch of copies is 13 + 2n values instead of 14n (packing the arguments is most of
           the client's time per job, and the Function judges each template once).
           Flows (plain form only): 3 more values, 'FLOW', flow id, block (docs/flows.md and
           _flows.lua FLOW.check): the listed jobs wait for their parents (status waiting).
  Reply    {'OK', status_1, ..., status_n}  status = pending | scheduled | unworkable | waiting
  Errors   EMP_INVALID batch: ...             (bad count or argument count; nothing written)
           EMP_INVALID job <index>: <reason>  (nothing written). The limits are those of
           emp/model/job.py, from emp/defaults.py: id 1..D.JOB_ID_MAX characters without spaces,
           service 1..D.SERVICE_NAME_MAX of [a-z0-9_.-], priorities in PRIORITY_MIN..MAX,
           max_attempts 1..D.MAX_ATTEMPTS_CEILING, customer_id / workflow_id at most
           D.TEXT_FIELD_MAX, times at most D.MAX_MS, payload a JSON object of at most max_payload
           bytes nested at most D.MAX_JSON_DEPTH deep, requirements a JSON object of at most
           D.REQUIREMENTS_MAX_BYTES bytes nested as deep at most
           EMP_EXISTS <id>                    (a job with that id exists; nothing written)
  Events   job_submitted {service, priority} per job; then job_scheduled {run_at} (on the job's
           stream) | job_unworkable. The pending jobs of one signature wake at most one idle worker
           each, once per batch (docs/internals.md "Submit").

  Cost: a batch is mostly copies of a few distinct jobs, so what can be judged once per distinct
  value is (payload and requirements decoded once per distinct text, a service name checked once),
  and the writes that can be grouped are: one EXISTS and one MSET for the batch, one ZADD per queue
  and index, the heads and the wake-ups once per queue. What stays per job: its hash and its event.
]]

local NF = 14      -- values per job in the plain form
local NT = NF - 1  -- values per template in the shared form (all but the id)

-- The optional fields of the job hash (stored only when given) and their offsets in a job's values.
local OPTIONAL = {{'customer_id', 6}, {'workflow_id', 7}, {'workflow_priority', 8}, {'workflow_datetime', 9},
  {'step', 10}, {'total_steps', 11}, {'timeout_s', 13}}

-- Items per grouped command: well under the limit of Lua's unpack (LUAI_MAXCSTACK, 8000).
local SLICE = 1000

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

-- Why a job is refused, or nil. Its field k (SUBMIT_FIELDS order, 2..14) is args[b + k] (b: its
-- base, see job_bases). `seen`: the ids before it in the batch; `valid`: what was judged valid in
-- this call already (services, payloads, requirements texts, and bases: a template is judged once).
local function refusal(args, id, b, max_payload, seen, valid)
  if id == '' or string.find(id, '[%s%c]') then return 'id must be non-empty, no spaces' end
  if #id > D.JOB_ID_MAX then return 'id must be at most ' .. D.JOB_ID_MAX .. ' characters' end
  if seen[id] then return 'duplicate id in batch: ' .. id end
  if valid.base[b] then return nil end
  local svc = args[b + 2]
  if not valid.service[svc] then
    if not string.find(svc, '^[a-z0-9][a-z0-9_.%-]*$') then return 'service must be lower-case letters, digits, - _ .' end
    if #svc > D.SERVICE_NAME_MAX then return 'service must be at most ' .. D.SERVICE_NAME_MAX .. ' characters' end
    valid.service[svc] = true
  end
  if #args[b + 6] > D.TEXT_FIELD_MAX then return 'customer_id must be at most ' .. D.TEXT_FIELD_MAX .. ' characters' end
  if #args[b + 7] > D.TEXT_FIELD_MAX then return 'workflow_id must be at most ' .. D.TEXT_FIELD_MAX .. ' characters' end
  if not check_int(args[b + 3], D.PRIORITY_MIN, D.PRIORITY_MAX) then
    return 'priority must be an integer ' .. D.PRIORITY_MIN .. '..' .. D.PRIORITY_MAX
  end
  local wprio, wtime, timeout, run_at = args[b + 8], args[b + 9], args[b + 13], args[b + 14]
  if wprio ~= '' and not check_int(wprio, D.PRIORITY_MIN, D.PRIORITY_MAX) then
    return 'workflow_priority must be an integer ' .. D.PRIORITY_MIN .. '..' .. D.PRIORITY_MAX
  end
  if wtime ~= '' and not check_int(wtime, 0, D.MAX_MS) then return 'workflow_datetime must be epoch milliseconds' end
  if not check_int(args[b + 12], 1, D.MAX_ATTEMPTS_CEILING) then
    return 'max_attempts must be 1..' .. D.MAX_ATTEMPTS_CEILING
  end
  if timeout ~= '' and not (tonumber(timeout) and tonumber(timeout) > 0) then return 'timeout_s must be a positive number' end
  if run_at ~= '' and not check_int(run_at, 0, D.MAX_MS) then return 'run_at must be epoch ms' end
  local payload = args[b + 4]
  if not valid.payload[payload] then
    if #payload > max_payload then return 'payload is ' .. #payload .. ' bytes, limit ' .. fmt(max_payload) end
    if string.sub(payload, 1, 1) ~= '{' then return 'payload must be a JSON object' end
    -- Decoded here so a client that skips its own check cannot queue a payload no worker can read.
    local pok, pdec = decode_payload(payload)
    if not pok and string.find(tostring(pdec), 'too many nested', 1, true) then
      return 'payload is nested more than ' .. D.MAX_JSON_DEPTH .. ' levels deep'
    end
    if not pok or type(pdec) ~= 'table' then return 'payload is not valid JSON' end
    valid.payload[payload] = true
  end
  local req = args[b + 5]
  if not valid.requirements[req] then
    if #req > D.REQUIREMENTS_MAX_BYTES then
      return 'requirements is ' .. #req .. ' bytes, limit ' .. D.REQUIREMENTS_MAX_BYTES
    end
    local ok, dec = decode_payload(req) -- the depth limit of payloads applies to requirements too
    if not ok and string.find(tostring(dec), 'too many nested', 1, true) then
      return 'requirements is nested more than ' .. D.MAX_JSON_DEPTH .. ' levels deep'
    end
    if not ok or type(dec) ~= 'table' or string.sub(req, 1, 1) ~= '{' then return 'requirements must be a JSON object' end
    valid.requirements[req] = true
  end
  valid.base[b] = true
  return nil
end

-- The first of ids[1..last] that is taken, or nil.
local function first_existing(P, ids, last)
  for i = 1, last do
    if redis.call('EXISTS', K.job(P, ids[i])) == 1 then return ids[i] end
  end
  return nil
end

-- Each job's id and base (its field k is args[base + k]), from either form of ARGV[3..]; or nil and
-- the reason the batch is refused.
local function job_bases(args)
  local n, t = tonumber(args[3]), nil
  if n == nil then
    local ns, ts = string.match(args[3], '^(%d+):(%d+)$')
    n, t = tonumber(ns), tonumber(ts)
    if not n or not t or t < 1 or t > n then return nil, nil, 'wrong argument count' end
  end
  local last = t and 3 + t * NT + 2 * n or 3 + n * NF
  -- Flows: the plain form may end with a flow block of 3 values (_flows.lua FLOW.check).
  local flow_at = (not t and #args == last + 3 and args[last + 1] == 'FLOW') and last or nil
  if n < 1 or (#args ~= last and not flow_at) then return nil, nil, 'wrong argument count' end
  if n > D.MAX_BATCH then return nil, nil, n .. ' jobs, at most ' .. D.MAX_BATCH .. ' per call' end
  local ids, bases = {}, {}
  for i = 1, n do
    if t then
      local at = 3 + t * NT + 2 * i - 1
      local ti = tonumber(args[at + 1])
      if not ti or ti < 1 or ti > t or ti ~= math.floor(ti) then
        return nil, nil, 'job ' .. i .. ': no template ' .. args[at + 1]
      end
      ids[i], bases[i] = args[at], 3 + (ti - 1) * NT - 1
    else
      local b = 3 + (i - 1) * NF
      ids[i], bases[i] = args[b + 1], b
    end
  end
  return ids, bases, nil, flow_at
end

local function call_sliced(cmd, key, items)
  for i = 1, #items, SLICE do
    local last = math.min(i + SLICE - 1, #items)
    if key then redis.call(cmd, key, unpack(items, i, last)) else redis.call(cmd, unpack(items, i, last)) end
  end
end

-- Append to the list in t[key], created (and its key remembered in order) on first use.
local function group(t, order, key)
  local g = t[key]
  if g == nil then
    g = {}
    t[key] = g
    order[#order + 1] = key
  end
  return g
end

local function submit(keys, args)
  local P, max_payload = args[1], tonumber(args[2]) or D.MAX_PAYLOAD_BYTES
  local ids, bases, bad_batch, flow_at = job_bases(args)
  if bad_batch then return invalid('batch: ' .. bad_batch) end
  local n = #ids

  -- Check everything before the first write. A job is checked, then its id is looked up (as one
  -- EXISTS for the batch; a refusal looks up the ids before the refused job first, so the error is
  -- the one a job-by-job check would give).
  local seen, valid, job_keys = {}, {service = {}, payload = {}, requirements = {}, base = {}}, {}
  for i = 1, n do
    local id = ids[i]
    local why = refusal(args, id, bases[i], max_payload, seen, valid)
    if why then
      local taken = first_existing(P, ids, i - 1)
      if taken then return redis.error_reply('EMP_EXISTS ' .. taken) end
      return invalid('job ' .. i .. ': ' .. why)
    end
    seen[id] = true
    job_keys[i] = K.job(P, id)
  end
  local taken = 0
  for i = 1, n, SLICE do taken = taken + redis.call('EXISTS', unpack(job_keys, i, math.min(i + SLICE - 1, n))) end
  if taken > 0 then return redis.error_reply('EMP_EXISTS ' .. first_existing(P, ids, n)) end
  -- Flows (_flows.lua): edges, parents and references checked before the first write.
  local flow = nil
  if flow_at then
    local why
    flow, why = FLOW.check(P, args, flow_at, ids, bases, seen)
    if why then return invalid(why) end
  end

  local now = now_ms()
  local first_seq = redis.call('INCRBY', K.seq(P), n) - n
  local reply = {'OK'}
  local sig_of, flagged, services = {}, {}, {}
  local payloads = {}
  -- Pending jobs by queue ({score, member, ...}), by workflow / customer index, and by what decides
  -- which idle worker may run them (signature, workflow, customer): see wake_batch below.
  local queued, queue_order = {}, {}
  local indexed, index_order = {}, {}
  local wakes, wake_order = {}, {}
  local unworkable, unworkable_order = {}, {}
  local unworkable_ids = {}
  -- Reused for every job: the hash fields, the event, and the fields job_score / job_member read.
  local fields = {'service', '', 'priority', '', 'created_at', fmt(now), 'sig', '', 'seq', '', 'max_attempts', '',
    'status', ''}
  local event = {'type', 'job_submitted', 'ts', fmt(now), 'job', '', 'data', ''}
  local data_of = {}
  local jt = {created_at = now}
  for i = 1, n do
    local b = bases[i]
    local id, svc, priority, req = ids[i], args[b + 2], args[b + 3], args[b + 5]
    local skey = svc .. '\n' .. req
    local sig = sig_of[skey]
    if sig == nil then
      sig = string.sub(redis.sha1hex(skey), 1, 16)
      sig_of[skey] = sig
      local mark = redis.call('HGET', K.usigs(P, svc), sig)
      flagged[sig] = (mark and string.sub(mark, 1, 1) ~= '~') and true or false
      if not mark and redis.call('HSETNX', K.sigs(P, svc), sig, req) == 1 then
        fill_idle_sig(P, now, svc, sig) -- a new signature: its matching idle workers can be woken
      end
      if not services[svc] then services[svc] = true; services[#services + 1] = svc end
    end
    local seq = first_seq + i
    local run_at = tonumber(args[b + 14])
    local status = 'pending'
    if flow and flow.steps[id] then
      status = 'waiting' -- flows: queued when its parents end (FLOW.link, FLOW.ended)
    elseif run_at and run_at > now then
      status = 'scheduled'
    elseif flagged[sig] then
      status = 'unworkable'
    end
    fields[2], fields[4], fields[8], fields[10], fields[12], fields[14] = svc, priority, sig, fmt(seq), args[b + 12], status
    local nf = 14
    for _, o in ipairs(OPTIONAL) do
      local v = args[b + o[2]]
      if v ~= '' then fields[nf + 1] = o[1]; fields[nf + 2] = v; nf = nf + 2 end
    end
    if status == 'scheduled' then fields[nf + 1] = 'run_at'; fields[nf + 2] = fmt(run_at); nf = nf + 2 end
    -- Kept on the job so a requeue can bring back a signature retired meanwhile (_queue.lua ensure_sig).
    if req ~= '{}' then fields[nf + 1] = 'req'; fields[nf + 2] = req; nf = nf + 2 end
    if flow then nf = FLOW.job_fields(flow, id, fields, nf) end
    redis.call('HSET', job_keys[i], unpack(fields, 1, nf))
    payloads[#payloads + 1] = K.payload(P, id)
    payloads[#payloads + 1] = args[b + 4]

    local dkey = svc .. '\n' .. priority
    local data = data_of[dkey]
    if data == nil then
      data = '{"service":' .. json_str(svc) .. ',"priority":' .. priority .. '}'
      data_of[dkey] = data
    end
    event[6], event[8] = id, data
    append_event(P, event)

    if status == 'waiting' then -- flows: nothing to queue; FLOW.link (after the loop) or FLOW.ended queues it
      redis.call('ZADD', K.waiting(P), now, id) -- the index emp jobs count / list read
    elseif status == 'scheduled' then
      redis.call('ZADD', K.scheduled(P), run_at, id)
      emit(P, now, 'job_scheduled', id, nil, nil, '{"run_at":' .. fmt(run_at) .. '}', true)
    else
      jt.seq, jt.priority, jt.workflow_priority, jt.workflow_datetime = seq, priority, args[b + 8], args[b + 9]
      local score, m = job_score(jt), job_member(jt, id)
      if status == 'unworkable' then
        local q = group(unworkable, unworkable_order, K.unworkable_queue(P, svc, sig))
        q[#q + 1] = score; q[#q + 1] = m
        unworkable_ids[#unworkable_ids + 1] = now; unworkable_ids[#unworkable_ids + 1] = id
        emit(P, now, 'job_unworkable', id, nil, nil, nil, true)
      else
        local wf, cust = args[b + 7], args[b + 6]
        local qk = svc .. '\n' .. sig
        local q = queued[qk]
        if q == nil then
          q = {svc = svc, sig = sig, items = {}, best_score = score, best_m = m, best_seq = seq}
          queued[qk] = q
          queue_order[#queue_order + 1] = qk
        elseif score < q.best_score then
          q.best_score, q.best_m, q.best_seq = score, m, seq
        end
        q.items[#q.items + 1] = score; q.items[#q.items + 1] = m
        if wf ~= '' then
          local x = group(indexed, index_order, K.workflow_queue(P, svc, wf))
          x[#x + 1] = score; x[#x + 1] = m
        end
        if cust ~= '' then
          local x = group(indexed, index_order, K.customer_queue(P, svc, cust))
          x[#x + 1] = score; x[#x + 1] = m
        end
        local wk = qk .. '\n' .. wf .. '\n' .. cust
        local w = wakes[wk]
        if w == nil then
          w = {job = {service = svc, sig = sig, workflow_id = wf, customer_id = cust}, count = 0}
          wakes[wk] = w
          wake_order[#wake_order + 1] = wk
        end
        w.count = w.count + 1
      end
    end
    reply[#reply + 1] = status
  end
  call_sliced('MSET', nil, payloads)
  for _, qk in ipairs(queue_order) do
    local q = queued[qk]
    queue_many(P, q.svc, q.sig, q.items, q.best_score, q.best_m, q.best_seq)
  end
  for _, key in ipairs(index_order) do call_sliced('ZADD', key, indexed[key]) end
  for _, key in ipairs(unworkable_order) do call_sliced('ZADD', key, unworkable[key]) end
  if #unworkable_ids > 0 then call_sliced('ZADD', K.unworkable(P), unworkable_ids) end
  local no_idle = {}
  for _, wk in ipairs(wake_order) do
    local w = wakes[wk]
    wake_many(P, now, w.job, w.count, no_idle)
  end
  redis.call('SADD', K.services(P), unpack(services))
  redis.call('HINCRBY', K.stats(P), 'submitted', n)
  if flow then FLOW.link(P, now, flow) end
  return reply
end

redis.register_function('emp_submit', submit)
