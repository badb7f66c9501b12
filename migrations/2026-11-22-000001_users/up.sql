-- People who sign in on Keyward, their sign-in throttle and trusted devices, and browser sessions.

CREATE TABLE users (
    -- The stable OIDC `sub`: never the username, which a person may want to change.
    id uuid PRIMARY KEY,
    username text NOT NULL
        CHECK (username ~ '^[A-Za-z0-9][A-Za-z0-9._-]{2,31}$'),
    email text
        CHECK (email IS NULL OR (length(email) BETWEEN 3 AND 254 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$')),
    -- PHC string; only argon2id is ever written.
    password_hash text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    password_changed_at timestamptz NOT NULL,
    disabled_at timestamptz
);
-- Usernames and emails are unique regardless of case: "Alice" and "alice" are one person.
CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email)) WHERE email IS NOT NULL;

-- Consecutive sign-in failures, keyed by the lower-cased username that was typed, whether or not
-- such a user exists: a lockout then says nothing about which accounts exist.
CREATE TABLE sign_in_throttle (
    username_key text PRIMARY KEY CHECK (username_key = lower(username_key) AND length(username_key) <= 64),
    failures integer NOT NULL CHECK (failures > 0),
    last_failure_at timestamptz NOT NULL,
    locked_until timestamptz
);
CREATE INDEX sign_in_throttle_last_failure_at_idx ON sign_in_throttle (last_failure_at);

-- Browsers that have signed in to an account before (OWASP "device cookies"): they keep getting
-- through while an attacker elsewhere holds the account in lockout.
CREATE TABLE trusted_devices (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    failures integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    created_at timestamptz NOT NULL,
    last_used_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL CHECK (expires_at > created_at)
);
CREATE INDEX trusted_devices_user_id_idx ON trusted_devices (user_id);
CREATE INDEX trusted_devices_expires_at_idx ON trusted_devices (expires_at);

-- tower-sessions records. The id is a bearer secret, so only its SHA-256 is stored.
CREATE TABLE sessions (
    id_hash bytea PRIMARY KEY CHECK (length(id_hash) = 32),
    -- Set while someone is signed in, so disabling a user can end their sessions at once.
    user_id uuid REFERENCES users (id) ON DELETE CASCADE,
    data bytea NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
CREATE INDEX sessions_user_id_idx ON sessions (user_id) WHERE user_id IS NOT NULL;
