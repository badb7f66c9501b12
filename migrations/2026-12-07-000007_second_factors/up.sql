-- Second factors (src/users/totp.rs, src/users/recovery_codes.rs) and how each sign-in was made
-- (RFC 8176 `amr`, carried from the browser session into codes, refresh families and tokens).

-- One authenticator app per account. The secret is sealed under the KEK like a signing key
-- (bound to the account's id), so the database alone yields no codes. `last_step` is the last
-- accepted RFC 6238 time step: a code is accepted once (§5.2). NULL `confirmed_at`: enrolling.
CREATE TABLE totp_factors (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    sealed_secret bytea NOT NULL,
    seal_nonce bytea NOT NULL,
    kek_id text NOT NULL,
    last_step bigint,
    created_at timestamptz NOT NULL,
    confirmed_at timestamptz
);

-- Ten single-use codes per account, stored only as SHA-256 hashes (each has 80 random bits).
CREATE TABLE recovery_codes (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash bytea NOT NULL,
    created_at timestamptz NOT NULL,
    used_at timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

-- Every sign-in so far was made with a password.
ALTER TABLE authorization_codes ADD COLUMN amr text[] NOT NULL DEFAULT '{pwd}';
ALTER TABLE refresh_families ADD COLUMN amr text[] NOT NULL DEFAULT '{pwd}';

-- A client whose users must always use a second factor (`clients create --require-mfa`).
ALTER TABLE clients ADD COLUMN require_mfa boolean NOT NULL DEFAULT false;
