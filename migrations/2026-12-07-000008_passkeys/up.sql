-- Passkeys (WebAuthn credentials, src/users/passkeys.rs): public keys, nothing secret. `passkey`
-- is webauthn-rs's record (credential id, public key, sign counter, backup flags), rewritten
-- when a use moves the counter or the backup state.
CREATE TABLE passkeys (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id bytea NOT NULL UNIQUE,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    passkey jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    last_used_at timestamptz
);
CREATE INDEX passkeys_user_id ON passkeys (user_id);
