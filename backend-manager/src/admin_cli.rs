//! The administration subcommands of `backend-manager`, working on the embedded store of `--data-dir`: domains,
//! groups, users, resource policies, scaling groups and keypairs. The default records
//! ([`backend_core::store::fixtures::ensure_defaults`]) are created first, so a fresh data directory is usable.

use anyhow::Context;
use backend_core::api::admin::{DomainSpec, GroupSpec, ResourcePolicySpec, ScalingGroupSpec, UserSpec};
use backend_core::auth::generate_keypair;
use backend_core::model::{KeyPair, Role};
use backend_core::store::fixtures::ensure_defaults;
use backend_core::store::prelude::*;
use backend_core::store::sqlite::SqliteStore;
use backend_core::ResourceSlots;
use chrono::Utc;
use clap::Subcommand;
use std::path::Path;

/// The administration subcommands.
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Manage domains.
    #[command(subcommand)]
    Domain(DomainCommand),
    /// Manage groups (projects).
    #[command(subcommand)]
    Group(GroupCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage keypair resource policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage scaling groups.
    #[command(subcommand)]
    ScalingGroup(ScalingGroupCommand),
    /// Manage keypairs.
    #[command(subcommand)]
    Keypair(KeypairCommand),
}

/// `domain ...`
#[derive(Subcommand)]
pub enum DomainCommand {
    /// Create a domain.
    Create {
        /// Its name.
        name: String,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
        /// The most its sessions may occupy together, `cpu=16,mem=64g` (default: unlimited).
        #[arg(long)]
        slots: Option<String>,
    },
    /// Change a domain's total resource slots.
    SetQuota {
        /// Its name.
        name: String,
        /// `cpu=16,mem=64g`; empty: unlimited.
        #[arg(long)]
        slots: String,
    },
    /// List domains.
    List,
    /// Delete a domain without groups or users.
    Delete {
        /// Its name.
        name: String,
    },
}

/// `group ...`
#[derive(Subcommand)]
pub enum GroupCommand {
    /// Create a group.
    Create {
        /// Its name.
        name: String,
        /// Its domain.
        #[arg(long, default_value = "default")]
        domain: String,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
        /// The most its sessions may occupy together, `cpu=8,mem=32g` (default: unlimited).
        #[arg(long)]
        slots: Option<String>,
    },
    /// Change a group's total resource slots.
    SetQuota {
        /// Its name.
        name: String,
        /// Its domain.
        #[arg(long, default_value = "default")]
        domain: String,
        /// `cpu=8,mem=32g`; empty: unlimited.
        #[arg(long)]
        slots: String,
    },
    /// List groups.
    List {
        /// Only this domain's.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Delete a group without members.
    Delete {
        /// Its name.
        name: String,
        /// Its domain.
        #[arg(long, default_value = "default")]
        domain: String,
    },
}

/// `user ...`
#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Create {
        /// E-mail address.
        email: String,
        /// Login name (default: the e-mail's local part).
        #[arg(long)]
        username: Option<String>,
        /// Its domain.
        #[arg(long, default_value = "default")]
        domain: String,
        /// user, admin or superadmin.
        #[arg(long, default_value = "user")]
        role: String,
        /// A group of the domain (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// List users.
    List {
        /// Only this domain's.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Delete a user without keypairs.
    Delete {
        /// E-mail address.
        email: String,
    },
}

/// `policy ...`
#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Create a keypair resource policy.
    Create {
        /// Its name.
        name: String,
        /// Total slots, `cpu=4,mem=8g` (default: unlimited).
        #[arg(long)]
        slots: Option<String>,
        /// Sessions at once.
        #[arg(long, default_value_t = 30)]
        max_concurrent_sessions: u32,
        /// Kernels per session.
        #[arg(long, default_value_t = 1)]
        max_containers_per_session: u32,
        /// Sessions waiting (default: unlimited).
        #[arg(long)]
        max_pending_session_count: Option<u32>,
        /// Idle seconds before reclaiming (0: never).
        #[arg(long, default_value_t = 0)]
        idle_timeout: u64,
        /// Session lifetime in seconds (0: forever).
        #[arg(long, default_value_t = 0)]
        max_session_lifetime: u64,
        /// An allowed storage host (repeatable).
        #[arg(long = "vfolder-host")]
        allowed_vfolder_hosts: Vec<String>,
        /// Virtual folders a user may own (0: unlimited).
        #[arg(long, default_value_t = 0)]
        max_vfolder_count: u32,
        /// Bytes the folders of one quota scope may hold (default: unlimited).
        #[arg(long, value_name = "BYTES")]
        max_quota_scope_size: Option<u64>,
    },
    /// List keypair resource policies.
    List,
    /// Delete a policy no keypair uses.
    Delete {
        /// Its name.
        name: String,
    },
}

/// `scaling-group ...`
#[derive(Subcommand)]
pub enum ScalingGroupCommand {
    /// Create a scaling group.
    Create {
        /// Its name.
        name: String,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
        /// Scheduler name.
        #[arg(long, default_value = "fifo")]
        scheduler: String,
        /// Agent selector: concentrated, dispersed or roundrobin (default: the manager's).
        #[arg(long)]
        agent_selector: Option<String>,
    },
    /// List scaling groups.
    List,
    /// Delete a scaling group no agent serves.
    Delete {
        /// Its name.
        name: String,
    },
}

/// `keypair ...`
#[derive(Subcommand)]
pub enum KeypairCommand {
    /// Create a keypair and print it.
    Create {
        /// Make it an admin keypair.
        #[arg(long)]
        admin: bool,
        /// The owning user.
        #[arg(long, default_value = "user@example.com")]
        user: String,
        /// Requests per 15 minutes.
        #[arg(long, default_value_t = 30_000)]
        rate_limit: u32,
        /// The resource policy.
        #[arg(long, default_value = "default")]
        policy: String,
    },
    /// List keypairs (secrets are not shown).
    List,
    /// Revoke a keypair.
    Revoke {
        /// Its access key.
        access_key: String,
    },
}

fn description(d: &Option<String>) -> &str {
    d.as_deref().unwrap_or("")
}

/// Opens the embedded store of `data_dir`.
pub fn open_embedded(data_dir: &Path) -> anyhow::Result<SqliteStore> {
    std::fs::create_dir_all(data_dir)?;
    SqliteStore::open(&data_dir.join("metadata.db")).context("opening the store")
}

/// Runs one command on `store`.
pub async fn run(store: &dyn MetadataStore, command: AdminCommand) -> anyhow::Result<()> {
    ensure_defaults(store).await.context("creating the default records")?;
    let now = Utc::now();
    match command {
        AdminCommand::Domain(cmd) => match cmd {
            DomainCommand::Create { name, description, slots } => {
                anyhow::ensure!(store.domain(&name).await?.is_none(), "domain {name} exists already");
                let total_resource_slots = parse_slots(slots.as_deref().unwrap_or(""))?;
                let spec = DomainSpec { name: name.clone(), description, is_active: true, total_resource_slots };
                store.put_domain(&spec.into_model(now)?).await?;
                println!("created domain {name}");
            }
            DomainCommand::SetQuota { name, slots } => {
                let d = store.domain(&name).await?.with_context(|| format!("no domain {name}"))?;
                let spec = DomainSpec {
                    name: d.name,
                    description: d.description,
                    is_active: d.is_active,
                    total_resource_slots: parse_slots(&slots)?,
                };
                store.put_domain(&spec.into_model(d.created_at)?).await?;
                println!("domain {name}: total resource slots {}", quota(&parse_slots(&slots)?));
            }
            DomainCommand::List => {
                println!("{:<24} {:<7} {:<24} description", "name", "active", "total_resource_slots");
                for d in store.list_domains().await? {
                    let q = quota(&d.total_resource_slots);
                    println!("{:<24} {:<7} {:<24} {}", d.name, d.is_active, q, description(&d.description));
                }
            }
            DomainCommand::Delete { name } => {
                store.delete_domain(&name).await?;
                println!("deleted domain {name}");
            }
        },
        AdminCommand::Group(cmd) => match cmd {
            GroupCommand::Create { name, domain, description, slots } => {
                anyhow::ensure!(store.group(&domain, &name).await?.is_none(), "group {name} exists in {domain}");
                let spec = GroupSpec {
                    name: name.clone(),
                    domain: domain.clone(),
                    description,
                    is_active: true,
                    total_resource_slots: parse_slots(slots.as_deref().unwrap_or(""))?,
                };
                store.put_group(&spec.into_model(now)?).await?;
                println!("created group {name} in domain {domain}");
            }
            GroupCommand::SetQuota { name, domain, slots } => {
                let g = store.group(&domain, &name).await?.with_context(|| format!("no group {name} in {domain}"))?;
                let spec = GroupSpec {
                    name: g.name,
                    domain: g.domain,
                    description: g.description,
                    is_active: g.is_active,
                    total_resource_slots: parse_slots(&slots)?,
                };
                store.put_group(&spec.into_model(g.created_at)?).await?;
                println!("group {name} in domain {domain}: total resource slots {}", quota(&parse_slots(&slots)?));
            }
            GroupCommand::List { domain } => {
                println!("{:<16} {:<24} {:<7} {:<24} description", "domain", "name", "active", "total_resource_slots");
                for g in store.list_groups(domain.as_deref()).await? {
                    let q = quota(&g.total_resource_slots);
                    println!(
                        "{:<16} {:<24} {:<7} {:<24} {}",
                        g.domain,
                        g.name,
                        g.is_active,
                        q,
                        description(&g.description)
                    );
                }
            }
            GroupCommand::Delete { name, domain } => {
                store.delete_group(&domain, &name).await?;
                println!("deleted group {name} in domain {domain}");
            }
        },
        AdminCommand::User(cmd) => match cmd {
            UserCommand::Create { email, username, domain, role, groups } => {
                anyhow::ensure!(store.user(&email).await?.is_none(), "user {email} exists already");
                let spec =
                    UserSpec { email: email.clone(), username, domain, role: role.parse()?, is_active: true, groups };
                store.put_user(&spec.into_model(now)?).await?;
                println!("created user {email}");
            }
            UserCommand::List { domain } => {
                println!("{:<32} {:<16} {:<12} {:<11} {:<7} groups", "email", "username", "domain", "role", "active");
                for u in store.list_users(domain.as_deref()).await? {
                    println!(
                        "{:<32} {:<16} {:<12} {:<11} {:<7} {}",
                        u.email,
                        u.username,
                        u.domain,
                        u.role.as_str(),
                        u.is_active,
                        u.groups.join(",")
                    );
                }
            }
            UserCommand::Delete { email } => {
                store.delete_user(&email).await?;
                println!("deleted user {email}");
            }
        },
        AdminCommand::Policy(cmd) => match cmd {
            PolicyCommand::Create {
                name,
                slots,
                max_concurrent_sessions,
                max_containers_per_session,
                max_pending_session_count,
                idle_timeout,
                max_session_lifetime,
                allowed_vfolder_hosts,
                max_vfolder_count,
                max_quota_scope_size,
            } => {
                anyhow::ensure!(store.resource_policy(&name).await?.is_none(), "resource policy {name} exists already");
                let total_resource_slots = match slots {
                    Some(text) => parse_slots(&text)?,
                    None => ResourceSlots::new(),
                };
                let spec = ResourcePolicySpec {
                    name: name.clone(),
                    total_resource_slots,
                    max_concurrent_sessions,
                    max_containers_per_session,
                    max_pending_session_count,
                    idle_timeout,
                    max_session_lifetime,
                    allowed_vfolder_hosts,
                    max_vfolder_count,
                    max_quota_scope_size,
                };
                store.put_resource_policy(&spec.into_model(now)?).await?;
                println!("created resource policy {name}");
            }
            PolicyCommand::List => {
                println!("{:<20} {:<9} {:<9} {:<8} {:<8} slots", "name", "sessions", "kernels", "idle", "lifetime");
                for p in store.list_resource_policies().await? {
                    println!(
                        "{:<20} {:<9} {:<9} {:<8} {:<8} {}",
                        p.name,
                        p.max_concurrent_sessions,
                        p.max_containers_per_session,
                        p.idle_timeout,
                        p.max_session_lifetime,
                        p.total_resource_slots
                    );
                }
            }
            PolicyCommand::Delete { name } => {
                store.delete_resource_policy(&name).await?;
                println!("deleted resource policy {name}");
            }
        },
        AdminCommand::ScalingGroup(cmd) => match cmd {
            ScalingGroupCommand::Create { name, description, scheduler, agent_selector } => {
                anyhow::ensure!(store.scaling_group(&name).await?.is_none(), "scaling group {name} exists already");
                let spec =
                    ScalingGroupSpec { name: name.clone(), description, is_active: true, scheduler, agent_selector };
                store.put_scaling_group(&spec.into_model(now)?).await?;
                println!("created scaling group {name}");
            }
            ScalingGroupCommand::List => {
                println!("{:<24} {:<7} {:<10} {:<13} description", "name", "active", "scheduler", "selector");
                for g in store.list_scaling_groups().await? {
                    println!(
                        "{:<24} {:<7} {:<10} {:<13} {}",
                        g.name,
                        g.is_active,
                        g.scheduler,
                        g.agent_selector.as_deref().unwrap_or("-"),
                        description(&g.description)
                    );
                }
            }
            ScalingGroupCommand::Delete { name } => {
                store.delete_scaling_group(&name).await?;
                println!("deleted scaling group {name}");
            }
        },
        AdminCommand::Keypair(cmd) => keypair(store, cmd).await?,
    }
    Ok(())
}

async fn keypair(store: &dyn MetadataStore, cmd: KeypairCommand) -> anyhow::Result<()> {
    match cmd {
        KeypairCommand::Create { admin, user, rate_limit, policy } => {
            anyhow::ensure!(store.resource_policy(&policy).await?.is_some(), "no resource policy {policy}");
            let (ak, sk) = generate_keypair();
            let kp = KeyPair {
                access_key: ak.into(),
                secret_key: sk,
                user_id: user,
                role: if admin { Role::Admin } else { Role::User },
                is_active: true,
                rate_limit,
                resource_policy: policy,
                created_at: Utc::now(),
            };
            store.insert_keypair(&kp).await?;
            println!("access_key: {}\nsecret_key: {}\nrole: {}", kp.access_key, kp.secret_key, kp.role);
        }
        KeypairCommand::List => {
            println!("{:<20} {:<10} {:<6} {:<10} user", "access_key", "role", "active", "rate_limit");
            for kp in store.list_keypairs().await? {
                println!(
                    "{:<22} {:<11} {:<7} {:<10} {}",
                    kp.access_key,
                    kp.role.as_str(),
                    kp.is_active,
                    kp.rate_limit,
                    kp.user_id
                );
            }
        }
        KeypairCommand::Revoke { access_key } => {
            store.set_keypair_active(&access_key.as_str().into(), false).await?;
            println!("revoked {access_key}");
        }
    }
    Ok(())
}

/// A quota for a listing: its slots, or `unlimited` when empty.
fn quota(slots: &ResourceSlots) -> String {
    if slots.names().next().is_none() {
        "unlimited".into()
    } else {
        slots.to_string()
    }
}

/// `cpu=4,mem=8g` as slots.
fn parse_slots(text: &str) -> anyhow::Result<ResourceSlots> {
    let pairs = text
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.split_once('=').map(|(k, v)| (k.trim(), v.trim())).with_context(|| format!("{p:?} is not key=value"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(ResourceSlots::from_pairs(pairs)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    }

    fn quota_flags(args: &[&str]) -> (u32, Option<u64>) {
        let parsed = Policy::try_parse_from([&["policy", "create", "p"], args].concat()).expect("valid flags");
        match parsed.command {
            PolicyCommand::Create { max_vfolder_count, max_quota_scope_size, .. } => {
                (max_vfolder_count, max_quota_scope_size)
            }
            _ => panic!("not a create command"),
        }
    }

    #[test]
    fn policy_quota_flags_default_to_unlimited() {
        assert_eq!(quota_flags(&[]), (0, None));
        assert_eq!(
            quota_flags(&["--max-vfolder-count", "4", "--max-quota-scope-size", "1073741824"]),
            (4, Some(1 << 30))
        );
        assert!(Policy::try_parse_from(["policy", "create", "p", "--max-vfolder-count", "-1"]).is_err());
    }

    #[derive(Parser)]
    struct Admin {
        #[command(subcommand)]
        command: AdminCommand,
    }

    fn admin(args: &[&str]) -> AdminCommand {
        Admin::try_parse_from([&["admin"], args].concat()).expect("valid flags").command
    }

    #[tokio::test]
    async fn quotas_and_agent_selectors_are_set_from_the_command_line() {
        let store = SqliteStore::in_memory().unwrap();
        run(&store, admin(&["domain", "create", "lab", "--slots", "cpu=16"])).await.unwrap();
        run(&store, admin(&["group", "create", "g", "--domain", "lab", "--slots", "cpu=4,mem=8g"])).await.unwrap();
        let domain = store.domain("lab").await.unwrap().unwrap();
        assert_eq!(domain.total_resource_slots, parse_slots("cpu=16").unwrap());
        let group = store.group("lab", "g").await.unwrap().unwrap();
        assert_eq!(group.total_resource_slots, parse_slots("cpu=4,mem=8g").unwrap());

        run(&store, admin(&["group", "set-quota", "g", "--domain", "lab", "--slots", "cpu=2"])).await.unwrap();
        let changed = store.group("lab", "g").await.unwrap().unwrap();
        assert_eq!(changed.total_resource_slots, parse_slots("cpu=2").unwrap());
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
}
