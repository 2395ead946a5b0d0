--[[
  _events.lua: events are written in the same call as the change they describe, so the order of the
  stream is the order of changes. Every event goes to `events` (capped at D.EVENTS_MAXLEN); a job's
  events after its submission also go to its own stream (capped at D.JOB_EVENTS_MAXLEN).
]]

-- The stream caps as text, formatted once at load (a number argument costs a format per call; the
-- library's load step has no `string` table, so concatenation formats them).
local EVENT_CAPS = {all = '' .. D.EVENTS_MAXLEN, job = '' .. D.JOB_EVENTS_MAXLEN}

-- Append prepared fields {'type', t, 'ts', ts, ...} to the namespace's stream.
local function append_event(P, fields)
  redis.call('XADD', K.events(P), 'MAXLEN', '~', EVENT_CAPS.all, '*', unpack(fields))
end

-- `attempt`: text (or a number, formatted here).
local function emit(P, now, etype, id, wid, attempt, data, per_job)
  local fields = {'type', etype, 'ts', fmt(now)}
  local n = 4
  if nonempty(id) then fields[n + 1] = 'job'; fields[n + 2] = id; n = n + 2 end
  if nonempty(wid) then fields[n + 1] = 'worker'; fields[n + 2] = wid; n = n + 2 end
  if attempt ~= nil then
    fields[n + 1] = 'attempt'
    fields[n + 2] = type(attempt) == 'number' and int_str(attempt) or attempt
    n = n + 2
  end
  if data ~= nil then fields[n + 1] = 'data'; fields[n + 2] = data end
  append_event(P, fields)
  if per_job and nonempty(id) then
    redis.call('XADD', K.job_events(P, id), 'MAXLEN', '~', EVENT_CAPS.job, '*', unpack(fields))
  end
end
