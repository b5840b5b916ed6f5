-- Expiry notices in batches (issue #24). The sweep built every due token's webhook payload in a
-- plpgsql loop, one token at a time, whether or not its organization had a webhook, and claimed
-- every due notice in one transaction: a first sweep over 300,000 tokens that all expire within
-- 60 days kept one PostgreSQL backend busy for 54 s, beside the traffic it slowed down.
--
-- Now a call looks at the next `batch` due tokens in (expires_at, id) order after the position
-- the previous call reached (the caller calls again while a batch comes back full, each call its
-- own short transaction, and no call looks again at tokens an earlier one passed), and builds
-- payloads only for organizations with an active webhook. Notices are claimed as before: once per
-- token and notice, however many replicas sweep at once.
-- The batches' order, in the index: with expires_at alone, tokens sharing an expiry (a bulk
-- import) were sorted again by every batch.
DROP INDEX tokens_expiring_idx;
CREATE INDEX tokens_expiring_idx ON tokens (expires_at, id) WHERE status = 'active' AND expires_at IS NOT NULL;

CREATE FUNCTION tessera_sweep_expiry(
    at timestamptz, batch integer, after_at timestamptz, after_id uuid,
    OUT queued integer, OUT scanned integer, OUT last_at timestamptz, OUT last_id uuid
) LANGUAGE plpgsql AS $$
DECLARE
    ids     uuid[];
    orgs    uuid[];
    notices text[];
BEGIN
    SELECT coalesce(array_agg(w.id ORDER BY w.expires_at, w.id), '{}'),
           coalesce(array_agg(w.org_id ORDER BY w.expires_at, w.id), '{}'),
           coalesce(array_agg(w.notice ORDER BY w.expires_at, w.id), '{}'),
           count(*), max(w.expires_at),
           (array_agg(w.id ORDER BY w.expires_at DESC, w.id DESC))[1]
      INTO ids, orgs, notices, scanned, last_at, last_id
    FROM (
        SELECT t.id, t.org_id, t.expires_at,
               CASE WHEN t.expires_at <= at THEN 'expired'
                    WHEN t.expires_at <= at + interval '7 days' THEN '7d'
                    WHEN t.expires_at <= at + interval '30 days' THEN '30d'
                    ELSE '60d' END AS notice
        FROM tokens t
        WHERE t.status = 'active' AND t.expires_at IS NOT NULL AND t.expires_at <= at + interval '60 days'
          AND t.source = 'direct'
          -- expired long ago (before this feature, or a sweep outage of weeks): no news
          AND t.expires_at > at - interval '7 days'
          AND t.expires_at >= after_at AND (t.expires_at, t.id) > (after_at, after_id)
        ORDER BY t.expires_at, t.id
        LIMIT batch
    ) w;
    WITH fresh AS (
        -- Most sweeps find every due notice already sent: one primary-key probe each, no insert.
        SELECT d.* FROM unnest(ids, orgs, notices) AS d(id, org_id, notice)
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
    SELECT coalesce(array_agg(d.id), '{}'), coalesce(array_agg(d.org_id), '{}'), coalesce(array_agg(d.notice), '{}')
      INTO ids, orgs, notices
    FROM fresh d JOIN claimed c ON c.token_id = d.id AND c.notice = d.notice;
    queued := cardinality(ids);
    -- Payloads only where a webhook may want them (most organizations have none).
    PERFORM tessera_enqueue_event(due.org,
                CASE WHEN due.notice = 'expired' THEN 'token.expired' ELSE 'token.expiring' END,
                jsonb_build_object(
                    'organization', o.slug,
                    'token', tessera_token_facts(t),
                    'notice', due.notice,
                    'daysLeft', CASE due.notice WHEN '60d' THEN 60 WHEN '30d' THEN 30 WHEN '7d' THEN 7 ELSE 0 END))
    FROM unnest(ids, orgs, notices) AS due(id, org, notice)
    JOIN organizations o ON o.id = due.org
    JOIN tokens t ON t.id = due.id
    WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.org_id = due.org AND w.active);
END;
$$;

-- The one-argument form, for a replica of the previous release during a rolling upgrade: the
-- same sweep in one call.
CREATE OR REPLACE FUNCTION tessera_sweep_expiry(at timestamptz) RETURNS integer LANGUAGE sql AS $$
    SELECT queued FROM tessera_sweep_expiry(at, 2147483647, '-infinity', '00000000-0000-0000-0000-000000000000');
$$;
