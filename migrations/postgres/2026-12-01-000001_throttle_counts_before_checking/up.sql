-- Login attempts are counted while in progress (shared by every instance),
-- and a key's lock follows from its failures and the last of them, so it is
-- no longer stored.
ALTER TABLE login_failures DROP COLUMN locked_until;
-- Attempts admitted and not yet finished; they count only while
-- `in_progress_at` is recent (an instance that died mid-attempt leaves them).
ALTER TABLE login_failures ADD COLUMN in_progress INTEGER NOT NULL DEFAULT 0;
ALTER TABLE login_failures ADD COLUMN in_progress_at TIMESTAMP;

-- Windowed counters (registrations per client address): hits in the
-- window that started at `started_at`, and in the one before it.
CREATE TABLE rate_windows (
    -- `register:<address>`
    key TEXT PRIMARY KEY,
    hits INTEGER NOT NULL,
    previous_hits INTEGER NOT NULL DEFAULT 0,
    started_at TIMESTAMP NOT NULL
);
CREATE INDEX rate_windows_started_at ON rate_windows (started_at);
