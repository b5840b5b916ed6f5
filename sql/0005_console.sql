-- Web console (issue #12, DESIGN §8): server-side sessions, and `console` as an audit actor kind.
--
-- A session row is keyed by the SHA-256 of the session id (the cookie value): a copy of this
-- table does not sign anyone in. `data` is the session (user, sign-in method, CSRF token, current
-- org; never a token secret). `expires_at` is the idle expiry, pushed forward as the session is
-- used; the absolute limit is checked from `data`. Expired rows are deleted by the server.
CREATE TABLE console_sessions (
    key_hash   bytea       PRIMARY KEY CHECK (octet_length(key_hash) = 32),
    data       jsonb       NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_sessions_expiry_idx ON console_sessions (expires_at);

ALTER TABLE audit_events DROP CONSTRAINT audit_events_actor_kind_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_actor_kind_check
    CHECK (actor_kind IN ('token', 'jwt', 'cli', 'system', 'console'));
