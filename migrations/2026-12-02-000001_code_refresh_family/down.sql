ALTER TABLE authorization_codes DROP COLUMN refresh_family_id;
