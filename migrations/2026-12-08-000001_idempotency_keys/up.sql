-- Management API creations a client may retry (Idempotency-Key): what the first request came to
-- (created, skipped, refused), answered again for the same key and body; kept a day.
CREATE TABLE idempotency_keys (
    client_id TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    key TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    -- SHA-256 of the request (method, path, body): the same key with another request is refused.
    fingerprint BYTEA NOT NULL CHECK (length(fingerprint) = 32),
    created_at TIMESTAMPTZ NOT NULL,
    outcome JSONB NOT NULL,
    PRIMARY KEY (client_id, key)
);
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
