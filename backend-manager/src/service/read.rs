//! Records as stored, for views that decide themselves what their caller may see (the GraphQL queries, which check
//! roles and ownership per field): sessions, kernels, agents and keypairs, read without further checks.

use crate::Manager;
use backend_core::error::Result;
use backend_core::ids::{AccessKey, AgentId, SessionId};
use backend_core::model::{AgentInfo, KernelRecord, KeyPair, SessionRecord};
use backend_core::store::SessionFilter;

impl Manager {
    /// The sessions matching `filter`, newest first, whoever owns them.
    pub async fn session_records(&self, filter: &SessionFilter) -> Result<Vec<SessionRecord>> {
        self.store.list_sessions(filter).await
    }

    /// A session's kernels, the main kernel first.
    pub async fn kernels_of(&self, session: SessionId) -> Result<Vec<KernelRecord>> {
        self.store.kernels(session).await
    }

    /// The kernels placed on an agent whose status holds resources.
    pub async fn kernels_on_agent(&self, agent: &AgentId) -> Result<Vec<KernelRecord>> {
        self.store.kernels_on_agent(agent).await
    }

    /// An agent by id.
    pub async fn agent_record(&self, id: &AgentId) -> Result<Option<AgentInfo>> {
        self.store.agent(id).await
    }

    /// Every agent, by id.
    pub async fn agent_records(&self) -> Result<Vec<AgentInfo>> {
        self.store.list_agents().await
    }

    /// A keypair by access key (with its secret: the view decides whether to show it).
    pub async fn keypair_record(&self, access_key: &AccessKey) -> Result<Option<KeyPair>> {
        self.store.keypair(access_key).await
    }

    /// Every keypair, oldest first.
    pub async fn keypair_records(&self) -> Result<Vec<KeyPair>> {
        self.store.list_keypairs().await
    }
}
