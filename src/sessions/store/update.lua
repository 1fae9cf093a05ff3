-- KEYS: session, index. ARGV: stored key, data, expiry (ms), user id.
-- 0 if the session is gone: it stays gone.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'd', ARGV[2], 'e', ARGV[3], 'u', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
index(KEYS[2], ARGV[1], ARGV[3])
return 1
