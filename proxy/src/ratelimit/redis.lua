-- Palisade rate limits: check (or refund) every counter of one request in one atomic step.
-- KEYS[i]  one counter per limit that applies to the request.
-- ARGV[1]  "take" (check all; consume from all only if all pass) or "refund" (undo a take).
-- ARGV[3i-1], ARGV[3i], ARGV[3i+1] for KEYS[i]: kind ("r" rate | "q" quota),
--          interval in microseconds (rate: emission interval T; quota: window length),
--          capacity (rate: burst; quota: requests per window).
-- Returns {allowed (1|0), retry_us, remaining_1, reset_us_1, remaining_2, reset_us_2, ...};
-- remaining is -1 for a counter that refused.
-- Time is the server's (TIME), so every replica sharing this Redis sees one clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local mode = ARGV[1]
local n = #KEYS
local out = {1, 0}
local nexts = {}
local allowed = true
local retry = 0
for i = 1, n do
  local kind = ARGV[3 * i - 1]
  local interval = tonumber(ARGV[3 * i])
  local cap = tonumber(ARGV[3 * i + 1])
  local cur = redis.call('GET', KEYS[i])
  local remaining, reset = 0, 0
  if kind == 'r' then
    local tat = tonumber(cur) or now
    if tat < now then tat = now end
    if mode == 'refund' then
      if cur then nexts[i] = tat - interval end
    else
      local new_tat = tat + interval
      local allow_at = new_tat - interval * cap
      if now < allow_at then
        allowed = false
        if allow_at - now > retry then retry = allow_at - now end
        remaining = -1
        reset = tat - now
      else
        nexts[i] = new_tat
        remaining = math.floor((now + interval * cap - new_tat) / interval)
        reset = new_tat - now
      end
    end
  else
    local index = math.floor(now / interval)
    local window_end = (index + 1) * interval
    local count = 0
    if cur then
      local stored_index, stored_count = string.match(cur, '^(%d+):(%d+)$')
      if tonumber(stored_index) == index then count = tonumber(stored_count) end
    end
    reset = window_end - now
    if mode == 'refund' then
      if count > 0 then nexts[i] = count - 1 end
    elseif count >= cap then
      allowed = false
      remaining = -1
      if reset > retry then retry = reset end
    else
      nexts[i] = count + 1
      remaining = cap - count - 1
    end
  end
  out[2 * i + 1] = remaining
  out[2 * i + 2] = reset
end
if allowed or mode == 'refund' then
  for i = 1, n do
    local v = nexts[i]
    if v then
      local interval = tonumber(ARGV[3 * i])
      if ARGV[3 * i - 1] == 'r' then
        if v <= now then
          redis.call('DEL', KEYS[i])
        else
          local ttl_ms = math.floor((v - now) / 1000) + 1
          redis.call('SET', KEYS[i], string.format('%d', v), 'PX', ttl_ms)
        end
      else
        local index = math.floor(now / interval)
        local ttl_ms = math.floor(((index + 1) * interval - now) / 1000) + 1
        redis.call('SET', KEYS[i], string.format('%d:%d', index, v), 'PX', ttl_ms)
      end
    end
  end
else
  out[1] = 0
end
out[2] = retry
return out
