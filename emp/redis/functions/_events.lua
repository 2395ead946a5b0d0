--[[
  _events.lua: events are written in the same call as the change they describe, so the order of the
  stream is the order of changes. Every event goes to `events` (capped at D.EVENTS_MAXLEN); a job's
  events after its submission also go to its own stream (capped at D.JOB_EVENTS_MAXLEN).
]]

-- Append prepared fields {'type', t, 'ts', ts, ...} to the namespace's stream.
local function append_event(P, fields)
  redis.call('XADD', K.events(P), 'MAXLEN', '~', D.EVENTS_MAXLEN, '*', unpack(fields))
end

local function emit(P, now, etype, id, wid, attempt, data, per_job)
  local fields = {'type', etype, 'ts', fmt(now)}
  if nonempty(id) then fields[#fields + 1] = 'job'; fields[#fields + 1] = id end
  if nonempty(wid) then fields[#fields + 1] = 'worker'; fields[#fields + 1] = wid end
  if attempt ~= nil then fields[#fields + 1] = 'attempt'; fields[#fields + 1] = tostring(attempt) end
  if data ~= nil then fields[#fields + 1] = 'data'; fields[#fields + 1] = data end
  append_event(P, fields)
  if per_job and nonempty(id) then
    redis.call('XADD', K.job_events(P, id), 'MAXLEN', '~', D.JOB_EVENTS_MAXLEN, '*', unpack(fields))
  end
end
