-- Login failures are counted before the password is checked (fail closed),
-- and a key's lock follows from its count and last failure, so it is no
-- longer stored.
ALTER TABLE login_failures DROP COLUMN locked_until;

-- Fixed-window counters (registrations per client address).
CREATE TABLE rate_windows (
    -- `register:<address>`
    key TEXT PRIMARY KEY,
    hits INTEGER NOT NULL,
    started_at TIMESTAMP NOT NULL
);
CREATE INDEX rate_windows_started_at ON rate_windows (started_at);
