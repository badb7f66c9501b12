-- Sign-in attempts in flight, one row each, counted against the lockout threshold apart from the
-- failures: a reservation is taken before the password is hashed (so parallel guesses cannot
-- slip past the threshold) and removed when the attempt ends, whatever its outcome (so parallel
-- correct sign-ins never lock their own user). A reservation of a crashed instance expires.
CREATE TABLE sign_in_attempts (
    id uuid PRIMARY KEY,
    username_key text NOT NULL CHECK (username_key = lower(username_key) AND length(username_key) <= 64),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sign_in_attempts_username_key_idx ON sign_in_attempts (username_key);
CREATE INDEX sign_in_attempts_expires_at_idx ON sign_in_attempts (expires_at);
