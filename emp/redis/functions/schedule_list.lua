--[[
  emp_schedule_list: schedules with their last job's state (emp schedule list / show). Read-only.

  KEYS[1]  schedules
  ARGV[1]  P, ARGV[2] name ('' = every schedule, by the time it was added), ARGV[3] offset,
  ARGV[4]  count (clamped to 1..D.LIST_PAGE_MAX, '' = D.LIST_PAGE)
  Reply    {next offset | '', JSON object per schedule: its hash fields (template included) plus
           last_status: the last job's status, 'expired' when its record is gone, '' when none}
]]

-- A block of its own: the library is one Lua chunk, whose top level may hold at most 200 locals.
do
  local function schedule_row(P, name)
    local flat = redis.call('HGETALL', K.schedule(P, name))
    if #flat == 0 then return nil end
    local row = hash_to_table(flat)
    row.last_status = ''
    if nonempty(row.last_job) then
      row.last_status = redis.call('HGET', K.job(P, row.last_job), 'status') or 'expired'
    end
    return cjson.encode(row)
  end

  local function schedule_list(keys, args)
    local P, name = args[1], args[2]
    if nonempty(name) then
      local row = schedule_row(P, name)
      return {'', row}
    end
    local offset = clamp(args[3], 0, D.MAX_MS, 0)
    local count = clamp(args[4], 1, D.LIST_PAGE_MAX, D.LIST_PAGE)
    local names = redis.call('ZRANGE', K.schedules(P), offset, offset + count - 1)
    local out = {#names == count and fmt(offset + count) or ''}
    for _, n in ipairs(names) do
      local row = schedule_row(P, n)
      if row then out[#out + 1] = row end
    end
    return out
  end

  redis.register_function{function_name = 'emp_schedule_list', callback = schedule_list, flags = {'no-writes'}}
end
