-- Imported PBKDF2 and scrypt hashes (PHC strings) too, until their first sign-in.
ALTER TABLE users DROP CONSTRAINT users_password_hash_check;
ALTER TABLE users ADD CONSTRAINT users_password_hash_check CHECK (
    password_hash LIKE '$argon2id$%'
    OR password_hash ~ '^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$'
    OR password_hash ~ '^\$(pbkdf2-sha256|pbkdf2-sha512|scrypt)\$'
);
