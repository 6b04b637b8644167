//! Diesel's view of the tables of `migrations/sqlite` that the store reads and writes.
//!
//! `rowid` is SQLite's implicit row number, declared so that rows created in the same microsecond still list in
//! insertion order. The tables created for later work (domains, groups, users, keypair resource policies, scaling
//! groups) are not declared until something uses them.

diesel::table! {
    keypairs (access_key) {
        rowid -> BigInt,
        access_key -> Text,
        secret_key -> Text,
        user_id -> Text,
        role -> Text,
        is_active -> Bool,
        rate_limit -> BigInt,
        resource_policy -> Text,
        created_at -> Text,
    }
}

diesel::table! {
    agents (id) {
        id -> Text,
        status -> Text,
        addr -> Text,
        scaling_group -> Text,
        architecture -> Text,
        available_slots -> Text,
        occupied_slots -> Text,
        images -> Text,
        schedulable -> Bool,
        runtime -> Text,
        version -> Text,
        first_contact -> Text,
        lost_at -> Nullable<Text>,
    }
}

diesel::table! {
    sessions (id) {
        rowid -> BigInt,
        id -> Text,
        name -> Text,
        access_key -> Text,
        domain_name -> Text,
        group_name -> Text,
        session_type -> Text,
        image -> Text,
        cluster_size -> BigInt,
        status -> Text,
        status_info -> Nullable<Text>,
        status_history -> Text,
        requested_slots -> Text,
        environ -> Text,
        tag -> Nullable<Text>,
        scaling_group -> Text,
        priority -> Integer,
        startup_command -> Nullable<Text>,
        result -> Text,
        created_at -> Text,
        terminated_at -> Nullable<Text>,
    }
}

diesel::table! {
    kernels (id) {
        id -> Text,
        session_id -> Text,
        access_key -> Text,
        cluster_role -> Text,
        cluster_idx -> BigInt,
        cluster_hostname -> Text,
        image -> Text,
        agent_id -> Nullable<Text>,
        agent_addr -> Nullable<Text>,
        container_id -> Nullable<Text>,
        status -> Text,
        status_info -> Nullable<Text>,
        status_history -> Text,
        requested_slots -> Text,
        occupied_slots -> Text,
        exit_code -> Nullable<Integer>,
        created_at -> Text,
        terminated_at -> Nullable<Text>,
    }
}

diesel::joinable!(kernels -> sessions (session_id));
diesel::allow_tables_to_appear_in_same_query!(kernels, sessions);
