--[[
  emp_progress: record a running job's progress (the worker coalesces; the last value is always sent).

  KEYS[1]  job:<id>
  ARGV[1]  P, ARGV[2] id, ARGV[3] attempt, ARGV[4] wid, ARGV[5] progress 0..100, ARGV[6] message,
  ARGV[7]  data JSON object ('' = none): extra fields for the event (step counts, ETA)
  Reply    {'OK'} | {'STALE', status, attempt} | {'NOT_FOUND', '', ''}   (a cancelled job is STALE/cancelled)
  Errors   EMP_INVALID progress must be 0..100 (nothing written)
  Events   job_progress {progress, message, ...data}; before it job_started when the job was still
           assigned (progress means the work runs: the job starts, as emp_start would, so the
           record and every view folding the events agree on in_progress)
]]

local function progress(keys, args)
  local P, id, attempt, wid, pct, msg, data = args[1], args[2], args[3], args[4], tonumber(args[5]), args[6], args[7]
  if not pct or pct < 0 or pct > 100 then return invalid('progress must be 0..100') end
  local j, err = current_attempt(P, id, attempt, wid)
  if err then return stale_reply(j, err) end
  local now = now_ms()
  if j.status == 'assigned' then
    redis.call('HSET', K.job(P, id), 'status', 'in_progress', 'started_at', fmt(now))
    emit(P, now, 'job_started', id, wid, attempt, nil, true)
  end
  if nonempty(msg) then
    redis.call('HSET', K.job(P, id), 'progress', args[5], 'message', msg)
  else
    redis.call('HSET', K.job(P, id), 'progress', args[5])
  end
  local ev = '{"progress":' .. args[5]
  if nonempty(msg) then ev = ev .. ',"message":' .. json_str(msg) end
  local extra_ok = false
  if nonempty(data) and string.sub(data, 1, 1) == '{' and #data > 2 then
    local ok, t = pcall(cjson.decode, data)
    extra_ok = ok and type(t) == 'table' and next(t) ~= nil
  end
  if extra_ok then ev = ev .. ',' .. string.sub(data, 2) else ev = ev .. '}' end
  emit(P, now, 'job_progress', id, wid, attempt, ev, true)
  return {'OK'}
end

redis.register_function{function_name = 'emp_progress', callback = progress, flags = {'allow-oom'}}
