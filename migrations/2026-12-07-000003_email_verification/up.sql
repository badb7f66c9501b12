-- Email verification (src/oauth/verification.rs): when an address was proven, and the codes that
-- prove one (and, later, reset a password).
ALTER TABLE users ADD COLUMN email_verified_at timestamptz;
ALTER TABLE users ADD CONSTRAINT users_verified_has_email
    CHECK (email_verified_at IS NULL OR email IS NOT NULL);
-- Unique among verified addresses only: a stranger typing someone's address at sign-up must get
-- the same answer as anyone (no account enumeration), and cannot take the address from its owner.
DROP INDEX users_email_lower_key;
CREATE UNIQUE INDEX users_verified_email_lower_key ON users (lower(email))
    WHERE email_verified_at IS NOT NULL;
CREATE INDEX users_email_lower_idx ON users (lower(email)) WHERE email IS NOT NULL;

-- One live code per account and purpose, stored as an HMAC under a KEK-derived key: a short code
-- must not be recoverable from a database copy by trying every value.
CREATE TABLE account_codes (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    email text NOT NULL,
    code_hash bytea NOT NULL CHECK (length(code_hash) = 32),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    PRIMARY KEY (user_id, purpose)
);
CREATE INDEX account_codes_expires_at_idx ON account_codes (expires_at);
