--[[
  emp_mark_unworkable: no live worker can run this signature: flag it (new jobs of it go straight
  to `unworkable`) and move one page of its pending jobs there. Call again while `remaining` > 0.
  Refused while the signature's head job is younger than the grace period (fleets restart).

  KEYS[1]  sigs:<service>
  ARGV[1]  P, ARGV[2] service, ARGV[3] sig, ARGV[4] grace_ms,
  ARGV[5]  page size (clamped to 1..D.MAINTENANCE_PAGE_MAX, '' = D.UNWORKABLE_PAGE),
  ARGV[6]  fence role, ARGV[7] fence token (optional, _fence.lua: refused unless current)
  Reply    {'OK', moved, remaining} | {'TOO_SOON'} | {'NOT_FOUND'}
  Errors   EMP_FENCED role token current (a stale leader; nothing written)
  Events   job_unworkable {reason, fails_at} per job moved (a job unworkable until fails_at fails then)
]]

local function mark_unworkable(keys, args)
  local P, svc, sig, grace = args[1], args[2], args[3], tonumber(args[4]) or 0
  local page = clamp(args[5], 1, D.MAINTENANCE_PAGE_MAX, D.UNWORKABLE_PAGE)
  local fenced = leader_fenced(P, args[6], args[7])
  if fenced then return fenced end
  local now = now_ms()
  local text = redis.call('HGET', K.sigs(P, svc), sig)
  local flagged = redis.call('HGET', K.usigs(P, svc), sig)
  if not text and not flagged then return {'NOT_FOUND'} end
  local qkey = K.queue(P, svc, sig)
  local head = redis.call('ZRANGE', qkey, 0, 0)
  if head[1] then
    local created = tonumber(redis.call('HGET', K.job(P, member_id(head[1])), 'created_at')) or 0
    if created > now - grace then return {'TOO_SOON'} end
  end
  if text then
    redis.call('HDEL', K.sigs(P, svc), sig)
    redis.call('HSET', K.usigs(P, svc), sig, text)
  elseif string.sub(flagged, 1, 1) == '~' then
    redis.call('HSET', K.usigs(P, svc), sig, string.sub(flagged, 2))
  end
  local members = redis.call('ZRANGE', qkey, 0, page - 1, 'WITHSCORES')
  local old_head = members[1]
  local moved = 0
  for i = 1, #members, 2 do
    local m, score = members[i], members[i + 1]
    local id = member_id(m)
    local j = load_job(P, id)
    redis.call('ZREM', qkey, m)
    if j then
      if nonempty(j.workflow_id) then redis.call('ZREM', K.workflow_queue(P, svc, j.workflow_id), m) end
      if nonempty(j.customer_id) then redis.call('ZREM', K.customer_queue(P, svc, j.customer_id), m) end
      redis.call('ZADD', K.unworkable_queue(P, svc, sig), score, m)
      redis.call('ZADD', K.unworkable(P), now, id)
      redis.call('HSET', K.job(P, id), 'status', 'unworkable')
      -- fails_at: when it fails as `unworkable` unless a matching worker comes (emp_cleanup).
      emit(P, now, 'job_unworkable', id, nil, nil, '{"reason":"no live worker matches its requirements","fails_at":'
        .. fmt(now + D.UNWORKABLE_RETENTION_MS) .. '}', true)
      moved = moved + 1
    end
  end
  reset_head(P, svc, sig, old_head)
  -- Its jobs wait in uq: now; nobody is woken for them (a revive fills the idle set again).
  redis.call('DEL', K.idle_sig(P, svc, sig))
  return {'OK', moved, redis.call('ZCARD', qkey)}
end

redis.register_function{function_name = 'emp_mark_unworkable', callback = mark_unworkable, flags = {'allow-oom'}}
