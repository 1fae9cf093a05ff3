-- KEYS: the window's hash. ARGV: window ms. {hits, previous hits, start ms}.
local s = tonumber(redis.call('HGET', KEYS[1], 's') or '0')
local h = tonumber(redis.call('HGET', KEYS[1], 'h') or '0')
local ph = tonumber(redis.call('HGET', KEYS[1], 'ph') or '0')
local w = tonumber(ARGV[1])
if s <= now - 2 * w then ph = 0 h = 1 s = now
elseif s <= now - w then ph = h h = 1 s = now
else h = h + 1 end
redis.call('HSET', KEYS[1], 's', s, 'h', h, 'ph', ph)
redis.call('PEXPIRE', KEYS[1], 2 * w)
return {h, ph, s}
