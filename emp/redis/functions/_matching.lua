--[[
  _matching.lua: which worker may run which job (the twin of emp/model/matching.py; both run the
  table of cases in tests/cases, see docs/internals.md "Matching"), and the worker record it reads.
]]

local function is_array(t)
  if type(t) ~= 'table' then return false end
  local n = 0
  for k, _ in pairs(t) do
    if type(k) ~= 'number' then return false end
    n = n + 1
  end
  for i = 1, n do
    if t[i] == nil then return false end
  end
  return true
end

local function same(a, b)
  return type(a) == type(b) and a == b
end

local function contains(arr, v)
  for _, x in ipairs(arr) do
    if same(x, v) then return true end
  end
  return false
end

local function walk(caps, key)
  local cur = caps
  for part in string.gmatch(key, '[^.]+') do
    if type(cur) ~= 'table' or is_array(cur) then return nil end
    cur = cur[part]
    if cur == nil or cur == cjson.null then return nil end
  end
  return cur
end

local function value_matches(r, w)
  if r == 'all' then return true end
  if w == nil or w == cjson.null then return false end
  if type(r) == 'table' then
    if type(w) ~= 'table' or not is_array(w) then return false end
    for _, item in ipairs(r) do
      if not contains(w, item) then return false end
    end
    return true
  end
  if type(w) == 'table' then
    if not is_array(w) then return false end
    return contains(w, r)
  end
  if type(r) == 'number' then
    return type(w) == 'number' and w >= r
  end
  return same(r, w)
end

local function models_match(r, caps, svc)
  if r == 'all' then return true end
  local models = caps.models
  if type(models) ~= 'table' then return false end
  local list = models
  if not is_array(models) then list = models[svc] end
  if type(list) ~= 'table' or not is_array(list) then return false end
  if type(r) == 'table' then
    for _, m in ipairs(r) do
      if not contains(list, m) then return false end
    end
    return true
  end
  return contains(list, r)
end

local function key_matches(key, r, caps, svc)
  if key == 'models' then return models_match(r, caps, svc) end
  if key == 'customer_isolation' then
    if r ~= 'strict' then return true end
    local ca = caps.customer_access
    return type(ca) == 'table' and ca.isolation == 'strict'
  end
  return value_matches(r, walk(caps, key))
end

local function requirements_match(req, caps, svc)
  if type(req) ~= 'table' then return false end
  if type(req.p) == 'table' then
    for key, r in pairs(req.p) do
      if not key_matches(key, r, caps, svc) then return false end
    end
  end
  if type(req.n) == 'table' then
    for key, r in pairs(req.n) do
      if key_matches(key, r, caps, svc) then return false end
    end
  end
  return true
end

-- Per-job rules, with the worker's restrictions precomputed at registration (register_worker.lua):
-- W.wf (workflow restriction), W.cr ('1' when customer rules exist), W.caps (decoded lazily).
local function customer_ok(caps, customer)
  local ca = caps.customer_access
  if type(ca) ~= 'table' then return true end
  local denied, allowed = ca.denied_customers, ca.allowed_customers
  if type(denied) == 'table' and nonempty(customer) and contains(denied, customer) then return false end
  local has_allowed = type(allowed) == 'table' and #allowed > 0
  if has_allowed and not (nonempty(customer) and contains(allowed, customer)) then return false end
  if ca.isolation == 'strict' and not has_allowed then return false end
  return true
end

-- Decoded capabilities by their JSON text: a worker with customer rules checks them on every claim,
-- and decoding its capabilities each time was most of that claim's Lua. The same text always decodes
-- to the same table, so the memo (in the library's Lua state, like housekeep_next) is safe; it holds
-- one entry per distinct capabilities text and starts over past 256, so it stays bounded. Nobody may
-- change a table it returns (matching only reads them).
local caps_memo = {tables = {}, n = 0}

local function decode_caps(text)
  local t = caps_memo.tables[text]
  if t == nil then
    local ok, v = pcall(cjson.decode, text)
    if not ok or type(v) ~= 'table' then v = {} end
    t = v
    if caps_memo.n >= 256 then caps_memo.tables, caps_memo.n = {}, 0 end
    caps_memo.tables[text] = t
    caps_memo.n = caps_memo.n + 1
  end
  return t
end

local function worker_caps(W)
  if W.caps_t == nil then
    if W.caps == nil then W.caps = redis.call('HGET', K.worker(W.P, W.id), 'caps') end
    W.caps_t = decode_caps(W.caps or '{}')
  end
  return W.caps_t
end

-- sig match through the worker's cache (wm:<wid>), computed once per (worker, signature).
local function sig_matches(P, W, svc, sig)
  local cached = redis.call('HGET', K.worker_matches(P, W.id), sig)
  if cached then return cached == '1' end
  local text = redis.call('HGET', K.sigs(P, svc), sig)
  if not text then text = redis.call('HGET', K.usigs(P, svc), sig) end
  local result = false
  if text then
    if string.sub(text, 1, 1) == '~' then text = string.sub(text, 2) end
    local ok, req = pcall(cjson.decode, text)
    if ok then result = requirements_match(req, worker_caps(W), svc) end
  end
  redis.call('HSET', K.worker_matches(P, W.id), sig, result and '1' or '0')
  return result
end

-- A job that ran out of memory (resource_exhausted) avoids every worker it ran out of memory on
-- (`avoid_workers`, a JSON array of ids) and, when the fail Function saw a live worker with more GPU
-- memory, needs more than `gpu_gb_over` GB (docs/internals.md "Out of memory").
local function avoided_workers(text)
  if not nonempty(text) then return {} end
  local ok, t = pcall(cjson.decode, text)
  if ok and type(t) == 'table' then return t end
  return {}
end

local function memory_ok(W, j)
  if contains(avoided_workers(j.avoid_workers), W.id) then return false end
  local over = tonumber(j.gpu_gb_over)
  if over == nil then return true end
  local mem = walk(worker_caps(W), 'hardware.gpu_memory_gb')
  return type(mem) == 'number' and mem > over
end

-- j: table with customer_id, workflow_id, avoid_workers, gpu_gb_over
local function job_rules_ok(W, j, now)
  if nonempty(W.wf) and j.workflow_id ~= W.wf then return false end
  if W.cr == '1' and not customer_ok(worker_caps(W), j.customer_id) then return false end
  if nonempty(j.avoid_workers) and not memory_ok(W, j) then return false end
  return true
end

-- The worker's capabilities JSON is not read here (it can be large): worker_caps() fetches it
-- the first time a match has to be computed.
local WORKER_FIELDS = {'services', 'wf', 'cr', 'allowed', 'wake', 'machine_id', 'last_req', 'last_job',
  'last_attempt', 'idle', 'status'}

local function load_worker(P, wid)
  local v = redis.call('HMGET', K.worker(P, wid), unpack(WORKER_FIELDS))
  if not v[1] then return nil end
  local W = {id = wid, P = P}
  for i, f in ipairs(WORKER_FIELDS) do
    if v[i] then W[f] = v[i] end
  end
  return W
end
