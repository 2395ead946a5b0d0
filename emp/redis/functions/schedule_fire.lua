--[[
  emp_schedule_fire: submit the job of one occurrence of a schedule, exactly once, and move the
  schedule on, in one call (docs/schedules.md). The occurrence time is the idempotency key: the job
  is submitted only while the schedule's last_fired is older, under the id sched:<name>:<occurrence>,
  so even a replay after last_fired was lost is refused by the id.

  KEYS[1]  scheddue
  ARGV[1]  P, ARGV[2] name
  ARGV[3]  mode          due: fire a planned occurrence (the upkeep leader); now: run-now
  ARGV[4]  expected_next (due) the next_ms the caller planned from; another value means the schedule
                         moved since it was read (fired, paused, resumed, replaced): nothing written
  ARGV[5]  occurrence    (due) the occurrence's time, epoch ms; '' = fire nothing (missed ones skipped)
  ARGV[6]  next_ms       (due) the schedule's next occurrence after this call
  ARGV[7]  skipped       (due) missed occurrences this call drops (counter), ARGV[8] coalesced (how
                         many occurrences the job stands for: > 1 for a 'once' catch-up)
  ARGV[9]  fence role, ARGV[10] fence token (optional, _fence.lua: refused unless current)
  Reply    {'OK', outcome, job id}  outcome = pending | unworkable (submitted now) | exists (a job with
           that id exists: not submitted again) | already (last_fired is not older: not submitted)
           | none (nothing to submit); due mode moves next_ms / last_fired in the same call
           {'GONE'} (no such schedule) | {'PAUSED'} (due mode) | {'MOVED', next_ms} (due mode)
  Errors   EMP_FENCED role token current; EMP_INVALID schedule: <reason> (nothing written)
  Events   job_submitted {service, priority, schedule, occurrence} (+ job_unworkable), as emp_submit
]]

-- A block of its own: the library is one Lua chunk, whose top level may hold at most 200 locals.
do
  -- The job of one occurrence, from the schedule's template (validated when the schedule was added):
  -- its record written as emp_submit writes one, then put in its place by _queue.lua's enqueue (queue,
  -- heads, indexes, signature, unworkable flag, wake-up). Returns the status it got.
  local SCHEDULE_OPTIONAL = {'customer_id', 'workflow_id', 'workflow_priority', 'workflow_datetime', 'step',
    'total_steps', 'timeout_s'}

  local function schedule_submit(P, now, id, tpl, name, occurrence)
    local svc, req = tpl.service, tpl.requirements or '{}'
    local sig = string.sub(redis.sha1hex(svc .. '\n' .. req), 1, 16)
    local seq = redis.call('INCR', K.seq(P))
    local priority = tpl.priority or tostring(D.PRIORITY)
    local fields = {'service', svc, 'priority', priority, 'created_at', fmt(now), 'sig', sig, 'seq', int_str(seq),
      'max_attempts', tpl.max_attempts or tostring(D.MAX_ATTEMPTS), 'status', 'pending',
      'schedule', name, 'occurrence', occurrence}
    for _, f in ipairs(SCHEDULE_OPTIONAL) do
      if nonempty(tpl[f]) then fields[#fields + 1] = f; fields[#fields + 1] = tpl[f] end
    end
    if req ~= '{}' then fields[#fields + 1] = 'req'; fields[#fields + 1] = req end
    redis.call('HSET', K.job(P, id), unpack(fields))
    redis.call('SET', K.payload(P, id), tpl.payload)
    emit(P, now, 'job_submitted', id, nil, nil, '{"service":' .. json_str(svc) .. ',"priority":' .. priority
      .. ',"schedule":' .. json_str(name) .. ',"occurrence":' .. occurrence .. '}', false)
    local j = {service = svc, sig = sig, seq = seq, priority = priority, created_at = now,
      workflow_priority = tpl.workflow_priority, workflow_datetime = tpl.workflow_datetime,
      workflow_id = tpl.workflow_id, customer_id = tpl.customer_id}
    local status = enqueue(P, now, id, j)
    if status == 'unworkable' then emit(P, now, 'job_unworkable', id, nil, nil, nil, true) end
    redis.call('SADD', K.services(P), svc)
    redis.call('HINCRBY', K.stats(P), 'submitted', 1)
    return status
  end

  local function check_ms(v)
    local n = tonumber(v)
    return n ~= nil and n == math.floor(n) and n >= 0 and n <= D.MAX_MS
  end

  local function schedule_fire(keys, args)
    local P, name, mode = args[1], args[2], args[3]
    if mode ~= 'due' and mode ~= 'now' then return invalid('schedule: mode must be due or now') end
    local occurrence, next_ms = args[5], args[6]
    if mode == 'due' then
      if not check_ms(args[4]) or not check_ms(next_ms) or (occurrence ~= '' and not check_ms(occurrence)) then
        return invalid('schedule: expected_next, occurrence and next_ms must be epoch ms')
      end
      local fenced = leader_fenced(P, args[9], args[10])
      if fenced then return fenced end
    end
    local skey = K.schedule(P, name)
    local S = redis.call('HMGET', skey, 'template', 'paused', 'next_ms', 'last_fired')
    if not S[1] then return {'GONE'} end
    local ok, tpl = pcall(cjson.decode, S[1])
    if not ok or type(tpl) ~= 'table' or type(tpl.service) ~= 'string' then
      return invalid('schedule: ' .. name .. ': stored template is not a JSON object')
    end
    local now = now_ms()

    if mode == 'now' then
      local id = 'sched:' .. name .. ':now-' .. fmt(now)
      if redis.call('EXISTS', K.job(P, id)) == 1 then return {'OK', 'exists', id} end
      local status = schedule_submit(P, now, id, tpl, name, fmt(now))
      redis.call('HSET', skey, 'last_job', id, 'last_run_now', fmt(now))
      return {'OK', status, id}
    end

    if S[2] == '1' then return {'PAUSED'} end
    if S[3] ~= args[4] then return {'MOVED', S[3] or ''} end
    local outcome, id = 'none', ''
    local fields = {'next_ms', next_ms, 'updated_at', fmt(now)}
    if occurrence ~= '' then
      id = 'sched:' .. name .. ':' .. occurrence
      if tonumber(S[4] or '-1') >= tonumber(occurrence) then
        outcome = 'already'
      elseif redis.call('EXISTS', K.job(P, id)) == 1 then
        outcome = 'exists'
      else
        outcome = schedule_submit(P, now, id, tpl, name, occurrence)
        redis.call('HINCRBY', skey, 'fired', 1)
        local n = tonumber(args[8]) or 1
        fields[#fields + 1] = 'last_coalesced'; fields[#fields + 1] = int_str(n)
      end
      if outcome ~= 'already' then
        fields[#fields + 1] = 'last_fired'; fields[#fields + 1] = occurrence
        fields[#fields + 1] = 'last_job'; fields[#fields + 1] = id
        fields[#fields + 1] = 'last_fired_at'; fields[#fields + 1] = fmt(now)
      end
    end
    local skipped = tonumber(args[7]) or 0
    if skipped > 0 then redis.call('HINCRBY', skey, 'skipped', skipped) end
    redis.call('HSET', skey, unpack(fields))
    redis.call('ZADD', K.schedules_due(P), next_ms, name)
    return {'OK', outcome, id}
  end

  redis.register_function('emp_schedule_fire', schedule_fire)
end
