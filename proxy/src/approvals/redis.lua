-- Approvals in Redis (proxy/src/approvals/redis.rs): the same four atomic steps as the
-- in-process table (store.rs), over keys that share one hash slot.
-- KEYS[1] = <base>:pending. ARGV[1] = mode, ARGV[2] = base, ARGV[3] = now (Unix ms),
-- ARGV[4] = retain (ms).
local base, now, retain = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local pending = KEYS[1]

local function load(id)
  local s = redis.call('GET', base .. ':a:' .. id)
  if s then return cjson.decode(s) end
  return nil
end
local function save(a)
  local ttl = math.max(a.expires_at - now, 0) + retain
  redis.call('SET', base .. ':a:' .. a.id, cjson.encode(a), 'PX', ttl)
end
local function unpend(a)
  redis.call('ZREM', pending, a.id)
  redis.call('ZREM', base .. ':pp:' .. a.principal_tag, a.id)
end
local function expire(a)
  if a.status == 'pending' and now >= a.expires_at then
    a.status = 'timeout'
    a.decided_at = now
    unpend(a)
    save(a)
  end
end
local function collectable(a)
  if a.status == 'pending' then return now < a.expires_at end
  return (a.status == 'approved' or a.status == 'denied') and not a.consumed and now < a.expires_at
end

local mode = ARGV[1]
if mode == 'open' then
  -- ARGV[5] = the new approval (JSON), ARGV[6] = max pending, ARGV[7] = max per principal
  local fresh = cjson.decode(ARGV[5])
  local keykey = base .. ':k:' .. fresh.key
  local id = redis.call('GET', keykey)
  if id then
    local a = load(id)
    if a then
      if collectable(a) then return {'existing', cjson.encode(a)} end
      expire(a)
    end
    redis.call('DEL', keykey)
  end
  local mine = base .. ':pp:' .. fresh.principal_tag
  redis.call('ZREMRANGEBYSCORE', pending, '-inf', now)
  redis.call('ZREMRANGEBYSCORE', mine, '-inf', now)
  if redis.call('ZCARD', pending) >= tonumber(ARGV[6]) then return {'full', 'total'} end
  if redis.call('ZCARD', mine) >= tonumber(ARGV[7]) then return {'full', 'principal'} end
  save(fresh)
  redis.call('SET', keykey, fresh.id, 'PX', math.max(fresh.expires_at - now, 0) + retain)
  redis.call('ZADD', pending, fresh.expires_at, fresh.id)
  redis.call('ZADD', mine, fresh.expires_at, fresh.id)
  redis.call('PEXPIRE', mine, math.max(fresh.expires_at - now, 0) + retain)
  return {'created', ARGV[5]}
elseif mode == 'decide' then
  -- ARGV[5] = id, ARGV[6] = status, ARGV[7] = approver, ARGV[8] = reason ('' = none),
  -- ARGV[9] = how long the outcome stays collectable (ms)
  local a = load(ARGV[5])
  if not a then return {'missing', ''} end
  expire(a)
  if a.status ~= 'pending' then return {'settled', cjson.encode(a)} end
  a.status = ARGV[6]
  a.approver = ARGV[7]
  if ARGV[8] ~= '' then a.reason = ARGV[8] end
  a.decided_at = now
  a.expires_at = now + tonumber(ARGV[9])
  unpend(a)
  save(a)
  local keykey = base .. ':k:' .. a.key
  if redis.call('GET', keykey) == a.id then
    redis.call('PEXPIRE', keykey, tonumber(ARGV[9]) + retain)
  end
  return {'done', cjson.encode(a)}
elseif mode == 'take' then
  -- ARGV[5] = id
  local a = load(ARGV[5])
  if not a or a.consumed then return {'gone', ''} end
  expire(a)
  if a.status == 'pending' then return {'pending', cjson.encode(a)} end
  a.consumed = true
  save(a)
  local keykey = base .. ':k:' .. a.key
  if redis.call('GET', keykey) == a.id then redis.call('DEL', keykey) end
  return {'outcome', cjson.encode(a)}
elseif mode == 'get' then
  local a = load(ARGV[5])
  if not a then return {'missing', ''} end
  return {'found', cjson.encode(a)}
elseif mode == 'list' then
  local ids = redis.call('ZRANGEBYSCORE', pending, '(' .. now, '+inf')
  local out = {}
  for _, id in ipairs(ids) do
    local s = redis.call('GET', base .. ':a:' .. id)
    if s then table.insert(out, s) end
  end
  return out
end
return redis.error_reply('unknown mode')
