DROP TABLE revoked_access_tokens;
DROP TABLE authorization_codes;
DROP TABLE consents;
DROP TABLE clients;
ALTER TABLE users DROP COLUMN roles;
