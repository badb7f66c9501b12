-- Codes that move an account to a new address (src/oauth/self_service.rs).
ALTER TABLE account_codes DROP CONSTRAINT account_codes_purpose_check;
ALTER TABLE account_codes ADD CONSTRAINT account_codes_purpose_check
    CHECK (purpose IN ('verify_email', 'reset_password', 'change_email'));
