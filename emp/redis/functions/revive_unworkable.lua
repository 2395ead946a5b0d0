--[[
  emp_revive_unworkable: a live worker can run this signature again: unflag it and move one page of
  its unworkable jobs back to their places in the queue. Call again while `remaining` > 0.

  KEYS[1]  usigs:<service>
  ARGV[1]  P, ARGV[2] service, ARGV[3] sig, ARGV[4] page size
  Reply    {'OK', moved, remaining} | {'NOT_FOUND'}
]]

local function revive_unworkable(keys, args)
  local P, svc, sig, page = args[1], args[2], args[3], tonumber(args[4]) or 500
  local flagged = redis.call('HGET', k_usigs(P, svc), sig)
  if not flagged then return {'NOT_FOUND'} end
  local text = flagged
  if string.sub(text, 1, 1) == '~' then text = string.sub(text, 2) end
  redis.call('HSET', k_sigs(P, svc), sig, text)
  redis.call('HSET', k_usigs(P, svc), sig, '~' .. text)
  local now = now_ms()
  local ukey = k_uqueue(P, svc, sig)
  local members = redis.call('ZRANGE', ukey, 0, page - 1)
  for _, m in ipairs(members) do
    local id = member_id(m)
    redis.call('ZREM', ukey, m)
    redis.call('ZREM', P .. 'unworkable', id)
    local j = load_job(P, id)
    if j and j.status == 'unworkable' then
      enqueue(P, now, id, j)
      emit(P, now, 'job_requeued', id, nil, nil, '{"from":"unworkable"}', true)
    end
  end
  local remaining = redis.call('ZCARD', ukey)
  if remaining == 0 then redis.call('HDEL', k_usigs(P, svc), sig) end
  return {'OK', #members, remaining}
end

redis.register_function('emp_revive_unworkable', revive_unworkable)
