--[[
  emp_list_services (read-only): one page of the services whose last report has not lapsed, each
  as its record, for `emp services` and dashboards ("how many ComfyUI are up, and where").

  KEYS[1]  svcs
  ARGV[1]  P, ARGV[2] offset (clamped to >= 0), ARGV[3] count (clamped to 1..D.LIST_PAGE_MAX,
           '' = D.FLEET_PAGE)
  Reply    {next_offset | '', record_json_1, record_json_2, ...} (next_offset: where the next page
           starts in the index, '' after the last page; a page may hold fewer records than asked)
           (hash fields as strings; lists/objects as JSON text)
  Errors   none
  Events   none
]]

local function list_services(keys, args)
  local P = args[1]
  return live_records(P, K.service_instances(P), K.service_instance, args[2], args[3])
end

redis.register_function{function_name = 'emp_list_services', callback = list_services, flags = {'no-writes'}}
