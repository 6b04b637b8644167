//! The event bus between managers and agents, and the events that travel on it.
//!
//! Two deliveries: **broadcast** events reach every subscriber (session lifecycle, so that each manager can answer
//! its own waiters and event streams); **anycast** events reach one consumer of each consumer group (agent heartbeats
//! and kernel reports, which exactly one manager must turn into store writes).
//!
//! [`LocalEventBus`] delivers within one process; `redis::RedisEventBus` (feature `redis`) between processes.

use crate::error::Result;
use crate::ids::{AgentId, KernelId, SessionId};
use crate::model::AgentHeartbeat;
use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc};

#[cfg(feature = "redis")]
pub mod redis;

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A session's status changed. `name` is the Backend.AI event name (`session_started`, `kernel_creating`, ...).
    SessionLifecycle {
        /// The Backend.AI event name.
        event: String,
        /// The session.
        session_id: SessionId,
        /// The kernel, for kernel events.
        kernel_id: Option<KernelId>,
        /// The status entered.
        status: String,
        /// Why.
        reason: Option<String>,
        /// Exit code, for terminated kernels and sessions.
        exit_code: Option<i32>,
    },
    /// An agent is alive and this is what it has.
    AgentHeartbeat(AgentHeartbeat),
    /// A kernel ended on its own (the process exited or the container died).
    KernelExited {
        /// The agent that saw it.
        agent_id: AgentId,
        /// The kernel.
        kernel_id: KernelId,
        /// Its exit code.
        exit_code: Option<i32>,
        /// Why (`self-terminated`, `oom-killed`, ...).
        reason: String,
    },
    /// Something changed that may let pending sessions be placed.
    ScheduleRequested,
}

impl Event {
    /// Anycast events go to one consumer per group; the rest are broadcast.
    pub fn is_anycast(&self) -> bool {
        matches!(self, Event::AgentHeartbeat(_) | Event::KernelExited { .. })
    }

    /// The session this event is about, if any.
    pub fn session_id(&self) -> Option<SessionId> {
        match self {
            Event::SessionLifecycle { session_id, .. } => Some(*session_id),
            _ => None,
        }
    }
}

/// A stream of events.
pub type EventStream = BoxStream<'static, Event>;

/// Publishes and delivers [`Event`]s.
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Publishes an event: broadcast events to every current subscriber, anycast events to one consumer of each
    /// consumer group.
    async fn publish(&self, event: Event) -> Result<()>;
    /// Publishes several events in order, as [`EventBus::publish`] would one by one (a networked bus sends them in
    /// one round trip). On an error, the events before the failing one may have been published.
    async fn publish_all(&self, events: Vec<Event>) -> Result<()> {
        for event in events {
            self.publish(event).await?;
        }
        Ok(())
    }
    /// Subscribes to broadcast events published from now on.
    async fn subscribe(&self) -> Result<EventStream>;
    /// Joins consumer group `group` for anycast events: each event published after the group first exists goes to
    /// exactly one of the group's consumers.
    async fn consume(&self, group: &str) -> Result<EventStream>;
}

type SharedReceiver = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Event>>>;
type Groups = HashMap<String, (mpsc::UnboundedSender<Event>, SharedReceiver)>;

/// The in-process event bus: a broadcast channel, and one queue per consumer group shared by its consumers.
#[derive(Clone)]
pub struct LocalEventBus {
    broadcast: broadcast::Sender<Event>,
    groups: Arc<Mutex<Groups>>,
}

impl Default for LocalEventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalEventBus {
    /// A bus whose broadcast subscribers may lag up to 4,096 events before they miss some.
    pub fn new() -> Self {
        Self { broadcast: broadcast::channel(4096).0, groups: Arc::default() }
    }
}

#[async_trait]
impl EventBus for LocalEventBus {
    async fn publish(&self, event: Event) -> Result<()> {
        if event.is_anycast() {
            let groups = self.groups.lock().expect("event bus lock");
            for (tx, _) in groups.values() {
                let _ = tx.send(event.clone());
            }
        } else {
            // No subscriber is not an error: nobody is waiting.
            let _ = self.broadcast.send(event);
        }
        Ok(())
    }

    async fn subscribe(&self) -> Result<EventStream> {
        let rx = self.broadcast.subscribe();
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => return Some((ev, rx)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "event subscriber lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })))
    }

    async fn consume(&self, group: &str) -> Result<EventStream> {
        let rx = {
            let mut groups = self.groups.lock().expect("event bus lock");
            let (_, rx) = groups.entry(group.to_owned()).or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                (tx, Arc::new(tokio::sync::Mutex::new(rx)))
            });
            rx.clone()
        };
        Ok(Box::pin(futures::stream::unfold(rx, |rx| async move {
            let ev = rx.lock().await.recv().await?;
            Some((ev, rx))
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_bus_conforms() {
        crate::conformance::event_bus::run(&LocalEventBus::new()).await;
    }
}
