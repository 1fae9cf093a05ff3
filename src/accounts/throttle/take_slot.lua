-- KEYS: the key's hash. ARGV: threshold, stale ms, forget ms.
-- {taken, failures, last failure ms}.
local f = tonumber(redis.call('HGET', KEYS[1], 'f') or '0')
local p = tonumber(redis.call('HGET', KEYS[1], 'p') or '0')
local pat = tonumber(redis.call('HGET', KEYS[1], 'pat') or '0')
local l = tonumber(redis.call('HGET', KEYS[1], 'l') or '0')
if now - pat > tonumber(ARGV[2]) then p = 0 end
if p == 0 or f + p < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'p', p + 1, 'pat', now)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {1, f, l}
end
return {0, f, l}
