//! The agent registry: turns agents' heartbeats into agent records, reconciles what an agent really runs with what
//! the store says, handles kernels that end by themselves, and marks silent agents LOST.

use crate::Manager;
use backend_core::events::{Event, EventStream};
use backend_core::ids::{AgentId, KernelId};
use backend_core::model::{AgentHeartbeat, AgentStatus};
use backend_core::status::KernelStatus;
use backend_core::store::KernelChange;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::collections::HashSet;
use std::sync::Arc;

/// The consumer group every manager joins for agent reports.
pub const MANAGER_GROUP: &str = "managers";

/// Handles agent reports from `events` until the stream ends.
pub async fn run(m: Arc<Manager>, mut events: EventStream) {
    let mut known: HashSet<AgentId> = HashSet::new();
    while let Some(ev) = events.next().await {
        match ev {
            Event::AgentHeartbeat(hb) => {
                let first = known.insert(hb.id.clone());
                if let Err(e) = m.on_heartbeat(&hb, first).await {
                    tracing::warn!(agent = %hb.id, error = %e, "heartbeat not recorded");
                }
            }
            Event::KernelExited { kernel_id, exit_code, reason, .. } => {
                m.on_kernel_exited(kernel_id, exit_code, &reason).await;
            }
            _ => {}
        }
    }
}

impl Manager {
    /// Records a heartbeat. On the first one this manager sees from an agent, and on one from an agent that was not
    /// ALIVE (it comes back after being LOST), reconciles its kernels first.
    pub async fn on_heartbeat(&self, hb: &AgentHeartbeat, first: bool) -> backend_core::Result<()> {
        let before = self.store.agent(&hb.id).await?;
        let returning = before.as_ref().is_some_and(|a| a.status != AgentStatus::Alive);
        if first || returning {
            // Before the record shows the agent's new address, so whoever waits for that sees a reconciled agent.
            self.reconcile_agent(&hb.id, &hb.addr).await;
        }
        self.store.upsert_agent(hb, Utc::now()).await?;
        self.live.touch_agent(&hb.id, Utc::now()).await?;
        if before.is_none_or(|a| a.status != AgentStatus::Alive) {
            self.wake_scheduler.notify_one();
        }
        Ok(())
    }

    /// Ends the kernels the store places on an agent that the agent does not run (they died while no one watched,
    /// for example with a standalone process that was stopped).
    /// It also destroys the kernels the agent runs that no live session owns (orphans).
    pub async fn reconcile_agent(&self, agent: &AgentId, addr: &str) {
        let Ok(recorded) = self.store.kernels_on_agent(agent).await else { return };
        let Ok(running) = self.agents.list_kernels(addr).await else { return };
        let running: HashSet<KernelId> = running.into_iter().map(|h| h.kernel_id).collect();
        for id in &running {
            if !recorded.iter().any(|k| k.id == *id) {
                tracing::info!(kernel = %id, %agent, "destroying an orphan kernel");
                let _ = self.agents.destroy_kernel(addr, *id, true).await;
            }
        }
        for k in recorded {
            // Kernels still being created are the start path's business.
            if running.contains(&k.id)
                || matches!(k.status, KernelStatus::Scheduled | KernelStatus::Preparing | KernelStatus::Creating)
            {
                continue;
            }
            self.end_kernel(k.id, None, "kernel-lost: not running on its agent after a restart").await;
        }
    }

    /// A kernel ended by itself.
    pub async fn on_kernel_exited(&self, kernel: KernelId, exit_code: Option<i32>, reason: &str) {
        self.end_kernel(kernel, exit_code, reason).await;
    }

    async fn end_kernel(&self, kernel: KernelId, exit_code: Option<i32>, reason: &str) {
        let Ok(Some(k)) = self.store.kernel(kernel).await else { return };
        if k.status.is_dead() {
            return;
        }
        // A clean exit (or one whose code is unknown) terminates the kernel; a crash or an OOM kill is an error.
        let clean = matches!(exit_code, None | Some(0)) && reason != "oom-killed";
        let (end, info) = if clean && k.status.can_transition_to(KernelStatus::Terminated) {
            (KernelStatus::Terminated, reason.to_owned())
        } else {
            let code = exit_code.map(|c| format!(" (exit code {c})")).unwrap_or_default();
            (KernelStatus::Error, format!("{reason}{code}"))
        };
        let change = KernelChange { status: end, status_info: Some(info), container_id: None, exit_code };
        if let Err(e) = self.change_kernel(kernel, change).await {
            tracing::warn!(%kernel, error = %e, "could not record a kernel's end");
        }
    }

    /// Marks agents LOST when their last heartbeat is older than the timeout as of `now`, and ends their kernels
    /// with `agent-lost`. Answers how many it marked, once their kernels have ended (nothing is left running in the
    /// background). Steppable: tests pass `now` past the timeout instead of waiting for it.
    pub async fn check_liveness(&self, now: DateTime<Utc>) -> backend_core::Result<usize> {
        let timeout =
            chrono::Duration::from_std(self.config.heartbeat_timeout).unwrap_or(chrono::Duration::seconds(30));
        let mut lost = 0;
        for agent in self.store.list_agents().await? {
            if agent.status != AgentStatus::Alive {
                continue;
            }
            let seen = self.live.agent_last_seen(&agent.id).await?;
            if seen.is_some_and(|t| now - t <= timeout) {
                continue;
            }
            if seen.is_none() && now - self.started_at <= timeout {
                // This manager just started and has not heard from it yet.
                continue;
            }
            self.store.set_agent_status(&agent.id, AgentStatus::Lost, now).await?;
            lost += 1;
            for k in self.store.kernels_on_agent(&agent.id).await? {
                let change = KernelChange::status(KernelStatus::Error, "agent-lost".to_owned());
                let _ = self.change_kernel(k.id, change).await;
            }
        }
        Ok(lost)
    }
}

/// Checks agents' liveness periodically.
pub async fn watch_liveness(m: Arc<Manager>) {
    let mut tick = tokio::time::interval(m.config.heartbeat_timeout / 3);
    loop {
        tick.tick().await;
        if let Err(e) = m.check_liveness(Utc::now()).await {
            tracing::warn!(error = %e, "liveness check failed");
        }
    }
}
