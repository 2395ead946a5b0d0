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
  return complete_entry(args[1], now_ms(), args, 2)
end

redis.register_function{function_name = 'emp_complete', callback = complete, flags = {'allow-oom'}}
