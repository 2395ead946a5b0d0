--[[
  emp_list_machines (read-only): one page of the machines whose last report has not lapsed.

  KEYS[1]  machines
  ARGV[1]  P, ARGV[2] offset, ARGV[3] count
  Reply    {hash_json_1, ...}: id, status, record (JSON text), updated, started_at, ready_at, last_event
]]

local function list_machines(keys, args)
  return live_records(args[1], 'machines', 'machine:', tonumber(args[2]) or 0, tonumber(args[3]) or 200)
end

redis.register_function{function_name = 'emp_list_machines', callback = list_machines, flags = {'no-writes'}}
