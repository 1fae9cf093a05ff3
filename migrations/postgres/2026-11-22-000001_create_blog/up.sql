-- Timestamps are UTC by convention (diesel's `Timestamp`).

CREATE TABLE users (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'USER' CHECK (role IN ('USER', 'ADMIN')),
    created_at TIMESTAMP NOT NULL
);
-- Usernames are unique regardless of case; logins look users up by this expression.
CREATE UNIQUE INDEX users_username_lower ON users (lower(username));

CREATE TABLE posts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    author_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
-- `User.posts`, newest first.
CREATE INDEX posts_author_id_id ON posts (author_id, id);

CREATE TABLE sessions (
    -- SHA-256 of the cookie's session ID: the ID itself is never stored.
    id_hash TEXT PRIMARY KEY,
    user_id BIGINT REFERENCES users (id) ON DELETE CASCADE,
    data TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE login_failures (
    -- `ip:<address>` or `user:<lowercased username>@<address>`
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_failed_at TIMESTAMP NOT NULL,
    locked_until TIMESTAMP
);
CREATE INDEX login_failures_last_failed_at ON login_failures (last_failed_at);
