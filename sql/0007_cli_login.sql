-- Browser login for command-line clients (issue #13, DESIGN §9): `GET /api/v1/auth/code` makes a
-- short-lived single-use code (stored as its SHA-256), a signed-in console user approves it, and
-- the client's poll of `GET /api/v1/auth/token?code=` creates the personal token in the answer
-- itself (so the secret is never stored anywhere) and spends the code.
CREATE TABLE cli_login_codes (
    code_hash    bytea       PRIMARY KEY CHECK (octet_length(code_hash) = 32),
    client       text        NOT NULL DEFAULT '' CHECK (char_length(client) <= 200),
    source_ip    inet,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    approved_by  uuid        REFERENCES users (id) ON DELETE CASCADE,
    org_id       uuid        REFERENCES organizations (id) ON DELETE CASCADE,
    token_name   text        CHECK (char_length(token_name) BETWEEN 1 AND 200),
    approved_at  timestamptz,
    last_poll_at timestamptz,
    spent_at     timestamptz,
    CONSTRAINT approval_is_whole CHECK ((approved_by IS NULL) = (approved_at IS NULL) AND (approved_at IS NULL) = (org_id IS NULL))
);
CREATE INDEX cli_login_codes_expiry_idx ON cli_login_codes (expires_at);
