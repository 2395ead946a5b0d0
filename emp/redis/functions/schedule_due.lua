--[[
  emp_schedule_due: the active schedules whose next occurrence is due, with what the upkeep leader
  needs to plan their fires (emp/model/schedule.py plan), and the server's time. Read-only.

  KEYS[1]  scheddue
  ARGV[1]  P, ARGV[2] page (clamped to 1..D.LIST_PAGE_MAX, '' = D.MAINTENANCE_PAGE)
  Reply    {now_ms, JSON array of {name, kind, cron, tz, every_ms, missed, next_ms, last_fired}}
           (oldest next_ms first)
]]

-- A block of its own: the library is one Lua chunk, whose top level may hold at most 200 locals.
do
  local SCHEDULE_DUE_FIELDS = {'kind', 'cron', 'tz', 'every_ms', 'missed', 'next_ms', 'last_fired', 'paused'}

  local function schedule_due(keys, args)
    local P, page = args[1], clamp(args[2], 1, D.LIST_PAGE_MAX, D.MAINTENANCE_PAGE)
    local now = now_ms()
    local names = redis.call('ZRANGEBYSCORE', K.schedules_due(P), '-inf', fmt(now), 'LIMIT', 0, page)
    local rows = {}
    for _, name in ipairs(names) do
      local v = redis.call('HMGET', K.schedule(P, name), unpack(SCHEDULE_DUE_FIELDS))
      if v[1] and v[8] ~= '1' then
        local row = {name = name}
        for i, f in ipairs(SCHEDULE_DUE_FIELDS) do row[f] = v[i] or '' end
        rows[#rows + 1] = row
      end
    end
    if #rows == 0 then return {fmt(now), '[]'} end
    return {fmt(now), cjson.encode(rows)}
  end

  redis.register_function{function_name = 'emp_schedule_due', callback = schedule_due, flags = {'no-writes'}}
end
