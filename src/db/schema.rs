// @generated automatically by Diesel CLI.

diesel::table! {
    account_codes (user_id, purpose) {
        user_id -> Uuid,
        purpose -> Text,
        email -> Text,
        code_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        attempts -> Int4,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Int8,
        occurred_at -> Timestamptz,
        kind -> Text,
        actor -> Text,
        subject -> Nullable<Text>,
        user_id -> Nullable<Uuid>,
        client_id -> Nullable<Text>,
        ip -> Nullable<Inet>,
        details -> Jsonb,
    }
}

diesel::table! {
    authorization_codes (code_hash) {
        code_hash -> Bytea,
        client_id -> Text,
        user_id -> Uuid,
        redirect_uri -> Text,
        code_challenge -> Nullable<Text>,
        nonce -> Nullable<Text>,
        scopes -> Array<Text>,
        audiences -> Array<Text>,
        auth_time -> Timestamptz,
        sid -> Text,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        access_token_jti -> Nullable<Uuid>,
        access_token_expires_at -> Nullable<Timestamptz>,
        refresh_family_id -> Nullable<Uuid>,
        amr -> Array<Text>,
    }
}

diesel::table! {
    clients (id) {
        id -> Text,
        name -> Text,
        secret_hash -> Nullable<Bytea>,
        is_public -> Bool,
        is_first_party -> Bool,
        redirect_uris -> Array<Text>,
        post_logout_redirect_uris -> Array<Text>,
        grant_types -> Array<Text>,
        scopes -> Array<Text>,
        audiences -> Array<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        allowed_origins -> Array<Text>,
        require_mfa -> Bool,
        pkce_required -> Bool,
    }
}

diesel::table! {
    consents (user_id, client_id) {
        user_id -> Uuid,
        client_id -> Text,
        scopes -> Array<Text>,
        granted_at -> Timestamptz,
    }
}

diesel::table! {
    family_access_tokens (jti) {
        jti -> Uuid,
        family_id -> Uuid,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    client_set_version (singleton) {
        singleton -> Bool,
        version -> Int8,
    }
}

diesel::table! {
    idempotency_keys (client_id, key) {
        client_id -> Text,
        key -> Text,
        fingerprint -> Bytea,
        created_at -> Timestamptz,
        outcome -> Jsonb,
    }
}

diesel::table! {
    key_set_version (singleton) {
        singleton -> Bool,
        version -> Int8,
    }
}

diesel::table! {
    mail_outbox (id) {
        id -> Uuid,
        kind -> Text,
        sealed -> Bytea,
        created_at -> Timestamptz,
        attempts -> Int4,
        due_at -> Timestamptz,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    passkeys (id) {
        id -> Uuid,
        user_id -> Uuid,
        credential_id -> Bytea,
        name -> Text,
        passkey -> Jsonb,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    rate_limits (key) {
        key -> Text,
        tat -> Timestamptz,
    }
}

diesel::table! {
    refresh_families (id) {
        id -> Uuid,
        client_id -> Text,
        user_id -> Uuid,
        scopes -> Array<Text>,
        audiences -> Array<Text>,
        auth_time -> Timestamptz,
        created_at -> Timestamptz,
        absolute_expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
        amr -> Array<Text>,
        generation -> Int4,
        token_scopes -> Array<Text>,
        token_expires_at -> Timestamptz,
        rotated_at -> Timestamptz,
    }
}

diesel::table! {
    refresh_token_keys (id) {
        id -> Text,
        sealed_key -> Bytea,
        seal_nonce -> Bytea,
        kek_id -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    recovery_codes (user_id, code_hash) {
        user_id -> Uuid,
        code_hash -> Bytea,
        created_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Bytea,
        family_id -> Uuid,
        generation -> Int4,
        scopes -> Array<Text>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    reset_requests (id) {
        id -> Uuid,
        identifier -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    revoked_access_tokens (jti) {
        jti -> Uuid,
        expires_at -> Timestamptz,
        revoked_at -> Timestamptz,
        reason -> Text,
    }
}

diesel::table! {
    sessions (id_hash) {
        id_hash -> Bytea,
        user_id -> Nullable<Uuid>,
        data -> Bytea,
        expires_at -> Timestamptz,
        credential_version -> Nullable<Int4>,
        absolute_expires_at -> Timestamptz,
        signed_in_at -> Nullable<Timestamptz>,
        last_seen_at -> Nullable<Timestamptz>,
        device -> Nullable<Text>,
        ip -> Nullable<Text>,
    }
}

diesel::table! {
    sign_in_attempts (id) {
        id -> Uuid,
        username_key -> Text,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    sign_in_throttle (username_key) {
        username_key -> Text,
        failures -> Int4,
        last_failure_at -> Timestamptz,
        locked_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        algorithm -> Text,
        bits -> Int4,
        origin -> Text,
        public_n -> Text,
        public_e -> Text,
        sealed_private_key -> Bytea,
        seal_nonce -> Bytea,
        kek_id -> Text,
        created_at -> Timestamptz,
        published_at -> Timestamptz,
        activates_at -> Timestamptz,
        retires_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
    }
}

diesel::table! {
    spent_sign_in_proofs (challenge_hash) {
        challenge_hash -> Bytea,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    totp_factors (user_id) {
        user_id -> Uuid,
        sealed_secret -> Bytea,
        seal_nonce -> Bytea,
        kek_id -> Text,
        last_step -> Nullable<Int8>,
        created_at -> Timestamptz,
        confirmed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    trusted_devices (token_hash) {
        token_hash -> Bytea,
        user_id -> Uuid,
        failures -> Int4,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        username -> Text,
        email -> Nullable<Text>,
        password_hash -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        password_changed_at -> Timestamptz,
        disabled_at -> Nullable<Timestamptz>,
        roles -> Array<Text>,
        credential_version -> Int4,
        email_verified_at -> Nullable<Timestamptz>,
        subject -> Nullable<Text>,
    }
}

diesel::joinable!(account_codes -> users (user_id));
diesel::joinable!(authorization_codes -> clients (client_id));
diesel::joinable!(authorization_codes -> users (user_id));
diesel::joinable!(consents -> clients (client_id));
diesel::joinable!(consents -> users (user_id));
diesel::joinable!(family_access_tokens -> refresh_families (family_id));
diesel::joinable!(idempotency_keys -> clients (client_id));
diesel::joinable!(passkeys -> users (user_id));
diesel::joinable!(recovery_codes -> users (user_id));
diesel::joinable!(refresh_families -> clients (client_id));
diesel::joinable!(refresh_families -> users (user_id));
diesel::joinable!(refresh_tokens -> refresh_families (family_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(totp_factors -> users (user_id));
diesel::joinable!(trusted_devices -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    account_codes,
    audit_events,
    authorization_codes,
    client_set_version,
    clients,
    consents,
    family_access_tokens,
    idempotency_keys,
    key_set_version,
    mail_outbox,
    passkeys,
    rate_limits,
    recovery_codes,
    refresh_families,
    refresh_token_keys,
    refresh_tokens,
    reset_requests,
    revoked_access_tokens,
    sessions,
    sign_in_attempts,
    sign_in_throttle,
    spent_sign_in_proofs,
    signing_keys,
    totp_factors,
    trusted_devices,
    users,
);
