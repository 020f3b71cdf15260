-- Each process keeps who owns the access tokens it has seen (`store/notified.rs`). Whatever
-- deletes or changes a token, or changes a user's admin, guest, deactivated or locked flag, tells
-- every process in the same transaction: a NOTIFY on the processes' channel `myelin`, delivered
-- with the commit, naming the cache (the trigger's argument) and the user (`Signal::Invalidate`;
-- origin `db`, so every process takes it, the writer's own too), whoever wrote it. PostgreSQL
-- sends one notification per transaction for identical payloads, however many rows changed.
-- SQLite keeps no such cache.
-- @postgres
CREATE FUNCTION myelin_notify_cache() RETURNS trigger AS $$
DECLARE
    who TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        who := OLD.user_id;
    ELSE
        who := NEW.user_id;
    END IF;
    PERFORM pg_notify('myelin', json_build_object('o', 'db', 's', json_build_object(
        'k', 'Invalidate', 'cache', TG_ARGV[0], 'key', who))::TEXT);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER access_tokens_notify AFTER UPDATE OR DELETE ON access_tokens
    FOR EACH ROW EXECUTE FUNCTION myelin_notify_cache('token_owners');
CREATE TRIGGER users_notify AFTER UPDATE OF is_admin, is_guest, deactivated, locked OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION myelin_notify_cache('token_owners');
-- @end
