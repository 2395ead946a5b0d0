--[[
  emp_list_services (read-only): one page of the services whose last report has not lapsed, each
  as its record, for `emp services` and dashboards ("how many ComfyUI are up, and where").

  KEYS[1]  svcs
  ARGV[1]  P, ARGV[2] offset, ARGV[3] count
  Reply    {record_json_1, record_json_2, ...} (hash fields as strings; lists/objects as JSON text)
]]

local function list_services(keys, args)
  return live_records(args[1], 'svcs', 'svc:', tonumber(args[2]) or 0, tonumber(args[3]) or 500)
end

redis.register_function{function_name = 'emp_list_services', callback = list_services, flags = {'no-writes'}}
