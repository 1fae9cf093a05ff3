-- `Post.updatedAt`: null until the post is first edited.
ALTER TABLE posts ADD COLUMN updated_at TIMESTAMP;

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    -- SHA-256 of the token: the token itself is never stored. A fast hash
    -- is right for 256 random bits (nothing to guess), unlike a password.
    token_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    -- Written lazily: at most once a minute per token.
    last_used_at TIMESTAMP
);
-- `apiTokens`, newest first.
CREATE INDEX api_tokens_user_id_id ON api_tokens (user_id, id);
