//! The metadata store: durable records of domains, groups, users, keypairs, resource policies, scaling groups,
//! agents, sessions and kernels.
//!
//! Implementations: [`sqlite::SqliteStore`] (embedded, feature `sqlite`) and `postgres::PostgresStore` (clusters,
//! feature `postgres`). Every implementation must pass [`crate::conformance::metadata_store`].

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod changes;
pub mod faults;
pub mod fixtures;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use crate::error::Result;
use crate::ids::{AccessKey, AgentId, KernelId, SessionId};
use crate::ids::{InvitationId, VFolderId};
use crate::model::{
    AgentHeartbeat, AgentInfo, AgentStatus, Domain, Group, KernelRecord, KeyPair, KeyPairResourcePolicy, ScalingGroup,
    SessionRecord, SessionResult, User,
};
use crate::slots::ResourceSlots;
use crate::status::{KernelStatus, SessionStatus};
use crate::vfolder::{InvitationState, VFolder, VFolderAccess, VFolderInvitation, VFolderPermission};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// The order folders list in: by owner (users by e-mail, then groups by domain and name), then by name.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn folder_order(f: &VFolder) -> (u8, &str, &str, &str) {
    use crate::vfolder::VFolderOwner;
    match &f.owner {
        VFolderOwner::User { email } => (0, email, "", &f.name),
        VFolderOwner::Group { domain, name } => (1, domain, name, &f.name),
    }
}

/// Sorts folders by owner, then name (see [`MetadataStore::list_vfolders`]).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn sort_folders(folders: &mut [VFolder]) {
    folders.sort_by(|a, b| folder_order(a).cmp(&folder_order(b)));
}

/// What one user may do with which folders, gathered from ownership, groups and shares; a folder reached several
/// ways keeps the highest permission (see [`MetadataStore::accessible_vfolders`]).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[derive(Debug, Default)]
struct AccessSet(std::collections::BTreeMap<VFolderId, (VFolderPermission, bool)>);

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl AccessSet {
    fn grant(&mut self, id: VFolderId, permission: VFolderPermission, is_owner: bool) {
        let entry = self.0.entry(id).or_insert((permission, is_owner));
        entry.0 = entry.0.max(permission);
        entry.1 |= is_owner;
    }

    fn ids(&self) -> Vec<VFolderId> {
        self.0.keys().copied().collect()
    }

    /// The accesses to `folders` (the ones of [`AccessSet::ids`]), by name, then owner.
    fn resolve(self, folders: Vec<VFolder>) -> Vec<VFolderAccess> {
        let mut out: Vec<VFolderAccess> = folders
            .into_iter()
            .filter_map(|folder| {
                let (permission, is_owner) = *self.0.get(&folder.id)?;
                Some(VFolderAccess { folder, permission, is_owner })
            })
            .collect();
        out.sort_by(|a, b| {
            let (ka, kb) = (folder_order(&a.folder), folder_order(&b.folder));
            (ka.3, ka).cmp(&(kb.3, kb))
        });
        out
    }
}

/// Where one kernel goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The kernel.
    pub kernel_id: KernelId,
    /// The agent chosen for it.
    pub agent_id: AgentId,
}

/// One session's placements, for [`MetadataStore::allocate_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The PENDING session.
    pub session: SessionId,
    /// Where each of its kernels goes.
    pub placements: Vec<Placement>,
}

/// A session as its allocation left it: SCHEDULED, with its kernels (main first) placed.
pub type Allocated = (SessionRecord, Vec<KernelRecord>);

/// A change to one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelChange {
    /// The status to enter.
    pub status: KernelStatus,
    /// Why (kept unless `None`).
    pub status_info: Option<String>,
    /// The runtime's handle, once known (kept unless `None`).
    pub container_id: Option<String>,
    /// The exit code, once known (kept unless `None`).
    pub exit_code: Option<i32>,
}

impl KernelChange {
    /// A status change with a reason and nothing else.
    pub fn status(status: KernelStatus, info: impl Into<Option<String>>) -> Self {
        Self { status, status_info: info.into(), container_id: None, exit_code: None }
    }
}

/// What a kernel change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelTransition {
    /// The kernel after the change.
    pub kernel: KernelRecord,
    /// The session's status change it caused, if any: `(from, to)`.
    pub session: Option<(SessionStatus, SessionStatus)>,
}

/// A change to a whole session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionChange {
    /// The status to enter.
    pub status: SessionStatus,
    /// Why (kept unless `None`).
    pub status_info: Option<String>,
    /// The result, when decided.
    pub result: Option<SessionResult>,
}

/// Which sessions to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Only this owner's.
    pub access_key: Option<AccessKey>,
    /// Only in these statuses (all when `None`).
    pub statuses: Option<Vec<SessionStatus>>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

/// What the sessions holding resources occupy per group and per domain (see
/// [`MetadataStore::occupancy_by_group_and_domain`]): the sum of their requested slots. Groups and domains holding
/// nothing are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeOccupancy {
    /// Per group, keyed by `(domain, group)`.
    pub groups: BTreeMap<(String, String), ResourceSlots>,
    /// Per domain.
    pub domains: BTreeMap<String, ResourceSlots>,
}

impl ScopeOccupancy {
    /// Adds one session's requested slots to its group and its domain.
    pub fn add(&mut self, domain: &str, group: &str, slots: &ResourceSlots) {
        let g = self.groups.entry((domain.to_owned(), group.to_owned())).or_default();
        *g = std::mem::take(g) + slots.clone();
        let d = self.domains.entry(domain.to_owned()).or_default();
        *d = std::mem::take(d) + slots.clone();
    }
}

/// Durable metadata. Every method is atomic: it either does all it says or nothing.
///
/// Invariant kept by every implementation: an agent's `occupied_slots` equal the sum of the `occupied_slots` of its
/// kernels, which are non-empty exactly while the kernel's status holds resources, and never exceed its
/// `available_slots` through [`MetadataStore::allocate`].
#[async_trait]
pub trait MetadataStore: Send + Sync {
    /// Adds a keypair. `AlreadyExists` when the access key is taken.
    async fn insert_keypair(&self, keypair: &KeyPair) -> Result<()>;
    /// A keypair by access key.
    async fn keypair(&self, access_key: &AccessKey) -> Result<Option<KeyPair>>;
    /// Every keypair, oldest first.
    async fn list_keypairs(&self) -> Result<Vec<KeyPair>>;
    /// Activates or revokes a keypair. `NotFound` when unknown.
    async fn set_keypair_active(&self, access_key: &AccessKey, active: bool) -> Result<()>;

    /// Creates or replaces a domain (a replaced one keeps its `created_at`).
    async fn put_domain(&self, domain: &Domain) -> Result<()>;
    /// A domain by name.
    async fn domain(&self, name: &str) -> Result<Option<Domain>>;
    /// Every domain, by name.
    async fn list_domains(&self) -> Result<Vec<Domain>>;
    /// Deletes a domain. `NotFound` when unknown, `Conflict` while it has groups or users.
    async fn delete_domain(&self, name: &str) -> Result<()>;

    /// Creates or replaces a group, keyed by domain and name (a replaced one keeps its `created_at`). `NotFound`
    /// when the domain is unknown.
    async fn put_group(&self, group: &Group) -> Result<()>;
    /// A group by domain and name.
    async fn group(&self, domain: &str, name: &str) -> Result<Option<Group>>;
    /// The groups of one domain, or of all, by domain then name.
    async fn list_groups(&self, domain: Option<&str>) -> Result<Vec<Group>>;
    /// Deletes a group. `NotFound` when unknown, `Conflict` while users belong to it or it owns virtual folders.
    async fn delete_group(&self, domain: &str, name: &str) -> Result<()>;

    /// Creates or replaces a user, keyed by e-mail, with its group memberships (a replaced one keeps its
    /// `created_at`). `NotFound` when the domain or one of the groups (in that domain) is unknown,
    /// `AlreadyExists` when another user has the username.
    async fn put_user(&self, user: &User) -> Result<()>;
    /// A user by e-mail.
    async fn user(&self, email: &str) -> Result<Option<User>>;
    /// The users of one domain, or of all, by e-mail.
    async fn list_users(&self, domain: Option<&str>) -> Result<Vec<User>>;
    /// Deletes a user with its memberships and the shares it received. `NotFound` when unknown, `Conflict` while
    /// keypairs name it in `user_id` or it owns virtual folders (their files would be left without a record).
    async fn delete_user(&self, email: &str) -> Result<()>;

    /// Creates or replaces a keypair resource policy (a replaced one keeps its `created_at`).
    async fn put_resource_policy(&self, policy: &KeyPairResourcePolicy) -> Result<()>;
    /// A keypair resource policy by name.
    async fn resource_policy(&self, name: &str) -> Result<Option<KeyPairResourcePolicy>>;
    /// Every keypair resource policy, by name.
    async fn list_resource_policies(&self) -> Result<Vec<KeyPairResourcePolicy>>;
    /// Deletes a keypair resource policy. `NotFound` when unknown, `Conflict` while keypairs name it in
    /// `resource_policy`.
    async fn delete_resource_policy(&self, name: &str) -> Result<()>;

    /// Creates or replaces a scaling group (a replaced one keeps its `created_at`).
    async fn put_scaling_group(&self, group: &ScalingGroup) -> Result<()>;
    /// A scaling group by name.
    async fn scaling_group(&self, name: &str) -> Result<Option<ScalingGroup>>;
    /// Every scaling group, by name.
    async fn list_scaling_groups(&self) -> Result<Vec<ScalingGroup>>;
    /// Deletes a scaling group. `NotFound` when unknown, `Conflict` while agents serve it.
    async fn delete_scaling_group(&self, name: &str) -> Result<()>;

    /// Records a heartbeat: a new agent is inserted ALIVE with `first_contact = now` and nothing occupied; a known one
    /// becomes ALIVE with the heartbeat's address, capacity and images, keeping its occupied slots and first contact.
    async fn upsert_agent(&self, heartbeat: &AgentHeartbeat, now: DateTime<Utc>) -> Result<AgentInfo>;
    /// An agent by id.
    async fn agent(&self, id: &AgentId) -> Result<Option<AgentInfo>>;
    /// Every agent, by id.
    async fn list_agents(&self) -> Result<Vec<AgentInfo>>;
    /// Sets an agent's status; LOST also sets `lost_at = now`. `NotFound` when unknown.
    async fn set_agent_status(&self, id: &AgentId, status: AgentStatus, now: DateTime<Utc>) -> Result<()>;

    /// Adds a session and its kernels. `AlreadyExists` when the owner has a session of that name that is not
    /// final.
    async fn insert_session(&self, session: &SessionRecord, kernels: &[KernelRecord]) -> Result<()>;
    /// Renames a session that is not final. `AlreadyExists` when the owner has another live session of that name,
    /// `Conflict` for a final session, `SessionNotFound` for an unknown one.
    async fn rename_session(&self, id: SessionId, name: &str) -> Result<()>;
    /// A session by id.
    async fn session(&self, id: SessionId) -> Result<Option<SessionRecord>>;
    /// The owner's session by full id, or else by name (the newest that is not final, or else the newest).
    async fn find_session(&self, owner: &AccessKey, name_or_id: &str) -> Result<Option<SessionRecord>>;
    /// Sessions matching the filter, newest first.
    async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionRecord>>;
    /// What each of `owners` holds: how many of its sessions are in a status that holds resources, and the sum of
    /// their requested slots. Owners holding nothing are left out. (The scheduler reads this every pass: a store
    /// should answer without loading whole session records.)
    async fn occupancy(&self, owners: &[AccessKey]) -> Result<BTreeMap<AccessKey, (u32, ResourceSlots)>> {
        let holding = SessionStatus::ALL.iter().copied().filter(|s| s.holds_resources()).collect();
        let filter = SessionFilter { statuses: Some(holding), ..SessionFilter::default() };
        let mut out: BTreeMap<AccessKey, (u32, ResourceSlots)> = BTreeMap::new();
        for s in self.list_sessions(&filter).await?.into_iter().filter(|s| owners.contains(&s.access_key)) {
            let entry = out.entry(s.access_key).or_default();
            entry.0 += 1;
            entry.1 = std::mem::take(&mut entry.1) + s.requested_slots;
        }
        Ok(out)
    }
    /// What the sessions of `domains` whose status holds resources occupy, summed per domain and per group of those
    /// domains (the group and domain quotas the scheduler enforces). Sessions of other domains are left out. (Read
    /// every pass, like [`MetadataStore::occupancy`]: a store should answer without loading whole session records.)
    async fn occupancy_by_group_and_domain(&self, domains: &[String]) -> Result<ScopeOccupancy> {
        let holding = SessionStatus::ALL.iter().copied().filter(|s| s.holds_resources()).collect();
        let filter = SessionFilter { statuses: Some(holding), ..SessionFilter::default() };
        let mut out = ScopeOccupancy::default();
        for s in self.list_sessions(&filter).await?.into_iter().filter(|s| domains.contains(&s.domain)) {
            out.add(&s.domain, &s.group, &s.requested_slots);
        }
        Ok(out)
    }
    /// PENDING sessions with their kernels, oldest first.
    async fn pending_sessions(&self) -> Result<Vec<(SessionRecord, Vec<KernelRecord>)>>;
    /// A session's kernels: the main kernel first, then by role and index.
    async fn kernels(&self, session: SessionId) -> Result<Vec<KernelRecord>>;
    /// A kernel by id.
    async fn kernel(&self, id: KernelId) -> Result<Option<KernelRecord>>;
    /// Kernels placed on an agent whose status holds resources.
    async fn kernels_on_agent(&self, agent: &AgentId) -> Result<Vec<KernelRecord>>;

    /// Places a PENDING session's kernels, in one transaction: every kernel of the session must be placed, each
    /// agent must be ALIVE and schedulable, and each agent's occupied slots plus the slots of the kernels placed on
    /// it must fit its capacity. Then the kernels record their agent and occupy their requested slots, the agents'
    /// occupied slots grow by the same amounts, and session and kernels become SCHEDULED. `Conflict` when the
    /// session is no longer PENDING, `QuotaExceeded` when an agent lacks room, `AgentNotFound` for an unknown or
    /// unavailable agent, `InvalidParams` when the placements do not cover exactly the session's kernels,
    /// `SessionNotFound` for an unknown session; nothing changes on any error.
    async fn allocate(&self, session: SessionId, placements: &[Placement], now: DateTime<Utc>) -> Result<()> {
        let batch = [Allocation { session, placements: placements.to_vec() }];
        let mut answers = self.allocate_batch(&batch, now).await?;
        answers.pop().unwrap_or_else(|| Err(crate::Error::internal("allocate_batch answered nothing"))).map(drop)
    }

    /// Allocates several sessions in one transaction, in the order given (a scheduling pass's placements): each
    /// one as [`MetadataStore::allocate`] would, seeing the slots the ones before it took. Answers one result per
    /// allocation, in order: the session and kernels as allocated, or the error `allocate` would give, in which case
    /// that session changed nothing and the others are unaffected. `Err` only when the store itself fails, and then
    /// nothing changed at all.
    async fn allocate_batch(&self, batch: &[Allocation], now: DateTime<Utc>) -> Result<Vec<Result<Allocated>>>;

    /// Changes one kernel. The move must be in the transition table (`Conflict` otherwise, nothing written); moving
    /// to the status it already has only updates the other fields. A kernel entering a dead status (TERMINATED,
    /// CANCELLED, ERROR) gives its occupied slots back to its agent. The session's status is then derived from all
    /// its kernels ([`SessionStatus::derive`]) and changed when it differs and the table allows it; the kernel's
    /// `status_info` is copied to the session with it. Final statuses set `terminated_at`. `KernelNotFound` for an
    /// unknown kernel.
    async fn update_kernel(&self, id: KernelId, change: KernelChange, now: DateTime<Utc>) -> Result<KernelTransition> {
        let mut answers = self.update_kernels(&[(id, change)], now).await?;
        answers.pop().unwrap_or_else(|| Err(crate::Error::internal("update_kernels answered nothing")))
    }

    /// Changes several kernels in one transaction, in the order given, each as [`MetadataStore::update_kernel`]
    /// would (a session's status is derived after each of its kernels' changes). Answers one result per change, in
    /// order: a refused change (unknown kernel, a move the table forbids) changed nothing, and the others are
    /// unaffected. `Err` only when the store itself fails, and then nothing changed at all.
    async fn update_kernels(
        &self,
        changes: &[(KernelId, KernelChange)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<KernelTransition>>>;

    /// Moves a whole session, and each of its kernels that is not dead and may make the move, to a status (used to
    /// cancel or fail sessions that have no running kernels, and to record a batch result). Returns `(from, to)`
    /// when the session's status changed. `Conflict` when the table forbids the session's move.
    async fn update_session(
        &self,
        id: SessionId,
        change: SessionChange,
        now: DateTime<Utc>,
    ) -> Result<Option<(SessionStatus, SessionStatus)>>;

    /// Adds a folder. `AlreadyExists` when its owner has a folder of that name, `NotFound` when the owning user or
    /// group is unknown.
    async fn insert_vfolder(&self, folder: &VFolder) -> Result<()>;
    /// A folder by id.
    async fn vfolder(&self, id: VFolderId) -> Result<Option<VFolder>>;
    /// Every folder, by owner then name (for admins).
    async fn list_vfolders(&self) -> Result<Vec<VFolder>>;
    /// The folders a user may use, each with the user's permission, by name: the user's own (`wd`), those of the
    /// groups the user belongs to (the folder's `permission`), and those shared with the user (the shared
    /// permission). A folder reachable several ways appears once, with the highest permission. An unknown user has none.
    async fn accessible_vfolders(&self, email: &str) -> Result<Vec<VFolderAccess>>;
    /// Renames a folder. `AlreadyExists` when its owner has another folder of that name, `NotFound` when unknown.
    async fn rename_vfolder(&self, id: VFolderId, name: &str) -> Result<()>;
    /// Changes a folder's group permission and cloneable flag. `NotFound` when unknown.
    async fn update_vfolder_options(&self, id: VFolderId, permission: VFolderPermission, cloneable: bool)
        -> Result<()>;
    /// Deletes a folder's record with its shares and invitations. `NotFound` when unknown.
    async fn delete_vfolder(&self, id: VFolderId) -> Result<()>;
    /// Shares a folder with a user (`Some`), changing an existing share, or removes the share (`None`; removing
    /// one that does not exist is not an error). `NotFound` when the folder or the user is unknown.
    async fn set_vfolder_share(&self, id: VFolderId, email: &str, permission: Option<VFolderPermission>) -> Result<()>;
    /// The users a folder is shared with and their permissions, by e-mail.
    async fn vfolder_shares(&self, id: VFolderId) -> Result<Vec<(String, VFolderPermission)>>;
    /// Adds an invitation. `AlreadyExists` when the invitee has a pending invitation to the folder, `NotFound` when
    /// the folder is unknown. The invitee needs a user record only to accept.
    async fn insert_vfolder_invitation(&self, invitation: &VFolderInvitation) -> Result<()>;
    /// An invitation by id.
    async fn vfolder_invitation(&self, id: InvitationId) -> Result<Option<VFolderInvitation>>;
    /// The pending invitations sent to a user, oldest first.
    async fn pending_vfolder_invitations(&self, invitee: &str) -> Result<Vec<VFolderInvitation>>;
    /// Moves a pending invitation to `state`; `Accepted` also shares the folder with the invitee at the invitation's
    /// permission, in the same transaction. `NotFound` when unknown (or when accepting for an invitee without a user
    /// record), `Conflict` when it is no longer pending, `InvalidParams` when `state` is `Pending`.
    async fn answer_vfolder_invitation(
        &self,
        id: InvitationId,
        state: InvitationState,
        now: DateTime<Utc>,
    ) -> Result<VFolderInvitation>;
}
