--[[
  emp_list_jobs (read-only): a page of jobs by status, in the order that status is served or ended:
  pending in queue order, scheduled by run time, active by lease deadline, ended newest first.

  KEYS[1]  services
  ARGV[1]  P, ARGV[2] status ('' = every status), ARGV[3] service ('' = all), ARGV[4] limit
  Reply    JSON [{"id", "service", "status", "priority", "attempt", "worker_id", "progress",
                  "created_at", "finished_at", "failure_class", "customer_id", "workflow_id"}]
]]

local LIST_FIELDS = {'service', 'status', 'priority', 'attempt', 'worker_id', 'progress', 'created_at',
  'finished_at', 'failure_class', 'customer_id', 'workflow_id', 'message'}

local function pending_ids(P, service, limit)
  local svcs = {}
  if nonempty(service) then svcs = {service} else svcs = redis.call('SMEMBERS', P .. 'services') end
  local all = {}
  for _, svc in ipairs(svcs) do
    for _, sig in ipairs(redis.call('HKEYS', k_sigs(P, svc))) do
      local items = redis.call('ZRANGE', k_queue(P, svc, sig), 0, limit - 1, 'WITHSCORES')
      for i = 1, #items, 2 do all[#all + 1] = {tonumber(items[i + 1]), items[i]} end
    end
  end
  table.sort(all, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  local ids = {}
  for i = 1, math.min(limit, #all) do ids[i] = member_id(all[i][2]) end
  return ids
end

local function ids_for(P, status, service, limit)
  if status == 'pending' then return pending_ids(P, service, limit) end
  if status == 'scheduled' then return redis.call('ZRANGE', P .. 'scheduled', 0, limit - 1) end
  if status == 'assigned' or status == 'in_progress' or status == 'active' then
    return redis.call('ZRANGE', P .. 'leases', 0, limit - 1)
  end
  if status == 'unworkable' then return redis.call('ZREVRANGE', P .. 'unworkable', 0, limit - 1) end
  if TERMINAL[status] then return redis.call('ZREVRANGE', k_done(P, status), 0, limit - 1) end
  return nil
end

local function list_jobs(keys, args)
  local P, status, service, limit = args[1], args[2] or '', args[3] or '', tonumber(args[4]) or 50
  if limit < 1 or limit > 1000 then return invalid('limit must be 1..1000') end
  local statuses = {status}
  if status == '' then
    statuses = {'active', 'pending', 'scheduled', 'unworkable', 'failed', 'cancelled', 'completed'}
  end
  local out = {}
  for _, st in ipairs(statuses) do
    local ids = ids_for(P, st, service, limit)
    if ids == nil then return invalid('unknown status ' .. st) end
    for _, id in ipairs(ids) do
      if #out >= limit then break end
      local v = redis.call('HMGET', k_job(P, id), unpack(LIST_FIELDS))
      if v[1] then
        local row = {id = id}
        for i, f in ipairs(LIST_FIELDS) do
          if v[i] then row[f] = v[i] end
        end
        local keep = (service == '' or row.service == service)
        if st ~= 'active' and status ~= '' and row.status ~= status then keep = false end
        if keep then out[#out + 1] = row end
      end
    end
  end
  if #out == 0 then return '[]' end
  return cjson.encode(out)
end

redis.register_function{function_name = 'emp_list_jobs', callback = list_jobs, flags = {'no-writes'}}
