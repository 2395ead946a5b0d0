--[[
  _flows.lua: dependent jobs (docs/flows.md), settled in the call that ends a parent.

  A job others wait on has a `flow` field: its flow's id, or '~' for a job that has only --after
  children (so a job without children costs one more HMGET field and a nil check: nothing else).
  Its children are the set children:<id>. A waiting child (status `waiting`) keeps:
    parents          JSON [[parent id, on, step name], ...]   on: completed | failed | always
    pending_parents  how many parents have not ended yet
    refs             JSON [[from, path, text], ...]: the {"$from": ..., "path": ...} references of
                     its payload, each with its exact text in the stored payload (absent: none)
  When a job with a `flow` field ends, FLOW.ended runs (complete_attempt, fail_final, emp_cancel and
  the `cancelled` class of emp_fail call it after their own events): each waiting child either can
  never run now (its edge does not hold: it ends `cancelled` at once, naming the parent), or counts
  one parent less; at zero its references are resolved and it is queued like a promoted job, in its
  flow's place (its score uses the flow's workflow_priority / workflow_datetime). A child that ends
  is settled in turn (a work list, not recursion), so a whole subtree is settled in one call.
]]

FLOW.ON = {completed = true, failed = true, always = true}

-- Fields of a parent's record that hold JSON, decoded by a path that names only them.
FLOW.JSON_FIELDS = {result = true, history = true}

function FLOW.edge_holds(on, status)
  return on == 'always' or on == status
end

-- One step of flow `flow` ended: the flow's record counts it; the record expires with the last.
function FLOW.step_ended(P, now, flow)
  if not nonempty(flow) or flow == '~' then return end
  local fkey = K.flow(P, flow)
  if redis.call('EXISTS', fkey) == 0 then redis.call('ZREM', K.flows(P), flow); return end
  if redis.call('HINCRBY', fkey, 'open', -1) <= 0 then
    redis.call('ZREM', K.flows(P), flow) -- the dashboards' index of flows not ended (emp_flows_active)
    redis.call('HSET', fkey, 'finished_at', fmt(now))
    redis.call('EXPIRE', fkey, RETENTION_TTL)
  end
end

-- The value at a dot path into job `pid`'s record (`result.outputs.0.url`: the first segment is a
-- field of the hash, JSON fields are decoded, a number indexes an array from 0), or nil, why.
function FLOW.ref_value(P, pid, path)
  local segs = {}
  for s in string.gmatch(path, '[^.]+') do segs[#segs + 1] = s end
  if #segs == 0 then return nil, 'the path is empty' end
  local raw = redis.call('HGET', K.job(P, pid), segs[1])
  if not raw then return nil, 'the parent has no ' .. segs[1] end
  local v = raw
  if #segs > 1 or FLOW.JSON_FIELDS[segs[1]] then
    local ok, dec = pcall(cjson.decode, raw)
    if ok then
      v = dec
    elseif #segs > 1 then
      return nil, segs[1] .. ' is not JSON'
    end
  end
  for i = 2, #segs do
    if type(v) ~= 'table' then return nil, 'nothing at ' .. table.concat(segs, '.', 1, i) end
    local s = segs[i]
    local nv = v[s]
    if nv == nil and string.find(s, '^%d+$') then nv = v[tonumber(s) + 1] end
    if nv == nil then return nil, 'nothing at ' .. table.concat(segs, '.', 1, i) end
    v = nv
  end
  return v, nil
end

-- `s` with every occurrence of `find` replaced by `repl` (plain text, no patterns).
function FLOW.replace_plain(s, find, repl)
  local out, i = {}, 1
  while true do
    local a, b = string.find(s, find, i, true)
    if not a then break end
    out[#out + 1] = string.sub(s, i, a - 1)
    out[#out + 1] = repl
    i = b + 1
  end
  out[#out + 1] = string.sub(s, i)
  return table.concat(out)
end

-- A waiting child ends without running (cancelled: it can never run; failed: a reference does not
-- resolve). Its own children are settled next through `work`.
function FLOW.end_child(P, now, id, status, fclass, err, flow, work)
  redis.call('ZREM', K.waiting(P), id)
  redis.call('HSET', K.job(P, id), 'status', status, 'finished_at', fmt(now), 'failure_class', fclass, 'error', err)
  if status == 'cancelled' then
    emit(P, now, 'job_cancelled', id, nil, nil, '{"from":"waiting","reason":' .. json_str(err) .. '}', true)
  else
    emit(P, now, 'job_failed', id, nil, nil, '{"failure_class":' .. json_str(fclass) .. ',"error":'
      .. json_str(string.sub(err, 1, D.EVENT_ERROR_MAX)) .. '}', true)
  end
  finish(P, now, id, status)
  if nonempty(flow) then work[#work + 1] = {id, status, flow} end
end

-- Every parent of a waiting child ended as its edges require: resolve its references into the
-- stored payload, then queue it (pending, or unworkable when its signature is flagged).
function FLOW.ready(P, now, id, work)
  local j = load_job(P, id)
  if j == nil or j.status ~= 'waiting' then return end
  local x = redis.call('HMGET', K.job(P, id), 'refs', 'parents')
  if nonempty(x[1]) then
    local refs, parents = cjson.decode(x[1]), cjson.decode(x[2] or '[]')
    local pkey = K.payload(P, id)
    local payload = redis.call('GET', pkey) or '{}'
    for _, r in ipairs(refs) do
      local from, path, text = r[1], r[2], r[3]
      local pid = nil
      for _, e in ipairs(parents) do
        if e[1] == from or e[3] == from then pid = e[1] end
      end
      local v, why = nil, from .. ' is not a parent of this job'
      if pid then v, why = FLOW.ref_value(P, pid, path) end
      if v == nil then
        FLOW.end_child(P, now, id, 'failed', 'malformed', 'reference {"$from": ' .. json_str(from) .. ', "path": '
          .. json_str(path) .. '} does not resolve: ' .. why, j.flow, work)
        return
      end
      payload = FLOW.replace_plain(payload, text, cjson.encode(v))
    end
    redis.call('SET', pkey, payload)
  end
  redis.call('ZREM', K.waiting(P), id)
  local st = enqueue(P, now, id, j)
  emit(P, now, st == 'pending' and 'job_requeued' or 'job_unworkable', id, nil, nil, '{"from":"waiting"}', true)
end

-- Parent `pid` of waiting child `cid` ended with `pstatus`.
function FLOW.parent_ended(P, now, cid, pid, pstatus, work)
  local ck = K.job(P, cid)
  local v = redis.call('HMGET', ck, 'status', 'parents', 'flow')
  if v[1] ~= 'waiting' or not v[2] then return end
  local on, name = nil, pid
  for _, e in ipairs(cjson.decode(v[2])) do
    if e[1] == pid then on, name = e[2], nonempty(e[3]) and e[3] or pid end
  end
  if on == nil then return end
  if not FLOW.edge_holds(on, pstatus) then
    FLOW.end_child(P, now, cid, 'cancelled', 'cancelled', 'can never run: ' .. name .. ' ended ' .. pstatus
      .. ' and this step runs after it on ' .. on, v[3], work)
    return
  end
  if redis.call('HINCRBY', ck, 'pending_parents', -1) <= 0 then FLOW.ready(P, now, cid, work) end
end

-- Settle every job in `work` ({id, status, flow} each) and whatever their ending ends in turn.
function FLOW.settle(P, now, work)
  local i = 1
  while i <= #work do
    local w = work[i]
    i = i + 1
    FLOW.step_ended(P, now, w[3])
    local ckey = K.children(P, w[1])
    local kids = redis.call('SMEMBERS', ckey)
    if #kids > 0 then
      redis.call('EXPIRE', ckey, RETENTION_TTL)
      table.sort(kids)
      for _, cid in ipairs(kids) do FLOW.parent_ended(P, now, cid, w[1], w[2], work) end
    end
  end
end

-- The hook (declared in _job.lua): job `id` of flow `flow` (or '~') ended with `status`.
function FLOW.ended(P, now, id, status, flow)
  FLOW.settle(P, now, {{id, status, flow}})
end

-- Submit (submit.lua): the flow block after the jobs, ARGV[at + 1] = 'FLOW':
--   ARGV[at + 2]  flow id ('' for --after: no flow record)
--   ARGV[at + 3]  JSON {"steps": [{"id": child id, "parents": [[id, on, step name], ...],
--                 "refs": [[from, path, text], ...]}, ...], "record": {field: text, ...}}
-- Checked before the first write: returns the parsed block, or nil and why the batch is refused.
-- `seen`: the batch's ids; `args`, `ids`, `bases` as in submit.lua (field k of job i: args[bases[i] + k]).
function FLOW.check(P, args, at, ids, bases, seen)
  local fid, ok, spec = args[at + 2], pcall(cjson.decode, args[at + 3] or '')
  if not ok or type(spec) ~= 'table' or type(spec.steps) ~= 'table' then return nil, 'flow: bad block' end
  if fid ~= '' then
    if #fid > D.JOB_ID_MAX or string.find(fid, '[%s%c]') then return nil, 'flow: bad id' end
    if redis.call('EXISTS', K.flow(P, fid)) == 1 then return nil, 'flow: ' .. fid .. ' exists' end
  end
  local base_of = {}
  for i, id in ipairs(ids) do base_of[id] = bases[i] end
  local f = {id = fid, steps = {}, order = {}, ended = {}, record = spec.record, ids = ids}
  local indeg, kids = {}, {}
  for _, s in ipairs(spec.steps) do
    local cid = s.id
    if type(cid) ~= 'string' or not seen[cid] then return nil, 'flow: step ' .. tostring(cid) .. ' is not in the batch' end
    if f.steps[cid] then return nil, 'flow: step ' .. cid .. ' listed twice' end
    if type(s.parents) ~= 'table' or #s.parents == 0 then return nil, 'flow: step ' .. cid .. ' has no parents' end
    if args[base_of[cid] + 14] ~= '' then return nil, 'flow: step ' .. cid .. ' waits for parents and cannot have run_at' end
    local pending, has = 0, {}
    for _, e in ipairs(s.parents) do
      local pid, on = e[1], e[2]
      if type(pid) ~= 'string' or type(on) ~= 'string' or not FLOW.ON[on] then
        return nil, 'flow: step ' .. cid .. ': an edge needs a parent id and on = completed | failed | always'
      end
      if type(e[3]) ~= 'string' then e[3] = '' end
      if pid == cid then return nil, 'flow: a cycle through ' .. cid end
      if has[pid] then return nil, 'flow: step ' .. cid .. ' depends on ' .. pid .. ' twice' end
      has[pid] = true
      if seen[pid] then
        pending = pending + 1
        indeg[cid] = (indeg[cid] or 0) + 1
        kids[pid] = kids[pid] or {}
        table.insert(kids[pid], cid)
      else
        local pstatus = redis.call('HGET', K.job(P, pid), 'status')
        if not pstatus then return nil, 'flow: step ' .. cid .. ': parent ' .. pid .. ' not found' end
        if TERMINAL[pstatus] then
          if not FLOW.edge_holds(on, pstatus) then
            return nil, 'flow: step ' .. cid .. ' can never run: parent ' .. pid .. ' already ended ' .. pstatus
          end
          f.ended[pid] = pstatus
        else
          pending = pending + 1
        end
      end
    end
    local refs = s.refs
    if type(refs) ~= 'table' then refs = {} end
    local payload = args[base_of[cid] + 4]
    for _, r in ipairs(refs) do
      if type(r[1]) ~= 'string' or type(r[2]) ~= 'string' or type(r[3]) ~= 'string' or r[3] == '' then
        return nil, 'flow: step ' .. cid .. ': a reference needs from, path and text'
      end
      local known = false
      for _, e in ipairs(s.parents) do
        if e[1] == r[1] or e[3] == r[1] then known = true end
      end
      if not known then return nil, 'flow: step ' .. cid .. ': $from ' .. r[1] .. ' is not one of its parents' end
      if not string.find(payload, r[3], 1, true) then
        return nil, 'flow: step ' .. cid .. ': reference text not found in its payload'
      end
    end
    f.steps[cid] = {parents = s.parents, refs = refs, pending = pending}
    f.order[#f.order + 1] = cid
  end
  -- A cycle among the batch's own jobs (Kahn: every job whose parents can all end before it).
  local queue, done = {}, 0
  for _, id in ipairs(ids) do
    if not indeg[id] then queue[#queue + 1] = id end
  end
  local k = 1
  while k <= #queue do
    local id = queue[k]
    k = k + 1
    done = done + 1
    for _, c in ipairs(kids[id] or {}) do
      indeg[c] = indeg[c] - 1
      if indeg[c] == 0 then queue[#queue + 1] = c end
    end
  end
  if done < #ids then
    for _, id in ipairs(f.order) do
      if indeg[id] and indeg[id] > 0 then return nil, 'flow: a cycle through ' .. id end
    end
  end
  return f, nil
end

-- Submit: the extra fields of job `id` (after fields[nf]): its flow, and a waiting step's edges.
function FLOW.job_fields(f, id, fields, nf)
  if f.id ~= '' then fields[nf + 1] = 'flow'; fields[nf + 2] = f.id; nf = nf + 2 end
  local s = f.steps[id]
  if s then
    fields[nf + 1] = 'parents'; fields[nf + 2] = cjson.encode(s.parents)
    fields[nf + 3] = 'pending_parents'; fields[nf + 4] = int_str(s.pending)
    nf = nf + 4
    if #s.refs > 0 then fields[nf + 1] = 'refs'; fields[nf + 2] = cjson.encode(s.refs); nf = nf + 2 end
  end
  return nf
end

-- Submit, after every job is written: the parents learn their children, the flow's record is
-- written, and a step whose parents had all ended already is settled now.
function FLOW.link(P, now, f)
  for _, cid in ipairs(f.order) do
    local s = f.steps[cid]
    for _, e in ipairs(s.parents) do
      if not f.ended[e[1]] then
        redis.call('SADD', K.children(P, e[1]), cid)
        redis.call('HSETNX', K.job(P, e[1]), 'flow', '~')
      end
    end
  end
  if f.id ~= '' then
    local fields = {'id', f.id, 'created_at', fmt(now), 'open', int_str(#f.ids)}
    if type(f.record) == 'table' then
      for name, v in pairs(f.record) do
        if type(v) == 'string' and name ~= 'open' and name ~= 'id' then fields[#fields + 1] = name; fields[#fields + 1] = v end
      end
    end
    redis.call('HSET', K.flow(P, f.id), unpack(fields))
    redis.call('ZADD', K.flows(P), now, f.id) -- the dashboards' index (emp_flows_active); left in step_ended
  end
  local work = {}
  for _, cid in ipairs(f.order) do
    if f.steps[cid].pending == 0 then FLOW.ready(P, now, cid, work) end
  end
  FLOW.settle(P, now, work)
end
