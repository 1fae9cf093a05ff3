-- KEYS: session, index. ARGV: stored key, data, expiry (ms), user id, the
-- most sessions a user keeps, the session key prefix.
-- 0 if the session exists (never overwritten). Beyond the most, the
-- sessions that expire first end.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'd', ARGV[2], 'e', ARGV[3], 'u', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
index(KEYS[2], ARGV[1], ARGV[3])
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if extra > 0 then
  for _, h in ipairs(redis.call('ZRANGE', KEYS[2], 0, extra - 1)) do
    redis.call('DEL', ARGV[6] .. h)
    redis.call('ZREM', KEYS[2], h)
  end
end
return 1
