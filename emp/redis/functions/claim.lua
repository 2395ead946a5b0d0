--[[
  emp_claim: take the best job this worker can run (docs/internals.md "Claim").

  KEYS[1]  worker:<wid>
  ARGV[1]  P          key prefix
  ARGV[2]  wid        worker id (must be registered: emp_register_worker)
  ARGV[3]  request id a retried claim with the same id returns the same job
  ARGV[4]  lease_ms   lease length
  ARGV[5]  start      '1' = the worker starts at once (status in_progress), '0' = assigned
  ARGV[6]  max_lost   lost leases before a job fails (for the housekeeping this call may do)
  Reply    {'OK', id, attempt, service, payload, timeout_s, customer_id, workflow_id, step,
            total_steps, max_attempts, status}
           {'EMPTY', next_due_ms|'', next_scheduled_ms|''}  nothing to run; the worker is now in
                                      the idle sets; next_due = the next scheduled job or lease deadline
           {'NO_WORKER'}              not registered (or registration expired): register again
  Errors   EMP_INVALID lease_ms (nothing written)
  Events   job_started (start = '1') or job_assigned; and those of the housekeeping it may do
           (job_requeued, job_unworkable, job_failed: see _housekeeping.lua)
]]

local function claim(keys, args)
  local lease_ms = tonumber(args[4])
  if not lease_ms or lease_ms <= 0 then return invalid('lease_ms') end
  return claim_next(args[1], now_ms(), args[2], args[3], lease_ms, args[5] == '1',
    tonumber(args[6]) or D.MAX_LOST_LEASES)
end

redis.register_function{function_name = 'emp_claim', callback = claim, flags = {'allow-oom'}}
