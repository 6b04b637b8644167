//! Live state: agents' last-seen times, stats with a time to live, and per-keypair rate-limit windows.
//!
//! [`LocalLiveState`] keeps them in process memory; `redis::RedisLiveState` (feature `redis`) in Redis.

use crate::error::Result;
use crate::ids::AgentId;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

#[cfg(feature = "redis")]
pub mod redis;

/// Fast-changing state that may be lost without harm (Redis in a cluster).
#[async_trait]
pub trait LiveState: Send + Sync {
    /// Records that an agent was seen at `at`.
    async fn touch_agent(&self, agent: &AgentId, at: DateTime<Utc>) -> Result<()>;
    /// When an agent was last seen.
    async fn agent_last_seen(&self, agent: &AgentId) -> Result<Option<DateTime<Utc>>>;
    /// Stores a stat (JSON) under `key` until `now + ttl`.
    async fn set_stat(&self, key: &str, value: serde_json::Value, ttl: Duration, now: DateTime<Utc>) -> Result<()>;
    /// A stat that has not expired at `now`.
    async fn stat(&self, key: &str, now: DateTime<Utc>) -> Result<Option<serde_json::Value>>;
    /// Counts one request of `access_key` at `now` and answers how many fell in the rolling `window` ending at
    /// `now`, this one included.
    async fn hit_rate_limit(&self, access_key: &str, now: DateTime<Utc>, window: Duration) -> Result<u64>;
}

/// Live state in process memory.
#[derive(Default)]
pub struct LocalLiveState {
    last_seen: Mutex<HashMap<AgentId, DateTime<Utc>>>,
    stats: Mutex<HashMap<String, (serde_json::Value, DateTime<Utc>)>>,
    hits: Mutex<HashMap<String, VecDeque<DateTime<Utc>>>>,
}

impl LocalLiveState {
    /// Empty state.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl LiveState for LocalLiveState {
    async fn touch_agent(&self, agent: &AgentId, at: DateTime<Utc>) -> Result<()> {
        self.last_seen.lock().expect("live lock").insert(agent.clone(), at);
        Ok(())
    }

    async fn agent_last_seen(&self, agent: &AgentId) -> Result<Option<DateTime<Utc>>> {
        Ok(self.last_seen.lock().expect("live lock").get(agent).copied())
    }

    async fn set_stat(&self, key: &str, value: serde_json::Value, ttl: Duration, now: DateTime<Utc>) -> Result<()> {
        let mut stats = self.stats.lock().expect("live lock");
        stats.retain(|_, (_, until)| *until > now);
        stats.insert(key.to_owned(), (value, now + ttl));
        Ok(())
    }

    async fn stat(&self, key: &str, now: DateTime<Utc>) -> Result<Option<serde_json::Value>> {
        let stats = self.stats.lock().expect("live lock");
        Ok(stats.get(key).filter(|(_, until)| *until > now).map(|(v, _)| v.clone()))
    }

    async fn hit_rate_limit(&self, access_key: &str, now: DateTime<Utc>, window: Duration) -> Result<u64> {
        let mut hits = self.hits.lock().expect("live lock");
        let q = hits.entry(access_key.to_owned()).or_default();
        while q.front().is_some_and(|t| *t <= now - window) {
            q.pop_front();
        }
        q.push_back(now);
        Ok(q.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_live_state_conforms() {
        crate::conformance::live_state::run(&LocalLiveState::new()).await;
    }
}
