-- Personal token limit (issue #13, DESIGN §9): an org policy `personal_token_limit` (default 1,
-- LISA's rule) caps a member's live (not revoked) personal tokens in the org. Enforced here,
-- without read-then-write: each membership counts its live personal tokens, and a trigger moves
-- the count in the same statement as the token change. Raising it takes the membership row's
-- lock and re-checks the limit on the row it gets (READ COMMITTED re-evaluates the WHERE on the
-- newest version), so N concurrent creates give exactly `limit` winners. Replaces the unique
-- index `tokens_one_live_personal_per_member`, which could only say "one".

ALTER TABLE organizations ADD COLUMN personal_token_limit integer NOT NULL DEFAULT 1
    CHECK (personal_token_limit BETWEEN 1 AND 1000);
ALTER TABLE memberships ADD COLUMN live_personal_tokens integer NOT NULL DEFAULT 0
    CHECK (live_personal_tokens >= 0);

UPDATE memberships m SET live_personal_tokens = (
    SELECT count(*) FROM tokens t
    WHERE t.org_id = m.org_id AND t.owner_user_id = m.user_id AND t.kind = 'personal' AND t.status <> 'revoked');

CREATE FUNCTION tokens_count_personal() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was_live boolean := TG_OP <> 'INSERT' AND OLD.kind = 'personal' AND OLD.status <> 'revoked'
                        AND OLD.owner_user_id IS NOT NULL;
    is_live  boolean := TG_OP <> 'DELETE' AND NEW.kind = 'personal' AND NEW.status <> 'revoked'
                        AND NEW.owner_user_id IS NOT NULL;
    same     boolean := was_live AND is_live AND OLD.org_id = NEW.org_id AND OLD.owner_user_id = NEW.owner_user_id;
BEGIN
    IF was_live AND NOT same THEN
        UPDATE memberships SET live_personal_tokens = live_personal_tokens - 1
        WHERE org_id = OLD.org_id AND user_id = OLD.owner_user_id;
    END IF;
    IF is_live AND NOT same THEN
        UPDATE memberships m SET live_personal_tokens = m.live_personal_tokens + 1
        FROM organizations o
        WHERE m.org_id = NEW.org_id AND m.user_id = NEW.owner_user_id AND o.id = m.org_id
          AND m.live_personal_tokens < o.personal_token_limit;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'personal token limit of the organization reached'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'tokens_personal_token_limit', TABLE = 'tokens';
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tokens_count_personal AFTER INSERT OR UPDATE OF status, owner_user_id, kind, org_id OR DELETE ON tokens
    FOR EACH ROW EXECUTE FUNCTION tokens_count_personal();

DROP INDEX tokens_one_live_personal_per_member;
