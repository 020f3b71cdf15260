-- Each process keeps who owns the access tokens it has seen (`store/token_owners.rs`). Whatever
-- deletes or changes a token, or changes a user's admin, guest, deactivated or locked flag, tells
-- every process in the same transaction: a NOTIFY on the processes' channel `myelin`, delivered
-- with the commit, naming the user (`Signal::Invalidate` of cache `token_owners`; origin `db`, so
-- every process takes it, the writer's own too). PostgreSQL sends one notification per
-- transaction for identical payloads, however many rows changed. SQLite keeps no such cache.
-- @postgres
CREATE FUNCTION myelin_token_owner_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('myelin', json_build_object('o', 'db', 's', json_build_object(
        'k', 'Invalidate', 'cache', 'token_owners', 'key', OLD.user_id))::TEXT);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER access_tokens_owner_changed AFTER UPDATE OR DELETE ON access_tokens
    FOR EACH ROW EXECUTE FUNCTION myelin_token_owner_changed();
CREATE TRIGGER users_owner_changed AFTER UPDATE OF is_admin, is_guest, deactivated, locked OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION myelin_token_owner_changed();
-- @end
