--[[
  emp_cancel: cancel a job that has not ended. A running job's worker learns it at once through
  the `cancel` pub/sub channel (and from its next heartbeat, as a fallback) and interrupts it.

  KEYS[1]  job:<id>
  ARGV[1]  P, ARGV[2] id, ARGV[3] reason
  Reply    {'OK', previous status} | {'TERMINAL', status} | {'NOT_FOUND'}
  Errors   none
  Events   job_cancelled {from, reason} (also on the job's stream); a running job's id is published
           on the `cancel` channel; then, for a job others wait on, those of its children (_flows.lua)
]]

local function cancel(keys, args)
  local P, id, reason = args[1], args[2], args[3] or ''
  local j = load_job(P, id)
  if j == nil then return {'NOT_FOUND'} end
  if TERMINAL[j.status] then return {'TERMINAL', j.status} end
  local now = now_ms()
  local prev = j.status
  if prev == 'pending' then
    dequeue(P, id, j)
  elseif prev == 'scheduled' then
    redis.call('ZREM', K.scheduled(P), id)
  elseif prev == 'waiting' then
    redis.call('ZREM', K.waiting(P), id)
  elseif prev == 'unworkable' then
    redis.call('ZREM', K.unworkable_queue(P, j.service, j.sig), job_member(j, id))
    redis.call('ZREM', K.unworkable(P), id)
  elseif ACTIVE[prev] then
    redis.call('ZREM', K.leases(P), id)
    if nonempty(j.worker_id) then free_worker(P, j.worker_id, id) end
    redis.call('PUBLISH', K.cancel_channel(P), id)
  end
  redis.call('HSET', K.job(P, id), 'status', 'cancelled', 'finished_at', fmt(now), 'failure_class', 'cancelled',
    'error', nonempty(reason) and reason or 'cancelled')
  -- The event first: a job cancelled before any worker saw it has no stream yet, and the event
  -- creates it; finish() then sets the retention TTL on every key of the job, the stream included.
  emit(P, now, 'job_cancelled', id, j.worker_id, j.attempt, '{"from":' .. json_str(prev) .. ',"reason":'
    .. json_str(reason) .. '}', true)
  finish(P, now, id, 'cancelled')
  if j.flow then FLOW.ended(P, now, id, 'cancelled', j.flow) end -- flows: settle its children (_flows.lua)
  return {'OK', prev}
end

redis.register_function{function_name = 'emp_cancel', callback = cancel, flags = {'allow-oom'}}
