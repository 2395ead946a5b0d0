--[[
  emp_signatures (read-only): every service's live and unworkable signatures with their
  requirements, queue depth and head job age: the input of unworkable detection.

  KEYS[1]  services
  ARGV[1]  P
  Reply    JSON [{"service", "sig", "requirements", "unworkable": bool, "reviving": bool,
                  "pending", "unworkable_count", "head_created_at"}]
  Errors   none
  Events   none
  Cost     O(services x signatures): one call reads every signature (they are few by design)
]]

local function signatures(keys, args)
  local P = args[1]
  local out = {}
  for _, svc in ipairs(redis.call('SMEMBERS', K.services(P))) do
    local live = hash_to_table(redis.call('HGETALL', K.sigs(P, svc)))
    local flagged = hash_to_table(redis.call('HGETALL', K.usigs(P, svc)))
    local seen = {}
    for sig, text in pairs(live) do seen[sig] = text end
    for sig, text in pairs(flagged) do
      if seen[sig] == nil then seen[sig] = text end
    end
    for sig, text in pairs(seen) do
      local f = flagged[sig]
      local req = text
      if string.sub(req, 1, 1) == '~' then req = string.sub(req, 2) end
      local head = redis.call('ZRANGE', K.queue(P, svc, sig), 0, 0)
      local created = 0
      if head[1] then created = tonumber(redis.call('HGET', K.job(P, member_id(head[1])), 'created_at')) or 0 end
      out[#out + 1] = {service = svc, sig = sig, requirements = req,
        unworkable = f ~= nil and string.sub(f, 1, 1) ~= '~', reviving = f ~= nil and string.sub(f, 1, 1) == '~',
        pending = redis.call('ZCARD', K.queue(P, svc, sig)),
        unworkable_count = redis.call('ZCARD', K.unworkable_queue(P, svc, sig)), head_created_at = created}
    end
  end
  if #out == 0 then return '[]' end
  return cjson.encode(out)
end

redis.register_function{function_name = 'emp_signatures', callback = signatures, flags = {'no-writes'}}
