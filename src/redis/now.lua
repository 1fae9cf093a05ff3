-- Redis' clock in Unix milliseconds, as `now`: every script that compares
-- times starts with this, so no instance's clock is ever trusted.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
