--[[
  emp_cleanup: retention and lapsed registrations, one bounded page each.
  Terminal jobs expire by themselves (EXPIRE set when they end); this trims the listing indexes of
  expired ids, and marks workers whose registration lapsed (they died without saying so) offline,
  so no phantom worker stays listed.

  KEYS[1]  workers
  ARGV[1]  P, ARGV[2] page size
  Reply    {trimmed index entries, workers marked offline}
]]

local function cleanup(keys, args)
  local P, page = args[1], tonumber(args[2]) or D.MAINTENANCE_PAGE
  local now = now_ms()
  local cutoff = now - D.RETENTION_S * 1000
  local trimmed = 0
  for _, s in ipairs({'completed', 'failed', 'cancelled'}) do
    local old = redis.call('ZRANGEBYSCORE', k_done(P, s), '-inf', cutoff, 'LIMIT', 0, page)
    if #old > 0 then
      redis.call('ZREM', k_done(P, s), unpack(old))
      trimmed = trimmed + #old
    end
  end
  local lapsed = redis.call('ZRANGEBYSCORE', P .. 'workers', '-inf', now, 'LIMIT', 0, page)
  for _, wid in ipairs(lapsed) do
    redis.call('ZREM', P .. 'workers', wid)
    local W = load_worker(P, wid)
    if W then
      for _, s in ipairs(split_csv(W.services)) do redis.call('ZREM', k_idle(P, s), wid) end
      redis.call('HSET', k_worker(P, wid), 'status', 'offline', 'offline_at', fmt(now))
      redis.call('EXPIRE', k_worker(P, wid), 86400)
      redis.call('DEL', k_wmatch(P, wid))
    end
    emit(P, now, 'worker_offline', nil, wid, nil, '{"reason":"registration lapsed"}', false)
  end
  return {trimmed, #lapsed}
end

redis.register_function('emp_cleanup', cleanup)
