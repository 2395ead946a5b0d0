--[[
  emp_count_jobs (read-only): how many jobs each status has, for every service or one.

  Without a service the indexes answer: ZCARD of scheduled, waiting, unworkable and done:<status>, the
  queues' ZCARDs for pending (O(services x signatures)); only the running jobs are read one by one
  to tell assigned from in_progress (O(running jobs), bounded by the fleet's size).
  With a service, pending and unworkable still come from that service's own queues, but scheduled,
  running and ended jobs have no per-service index (one would cost every complete a write): they are
  read job by job, D.COUNT_SCAN_PAGE index entries per call, so one call never blocks Redis for
  long; the caller calls again with the returned cursor and adds the counts up. That is O(jobs
  kept) in all: the price of a filter nobody pays on the hot paths.

  KEYS[1]  services
  ARGV[1]  P, ARGV[2] service ('' = every service), ARGV[3] cursor ('' = first call)
  Reply    {next cursor ('' = done), status_1, count_1, status_2, count_2, ...}: this call's counts
           (statuses absent from a reply count 0 in it); the sum over the calls is the total
  Errors   EMP_INVALID bad cursor
  Events   none
]]

-- The indexes read entry by entry, in order: running jobs always, the others with a service filter.
local WALKED = {'leases', 'scheduled', 'waiting', 'completed', 'failed', 'cancelled'}

local function walked_key(P, name)
  if name == 'leases' then return K.leases(P) end
  if name == 'scheduled' then return K.scheduled(P) end
  if name == 'waiting' then return K.waiting(P) end
  return K.done(P, name)
end

-- Queued jobs of the services (pending or unworkable): ZCARD of their queues.
local function queued(P, services, unworkable)
  local n = 0
  for _, svc in ipairs(services) do
    if unworkable then
      for _, sig in ipairs(redis.call('HKEYS', K.usigs(P, svc))) do
        n = n + redis.call('ZCARD', K.unworkable_queue(P, svc, sig))
      end
    else
      for _, sig in ipairs(redis.call('HKEYS', K.sigs(P, svc))) do n = n + redis.call('ZCARD', K.queue(P, svc, sig)) end
    end
  end
  return n
end

local function count_jobs(keys, args)
  local P, service, cursor = args[1], args[2] or '', args[3] or ''
  local counts = {}
  local function add(st, n) counts[st] = (counts[st] or 0) + n end
  local walk_from, offset = 1, 0
  if cursor == '' then
    if service == '' then
      add('pending', queued(P, redis.call('SMEMBERS', K.services(P)), false))
      add('unworkable', redis.call('ZCARD', K.unworkable(P)))
      add('scheduled', redis.call('ZCARD', K.scheduled(P)))
      add('waiting', redis.call('ZCARD', K.waiting(P)))
      for _, st in ipairs(ENDED) do add(st, redis.call('ZCARD', K.done(P, st))) end
    else
      add('pending', queued(P, {service}, false))
      add('unworkable', queued(P, {service}, true))
    end
  else
    local name, off = string.match(cursor, '^([%w_]+)|(%d+)$')
    walk_from = nil
    for i, w in ipairs(WALKED) do
      if w == name then walk_from = i end
    end
    if walk_from == nil then return invalid('bad cursor') end
    offset = tonumber(off)
  end
  local last = 1
  if service ~= '' then last = #WALKED end
  local budget, nxt = D.COUNT_SCAN_PAGE, ''
  for i = walk_from, last do
    local name = WALKED[i]
    local key = walked_key(P, name)
    if i > walk_from then offset = 0 end
    local ids = redis.call('ZRANGE', key, offset, offset + budget - 1)
    for _, id in ipairs(ids) do
      local v = redis.call('HMGET', K.job(P, id), 'status', 'service')
      if v[1] and (service == '' or v[2] == service) then
        -- An index entry counts for its own status only (a running job's lease, an ended job's done:).
        if name == 'leases' then
          if ACTIVE[v[1]] then add(v[1], 1) end
        elseif v[1] == name then
          add(name, 1)
        end
      end
    end
    offset, budget = offset + #ids, budget - #ids
    if budget < 1 then
      if redis.call('ZCARD', key) > offset then
        nxt = name .. '|' .. offset
      elseif i < last then
        nxt = WALKED[i + 1] .. '|0'
      end
      break
    end
  end
  local reply = {nxt}
  for st, n in pairs(counts) do
    reply[#reply + 1] = st
    reply[#reply + 1] = n
  end
  return reply
end

redis.register_function{function_name = 'emp_count_jobs', callback = count_jobs, flags = {'no-writes'}}
