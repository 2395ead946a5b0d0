--[[
  _job.lua: one job's record: its place in the order (score, queue member), reading its hash,
  fencing (is this the current attempt?), its attempt history and its end.
]]

-- Order: one score for submit, retry, requeue, release and promotion (docs/internals.md "Order").
local function job_score(j)
  local prio = tonumber(j.workflow_priority) or tonumber(j.priority) or D.PRIORITY
  local t = tonumber(j.workflow_datetime) or tonumber(j.created_at) or EPOCH_MS
  local rel = t - EPOCH_MS
  if rel < 0 then rel = 0 end
  if rel > TIME_SPAN - 1 then rel = TIME_SPAN - 1 end
  return (1000 - prio) * TIME_SPAN + rel
end

-- Queue member: 12 hex digits of seq (ties in score go by submission order), a flag ('!' when the
-- job avoids workers it ran out of memory on: claims check it per job), then the id.
local function job_member(j, id)
  local flag = ':'
  if nonempty(j.avoid_workers) then flag = '!' end
  return string.format('%012x', tonumber(j.seq)) .. flag .. id
end

local function member_id(m)
  return string.sub(m, 14)
end

local JOB_FIELDS = {'service', 'sig', 'seq', 'priority', 'created_at', 'workflow_priority',
  'workflow_datetime', 'workflow_id', 'customer_id', 'avoid_workers', 'gpu_gb_over', 'status',
  'attempt', 'worker_id', 'tries', 'lost', 'unavailable', 'max_attempts', 'started_at',
  'assigned_at', 'timeout_s', 'step', 'total_steps', 'flow'}

-- HMGET of many fields is costly inside Lua (the reply becomes a table): callers that need a few
-- fields pass their own list; the first field must be one every job has (it tells existence).
local CLAIM_FIELDS = {'attempt', 'timeout_s', 'workflow_id', 'customer_id', 'max_attempts', 'step', 'total_steps'}
local RULE_FIELDS = {'status', 'customer_id', 'workflow_id', 'avoid_workers', 'gpu_gb_over'}

local function load_job(P, id, fields)
  fields = fields or JOB_FIELDS
  local v = redis.call('HMGET', K.job(P, id), unpack(fields))
  if not v[1] and fields ~= CLAIM_FIELDS then return nil end
  local j = {}
  for i, f in ipairs(fields) do
    if v[i] then j[f] = v[i] end
  end
  return j
end

-- The retention TTL as text, formatted once at load (a number argument is formatted on every call).
local RETENTION_TTL = '' .. D.RETENTION_S

-- Terminal states keep the job for the retention period, then everything about it expires.
-- EXPIRE of a key that does not exist yet does nothing: a job's stream exists once a worker claimed
-- it, but a job that ends before any claim (cancel, unworkable expiry) must write its event first.
-- `jkey`: K.job(P, id) when the caller has built it already (optional).
-- Flows (_flows.lua, docs/flows.md): FLOW.ended(P, now, id, status, flow) settles the children of a
-- job that ended. Declared here, defined in _flows.lua (loaded later: it queues children with
-- enqueue). Called only for a job whose `flow` field is set, so a job without children pays nothing.
local FLOW = {}

local function finish(P, now, id, status, jkey)
  redis.call('ZADD', K.done(P, status), fmt(now), id)
  redis.call('EXPIRE', jkey or K.job(P, id), RETENTION_TTL)
  redis.call('EXPIRE', K.payload(P, id), RETENTION_TTL)
  redis.call('EXPIRE', K.job_events(P, id), RETENTION_TTL)
end

-- The successful end of attempt j (the caller fenced it: current_attempt): ONE HSET of the job with
-- every field completing sets (status, finished_at, progress 100, and result, started_at when it was
-- still assigned, the final progress message when given), its lease dropped, its retention set, its
-- events: job_progress {progress: 100, message} when `message` is given, then job_completed. The
-- worker record is the caller's to write (the claim that follows, or free_worker).
local function complete_attempt(P, now, id, attempt, wid, j, result, message)
  local jkey = K.job(P, id)
  local nowf = fmt(now)
  local fields = {'status', 'completed', 'finished_at', nowf, 'progress', '100'}
  if nonempty(result) then fields[#fields + 1] = 'result'; fields[#fields + 1] = result end
  if j.status == 'assigned' then fields[#fields + 1] = 'started_at'; fields[#fields + 1] = nowf end
  local has_message = nonempty(message)
  if has_message then fields[#fields + 1] = 'message'; fields[#fields + 1] = message end
  redis.call('HSET', jkey, unpack(fields))
  redis.call('ZREM', K.leases(P), id)
  finish(P, now, id, 'completed', jkey)
  if has_message then
    emit(P, now, 'job_progress', id, wid, attempt, '{"progress":100,"message":' .. json_str(message) .. '}', true)
  end
  emit(P, now, 'job_completed', id, wid, attempt, nil, true)
  if j.flow then FLOW.ended(P, now, id, 'completed', j.flow) end -- flows: after the parent's own events
end

local function fail_final(P, now, id, j, fclass, err)
  redis.call('HSET', K.job(P, id), 'status', 'failed', 'finished_at', fmt(now),
    'failure_class', fclass, 'error', err)
  finish(P, now, id, 'failed')
  if j.flow then FLOW.ended(P, now, id, 'failed', j.flow) end -- flows: settle its children
end

-- Append one attempt's record to the job's history (only attempts that did not complete:
-- the completing attempt is described by the job's own fields). The oldest go past D.HISTORY_MAX.
local function add_history(P, id, j, now, outcome, fclass, err)
  local key = K.job(P, id)
  local raw = redis.call('HGET', key, 'history')
  local hist = {}
  if raw then
    local ok, t = pcall(cjson.decode, raw)
    if ok and type(t) == 'table' then hist = t end
  end
  local entry = {attempt = tonumber(j.attempt) or 0, worker_id = j.worker_id or '',
    started_at = tonumber(j.started_at or j.assigned_at) or 0, ended_at = now, outcome = outcome}
  if nonempty(fclass) then entry.failure_class = fclass end
  if nonempty(err) then entry.error = string.sub(err, 1, D.HISTORY_ERROR_MAX) end
  hist[#hist + 1] = entry
  while #hist > D.HISTORY_MAX do table.remove(hist, 1) end
  redis.call('HSET', key, 'history', cjson.encode(hist))
end

local function free_worker(P, wid, id)
  local wk = K.worker(P, wid)
  if redis.call('HGET', wk, 'job') == id then
    redis.call('HSET', wk, 'status', 'idle', 'job', '')
  end
end

-- Fencing: is (id, attempt, worker) the job's current attempt? Returns j or nil, code.
local FENCE_FIELDS = {'status', 'attempt', 'worker_id', 'flow'} -- flow: see FLOW

local function current_attempt(P, id, attempt, wid, full)
  local j
  if full then
    j = load_job(P, id)
  else
    local v = redis.call('HMGET', K.job(P, id), unpack(FENCE_FIELDS))
    if v[1] then j = {status = v[1], attempt = v[2], worker_id = v[3], flow = v[4] or nil} end
  end
  if j == nil then return nil, 'NOT_FOUND' end
  if not ACTIVE[j.status] or j.attempt ~= attempt or (nonempty(wid) and j.worker_id ~= wid) then
    return j, 'STALE'
  end
  return j, nil
end

-- The reply of a fenced call that was refused: {'STALE', status, attempt} | {'NOT_FOUND', '', ''}.
local function stale_reply(j, err)
  return {err, j and j.status or '', j and j.attempt or ''}
end
