//! Records kept by the metadata store: domains, groups, users, keypairs, resource policies, scaling groups, agents,
//! sessions and kernels.

use crate::ids::{AccessKey, AgentId, KernelId, SessionId};
use crate::slots::ResourceSlots;
use crate::status::{KernelStatus, SessionStatus, StatusHistory};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A keypair's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees only its own sessions.
    User,
    /// May act for other keypairs of its domain (`owner_access_key`).
    Admin,
    /// May do anything.
    Superadmin,
}

impl Role {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::Superadmin => "superadmin",
        }
    }

    /// Admins and superadmins.
    pub fn is_admin(self) -> bool {
        self >= Role::Admin
    }
}

impl FromStr for Role {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            "superadmin" => Ok(Role::Superadmin),
            other => Err(crate::Error::InvalidParams { msg: format!("unknown role {other:?}") }),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A keypair: the credential that signs API requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPair {
    /// Public half.
    pub access_key: AccessKey,
    /// Secret half (never sent back by list APIs).
    pub secret_key: String,
    /// The owning user (an e-mail or name).
    pub user_id: String,
    /// Role of the keypair.
    pub role: Role,
    /// Revoked keypairs stay for the record but cannot sign.
    pub is_active: bool,
    /// Requests allowed per 15-minute window.
    pub rate_limit: u32,
    /// The keypair resource policy's name.
    pub resource_policy: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// An agent's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AgentStatus {
    /// Heartbeats arrive.
    Alive,
    /// Heartbeats stopped.
    Lost,
    /// Shut down cleanly.
    Terminated,
}

impl AgentStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Alive => "ALIVE",
            AgentStatus::Lost => "LOST",
            AgentStatus::Terminated => "TERMINATED",
        }
    }
}

impl FromStr for AgentStatus {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ALIVE" => Ok(AgentStatus::Alive),
            "LOST" => Ok(AgentStatus::Lost),
            "TERMINATED" => Ok(AgentStatus::Terminated),
            other => Err(crate::Error::InvalidParams { msg: format!("unknown agent status {other:?}") }),
        }
    }
}

/// An image an agent can run, with its minimum resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Canonical name, `python:3.11`.
    pub name: String,
    /// Other names that resolve to this image (`python`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Runtime language the kernel runner hosts (`python`, `shell`).
    pub lang: String,
    /// The least a kernel of this image needs.
    #[serde(default)]
    pub min_slots: ResourceSlots,
}

impl ImageInfo {
    /// True when `reference` names this image (its name or an alias).
    pub fn answers_to(&self, reference: &str) -> bool {
        self.name == reference || self.aliases.iter().any(|a| a == reference)
    }
}

/// What an agent announces in each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHeartbeat {
    /// The agent.
    pub id: AgentId,
    /// Base URL of its RPC API (`http://10.0.0.5:6001`).
    pub addr: String,
    /// Scaling group it serves.
    pub scaling_group: String,
    /// CPU architecture (`x86_64`, `aarch64`).
    pub architecture: String,
    /// Total capacity.
    pub available_slots: ResourceSlots,
    /// Images it can run.
    pub images: Vec<ImageInfo>,
    /// The runtime's name (`process`, `docker`).
    pub runtime: String,
    /// Agent software version.
    pub version: String,
}

/// An agent as the manager knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// The agent.
    pub id: AgentId,
    /// ALIVE, LOST or TERMINATED.
    pub status: AgentStatus,
    /// Base URL of its RPC API.
    pub addr: String,
    /// Scaling group.
    pub scaling_group: String,
    /// CPU architecture.
    pub architecture: String,
    /// Total capacity.
    pub available_slots: ResourceSlots,
    /// Sum of the slots of the kernels placed on it that still hold resources.
    pub occupied_slots: ResourceSlots,
    /// Images it can run.
    pub images: Vec<ImageInfo>,
    /// Whether new sessions may be placed on it.
    pub schedulable: bool,
    /// Runtime name.
    pub runtime: String,
    /// When it first appeared.
    pub first_contact: DateTime<Utc>,
    /// When it was last marked lost.
    pub lost_at: Option<DateTime<Utc>>,
}

/// Interactive or batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SessionType {
    /// Runs until destroyed; code is executed on demand.
    #[default]
    Interactive,
    /// Runs its startup command and ends.
    Batch,
}

impl SessionType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionType::Interactive => "interactive",
            SessionType::Batch => "batch",
        }
    }
}

impl FromStr for SessionType {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "interactive" => Ok(SessionType::Interactive),
            "batch" => Ok(SessionType::Batch),
            other => Err(crate::Error::InvalidParams { msg: format!("unknown session type {other:?}") }),
        }
    }
}

/// Success or failure of a session (batch sessions get one from their exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionResult {
    /// Not decided (interactive sessions, or still running).
    #[default]
    Undefined,
    /// Ended well.
    Success,
    /// Ended badly.
    Failure,
}

impl SessionResult {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionResult::Undefined => "UNDEFINED",
            SessionResult::Success => "SUCCESS",
            SessionResult::Failure => "FAILURE",
        }
    }
}

impl FromStr for SessionResult {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "UNDEFINED" => Ok(SessionResult::Undefined),
            "SUCCESS" => Ok(SessionResult::Success),
            "FAILURE" => Ok(SessionResult::Failure),
            other => Err(crate::Error::InvalidParams { msg: format!("unknown session result {other:?}") }),
        }
    }
}

/// A compute session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Its id.
    pub id: SessionId,
    /// Its name, unique among the owner's sessions that are not final.
    pub name: String,
    /// The owning keypair.
    pub access_key: AccessKey,
    /// Domain name.
    pub domain: String,
    /// Group (project) name.
    pub group: String,
    /// Interactive or batch.
    pub session_type: SessionType,
    /// The image reference as resolved (`python:3.11`).
    pub image: String,
    /// Number of kernels.
    pub cluster_size: u32,
    /// Current status.
    pub status: SessionStatus,
    /// Why it is in that status (`user-requested`, `agent-lost`, `kernel-crashed`, a scheduler message, ...).
    pub status_info: Option<String>,
    /// Every status entered, with its time.
    pub status_history: StatusHistory,
    /// Slots asked for, summed over kernels.
    pub requested_slots: ResourceSlots,
    /// Environment given to every kernel.
    pub environ: BTreeMap<String, String>,
    /// Free-form user tag.
    pub tag: Option<String>,
    /// Scaling group asked for.
    pub scaling_group: String,
    /// Scheduling priority (higher first).
    pub priority: i32,
    /// Batch sessions: the command run at start.
    pub startup_command: Option<String>,
    /// Success/failure.
    pub result: SessionResult,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it became final.
    pub terminated_at: Option<DateTime<Utc>>,
    /// Not placed before this time (`starts_at` at create).
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    /// Sessions that must end successfully before this one is placed; if one fails, this one is cancelled.
    #[serde(default)]
    pub dependencies: Vec<SessionId>,
    /// The agents it may be placed on, as an admin named them (`agent_list` at create); empty: any.
    #[serde(default)]
    pub designated_agents: Vec<AgentId>,
    /// CPU architecture asked for (`x86_64`, `aarch64`); `None`: any.
    #[serde(default)]
    pub architecture: Option<String>,
    /// A shell script every kernel runs once, in `/home/work`, before it takes code.
    #[serde(default)]
    pub bootstrap_script: Option<String>,
    /// Batch sessions: how long the startup command may run, in seconds (`batch_timeout` at create); past it the
    /// session fails with `batch-timeout`. `None`: no limit.
    #[serde(default)]
    pub batch_timeout: Option<u64>,
    /// The shared memory (`/dev/shm`) size every kernel gets, in bytes (`config.resource_opts.shmem`); `None`: the
    /// runtime's default.
    #[serde(default)]
    pub shmem: Option<u64>,
    /// Virtual folders mounted into every kernel, resolved at create time.
    #[serde(default)]
    pub vfolder_mounts: Vec<crate::vfolder::VFolderMount>,
}

/// One kernel of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelRecord {
    /// Its id.
    pub id: KernelId,
    /// The session it belongs to.
    pub session_id: SessionId,
    /// The owning keypair (same as the session's).
    pub access_key: AccessKey,
    /// `main` or `sub`.
    pub cluster_role: String,
    /// 1-based index within the role.
    pub cluster_idx: u32,
    /// Host name inside the cluster (`main1`, `sub1`).
    pub cluster_hostname: String,
    /// Image reference.
    pub image: String,
    /// Where it is placed (once SCHEDULED).
    pub agent_id: Option<AgentId>,
    /// That agent's RPC address.
    pub agent_addr: Option<String>,
    /// The runtime's handle for it (container id, process id).
    pub container_id: Option<String>,
    /// Current status.
    pub status: KernelStatus,
    /// Why it is in that status.
    pub status_info: Option<String>,
    /// Every status entered, with its time.
    pub status_history: StatusHistory,
    /// Slots asked for.
    pub requested_slots: ResourceSlots,
    /// Slots it holds on its agent (equal to `requested_slots` from SCHEDULED until it is dead, else empty).
    pub occupied_slots: ResourceSlots,
    /// Exit code of its main process, once known.
    pub exit_code: Option<i32>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it became final.
    pub terminated_at: Option<DateTime<Utc>>,
}

impl KernelRecord {
    /// The main kernel (execution goes to it).
    pub fn is_main(&self) -> bool {
        self.cluster_role == "main"
    }
}

/// A domain: the outermost unit of administration, holding groups and users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    /// Its name (the key).
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Inactive domains are kept for the record.
    pub is_active: bool,
    /// The most the sessions of the domain's groups may occupy together; a slot the map leaves out is unlimited
    /// (empty: unlimited).
    #[serde(default)]
    pub total_resource_slots: ResourceSlots,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A group, which Backend.AI also calls a project; its name is unique within its domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// The domain it belongs to.
    pub domain: String,
    /// Free text.
    pub description: Option<String>,
    /// Inactive groups are kept for the record.
    pub is_active: bool,
    /// The most the group's sessions may occupy together; a slot the map leaves out is unlimited (empty:
    /// unlimited).
    #[serde(default)]
    pub total_resource_slots: ResourceSlots,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A user, identified by e-mail; keypairs name it in `user_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// E-mail address (the key).
    pub email: String,
    /// Login name, unique among users.
    pub username: String,
    /// The domain it belongs to.
    pub domain: String,
    /// Its role.
    pub role: Role,
    /// Inactive users are kept for the record.
    pub is_active: bool,
    /// Names of the groups of its domain it belongs to, sorted.
    pub groups: Vec<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// Limits that apply to every keypair naming the policy in `resource_policy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPairResourcePolicy {
    /// Its name (the key).
    pub name: String,
    /// The most a keypair's sessions may occupy together (empty: unlimited).
    pub total_resource_slots: ResourceSlots,
    /// Sessions a keypair may run at once.
    pub max_concurrent_sessions: u32,
    /// Kernels per session.
    pub max_containers_per_session: u32,
    /// Sessions a keypair may have waiting (`None`: unlimited).
    pub max_pending_session_count: Option<u32>,
    /// Seconds of inactivity before a session is reclaimed (0: never).
    pub idle_timeout: u64,
    /// Seconds a session may live (0: forever).
    pub max_session_lifetime: u64,
    /// Storage hosts whose folders the keypair may use.
    pub allowed_vfolder_hosts: Vec<String>,
    /// Virtual folders a user may own (0: unlimited).
    #[serde(default)]
    pub max_vfolder_count: u32,
    /// Bytes the folders of one quota scope (a user's, or a group's) may hold together (`None`: unlimited).
    #[serde(default)]
    pub max_quota_scope_size: Option<u64>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A scaling group: a pool of agents that sessions ask for by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalingGroup {
    /// Its name (the key).
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Inactive scaling groups take no new sessions.
    pub is_active: bool,
    /// The scheduler's name (`fifo`).
    pub scheduler: String,
    /// The agent selector's name (`concentrated`, `dispersed`, `roundrobin`); `None`: the manager's default.
    #[serde(default)]
    pub agent_selector: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}
