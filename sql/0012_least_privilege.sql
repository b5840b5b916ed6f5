-- Least privilege you can see (DESIGN §14): a token's access rules and address limits, and its
-- usage per hour (then per day) with its last client addresses.

-- `METHOD /path[ host]` per rule (TesseraCore's AccessRule.text), and CIDRs. Both never change,
-- like scopes; an empty list means no limit.
ALTER TABLE tokens
    ADD COLUMN access_rules  text[] NOT NULL DEFAULT '{}' CHECK (cardinality(access_rules) <= 100),
    ADD COLUMN allowed_cidrs cidr[] NOT NULL DEFAULT '{}' CHECK (cardinality(allowed_cidrs) <= 100);

CREATE FUNCTION tokens_limits_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.access_rules IS DISTINCT FROM OLD.access_rules OR NEW.allowed_cidrs IS DISTINCT FROM OLD.allowed_cidrs THEN
        RAISE EXCEPTION 'token access rules and address limits cannot change'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'token_limits_immutable';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER tokens_limits_immutable BEFORE UPDATE OF access_rules, allowed_cidrs ON tokens
    FOR EACH ROW EXECUTE FUNCTION tokens_limits_immutable();

-- Verifications per token and hour (granularity 'hour'), rolled up into days ('day') after 30
-- days and purged after a year (TESSERA_USAGE_RETENTION_DAYS). Each replica adds its counts in
-- batches (INSERT … ON CONFLICT DO UPDATE SET n = n + EXCLUDED.n), so replicas add up.
CREATE TABLE token_usage (
    token_id           uuid        NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    org_id             uuid        NOT NULL,
    granularity        text        NOT NULL CHECK (granularity IN ('hour', 'day')),
    bucket             timestamptz NOT NULL,
    valid              bigint      NOT NULL DEFAULT 0,
    insufficient_scope bigint      NOT NULL DEFAULT 0,
    expired            bigint      NOT NULL DEFAULT 0,
    inactive           bigint      NOT NULL DEFAULT 0,
    revoked            bigint      NOT NULL DEFAULT 0,
    address            bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (token_id, granularity, bucket)
);
CREATE INDEX token_usage_org_idx ON token_usage (org_id, bucket);
CREATE INDEX token_usage_bucket_idx ON token_usage (granularity, bucket);

-- The last distinct client addresses of each token (GitLab's last_used_ips): five kept.
CREATE TABLE token_addresses (
    token_id  uuid        NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    address   inet        NOT NULL,
    last_seen timestamptz NOT NULL,
    PRIMARY KEY (token_id, address)
);

-- What verification reads, now with the rules and ranges (columns 18 and 19; replayed moves to 20).
DROP FUNCTION tessera_standby_token_states(bytea[]);
CREATE FUNCTION tessera_standby_token_states(hashes bytea[])
RETURNS TABLE (
    r_id uuid, r_kind text, r_org_id uuid, r_slug text, r_username text, r_owner_user_id uuid,
    r_role text, r_groups text[], r_platform_admin boolean, r_scopes text[], r_expires_at timestamptz,
    r_created_at timestamptz, r_status text, r_owner_active boolean, r_idle_timeout_days integer,
    r_last_used_at timestamptz, r_grace_until timestamptz, r_secret_hash bytea, r_access_rules text[],
    r_allowed_cidrs text[], r_replayed bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    replayed bigint := CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() - '0/0'::pg_lsn
                            ELSE pg_current_wal_insert_lsn() - '0/0'::pg_lsn END;
BEGIN
    RETURN QUERY
        SELECT t.id, t.kind, t.org_id, o.slug, t.username, t.owner_user_id, m.role, m.groups,
               coalesce(u.platform_admin, false), t.scopes, t.expires_at, t.created_at, t.status,
               (m.user_id IS NOT NULL AND u.status = 'active' AND NOT m.suspended), o.idle_timeout_days,
               t.last_used_at, t.grace_until, t.secret_hash, t.access_rules, t.allowed_cidrs::text[], replayed
        FROM tokens t
        JOIN organizations o ON o.id = t.org_id
        LEFT JOIN memberships m ON m.org_id = t.org_id AND m.user_id = t.owner_user_id
        LEFT JOIN users u ON u.id = t.owner_user_id
        WHERE t.secret_hash = ANY(hashes);
END
$$;
