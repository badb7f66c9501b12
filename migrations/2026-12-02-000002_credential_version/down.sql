ALTER TABLE sessions DROP COLUMN credential_version;
ALTER TABLE users DROP COLUMN credential_version;
