//! The administration subcommands of `backend-manager` (`domain`, `group`, `user`, `policy`, `scaling-group`,
//! `keypair`), working as a superadmin on the store itself (the embedded one of `--data-dir`, or PostgreSQL with
//! `--config`) with the same arguments and tables as `bai admin` ([`backend_client::cli::admin`]). The default
//! records ([`backend_core::store::fixtures::ensure_defaults`]) are created first, so a fresh store is usable.

use crate::service::admin::Admin;
use anyhow::Context;
use backend_client::cli::admin::AdminCommand;
use backend_core::model::Role;
use backend_core::store::fixtures::ensure_defaults;
use backend_core::store::sqlite::SqliteStore;
use backend_core::store::MetadataStore;
use std::path::Path;

/// Opens the embedded store of `data_dir`.
pub fn open_embedded(data_dir: &Path) -> anyhow::Result<SqliteStore> {
    std::fs::create_dir_all(data_dir)?;
    SqliteStore::open(&data_dir.join("metadata.db")).context("opening the store")
}

/// Runs one command on `store`.
pub async fn run(store: &dyn MetadataStore, command: AdminCommand) -> anyhow::Result<()> {
    ensure_defaults(store).await.context("creating the default records")?;
    backend_client::cli::admin::run(&Admin::new(store, Role::Superadmin), command, false).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use backend_core::store::prelude::*;
    use backend_core::ResourceSlots;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: AdminCommand,
    }

    fn admin(args: &[&str]) -> AdminCommand {
        Cli::try_parse_from([&["backend-manager"], args].concat()).expect("valid flags").command
    }

    fn slots(pairs: &[(&str, &str)]) -> ResourceSlots {
        ResourceSlots::from_pairs(pairs.iter().copied()).unwrap()
    }

    #[tokio::test]
    async fn quotas_and_agent_selectors_are_set_from_the_command_line() {
        let store = SqliteStore::in_memory().unwrap();
        run(&store, admin(&["domain", "create", "lab", "--slots", "cpu=16"])).await.unwrap();
        run(&store, admin(&["group", "create", "g", "--domain", "lab", "--slots", "cpu=4,mem=8g"])).await.unwrap();
        let domain = store.domain("lab").await.unwrap().unwrap();
        assert_eq!(domain.total_resource_slots, slots(&[("cpu", "16")]));
        let group = store.group("lab", "g").await.unwrap().unwrap();
        assert_eq!(group.total_resource_slots, slots(&[("cpu", "4"), ("mem", "8g")]));
        assert!(run(&store, admin(&["domain", "create", "lab"])).await.is_err(), "a taken name fails");

        run(&store, admin(&["group", "set-quota", "g", "--domain", "lab", "--slots", "cpu=2"])).await.unwrap();
        let changed = store.group("lab", "g").await.unwrap().unwrap();
        assert_eq!(changed.total_resource_slots, slots(&[("cpu", "2")]));
        assert_eq!(changed.created_at, group.created_at);
        run(&store, admin(&["domain", "set-quota", "lab", "--slots="])).await.unwrap();
        assert!(store.domain("lab").await.unwrap().unwrap().total_resource_slots.is_zero(), "empty: unlimited");
        assert!(run(&store, admin(&["group", "set-quota", "nope", "--slots=cpu=1"])).await.is_err());

        run(&store, admin(&["scaling-group", "create", "sg", "--agent-selector", "RoundRobin"])).await.unwrap();
        let sg = store.scaling_group("sg").await.unwrap().unwrap();
        assert_eq!(sg.agent_selector.as_deref(), Some("roundrobin"));
        let unknown = run(&store, admin(&["scaling-group", "create", "bad", "--agent-selector", "random"])).await;
        assert!(unknown.is_err());
        assert!(store.scaling_group("bad").await.unwrap().is_none(), "an unknown selector is never stored");
    }

    #[tokio::test]
    async fn keypairs_are_created_for_existing_users_and_revoked() {
        let store = SqliteStore::in_memory().unwrap();
        run(&store, admin(&["user", "create", "ops@example.com", "--role", "admin"])).await.unwrap();
        assert!(run(&store, admin(&["keypair", "create", "nobody@example.com"])).await.is_err(), "unknown user");
        run(&store, admin(&["keypair", "create", "ops@example.com", "--role", "admin"])).await.unwrap();
        let keypairs = store.list_keypairs().await.unwrap();
        let [kp] = keypairs.as_slice() else { panic!("one keypair: {keypairs:?}") };
        assert_eq!((kp.user_id.as_str(), kp.role, kp.is_active), ("ops@example.com", Role::Admin, true));
        run(&store, admin(&["keypair", "revoke", kp.access_key.as_str()])).await.unwrap();
        assert!(!store.keypair(&kp.access_key).await.unwrap().unwrap().is_active);
    }
}
