// @generated automatically by Diesel CLI.

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

diesel::allow_tables_to_appear_in_same_query!(sessions, sign_in_throttle, trusted_devices, users,);
