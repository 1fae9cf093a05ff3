//! Diesel's view of the tables, shared by both backends (see `migrations/`).

diesel::table! {
    users (id) {
        id -> BigInt,
        username -> Text,
        password_hash -> Text,
        role -> Text,
        created_at -> Timestamp,
        credential_version -> BigInt,
    }
}

diesel::table! {
    posts (id) {
        id -> BigInt,
        author_id -> BigInt,
        title -> Text,
        body -> Text,
        created_at -> Timestamp,
        updated_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    sessions (id_hash) {
        id_hash -> Text,
        user_id -> Nullable<BigInt>,
        data -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    login_failures (key) {
        key -> Text,
        failures -> Integer,
        last_failed_at -> Timestamp,
        in_progress -> Integer,
        in_progress_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    rate_windows (key) {
        key -> Text,
        hits -> Integer,
        previous_hits -> Integer,
        started_at -> Timestamp,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> BigInt,
        user_id -> BigInt,
        name -> Text,
        token_hash -> Text,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(posts -> users (author_id));
diesel::joinable!(api_tokens -> users (user_id));
diesel::joinable!(sessions -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    posts,
    sessions,
    login_failures,
    rate_windows,
    api_tokens
);
