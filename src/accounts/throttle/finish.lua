-- KEYS: the keys' hashes. ARGV: outcome (failed, succeeded, cancelled),
-- forget ms, the hash whose failures a success clears.
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    local p = tonumber(redis.call('HGET', key, 'p') or '0')
    if p > 0 then redis.call('HSET', key, 'p', p - 1) end
    if ARGV[1] == 'failed' then
      redis.call('HINCRBY', key, 'f', 1)
      redis.call('HSET', key, 'l', now)
    elseif ARGV[1] == 'succeeded' and key == ARGV[3] then
      redis.call('HSET', key, 'f', 0)
    end
    redis.call('PEXPIRE', key, ARGV[2])
  end
end
return 1
