//! [`SessionStore`]: sessions and their kernels, from insertion through allocation to their end, and the
//! occupancy the scheduler reads every pass.

use crate::error::Result;
use crate::ids::{AccessKey, AgentId, KernelId, SessionId};
use crate::model::{KernelRecord, SessionRecord, SessionResult};
use crate::slots::ResourceSlots;
use crate::status::{KernelStatus, SessionStatus};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Where one kernel goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The kernel.
    pub kernel_id: KernelId,
    /// The agent chosen for it.
    pub agent_id: AgentId,
}

/// One session's placements, for [`SessionStore::allocate_batch`].
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
/// [`SessionStore::occupancy_by_group_and_domain`]): the sum of their requested slots. Groups and domains holding
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

store_trait! {
    /// Sessions and kernels.
    ///
    /// Invariant kept by every implementation: an agent's `occupied_slots` equal the sum of the `occupied_slots` of
    /// its kernels, which are non-empty exactly while the kernel's status holds resources, and never exceed its
    /// `available_slots` through [`SessionStore::allocate`].
    pub trait SessionStore {
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
        /// How many sessions [`SessionStore::list_sessions`] would list for the filter (its owner and statuses, capped
        /// at its limit), counted by the store without loading them.
        async fn count_sessions(&self, filter: &SessionFilter) -> Result<usize>;
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
        /// every pass, like [`SessionStore::occupancy`]: a store should answer without loading whole session records.)
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
        /// one as [`SessionStore::allocate`] would, seeing the slots the ones before it took. Answers one result per
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

        /// Changes several kernels in one transaction, in the order given, each as [`SessionStore::update_kernel`]
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
    }
}
