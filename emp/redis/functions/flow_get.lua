--[[
  emp_flow_get: a flow's record and each of its steps' jobs, read at one instant (emp flow show,
  GET /api/flows/{id}).

  KEYS[1]  flow:<id>
  ARGV[1]  P, ARGV[2] flow id
  Reply    '' (no such flow, or it expired) | JSON {"flow": {field: text}, "jobs": {job id: {field: text}}}
           (a step's job that expired is missing from "jobs"; the payload is left out)
  Errors   none
  Events   none
]]

-- An anonymous callback: the library is one Lua chunk with at most 200 top-level locals.
redis.register_function{function_name = 'emp_flow_get', callback = function(keys, args)
  local P, fid = args[1], args[2]
  local flat = redis.call('HGETALL', K.flow(P, fid))
  if #flat == 0 then return '' end
  local rec = hash_to_table(flat)
  local jobs = {}
  local ok, steps = pcall(cjson.decode, rec.steps or '[]')
  if ok and type(steps) == 'table' then
    for _, s in ipairs(steps) do
      if type(s) == 'table' and type(s.id) == 'string' then
        local jf = redis.call('HGETALL', K.job(P, s.id))
        if #jf > 0 then jobs[s.id] = hash_to_table(jf) end
      end
    end
  end
  if next(jobs) == nil then return cjson.encode({flow = rec}) end
  return cjson.encode({flow = rec, jobs = jobs})
end, flags = {'no-writes'}}
