//! A [`MetadataStore`] decorator that fails chosen methods on demand: failure injection at named points, the
//! points being the trait's method names (`allocate`, `update_kernel`, ...). Tests wrap a real store in it to check
//! what callers leave behind when a store call fails midway (nothing half-allocated, no leaked slots).

use super::{
    Allocated, Allocation, KernelChange, KernelTransition, MetadataStore, Placement, SessionChange, SessionFilter,
};
use crate::error::{Error, Result};
use crate::ids::{AccessKey, AgentId, InvitationId, KernelId, SessionId, VFolderId};
use crate::model::{
    AgentHeartbeat, AgentInfo, AgentStatus, Domain, Group, KernelRecord, KeyPair, KeyPairResourcePolicy, ScalingGroup,
    SessionRecord, User,
};
use crate::slots::ResourceSlots;
use crate::status::SessionStatus;
use crate::vfolder::{InvitationState, VFolder, VFolderAccess, VFolderInvitation, VFolderPermission};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// The named points: every method of [`MetadataStore`].
pub const POINTS: &[&str] = &[
    "insert_keypair",
    "keypair",
    "list_keypairs",
    "set_keypair_active",
    "put_domain",
    "domain",
    "list_domains",
    "delete_domain",
    "put_group",
    "group",
    "list_groups",
    "delete_group",
    "put_user",
    "user",
    "list_users",
    "delete_user",
    "put_resource_policy",
    "resource_policy",
    "list_resource_policies",
    "delete_resource_policy",
    "put_scaling_group",
    "scaling_group",
    "list_scaling_groups",
    "delete_scaling_group",
    "upsert_agent",
    "agent",
    "list_agents",
    "set_agent_status",
    "insert_session",
    "rename_session",
    "session",
    "find_session",
    "list_sessions",
    "occupancy",
    "occupancy_by_group_and_domain",
    "pending_sessions",
    "kernels",
    "kernel",
    "kernels_on_agent",
    "allocate",
    "allocate_batch",
    "update_kernel",
    "update_kernels",
    "update_session",
    "insert_vfolder",
    "vfolder",
    "list_vfolders",
    "accessible_vfolders",
    "rename_vfolder",
    "update_vfolder_options",
    "delete_vfolder",
    "set_vfolder_share",
    "vfolder_shares",
    "insert_vfolder_invitation",
    "vfolder_invitation",
    "pending_vfolder_invitations",
    "answer_vfolder_invitation",
];

/// Wraps a store; every call passes through unless a failure is armed at its point.
pub struct FaultyStore {
    inner: Arc<dyn MetadataStore>,
    armed: Mutex<HashMap<&'static str, u32>>,
    fired: Mutex<HashMap<&'static str, u32>>,
}

impl FaultyStore {
    /// Wraps `inner` with no failure armed.
    pub fn new(inner: Arc<dyn MetadataStore>) -> Self {
        Self { inner, armed: Mutex::new(HashMap::new()), fired: Mutex::new(HashMap::new()) }
    }

    /// Makes the next `times` calls at `point` fail with `Unavailable` before reaching the store. Panics for a
    /// point that is not a method name, so a typo cannot make a test that injects nothing.
    pub fn fail(&self, point: &'static str, times: u32) {
        assert!(POINTS.contains(&point), "{point:?} is not a MetadataStore method");
        self.armed.lock().expect("faults").insert(point, times);
    }

    /// How many injected failures fired at `point` so far.
    pub fn fired(&self, point: &str) -> u32 {
        self.fired.lock().expect("faults").get(point).copied().unwrap_or(0)
    }

    fn check(&self, point: &'static str) -> Result<()> {
        let mut armed = self.armed.lock().expect("faults");
        match armed.get_mut(point) {
            Some(left) if *left > 0 => {
                *left -= 1;
                *self.fired.lock().expect("faults").entry(point).or_default() += 1;
                Err(Error::Unavailable { msg: format!("injected failure at {point}") })
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl MetadataStore for FaultyStore {
    async fn insert_keypair(&self, keypair: &KeyPair) -> Result<()> {
        self.check("insert_keypair")?;
        self.inner.insert_keypair(keypair).await
    }

    async fn keypair(&self, access_key: &AccessKey) -> Result<Option<KeyPair>> {
        self.check("keypair")?;
        self.inner.keypair(access_key).await
    }

    async fn list_keypairs(&self) -> Result<Vec<KeyPair>> {
        self.check("list_keypairs")?;
        self.inner.list_keypairs().await
    }

    async fn set_keypair_active(&self, access_key: &AccessKey, active: bool) -> Result<()> {
        self.check("set_keypair_active")?;
        self.inner.set_keypair_active(access_key, active).await
    }

    async fn put_domain(&self, domain: &Domain) -> Result<()> {
        self.check("put_domain")?;
        self.inner.put_domain(domain).await
    }

    async fn domain(&self, name: &str) -> Result<Option<Domain>> {
        self.check("domain")?;
        self.inner.domain(name).await
    }

    async fn list_domains(&self) -> Result<Vec<Domain>> {
        self.check("list_domains")?;
        self.inner.list_domains().await
    }

    async fn delete_domain(&self, name: &str) -> Result<()> {
        self.check("delete_domain")?;
        self.inner.delete_domain(name).await
    }

    async fn put_group(&self, group: &Group) -> Result<()> {
        self.check("put_group")?;
        self.inner.put_group(group).await
    }

    async fn group(&self, domain: &str, name: &str) -> Result<Option<Group>> {
        self.check("group")?;
        self.inner.group(domain, name).await
    }

    async fn list_groups(&self, domain: Option<&str>) -> Result<Vec<Group>> {
        self.check("list_groups")?;
        self.inner.list_groups(domain).await
    }

    async fn delete_group(&self, domain: &str, name: &str) -> Result<()> {
        self.check("delete_group")?;
        self.inner.delete_group(domain, name).await
    }

    async fn put_user(&self, user: &User) -> Result<()> {
        self.check("put_user")?;
        self.inner.put_user(user).await
    }

    async fn user(&self, email: &str) -> Result<Option<User>> {
        self.check("user")?;
        self.inner.user(email).await
    }

    async fn list_users(&self, domain: Option<&str>) -> Result<Vec<User>> {
        self.check("list_users")?;
        self.inner.list_users(domain).await
    }

    async fn delete_user(&self, email: &str) -> Result<()> {
        self.check("delete_user")?;
        self.inner.delete_user(email).await
    }

    async fn put_resource_policy(&self, policy: &KeyPairResourcePolicy) -> Result<()> {
        self.check("put_resource_policy")?;
        self.inner.put_resource_policy(policy).await
    }

    async fn resource_policy(&self, name: &str) -> Result<Option<KeyPairResourcePolicy>> {
        self.check("resource_policy")?;
        self.inner.resource_policy(name).await
    }

    async fn list_resource_policies(&self) -> Result<Vec<KeyPairResourcePolicy>> {
        self.check("list_resource_policies")?;
        self.inner.list_resource_policies().await
    }

    async fn delete_resource_policy(&self, name: &str) -> Result<()> {
        self.check("delete_resource_policy")?;
        self.inner.delete_resource_policy(name).await
    }

    async fn put_scaling_group(&self, group: &ScalingGroup) -> Result<()> {
        self.check("put_scaling_group")?;
        self.inner.put_scaling_group(group).await
    }

    async fn scaling_group(&self, name: &str) -> Result<Option<ScalingGroup>> {
        self.check("scaling_group")?;
        self.inner.scaling_group(name).await
    }

    async fn list_scaling_groups(&self) -> Result<Vec<ScalingGroup>> {
        self.check("list_scaling_groups")?;
        self.inner.list_scaling_groups().await
    }

    async fn delete_scaling_group(&self, name: &str) -> Result<()> {
        self.check("delete_scaling_group")?;
        self.inner.delete_scaling_group(name).await
    }

    async fn upsert_agent(&self, heartbeat: &AgentHeartbeat, now: DateTime<Utc>) -> Result<AgentInfo> {
        self.check("upsert_agent")?;
        self.inner.upsert_agent(heartbeat, now).await
    }

    async fn agent(&self, id: &AgentId) -> Result<Option<AgentInfo>> {
        self.check("agent")?;
        self.inner.agent(id).await
    }

    async fn list_agents(&self) -> Result<Vec<AgentInfo>> {
        self.check("list_agents")?;
        self.inner.list_agents().await
    }

    async fn set_agent_status(&self, id: &AgentId, status: AgentStatus, now: DateTime<Utc>) -> Result<()> {
        self.check("set_agent_status")?;
        self.inner.set_agent_status(id, status, now).await
    }

    async fn insert_session(&self, session: &SessionRecord, kernels: &[KernelRecord]) -> Result<()> {
        self.check("insert_session")?;
        self.inner.insert_session(session, kernels).await
    }

    async fn rename_session(&self, id: SessionId, name: &str) -> Result<()> {
        self.check("rename_session")?;
        self.inner.rename_session(id, name).await
    }

    async fn session(&self, id: SessionId) -> Result<Option<SessionRecord>> {
        self.check("session")?;
        self.inner.session(id).await
    }

    async fn find_session(&self, owner: &AccessKey, name_or_id: &str) -> Result<Option<SessionRecord>> {
        self.check("find_session")?;
        self.inner.find_session(owner, name_or_id).await
    }

    async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionRecord>> {
        self.check("list_sessions")?;
        self.inner.list_sessions(filter).await
    }

    async fn pending_sessions(&self) -> Result<Vec<(SessionRecord, Vec<KernelRecord>)>> {
        self.check("pending_sessions")?;
        self.inner.pending_sessions().await
    }

    async fn kernels(&self, session: SessionId) -> Result<Vec<KernelRecord>> {
        self.check("kernels")?;
        self.inner.kernels(session).await
    }

    async fn kernel(&self, id: KernelId) -> Result<Option<KernelRecord>> {
        self.check("kernel")?;
        self.inner.kernel(id).await
    }

    async fn kernels_on_agent(&self, agent: &AgentId) -> Result<Vec<KernelRecord>> {
        self.check("kernels_on_agent")?;
        self.inner.kernels_on_agent(agent).await
    }

    async fn allocate(&self, session: SessionId, placements: &[Placement], now: DateTime<Utc>) -> Result<()> {
        self.check("allocate")?;
        self.inner.allocate(session, placements, now).await
    }

    async fn occupancy(&self, owners: &[AccessKey]) -> Result<BTreeMap<AccessKey, (u32, ResourceSlots)>> {
        self.check("occupancy")?;
        self.inner.occupancy(owners).await
    }

    async fn occupancy_by_group_and_domain(&self, domains: &[String]) -> Result<super::ScopeOccupancy> {
        self.check("occupancy_by_group_and_domain")?;
        self.inner.occupancy_by_group_and_domain(domains).await
    }

    async fn allocate_batch(&self, batch: &[Allocation], now: DateTime<Utc>) -> Result<Vec<Result<Allocated>>> {
        self.check("allocate_batch")?;
        self.inner.allocate_batch(batch, now).await
    }

    async fn update_kernel(&self, id: KernelId, change: KernelChange, now: DateTime<Utc>) -> Result<KernelTransition> {
        self.check("update_kernel")?;
        self.inner.update_kernel(id, change, now).await
    }

    async fn update_kernels(
        &self,
        changes: &[(KernelId, KernelChange)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<KernelTransition>>> {
        self.check("update_kernels")?;
        self.inner.update_kernels(changes, now).await
    }

    async fn update_session(
        &self,
        id: SessionId,
        change: SessionChange,
        now: DateTime<Utc>,
    ) -> Result<Option<(SessionStatus, SessionStatus)>> {
        self.check("update_session")?;
        self.inner.update_session(id, change, now).await
    }

    async fn insert_vfolder(&self, folder: &VFolder) -> Result<()> {
        self.check("insert_vfolder")?;
        self.inner.insert_vfolder(folder).await
    }

    async fn vfolder(&self, id: VFolderId) -> Result<Option<VFolder>> {
        self.check("vfolder")?;
        self.inner.vfolder(id).await
    }

    async fn list_vfolders(&self) -> Result<Vec<VFolder>> {
        self.check("list_vfolders")?;
        self.inner.list_vfolders().await
    }

    async fn accessible_vfolders(&self, email: &str) -> Result<Vec<VFolderAccess>> {
        self.check("accessible_vfolders")?;
        self.inner.accessible_vfolders(email).await
    }

    async fn rename_vfolder(&self, id: VFolderId, name: &str) -> Result<()> {
        self.check("rename_vfolder")?;
        self.inner.rename_vfolder(id, name).await
    }

    async fn update_vfolder_options(
        &self,
        id: VFolderId,
        permission: VFolderPermission,
        cloneable: bool,
    ) -> Result<()> {
        self.check("update_vfolder_options")?;
        self.inner.update_vfolder_options(id, permission, cloneable).await
    }

    async fn delete_vfolder(&self, id: VFolderId) -> Result<()> {
        self.check("delete_vfolder")?;
        self.inner.delete_vfolder(id).await
    }

    async fn set_vfolder_share(&self, id: VFolderId, email: &str, permission: Option<VFolderPermission>) -> Result<()> {
        self.check("set_vfolder_share")?;
        self.inner.set_vfolder_share(id, email, permission).await
    }

    async fn vfolder_shares(&self, id: VFolderId) -> Result<Vec<(String, VFolderPermission)>> {
        self.check("vfolder_shares")?;
        self.inner.vfolder_shares(id).await
    }

    async fn insert_vfolder_invitation(&self, invitation: &VFolderInvitation) -> Result<()> {
        self.check("insert_vfolder_invitation")?;
        self.inner.insert_vfolder_invitation(invitation).await
    }

    async fn vfolder_invitation(&self, id: InvitationId) -> Result<Option<VFolderInvitation>> {
        self.check("vfolder_invitation")?;
        self.inner.vfolder_invitation(id).await
    }

    async fn pending_vfolder_invitations(&self, invitee: &str) -> Result<Vec<VFolderInvitation>> {
        self.check("pending_vfolder_invitations")?;
        self.inner.pending_vfolder_invitations(invitee).await
    }

    async fn answer_vfolder_invitation(
        &self,
        id: InvitationId,
        state: InvitationState,
        now: DateTime<Utc>,
    ) -> Result<VFolderInvitation> {
        self.check("answer_vfolder_invitation")?;
        self.inner.answer_vfolder_invitation(id, state, now).await
    }
}
