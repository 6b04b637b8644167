//! Diesel's view of the tables of `migrations/postgres` that the store reads and writes.
//!
//! The columns `user` and `group` of the folder tables are `user_id` and `group_id` here, away from SQL keywords.
//!
//! `seq` is an insertion counter, declared so that rows created in the same microsecond still list in insertion
//! order. Columns and tables the store does not use yet (a domain's slots, a user's password, usage records,
//! ...) are left out and keep their defaults.

diesel::table! {
    keypairs (access_key) {
        seq -> BigInt,
        access_key -> Text,
        secret_key -> Text,
        user_id -> Text,
        role -> Text,
        is_active -> Bool,
        rate_limit -> BigInt,
        resource_policy -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    agents (id) {
        id -> Text,
        status -> Text,
        addr -> Text,
        scaling_group -> Text,
        architecture -> Text,
        available_slots -> Jsonb,
        occupied_slots -> Jsonb,
        images -> Jsonb,
        schedulable -> Bool,
        runtime -> Text,
        version -> Text,
        first_contact -> Timestamptz,
        lost_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    sessions (id) {
        seq -> BigInt,
        id -> Uuid,
        name -> Text,
        access_key -> Text,
        domain_name -> Text,
        group_name -> Text,
        session_type -> Text,
        image -> Text,
        cluster_size -> BigInt,
        status -> Text,
        status_info -> Nullable<Text>,
        status_history -> Jsonb,
        requested_slots -> Jsonb,
        environ -> Jsonb,
        tag -> Nullable<Text>,
        scaling_group -> Text,
        priority -> Integer,
        startup_command -> Nullable<Text>,
        result -> Text,
        created_at -> Timestamptz,
        terminated_at -> Nullable<Timestamptz>,
        starts_at -> Nullable<Timestamptz>,
        dependencies -> Jsonb,
        designated_agents -> Jsonb,
        architecture -> Nullable<Text>,
        bootstrap_script -> Nullable<Text>,
        batch_timeout -> Nullable<BigInt>,
        shmem -> Nullable<BigInt>,
        vfolder_mounts -> Jsonb,
    }
}

diesel::table! {
    kernels (id) {
        id -> Uuid,
        session_id -> Uuid,
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
        status_history -> Jsonb,
        requested_slots -> Jsonb,
        occupied_slots -> Jsonb,
        exit_code -> Nullable<Integer>,
        created_at -> Timestamptz,
        terminated_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    domains (name) {
        name -> Text,
        description -> Nullable<Text>,
        is_active -> Bool,
        total_resource_slots -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    groups (id) {
        id -> Uuid,
        name -> Text,
        domain_name -> Text,
        description -> Nullable<Text>,
        is_active -> Bool,
        total_resource_slots -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    users (uuid) {
        uuid -> Uuid,
        username -> Text,
        email -> Text,
        domain_name -> Text,
        role -> Text,
        status -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    association_groups_users (group_id, user_id) {
        group_id -> Uuid,
        user_id -> Uuid,
    }
}

diesel::table! {
    keypair_resource_policies (name) {
        name -> Text,
        total_resource_slots -> Jsonb,
        max_session_lifetime -> BigInt,
        max_concurrent_sessions -> BigInt,
        max_containers_per_session -> BigInt,
        idle_timeout -> BigInt,
        max_pending_session_count -> Nullable<BigInt>,
        allowed_vfolder_hosts -> Jsonb,
        max_vfolder_count -> BigInt,
        max_quota_scope_size -> Nullable<BigInt>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    scaling_groups (name) {
        name -> Text,
        description -> Nullable<Text>,
        is_active -> Bool,
        scheduler -> Text,
        agent_selector -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    vfolders (id) {
        id -> Uuid,
        host -> Text,
        name -> Text,
        quota_scope_id -> Text,
        usage_mode -> Text,
        permission -> Text,
        ownership_type -> Text,
        #[sql_name = "user"]
        user_id -> Nullable<Uuid>,
        #[sql_name = "group"]
        group_id -> Nullable<Uuid>,
        creator -> Text,
        max_size -> Nullable<BigInt>,
        cloneable -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    vfolder_permissions (vfolder, user_id) {
        vfolder -> Uuid,
        #[sql_name = "user"]
        user_id -> Uuid,
        permission -> Text,
    }
}

diesel::table! {
    vfolder_invitations (id) {
        seq -> BigInt,
        id -> Uuid,
        permission -> Text,
        inviter -> Text,
        invitee -> Text,
        state -> Text,
        vfolder -> Uuid,
        created_at -> Timestamptz,
        modified_at -> Timestamptz,
    }
}

diesel::joinable!(kernels -> sessions (session_id));
diesel::joinable!(association_groups_users -> groups (group_id));
diesel::joinable!(association_groups_users -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(kernels, sessions);
diesel::joinable!(vfolders -> users (user_id));
diesel::joinable!(vfolders -> groups (group_id));
diesel::joinable!(vfolder_permissions -> vfolders (vfolder));
diesel::joinable!(vfolder_permissions -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(association_groups_users, groups, users, vfolders, vfolder_permissions);
