--[[
  emp_schedule_add: store a recurring schedule (docs/schedules.md): its timing, its missed-occurrence
  policy and the job template it submits at each occurrence.

  KEYS[1]  schedules
  ARGV[1]  P
  ARGV[2]  name      [A-Za-z0-9][A-Za-z0-9_.-]*, at most D.SCHEDULE_NAME_MAX (no ':': job ids are
                     sched:<name>:<occurrence ms>)
  ARGV[3]  kind      cron | every
  ARGV[4]  cron      the expression ('' for every), ARGV[5] tz (zone name), ARGV[6] every_ms ('' for cron)
  ARGV[7]  missed    skip | once
  ARGV[8]  template  JSON object: the submit fields of emp_submit but id and run_at, every value a
                     string (validated by the client: emp.model.job.parse_submission)
  ARGV[9]  next_ms   the first occurrence (computed by the client: emp/model/schedule.py)
  ARGV[10] replace   '1': replace a schedule of that name, keeping its last_fired (so an occurrence
                     it already fired is never fired again) and its counters; '0': refuse
  ARGV[11] paused    '1': added paused (not fired until resumed)
  Reply    {'OK', next_ms} | {'EXISTS'} (a schedule of that name exists; nothing written)
  Errors   EMP_INVALID schedule: <reason> (nothing written)
  Events   none (the jobs it submits have theirs)
]]

-- A block of its own: the library is one Lua chunk, whose top level may hold at most 200 locals.
do
  local SCHEDULE_KINDS = {cron = true, every = true}
  local SCHEDULE_MISSED = {skip = true, once = true}

  local function schedule_add(keys, args)
    local P, name, kind, cron, tz, every_ms = args[1], args[2], args[3], args[4], args[5], args[6]
    local missed, template, next_ms, replace, paused = args[7], args[8], args[9], args[10], args[11]
    if not string.find(name, '^[A-Za-z0-9][A-Za-z0-9_.%-]*$') or #name > D.SCHEDULE_NAME_MAX then
      return invalid('schedule: bad name (1..' .. D.SCHEDULE_NAME_MAX .. ' of letters, digits, _ . -)')
    end
    if not SCHEDULE_KINDS[kind] then return invalid('schedule: kind must be cron or every') end
    if kind == 'cron' and not nonempty(cron) then return invalid('schedule: cron expression missing') end
    if kind == 'every' and not (tonumber(every_ms) and tonumber(every_ms) > 0) then
      return invalid('schedule: every_ms must be a positive number')
    end
    if not SCHEDULE_MISSED[missed] then return invalid('schedule: missed must be skip or once') end
    local ok, tpl = pcall(cjson.decode, template)
    if not ok or type(tpl) ~= 'table' or type(tpl.service) ~= 'string' or type(tpl.payload) ~= 'string' then
      return invalid('schedule: template must be a JSON object with service and payload')
    end
    local nxt = tonumber(next_ms)
    if not nxt or nxt ~= math.floor(nxt) or nxt < 0 or nxt > D.MAX_MS then
      return invalid('schedule: next_ms must be epoch ms')
    end
    local skey = K.schedule(P, name)
    local exists = redis.call('EXISTS', skey) == 1
    if exists and replace ~= '1' then return {'EXISTS'} end

    local now = now_ms()
    local keep = {}
    if exists then
      keep = redis.call('HMGET', skey, 'created_at', 'last_fired', 'last_job', 'last_fired_at', 'fired', 'skipped')
      redis.call('DEL', skey)
    end
    local fields = {'name', name, 'kind', kind, 'cron', cron, 'tz', tz, 'every_ms', every_ms, 'missed', missed,
      'template', template, 'service', tpl.service, 'next_ms', fmt(nxt), 'paused', paused == '1' and '1' or '0',
      'created_at', keep[1] or fmt(now), 'updated_at', fmt(now), 'fired', keep[5] or '0', 'skipped', keep[6] or '0'}
    if keep[2] then fields[#fields + 1] = 'last_fired'; fields[#fields + 1] = keep[2] end
    if keep[3] then fields[#fields + 1] = 'last_job'; fields[#fields + 1] = keep[3] end
    if keep[4] then fields[#fields + 1] = 'last_fired_at'; fields[#fields + 1] = keep[4] end
    redis.call('HSET', skey, unpack(fields))
    redis.call('ZADD', K.schedules(P), 'NX', now, name)
    if paused == '1' then
      redis.call('ZREM', K.schedules_due(P), name)
    else
      redis.call('ZADD', K.schedules_due(P), fmt(nxt), name)
    end
    return {'OK', fmt(nxt)}
  end

  redis.register_function('emp_schedule_add', schedule_add)
end
