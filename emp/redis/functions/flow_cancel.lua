--[[
  emp_flow_cancel: cancel every step of a flow that has not ended, in one call. Steps are cancelled
  from the last to the first (the record lists them parents first), so a step's children have
  ended before it is: no `always` child is queued by the cancellation of its parent. Each step is
  an emp_cancel (cancel.lua): a running step is interrupted in its service.

  KEYS[1]  flow:<id>
  ARGV[1]  P, ARGV[2] flow id, ARGV[3] reason
  Reply    {'OK', number of steps cancelled} | {'NOT_FOUND'}
  Errors   none
  Events   job_cancelled {from, reason} per step cancelled (cancel.lua)
]]

-- An anonymous callback: the library is one Lua chunk with at most 200 top-level locals.
redis.register_function{function_name = 'emp_flow_cancel', callback = function(keys, args)
  local P, fid, reason = args[1], args[2], args[3] or ''
  local raw = redis.call('HGET', K.flow(P, fid), 'steps')
  if not raw then return {'NOT_FOUND'} end
  local ok, steps = pcall(cjson.decode, raw)
  if not ok or type(steps) ~= 'table' then return {'NOT_FOUND'} end
  local n = 0
  for i = #steps, 1, -1 do
    local s = steps[i]
    if type(s) == 'table' and type(s.id) == 'string' then
      local r = cancel(keys, {P, s.id, reason})
      if r[1] == 'OK' then n = n + 1 end
    end
  end
  return {'OK', n}
end, flags = {'allow-oom'}}
