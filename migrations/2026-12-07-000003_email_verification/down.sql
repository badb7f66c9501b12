DROP TABLE account_codes;
DROP INDEX users_email_lower_idx;
DROP INDEX users_verified_email_lower_key;
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email)) WHERE email IS NOT NULL;
ALTER TABLE users DROP CONSTRAINT users_verified_has_email;
ALTER TABLE users DROP COLUMN email_verified_at;
