--[[
  emp_list_machines (read-only): one page of the machines whose last report has not lapsed.

  KEYS[1]  machines
  ARGV[1]  P, ARGV[2] offset, ARGV[3] count
  Reply    {hash_json_1, ...}: id, status, record (JSON text), updated, started_at, ready_at, last_event
]]

local function list_machines(keys, args)
  local P, offset, count = args[1], tonumber(args[2]) or 0, tonumber(args[3]) or 200
  local now = now_ms()
  local ids = redis.call('ZRANGEBYSCORE', P .. 'machines', now, '+inf', 'LIMIT', offset, count)
  local out = {}
  for _, mid in ipairs(ids) do
    local flat = redis.call('HGETALL', P .. 'machine:' .. mid)
    if #flat > 0 then
      local rec = {}
      for i = 1, #flat, 2 do rec[flat[i]] = flat[i + 1] end
      out[#out + 1] = cjson.encode(rec)
    end
  end
  return out
end

redis.register_function{function_name = 'emp_list_machines', callback = list_machines, flags = {'no-writes'}}
