-- What an operator changes in SQL directly (a user deleted, a role or
-- credential version changed, an API token deleted or given to another
-- user) is announced on the
-- event bus like the server's own changes, so that no instance answers
-- from a remembered copy of it. The channel is the bus's own.

CREATE FUNCTION blogql_announce_user_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('blogql_events', json_build_object('e', 'user_changed', 'user', OLD.id)::text);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE FUNCTION blogql_announce_token_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('blogql_events', json_build_object('e', 'user_changed', 'user', OLD.user_id)::text);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

-- Deletes, and updates that change a role or credential version (not the
-- `SET role = role` that locks the admins while the last one is counted).
CREATE TRIGGER users_announce_deletes
    AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION blogql_announce_user_changed();

CREATE TRIGGER users_announce_changes
    AFTER UPDATE OF role, credential_version ON users
    FOR EACH ROW
    WHEN (OLD.role IS DISTINCT FROM NEW.role
          OR OLD.credential_version IS DISTINCT FROM NEW.credential_version)
    EXECUTE FUNCTION blogql_announce_user_changed();

CREATE TRIGGER api_tokens_announce_changes
    AFTER DELETE OR UPDATE OF user_id, token_hash ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION blogql_announce_token_changed();
