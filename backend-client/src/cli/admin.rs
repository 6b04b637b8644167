//! The administration subcommands, shared by `bai admin ...` (through the `/admin/...` API; an admin keypair is
//! needed, a superadmin one for domains and resource policies) and `backend-manager ...` (on its store): domains,
//! groups, users, resource policies, scaling groups and keypairs. [`run`] drives any [`AdminBackend`] and prints the
//! same tables whichever it is.

use super::{print_answer, print_table, Failure};
use backend_core::api::admin::{
    AdminApi, DomainFilter, DomainSpec, GroupSpec, KeyPairInfo, KeyPairSpec, NoFilter, RecordKind, ReplaceApi,
    ResourcePolicySpec, ScalingGroupSpec, UserSpec,
};
use backend_core::model::{Domain, Group, KeyPair, KeyPairResourcePolicy, Role, ScalingGroup, User};
use backend_core::slots::ResourceSlots;
use backend_core::AccessKey;
use clap::{Args, Subcommand};

/// What runs the administration commands: the client over HTTP, or the manager's service on a store.
pub trait AdminBackend:
    ReplaceApi<Domain>
    + ReplaceApi<Group>
    + ReplaceApi<User>
    + ReplaceApi<KeyPairResourcePolicy>
    + ReplaceApi<ScalingGroup>
    + AdminApi<KeyPair>
{
}

impl<T> AdminBackend for T where
    T: ReplaceApi<Domain>
        + ReplaceApi<Group>
        + ReplaceApi<User>
        + ReplaceApi<KeyPairResourcePolicy>
        + ReplaceApi<ScalingGroup>
        + AdminApi<KeyPair>
{
}

/// The administration subcommands.
#[derive(Debug, Subcommand)]
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

/// Total resource slots: `--slots cpu=16,mem=64g`; absent or empty: unlimited.
#[derive(Debug, Clone, Args)]
pub struct SlotsArg {
    /// Total slots its sessions may occupy together, `cpu=16,mem=64g` (absent or empty: unlimited).
    #[arg(long, value_name = "SLOT=AMOUNT,...", value_parser = parse_slots)]
    slots: Option<ResourceSlots>,
}

impl SlotsArg {
    fn slots(&self) -> ResourceSlots {
        self.slots.clone().unwrap_or_default()
    }
}

/// `cpu=16,mem=64g` as slots (amounts as [`ResourceSlots::from_pairs`] reads them).
pub fn parse_slots(text: &str) -> Result<ResourceSlots, String> {
    let pairs = text
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.split_once('=').map(|(k, v)| (k.trim(), v.trim())).ok_or_else(|| format!("{p:?} is not key=value")))
        .collect::<Result<Vec<_>, String>>()?;
    ResourceSlots::from_pairs(pairs).map_err(|e| e.to_string())
}

/// `domain ...`
#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// List domains.
    #[command(alias = "ls")]
    List,
    /// Create a domain.
    Create {
        /// Its name.
        name: String,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
        /// Its quota.
        #[command(flatten)]
        quota: SlotsArg,
    },
    /// Change a domain's total resource slots.
    SetQuota {
        /// Its name.
        name: String,
        /// The new quota.
        #[command(flatten)]
        quota: SlotsArg,
    },
    /// Delete a domain without groups or users.
    #[command(alias = "rm")]
    Delete {
        /// Its name.
        name: String,
    },
}

/// `group ...`
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List groups.
    #[command(alias = "ls")]
    List {
        /// Only this domain's.
        #[arg(long)]
        domain: Option<String>,
    },
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
        /// Its quota.
        #[command(flatten)]
        quota: SlotsArg,
    },
    /// Change a group's total resource slots.
    SetQuota {
        /// Its name.
        name: String,
        /// Its domain.
        #[arg(long, default_value = "default")]
        domain: String,
        /// The new quota.
        #[command(flatten)]
        quota: SlotsArg,
    },
    /// Delete a group without members.
    #[command(alias = "rm")]
    Delete {
        /// Its name.
        name: String,
        /// Its domain.
        #[arg(long, default_value = "default")]
        domain: String,
    },
}

/// `user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List users.
    #[command(alias = "ls")]
    List {
        /// Only this domain's.
        #[arg(long)]
        domain: Option<String>,
    },
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
        #[arg(long, default_value = "user", value_parser = parse_role)]
        role: Role,
        /// A group of the domain (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// Delete a user without keypairs.
    #[command(alias = "rm")]
    Delete {
        /// E-mail address.
        email: String,
    },
}

/// `policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// List keypair resource policies.
    #[command(alias = "ls")]
    List,
    /// Create a keypair resource policy.
    Create {
        /// Its name.
        name: String,
        /// The most a keypair's sessions may occupy together.
        #[command(flatten)]
        quota: SlotsArg,
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
    /// Delete a policy no keypair uses.
    #[command(alias = "rm")]
    Delete {
        /// Its name.
        name: String,
    },
}

/// `scaling-group ...`
#[derive(Debug, Subcommand)]
pub enum ScalingGroupCommand {
    /// List scaling groups.
    #[command(alias = "ls")]
    List,
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
    /// Delete a scaling group no agent serves.
    #[command(alias = "rm")]
    Delete {
        /// Its name.
        name: String,
    },
}

/// `keypair ...`
#[derive(Debug, Subcommand)]
pub enum KeypairCommand {
    /// List keypairs (without secrets).
    #[command(alias = "ls")]
    List,
    /// Create a keypair for an existing user; its secret is shown this once.
    Create {
        /// The owning user's e-mail.
        user: String,
        /// user, admin or superadmin (at most your own role).
        #[arg(long, default_value = "user", value_parser = parse_role)]
        role: Role,
        /// Requests per 15 minutes.
        #[arg(long, default_value_t = 30_000)]
        rate_limit: u32,
        /// The resource policy.
        #[arg(long, default_value = "default")]
        policy: String,
    },
    /// Revoke a keypair.
    #[command(alias = "revoke", alias = "rm")]
    Delete {
        /// Its access key.
        access_key: String,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse().map_err(|e: backend_core::Error| e.to_string())
}

fn text(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn quota_text(slots: &ResourceSlots) -> String {
    if slots.names().next().is_none() {
        "unlimited".into()
    } else {
        slots.to_string()
    }
}

/// Prints rows of owned cells.
fn print_rows<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let rows: Vec<[&str; N]> = rows.iter().map(|r| r.each_ref().map(String::as_str)).collect();
    print_table(header, &rows);
}

fn keypair_rows(keypairs: &[KeyPairInfo]) {
    let rows: Vec<[String; 6]> = keypairs
        .iter()
        .map(|k| {
            [
                k.access_key.to_string(),
                k.user_id.clone(),
                k.role.as_str().to_owned(),
                yes_no(k.is_active).to_owned(),
                k.rate_limit.to_string(),
                k.resource_policy.clone(),
            ]
        })
        .collect();
    print_rows(["ACCESS KEY", "USER", "ROLE", "ACTIVE", "RATE LIMIT", "POLICY"], &rows);
}

/// A record with new total resource slots, through `PUT`.
async fn set_quota<K: RecordKind>(
    api: &impl ReplaceApi<K>,
    key: &K::Key,
    slots: ResourceSlots,
    with_slots: impl FnOnce(&mut K::Spec, ResourceSlots),
) -> Result<K::Record, Failure> {
    let mut spec = K::spec_of(&api.get(key).await?);
    with_slots(&mut spec, slots);
    Ok(api.put(key, &spec).await?)
}

/// Runs one administration command on `api`; `json` prints the answers as JSON.
pub async fn run(api: &impl AdminBackend, command: AdminCommand, json: bool) -> Result<(), Failure> {
    match command {
        AdminCommand::Domain(cmd) => domain(api, cmd, json).await,
        AdminCommand::Group(cmd) => group(api, cmd, json).await,
        AdminCommand::User(cmd) => user(api, cmd, json).await,
        AdminCommand::Policy(cmd) => policy(api, cmd, json).await,
        AdminCommand::ScalingGroup(cmd) => scaling_group(api, cmd, json).await,
        AdminCommand::Keypair(cmd) => keypair(api, cmd, json).await,
    }
}

async fn domain(api: &impl ReplaceApi<Domain>, cmd: DomainCommand, json: bool) -> Result<(), Failure> {
    match cmd {
        DomainCommand::List => print_answer(json, &api.list(&NoFilter {}).await?, |list| {
            let rows: Vec<[String; 4]> = list
                .domains
                .iter()
                .map(|d| {
                    [
                        d.name.clone(),
                        yes_no(d.is_active).to_owned(),
                        quota_text(&d.total_resource_slots),
                        text(&d.description).to_owned(),
                    ]
                })
                .collect();
            print_rows(["NAME", "ACTIVE", "TOTAL SLOTS", "DESCRIPTION"], &rows);
        }),
        DomainCommand::Create { name, description, quota } => {
            let spec = DomainSpec { name, description, is_active: true, total_resource_slots: quota.slots() };
            print_answer(json, &api.create(&spec).await?, |d| outln!("created domain {}", d.name));
        }
        DomainCommand::SetQuota { name, quota } => {
            let d = set_quota(api, &name, quota.slots(), |s: &mut DomainSpec, slots| s.total_resource_slots = slots);
            print_answer(json, &d.await?, |d| {
                outln!("domain {}: total resource slots {}", d.name, quota_text(&d.total_resource_slots))
            });
        }
        DomainCommand::Delete { name } => {
            print_answer(json, &api.delete(&name).await?, |d| outln!("deleted domain {}", d.name));
        }
    }
    Ok(())
}

async fn group(api: &impl ReplaceApi<Group>, cmd: GroupCommand, json: bool) -> Result<(), Failure> {
    match cmd {
        GroupCommand::List { domain } => print_answer(json, &api.list(&DomainFilter { domain }).await?, |list| {
            let rows: Vec<[String; 5]> = list
                .groups
                .iter()
                .map(|g| {
                    [
                        g.domain.clone(),
                        g.name.clone(),
                        yes_no(g.is_active).to_owned(),
                        quota_text(&g.total_resource_slots),
                        text(&g.description).to_owned(),
                    ]
                })
                .collect();
            print_rows(["DOMAIN", "NAME", "ACTIVE", "TOTAL SLOTS", "DESCRIPTION"], &rows);
        }),
        GroupCommand::Create { name, domain, description, quota } => {
            let spec = GroupSpec { name, domain, description, is_active: true, total_resource_slots: quota.slots() };
            print_answer(json, &api.create(&spec).await?, |g| {
                outln!("created group {} in domain {}", g.name, g.domain)
            });
        }
        GroupCommand::SetQuota { name, domain, quota } => {
            let key = (domain, name);
            let g = set_quota(api, &key, quota.slots(), |s: &mut GroupSpec, slots| s.total_resource_slots = slots);
            print_answer(json, &g.await?, |g| {
                let slots = quota_text(&g.total_resource_slots);
                outln!("group {} in domain {}: total resource slots {slots}", g.name, g.domain)
            });
        }
        GroupCommand::Delete { name, domain } => {
            print_answer(json, &api.delete(&(domain, name)).await?, |g| {
                outln!("deleted group {} in domain {}", g.name, g.domain)
            });
        }
    }
    Ok(())
}

async fn user(api: &impl ReplaceApi<User>, cmd: UserCommand, json: bool) -> Result<(), Failure> {
    match cmd {
        UserCommand::List { domain } => print_answer(json, &api.list(&DomainFilter { domain }).await?, |list| {
            let rows: Vec<[String; 6]> = list
                .users
                .iter()
                .map(|u| {
                    [
                        u.email.clone(),
                        u.username.clone(),
                        u.domain.clone(),
                        u.role.as_str().to_owned(),
                        yes_no(u.is_active).to_owned(),
                        u.groups.join(","),
                    ]
                })
                .collect();
            print_rows(["EMAIL", "USERNAME", "DOMAIN", "ROLE", "ACTIVE", "GROUPS"], &rows);
        }),
        UserCommand::Create { email, username, domain, role, groups } => {
            let spec = UserSpec { email, username, domain, role, is_active: true, groups };
            print_answer(json, &api.create(&spec).await?, |u| outln!("created user {}", u.email));
        }
        UserCommand::Delete { email } => {
            print_answer(json, &api.delete(&email).await?, |u| outln!("deleted user {}", u.email));
        }
    }
    Ok(())
}

async fn policy(api: &impl ReplaceApi<KeyPairResourcePolicy>, cmd: PolicyCommand, json: bool) -> Result<(), Failure> {
    match cmd {
        PolicyCommand::List => print_answer(json, &api.list(&NoFilter {}).await?, |list| {
            let rows: Vec<[String; 6]> = list
                .resource_policies
                .iter()
                .map(|p| {
                    [
                        p.name.clone(),
                        p.total_resource_slots.to_string(),
                        p.max_concurrent_sessions.to_string(),
                        p.max_containers_per_session.to_string(),
                        p.idle_timeout.to_string(),
                        p.max_session_lifetime.to_string(),
                    ]
                })
                .collect();
            print_rows(["NAME", "SLOTS", "SESSIONS", "KERNELS", "IDLE TIMEOUT", "LIFETIME"], &rows);
        }),
        PolicyCommand::Create {
            name,
            quota,
            max_concurrent_sessions,
            max_containers_per_session,
            max_pending_session_count,
            idle_timeout,
            max_session_lifetime,
            allowed_vfolder_hosts,
            max_vfolder_count,
            max_quota_scope_size,
        } => {
            let spec = ResourcePolicySpec {
                name,
                total_resource_slots: quota.slots(),
                max_concurrent_sessions,
                max_containers_per_session,
                max_pending_session_count,
                idle_timeout,
                max_session_lifetime,
                allowed_vfolder_hosts,
                max_vfolder_count,
                max_quota_scope_size,
            };
            print_answer(json, &api.create(&spec).await?, |p| outln!("created resource policy {}", p.name));
        }
        PolicyCommand::Delete { name } => {
            print_answer(json, &api.delete(&name).await?, |p| outln!("deleted resource policy {}", p.name));
        }
    }
    Ok(())
}

async fn scaling_group(
    api: &impl ReplaceApi<ScalingGroup>,
    cmd: ScalingGroupCommand,
    json: bool,
) -> Result<(), Failure> {
    match cmd {
        ScalingGroupCommand::List => print_answer(json, &api.list(&NoFilter {}).await?, |list| {
            let rows: Vec<[&str; 5]> = list
                .scaling_groups
                .iter()
                .map(|g| {
                    [
                        g.name.as_str(),
                        yes_no(g.is_active),
                        g.scheduler.as_str(),
                        g.agent_selector.as_deref().unwrap_or("-"),
                        text(&g.description),
                    ]
                })
                .collect();
            print_table(["NAME", "ACTIVE", "SCHEDULER", "SELECTOR", "DESCRIPTION"], &rows);
        }),
        ScalingGroupCommand::Create { name, description, scheduler, agent_selector } => {
            let spec = ScalingGroupSpec { name, description, is_active: true, scheduler, agent_selector };
            print_answer(json, &api.create(&spec).await?, |g| outln!("created scaling group {}", g.name));
        }
        ScalingGroupCommand::Delete { name } => {
            print_answer(json, &api.delete(&name).await?, |g| outln!("deleted scaling group {}", g.name));
        }
    }
    Ok(())
}

async fn keypair(api: &impl AdminApi<KeyPair>, cmd: KeypairCommand, json: bool) -> Result<(), Failure> {
    match cmd {
        KeypairCommand::List => {
            print_answer(json, &api.list(&NoFilter {}).await?, |list| keypair_rows(&list.keypairs));
        }
        KeypairCommand::Create { user, role, rate_limit, policy } => {
            let spec = KeyPairSpec { user_id: user, role, rate_limit, resource_policy: policy };
            print_answer(json, &api.create(&spec).await?, |k| {
                outln!("access_key: {}\nsecret_key: {}\nrole: {}", k.access_key, k.secret_key, k.role)
            });
        }
        KeypairCommand::Delete { access_key } => {
            let revoked = api.delete(&AccessKey::from(access_key)).await?;
            print_answer(json, &revoked, |k| outln!("revoked {}", k.access_key));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Admin {
        #[command(subcommand)]
        command: AdminCommand,
    }

    fn parse(args: &[&str]) -> AdminCommand {
        Admin::try_parse_from([&["admin"], args].concat()).expect("valid flags").command
    }

    #[test]
    fn policy_quota_flags_default_to_unlimited() {
        let quota_flags = |args: &[&str]| match parse(&[&["policy", "create", "p"], args].concat()) {
            AdminCommand::Policy(PolicyCommand::Create { max_vfolder_count, max_quota_scope_size, quota, .. }) => {
                (max_vfolder_count, max_quota_scope_size, quota.slots())
            }
            other => panic!("not a policy create command: {other:?}"),
        };
        assert_eq!(quota_flags(&[]), (0, None, ResourceSlots::new()));
        let (count, size, slots) =
            quota_flags(&["--max-vfolder-count", "4", "--max-quota-scope-size", "1073741824", "--slots", "cpu=4"]);
        assert_eq!((count, size, slots), (4, Some(1 << 30), parse_slots("cpu=4").unwrap()));
        assert!(Admin::try_parse_from(["admin", "policy", "create", "p", "--max-vfolder-count", "-1"]).is_err());
    }

    #[test]
    fn slots_are_spelled_one_way_and_empty_means_unlimited() {
        let AdminCommand::Group(GroupCommand::Create { quota, domain, .. }) =
            parse(&["group", "create", "g", "--domain", "lab", "--slots", "cpu=4, mem=8g"])
        else {
            panic!("not a group create command")
        };
        assert_eq!(domain, "lab");
        assert_eq!(quota.slots(), ResourceSlots::from_pairs([("cpu", "4"), ("mem", "8g")]).unwrap());
        let AdminCommand::Domain(DomainCommand::SetQuota { quota, .. }) =
            parse(&["domain", "set-quota", "d", "--slots="])
        else {
            panic!("not a set-quota command")
        };
        assert!(quota.slots().is_zero(), "empty: unlimited");
        let AdminCommand::Domain(DomainCommand::SetQuota { quota, .. }) = parse(&["domain", "set-quota", "d"]) else {
            panic!("not a set-quota command")
        };
        assert!(quota.slots().is_zero(), "absent: unlimited");
        for bad in ["cpu", "cpu=lots", "cpu=-1"] {
            assert!(Admin::try_parse_from(["admin", "domain", "create", "d", "--slots", bad]).is_err(), "{bad}");
        }
        assert!(Admin::try_parse_from(["admin", "domain", "create", "d", "--cpu", "1"]).is_err(), "no --cpu any more");
    }
}
