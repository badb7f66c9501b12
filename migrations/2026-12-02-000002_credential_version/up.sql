-- A clean cut-off: a password change, disabling, or signing out everywhere bumps the user's
-- credential version in the same transaction that ends their sessions, codes and families. What
-- was begun under the old version (a session record, an access token, a sign-in in flight)
-- carries it and is refused wherever it is next used.
ALTER TABLE users ADD COLUMN credential_version integer NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN credential_version integer;
