// @generated automatically by Diesel CLI.

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
    key_set_version (singleton) {
        singleton -> Bool,
        version -> Int8,
    }
}

diesel::table! {
    sessions (id_hash) {
        id_hash -> Bytea,
        user_id -> Nullable<Uuid>,
        data -> Bytea,
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
    }
}

diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(trusted_devices -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    audit_events,
    key_set_version,
    sessions,
    sign_in_throttle,
    signing_keys,
    trusted_devices,
    users,
);
