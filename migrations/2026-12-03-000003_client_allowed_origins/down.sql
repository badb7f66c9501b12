ALTER TABLE clients DROP CONSTRAINT clients_redirect_uris_check;
ALTER TABLE clients ADD CONSTRAINT clients_redirect_uris_check
    CHECK (cardinality(redirect_uris) >= 1 AND array_position(redirect_uris, NULL) IS NULL);
ALTER TABLE clients DROP COLUMN allowed_origins;
