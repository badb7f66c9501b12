DROP TABLE family_access_tokens;
DROP TABLE refresh_tokens;
DROP TABLE refresh_families;
