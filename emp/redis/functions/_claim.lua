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

-- Page bounds as text: a number argument costs a '%.14g' format per call, and a claim reads two or
-- three pages whose bounds are always the same few small numbers (memoized below 4,096).
local range_text = {}
local function bound_text(n)
  local t = range_text[n]
  if t == nil then
    t = int_str(n)
    if n < 4096 then range_text[n] = t end
  end
  return t
end

-- ZRANGE ... WITHSCORES of `count` members from `offset`.
local function zrange_page(key, offset, count)
  return redis.call('ZRANGE', key, bound_text(offset), bound_text(offset + count - 1), 'WITHSCORES')
end

local function beats(score, member, best)
  return best == nil or score < best.score or (score == best.score and member < best.member)
end

-- Walk a secondary index (qwf: / qc:) best-first; return the first job this worker may take.
local function scan_index(P, W, key, now, best, budget)
  local offset, depth = 0, D.CLAIM_LOOKAHEAD
  while true do
    local items = zrange_page(key, offset, depth)
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
    local items = zrange_page(qkey, offset, depth)
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

-- The claim index of the worker's capability class for one service (docs/internals.md "Claim
-- index"), built the first time a worker of the class claims there: every judged signature's class
-- list gains the class if it matches, and the heads it matches are copied (O(live signatures),
-- once). nil: the worker has no class (restricted workers use their own indexes) or the service
-- already indexes D.CLASS_INDEX_MAX classes; the claim walks heads:<svc> then.
local function class_heads_key(P, W, svc)
  if not nonempty(W.cls) then return nil end
  local ckey = K.classes(P, svc)
  local ikey = K.class_heads(P, svc, W.cls)
  if redis.call('HEXISTS', ckey, W.cls) == 1 then return ikey end
  if redis.call('HLEN', ckey) >= D.CLASS_INDEX_MAX then return nil end
  worker_caps(W)
  redis.call('HSET', ckey, W.cls, W.caps or '{}')
  local hk = K.sig_classes(P, svc)
  local judged = redis.call('HGETALL', hk)
  for i = 1, #judged, 2 do
    if sig_matches(P, W, svc, judged[i]) then redis.call('HSET', hk, judged[i], judged[i + 1] .. ' ' .. W.cls) end
  end
  local heads = redis.call('ZRANGE', K.heads(P, svc), 0, -1, 'WITHSCORES')
  for i = 1, #heads, 2 do
    if sig_matches(P, W, svc, string.sub(heads[i], 13)) then redis.call('ZADD', ikey, heads[i + 1], heads[i]) end
  end
  return ikey
end

-- Walk heads:<svc> best-first, skipping signatures this worker does not match (one HMGET of the
-- match cache per page), until no head can beat the best job found. With a class index, walk that
-- instead: it holds only heads the worker matches, so no head is skipped.
local function scan_heads(P, W, svc, now, best, needs_job_check, budget)
  local ikey = class_heads_key(P, W, svc)
  local hkey = ikey or K.heads(P, svc)
  local offset, page = 0, D.HEADS_PAGE
  while true do
    local heads = zrange_page(hkey, offset, page)
    if #heads == 0 then return best end
    local sigs = {}
    for k = 1, #heads, 2 do sigs[#sigs + 1] = string.sub(heads[k], 13) end
    local cached = ikey and {} or redis.call('HMGET', K.worker_matches(P, W.id), unpack(sigs))
    for i = 1, #heads, 2 do
      local hm, hscore = heads[i], tonumber(heads[i + 1])
      if best and (hscore > best.score or (hscore == best.score and string.sub(hm, 1, 12) > string.sub(best.member, 1, 12))) then
        return best
      end
      local sig = sigs[(i + 1) / 2]
      local hit = cached[(i + 1) / 2]
      local matches
      if ikey then
        matches = true
      elseif hit then
        matches = hit == '1'
      else
        matches = sig_matches(P, W, svc, sig)
      end
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

-- The worker fields a claim reads, in one HMGET into the worker table W (the claim's own subset of
-- load_worker); a claim made by complete / fail reads its counter too, as one more field
-- (claim_worker_fields.by_counter: one list per counter name, built once).
local claim_worker_fields = {
  base = {'status', 'services', 'wf', 'cr', 'allowed', 'machine_id', 'last_req', 'last_job', 'last_attempt', 'idle',
    'cls'},
  by_counter = {},
}

local function worker_fields(counter)
  if not counter then return claim_worker_fields.base end
  local list = claim_worker_fields.by_counter[counter]
  if list == nil then
    list = {unpack(claim_worker_fields.base)}
    list[#list + 1] = counter
    claim_worker_fields.by_counter[counter] = list
  end
  return list
end

-- The worker's services as a list. The same text always gives the same list, so each text is split
-- once (the memo lives in the library's Lua state like housekeep_next; it holds one entry per
-- distinct service list of the fleet and starts over past 1,000, so it cannot grow without bound).
-- Callers must not change the list they get.
local services_memo = {lists = {}, n = 0}
local function worker_services(text)
  text = text or ''
  local list = services_memo.lists[text]
  if list == nil then
    list = split_csv(text)
    if services_memo.n >= 1000 then services_memo.lists, services_memo.n = {}, 0 end
    services_memo.lists[text] = list
    services_memo.n = services_memo.n + 1
  end
  return list
end

-- The allowed-customers list of a worker restricted to some customers (allowed_customers, which
-- decodes JSON), memoized by its text like the services list.
local allowed_memo = {lists = {}, n = 0}
local function claim_allowed(W)
  if W.cr ~= '1' or not nonempty(W.allowed) then return nil end
  local list = allowed_memo.lists[W.allowed]
  if list == nil then
    list = allowed_customers(W) or false
    if allowed_memo.n >= 1000 then allowed_memo.lists, allowed_memo.n = {}, 0 end
    allowed_memo.lists[W.allowed] = list
    allowed_memo.n = allowed_memo.n + 1
  end
  return list or nil
end

local function find_best(P, W, services, now)
  local best = nil
  local budget = {n = D.CLAIM_SCAN_MAX}
  local allowed = claim_allowed(W)
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

-- The fields of a claimed job the claim needs: the reply's, and those dequeue() reads.
local CLAIMED_FIELDS = {'attempt', 'timeout_s', 'workflow_id', 'customer_id', 'max_attempts', 'step', 'total_steps'}

-- Returns {'OK', id, attempt, service, payload, timeout_s, customer_id, workflow_id, step,
-- total_steps, max_attempts, status} or {'EMPTY', next_due_ms or '', next_scheduled_ms or ''} or {'NO_WORKER'}.
-- `counter` (optional): a worker counter field ('completed', 'failed') the caller wants incremented;
-- it is written with the claim's own HSET of the worker record, so the complete + claim-next path
-- writes the worker once.
local function claim_next(P, now, wid, reqid, lease_ms, start_now, max_lost, counter)
  local wkey = K.worker(P, wid)
  local v = redis.call('HMGET', wkey, unpack(worker_fields(counter)))
  local wstatus = v[1]
  -- Offline: it left, or its registration lapsed (cleanup): it must register again first.
  if not wstatus or wstatus == 'offline' then
    if counter then redis.call('HINCRBY', wkey, counter, '1') end
    return {'NO_WORKER'}
  end
  local W = {id = wid, P = P, status = wstatus, services = v[2], wf = v[3], cr = v[4], allowed = v[5],
    machine_id = v[6], last_req = v[7], last_job = v[8], last_attempt = v[9], idle = v[10], cls = v[11]}
  local count = counter and (tonumber(v[#claim_worker_fields.base + 1]) or 0) + 1
  reqid = reqid or ''

  -- Idempotency: a retried claim (same request id) gets the same job back.
  if reqid ~= '' and W.last_req == reqid and nonempty(W.last_job) then
    local j = load_job(P, W.last_job)
    if j and ACTIVE[j.status] and j.worker_id == wid and j.attempt == W.last_attempt then
      if counter then redis.call('HSET', wkey, counter, int_str(count)) end
      return claim_reply(P, W.last_job, tonumber(j.attempt), j, j.status)
    end
  end
  local services = worker_services(W.services)

  local next_due, next_sched, kept = nil, nil, false
  if now >= (housekeep_next[P] or 0) then
    next_due, next_sched = housekeep(P, now, max_lost)
    housekeep_next[P] = now + D.HOUSEKEEP_EVERY_MS
    kept = true
  end

  local best = find_best(P, W, services, now)
  if best == nil and not kept then
    local worked
    next_due, next_sched, worked = housekeep(P, now, max_lost)
    housekeep_next[P] = now + D.HOUSEKEEP_EVERY_MS
    if worked then best = find_best(P, W, services, now) end
  end

  if best == nil then
    local isets = join_idle(P, W, services, now + D.IDLE_TTL_MS)
    if counter then
      redis.call('HSET', wkey, 'status', 'idle', 'job', '', 'last_req', reqid, 'last_job', '', 'idle', '1',
        'isets', isets, counter, int_str(count))
    else
      redis.call('HSET', wkey, 'status', 'idle', 'job', '', 'last_req', reqid, 'last_job', '', 'idle', '1',
        'isets', isets)
    end
    return {'EMPTY', next_due and fmt(next_due) or '', next_sched and fmt(next_sched) or ''}
  end

  local id = best.id
  local jkey = K.job(P, id)
  local f = redis.call('HMGET', jkey, unpack(CLAIMED_FIELDS))
  local j = {service = best.service, sig = best.sig, timeout_s = f[2], workflow_id = f[3], customer_id = f[4],
    max_attempts = f[5], step = f[6], total_steps = f[7]}
  dequeue(P, id, j, best.member, best.after)
  if W.idle == '1' then leave_idle(P, wid, true) end
  local attempt = (tonumber(f[1]) or 0) + 1
  local attempt_s = int_str(attempt)
  local nowf = fmt(now)
  local status
  -- One HSET of the job with every field the claim sets.
  if start_now then
    status = 'in_progress'
    redis.call('HSET', jkey, 'status', status, 'attempt', attempt_s, 'worker_id', wid, 'machine_id',
      W.machine_id or '', 'assigned_at', nowf, 'started_at', nowf, 'progress', '0')
  else
    status = 'assigned'
    redis.call('HSET', jkey, 'status', status, 'attempt', attempt_s, 'worker_id', wid, 'machine_id',
      W.machine_id or '', 'assigned_at', nowf, 'progress', '0')
  end
  redis.call('ZADD', K.leases(P), int_str(now + lease_ms), id)
  if counter then
    redis.call('HSET', wkey, 'status', 'busy', 'job', id, 'last_req', reqid, 'last_job', id, 'last_attempt',
      attempt_s, 'idle', '0', counter, int_str(count))
  else
    redis.call('HSET', wkey, 'status', 'busy', 'job', id, 'last_req', reqid, 'last_job', id, 'last_attempt',
      attempt_s, 'idle', '0')
  end
  -- A claim that starts at once writes one event, job_started (it implies job_assigned).
  emit(P, now, start_now and 'job_started' or 'job_assigned', id, wid, attempt_s, nil, true)
  return claim_reply(P, id, attempt, j, status)
end

-- The claim that complete / fail make after the job they end, from their ARGV: args[i] request id,
-- args[i + 1] lease_ms, args[i + 2] start ('1'), args[i + 3] max_lost (see claim.lua). `counter`
-- (optional): see claim_next.
local function claim_after(P, now, wid, args, i, counter)
  return claim_next(P, now, wid, args[i], tonumber(args[i + 1]), args[i + 2] == '1',
    tonumber(args[i + 3]) or D.MAX_LOST_LEASES, counter)
end

-- One entry: args[i] id, args[i + 1] attempt, args[i + 2] wid, args[i + 3] result, args[i + 4]
-- claim, args[i + 5 .. i + 8] the claim (claim_after), args[i + 9] final progress message.
-- emp_complete is one entry at i = 2 (its ARGV has this layout after P); emp_complete_many runs one
-- per slot. Each entry is fenced on its own: a stale one is refused alone, and its claim still happens.
local function complete_entry(P, now, args, i)
  local id, attempt, wid = args[i], args[i + 1], args[i + 2]
  local claiming = args[i + 4] == '1'
  local j, err = current_attempt(P, id, attempt, wid)
  local outcome
  local counted = false
  if err == 'STALE' and j.status == 'completed' and j.attempt == attempt then
    outcome = {'ALREADY', redis.call('HGET', K.job(P, id), 'result') or ''}
  elseif err then
    outcome = stale_reply(j, err)
  else
    complete_attempt(P, now, id, attempt, wid, j, args[i + 3], args[i + 9])
    -- The claim below sets the worker's status and job, and counts the completion in the same HSET;
    -- without it, the worker is idle now.
    if claiming then
      counted = true
    else
      free_worker(P, wid, id)
      redis.call('HINCRBY', K.worker(P, wid), 'completed', '1')
    end
    outcome = {'OK'}
  end
  local nxt = {}
  if claiming then nxt = claim_after(P, now, wid, args, i + 5, counted and 'completed' or nil) end
  return {outcome, nxt}
end
