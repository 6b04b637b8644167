//! The scheduler loop: woken by events (a session enqueued or ended, an agent joined) and by a periodic tick; one
//! manager at a time holds the `scheduler` lease and runs it. [`Manager::schedule_once`] is one pass at a time the
//! caller names, callable from tests without the loop: its [`PassReport`] carries the session starts it spawned
//! ([`Started`]), so a test awaits them instead of sleeping.
//!
//! A pass reads the pending sessions, the agents, and what every owner already holds; refuses (CANCELLED) the
//! sessions no known agent could ever run; then, per scaling group, runs the planner with the sequencer the scaling
//! group names (`fifo`, `lifo`, `drf`) and the agent selector it names in `agent_selector` (or else the manager's).
//! The planner checks each owner's keypair resource policy (`max_concurrent_sessions`, `total_resource_slots`) and
//! the `total_resource_slots` of each session's group and domain as it places; every session left pending gets the
//! reason in its `status_info`.
//!
//! Before the planner, each session's own predicates: its dependencies (it waits until every one has ended well,
//! and is CANCELLED with `dependency-failed: <name>` as soon as one has not, so a failed dependency never leaves it
//! stuck, Backend.AI #5218), then its `starts_at` (it waits until that time).

use crate::Manager;
use backend_core::error::{ErrorKind, Result};
use backend_core::ids::{AccessKey, SessionId};
use backend_core::model::{AgentStatus, KeyPairResourcePolicy, SessionRecord, SessionResult, SessionType};
use backend_core::scheduler::{
    could_ever_fit, plan, selector_by_name, sequencer_by_name, AgentSelector, AgentSnapshot, OwnerLimits, OwnerUsage,
    PendingSession, PlanInput, PlanOptions, QuotaScope, ScopeUsage, Sequencer, SEQUENCERS,
};
use backend_core::status::SessionStatus;
use backend_core::store::{Allocated, Allocation, SessionChange, SessionFilter};
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// A session SCHEDULED for this long was never started: the manager that placed it stopped first, or the store
/// failed while it started and while it cleaned up. A start moves it on within milliseconds otherwise.
pub const STALLED_START: chrono::Duration = chrono::Duration::seconds(30);

/// A session PREPARING or CREATING for this long is given up (its kernels destroyed, its slots given back).
pub const START_TIMEOUT: chrono::Duration = chrono::Duration::minutes(10);

/// The lease name in the config store.
pub const SCHEDULER_LEASE: &str = "scheduler";

/// What one pass did.
#[derive(Debug, Default)]
pub struct PassReport {
    /// Sessions placed.
    pub scheduled: usize,
    /// Sessions refused because no agent could ever run them.
    pub refused: usize,
    /// Sessions left pending.
    pub pending: usize,
    /// Sessions cancelled because a session they depend on failed.
    pub cancelled: usize,
    /// The starts of the placed sessions, running in the background.
    pub started: Started,
}

/// Session starts running in the background (one task per batch a pass placed). Dropping it detaches them: they
/// run on regardless, as in the scheduler loop.
#[derive(Debug, Default)]
pub struct Started(Vec<tokio::task::JoinHandle<()>>);

impl Started {
    /// How many start tasks there are (each starts one batch of sessions).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the pass started nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Waits until every start has ended: each session is RUNNING, or ended with the reason its start failed. A
    /// start that panicked panics here too, so a test sees it.
    pub async fn finished(self) {
        for task in self.0 {
            if let Err(e) = task.await {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
    }
}

/// What a session's own predicates (dependencies, start time) say about placing it now.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Gate {
    /// It may go to the planner.
    Open,
    /// It waits; the reason for its `status_info`.
    Wait(String),
    /// It can never run: cancel it with this reason.
    Cancel(String),
}

/// How a dependency stands.
enum Dependency {
    /// Ended well: TERMINATED, with result SUCCESS for a batch session and anything but FAILURE for an interactive
    /// one.
    Succeeded,
    /// Still on its way.
    Unfinished,
    /// Will never end well (ERROR, CANCELLED, a FAILURE result, a batch session ended without SUCCESS, or gone);
    /// its name (or id).
    Failed(String),
}

fn dependency_state(dep: Option<&SessionRecord>, id: SessionId) -> Dependency {
    let Some(dep) = dep else { return Dependency::Failed(id.to_string()) };
    let failed = matches!(dep.status, SessionStatus::Error | SessionStatus::Cancelled)
        || dep.result == SessionResult::Failure
        || dep.status_history.entered(SessionStatus::Error).is_some();
    if failed {
        return Dependency::Failed(dep.name.clone());
    }
    match dep.status {
        SessionStatus::Terminated if dep.session_type == SessionType::Interactive => Dependency::Succeeded,
        SessionStatus::Terminated if dep.result == SessionResult::Success => Dependency::Succeeded,
        SessionStatus::Terminated => Dependency::Failed(dep.name.clone()),
        _ => Dependency::Unfinished,
    }
}

/// The planner's view of a keypair resource policy.
pub fn owner_limits(policy: &KeyPairResourcePolicy) -> OwnerLimits {
    OwnerLimits {
        max_concurrent_sessions: Some(policy.max_concurrent_sessions),
        total_resource_slots: (!policy.total_resource_slots.is_zero()).then(|| policy.total_resource_slots.clone()),
    }
}

impl Manager {
    /// What each of `owners` holds now (sessions holding resources and their slots) and may hold.
    async fn owner_usage(&self, owners: impl Iterator<Item = &AccessKey>) -> Result<HashMap<AccessKey, OwnerUsage>> {
        let mut usage: HashMap<AccessKey, OwnerUsage> = HashMap::new();
        let mut policies: HashMap<String, Option<KeyPairResourcePolicy>> = HashMap::new();
        for owner in owners {
            if usage.contains_key(owner) {
                continue;
            }
            let mut entry = OwnerUsage::default();
            if let Some(keypair) = self.store.keypair(owner).await? {
                let name = keypair.resource_policy;
                if !policies.contains_key(&name) {
                    let policy = self.store.resource_policy(&name).await?;
                    policies.insert(name.clone(), policy);
                }
                if let Some(policy) = &policies[&name] {
                    entry.limits = owner_limits(policy);
                }
            }
            usage.insert(owner.clone(), entry);
        }
        let owners: Vec<AccessKey> = usage.keys().cloned().collect();
        for (owner, (sessions, occupied)) in self.store.occupancy(&owners).await? {
            let entry = usage.entry(owner).or_default();
            entry.occupied = occupied;
            entry.sessions = sessions;
        }
        Ok(usage)
    }

    /// The quotas of the groups and domains of `pending` that have one, with what their sessions occupy now.
    /// Groups and domains without a quota are left out (the planner treats them as unlimited).
    async fn scope_usage(&self, pending: &[&PendingSession]) -> Result<HashMap<QuotaScope, ScopeUsage>> {
        let mut scopes: HashMap<QuotaScope, ScopeUsage> = HashMap::new();
        let mut seen: Vec<QuotaScope> = Vec::new();
        for p in pending {
            for key in [QuotaScope::group_of(p), QuotaScope::domain_of(p)] {
                if seen.contains(&key) {
                    continue;
                }
                let quota = match &key {
                    QuotaScope::Group { domain, name } => {
                        self.store.group(domain, name).await?.map(|g| g.total_resource_slots)
                    }
                    QuotaScope::Domain(name) => self.store.domain(name).await?.map(|d| d.total_resource_slots),
                };
                if let Some(quota) = quota.filter(|q| q.names().next().is_some()) {
                    scopes
                        .insert(key.clone(), ScopeUsage { occupied: Default::default(), total_resource_slots: quota });
                }
                seen.push(key);
            }
        }
        let mut domains: Vec<String> = scopes
            .keys()
            .map(|k| match k {
                QuotaScope::Group { domain, .. } | QuotaScope::Domain(domain) => domain.clone(),
            })
            .collect();
        if domains.is_empty() {
            return Ok(scopes);
        }
        domains.sort();
        domains.dedup();
        let occupancy = self.store.occupancy_by_group_and_domain(&domains).await?;
        for (key, usage) in scopes.iter_mut() {
            let held = match key {
                QuotaScope::Group { domain, name } => occupancy.groups.get(&(domain.clone(), name.clone())),
                QuotaScope::Domain(name) => occupancy.domains.get(name),
            };
            usage.occupied = held.cloned().unwrap_or_default();
        }
        Ok(scopes)
    }

    /// The selector a scaling group names, kept across passes (a round-robin one remembers its position).
    fn group_selector(&self, scaling_group: &str, name: &str) -> Option<Arc<dyn AgentSelector>> {
        let mut cache = self.group_selectors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = cache.get(scaling_group).filter(|s| s.name() == name) {
            return Some(s.clone());
        }
        let selector: Arc<dyn AgentSelector> = Arc::from(selector_by_name(name)?);
        cache.insert(scaling_group.to_owned(), selector.clone());
        Some(selector)
    }

    async fn note_pending(&self, id: backend_core::SessionId, current: Option<&str>, info: String) {
        if current == Some(info.as_str()) {
            return;
        }
        let change = SessionChange { status: SessionStatus::Pending, status_info: Some(info), result: None };
        if let Err(e) = self.store.update_session(id, change, Utc::now()).await {
            tracing::debug!(session = %id, error = %e, "could not record why the session waits");
        }
    }

    /// The session's own predicates: dependencies first (a failed one cancels it whatever its start time), then
    /// its start time. `seen` caches the dependencies read during one pass.
    async fn gate(
        &self,
        session: &SessionRecord,
        now: DateTime<Utc>,
        seen: &mut HashMap<SessionId, Option<SessionRecord>>,
    ) -> Result<Gate> {
        let mut unfinished = 0;
        for dep in &session.dependencies {
            if !seen.contains_key(dep) {
                seen.insert(*dep, self.store.session(*dep).await?);
            }
            match dependency_state(seen[dep].as_ref(), *dep) {
                Dependency::Succeeded => {}
                Dependency::Unfinished => unfinished += 1,
                Dependency::Failed(name) => return Ok(Gate::Cancel(format!("dependency-failed: {name}"))),
            }
        }
        if unfinished > 0 {
            let noun = if unfinished == 1 { "dependency" } else { "dependencies" };
            return Ok(Gate::Wait(format!("pending: waiting for {unfinished} {noun}")));
        }
        if let Some(at) = session.starts_at.filter(|at| *at > now) {
            return Ok(Gate::Wait(format!("pending: starts at {}", at.to_rfc3339_opts(SecondsFormat::Millis, true))));
        }
        Ok(Gate::Open)
    }

    /// One scheduling pass as of `now`: places what fits, refuses what never could, leaves the rest pending with
    /// the reason in its `status_info`. Placed sessions are started in the background; the report's
    /// [`PassReport::started`] has those starts. `now` decides what the pass sees (start times, how long sessions
    /// have waited); the records it writes carry the clock's time. Steppable: tests pass their own `now`.
    pub async fn schedule_once(self: &Arc<Self>, now: DateTime<Utc>) -> Result<PassReport> {
        let pending_rows = self.store.pending_sessions().await?;
        if pending_rows.is_empty() {
            return Ok(PassReport::default());
        }
        let agents: Vec<AgentSnapshot> = self.store.list_agents().await?.iter().map(AgentSnapshot::from_info).collect();
        // LOST agents may come back; only agents that are gone for good cannot make a session possible again.
        let known: Vec<AgentSnapshot> =
            agents.iter().filter(|a| a.status != AgentStatus::Terminated).cloned().collect();
        let mut report = PassReport::default();
        let mut info: HashMap<backend_core::SessionId, Option<String>> = HashMap::new();
        let mut groups: BTreeMap<String, Vec<PendingSession>> = BTreeMap::new();
        let mut dependencies = HashMap::new();
        for (session, kernels) in &pending_rows {
            match self.gate(session, now, &mut dependencies).await? {
                Gate::Open => {}
                Gate::Wait(why) => {
                    self.note_pending(session.id, session.status_info.as_deref(), why).await;
                    report.pending += 1;
                    continue;
                }
                Gate::Cancel(why) => {
                    let change =
                        SessionChange { status: SessionStatus::Cancelled, status_info: Some(why), result: None };
                    match self.store.update_session(session.id, change.clone(), Utc::now()).await {
                        Ok(Some((_, to))) => {
                            self.publish_lifecycle(session.id, to, change.status_info).await;
                            report.cancelled += 1;
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(session = %session.id, error = %e, "could not cancel the session"),
                    }
                    continue;
                }
            }
            let p = PendingSession::from_records(session, kernels);
            if could_ever_fit(&p, &known) {
                info.insert(p.id, session.status_info.clone());
                groups.entry(p.scaling_group.clone()).or_default().push(p);
            } else if !known.is_empty() {
                // The agents changed since it was accepted: it can never run here now.
                let change = SessionChange {
                    status: SessionStatus::Cancelled,
                    status_info: Some("no agent can provide the requested resources or image".into()),
                    result: None,
                };
                if let Ok(Some((_, to))) = self.store.update_session(p.id, change.clone(), Utc::now()).await {
                    self.publish_lifecycle(p.id, to, change.status_info).await;
                    report.refused += 1;
                }
            }
        }
        let mut owners = self.owner_usage(groups.values().flatten().map(|p| &p.access_key)).await?;
        let mut scopes = self.scope_usage(&groups.values().flatten().collect::<Vec<_>>()).await?;
        let options = PlanOptions::default();
        for (group, pending) in groups {
            let total = pending.len();
            let scaling_group = self.store.scaling_group(&group).await?;
            // An unknown name is refused when the scaling group is written; one stored before that check falls back
            // to the manager's selector.
            let group_selector = scaling_group
                .as_ref()
                .and_then(|sg| sg.agent_selector.as_deref())
                .and_then(|name| self.group_selector(&group, name));
            let named = match scaling_group {
                Some(sg) => match sequencer_by_name(&sg.scheduler) {
                    Some(s) => Some(s),
                    None => {
                        let why = format!(
                            "pending: scaling group {group:?} names an unknown scheduler {:?} (known: {})",
                            sg.scheduler,
                            SEQUENCERS.join(", ")
                        );
                        tracing::warn!(group, scheduler = sg.scheduler, "unknown scheduler; sessions wait");
                        for p in &pending {
                            self.note_pending(p.id, info[&p.id].as_deref(), why.clone()).await;
                        }
                        report.pending += total;
                        continue;
                    }
                },
                None => None,
            };
            let sequencer: &dyn Sequencer = named.as_deref().unwrap_or(self.sequencer.as_ref());
            let selector: &dyn AgentSelector = group_selector.as_deref().unwrap_or(self.selector.as_ref());
            let slots: HashMap<_, _> = pending
                .iter()
                .map(|p| {
                    (p.id, (p.access_key.clone(), [QuotaScope::group_of(p), QuotaScope::domain_of(p)], p.total_slots()))
                })
                .collect();
            let group_agents = agents.iter().filter(|a| a.scaling_group == group).cloned().collect();
            let input =
                PlanInput { pending, agents: group_agents, owners: owners.clone(), scopes: scopes.clone(), now };
            let outcome = plan(sequencer, selector, input, &options);
            // The plan's placements fit together; they are allocated in one store call (each session is checked
            // again there, under the agents' row locks) and started together.
            let batch: Vec<Allocation> =
                outcome.placed.into_iter().map(|(session, placements)| Allocation { session, placements }).collect();
            let answers = match self.store.allocate_batch(&batch, Utc::now()).await {
                Ok(answers) => answers,
                Err(e) => {
                    tracing::warn!(error = %e, sessions = batch.len(), "allocation failed; retried next pass");
                    Vec::new()
                }
            };
            let mut started: Vec<Allocated> = Vec::with_capacity(answers.len());
            for (allocation, answer) in batch.iter().zip(answers) {
                let session_id = allocation.session;
                match answer {
                    Ok(allocated) => {
                        let (owner, quota_scopes, used) = slots[&session_id].clone();
                        for key in quota_scopes {
                            if let Some(scope) = scopes.get_mut(&key) {
                                scope.occupied = std::mem::take(&mut scope.occupied) + used.clone();
                            }
                        }
                        let entry = owners.entry(owner).or_default();
                        entry.occupied = std::mem::take(&mut entry.occupied) + used;
                        entry.sessions += 1;
                        started.push(allocated);
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::QuotaExceeded) => {
                        tracing::debug!(session = %session_id, error = %e, "allocation lost a race; retried next pass");
                    }
                    Err(e) => tracing::warn!(session = %session_id, error = %e, "allocation failed"),
                }
            }
            let scheduled = started.len();
            for (session, _) in &started {
                self.publish_lifecycle(session.id, SessionStatus::Scheduled, None).await;
            }
            if !started.is_empty() {
                let m = self.clone();
                report.started.0.push(tokio::spawn(async move { m.start_sessions(started).await }));
            }
            for (session_id, why) in outcome.blocked {
                self.note_pending(session_id, info[&session_id].as_deref(), why.to_string()).await;
            }
            report.scheduled += scheduled;
            report.pending += total - scheduled;
        }
        Ok(report)
    }
}

impl Manager {
    /// Recovers sessions whose start stalled, so that no failure between placement and start keeps slots forever:
    /// those SCHEDULED for [`STALLED_START`] are started again, those PREPARING or CREATING for [`START_TIMEOUT`] are
    /// destroyed with `start-timeout`. Answers how many it acted on, once what it started again has ended (running,
    /// or failed for good). Steppable: tests pass their own `now`.
    pub async fn recover_stalled_starts(self: &Arc<Self>, now: DateTime<Utc>) -> Result<usize> {
        let stalled = [SessionStatus::Scheduled, SessionStatus::Preparing, SessionStatus::Creating];
        let filter = SessionFilter { statuses: Some(stalled.to_vec()), ..SessionFilter::default() };
        let mut acted = 0;
        for s in self.store.list_sessions(&filter).await? {
            let since = s.status_history.entered(s.status).unwrap_or(s.created_at);
            if s.status == SessionStatus::Scheduled && now - since >= STALLED_START {
                tracing::warn!(session = %s.id, "session start stalled; starting it again");
                self.start_session(s.id).await;
                acted += 1;
            } else if s.status != SessionStatus::Scheduled && now - since >= START_TIMEOUT {
                tracing::warn!(session = %s.id, status = %s.status, "session start timed out");
                self.destroy_kernels(s.id, true, "start-timeout").await?;
                acted += 1;
            }
        }
        Ok(acted)
    }
}

/// Runs scheduling passes while this manager holds the scheduler lease.
pub async fn run(m: Arc<Manager>) {
    let lease_ttl = Duration::from_secs(10);
    loop {
        let woken = tokio::time::timeout(m.config.schedule_interval, m.wake_scheduler.notified()).await.is_ok();
        match m.shared_config.try_lease(SCHEDULER_LEASE, &m.config.id, lease_ttl).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the config store for the scheduler lease");
                continue;
            }
        }
        // The starts run on in the background while the loop waits for the next pass.
        match m.schedule_once(Utc::now()).await {
            Ok(r) if r.scheduled + r.refused > 0 => tracing::debug!(?r, woken, "scheduling pass"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "scheduling pass failed"),
        }
        if let Err(e) = m.recover_stalled_starts(Utc::now()).await {
            tracing::warn!(error = %e, "could not check for stalled starts");
        }
    }
}
