"""Lua scripts that make each multi-step Redis operation atomic.

Each script touches only ``KEYS[1]``, so it is valid on Redis Cluster
without cross-slot errors. Numbers that leave a script as floats are
formatted with ``%.17g`` because Redis truncates Lua numbers in replies to
integers, and the default Lua format keeps only 14 digits.
"""

TAKE = """
-- KEYS[1]: bucket hash. ARGV: capacity, window_ms, repeated per window.
-- Fields per window: t:<window_ms> tokens, u:<window_ms> update time (ms).
-- The same steps as outpost.store.bucket.take_tokens.
local eps = 1e-9
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local caps, wins, levels = {}, {}, {}
local allowed = true
local newest = now
local longest = 0

for i = 1, #ARGV / 2 do
  local cap = tonumber(ARGV[2 * i - 1])
  local win = tonumber(ARGV[2 * i])
  local rate = cap / win
  local state = redis.call('HMGET', KEYS[1], 't:' .. win, 'u:' .. win)
  local level = cap
  if state[1] then
    local updated = tonumber(state[2])
    local elapsed = math.max(0, now - updated)
    level = math.min(cap, tonumber(state[1]) + elapsed * rate)
    newest = math.max(newest, updated)
  end
  caps[i], wins[i], levels[i] = cap, win, level
  longest = math.max(longest, win)
  if level + eps < 1 then allowed = false end
end

local retry = 0
local best_rem, best_reset, best_cap = nil, 0, 0
for i = 1, #caps do
  local rate = caps[i] / wins[i]
  local left = levels[i]
  if allowed then
    left = left - 1
    redis.call('HSET', KEYS[1], 't:' .. wins[i], string.format('%.17g', left),
      'u:' .. wins[i], string.format('%.17g', newest))
  elseif levels[i] + eps < 1 then
    retry = math.max(retry, (1 - levels[i]) / rate)
  end
  local rem = math.max(0, math.floor(left + eps))
  local reset = math.max(0, (caps[i] - left) / rate)
  if best_rem == nil or rem < best_rem or (rem == best_rem and reset > best_reset)
  then
    best_rem, best_reset, best_cap = rem, reset, caps[i]
  end
end

if allowed then redis.call('PEXPIRE', KEYS[1], longest) end
return {allowed and 1 or 0, string.format('%.17g', retry), best_rem, best_cap,
  string.format('%.17g', best_reset)}
"""

RAISE_COOLDOWN = """
-- KEYS[1]: cooldown marker. ARGV[1]: cooldown in ms. Keeps the later expiry.
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
"""

IDEM_RESERVE = """
-- KEYS[1]: record hash with fp, token and, once done, resp.
-- ARGV: fingerprint, new token, lease ms. Same steps as base.decide_reserve.
local rec = redis.call('HMGET', KEYS[1], 'fp', 'token', 'resp')
if not rec[1] then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'token', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'reserved'}
end
if rec[1] ~= ARGV[1] then return {'mismatch'} end
if rec[3] then return {'done', rec[3]} end
if rec[2] == ARGV[2] then return {'reserved'} end
return {'in_flight'}
"""

IDEM_COMPLETE = """
-- KEYS[1]: record hash. ARGV: token, response, ttl ms.
local rec = redis.call('HMGET', KEYS[1], 'token', 'resp')
if rec[1] ~= ARGV[1] then return 0 end
if rec[2] then return 1 end
redis.call('HSET', KEYS[1], 'resp', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

IDEM_RELEASE = """
-- KEYS[1]: record hash. ARGV[1]: token. Only an in-flight record goes.
local rec = redis.call('HMGET', KEYS[1], 'token', 'resp')
if rec[1] == ARGV[1] and not rec[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

ACQUIRE_LOCK = """
-- KEYS[1]: lock. ARGV: owner, ttl ms. The owner may extend its own lock.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

DELETE_IF = """
-- KEYS[1]: string key. ARGV[1]: the value it must still hold.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""
