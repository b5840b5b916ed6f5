-- Workload identity federation (DESIGN §13): an org's trust policies, the organization tokens
-- exchanged under them (RFC 8693), and the JWT ids already used.

-- Who may exchange an OIDC token for an organization token of the org, and what they get.
CREATE TABLE trust_policies (
    id                   uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id               uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name                 text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    issuer               text        NOT NULL CHECK (char_length(issuer) BETWEEN 1 AND 2048),
    audience             text        NOT NULL CHECK (char_length(audience) BETWEEN 1 AND 255),
    -- {"claim": "pattern", ...}: every pattern must match the claim (`*` any run of characters).
    conditions           jsonb       NOT NULL CHECK (jsonb_typeof(conditions) = 'object'),
    scopes               text[]      NOT NULL CHECK (cardinality(scopes) BETWEEN 1 AND 100),
    max_lifetime_seconds integer     NOT NULL DEFAULT 900 CHECK (max_lifetime_seconds BETWEEN 60 AND 3600),
    -- The service label of the tokens it issues (their `username`).
    label                text        NOT NULL CHECK (label ~ '^[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}$'),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    created_by           text        NOT NULL,
    UNIQUE (org_id, name)
);
-- The exchange looks policies up by (org, issuer).
CREATE INDEX trust_policies_issuer_idx ON trust_policies (org_id, issuer);

-- A token says where it came from: made by a person or an admin (`direct`), or exchanged under a
-- trust policy (`federation`), with the JWT it was exchanged for. The policy id stays after the
-- policy is deleted (its tokens are revoked then), so no foreign key.
ALTER TABLE tokens
    ADD COLUMN source            text NOT NULL DEFAULT 'direct' CHECK (source IN ('direct', 'federation')),
    ADD COLUMN trust_policy_id   uuid,
    ADD COLUMN federated_issuer  text CHECK (char_length(federated_issuer) <= 2048),
    ADD COLUMN federated_subject text CHECK (char_length(federated_subject) <= 512),
    ADD COLUMN federated_jti     text CHECK (char_length(federated_jti) <= 255),
    ADD CONSTRAINT federation_fields_match_source
        CHECK ((source = 'federation') = (trust_policy_id IS NOT NULL)
               AND (source = 'federation') = (federated_issuer IS NOT NULL)
               AND (kind = 'organization' OR source = 'direct'));
-- The default token list leaves exchanged tokens out; this index serves it without walking them.
CREATE INDEX tokens_org_direct_created_idx ON tokens (org_id, created_at DESC, id DESC) WHERE source = 'direct';
-- A policy's live tokens (revoked with it) and its last exchanges.
CREATE INDEX tokens_trust_policy_idx ON tokens (trust_policy_id, created_at DESC) WHERE trust_policy_id IS NOT NULL;
-- Expired exchanged tokens are purged after a retention period.
CREATE INDEX tokens_federation_expiry_idx ON tokens (expires_at) WHERE source = 'federation';

-- Each (issuer, jti) is accepted once, by whichever replica sees it first; kept until the JWT
-- expires (then it could not be replayed anyway) and purged after.
CREATE TABLE federation_jtis (
    issuer     text        NOT NULL,
    jti        text        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX federation_jtis_expires_idx ON federation_jtis (expires_at);

ALTER TABLE audit_events DROP CONSTRAINT audit_events_actor_kind_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_actor_kind_check
    CHECK (actor_kind IN ('token', 'jwt', 'cli', 'system', 'console', 'scim', 'federation'));

-- Webhook payloads say where a token came from.
CREATE OR REPLACE FUNCTION tessera_token_facts(t tokens) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'tokenUUID', t.id, 'name', t.name, 'kind', t.kind, 'username', t.username,
        'tokenPrefix', t.token_prefix, 'scopes', to_jsonb(t.scopes), 'status', t.status,
        'expirationDate', extract(epoch FROM t.expires_at)::bigint,
        'createdDate', extract(epoch FROM t.created_at)::bigint, 'createdBy', t.created_by,
        'source', t.source)
        || CASE WHEN t.source = 'federation' THEN jsonb_build_object('trustPolicyId', t.trust_policy_id)
                ELSE '{}'::jsonb END;
$$;

-- Trust policy changes are webhook events too.
CREATE OR REPLACE FUNCTION tessera_audit_to_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t      tokens;
    data   jsonb;
    reason text;
BEGIN
    -- Most orgs have no webhook: one index probe and out.
    IF NOT EXISTS (SELECT 1 FROM webhooks WHERE org_id = NEW.org_id AND active) THEN
        RETURN NULL;
    END IF;
    data := jsonb_build_object(
        'organization', (SELECT slug FROM organizations WHERE id = NEW.org_id),
        'actor', jsonb_build_object('username', NEW.actor_username, 'kind', NEW.actor_kind),
        'occurredDate', extract(epoch FROM NEW.occurred_at)::bigint);
    IF NEW.target_token_id IS NOT NULL THEN
        SELECT * INTO t FROM tokens WHERE id = NEW.target_token_id;
        IF FOUND THEN
            data := data || jsonb_build_object('token', tessera_token_facts(t));
        ELSE  -- deleted in this transaction: what the audit event kept
            data := data || jsonb_build_object('token', jsonb_build_object(
                'tokenUUID', NEW.target_token_id, 'name', NEW.details ->> 'name', 'kind', NEW.details ->> 'kind',
                'username', NEW.target_username, 'status', 'revoked'));
        END IF;
    END IF;
    CASE NEW.action
        WHEN 'token.created' THEN
            PERFORM tessera_enqueue_event(NEW.org_id, 'token.created', data);
        WHEN 'token.revoked', 'token.deleted' THEN
            reason := coalesce(NEW.details ->> 'reason', t.revoked_reason,
                               CASE WHEN NEW.actor_username = NEW.target_username THEN 'deleted_by_owner'
                                    ELSE 'deleted_by_admin' END);
            PERFORM tessera_enqueue_event(NEW.org_id, 'token.revoked', data || jsonb_build_object('reason', reason));
            IF reason = 'leaked' THEN
                PERFORM tessera_enqueue_event(NEW.org_id, 'token.leaked', data || jsonb_build_object('reason', reason));
            END IF;
        WHEN 'member.removed', 'member.left' THEN
            PERFORM tessera_enqueue_event(NEW.org_id, 'member.removed',
                data || jsonb_build_object('member', NEW.target_username, 'left', NEW.action = 'member.left'));
        WHEN 'trust_policy.created', 'trust_policy.updated', 'trust_policy.deleted' THEN
            PERFORM tessera_enqueue_event(NEW.org_id, NEW.action, data || jsonb_build_object('trustPolicy', NEW.details));
        ELSE
            NULL;
    END CASE;
    RETURN NULL;
END;
$$;
DROP TRIGGER audit_events_to_webhooks ON audit_events;
CREATE TRIGGER audit_events_to_webhooks AFTER INSERT ON audit_events
    FOR EACH ROW
    WHEN (NEW.org_id IS NOT NULL
          AND NEW.action IN ('token.created', 'token.revoked', 'token.deleted', 'member.removed', 'member.left',
                             'trust_policy.created', 'trust_policy.updated', 'trust_policy.deleted'))
    EXECUTE FUNCTION tessera_audit_to_webhooks();

-- Exchanged tokens live minutes: no expiry notices for them (a CI job an hour would send one each).
CREATE OR REPLACE FUNCTION tessera_sweep_expiry(at timestamptz) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    ids     uuid[];
    orgs    uuid[];
    notices text[];
BEGIN
    WITH due AS (
        SELECT t.id, t.org_id,
               CASE WHEN t.expires_at <= at THEN 'expired'
                    WHEN t.expires_at <= at + interval '7 days' THEN '7d'
                    WHEN t.expires_at <= at + interval '30 days' THEN '30d'
                    ELSE '60d' END AS notice
        FROM tokens t
        WHERE t.status = 'active' AND t.expires_at IS NOT NULL AND t.expires_at <= at + interval '60 days'
          AND t.source = 'direct'
          -- expired long ago (before this feature, or a sweep outage of weeks): no news
          AND t.expires_at > at - interval '7 days'
    ), fresh AS (
        -- Most sweeps find every due notice already sent: one primary-key probe each, no insert.
        SELECT d.* FROM due d
        WHERE NOT EXISTS (SELECT 1 FROM token_expiry_notices n WHERE n.token_id = d.id AND n.notice = d.notice)
    ), claimed AS (
        INSERT INTO token_expiry_notices (token_id, notice, created_at)
        SELECT d.id, n.notice, at FROM fresh d
        CROSS JOIN LATERAL unnest(CASE d.notice
            WHEN 'expired' THEN ARRAY['60d', '30d', '7d', 'expired']
            WHEN '7d' THEN ARRAY['60d', '30d', '7d']
            WHEN '30d' THEN ARRAY['60d', '30d']
            ELSE ARRAY['60d'] END) AS n(notice)
        ON CONFLICT DO NOTHING
        RETURNING token_id, notice
    )
    SELECT array_agg(d.id), array_agg(d.org_id), array_agg(d.notice) INTO ids, orgs, notices
    FROM fresh d JOIN claimed c ON c.token_id = d.id AND c.notice = d.notice;
    IF ids IS NULL THEN
        RETURN 0;
    END IF;
    FOR i IN 1 .. cardinality(ids) LOOP
        PERFORM tessera_enqueue_event(orgs[i],
            CASE WHEN notices[i] = 'expired' THEN 'token.expired' ELSE 'token.expiring' END,
            jsonb_build_object(
                'organization', (SELECT slug FROM organizations WHERE id = orgs[i]),
                'token', (SELECT tessera_token_facts(t) FROM tokens t WHERE t.id = ids[i]),
                'notice', notices[i],
                'daysLeft', CASE notices[i] WHEN '60d' THEN 60 WHEN '30d' THEN 30 WHEN '7d' THEN 7 ELSE 0 END));
    END LOOP;
    RETURN cardinality(ids);
END;
$$;
