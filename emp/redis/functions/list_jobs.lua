--[[
  emp_list_jobs (read-only): one page of jobs by status, in the order that status is served or
  ended, with a cursor to the next page. Served from the indexes: a page costs O(log n + limit) per
  index it reads (one zset per status; every queue of the service(s) for pending), never a walk of
  the rows before it.

  Order (every status: '' lists them one after the other, in this order):
    active (assigned, in_progress)  by lease deadline            leases
    pending                         queue order (score, seq)     q:<svc>:<sig>, merged
    scheduled                       by run time                  scheduled
    waiting (flow steps)            by submit time               waiting
    unworkable                      newest first                 unworkable
    failed, cancelled, completed    newest first (finish time)   done:<status>
  A cursor is "<status>|<score>|<member>": the last index entry the page looked at (score and
  member empty: the start of that status). An entry removed between pages does not matter (the
  next page starts after its place); an entry that moves (a heartbeat extends a lease, a job is
  retried) may be seen twice or not at all, as with any cursor over live data.

  KEYS[1]  services
  ARGV[1]  P, ARGV[2] status ('' = every status; also 'active'), ARGV[3] service ('' = all),
  ARGV[4]  limit (clamped to 1..D.LIST_PAGE_MAX, '' = D.LIST_PAGE), ARGV[5] cursor ('' = first page)
  Reply    {rows JSON, next cursor ('' = no more rows)}
           rows: [{"id", "service", "status", "priority", "attempt", "worker_id", "progress", "message",
                   "created_at", "finished_at", "failure_class", "customer_id", "workflow_id"}]
           A filter (service, or an index entry whose job expired) may make a page short, even
           empty, while the cursor is not '': one call passes over at most D.LIST_SCAN_MAX entries.
  Errors   EMP_INVALID unknown status <status> | bad cursor
  Events   none
]]

local LIST_FIELDS = {'service', 'status', 'priority', 'attempt', 'worker_id', 'progress', 'created_at',
  'finished_at', 'failure_class', 'customer_id', 'workflow_id', 'message'}
local EVERY_STATUS = {'active', 'pending', 'scheduled', 'waiting', 'unworkable', 'failed', 'cancelled', 'completed'}
local LISTABLE = {active = true, pending = true, scheduled = true, waiting = true, assigned = true, in_progress = true,
  unworkable = true, failed = true, cancelled = true, completed = true}

-- The index keys of one status, and whether it is read newest first.
local function index_of(P, st, service)
  if st == 'pending' then
    local svcs = {service}
    if not nonempty(service) then svcs = redis.call('SMEMBERS', K.services(P)) end
    local keys = {}
    for _, svc in ipairs(svcs) do
      for _, sig in ipairs(redis.call('HKEYS', K.sigs(P, svc))) do keys[#keys + 1] = K.queue(P, svc, sig) end
    end
    return keys, false
  end
  if st == 'scheduled' then return {K.scheduled(P)}, false end
  if st == 'waiting' then return {K.waiting(P)}, false end
  if st == 'assigned' or st == 'in_progress' or st == 'active' then return {K.leases(P)}, false end
  if st == 'unworkable' then return {K.unworkable(P)}, true end
  if TERMINAL[st] then return {K.done(P, st)}, true end
  return nil
end

-- Does (s1, m1) come before (s2, m2) in this index's order?
local function before(s1, m1, s2, m2, rev)
  if s1 ~= s2 then
    if rev then return s1 > s2 end
    return s1 < s2
  end
  if rev then return m1 > m2 end
  return m1 < m2
end

-- Rank (0-based, in reading order) of the first entry of `key` after (score, member): O(log n).
local function rank_after(key, score, member, rev)
  if score == nil then return 0 end
  local s = redis.call('ZSCORE', key, member)
  if s and tonumber(s) == score then
    return redis.call(rev and 'ZREVRANK' or 'ZRANK', key, member) + 1
  end
  -- The entry is gone: find its place. Entries of the same score sort by member; bisect them.
  local lo, hi
  if rev then
    lo = redis.call('ZCOUNT', key, '(' .. fmt(score), '+inf')
    hi = redis.call('ZCOUNT', key, fmt(score), '+inf')
  else
    lo = redis.call('ZCOUNT', key, '-inf', '(' .. fmt(score))
    hi = redis.call('ZCOUNT', key, '-inf', fmt(score))
  end
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local m = redis.call(rev and 'ZREVRANGE' or 'ZRANGE', key, mid, mid)[1]
    if before(score, member, score, m, rev) then hi = mid else lo = mid + 1 end
  end
  return lo
end

-- Up to `want` entries {score, member} of the index after (score, member), merged across its keys.
local function entries_after(keys, rev, score, member, want)
  local all = {}
  for _, key in ipairs(keys) do
    local from = rank_after(key, score, member, rev)
    local items = redis.call(rev and 'ZREVRANGE' or 'ZRANGE', key, from, from + want - 1, 'WITHSCORES')
    for i = 1, #items, 2 do all[#all + 1] = {tonumber(items[i + 1]), items[i]} end
  end
  if #keys > 1 then
    table.sort(all, function(a, b) return before(a[1], a[2], b[1], b[2], rev) end)
  end
  local out = {}
  for i = 1, math.min(want, #all) do out[i] = all[i] end
  return out
end

local function cursor_at(st, score, member)
  if score == nil then return st .. '||' end
  return st .. '|' .. fmt(score) .. '|' .. member
end

-- The reply: rows as a JSON array (cjson would encode an empty table as {}), and the cursor.
local function page_reply(rows, cursor)
  if #rows == 0 then return {'[]', cursor} end
  return {cjson.encode(rows), cursor}
end

local function list_jobs(keys, args)
  local P, status, service = args[1], args[2] or '', args[3] or ''
  local limit = clamp(args[4], 1, D.LIST_PAGE_MAX, D.LIST_PAGE)
  local cursor = args[5] or ''
  local statuses = {status}
  if status == '' then statuses = EVERY_STATUS end
  for _, st in ipairs(statuses) do
    if not LISTABLE[st] then return invalid('unknown status ' .. st) end
  end
  local first, score, member = 1, nil, nil
  if cursor ~= '' then
    local cst, cscore, cmember = string.match(cursor, '^([%w_]+)|([%d]*)|(.*)$')
    first = nil
    for i, st in ipairs(statuses) do
      if st == cst then first = i end
    end
    if first == nil then return invalid('bad cursor') end
    if cscore ~= '' then score, member = tonumber(cscore), cmember end
  end
  local out, budget = {}, D.LIST_SCAN_MAX
  for i = first, #statuses do
    local st = statuses[i]
    local ikeys, rev = index_of(P, st, service)
    if i > first then score, member = nil, nil end
    while true do
      local want = math.min(limit - #out + 1, budget)
      if want < 1 then return page_reply(out, cursor_at(st, score, member)) end
      local entries = entries_after(ikeys, rev, score, member, want)
      for _, e in ipairs(entries) do
        if #out >= limit then return page_reply(out, cursor_at(st, score, member)) end
        budget = budget - 1
        score, member = e[1], e[2]
        local id = member
        if st == 'pending' then id = member_id(member) end
        local v = redis.call('HMGET', K.job(P, id), unpack(LIST_FIELDS))
        if v[1] then
          local row = {id = id}
          for k, f in ipairs(LIST_FIELDS) do
            if v[k] then row[f] = v[k] end
          end
          local keep = (service == '' or row.service == service)
          if st ~= 'active' and status ~= '' and row.status ~= status then keep = false end
          if keep then out[#out + 1] = row end
        end
      end
      if #entries < want then break end
    end
  end
  return page_reply(out, '')
end

redis.register_function{function_name = 'emp_list_jobs', callback = list_jobs, flags = {'no-writes'}}
