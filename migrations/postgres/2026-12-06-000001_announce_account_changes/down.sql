DROP TRIGGER api_tokens_announce_changes ON api_tokens;
DROP TRIGGER users_announce_changes ON users;
DROP TRIGGER users_announce_deletes ON users;
DROP FUNCTION blogql_announce_token_changed();
DROP FUNCTION blogql_announce_user_changed();
