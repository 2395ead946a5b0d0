--[[
  _queue.lua: a job's place among the pending: its queue q:<svc>:<sig>, the heads index a claim
  walks and its per-capability-class copies, the workflow / customer indexes, the unworkable
  queues, and waking one idle worker that can run a job that was just queued.
]]

-- heads:<svc> holds one member per non-empty queue: the head job's seq then the signature, scored
-- with the head's score. So Redis orders the heads exactly as jobs are ordered (score, then seq),
-- and a claim can stop at the first head that can beat nothing further down.
local function head_member(qmember, sig)
  return string.sub(qmember, 1, 12) .. sig
end

-- Claim index (docs/internals.md "Claim index"): mheads:<svc>:<class> holds, for each capability
-- class indexed for the service (mcls:<svc>, at most D.CLASS_INDEX_MAX), the heads entries of the
-- signatures that class matches, so a claim walks only heads it can run. hcls:<svc> remembers which
-- indexed classes match each signature (' c1 c2', '' for none); a signature missing there is judged
-- the first time its head moves, against every indexed class (matching is a pure function of the
-- class's capabilities and the signature's requirements, so the judgement never goes stale).
local function sig_class_list(P, svc, sig)
  local hk = K.sig_classes(P, svc)
  local list = redis.call('HGET', hk, sig)
  if list then return list end
  local classes = redis.call('HGETALL', K.classes(P, svc))
  if #classes == 0 then return '' end
  local text = redis.call('HGET', K.sigs(P, svc), sig) or redis.call('HGET', K.usigs(P, svc), sig)
  -- No requirements to judge by (cannot happen for a queued signature): judge it next time.
  if not text then return '' end
  if string.sub(text, 1, 1) == '~' then text = string.sub(text, 2) end
  local ok, req = pcall(cjson.decode, text)
  list = ''
  for i = 1, #classes, 2 do
    if ok and requirements_match(req, decode_caps(classes[i + 1]), svc) then list = list .. ' ' .. classes[i] end
  end
  redis.call('HSET', hk, sig, list)
  return list
end

-- Every change of heads:<svc> goes through heads_remove / heads_add, which keep the class indexes
-- alike. heads_remove returns the signature's class list (for heads_add), or nil when `hm` was not
-- the signature's heads entry.
local function heads_remove(P, svc, sig, hm)
  if redis.call('ZREM', K.heads(P, svc), hm) == 0 then return nil end
  local list = sig_class_list(P, svc, sig)
  for cls in string.gmatch(list, '%S+') do redis.call('ZREM', K.class_heads(P, svc, cls), hm) end
  return list
end

local function heads_add(P, svc, sig, score, hm, list)
  redis.call('ZADD', K.heads(P, svc), score, hm)
  for cls in string.gmatch(list or sig_class_list(P, svc, sig), '%S+') do
    redis.call('ZADD', K.class_heads(P, svc, cls), score, hm)
  end
end

-- A worker leaves its capability class (offline, lapsed, registered again).
local function leave_class(P, wid)
  local cls = redis.call('HGET', K.worker(P, wid), 'cls')
  if nonempty(cls) then redis.call('SREM', K.class_workers(P, cls), wid) end
end

-- Drop the claim index of every class no live worker has any more (emp_cleanup). Its signatures'
-- class lists go with it (hcls:<svc> is deleted whole, so entries are judged again, lazily, against
-- the classes left): at most D.CLASS_INDEX_MAX classes per service are looked at.
local function drop_idle_classes(P)
  for _, svc in ipairs(redis.call('SMEMBERS', K.services(P))) do
    local ckey = K.classes(P, svc)
    for _, cls in ipairs(redis.call('HKEYS', ckey)) do
      if redis.call('SCARD', K.class_workers(P, cls)) == 0 then
        redis.call('HDEL', ckey, cls)
        redis.call('DEL', K.class_heads(P, svc, cls), K.sig_classes(P, svc))
      end
    end
  end
end

-- Point the signature's heads entry at the queue's current head (old_head: the queue member that
-- was the head before, or nil).
local function reset_head(P, svc, sig, old_head)
  local list = nil
  if old_head then list = heads_remove(P, svc, sig, head_member(old_head, sig)) end
  local h = redis.call('ZRANGE', K.queue(P, svc, sig), 0, 0, 'WITHSCORES')
  if h[1] then heads_add(P, svc, sig, h[2], head_member(h[1], sig), list) end
end

-- Remove a pending job from its queue and the secondary indexes.
-- `after`: when the caller read the queue and knows what follows the head it removes:
-- {member, score} of the next job, or {} when the queue becomes empty (saves a read).
local function dequeue(P, id, j, member, after)
  local m = member or job_member(j, id)
  redis.call('ZREM', K.queue(P, j.service, j.sig), m)
  local list = heads_remove(P, j.service, j.sig, head_member(m, j.sig))
  if list then
    if after == nil then
      local h = redis.call('ZRANGE', K.queue(P, j.service, j.sig), 0, 0, 'WITHSCORES')
      if h[1] then heads_add(P, j.service, j.sig, h[2], head_member(h[1], j.sig), list) end
    elseif after[1] then
      heads_add(P, j.service, j.sig, after[2], head_member(after[1], j.sig), list)
    end
  end
  if nonempty(j.workflow_id) then redis.call('ZREM', K.workflow_queue(P, j.service, j.workflow_id), m) end
  if nonempty(j.customer_id) then redis.call('ZREM', K.customer_queue(P, j.service, j.customer_id), m) end
end

-- Idle sets (docs/internals.md "Wake"). An idle worker is in idle:<svc> for each of its services
-- and, by what it may take: an unrestricted worker in idle:<svc>:<sig> for every live signature it
-- matches; a workflow-restricted one in idlewf:<svc>:<wf>; one with an allowed-customers list in
-- idlec:<svc>:<customer> per allowed customer. So a job wakes a worker from the sets of its own
-- signature, workflow and customer only: idle workers that cannot run it are never looked at.
-- The worker record keeps the list of its sets (field `isets`, a JSON array of keys), so leaving
-- idle costs O(its sets).

local function worker_isets(P, wid)
  local raw = redis.call('HGET', K.worker(P, wid), 'isets')
  if not nonempty(raw) then return {} end
  local ok, t = pcall(cjson.decode, raw)
  if ok and type(t) == 'table' then return t end
  return {}
end

-- The worker leaves every idle set it is in (woken, claimed, paused, offline, lapsed, registered
-- again). `exists`: the worker hash exists (never create a hash for a worker that is gone).
local function leave_idle(P, wid, exists)
  for _, key in ipairs(worker_isets(P, wid)) do redis.call('ZREM', key, wid) end
  if exists then redis.call('HSET', K.worker(P, wid), 'idle', '0', 'isets', '') end
end

-- May this worker record be woken for jobs of one signature it matches, whatever the job's
-- customer or workflow? (Restricted workers wait in their workflow / customer sets instead.)
local function unrestricted(W)
  return not nonempty(W.wf) and not (W.cr == '1' and nonempty(W.allowed))
end

local function allowed_customers(W)
  if W.cr ~= '1' or not nonempty(W.allowed) then return nil end
  local ok, t = pcall(cjson.decode, W.allowed)
  if ok and type(t) == 'table' and #t > 0 then return t end
  return nil
end

-- HMGET of the match cache for many signatures, in slices (Lua's unpack has a stack limit).
local function cached_matches(P, wid, sigs)
  local out = {}
  for i = 1, #sigs, 500 do
    local slice = {}
    for k = i, math.min(i + 499, #sigs) do slice[#slice + 1] = sigs[k] end
    local got = redis.call('HMGET', K.worker_matches(P, wid), unpack(slice))
    for k = 1, #slice do out[#out + 1] = got[k] end
  end
  return out
end

-- A claim found nothing: the worker joins the idle sets of what it can take, until `deadline`.
-- Signatures it has not judged yet (empty queues a claim does not walk) are judged now, once.
-- Cost: O(live signatures of its services), and live signatures follow what is pending.
local function join_idle(P, W, services, deadline)
  local keys = {}
  local allowed = allowed_customers(W)
  for _, svc in ipairs(services) do
    keys[#keys + 1] = K.idle(P, svc)
    if nonempty(W.wf) then
      keys[#keys + 1] = K.idle_workflow(P, svc, W.wf)
    elseif allowed then
      for _, c in ipairs(allowed) do
        if type(c) == 'string' and c ~= '' then keys[#keys + 1] = K.idle_customer(P, svc, c) end
      end
    else
      local sigs = redis.call('HKEYS', K.sigs(P, svc))
      local cached = cached_matches(P, W.id, sigs)
      for i, sig in ipairs(sigs) do
        local hit = cached[i]
        local ok
        if hit then ok = hit == '1' else ok = sig_matches(P, W, svc, sig) end
        if ok then keys[#keys + 1] = K.idle_sig(P, svc, sig) end
      end
    end
  end
  local now_in = {}
  for _, key in ipairs(keys) do
    now_in[key] = true
    redis.call('ZADD', key, deadline, W.id)
  end
  if W.idle == '1' then
    for _, key in ipairs(worker_isets(P, W.id)) do
      if not now_in[key] then redis.call('ZREM', key, W.id) end
    end
  end
  return cjson.encode(keys)
end

-- A signature became live (created by a submit, re-created by a requeue after it was retired,
-- revived from unworkable): the idle unrestricted workers of its service that match it join its
-- idle set at once (at most D.IDLE_FILL_MAX; the others join at their next idle poll).
local function fill_idle_sig(P, now, svc, sig)
  local idle = redis.call('ZRANGEBYSCORE', K.idle(P, svc), now, '+inf', 'WITHSCORES', 'LIMIT', 0, D.IDLE_FILL_MAX)
  local skey = K.idle_sig(P, svc, sig)
  for i = 1, #idle, 2 do
    local wid, deadline = idle[i], idle[i + 1]
    local W = load_worker(P, wid)
    if W and W.idle == '1' and W.status == 'idle' and unrestricted(W) and sig_matches(P, W, svc, sig) then
      if redis.call('ZADD', skey, deadline, wid) == 1 then
        local sets = worker_isets(P, wid)
        sets[#sets + 1] = skey
        redis.call('HSET', K.worker(P, wid), 'isets', cjson.encode(sets))
      end
    end
  end
end

-- Look at up to D.WAKE_CANDIDATES members of one idle set; wake the first that may run the job.
-- Entries that are no longer idle (lapsed deadline, gone, offline) are cleaned up on the way.
-- `check_sig`: the set does not imply the signature (workflow / customer sets).
-- Returns the worker id, nil (none of these may run it), or false (the set is empty).
local function wake_from(P, now, key, j, check_sig)
  local idle = redis.call('ZRANGE', key, 0, D.WAKE_CANDIDATES - 1, 'WITHSCORES')
  if #idle == 0 then return false end
  for i = 1, #idle, 2 do
    local wid, deadline = idle[i], tonumber(idle[i + 1])
    local W = load_worker(P, wid)
    if W == nil then
      redis.call('ZREM', key, wid)
    elseif deadline < now or W.status == 'offline' or W.idle ~= '1' then
      redis.call('ZREM', key, wid)
      leave_idle(P, wid, true)
    elseif (not check_sig or sig_matches(P, W, j.service, j.sig)) and job_rules_ok(W, j, now) then
      leave_idle(P, wid, true)
      if nonempty(W.wake) then
        local wk = K.wake(P, W.wake)
        redis.call('LPUSH', wk, wid)
        redis.call('PEXPIRE', wk, D.WAKE_LIST_TTL_MS)
      end
      return wid
    end
  end
  return nil
end

-- wake_from, remembering in `no_idle` (per call) the sets found empty.
local function wake_from_unless_empty(P, now, key, j, check_sig, no_idle)
  if no_idle[key] then return nil end
  local woke = wake_from(P, now, key, j, check_sig)
  if woke == false then no_idle[key] = true end
  return woke or nil
end

-- Wake one idle worker that can run this job: from its signature's set, then (a job with a
-- workflow or customer) from the sets of workers restricted to them. `no_idle` caches, per call,
-- the services with no idle worker at all and the idle sets found empty.
local function wake_one(P, now, id, j, no_idle)
  local svc = j.service
  if no_idle[svc] == nil then no_idle[svc] = redis.call('EXISTS', K.idle(P, svc)) == 0 end
  if no_idle[svc] then return nil end
  local woke = wake_from_unless_empty(P, now, K.idle_sig(P, svc, j.sig), j, false, no_idle)
  if not woke and nonempty(j.workflow_id) then
    woke = wake_from_unless_empty(P, now, K.idle_workflow(P, svc, j.workflow_id), j, true, no_idle)
  end
  if not woke and nonempty(j.customer_id) then
    woke = wake_from_unless_empty(P, now, K.idle_customer(P, svc, j.customer_id), j, true, no_idle)
  end
  return woke
end

-- Wake up to `count` idle workers for `count` pending jobs alike in everything that decides who may
-- run them (service, signature, workflow, customer): a submitted batch wakes once per kind of job,
-- not once per job, and stops at the first miss (the next job of the kind would miss as well).
local function wake_many(P, now, j, count, no_idle)
  for _ = 1, count do
    if not wake_one(P, now, nil, j, no_idle) then return end
  end
end

-- Make sure the job's signature is live before it is queued: a requeued, promoted or retried job
-- may come back after its signature was retired (docs/internals.md "Signature lifecycle"). Its
-- requirements are on the job (`req`, absent when they are `{}`).
local function ensure_sig(P, now, id, svc, sig)
  local skey = K.sigs(P, svc)
  if redis.call('HEXISTS', skey, sig) == 1 then return end
  local text = redis.call('HGET', K.job(P, id), 'req') or '{}'
  redis.call('HSET', skey, sig, text)
  fill_idle_sig(P, now, svc, sig)
end

-- Put a job in its place: the pending queue, or the unworkable queue when its signature is
-- judged unworkable. Writes the job's status unless `ctx.no_status` (submit writes it with the rest
-- of the hash). `ctx` may carry per-call caches: ctx.flagged[svc..sig] (is the signature flagged
-- unworkable), ctx.no_idle (see wake_one), ctx.sig_known (the caller made the signature live).
-- Returns the status the job got.
local function enqueue(P, now, id, j, ctx)
  ctx = ctx or {}
  local svc, sig = j.service, j.sig
  local score = job_score(j)
  local m = job_member(j, id)
  local fkey = svc .. '\n' .. sig
  local unworkable = ctx.flagged and ctx.flagged[fkey]
  if unworkable == nil then
    local flagged = redis.call('HGET', K.usigs(P, svc), sig)
    unworkable = (flagged and string.sub(flagged, 1, 1) ~= '~') and true or false
    if ctx.flagged then ctx.flagged[fkey] = unworkable end
  end
  if unworkable then
    redis.call('ZADD', K.unworkable_queue(P, svc, sig), score, m)
    redis.call('ZADD', K.unworkable(P), now, id)
    if not ctx.no_status then redis.call('HSET', K.job(P, id), 'status', 'unworkable') end
    return 'unworkable'
  end
  if not ctx.sig_known then ensure_sig(P, now, id, svc, sig) end
  local qkey = K.queue(P, svc, sig)
  redis.call('ZADD', qkey, score, m)
  local h = redis.call('ZRANGE', qkey, 0, 1)
  if h[1] == m then -- the new job is the queue's head now
    local list = nil
    if h[2] then list = heads_remove(P, svc, sig, head_member(h[2], sig)) end
    heads_add(P, svc, sig, score, head_member(m, sig), list)
  end
  if nonempty(j.workflow_id) then redis.call('ZADD', K.workflow_queue(P, svc, j.workflow_id), score, m) end
  if nonempty(j.customer_id) then redis.call('ZADD', K.customer_queue(P, svc, j.customer_id), score, m) end
  if not ctx.no_status then redis.call('HSET', K.job(P, id), 'status', 'pending') end
  wake_one(P, now, id, j, ctx.no_idle or {})
  return 'pending'
end

-- Add new pending jobs of one signature to its queue (submit): one ZADD (in slices: Lua's unpack
-- has a stack limit), and the heads entry moves only when the best of them beats the queue's head.
-- `items`: {score, member, ...}; best_*: the best-ordered of them (lowest score, then lowest seq).
-- The caller adds the workflow / customer index entries and wakes workers (wake_many).
local function queue_many(P, svc, sig, items, best_score, best_member, best_seq)
  local qkey = K.queue(P, svc, sig)
  local old = redis.call('ZRANGE', qkey, 0, 0, 'WITHSCORES')
  for i = 1, #items, 1000 do redis.call('ZADD', qkey, unpack(items, i, math.min(i + 999, #items))) end
  local list = nil
  if old[1] then
    local old_score = tonumber(old[2])
    if old_score < best_score or (old_score == best_score and tonumber(string.sub(old[1], 1, 12), 16) < best_seq) then
      return
    end
    list = heads_remove(P, svc, sig, head_member(old[1], sig))
  end
  heads_add(P, svc, sig, best_score, head_member(best_member, sig), list)
end

-- Back to the queue with its original place (release, retry without delay, lease expiry, promote).
local function requeue(P, now, id, j, delay_ms)
  redis.call('HDEL', K.job(P, id), 'worker_id', 'assigned_at', 'started_at', 'progress', 'message')
  j.worker_id = nil
  if delay_ms and delay_ms > 0 then
    redis.call('ZADD', K.scheduled(P), now + delay_ms, id)
    redis.call('HSET', K.job(P, id), 'status', 'scheduled', 'run_at', fmt(now + delay_ms))
    return 'scheduled'
  end
  return enqueue(P, now, id, j)
end

-- Unflag an unworkable signature and move one page of its jobs back to their places (used by
-- emp_revive_unworkable and by a registration that can run it). Returns moved, remaining, or nil
-- when the signature is not flagged.
local function revive_signature(P, now, svc, sig, page)
  local flagged = redis.call('HGET', K.usigs(P, svc), sig)
  if not flagged then return nil end
  local text = flagged
  if string.sub(text, 1, 1) == '~' then text = string.sub(text, 2) end
  if redis.call('HSET', K.sigs(P, svc), sig, text) == 1 then fill_idle_sig(P, now, svc, sig) end
  redis.call('HSET', K.usigs(P, svc), sig, '~' .. text)
  local ukey = K.unworkable_queue(P, svc, sig)
  local members = redis.call('ZRANGE', ukey, 0, page - 1)
  for _, m in ipairs(members) do
    local id = member_id(m)
    redis.call('ZREM', ukey, m)
    redis.call('ZREM', K.unworkable(P), id)
    local j = load_job(P, id)
    if j and j.status == 'unworkable' then
      enqueue(P, now, id, j, {sig_known = true})
      emit(P, now, 'job_requeued', id, nil, nil, '{"from":"unworkable"}', true)
    end
  end
  local remaining = redis.call('ZCARD', ukey)
  if remaining == 0 then redis.call('HDEL', K.usigs(P, svc), sig) end
  return #members, remaining
end
