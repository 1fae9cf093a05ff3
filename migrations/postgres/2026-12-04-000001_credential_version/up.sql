-- Bumped by every change of a user's password or role: a session keeps the
-- version it signed in under, and one signed in under an older version is
-- nobody's, whatever was in flight when the change ended the others.
ALTER TABLE users ADD COLUMN credential_version BIGINT NOT NULL DEFAULT 0;
