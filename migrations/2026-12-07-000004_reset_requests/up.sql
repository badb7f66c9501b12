-- "Forgot your password?" requests waiting to be resolved (src/oauth/recovery.rs): the page
-- writes one row whatever was typed, so known and unknown accounts cost the same statements; a
-- background step looks the account up, mails a code, and deletes the row.
CREATE TABLE reset_requests (
    id uuid PRIMARY KEY,
    identifier text NOT NULL CHECK (length(identifier) BETWEEN 1 AND 254),
    created_at timestamptz NOT NULL
);
CREATE INDEX reset_requests_created_at_idx ON reset_requests (created_at);
