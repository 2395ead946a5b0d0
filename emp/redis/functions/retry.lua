--[[
  emp_retry: run a failed, cancelled or unworkable job again (manual). Its attempt counts start
  over; its history is kept; it goes back to its original place in the queue.

  KEYS[1]  job:<id>
  ARGV[1]  P, ARGV[2] id
  Reply    {'OK', status} | {'NOT_RETRYABLE', status} | {'NOT_FOUND'}
  Errors   none
  Events   job_retry {manual: true, from}
]]

local function retry(keys, args)
  local P, id = args[1], args[2]
  local j = load_job(P, id)
  if j == nil then return {'NOT_FOUND'} end
  local prev = j.status
  if prev ~= 'failed' and prev ~= 'cancelled' and prev ~= 'unworkable' then return {'NOT_RETRYABLE', prev} end
  local now = now_ms()
  local jkey = K.job(P, id)
  if prev == 'unworkable' then
    redis.call('ZREM', K.unworkable_queue(P, j.service, j.sig), job_member(j, id))
    redis.call('ZREM', K.unworkable(P), id)
    -- Give the whole signature another chance; maintenance judges it again after the grace period.
    local text = redis.call('HGET', K.usigs(P, j.service), j.sig)
    if text and string.sub(text, 1, 1) ~= '~' then
      redis.call('HSET', K.usigs(P, j.service), j.sig, '~' .. text)
      redis.call('HSET', K.sigs(P, j.service), j.sig, text)
    end
  else
    redis.call('ZREM', K.done(P, prev), id)
    redis.call('PERSIST', jkey)
    redis.call('PERSIST', K.payload(P, id))
    redis.call('PERSIST', K.job_events(P, id))
  end
  redis.call('HDEL', jkey, 'tries', 'lost', 'unavailable', 'finished_at', 'result', 'avoid_workers', 'gpu_gb_over')
  j.avoid_workers, j.gpu_gb_over = nil, nil
  local status = requeue(P, now, id, j, 0)
  emit(P, now, 'job_retry', id, nil, j.attempt, '{"manual":true,"from":' .. json_str(prev) .. '}', true)
  return {'OK', status}
end

redis.register_function('emp_retry', retry)
