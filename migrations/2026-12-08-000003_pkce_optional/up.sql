-- `keyward clients create --pkce optional`: a confidential OpenID Connect client whose library
-- sends no PKCE may rely on the nonce instead (RFC 9700 §2.1.1); its codes then carry no
-- challenge. Public clients always use PKCE (a CHECK, as the registration rule says).
ALTER TABLE clients ADD COLUMN pkce_required BOOLEAN NOT NULL DEFAULT true;
ALTER TABLE clients ADD CONSTRAINT clients_public_pkce_check CHECK (pkce_required OR NOT is_public);
ALTER TABLE authorization_codes ALTER COLUMN code_challenge DROP NOT NULL;
