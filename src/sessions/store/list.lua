-- KEYS: index. ARGV: session key prefix.
-- A flat list of stored key, data, expiry for each live session.
index(KEYS[1], nil, nil)
local out = {}
for _, h in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local found = redis.call('HMGET', ARGV[1] .. h, 'd', 'e')
  if found[1] then
    table.insert(out, h)
    table.insert(out, found[1])
    table.insert(out, found[2])
  else
    redis.call('ZREM', KEYS[1], h)
  end
end
return out
