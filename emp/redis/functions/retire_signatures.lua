--[[
  emp_retire_signatures: retire the signatures whose queues stayed empty for the grace period, so
  the number of live signatures follows what is pending, not what was ever submitted. One bounded
  page per service and call: the walk of each service's sigs: and usigs: hashes goes on from a
  cursor kept in `sigscan`. A signature with no pending and no unworkable job is first noted in
  esigs:<svc> (when it was first seen empty); once it has been empty for grace_ms it loses its
  sigs: / usigs: entry, its idle set, its claim-index class list (hcls:) and the match-cache
  entries of every registered worker. Its heads entry is already gone (a queue has one only while
  it has jobs), so no class index holds it either. A job that comes later for it re-creates it
  (submit, or _queue.lua ensure_sig for a job that was away while it retired).

  KEYS[1]  sigscan
  ARGV[1]  P, ARGV[2] grace_ms, ARGV[3] page per service (clamped to 1..D.MAINTENANCE_PAGE_MAX,
           '' = D.SIGNATURE_RETIRE_PAGE),
  ARGV[4]  fence role, ARGV[5] fence token (optional, _fence.lua: refused unless current)
  Reply    {retired, done}  done = 1 when this call finished a round of every service's walk
           (call again while 0 to finish the round)
  Errors   EMP_INVALID grace_ms (nothing written); EMP_FENCED role token current (nothing written)
  Events   none (a signature is not a fleet object views show)
]]

local function sig_has_jobs(P, svc, sig)
  return redis.call('EXISTS', K.queue(P, svc, sig)) == 1 or redis.call('EXISTS', K.unworkable_queue(P, svc, sig)) == 1
end

local function retire_signatures(keys, args)
  local P, grace = args[1], tonumber(args[2])
  if not grace or grace < 0 then return invalid('grace_ms') end
  local fenced = leader_fenced(P, args[4], args[5])
  if fenced then return fenced end
  local page = clamp(args[3], 1, D.MAINTENANCE_PAGE_MAX, D.SIGNATURE_RETIRE_PAGE)
  local now = now_ms()
  local scan = K.sig_scan(P)
  local retired, done = {}, 1
  for _, svc in ipairs(redis.call('SMEMBERS', K.services(P))) do
    local ekey = K.empty_sigs(P, svc)
    for _, walk_of in ipairs({{'', K.sigs(P, svc)}, {'u:', K.usigs(P, svc)}}) do
      local field, hkey = walk_of[1] .. svc, walk_of[2]
      local res = redis.call('HSCAN', hkey, redis.call('HGET', scan, field) or '0', 'COUNT', page)
      local flat = res[2]
      for i = 1, #flat, 2 do
        local sig = flat[i]
        if sig_has_jobs(P, svc, sig) then
          redis.call('ZREM', ekey, sig)
        else
          local since = tonumber(redis.call('ZSCORE', ekey, sig))
          if since == nil then
            since = now
            redis.call('ZADD', ekey, now, sig)
          end
          if now - since >= grace then
            redis.call('HDEL', K.sigs(P, svc), sig)
            redis.call('HDEL', K.usigs(P, svc), sig)
            redis.call('ZREM', ekey, sig)
            redis.call('DEL', K.idle_sig(P, svc, sig))
            redis.call('HDEL', K.sig_classes(P, svc), sig)
            retired[#retired + 1] = sig
          end
        end
      end
      if res[1] == '0' then
        redis.call('HDEL', scan, field)
      else
        redis.call('HSET', scan, field, res[1])
        done = 0
      end
    end
  end
  -- The match caches: one HDEL per registered worker for this call's signatures (a signature is
  -- 16 hex digits of service and requirements, so the same sig never means two services).
  if #retired > 0 then
    for _, wid in ipairs(redis.call('ZRANGE', K.workers(P), 0, -1)) do
      for i = 1, #retired, 500 do
        redis.call('HDEL', K.worker_matches(P, wid), unpack(retired, i, math.min(i + 499, #retired)))
      end
    end
  end
  return {#retired, done}
end

redis.register_function{function_name = 'emp_retire_signatures', callback = retire_signatures, flags = {'allow-oom'}}
