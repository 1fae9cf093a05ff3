DROP TABLE rate_windows;
ALTER TABLE login_failures DROP COLUMN in_progress_at;
ALTER TABLE login_failures DROP COLUMN in_progress;
ALTER TABLE login_failures ADD COLUMN locked_until TIMESTAMP;
