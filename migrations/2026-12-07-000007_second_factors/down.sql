ALTER TABLE clients DROP COLUMN require_mfa;
ALTER TABLE refresh_families DROP COLUMN amr;
ALTER TABLE authorization_codes DROP COLUMN amr;
DROP TABLE recovery_codes;
DROP TABLE totp_factors;
