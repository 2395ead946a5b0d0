--[[
  emp_fail: end the current attempt with a failure; the failure class decides what happens
  (twin of emp/model/retry.py):
    malformed            -> failed at once
    cancelled            -> cancelled
    resource_exhausted   -> counted; retry at once, avoiding every worker it ran out of memory on
                            and, when a live worker with more GPU memory can run it, needing more
                            than this worker's; failed at once when no other live worker can run it
    service_unavailable  -> not counted; retry after UNAVAILABLE_DELAY_MS (at most MAX_UNAVAILABLE)
    transient, timeout, worker_lost, unknown (and any other) -> counted; retry after
                            min(BASE * 2^tries, MAX) * (1 - JITTER * r) through `scheduled`
  A counted failure fails the job when tries reach max_attempts.

  KEYS[1]  job:<id>
  ARGV[1]  P, ARGV[2] id, ARGV[3] attempt, ARGV[4] wid, ARGV[5] failure class, ARGV[6] error text,
  ARGV[7]  r in [0,1) for the jitter (from the client: Lua's PRNG is seeded the same every call)
  ARGV[8]  '1' = then claim the next job: ARGV[9] request id, ARGV[10] lease_ms, ARGV[11] start,
           ARGV[12] max_lost
  Reply    {{'RETRY', delay_ms, status} | {'FAILED'} | {'CANCELLED'} | {'STALE', status, attempt} |
            {'NOT_FOUND'}, claim reply | {}}
  Errors   none (a refused fail is a STALE / NOT_FOUND reply, and the claim still happens)
  Events   job_retry {failure_class, delay_ms, error} | job_cancelled {reason} |
           job_failed {failure_class, error, no_other_worker?}; then those of the claim (claim.lua)
]]

local COUNTED_BACKOFF = {transient = true, timeout = true, worker_lost = true, unknown = true}

local function gpu_gb(W)
  local mem = walk(worker_caps(W), 'hardware.gpu_memory_gb')
  if type(mem) == 'number' then return mem end
  return nil
end

-- After `wid` ran out of memory on job j (avoid: j's avoided workers, `wid` included): is there a live
-- worker that may run it, and one of them with more GPU memory than `failed_gb`? Looks at up to
-- D.LIVE_WORKER_SCAN live workers; a fleet larger than that is assumed to have one (found = true).
local function oom_candidates(P, now, j, avoid, failed_gb)
  local view = {customer_id = j.customer_id, workflow_id = j.workflow_id, avoid_workers = cjson.encode(avoid),
    gpu_gb_over = j.gpu_gb_over}
  local avoided = {}
  for _, w in ipairs(avoid) do avoided[w] = true end
  local found, offset = false, 0
  while offset < D.LIVE_WORKER_SCAN do
    local count = math.min(D.FLEET_PAGE, D.LIVE_WORKER_SCAN - offset)
    local ids = redis.call('ZRANGEBYSCORE', K.workers(P), now, '+inf', 'LIMIT', offset, count)
    for _, other in ipairs(ids) do
      if not avoided[other] then
        local W = load_worker(P, other)
        if W and W.status ~= 'offline' and contains(split_csv(W.services), j.service)
          and sig_matches(P, W, j.service, j.sig) and job_rules_ok(W, view, now) then
          found = true
          local mem = gpu_gb(W)
          if failed_gb == nil or (mem ~= nil and mem > failed_gb) then return true, failed_gb ~= nil end
        end
      end
    end
    if #ids < count then return found, false end
    offset = offset + count
  end
  return true, false
end

local function fail(keys, args)
  local P, id, attempt, wid, fclass, errtext = args[1], args[2], args[3], args[4], args[5], args[6] or ''
  local r = tonumber(args[7]) or 0
  if r < 0 or r >= 1 then r = 0 end
  local now = now_ms()
  local claiming = args[8] == '1'
  local counted = false
  local j, err = current_attempt(P, id, attempt, wid, true)
  local outcome
  if err then
    outcome = stale_reply(j, err)
  else
    if fclass ~= 'malformed' and fclass ~= 'cancelled' and fclass ~= 'resource_exhausted'
      and fclass ~= 'service_unavailable' and not COUNTED_BACKOFF[fclass] then
      fclass = 'unknown'
    end
    local jkey = K.job(P, id)
    local tries = tonumber(j.tries) or 0
    local max_attempts = tonumber(j.max_attempts) or D.MAX_ATTEMPTS
    redis.call('ZREM', K.leases(P), id)
    -- The claim below sets the worker's status and job and counts the failure in the same HSET;
    -- without it, the worker is idle now. (The worker is busy until then: never in an idle set, so
    -- the requeue below cannot wake it.)
    if claiming then
      counted = true
    else
      free_worker(P, wid, id)
      redis.call('HINCRBY', K.worker(P, wid), 'failed', 1)
    end
    add_history(P, id, j, now, 'failed', fclass, errtext)
    redis.call('HSET', jkey, 'failure_class', fclass, 'error', string.sub(errtext, 1, D.ERROR_MAX))
    local action, delay, no_other = 'fail', 0, false
    if fclass == 'cancelled' then
      action = 'cancel'
    elseif fclass == 'service_unavailable' then
      local u = redis.call('HINCRBY', jkey, 'unavailable', 1)
      if u < D.MAX_UNAVAILABLE then action, delay = 'retry', D.UNAVAILABLE_DELAY_MS end
    elseif fclass ~= 'malformed' then
      tries = redis.call('HINCRBY', jkey, 'tries', 1)
      if tries < max_attempts then
        action = 'retry'  -- resource_exhausted may still turn it into 'fail' below
        if fclass == 'resource_exhausted' then
          local avoid = avoided_workers(j.avoid_workers)
          if not contains(avoid, wid) then avoid[#avoid + 1] = wid end
          local failed = load_worker(P, wid)
          local failed_gb = failed and gpu_gb(failed) or nil
          local found, bigger = oom_candidates(P, now, j, avoid, failed_gb)
          if found then
            j.avoid_workers = cjson.encode(avoid)
            redis.call('HSET', jkey, 'avoid_workers', j.avoid_workers)
            if bigger then
              j.gpu_gb_over = failed_gb
              redis.call('HSET', jkey, 'gpu_gb_over', tostring(failed_gb))
            end
          else
            action, no_other = 'fail', true
            errtext = 'out of memory on ' .. table.concat(avoid, ', ')
              .. ' and no other live worker can run it: ' .. errtext
          end
        else
          delay = math.min(D.RETRY_BASE_MS * math.pow(2, tries - 1), D.RETRY_MAX_MS)
          delay = math.floor(delay * (1 - D.RETRY_JITTER * r))
        end
      end
    else
      redis.call('HINCRBY', jkey, 'tries', 1)
    end
    if action == 'retry' then
      local status = requeue(P, now, id, j, delay)
      redis.call('HINCRBY', K.stats(P), 'retried', 1)
      emit(P, now, 'job_retry', id, wid, attempt,
        '{"failure_class":' .. json_str(fclass) .. ',"delay_ms":' .. fmt(delay) .. ',"error":'
        .. json_str(string.sub(errtext, 1, D.EVENT_ERROR_MAX)) .. '}', true)
      outcome = {'RETRY', delay, status}
    elseif action == 'cancel' then
      redis.call('HSET', jkey, 'status', 'cancelled', 'finished_at', fmt(now))
      emit(P, now, 'job_cancelled', id, wid, attempt, '{"reason":"cancelled in service"}', true)
      finish(P, now, id, 'cancelled')
      if j.flow then FLOW.ended(P, now, id, 'cancelled', j.flow) end -- flows: settle its children (_flows.lua)
      outcome = {'CANCELLED'}
    else
      emit(P, now, 'job_failed', id, wid, attempt,
        '{"failure_class":' .. json_str(fclass) .. ',"error":' .. json_str(string.sub(errtext, 1, D.EVENT_ERROR_MAX))
        .. (no_other and ',"no_other_worker":true' or '') .. '}', true)
      fail_final(P, now, id, j, fclass, string.sub(errtext, 1, D.ERROR_MAX))
      outcome = {'FAILED'}
    end
  end
  local nxt = {}
  if claiming then
    nxt = claim_after(P, now, wid, args, 9, counted and 'failed' or nil)
  end
  return {outcome, nxt}
end

redis.register_function{function_name = 'emp_fail', callback = fail, flags = {'allow-oom'}}
