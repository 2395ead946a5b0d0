--[[
  emp_list_machines (read-only): one page of the machines whose last report has not lapsed.

  KEYS[1]  machines
  ARGV[1]  P, ARGV[2] offset (clamped to >= 0), ARGV[3] count (clamped to 1..D.LIST_PAGE_MAX,
           '' = D.FLEET_PAGE)
  Reply    {next_offset | '', hash_json_1, ...} (next_offset: where the next page starts in the
           index, '' after the last page; a page may hold fewer records than asked): id, status, record (JSON text), updated, started_at, ready_at, last_event
  Errors   none
  Events   none
]]

local function list_machines(keys, args)
  local P = args[1]
  return live_records(P, K.machines(P), K.machine, args[2], args[3])
end

redis.register_function{function_name = 'emp_list_machines', callback = list_machines, flags = {'no-writes'}}
