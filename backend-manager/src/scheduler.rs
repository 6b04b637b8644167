//! The scheduler loop: woken by events (a session enqueued or ended, an agent joined) and by a periodic tick; one
//! manager at a time holds the `scheduler` lease and runs it. [`Manager::schedule_once`] is one pass, callable from
//! tests without the loop.
//!
//! A pass reads the pending sessions, the agents, and what every owner already holds; refuses (CANCELLED) the
//! sessions no known agent could ever run; then, per scaling group, runs the planner with the sequencer the scaling
//! group names (`fifo`, `lifo`, `drf`) and the manager's agent selector. The planner checks each owner's keypair
//! resource policy (`max_concurrent_sessions`, `total_resource_slots`) as it places; every session left pending
//! gets the reason in its `status_info`.

use crate::Manager;
use backend_core::error::{ErrorKind, Result};
use backend_core::ids::AccessKey;
use backend_core::model::{AgentStatus, KeyPairResourcePolicy};
use backend_core::scheduler::{
    could_ever_fit, plan, sequencer_by_name, AgentSnapshot, OwnerLimits, OwnerUsage, PendingSession, PlanInput,
    PlanOptions, Sequencer, SEQUENCERS,
};
use backend_core::status::SessionStatus;
use backend_core::store::{SessionChange, SessionFilter};
use chrono::Utc;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// The lease name in the config store.
pub const SCHEDULER_LEASE: &str = "scheduler";

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Sessions placed.
    pub scheduled: usize,
    /// Sessions refused because no agent could ever run them.
    pub refused: usize,
    /// Sessions left pending.
    pub pending: usize,
}

/// The session statuses that hold (or are about to hold) resources on an agent.
fn holding_statuses() -> Vec<SessionStatus> {
    [
        SessionStatus::Scheduled,
        SessionStatus::Preparing,
        SessionStatus::Pulling,
        SessionStatus::Creating,
        SessionStatus::Running,
        SessionStatus::RunningDegraded,
        SessionStatus::Restarting,
        SessionStatus::Terminating,
    ]
    .into_iter()
    .filter(|s| s.holds_resources())
    .collect()
}

/// The planner's view of a keypair resource policy.
pub fn owner_limits(policy: &KeyPairResourcePolicy) -> OwnerLimits {
    OwnerLimits {
        max_concurrent_sessions: Some(policy.max_concurrent_sessions),
        total_resource_slots: (!policy.total_resource_slots.is_zero()).then(|| policy.total_resource_slots.clone()),
    }
}

impl Manager {
    /// The resource policy of a keypair, if both exist.
    pub(crate) async fn policy_of(&self, owner: &AccessKey) -> Result<Option<KeyPairResourcePolicy>> {
        let Some(keypair) = self.store.keypair(owner).await? else { return Ok(None) };
        self.store.resource_policy(&keypair.resource_policy).await
    }

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
        let filter = SessionFilter { statuses: Some(holding_statuses()), ..SessionFilter::default() };
        for s in self.store.list_sessions(&filter).await? {
            let entry = usage.entry(s.access_key.clone()).or_default();
            entry.occupied = std::mem::take(&mut entry.occupied) + s.requested_slots;
            entry.sessions += 1;
        }
        Ok(usage)
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

    /// One scheduling pass: places what fits, refuses what never could, leaves the rest pending with the reason in
    /// its `status_info`. Placed sessions are started in the background.
    pub async fn schedule_once(self: &Arc<Self>) -> Result<PassReport> {
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
        for (session, kernels) in &pending_rows {
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
        let options = PlanOptions::default();
        for (group, pending) in groups {
            let total = pending.len();
            let named = match self.store.scaling_group(&group).await? {
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
            let slots: HashMap<_, _> =
                pending.iter().map(|p| (p.id, (p.access_key.clone(), p.total_slots()))).collect();
            let group_agents = agents.iter().filter(|a| a.scaling_group == group).cloned().collect();
            let input = PlanInput { pending, agents: group_agents, owners: owners.clone(), now: Utc::now() };
            let outcome = plan(sequencer, self.selector.as_ref(), input, &options);
            let mut scheduled = 0;
            for (session_id, placements) in outcome.placed {
                match self.store.allocate(session_id, &placements, Utc::now()).await {
                    Ok(()) => {
                        scheduled += 1;
                        let (owner, used) = slots[&session_id].clone();
                        let entry = owners.entry(owner).or_default();
                        entry.occupied = std::mem::take(&mut entry.occupied) + used;
                        entry.sessions += 1;
                        self.publish_lifecycle(session_id, SessionStatus::Scheduled, None).await;
                        let m = self.clone();
                        tokio::spawn(async move { m.start_session(session_id).await });
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::QuotaExceeded) => {
                        tracing::debug!(session = %session_id, error = %e, "allocation lost a race; retried next pass");
                    }
                    Err(e) => tracing::warn!(session = %session_id, error = %e, "allocation failed"),
                }
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
        match m.schedule_once().await {
            Ok(r) if r.scheduled + r.refused > 0 => tracing::debug!(?r, woken, "scheduling pass"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "scheduling pass failed"),
        }
    }
}
