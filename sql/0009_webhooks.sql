-- Webhooks, their outbox, and expiry notices (issue #16, DESIGN §11).
--
-- Events are written to the outbox (`webhook_deliveries`) by a trigger on `audit_events`: every
-- change worth telling an org about already records an audit event in the same transaction as
-- the change, whatever made it (API, console, CLI, a cascade). So an event exists exactly when
-- its change committed: none is lost when a process dies after COMMIT, none is sent for a
-- rolled-back change. The delivery service of any replica sends them (FOR UPDATE SKIP LOCKED).

CREATE TABLE webhooks (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id      uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    url         text        NOT NULL CHECK (url ~ '^https?://' AND char_length(url) <= 2048),
    description text        CHECK (char_length(description) <= 1000),
    events      text[]      NOT NULL CHECK (cardinality(events) >= 1),
    -- `whsec_` + base64: the receiver's verification key, needed for every signature, so it is
    -- kept (unlike token secrets, which only ever exist as hashes). Shown once, rotatable.
    secret      text        NOT NULL CHECK (secret LIKE 'whsec\_%'),
    active      boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_org_idx ON webhooks (org_id);

CREATE TABLE webhook_deliveries (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),   -- the `webhook-id` header
    webhook_id      uuid        NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    org_id          uuid        NOT NULL,
    event           text        NOT NULL,
    payload         jsonb       NOT NULL,                                -- never a token secret
    created_at      timestamptz NOT NULL DEFAULT now(),
    status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,                      -- since retry_from
    -- Retries stop 26 h after this: the event's creation, or the admin's last "redeliver".
    retry_from      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- A replica that claimed the delivery and is sending it; after this, another may (a crash).
    locked_until    timestamptz,
    last_attempt_at timestamptz,
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_webhook_idx ON webhook_deliveries (webhook_id, created_at DESC);

-- One row per (token, notice): the primary key makes each warning happen once, however many
-- replicas sweep at the same moment.
CREATE TABLE token_expiry_notices (
    token_id   uuid        NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    notice     text        NOT NULL CHECK (notice IN ('60d', '30d', '7d', 'expired')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (token_id, notice)
);
CREATE INDEX tokens_expiring_idx ON tokens (expires_at) WHERE status = 'active' AND expires_at IS NOT NULL;

-- Queues `event` for every active webhook of `org` that asked for it. The payload follows the
-- Standard Webhooks shape: {"type", "timestamp", "data"}.
CREATE FUNCTION tessera_enqueue_event(org uuid, event text, data jsonb) RETURNS void LANGUAGE sql AS $$
    INSERT INTO webhook_deliveries (webhook_id, org_id, event, payload)
    SELECT w.id, org, event,
           jsonb_build_object('type', event,
                              'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                              'data', data)
    FROM webhooks w
    WHERE w.org_id = org AND w.active AND event = ANY (w.events);
$$;

-- What a payload says about a token: never its secret or hash, only what the API lists show.
CREATE FUNCTION tessera_token_facts(t tokens) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'tokenUUID', t.id, 'name', t.name, 'kind', t.kind, 'username', t.username,
        'tokenPrefix', t.token_prefix, 'scopes', to_jsonb(t.scopes), 'status', t.status,
        'expirationDate', extract(epoch FROM t.expires_at)::bigint,
        'createdDate', extract(epoch FROM t.created_at)::bigint, 'createdBy', t.created_by);
$$;

CREATE FUNCTION tessera_audit_to_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
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
        ELSE
            NULL;
    END CASE;
    RETURN NULL;
END;
$$;
CREATE TRIGGER audit_events_to_webhooks AFTER INSERT ON audit_events
    FOR EACH ROW
    WHEN (NEW.org_id IS NOT NULL
          AND NEW.action IN ('token.created', 'token.revoked', 'token.deleted', 'member.removed', 'member.left'))
    EXECUTE FUNCTION tessera_audit_to_webhooks();

-- Expiry notices due at `at` (the caller's clock, so tests can move it): 60, 30 and 7 days
-- before, and once expired. Each (token, notice) is claimed once by the primary key; only the
-- most urgent notice due is sent (a token created 5 days before its expiry gets "7d" only, and
-- the longer ones are marked done with it). Returns how many events were queued.
CREATE FUNCTION tessera_sweep_expiry(at timestamptz) RETURNS integer LANGUAGE plpgsql AS $$
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
