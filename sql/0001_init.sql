-- Tessera schema, version 1. Forward-only: never edit an applied migration, add 0002_... instead.
-- The rules of DESIGN §2 live here as constraints, so no code path (HTTP, CLI, a psql session)
-- can break them, and no race between two requests can either.

-- Organizations (tenants) and their token policy.
CREATE TABLE organizations (
    id                          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    slug                        text        NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
    display_name                text        NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 200),
    default_token_lifetime_days integer     NOT NULL DEFAULT 90 CHECK (default_token_lifetime_days BETWEEN 1 AND 36500),
    max_token_lifetime_days     integer     CHECK (max_token_lifetime_days BETWEEN 1 AND 36500),
    allow_non_expiring_tokens   boolean     NOT NULL DEFAULT false,
    idle_timeout_days           integer     CHECK (idle_timeout_days BETWEEN 1 AND 36500),
    api_group                   text        CHECK (char_length(api_group) BETWEEN 1 AND 200),
    user_tokens_enabled         boolean     NOT NULL DEFAULT true,
    default_scopes              text[]      NOT NULL DEFAULT '{tokens:read,tokens:write,api:read,api:write}',
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT default_lifetime_within_max
        CHECK (max_token_lifetime_days IS NULL OR default_token_lifetime_days <= max_token_lifetime_days)
);

-- Global identities. A user may belong to many organizations.
CREATE TABLE users (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    username       text        NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}$'),
    status         text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    platform_admin boolean     NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- (org, user) with a role and LISA groups.
CREATE TABLE memberships (
    org_id     uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text        NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member')),
    groups     text[]      NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_user_idx ON memberships (user_id);

-- Each organization's scope catalog.
CREATE TABLE scopes (
    org_id      uuid    NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name        text    NOT NULL CHECK (name ~ '^[a-z][a-z0-9_.:-]{0,63}$'),
    description text    NOT NULL DEFAULT '' CHECK (char_length(description) <= 1000),
    admin_only  boolean NOT NULL DEFAULT false,
    implies     text[]  NOT NULL DEFAULT '{}',
    built_in    boolean NOT NULL DEFAULT false,
    PRIMARY KEY (org_id, name)
);

-- Tokens. The secret itself is never stored: only its SHA-256 and a short display prefix.
CREATE TABLE tokens (
    id                 uuid        PRIMARY KEY DEFAULT gen_random_uuid(),   -- LISA tokenUUID
    org_id             uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    kind               text        NOT NULL CHECK (kind IN ('personal', 'organization')),
    -- The owning member of a personal token; NULL for organization tokens. The composite key
    -- points at the membership: removing a membership (or deleting the user) while one of their
    -- personal tokens is still live fails the owner check below, so a leaver's token can never
    -- outlive the membership, whatever code path removes it.
    owner_user_id      uuid,
    username           text        NOT NULL CHECK (char_length(username) BETWEEN 1 AND 255),  -- owner, or service label
    name               text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    description        text        CHECK (char_length(description) <= 1000),
    scopes             text[]      NOT NULL CHECK (cardinality(scopes) BETWEEN 1 AND 100),
    groups             text[]      NOT NULL DEFAULT '{}',
    secret_hash        bytea       NOT NULL UNIQUE CHECK (octet_length(secret_hash) = 32),
    token_prefix       text        NOT NULL CHECK (token_prefix ~ '^ts[po]_[0-9a-f]{8}$'),
    expires_at         timestamptz,                                          -- NULL: never expires
    status             text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'revoked')),
    revoked_at         timestamptz,
    revoked_reason     text        CHECK (char_length(revoked_reason) BETWEEN 1 AND 64),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    created_by         text        NOT NULL,                                 -- kept after the creator is deleted
    created_by_user_id uuid        REFERENCES users (id) ON DELETE SET NULL,
    last_used_at       timestamptz,
    last_used_ip       inet,
    FOREIGN KEY (org_id, owner_user_id) REFERENCES memberships (org_id, user_id) ON DELETE SET NULL (owner_user_id),
    CONSTRAINT revocation_fields_match_status
        CHECK ((status = 'revoked') = (revoked_at IS NOT NULL) AND (status = 'revoked') = (revoked_reason IS NOT NULL)),
    CONSTRAINT live_personal_token_has_owner
        CHECK (kind <> 'personal' OR owner_user_id IS NOT NULL OR status = 'revoked'),
    CONSTRAINT organization_token_has_no_owner
        CHECK (kind <> 'organization' OR owner_user_id IS NULL),
    CONSTRAINT prefix_matches_kind
        CHECK (left(token_prefix, 4) = CASE kind WHEN 'personal' THEN 'tsp_' ELSE 'tso_' END),
    CONSTRAINT expiry_after_creation
        CHECK (expires_at IS NULL OR expires_at > created_at)
);

-- LISA's rule, enforced where races cannot break it: one live personal token per (org, user).
CREATE UNIQUE INDEX tokens_one_live_personal_per_member
    ON tokens (org_id, owner_user_id) WHERE kind = 'personal' AND status <> 'revoked';
-- Listing an org's tokens newest first, and a user's tokens across orgs (cascades).
CREATE INDEX tokens_org_created_idx ON tokens (org_id, created_at DESC, id DESC);
CREATE INDEX tokens_owner_idx ON tokens (owner_user_id) WHERE owner_user_id IS NOT NULL;

-- A token's scopes must come from its org's catalog. Scopes never change after creation, so
-- checking on insert is enough.
CREATE FUNCTION tokens_scopes_in_catalog() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing text[];
BEGIN
    SELECT array_agg(requested) INTO missing
    FROM unnest(NEW.scopes) AS requested
    WHERE NOT EXISTS (SELECT 1 FROM scopes s WHERE s.org_id = NEW.org_id AND s.name = requested);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'scopes not in the organization catalog: %', array_to_string(missing, ', ')
            USING ERRCODE = 'check_violation', CONSTRAINT = 'token_scopes_in_catalog';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER tokens_scopes_in_catalog BEFORE INSERT ON tokens
    FOR EACH ROW EXECUTE FUNCTION tokens_scopes_in_catalog();

-- Scopes are immutable once a token exists (create a new token instead).
CREATE FUNCTION tokens_scopes_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.scopes IS DISTINCT FROM OLD.scopes OR NEW.kind IS DISTINCT FROM OLD.kind OR NEW.org_id IS DISTINCT FROM OLD.org_id THEN
        RAISE EXCEPTION 'token scopes, kind and organization cannot change'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'token_scopes_immutable';
    END IF;
    IF OLD.status = 'revoked' AND NEW.status <> 'revoked' THEN
        RAISE EXCEPTION 'a revoked token cannot be reactivated'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'token_revocation_final';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER tokens_scopes_immutable BEFORE UPDATE ON tokens
    FOR EACH ROW EXECUTE FUNCTION tokens_scopes_immutable();

-- Who did what to which token or member, when, from where. No foreign keys on purpose: the
-- trail outlives the tokens, users and organizations it talks about. Never holds a secret.
CREATE TABLE audit_events (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id          uuid,                                   -- NULL for platform events (users)
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    actor_username  text,
    actor_kind      text        NOT NULL CHECK (actor_kind IN ('token', 'jwt', 'cli', 'system')),
    actor_token_id  uuid,
    action          text        NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$'),
    target_token_id uuid,
    target_username text,
    source_ip       inet,
    details         jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_org_idx ON audit_events (org_id, occurred_at DESC, id DESC);
