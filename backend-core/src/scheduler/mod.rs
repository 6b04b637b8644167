//! Scheduling policies as pure functions over a snapshot: a [`Sequencer`] orders pending sessions, an
//! [`AgentSelector`] chooses agents for each, and [`plan`] places as many sessions as fit without letting one that
//! does not fit block the others.
//!
//! # One pass
//!
//! [`plan`] takes a [`PlanInput`] (pending sessions, agents, what each owner, group and domain already occupies
//! and its limits, and the time) and answers a [`Plan`]: the sessions placed, in placement order, and for every session left pending a
//! [`Blocked`] reason meant for its `status_info`.
//!
//! 1. Agents are filtered: ALIVE, schedulable, same scaling group, the session's architecture (when it names one),
//!    the image present on the agent, and the designated agent (when the session names one).
//! 2. Sessions are taken by **priority first** (higher first). Within one priority level the sequencer decides:
//!    [`Fifo`] (oldest first), [`Lifo`] (newest first) or [`Drf`] (the owner with the lowest dominant share of the
//!    scaling group's capacity first, re-evaluated after every placement).
//! 3. Owner predicates are checked per session: the keypair's concurrent-session limit and its total resource
//!    slots ([`OwnerLimits`]), then the `total_resource_slots` of the session's group and of its domain
//!    ([`PlanInput::scopes`]), counting the sessions placed earlier in the pass. A session that fails one is left
//!    pending with that reason.
//! 4. A session that does not fit now is **skipped, not waited for**: the sessions behind it are still tried
//!    (no head-of-line blocking, Backend.AI issue #2155).
//!
//! # Priority and aging: reservations
//!
//! Skipping alone lets small sessions overtake a large one forever, and lets a low-priority session take capacity
//! that a higher-priority one is waiting for. Both are solved by **reservations**:
//!
//! - **Priority.** When a priority level is done, each of its sessions that did not fit for lack of capacity
//!   reserves the agents it would use (for each kernel, the serving agent with the most free capacity whose total
//!   capacity could hold the kernel). Nothing of a *lower* priority is placed on a reserved agent in that pass, so
//!   the agent drains until the higher-priority session fits (Backend.AI issue #13706). Sessions of the same
//!   priority may still fill the agent during the level itself.
//! - **Aging.** A session that has waited at least [`PlanOptions::starvation_threshold`] (default 5 minutes) is
//!   *aged*: it moves to the front of its priority level (aged sessions oldest first), and when it still does not
//!   fit it reserves its agents *at once*, so that no later session of any priority level is placed there in that
//!   pass. Its agents then drain pass after pass until it fits. An aged session therefore waits at most
//!   `starvation_threshold` plus the time the sessions already on its agents (and the aged sessions ahead of it)
//!   take to end. Priority still wins: aging never lifts a session above a higher priority level.
//!
//! Reservations live for one pass and are recomputed on the next one; they are never stored.
//!
//! # Cost
//!
//! Agents are grouped into partitions (scaling group, architecture, image set, slot kinds they have) and kept in
//! each partition in a B-tree ordered by free capacity (accelerator slots first, then `cpu`, then `mem`), so a
//! selector finds its agent with a range query instead of a scan. Failed demands are remembered per partition for
//! the pass (free capacity only shrinks during a pass, so anything at least as large fails too). Slot amounts are
//! converted once to fixed-point integers (10⁻⁶ units; demands rounded up, capacities down, so the integer check
//! never admits what the decimal one would refuse).

mod planner;
mod selector;
mod sequencer;
#[cfg(test)]
mod tests;

pub use selector::{Concentrated, Dispersed, Preference, RoundRobin};
pub use sequencer::{Drf, Fifo, Lifo};

use crate::error::Error;
use crate::ids::{AccessKey, AgentId, KernelId, SessionId};
use crate::model::{AgentInfo, AgentStatus, ImageInfo, KernelRecord, SessionRecord};
use crate::runtime::resolve_image;
use crate::slots::ResourceSlots;
use crate::store::Placement;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::fmt;

/// A pending session as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct PendingSession {
    /// The session.
    pub id: SessionId,
    /// Its owner.
    pub access_key: AccessKey,
    /// The domain it runs in.
    pub domain: String,
    /// The group (project) it runs for, within its domain.
    pub group: String,
    /// Image reference.
    pub image: String,
    /// Scaling group asked for.
    pub scaling_group: String,
    /// Higher first.
    pub priority: i32,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// Its kernels and the slots each asks for.
    pub kernels: Vec<(KernelId, ResourceSlots)>,
    /// CPU architecture asked for (`None`: any).
    pub architecture: Option<String>,
    /// The only agent it may run on (`None`: any).
    pub designated_agent: Option<AgentId>,
}

impl PendingSession {
    /// Builds the scheduler's view of a stored session: its architecture, and the first of its designated agents
    /// (the manager accepts one distinct agent per session). Start times and dependencies are the manager's
    /// predicates, checked before a session reaches the planner.
    pub fn from_records(session: &SessionRecord, kernels: &[KernelRecord]) -> Self {
        Self {
            id: session.id,
            access_key: session.access_key.clone(),
            domain: session.domain.clone(),
            group: session.group.clone(),
            image: session.image.clone(),
            scaling_group: session.scaling_group.clone(),
            priority: session.priority,
            created_at: session.created_at,
            kernels: kernels.iter().map(|k| (k.id, k.requested_slots.clone())).collect(),
            architecture: session.architecture.clone().filter(|a| !a.is_empty()),
            designated_agent: session.designated_agents.first().cloned(),
        }
    }

    /// The slots of all its kernels.
    pub fn total_slots(&self) -> ResourceSlots {
        self.kernels.iter().fold(ResourceSlots::new(), |acc, (_, s)| acc + s.clone())
    }
}

/// An agent as the scheduler sees it, with what is still free.
#[derive(Debug, Clone)]
pub struct AgentSnapshot {
    /// The agent.
    pub id: AgentId,
    /// Scaling group.
    pub scaling_group: String,
    /// CPU architecture (`x86_64`); empty when unknown.
    pub architecture: String,
    /// ALIVE, LOST or TERMINATED; only ALIVE agents take sessions.
    pub status: AgentStatus,
    /// Whether new sessions may be placed on it.
    pub schedulable: bool,
    /// Capacity.
    pub available: ResourceSlots,
    /// In use.
    pub occupied: ResourceSlots,
    /// Images it can run.
    pub images: Vec<ImageInfo>,
}

impl AgentSnapshot {
    /// The scheduler's view of one agent, whatever its status.
    pub fn from_info(a: &AgentInfo) -> Self {
        Self {
            id: a.id.clone(),
            scaling_group: a.scaling_group.clone(),
            architecture: a.architecture.clone(),
            status: a.status,
            schedulable: a.schedulable,
            available: a.available_slots.clone(),
            occupied: a.occupied_slots.clone(),
            images: a.images.clone(),
        }
    }

    /// Snapshots the agents that can take new sessions (ALIVE and schedulable).
    pub fn schedulable(agents: &[AgentInfo]) -> Vec<Self> {
        agents.iter().map(Self::from_info).filter(Self::takes_sessions).collect()
    }

    /// ALIVE and schedulable.
    pub fn takes_sessions(&self) -> bool {
        self.status == AgentStatus::Alive && self.schedulable
    }

    /// Capacity minus use (slots in use beyond capacity count as zero free).
    pub fn free(&self) -> ResourceSlots {
        let mut free = ResourceSlots::new();
        for (k, v) in self.available.iter() {
            free.set(k, (v - self.occupied.get(k)).max(rust_decimal::Decimal::ZERO));
        }
        free
    }

    /// True when the agent could run the session: same scaling group, the image present, the architecture and the
    /// designated agent (when the session names them) matching. Status and capacity are not considered.
    pub fn serves(&self, session: &PendingSession) -> bool {
        self.scaling_group == session.scaling_group
            && session.architecture.as_deref().is_none_or(|a| a == self.architecture)
            && session.designated_agent.as_ref().is_none_or(|d| *d == self.id)
            && resolve_image(&self.images, &session.image).is_some()
    }
}

/// What the sequencers may look at besides the sessions: the capacity being shared and what each owner holds.
#[derive(Debug, Clone, Copy)]
pub struct SequenceContext<'a> {
    /// Total capacity of the agents being scheduled onto.
    pub capacity: &'a ResourceSlots,
    /// Slots each owner occupies now (missing owners hold nothing).
    pub occupied: &'a HashMap<AccessKey, ResourceSlots>,
}

impl SequenceContext<'_> {
    /// The owner's dominant share of the capacity (its largest share over slot kinds), in `[0, ∞)`.
    pub fn dominant_share(&self, owner: &AccessKey) -> rust_decimal::Decimal {
        self.occupied.get(owner).map(|o| o.dominant_share(self.capacity)).unwrap_or_default()
    }
}

/// Orders pending sessions: the first is tried first.
///
/// Priority always comes first (the planner keeps higher priorities ahead whatever the sequencer does); a
/// sequencer decides the order within one priority level. A minimal one:
///
/// ```
/// use backend_core::scheduler::{PendingSession, SequenceContext, Sequencer};
/// struct ByName;
/// impl Sequencer for ByName {
///     fn name(&self) -> &'static str { "by-name" }
///     fn sequence(&self, pending: &mut [PendingSession], _ctx: &SequenceContext<'_>) {
///         pending.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.image.cmp(&b.image)));
///     }
/// }
/// ```
pub trait Sequencer: Send + Sync {
    /// The policy's name (`fifo`).
    fn name(&self) -> &'static str;
    /// Reorders `pending` in place.
    fn sequence(&self, pending: &mut [PendingSession], ctx: &SequenceContext<'_>);
    /// True when the order depends on what owners hold, so the planner must pick the owner with the lowest dominant
    /// share again after every placement (DRF). The sessions of one owner keep the order of [`Sequencer::sequence`].
    fn rebalances_by_share(&self) -> bool {
        false
    }
}

/// Chooses an agent for each kernel of a session.
///
/// The planner keeps every partition of agents ordered by free capacity and asks the selector which end to search
/// from ([`Preference`]), so that a choice costs a range query instead of a scan.
pub trait AgentSelector: Send + Sync {
    /// The policy's name (`dispersed`).
    fn name(&self) -> &'static str;
    /// Where the search starts.
    fn preference(&self) -> Preference;
    /// For [`Preference::Rotating`]: the position among `n` candidates to start from.
    fn rotation_start(&self, n: usize) -> usize {
        let _ = n;
        0
    }
    /// For [`Preference::Rotating`]: the candidate at `position` was chosen; the next search starts after it.
    fn rotated(&self, position: usize) {
        let _ = position;
    }
    /// Placements for every kernel of `session` on `agents` given their current use, or `None` when it does not
    /// fit now. Only agents that serve the session and take sessions are considered.
    fn select(&self, session: &PendingSession, agents: &[AgentSnapshot]) -> Option<Vec<Placement>>
    where
        Self: Sized,
    {
        select_with(self, session, agents)
    }
}

/// [`AgentSelector::select`] for a trait object.
pub fn select_with(
    selector: &dyn AgentSelector,
    session: &PendingSession,
    agents: &[AgentSnapshot],
) -> Option<Vec<Placement>> {
    let input = PlanInput::new(vec![session.clone()], agents.to_vec(), session.created_at);
    plan(&Fifo, selector, input, &PlanOptions::default()).placed.pop().map(|(_, p)| p)
}

/// The sequencer names [`sequencer_by_name`] knows.
pub const SEQUENCERS: [&str; 3] = ["fifo", "lifo", "drf"];
/// The selector names [`selector_by_name`] knows.
pub const SELECTORS: [&str; 3] = ["concentrated", "dispersed", "roundrobin"];

/// The sequencer a scaling group's `scheduler` field names (`fifo`, `lifo`, `drf`; case-insensitive).
pub fn sequencer_by_name(name: &str) -> Option<Box<dyn Sequencer>> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "fifo" => Box::new(Fifo),
        "lifo" => Box::new(Lifo),
        "drf" => Box::new(Drf),
        _ => return None,
    })
}

/// The selector named `concentrated`, `dispersed` or `roundrobin` (case-insensitive).
pub fn selector_by_name(name: &str) -> Option<Box<dyn AgentSelector>> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "concentrated" => Box::new(Concentrated),
        "dispersed" => Box::new(Dispersed),
        "roundrobin" | "round-robin" => Box::new(RoundRobin::default()),
        _ => return None,
    })
}

/// [`sequencer_by_name`], with an `InvalidParams` error naming the known policies for an unknown name.
pub fn sequencer_named(name: &str) -> Result<Box<dyn Sequencer>, Error> {
    sequencer_by_name(name).ok_or_else(|| Error::InvalidParams {
        msg: format!("unknown scheduler {name:?}; known: {}", SEQUENCERS.join(", ")),
    })
}

/// [`selector_by_name`], with an `InvalidParams` error naming the known policies for an unknown name.
pub fn selector_named(name: &str) -> Result<Box<dyn AgentSelector>, Error> {
    selector_by_name(name).ok_or_else(|| Error::InvalidParams {
        msg: format!("unknown agent selector {name:?}; known: {}", SELECTORS.join(", ")),
    })
}

/// Limits on one owner's sessions (from its keypair resource policy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerLimits {
    /// Sessions it may hold resources with at once (`None`: unlimited).
    pub max_concurrent_sessions: Option<u32>,
    /// The most its sessions may occupy together; a slot the map leaves out is unlimited (`None`: unlimited).
    pub total_resource_slots: Option<ResourceSlots>,
}

/// What one owner (access key) holds now and may hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerUsage {
    /// Slots its sessions occupy.
    pub occupied: ResourceSlots,
    /// Sessions it holds resources with.
    pub sessions: u32,
    /// Its limits.
    pub limits: OwnerLimits,
}

/// A group or a domain: the sessions in it share its `total_resource_slots`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaScope {
    /// A group (project), by domain and name.
    Group {
        /// Its domain.
        domain: String,
        /// Its name.
        name: String,
    },
    /// A domain, by name.
    Domain(String),
}

impl QuotaScope {
    /// The group of a session.
    pub fn group_of(session: &PendingSession) -> Self {
        QuotaScope::Group { domain: session.domain.clone(), name: session.group.clone() }
    }
    /// The domain of a session.
    pub fn domain_of(session: &PendingSession) -> Self {
        QuotaScope::Domain(session.domain.clone())
    }
}

impl fmt::Display for QuotaScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuotaScope::Group { name, .. } => write!(f, "group {name}"),
            QuotaScope::Domain(name) => write!(f, "domain {name}"),
        }
    }
}

/// What the sessions of one group or domain occupy now and may occupy together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeUsage {
    /// The slots its sessions occupy (requested slots of the sessions whose status holds resources).
    pub occupied: ResourceSlots,
    /// The most they may occupy; a slot the map leaves out is unlimited (empty: unlimited).
    pub total_resource_slots: ResourceSlots,
}

/// Everything one pass looks at.
#[derive(Debug, Clone)]
pub struct PlanInput {
    /// Sessions waiting.
    pub pending: Vec<PendingSession>,
    /// Agents, whatever their status (the planner filters).
    pub agents: Vec<AgentSnapshot>,
    /// Per owner: use and limits (missing owners hold nothing and have no limits).
    pub owners: HashMap<AccessKey, OwnerUsage>,
    /// Per group and domain: use and quota (missing ones are unlimited).
    pub scopes: HashMap<QuotaScope, ScopeUsage>,
    /// The time of the pass (for aging).
    pub now: DateTime<Utc>,
}

impl PlanInput {
    /// Input with no owner usage or limits.
    pub fn new(pending: Vec<PendingSession>, agents: Vec<AgentSnapshot>, now: DateTime<Utc>) -> Self {
        Self { pending, agents, owners: HashMap::new(), scopes: HashMap::new(), now }
    }
}

/// Tunables of a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// A session waiting at least this long is aged: it goes first in its priority level and reserves its agents
    /// when it does not fit (see the module docs).
    pub starvation_threshold: chrono::Duration,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self { starvation_threshold: chrono::Duration::minutes(5) }
    }
}

/// Why a session was left pending; its `Display` is meant for the session's `status_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Blocked {
    /// No serving agent has room now.
    NoCapacity,
    /// No agent is ALIVE, schedulable and serving it (scaling group, image, architecture, designated agent).
    NoServingAgent,
    /// The agents with room are reserved for higher-priority or long-waiting sessions.
    Reserved,
    /// The owner already holds its most concurrent sessions.
    ConcurrencyLimit {
        /// The limit.
        limit: u32,
    },
    /// The owner's sessions would occupy more than its total resource slots.
    SlotLimit {
        /// The slot that would go over.
        slot: String,
        /// Its limit.
        limit: rust_decimal::Decimal,
    },
    /// The sessions of the session's group or domain would occupy more than its `total_resource_slots`.
    ScopeLimit {
        /// The group or domain.
        scope: QuotaScope,
        /// The slot that would go over.
        slot: String,
        /// What the scope's sessions occupy now (including those placed earlier in the pass).
        used: rust_decimal::Decimal,
        /// Its limit.
        limit: rust_decimal::Decimal,
    },
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocked::NoCapacity => f.write_str("pending: no agent has enough free resources now"),
            Blocked::NoServingAgent => f.write_str("pending: no available agent serves the scaling group and image"),
            Blocked::Reserved => {
                f.write_str("pending: free resources are reserved for higher-priority or long-waiting sessions")
            }
            Blocked::ConcurrencyLimit { limit } => {
                write!(f, "pending: keypair concurrent-session limit reached ({limit})")
            }
            Blocked::SlotLimit { slot, limit } => {
                write!(f, "pending: keypair total resource slots exceeded ({slot} limit {})", limit.normalize())
            }
            Blocked::ScopeLimit { scope, slot, used, limit } => write!(
                f,
                "pending: {scope} total_resource_slots exceeded ({slot} {} of {} used)",
                used.normalize(),
                limit.normalize()
            ),
        }
    }
}

/// The outcome of one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Sessions placed, in placement order, with a placement for each of their kernels (in kernel order).
    pub placed: Vec<(SessionId, Vec<Placement>)>,
    /// Sessions left pending and why.
    pub blocked: Vec<(SessionId, Blocked)>,
    /// Agents reserved in this pass and for which session.
    pub reservations: Vec<(SessionId, Vec<AgentId>)>,
}

/// One scheduling pass over a snapshot (see the module docs): sessions by priority, then in the sequencer's order,
/// each placed by the selector when its owner's limits allow and it fits given the placements made before it in
/// the same pass. A session that does not fit is skipped, not waited for.
pub fn plan(sequencer: &dyn Sequencer, selector: &dyn AgentSelector, input: PlanInput, options: &PlanOptions) -> Plan {
    planner::run(sequencer, selector, input, options)
}

/// True when some agent in the snapshot that serves the session could ever hold each kernel (by capacity alone,
/// whatever is in use now), so a session that can never run is refused instead of waiting forever. A slot no agent
/// has counts as zero capacity, so a request for it never fits.
pub fn could_ever_fit(session: &PendingSession, agents: &[AgentSnapshot]) -> bool {
    session.kernels.iter().all(|(_, want)| agents.iter().any(|a| a.serves(session) && want.fits_in(&a.available)))
}
