-- KEYS: the query's key, the index (a sorted set of hashes by time).
-- ARGV: hash, query text, time to live (ms), the most entries kept, the
-- key prefix of queries. Remembers the query; past the most, the oldest go.
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if extra > 0 then
  for _, h in ipairs(redis.call('ZRANGE', KEYS[2], 0, extra - 1)) do
    redis.call('DEL', ARGV[5] .. h)
    redis.call('ZREM', KEYS[2], h)
  end
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
