-- Identity from the identity provider (issue #21, DESIGN §12): SCIM 2.0 provisioning per org,
-- roles from IdP groups, suspended memberships.
--
-- A SCIM User of an org is a membership: the IdP's attributes for it (externalId, name,
-- displayName, emails, active) live on the membership, so one org's IdP never rewrites what
-- another org sees. A SCIM Group is a row of `org_groups`; its members are the memberships whose
-- `groups` (the LISA groups that API groups and token groups already use) hold its name.

-- Group mapping (LISA's adminGroup / userGroup beside apiGroup): null = off.
ALTER TABLE organizations
    ADD COLUMN admin_group text CHECK (char_length(admin_group) BETWEEN 1 AND 200),
    ADD COLUMN user_group  text CHECK (char_length(user_group) BETWEEN 1 AND 200);

ALTER TABLE memberships
    -- What the IdP last said (SCIM `active`); true for memberships nobody provisions.
    ADD COLUMN active      boolean NOT NULL DEFAULT true,
    -- The membership is suspended: SCIM said inactive, or the org's userGroup mapping leaves the
    -- member out. A suspended member's personal tokens are revoked (owner_deprovisioned), they
    -- cannot sign in to the org nor create tokens there, and verification refuses their tokens.
    ADD COLUMN suspended   boolean NOT NULL DEFAULT false,
    -- Created or last changed by SCIM (the console's badge).
    ADD COLUMN scim_managed boolean NOT NULL DEFAULT false,
    ADD COLUMN external_id text CHECK (char_length(external_id) BETWEEN 1 AND 255),
    -- SCIM attributes Tessera keeps and gives back: name{givenName,familyName,formatted},
    -- displayName, emails[{value,type,primary}].
    ADD COLUMN profile     jsonb   NOT NULL DEFAULT '{}',
    -- The SCIM ETag (W/"<version>"), bumped by every change of the membership.
    ADD COLUMN version     bigint  NOT NULL DEFAULT 1;
CREATE UNIQUE INDEX memberships_external_id ON memberships (org_id, external_id) WHERE external_id IS NOT NULL;
-- Groups are matched by name inside `groups`.
CREATE INDEX memberships_groups_idx ON memberships USING gin (groups);

CREATE TABLE org_groups (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id       uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    display_name text        NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 200),
    external_id  text        CHECK (char_length(external_id) BETWEEN 1 AND 255),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    version      bigint      NOT NULL DEFAULT 1,
    UNIQUE (org_id, display_name)
);
CREATE UNIQUE INDEX org_groups_external_id ON org_groups (org_id, external_id) WHERE external_id IS NOT NULL;

-- A suspension (or its end) reaches every replica's cache like a demotion does.
DROP TRIGGER memberships_notify ON memberships;
CREATE TRIGGER memberships_notify AFTER UPDATE OF role, groups, suspended OR DELETE ON memberships
    FOR EACH ROW EXECUTE FUNCTION tessera_notify_row('u', 'user_id');

-- A suspended member gets no new personal token, whichever path asks (enforced here, as the limit).
CREATE FUNCTION tokens_owner_not_suspended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind = 'personal' AND NEW.status <> 'revoked' AND EXISTS (
        SELECT 1 FROM memberships m
        WHERE m.org_id = NEW.org_id AND m.user_id = NEW.owner_user_id AND m.suspended)
    THEN
        RAISE EXCEPTION 'the owner''s membership is suspended'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'tokens_owner_suspended', TABLE = 'tokens';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER tokens_owner_not_suspended AFTER INSERT OR UPDATE OF status, owner_user_id ON tokens
    FOR EACH ROW EXECUTE FUNCTION tokens_owner_not_suspended();

-- The new built-in, admin-only scope of SCIM tokens, in every org's catalog.
INSERT INTO scopes (org_id, name, description, admin_only, implies, built_in)
SELECT id, 'scim:provision', 'Provision users and groups over SCIM 2.0 (organization tokens only)', true, '{}', true
FROM organizations
ON CONFLICT DO NOTHING;

-- SCIM's changes are audited with their own actor kind.
ALTER TABLE audit_events DROP CONSTRAINT audit_events_actor_kind_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_actor_kind_check
    CHECK (actor_kind IN ('token', 'jwt', 'cli', 'system', 'console', 'scim'));

-- Verification from standbys refuses a suspended member's tokens as the primary's statement does.
CREATE OR REPLACE FUNCTION tessera_standby_token_states(hashes bytea[])
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
               (m.user_id IS NOT NULL AND u.status = 'active' AND NOT m.suspended), o.idle_timeout_days,
               t.last_used_at, t.grace_until, t.secret_hash, replayed
        FROM tokens t
        JOIN organizations o ON o.id = t.org_id
        LEFT JOIN memberships m ON m.org_id = t.org_id AND m.user_id = t.owner_user_id
        LEFT JOIN users u ON u.id = t.owner_user_id
        WHERE t.secret_hash = ANY(hashes);
END
$$;
