-- KEYS: session. ARGV: stored key, index key prefix, the user it must
-- belong to (or ''). 1 if a session was deleted.
local uid = redis.call('HGET', KEYS[1], 'u')
if not uid then return 0 end
if ARGV[3] ~= '' and uid ~= ARGV[3] then return 0 end
local deleted = redis.call('DEL', KEYS[1])
if uid ~= '' then redis.call('ZREM', ARGV[2] .. uid, ARGV[1]) end
return deleted
