--[[
  emp_complete: finish the current attempt successfully; optionally claim the next job in the same
  call, so a busy worker needs one round trip per job.

  KEYS[1]  job:<id>
  ARGV[1]  P, ARGV[2] id, ARGV[3] attempt, ARGV[4] wid, ARGV[5] result (JSON text, '' = none)
  ARGV[6]  '1' = then claim the next job with: ARGV[7] request id, ARGV[8] lease_ms, ARGV[9] start,
           ARGV[10] max_lost (see claim.lua); ARGV[7..10] are '' when ARGV[6] is '0'
  ARGV[11] the job's last progress message, not written yet ('' = none): written as the job's
           final job_progress event (100 %) just before job_completed, so the last progress value
           is always recorded without a round trip of its own
  Reply    {{'OK'} | {'ALREADY', result} | {'STALE', status, attempt} | {'NOT_FOUND'}, claim reply | {}}
           A second complete of the same attempt is a no-op that returns the stored result.
  Errors   none (a refused complete is a STALE / NOT_FOUND reply, and the claim still happens)
  Events   job_progress {progress: 100, message} when ARGV[11] is set, then job_completed; then those
           of the claim (claim.lua)
]]

local function complete(keys, args)
  local P, id, attempt, wid, result = args[1], args[2], args[3], args[4], args[5]
  local now = now_ms()
  local j, err = current_attempt(P, id, attempt, wid)
  local outcome
  if err == 'STALE' and j.status == 'completed' and j.attempt == attempt then
    outcome = {'ALREADY', redis.call('HGET', K.job(P, id), 'result') or ''}
  elseif err then
    outcome = stale_reply(j, err)
  else
    local jkey = K.job(P, id)
    if nonempty(result) then
      redis.call('HSET', jkey, 'status', 'completed', 'finished_at', fmt(now), 'progress', '100', 'result', result)
    else
      redis.call('HSET', jkey, 'status', 'completed', 'finished_at', fmt(now), 'progress', '100')
    end
    if j.status == 'assigned' then redis.call('HSET', jkey, 'started_at', fmt(now)) end
    redis.call('ZREM', K.leases(P), id)
    finish(P, now, id, 'completed')
    -- The claim below sets the worker's status and job; without it, the worker is idle now.
    if args[6] ~= '1' then free_worker(P, wid, id) end
    redis.call('HINCRBY', K.worker(P, wid), 'completed', 1)
    if args[11] ~= nil and args[11] ~= '' then
      redis.call('HSET', jkey, 'message', args[11])
      emit(P, now, 'job_progress', id, wid, attempt, '{"progress":100,"message":' .. json_str(args[11]) .. '}', true)
    end
    emit(P, now, 'job_completed', id, wid, attempt, nil, true)
    outcome = {'OK'}
  end
  local nxt = {}
  if args[6] == '1' then
    nxt = claim_after(P, now, wid, args, 7)
  end
  return {outcome, nxt}
end

redis.register_function('emp_complete', complete)
