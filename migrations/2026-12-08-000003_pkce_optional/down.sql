DELETE FROM authorization_codes WHERE code_challenge IS NULL;
ALTER TABLE authorization_codes ALTER COLUMN code_challenge SET NOT NULL;
ALTER TABLE clients DROP CONSTRAINT clients_public_pkce_check;
ALTER TABLE clients DROP COLUMN pkce_required;
