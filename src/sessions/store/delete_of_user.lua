-- KEYS: index. ARGV: session key prefix, the stored key to keep (or '').
-- How many sessions ended.
index(KEYS[1], nil, nil)
local ended = 0
for _, h in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if h ~= ARGV[2] then
    ended = ended + redis.call('DEL', ARGV[1] .. h)
    redis.call('ZREM', KEYS[1], h)
  end
end
return ended
