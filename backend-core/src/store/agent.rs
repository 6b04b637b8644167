//! [`AgentStore`]: the agents that run kernels and the scaling groups they serve.

use crate::error::Result;
use crate::ids::AgentId;
use crate::model::{AgentHeartbeat, AgentInfo, AgentStatus, ScalingGroup};
use chrono::{DateTime, Utc};

store_trait! {
    /// Agents and scaling groups.
    pub trait AgentStore {
        /// Records a heartbeat: a new agent is inserted ALIVE with `first_contact = now` and nothing occupied; a known
        /// one becomes ALIVE with the heartbeat's address, capacity and images, keeping its occupied slots and first
        /// contact.
        async fn upsert_agent(&self, heartbeat: &AgentHeartbeat, now: DateTime<Utc>) -> Result<AgentInfo>;
        /// An agent by id.
        async fn agent(&self, id: &AgentId) -> Result<Option<AgentInfo>>;
        /// Every agent, by id.
        async fn list_agents(&self) -> Result<Vec<AgentInfo>>;
        /// Sets an agent's status; LOST also sets `lost_at = now`. `NotFound` when unknown.
        async fn set_agent_status(&self, id: &AgentId, status: AgentStatus, now: DateTime<Utc>) -> Result<()>;

        /// Adds a scaling group. `AlreadyExists` when the name is taken (decided by the insert itself).
        async fn insert_scaling_group(&self, group: &ScalingGroup) -> Result<()>;
        /// Creates or replaces a scaling group (a replaced one keeps its `created_at`).
        async fn put_scaling_group(&self, group: &ScalingGroup) -> Result<()>;
        /// A scaling group by name.
        async fn scaling_group(&self, name: &str) -> Result<Option<ScalingGroup>>;
        /// Every scaling group, by name.
        async fn list_scaling_groups(&self) -> Result<Vec<ScalingGroup>>;
        /// Deletes a scaling group. `NotFound` when unknown, `Conflict` while agents serve it.
        async fn delete_scaling_group(&self, name: &str) -> Result<()>;
    }
}
