-- Push invalidation of the verification caches (issue #5, DESIGN §6). Every change that can turn
-- a verifying token into a failing one (or change what it may do) sends a NOTIFY on channel
-- `tessera_invalidation`, from a trigger, so it happens in the same transaction as the change
-- whatever made it (HTTP API, `tessera admin`, psql). PostgreSQL delivers it at commit, to every
-- replica that LISTENs. Payload: `<what>:<uuid>:<micros>` where what is
--   t  one token (by id)           u  every token of a user      o  every token of an organization
-- and micros is the database clock at the change (epoch microseconds, for the lag metric).

CREATE FUNCTION tessera_notify(what text, id uuid) RETURNS void LANGUAGE sql AS $$
    SELECT pg_notify('tessera_invalidation',
                     what || ':' || id || ':' || (extract(epoch FROM clock_timestamp()) * 1000000)::bigint);
$$;

-- Tokens: statement-level with transition tables, so a cascade over many tokens is one
-- notification per organization instead of one per token. Updates that do not matter to
-- verification (last_used_at, name, description) notify nothing.
CREATE FUNCTION tokens_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids  uuid[];
    orgs uuid[];
    item uuid;
BEGIN
    IF TG_OP = 'DELETE' THEN
        SELECT array_agg(o.id), array_agg(DISTINCT o.org_id) INTO ids, orgs FROM old_rows o;
    ELSE
        SELECT array_agg(n.id), array_agg(DISTINCT n.org_id) INTO ids, orgs
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE (n.status, n.expires_at, n.grace_until, n.username, n.owner_user_id, n.secret_hash)
              IS DISTINCT FROM (o.status, o.expires_at, o.grace_until, o.username, o.owner_user_id, o.secret_hash);
    END IF;
    IF ids IS NULL THEN
        RETURN NULL;
    END IF;
    IF cardinality(ids) > 256 THEN
        FOREACH item IN ARRAY orgs LOOP PERFORM tessera_notify('o', item); END LOOP;
    ELSE
        FOREACH item IN ARRAY ids LOOP PERFORM tessera_notify('t', item); END LOOP;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tokens_notify_update AFTER UPDATE ON tokens
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tokens_notify();
CREATE TRIGGER tokens_notify_delete AFTER DELETE ON tokens
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tokens_notify();

-- Users, memberships, organizations and scope catalogs: one row trigger function, told by its
-- arguments what to notify and which column of the old row names it:
--   users: disabled, deleted, platform admin flag or name changed    -> u:<id>
--   memberships: role (authority rule) or groups changed, removed    -> u:<user_id>
--   organizations: policy (idle timeout), slug, deletion             -> o:<id>
--   scopes: an org's catalog entry changed or removed                -> o:<org_id>
CREATE FUNCTION tessera_notify_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tessera_notify(TG_ARGV[0], (to_jsonb(OLD) ->> TG_ARGV[1])::uuid);
    RETURN NULL;
END;
$$;
CREATE TRIGGER users_notify AFTER UPDATE OF status, platform_admin, username OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION tessera_notify_row('u', 'id');
CREATE TRIGGER memberships_notify AFTER UPDATE OF role, groups OR DELETE ON memberships
    FOR EACH ROW EXECUTE FUNCTION tessera_notify_row('u', 'user_id');
CREATE TRIGGER organizations_notify AFTER UPDATE OR DELETE ON organizations
    FOR EACH ROW EXECUTE FUNCTION tessera_notify_row('o', 'id');
CREATE TRIGGER scopes_notify AFTER UPDATE OR DELETE ON scopes
    FOR EACH ROW EXECUTE FUNCTION tessera_notify_row('o', 'org_id');
