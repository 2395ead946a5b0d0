--[[
  emp_schedule_remove: delete a schedule. The jobs it submitted stay (they follow their own retention).

  KEYS[1]  schedules
  ARGV[1]  P, ARGV[2] name
  Reply    {1} removed | {0} no such schedule
  Events   none
]]

-- A block of its own: the library is one Lua chunk, whose top level may hold at most 200 locals.
do
  local function schedule_remove(keys, args)
    local P, name = args[1], args[2]
    local n = redis.call('DEL', K.schedule(P, name))
    redis.call('ZREM', K.schedules(P), name)
    redis.call('ZREM', K.schedules_due(P), name)
    return {n}
  end

  redis.register_function{function_name = 'emp_schedule_remove', callback = schedule_remove, flags = {'allow-oom'}}
end
