DROP TABLE api_tokens;
ALTER TABLE posts DROP COLUMN updated_at;
