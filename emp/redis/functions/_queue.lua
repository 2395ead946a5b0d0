--[[
  _queue.lua: a job's place among the pending: its queue q:<svc>:<sig>, the heads index a claim
  walks, the workflow / customer indexes, the unworkable queues, and waking one idle worker that
  can run a job that was just queued.
]]

-- heads:<svc> holds one member per non-empty queue: the head job's seq then the signature, scored
-- with the head's score. So Redis orders the heads exactly as jobs are ordered (score, then seq),
-- and a claim can stop at the first head that can beat nothing further down.
local function head_member(qmember, sig)
  return string.sub(qmember, 1, 12) .. sig
end

-- Point the signature's heads entry at the queue's current head (old_head: the queue member that
-- was the head before, or nil).
local function reset_head(P, svc, sig, old_head)
  local hkey = K.heads(P, svc)
  if old_head then redis.call('ZREM', hkey, head_member(old_head, sig)) end
  local h = redis.call('ZRANGE', K.queue(P, svc, sig), 0, 0, 'WITHSCORES')
  if h[1] then redis.call('ZADD', hkey, h[2], head_member(h[1], sig)) end
end

-- Remove a pending job from its queue and the secondary indexes.
-- `after`: when the caller read the queue and knows what follows the head it removes:
-- {member, score} of the next job, or {} when the queue becomes empty (saves a read).
local function dequeue(P, id, j, member, after)
  local m = member or job_member(j, id)
  redis.call('ZREM', K.queue(P, j.service, j.sig), m)
  if redis.call('ZREM', K.heads(P, j.service), head_member(m, j.sig)) == 1 then
    if after == nil then
      reset_head(P, j.service, j.sig, nil)
    elseif after[1] then
      redis.call('ZADD', K.heads(P, j.service), after[2], head_member(after[1], j.sig))
    end
  end
  if nonempty(j.workflow_id) then redis.call('ZREM', K.workflow_queue(P, j.service, j.workflow_id), m) end
  if nonempty(j.customer_id) then redis.call('ZREM', K.customer_queue(P, j.service, j.customer_id), m) end
end

-- Wake one idle worker that can run this job (docs/internals.md "Claim").
local function wake_one(P, now, id, j)
  local idle_key = K.idle(P, j.service)
  local idle = redis.call('ZRANGE', idle_key, 0, D.WAKE_CANDIDATES - 1, 'WITHSCORES')
  if #idle == 0 then return false end
  for i = 1, #idle, 2 do
    local wid, deadline = idle[i], tonumber(idle[i + 1])
    if deadline < now then
      redis.call('ZREM', idle_key, wid)
    else
      local W = load_worker(P, wid)
      if W == nil or W.status == 'offline' then
        redis.call('ZREM', idle_key, wid)
      elseif sig_matches(P, W, j.service, j.sig) and job_rules_ok(W, j, now) then
        for _, s in ipairs(split_csv(W.services)) do redis.call('ZREM', K.idle(P, s), wid) end
        redis.call('HSET', K.worker(P, wid), 'idle', '0')
        if nonempty(W.wake) then
          local wk = K.wake(P, W.wake)
          redis.call('LPUSH', wk, wid)
          redis.call('PEXPIRE', wk, D.WAKE_LIST_TTL_MS)
        end
        return wid
      end
    end
  end
  return nil
end

-- Put a job in its place: the pending queue, or the unworkable queue when its signature is
-- judged unworkable. Writes the job's status unless `ctx.no_status` (submit writes it with the rest
-- of the hash). `ctx` may carry per-call caches: ctx.flagged[svc..sig] (is the signature flagged
-- unworkable) and ctx.no_idle[svc] (no idle worker of that service: skip the wake-up lookup).
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
  local qkey = K.queue(P, svc, sig)
  redis.call('ZADD', qkey, score, m)
  local h = redis.call('ZRANGE', qkey, 0, 1)
  if h[1] == m then -- the new job is the queue's head now
    if h[2] then redis.call('ZREM', K.heads(P, svc), head_member(h[2], sig)) end
    redis.call('ZADD', K.heads(P, svc), score, head_member(m, sig))
  end
  if nonempty(j.workflow_id) then redis.call('ZADD', K.workflow_queue(P, svc, j.workflow_id), score, m) end
  if nonempty(j.customer_id) then redis.call('ZADD', K.customer_queue(P, svc, j.customer_id), score, m) end
  if not ctx.no_status then redis.call('HSET', K.job(P, id), 'status', 'pending') end
  if not (ctx.no_idle and ctx.no_idle[svc]) then
    local woke = wake_one(P, now, id, j)
    if woke == false and ctx.no_idle then ctx.no_idle[svc] = true end
  end
  return 'pending'
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
  redis.call('HSET', K.sigs(P, svc), sig, text)
  redis.call('HSET', K.usigs(P, svc), sig, '~' .. text)
  local ukey = K.unworkable_queue(P, svc, sig)
  local members = redis.call('ZRANGE', ukey, 0, page - 1)
  for _, m in ipairs(members) do
    local id = member_id(m)
    redis.call('ZREM', ukey, m)
    redis.call('ZREM', K.unworkable(P), id)
    local j = load_job(P, id)
    if j and j.status == 'unworkable' then
      enqueue(P, now, id, j)
      emit(P, now, 'job_requeued', id, nil, nil, '{"from":"unworkable"}', true)
    end
  end
  local remaining = redis.call('ZCARD', ukey)
  if remaining == 0 then redis.call('HDEL', K.usigs(P, svc), sig) end
  return #members, remaining
end
