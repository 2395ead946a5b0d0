--[[
  emp_live_workers (read-only): one page of live workers (registration not lapsed) with their
  capabilities, for unworkable detection and `emp jobs explain`.

  KEYS[1]  workers
  ARGV[1]  P, ARGV[2] offset (clamped to >= 0), ARGV[3] count (clamped to 1..D.LIST_PAGE_MAX,
           '' = D.FLEET_PAGE)
  Reply    {next_offset | '', wid_1, caps_1, services_1, status_1, job_1, machine_1, wid_2, ...}
           next_offset: where the next page starts in the index ('' = this was the last page). A
           page may hold fewer workers than asked (an index entry whose hash is gone is skipped),
           so only next_offset tells whether more follow.
  Errors   none
  Events   none
]]

local function live_workers(keys, args)
  local P = args[1]
  local offset = clamp(args[2], 0, D.MAX_MS, 0)
  local count = clamp(args[3], 1, D.LIST_PAGE_MAX, D.FLEET_PAGE)
  local now = now_ms()
  local ids = redis.call('ZRANGEBYSCORE', K.workers(P), now, '+inf', 'LIMIT', offset, count)
  local out = {#ids == count and fmt(offset + count) or ''}
  for _, wid in ipairs(ids) do
    local v = redis.call('HMGET', K.worker(P, wid), 'caps', 'services', 'status', 'job', 'machine_id')
    if v[1] then
      out[#out + 1] = wid
      for i = 1, 5 do out[#out + 1] = v[i] or '' end
    end
  end
  return out
end

redis.register_function{function_name = 'emp_live_workers', callback = live_workers, flags = {'no-writes'}}
