-- Refresh tokens in families (one per authorization), rotated on every use.

CREATE TABLE refresh_families (
    id uuid PRIMARY KEY,
    client_id text NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The granted scope: the ceiling for every refresh in the family.
    scopes text[] NOT NULL CHECK (array_position(scopes, NULL) IS NULL),
    audiences text[] NOT NULL CHECK (array_position(audiences, NULL) IS NULL),
    auth_time timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    -- Rotation never extends past this.
    absolute_expires_at timestamptz NOT NULL CHECK (absolute_expires_at > created_at),
    revoked_at timestamptz,
    revoked_reason text,
    CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
);
CREATE INDEX refresh_families_user_id_idx ON refresh_families (user_id, client_id);
CREATE INDEX refresh_families_absolute_expires_at_idx ON refresh_families (absolute_expires_at);

CREATE TABLE refresh_tokens (
    -- SHA-256 of the token; the token itself exists only in a response.
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    family_id uuid NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    generation integer NOT NULL CHECK (generation >= 0),
    scopes text[] NOT NULL CHECK (array_position(scopes, NULL) IS NULL),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL CHECK (expires_at > created_at),
    used_at timestamptz,
    -- One token per generation: a family is a chain, never a tree.
    UNIQUE (family_id, generation)
);
CREATE INDEX refresh_tokens_expires_at_idx ON refresh_tokens (expires_at);

-- Every access token issued within a family, so revoking the family revokes them too.
CREATE TABLE family_access_tokens (
    jti uuid PRIMARY KEY,
    family_id uuid NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL
);
CREATE INDEX family_access_tokens_family_id_idx ON family_access_tokens (family_id);
