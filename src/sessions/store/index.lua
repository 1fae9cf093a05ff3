-- Keeps a user's index (a sorted set of stored keys, scored by expiry)
-- pruned of expired members, and expiring with its latest one.
local function index(u, h, expiry)
  redis.call('ZREMRANGEBYSCORE', u, '-inf', now)
  if h then redis.call('ZADD', u, expiry, h) end
  local last = redis.call('ZRANGE', u, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIREAT', u, last[2]) end
end
