-- Relying parties, what people agreed to share with them, authorization codes, and revoked
-- access tokens. Arrays never hold NULL (checked), so the schema maps them to Array<Text>.

ALTER TABLE users ADD COLUMN roles text[] NOT NULL DEFAULT '{}'
    CHECK (array_position(roles, NULL) IS NULL);

CREATE TABLE clients (
    id text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9._~-]{1,128}$'),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    -- SHA-256 of the generated secret; NULL exactly when the client is public.
    secret_hash bytea CHECK (secret_hash IS NULL OR length(secret_hash) = 32),
    is_public boolean NOT NULL,
    is_first_party boolean NOT NULL DEFAULT false,
    redirect_uris text[] NOT NULL CHECK (cardinality(redirect_uris) >= 1 AND array_position(redirect_uris, NULL) IS NULL),
    post_logout_redirect_uris text[] NOT NULL DEFAULT '{}'
        CHECK (array_position(post_logout_redirect_uris, NULL) IS NULL),
    grant_types text[] NOT NULL CHECK (cardinality(grant_types) >= 1 AND array_position(grant_types, NULL) IS NULL),
    scopes text[] NOT NULL CHECK (array_position(scopes, NULL) IS NULL),
    audiences text[] NOT NULL DEFAULT '{}' CHECK (array_position(audiences, NULL) IS NULL),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CHECK (is_public = (secret_hash IS NULL))
);

-- What a person agreed to share with a client; asked again only for more.
CREATE TABLE consents (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id text NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    scopes text[] NOT NULL CHECK (array_position(scopes, NULL) IS NULL),
    granted_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

CREATE TABLE authorization_codes (
    -- SHA-256 of the code; the code itself exists only in the redirect.
    code_hash bytea PRIMARY KEY CHECK (length(code_hash) = 32),
    client_id text NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    redirect_uri text NOT NULL,
    code_challenge text NOT NULL CHECK (code_challenge ~ '^[A-Za-z0-9_-]{43}$'),
    nonce text,
    scopes text[] NOT NULL CHECK (array_position(scopes, NULL) IS NULL),
    audiences text[] NOT NULL CHECK (array_position(audiences, NULL) IS NULL),
    auth_time timestamptz NOT NULL,
    sid text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL CHECK (expires_at > created_at),
    used_at timestamptz,
    -- The access token issued at first use, revoked if the code is ever presented again.
    access_token_jti uuid,
    access_token_expires_at timestamptz
);
CREATE INDEX authorization_codes_expires_at_idx ON authorization_codes (expires_at);

-- Access tokens are self-contained JWTs; these are the ones refused before they expire.
CREATE TABLE revoked_access_tokens (
    jti uuid PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL,
    reason text NOT NULL
);
CREATE INDEX revoked_access_tokens_expires_at_idx ON revoked_access_tokens (expires_at);
