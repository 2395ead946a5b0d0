--[[
  emp_complete_many: group commit. Complete several attempts (of different workers: the slots of one
  worker process) and claim the next job for each, in ONE call. Each entry is exactly an
  emp_complete (complete.lua): fenced on its own (a stale entry is refused for that job only, in
  its own reply entry), idempotent, its events in this call; the entries are done in the order given.

  KEYS[1]  events (any key of the namespace: they all share its hash tag, so one call is valid on
           Redis Cluster)
  ARGV[1]  P, ARGV[2] n = the number of entries, then n entries of 10 values each, as ARGV[2..11]
           of complete.lua: id, attempt, wid, result (JSON text, '' = none), claim ('1' = then claim
           the next job for wid), request id, lease_ms, start, max_lost ('' when claim is '0'), the
           job's last progress message ('' = none)
  Reply    n entries, in order: {outcome, claim reply | {}} as the reply of complete.lua
  Errors   EMP_INVALID n (nothing written) when ARGV does not hold n entries
  Events   per entry, in order: those of complete.lua (job_progress 100 % when a final message is
           given, job_completed, then those of the claim)
]]

local ENTRY_ARGS = 10

local function complete_many(keys, args)
  local P, n = args[1], tonumber(args[2])
  if not n or n < 0 or #args ~= 2 + n * ENTRY_ARGS then return invalid('n') end
  local now = now_ms()
  local replies = {}
  for k = 0, n - 1 do
    replies[k + 1] = complete_entry(P, now, args, 3 + k * ENTRY_ARGS)
  end
  return replies
end

redis.register_function{function_name = 'emp_complete_many', callback = complete_many, flags = {'allow-oom'}}
