-- Families rotated since the change have no row for their current token: they end.
DELETE FROM refresh_families f
WHERE NOT EXISTS (
    SELECT 1 FROM refresh_tokens t WHERE t.family_id = f.id AND t.generation = f.generation
);
DROP TABLE refresh_token_keys;
DROP INDEX refresh_families_revoked_at_idx;
ALTER TABLE refresh_families RESET (fillfactor);
ALTER TABLE refresh_families
    DROP COLUMN generation,
    DROP COLUMN token_scopes,
    DROP COLUMN token_expires_at,
    DROP COLUMN rotated_at;
