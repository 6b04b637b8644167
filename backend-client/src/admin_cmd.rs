//! `bai admin ...`: domains, groups, users, resource policies, scaling groups and keypairs, through the
//! `/admin/...` API (an admin keypair is needed; a superadmin one for domains and resource policies).

use super::{print_answer, print_table, write_stdout, Failure};
use backend_client::Client;
use backend_core::api::admin::{
    DomainSpec, GroupSpec, KeyPairInfo, KeyPairSpec, ResourcePolicySpec, ScalingGroupSpec, UserSpec,
};
use backend_core::model::Role;
use backend_core::slots::ResourceSlots;
use clap::Subcommand;

/// `bai admin ...`
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

/// `bai admin domain ...`
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
        /// Its quota (default: unlimited).
        #[command(flatten)]
        quota: QuotaArgs,
    },
    /// Change a domain's total resource slots (no flag: unlimited).
    SetQuota {
        /// Its name.
        name: String,
        /// The new quota.
        #[command(flatten)]
        quota: QuotaArgs,
    },
    /// Delete a domain without groups or users.
    #[command(alias = "rm")]
    Delete {
        /// Its name.
        name: String,
    },
}

/// The total resource slots of a group or domain; a slot without a flag is unlimited.
#[derive(Debug, clap::Args)]
pub struct QuotaArgs {
    /// Total CPU cores its sessions may occupy.
    #[arg(long)]
    cpu: Option<String>,
    /// Total memory its sessions may occupy.
    #[arg(long)]
    mem: Option<String>,
}

impl QuotaArgs {
    fn slots(&self) -> Result<ResourceSlots, backend_core::Error> {
        let amounts = [("cpu", &self.cpu), ("mem", &self.mem)];
        ResourceSlots::from_pairs(amounts.iter().filter_map(|(slot, v)| v.as_deref().map(|v| (*slot, v))))
    }
}

fn quota_text(slots: &ResourceSlots) -> String {
    if slots.names().next().is_none() {
        "unlimited".into()
    } else {
        slots.to_string()
    }
}

/// `bai admin group ...`
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
        /// Its quota (default: unlimited).
        #[command(flatten)]
        quota: QuotaArgs,
    },
    /// Change a group's total resource slots (no flag: unlimited).
    SetQuota {
        /// Its name.
        name: String,
        /// Its domain.
        #[arg(long, default_value = "default")]
        domain: String,
        /// The new quota.
        #[command(flatten)]
        quota: QuotaArgs,
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

/// `bai admin user ...`
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

/// `bai admin policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// List keypair resource policies.
    #[command(alias = "ls")]
    List,
    /// Create a keypair resource policy.
    Create {
        /// Its name.
        name: String,
        /// Total CPU cores of a keypair's sessions (default: unlimited).
        #[arg(long)]
        cpu: Option<String>,
        /// Total memory of a keypair's sessions (default: unlimited).
        #[arg(long)]
        mem: Option<String>,
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

/// `bai admin scaling-group ...`
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

/// `bai admin keypair ...`
#[derive(Debug, Subcommand)]
pub enum KeypairCommand {
    /// List keypairs (without secrets).
    #[command(alias = "ls")]
    List,
    /// Create a keypair for an existing user; its secret is shown this once.
    Create {
        /// The owning user's e-mail.
        user: String,
        /// user, admin or superadmin.
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
    let rows: Vec<[&str; 6]> = rows.iter().map(|r| r.each_ref().map(String::as_str)).collect();
    print_table(["ACCESS KEY", "USER", "ROLE", "ACTIVE", "RATE LIMIT", "POLICY"], &rows);
}

/// Runs one `bai admin` command.
pub async fn run(client: &Client, command: AdminCommand, json: bool) -> Result<(), Failure> {
    match command {
        AdminCommand::Domain(cmd) => match cmd {
            DomainCommand::List => print_answer(json, &client.list_domains().await?, |list| {
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
                let rows: Vec<[&str; 4]> = rows.iter().map(|r| r.each_ref().map(String::as_str)).collect();
                print_table(["NAME", "ACTIVE", "TOTAL SLOTS", "DESCRIPTION"], &rows);
            }),
            DomainCommand::Create { name, description, quota } => {
                let spec = DomainSpec { name, description, is_active: true, total_resource_slots: quota.slots()? };
                print_answer(json, &client.create_domain(&spec).await?, |d| outln!("created domain {}", d.name));
            }
            DomainCommand::SetQuota { name, quota } => {
                let d = client.domain(&name).await?;
                let spec = DomainSpec {
                    name: d.name,
                    description: d.description,
                    is_active: d.is_active,
                    total_resource_slots: quota.slots()?,
                };
                print_answer(json, &client.put_domain(&name, &spec).await?, |d| {
                    outln!("domain {}: total resource slots {}", d.name, quota_text(&d.total_resource_slots))
                });
            }
            DomainCommand::Delete { name } => {
                print_answer(json, &client.delete_domain(&name).await?, |d| outln!("deleted domain {}", d.name));
            }
        },
        AdminCommand::Group(cmd) => match cmd {
            GroupCommand::List { domain } => {
                print_answer(json, &client.list_groups(domain.as_deref()).await?, |list| {
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
                    let rows: Vec<[&str; 5]> = rows.iter().map(|r| r.each_ref().map(String::as_str)).collect();
                    print_table(["DOMAIN", "NAME", "ACTIVE", "TOTAL SLOTS", "DESCRIPTION"], &rows);
                })
            }
            GroupCommand::Create { name, domain, description, quota } => {
                let spec =
                    GroupSpec { name, domain, description, is_active: true, total_resource_slots: quota.slots()? };
                print_answer(json, &client.create_group(&spec).await?, |g| {
                    outln!("created group {} in domain {}", g.name, g.domain)
                });
            }
            GroupCommand::SetQuota { name, domain, quota } => {
                let g = client.group(&domain, &name).await?;
                let spec = GroupSpec {
                    name: g.name,
                    domain: g.domain,
                    description: g.description,
                    is_active: g.is_active,
                    total_resource_slots: quota.slots()?,
                };
                print_answer(json, &client.put_group(&domain, &name, &spec).await?, |g| {
                    outln!(
                        "group {} in domain {}: total resource slots {}",
                        g.name,
                        g.domain,
                        quota_text(&g.total_resource_slots)
                    )
                });
            }
            GroupCommand::Delete { name, domain } => {
                print_answer(json, &client.delete_group(&domain, &name).await?, |g| {
                    outln!("deleted group {} in domain {}", g.name, g.domain)
                });
            }
        },
        AdminCommand::User(cmd) => match cmd {
            UserCommand::List { domain } => print_answer(json, &client.list_users(domain.as_deref()).await?, |list| {
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
                let rows: Vec<[&str; 6]> = rows.iter().map(|r| r.each_ref().map(String::as_str)).collect();
                print_table(["EMAIL", "USERNAME", "DOMAIN", "ROLE", "ACTIVE", "GROUPS"], &rows);
            }),
            UserCommand::Create { email, username, domain, role, groups } => {
                let spec = UserSpec { email, username, domain, role, is_active: true, groups };
                print_answer(json, &client.create_user(&spec).await?, |u| outln!("created user {}", u.email));
            }
            UserCommand::Delete { email } => {
                print_answer(json, &client.delete_user(&email).await?, |u| outln!("deleted user {}", u.email));
            }
        },
        AdminCommand::Policy(cmd) => match cmd {
            PolicyCommand::List => print_answer(json, &client.list_resource_policies().await?, |list| {
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
                let rows: Vec<[&str; 6]> = rows.iter().map(|r| r.each_ref().map(String::as_str)).collect();
                print_table(["NAME", "SLOTS", "SESSIONS", "KERNELS", "IDLE TIMEOUT", "LIFETIME"], &rows);
            }),
            PolicyCommand::Create {
                name,
                cpu,
                mem,
                max_concurrent_sessions,
                max_containers_per_session,
                max_pending_session_count,
                idle_timeout,
                max_session_lifetime,
                allowed_vfolder_hosts,
                max_vfolder_count,
                max_quota_scope_size,
            } => {
                let amounts = [("cpu", &cpu), ("mem", &mem)];
                let pairs = amounts.iter().filter_map(|(slot, v)| v.as_deref().map(|v| (*slot, v)));
                let spec = ResourcePolicySpec {
                    name,
                    total_resource_slots: ResourceSlots::from_pairs(pairs)?,
                    max_concurrent_sessions,
                    max_containers_per_session,
                    max_pending_session_count,
                    idle_timeout,
                    max_session_lifetime,
                    allowed_vfolder_hosts,
                    max_vfolder_count,
                    max_quota_scope_size,
                };
                print_answer(json, &client.create_resource_policy(&spec).await?, |p| {
                    outln!("created resource policy {}", p.name)
                });
            }
            PolicyCommand::Delete { name } => {
                print_answer(json, &client.delete_resource_policy(&name).await?, |p| {
                    outln!("deleted resource policy {}", p.name)
                });
            }
        },
        AdminCommand::ScalingGroup(cmd) => match cmd {
            ScalingGroupCommand::List => print_answer(json, &client.list_scaling_groups().await?, |list| {
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
                print_answer(json, &client.create_scaling_group(&spec).await?, |g| {
                    outln!("created scaling group {}", g.name)
                });
            }
            ScalingGroupCommand::Delete { name } => {
                print_answer(json, &client.delete_scaling_group(&name).await?, |g| {
                    outln!("deleted scaling group {}", g.name)
                });
            }
        },
        AdminCommand::Keypair(cmd) => match cmd {
            KeypairCommand::List => {
                print_answer(json, &client.list_keypairs().await?, |list| keypair_rows(&list.keypairs));
            }
            KeypairCommand::Create { user, role, rate_limit, policy } => {
                let spec = KeyPairSpec { user_id: user, role, rate_limit, resource_policy: policy };
                print_answer(json, &client.create_keypair(&spec).await?, |k| {
                    outln!("access_key: {}\nsecret_key: {}\nrole: {}", k.access_key, k.secret_key, k.role)
                });
            }
            KeypairCommand::Delete { access_key } => {
                print_answer(json, &client.revoke_keypair(&access_key).await?, |k| outln!("revoked {}", k.access_key));
            }
        },
    }
    Ok(())
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
}
