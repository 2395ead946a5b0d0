--[[
  _claim.lua: take the best job a worker can run (docs/internals.md "Claim"); used by claim.lua,
  and by complete.lua / fail.lua to take the next job in the same call.
]]

-- A claim walks without a cap on signatures or depth (no job is starved behind jobs this worker
-- cannot run), in pages: D.HEADS_PAGE / D.CLAIM_LOOKAHEAD first (the common case ends there),
-- then D.CLAIM_PAGE_DEEP. Job records read to check per-job rules are limited per call by
-- `budget.n` (D.CLAIM_SCAN_MAX): it bounds the time one call can hold Redis when per-job rules
-- skip thousands of jobs (docs/internals.md "Claim").

local INDEX_FIELDS = {'status', 'service', 'sig', 'customer_id', 'workflow_id', 'avoid_workers', 'gpu_gb_over'}

local function beats(score, member, best)
  return best == nil or score < best.score or (score == best.score and member < best.member)
end

-- Walk a secondary index (qwf: / qc:) best-first; return the first job this worker may take.
local function scan_index(P, W, key, now, best, budget)
  local offset, depth = 0, D.CLAIM_LOOKAHEAD
  while true do
    local items = redis.call('ZRANGE', key, offset, offset + depth - 1, 'WITHSCORES')
    for i = 1, #items, 2 do
      local m, score = items[i], tonumber(items[i + 1])
      if not beats(score, m, best) or budget.n <= 0 then return best end
      budget.n = budget.n - 1
      local id = member_id(m)
      local j = load_job(P, id, INDEX_FIELDS)
      if j and j.status == 'pending' and sig_matches(P, W, j.service, j.sig) and job_rules_ok(W, j, now) then
        return {score = score, member = m, id = id, service = j.service, sig = j.sig}
      end
    end
    if #items < 2 * depth then return best end
    offset, depth = offset + depth, D.CLAIM_PAGE_DEEP
  end
end

-- The best job of one queue this worker may take, if it beats `best`. Usually only the head is
-- read; when jobs near the head fail a per-job rule (customer, a job avoiding this worker), the
-- walk goes on down the queue, so one such job never hides the jobs behind it.
local function scan_queue(P, W, svc, sig, now, best, needs_job_check, budget)
  local qkey = K.queue(P, svc, sig)
  local offset, depth = 0, needs_job_check and D.CLAIM_LOOKAHEAD or 2
  while true do
    local items = redis.call('ZRANGE', qkey, offset, offset + depth - 1, 'WITHSCORES')
    for k = 1, #items, 2 do
      local m, score = items[k], tonumber(items[k + 1])
      if not beats(score, m, best) then return best end
      local ok = true
      if needs_job_check or string.sub(m, 13, 13) == '!' then
        if budget.n <= 0 then return best end
        budget.n = budget.n - 1
        local j = load_job(P, member_id(m), RULE_FIELDS)
        ok = j ~= nil and job_rules_ok(W, j, now)
      end
      if ok then
        local found = {score = score, member = m, id = member_id(m), service = svc, sig = sig}
        if offset == 0 and k == 1 then found.after = {items[3], items[4]} end -- {} when it was the only job
        return found
      end
    end
    if #items < 2 * depth then return best end
    offset, depth = offset + depth, D.CLAIM_PAGE_DEEP
  end
end

-- Walk heads:<svc> best-first, skipping signatures this worker does not match (one HMGET of the
-- match cache per page), until no head can beat the best job found.
local function scan_heads(P, W, svc, now, best, needs_job_check, budget)
  local hkey = K.heads(P, svc)
  local offset, page = 0, D.HEADS_PAGE
  while true do
    local heads = redis.call('ZRANGE', hkey, offset, offset + page - 1, 'WITHSCORES')
    if #heads == 0 then return best end
    local sigs = {}
    for k = 1, #heads, 2 do sigs[#sigs + 1] = string.sub(heads[k], 13) end
    local cached = redis.call('HMGET', K.worker_matches(P, W.id), unpack(sigs))
    for i = 1, #heads, 2 do
      local hm, hscore = heads[i], tonumber(heads[i + 1])
      if best and (hscore > best.score or (hscore == best.score and string.sub(hm, 1, 12) > string.sub(best.member, 1, 12))) then
        return best
      end
      local sig = sigs[(i + 1) / 2]
      local hit = cached[(i + 1) / 2]
      local matches
      if hit then matches = hit == '1' else matches = sig_matches(P, W, svc, sig) end
      if matches then best = scan_queue(P, W, svc, sig, now, best, needs_job_check, budget) end
    end
    if #heads < 2 * page then return best end
    offset, page = offset + page, D.CLAIM_PAGE_DEEP
  end
end

-- {'OK', id, attempt, service, payload, timeout_s, customer_id, workflow_id, step, total_steps,
-- max_attempts, status}: a job the worker now holds (claim.lua "Reply").
local function claim_reply(P, id, attempt, j, status)
  local payload = redis.call('GET', K.payload(P, id)) or '{}'
  return {'OK', id, attempt, j.service, payload, j.timeout_s or '', j.customer_id or '', j.workflow_id or '',
    j.step or '', j.total_steps or '', j.max_attempts or '', status}
end

-- Returns {'OK', id, attempt, service, payload, timeout_s, customer_id, workflow_id, step,
-- total_steps, max_attempts, status} or {'EMPTY', next_due_ms or '', next_scheduled_ms or ''} or {'NO_WORKER'}.
local function claim_next(P, now, wid, reqid, lease_ms, start_now, max_lost)
  local wkey = K.worker(P, wid)
  local W = load_worker(P, wid)
  -- Offline: it left, or its registration lapsed (cleanup): it must register again first.
  if W == nil or W.status == 'offline' then return {'NO_WORKER'} end
  local services = split_csv(W.services)

  -- Idempotency: a retried claim (same request id) gets the same job back.
  if nonempty(reqid) and W.last_req == reqid and nonempty(W.last_job) then
    local j = load_job(P, W.last_job)
    if j and ACTIVE[j.status] and j.worker_id == wid and j.attempt == W.last_attempt then
      return claim_reply(P, W.last_job, tonumber(j.attempt), j, j.status)
    end
  end

  local next_due, next_sched, kept = nil, nil, false
  if now >= (housekeep_next[P] or 0) then
    next_due, next_sched = housekeep(P, now, max_lost)
    housekeep_next[P] = now + D.HOUSEKEEP_EVERY_MS
    kept = true
  end

  local allowed = allowed_customers(W)
  local function find()
    local best = nil
    local budget = {n = D.CLAIM_SCAN_MAX}
    for _, svc in ipairs(services) do
      if nonempty(W.wf) then
        best = scan_index(P, W, K.workflow_queue(P, svc, W.wf), now, best, budget)
      elseif allowed then
        for _, c in ipairs(allowed) do
          if type(c) == 'string' then best = scan_index(P, W, K.customer_queue(P, svc, c), now, best, budget) end
        end
      else
        best = scan_heads(P, W, svc, now, best, W.cr == '1', budget)
      end
    end
    return best
  end

  local best = find()
  if best == nil and not kept then
    local worked
    next_due, next_sched, worked = housekeep(P, now, max_lost)
    housekeep_next[P] = now + D.HOUSEKEEP_EVERY_MS
    if worked then best = find() end
  end

  if best == nil then
    local isets = join_idle(P, W, services, now + D.IDLE_TTL_MS)
    redis.call('HSET', wkey, 'status', 'idle', 'job', '', 'last_req', reqid or '', 'last_job', '', 'idle', '1',
      'isets', isets)
    return {'EMPTY', next_due and fmt(next_due) or '', next_sched and fmt(next_sched) or ''}
  end

  local id = best.id
  local j = load_job(P, id, CLAIM_FIELDS)
  j.service, j.sig = best.service, best.sig
  dequeue(P, id, j, best.member, best.after)
  if W.idle == '1' then leave_idle(P, wid, true) end
  local jkey = K.job(P, id)
  local attempt = (tonumber(j.attempt) or 0) + 1
  local status = start_now and 'in_progress' or 'assigned'
  if start_now then
    redis.call('HSET', jkey, 'status', status, 'attempt', attempt, 'worker_id', wid, 'machine_id',
      W.machine_id or '', 'assigned_at', fmt(now), 'started_at', fmt(now), 'progress', '0')
  else
    redis.call('HSET', jkey, 'status', status, 'attempt', attempt, 'worker_id', wid, 'machine_id',
      W.machine_id or '', 'assigned_at', fmt(now), 'progress', '0')
  end
  redis.call('ZADD', K.leases(P), now + lease_ms, id)
  redis.call('HSET', wkey, 'status', 'busy', 'job', id, 'last_req', reqid or '', 'last_job', id,
    'last_attempt', attempt, 'idle', '0')
  -- A claim that starts at once writes one event, job_started (it implies job_assigned).
  emit(P, now, start_now and 'job_started' or 'job_assigned', id, wid, attempt, nil, true)
  return claim_reply(P, id, attempt, j, status)
end

-- The claim that complete / fail make after the job they end, from their ARGV: args[i] request id,
-- args[i + 1] lease_ms, args[i + 2] start ('1'), args[i + 3] max_lost (see claim.lua).
local function claim_after(P, now, wid, args, i)
  return claim_next(P, now, wid, args[i], tonumber(args[i + 1]), args[i + 2] == '1',
    tonumber(args[i + 3]) or D.MAX_LOST_LEASES)
end
