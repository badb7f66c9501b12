DELETE FROM account_codes WHERE purpose = 'change_email';
ALTER TABLE account_codes DROP CONSTRAINT account_codes_purpose_check;
ALTER TABLE account_codes ADD CONSTRAINT account_codes_purpose_check
    CHECK (purpose IN ('verify_email', 'reset_password'));
