--[[
  emp_list_services (read-only): one page of the services whose last report has not lapsed, each
  as its record, for `emp services` and dashboards ("how many ComfyUI are up, and where").

  KEYS[1]  svcs
  ARGV[1]  P, ARGV[2] offset, ARGV[3] count
  Reply    {record_json_1, record_json_2, ...} (hash fields as strings; lists/objects as JSON text)
]]

local function list_services(keys, args)
  local P, offset, count = args[1], tonumber(args[2]) or 0, tonumber(args[3]) or 500
  local now = now_ms()
  local ids = redis.call('ZRANGEBYSCORE', P .. 'svcs', now, '+inf', 'LIMIT', offset, count)
  local out = {}
  for _, sid in ipairs(ids) do
    local flat = redis.call('HGETALL', P .. 'svc:' .. sid)
    if #flat > 0 then
      local rec = {}
      for i = 1, #flat, 2 do rec[flat[i]] = flat[i + 1] end
      out[#out + 1] = cjson.encode(rec)
    end
  end
  return out
end

redis.register_function{function_name = 'emp_list_services', callback = list_services, flags = {'no-writes'}}
