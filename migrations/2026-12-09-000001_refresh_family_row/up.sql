-- A refresh family is one row, whatever the number of rotations: it keeps the current generation
-- and what that generation's token carries, and the token itself (kwrf_) names its family and
-- generation under a MAC, so a rotation is one UPDATE of this row instead of an INSERT per
-- rotation. Tokens issued before (kwrt_, one refresh_tokens row each, looked up by hash) keep
-- working until they rotate; their rows go with their family.
ALTER TABLE refresh_families
    ADD COLUMN generation integer,
    ADD COLUMN token_scopes text[],
    ADD COLUMN token_expires_at timestamptz,
    ADD COLUMN rotated_at timestamptz;

-- The current generation of an existing family is its newest token.
UPDATE refresh_families f
SET generation = t.generation,
    token_scopes = t.scopes,
    token_expires_at = t.expires_at,
    rotated_at = t.created_at
FROM (
    SELECT DISTINCT ON (family_id) family_id, generation, scopes, expires_at, created_at
    FROM refresh_tokens
    ORDER BY family_id, generation DESC
) t
WHERE t.family_id = f.id;
-- A family is always written with its first token; one without any has nothing to present.
DELETE FROM refresh_families WHERE generation IS NULL;

ALTER TABLE refresh_families
    ALTER COLUMN generation SET NOT NULL,
    ALTER COLUMN token_scopes SET NOT NULL,
    ALTER COLUMN token_expires_at SET NOT NULL,
    ALTER COLUMN rotated_at SET NOT NULL,
    ADD CONSTRAINT refresh_families_generation_check CHECK (generation >= 0),
    ADD CONSTRAINT refresh_families_token_scopes_check
        CHECK (array_position(token_scopes, NULL) IS NULL);
-- Purge finds revoked families by this (a batch must not scan a million live families); a
-- rotation never changes `revoked_at`, so it stays a HOT update.
CREATE INDEX refresh_families_revoked_at_idx ON refresh_families (revoked_at)
    WHERE revoked_at IS NOT NULL;
-- Room on each page for the row's next version: a rotation changes no indexed column, so with
-- free space on the page PostgreSQL updates it in place (a HOT update, no index writes).
ALTER TABLE refresh_families SET (fillfactor = 80);

-- The key refresh tokens are MAC'd with, sealed under the KEK like the signing keys (and
-- re-sealed by `keyward keys rewrap`). One row: every instance uses the same key.
CREATE TABLE refresh_token_keys (
    id text PRIMARY KEY,
    sealed_key bytea NOT NULL,
    seal_nonce bytea NOT NULL CHECK (length(seal_nonce) = 12),
    kek_id text NOT NULL,
    created_at timestamptz NOT NULL
);
