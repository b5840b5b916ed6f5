-- Rotation (issue #4): a rotated token is a new row of the same family; the old row is revoked
-- with reason 'rotated' and may keep verifying until grace_until (the requested overlap).
ALTER TABLE tokens
    ADD COLUMN family_id    uuid,                       -- NULL: the token is its own family (id)
    ADD COLUMN rotated_from uuid,
    ADD COLUMN grace_until  timestamptz,
    ADD CONSTRAINT grace_only_when_rotated
        CHECK (grace_until IS NULL OR (status = 'revoked' AND revoked_reason = 'rotated'));
CREATE INDEX tokens_family_idx ON tokens (family_id) WHERE family_id IS NOT NULL;
