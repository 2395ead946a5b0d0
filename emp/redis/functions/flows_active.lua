--[[
  emp_flows_active (read-only): the flows not ended, the oldest first, each with a bounded list of
  its steps' states (the dashboards: emp watch's flows panel, docs/watch.md).

  KEYS[1]  flows (the index of flows not ended: _flows.lua adds a flow at submit, removes it when
           its last step ends)
  ARGV[1]  P, ARGV[2] max flows listed, ARGV[3] max steps listed per flow (each clamped to
           0..D.LIST_PAGE_MAX, '' = 0)
  Reply    JSON {"total": flows not ended, "flows": [{"id", "created_at", "priority", "open",
           "steps_total", "steps": [{"id", "name", "service", "after": [parent step names],
           "status", "progress"}]}]}: at most max steps per flow, the steps not ended first (then
           in the flow's order); a step whose job expired has status ''. A listed flow whose record
           is gone is left out.
  Errors   none
  Events   none
  Cost     per flow: one HMGET of its record, a decode of its steps list, and one HMGET per step
           read: at most 4 x max steps (a flow with more steps shows some of them; "open" counts all)
]]

-- An anonymous callback: the library is one Lua chunk with at most 200 top-level locals.
redis.register_function{function_name = 'emp_flows_active', callback = function(keys, args)
  local P = args[1]
  local max_flows = clamp(args[2], 0, D.LIST_PAGE_MAX, 0)
  local max_steps = clamp(args[3], 0, D.LIST_PAGE_MAX, 0)
  local out = {total = redis.call('ZCARD', K.flows(P)), flows = {}}
  if max_flows < 1 then return cjson.encode(out) end
  local flows = {}
  for _, fid in ipairs(redis.call('ZRANGE', K.flows(P), 0, max_flows - 1)) do
    local v = redis.call('HMGET', K.flow(P, fid), 'created_at', 'priority', 'open', 'steps')
    if v[1] or v[4] then
      local ok, steps = pcall(cjson.decode, v[4] or '[]')
      if not ok or type(steps) ~= 'table' then steps = {} end
      local rows, open_rows, ended_rows = {}, 0, 0
      local scan = math.min(#steps, max_steps * 4)
      for i = 1, scan do
        local s = steps[i]
        if type(s) == 'table' and type(s.id) == 'string' then
          local j = redis.call('HMGET', K.job(P, s.id), 'status', 'progress')
          local after = {}
          if type(s.depends_on) == 'table' then
            for _, e in ipairs(s.depends_on) do
              if type(e) == 'table' and type(e.step) == 'string' then after[#after + 1] = e.step end
            end
          end
          local st = j[1] or ''
          local ended = st == 'completed' or st == 'failed' or st == 'cancelled'
          rows[#rows + 1] = {i = i, ended = ended, row = {id = s.id, name = tostring(s.name or s.id),
            service = tostring(s.service or ''), after = after, status = st, progress = j[2] or ''}}
          if ended then ended_rows = ended_rows + 1 else open_rows = open_rows + 1 end
        end
      end
      -- Keep the steps not ended first, then the ended ones, up to max steps, in the flow's order.
      local keep_ended = math.max(0, max_steps - open_rows)
      local shown = {}
      for _, r in ipairs(rows) do
        if #shown >= max_steps then break end
        if not r.ended then
          shown[#shown + 1] = r.row
        elseif keep_ended > 0 then
          keep_ended = keep_ended - 1
          shown[#shown + 1] = r.row
        end
      end
      if #shown == 0 then shown = cjson.decode('[]') end
      flows[#flows + 1] = {id = fid, created_at = v[1] or '', priority = v[2] or '', open = tonumber(v[3]) or 0,
        steps_total = #steps, steps = shown}
    end
  end
  if #flows > 0 then out.flows = flows else out.flows = cjson.decode('[]') end
  return cjson.encode(out)
end, flags = {'no-writes'}}
