-- Signing keys on a published schedule, the version every instance polls, and the audit trail.

CREATE TABLE signing_keys (
    -- RFC 7638 JWK thumbprint (SHA-256, base64url): derived from the key, never invented.
    kid text PRIMARY KEY CHECK (kid ~ '^[A-Za-z0-9_-]{43}$'),
    algorithm text NOT NULL CHECK (algorithm = 'RS256'),
    bits integer NOT NULL CHECK (bits >= 2048 AND bits <= 16384),
    origin text NOT NULL CHECK (origin IN ('generated', 'imported')),
    -- Public modulus and exponent, base64url, as published in the JWKS.
    public_n text NOT NULL,
    public_e text NOT NULL,
    -- PKCS#8 DER sealed with AES-256-GCM under the key-encryption key, the kid as associated data.
    sealed_private_key bytea NOT NULL,
    seal_nonce bytea NOT NULL CHECK (length(seal_nonce) = 12),
    -- Fingerprint of the KEK that sealed it: a wrong KEK is caught before any decryption.
    kek_id text NOT NULL,
    created_at timestamptz NOT NULL,
    published_at timestamptz NOT NULL,
    activates_at timestamptz NOT NULL,
    retires_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    revoked_reason text,
    CHECK (published_at <= activates_at),
    CHECK (activates_at <= retires_at),
    CHECK (retires_at <= expires_at),
    CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
);

-- One row, bumped by every change to signing_keys: instances poll it to know when to reload.
CREATE TABLE key_set_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version bigint NOT NULL
);
INSERT INTO key_set_version (singleton, version) VALUES (true, 0);

CREATE FUNCTION bump_key_set_version() RETURNS trigger AS $$
BEGIN
    UPDATE key_set_version SET version = version + 1;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER signing_keys_bump_version
    AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION bump_key_set_version();

-- Security events, append-only: who did what, when, to what. Never a secret.
CREATE TABLE audit_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    kind text NOT NULL CHECK (kind ~ '^[a-z_]+\.[a-z_]+$'),
    -- 'system', 'cli', or 'user:<id>'.
    actor text NOT NULL,
    subject text,
    user_id uuid,
    client_id text,
    ip inet,
    details jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_events_occurred_at_idx ON audit_events (occurred_at);
CREATE INDEX audit_events_subject_idx ON audit_events (subject) WHERE subject IS NOT NULL;

CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
