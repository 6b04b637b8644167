//! The scheduler loop: woken by events (a session enqueued or ended, an agent joined) and by a periodic tick; one
//! manager at a time holds the `scheduler` lease and runs it. [`Manager::schedule_once`] is one pass, callable from
//! tests without the loop.

use crate::Manager;
use backend_core::error::{ErrorKind, Result};
use backend_core::scheduler::{could_ever_fit, plan, AgentSnapshot, PendingSession};
use backend_core::status::SessionStatus;
use backend_core::store::SessionChange;
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;

/// The lease name in the config store.
pub const SCHEDULER_LEASE: &str = "leases/scheduler";

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

impl Manager {
    /// One scheduling pass: places what fits, refuses what never could, leaves the rest pending. Placed sessions
    /// are started in the background.
    pub async fn schedule_once(self: &Arc<Self>) -> Result<PassReport> {
        let pending_rows = self.store.pending_sessions().await?;
        if pending_rows.is_empty() {
            return Ok(PassReport::default());
        }
        let agents = AgentSnapshot::schedulable(&self.store.list_agents().await?);
        let mut report = PassReport::default();
        let mut candidates = Vec::with_capacity(pending_rows.len());
        for (session, kernels) in &pending_rows {
            let p = PendingSession::from_records(session, kernels);
            if could_ever_fit(&p, &agents) {
                candidates.push(p);
            } else if !agents.is_empty() {
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
        let total = candidates.len();
        for (session_id, placements) in plan(self.sequencer.as_ref(), self.selector.as_ref(), candidates, agents) {
            match self.store.allocate(session_id, &placements, Utc::now()).await {
                Ok(()) => {
                    report.scheduled += 1;
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
        report.pending = total - report.scheduled;
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
