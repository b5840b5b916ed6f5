-- Verification misses served by streaming standbys (DESIGN §10, issue #15).
--
-- The same lookup as the primary's statement (TokenStateStatement), plus the WAL position the
-- answering server had replayed *before* it read the rows: the assignment runs first, and in a
-- VOLATILE PL/pgSQL function RETURN QUERY takes a fresh snapshot afterwards, so every commit up to
-- `replayed` is visible in the rows (a lower bound, which is the safe direction). Tessera compares
-- it with the position it fenced an invalidated token, user or org at; one function call is one
-- statement, so it holds through HAProxy and a transaction-pooling PgBouncer that may send each
-- statement to a different standby. On a primary (no recovery) it is the current insert position.
CREATE FUNCTION tessera_standby_token_states(hashes bytea[])
RETURNS TABLE (
    r_id uuid, r_kind text, r_org_id uuid, r_slug text, r_username text, r_owner_user_id uuid,
    r_role text, r_groups text[], r_platform_admin boolean, r_scopes text[], r_expires_at timestamptz,
    r_created_at timestamptz, r_status text, r_owner_active boolean, r_idle_timeout_days integer,
    r_last_used_at timestamptz, r_grace_until timestamptz, r_secret_hash bytea, r_replayed bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    replayed bigint := CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() - '0/0'::pg_lsn
                            ELSE pg_current_wal_insert_lsn() - '0/0'::pg_lsn END;
BEGIN
    RETURN QUERY
        SELECT t.id, t.kind, t.org_id, o.slug, t.username, t.owner_user_id, m.role, m.groups,
               coalesce(u.platform_admin, false), t.scopes, t.expires_at, t.created_at, t.status,
               (m.user_id IS NOT NULL AND u.status = 'active'), o.idle_timeout_days, t.last_used_at, t.grace_until,
               t.secret_hash, replayed
        FROM tokens t
        JOIN organizations o ON o.id = t.org_id
        LEFT JOIN memberships m ON m.org_id = t.org_id AND m.user_id = t.owner_user_id
        LEFT JOIN users u ON u.id = t.owner_user_id
        WHERE t.secret_hash = ANY(hashes);
END
$$;
