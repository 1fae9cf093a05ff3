DROP TABLE rate_windows;
ALTER TABLE login_failures ADD COLUMN locked_until TIMESTAMP;
