//! The embedded SQLite metadata store against the `MetadataStore` conformance suite, in memory and in a file.

use backend_core::conformance::metadata_store;
use backend_core::ids::{InvitationId, VFolderId};
use backend_core::model::{Domain, Group, KeyPairResourcePolicy, ScalingGroup, User};
use backend_core::store::sqlite::SqliteStore;
use backend_core::store::MetadataStore;
use backend_core::vfolder::{InvitationState, VFolder, VFolderAccess, VFolderInvitation, VFolderPermission};
use backend_core::AccessKey;
use chrono::Utc;
use std::sync::Arc;

#[tokio::test]
async fn in_memory_store_passes_the_suite() {
    let store = SqliteStore::in_memory().expect("in-memory store");
    metadata_store::run(&store).await;
}

#[tokio::test]
async fn file_store_passes_the_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("metadata.db")).expect("file store");
    metadata_store::run(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_allocations_in_memory() {
    let store: Arc<dyn MetadataStore> = Arc::new(SqliteStore::in_memory().expect("in-memory store"));
    metadata_store::concurrent_allocations(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_allocations_through_two_connections_to_one_file() {
    // Two stores on one file are two connections: their write transactions must queue, not deadlock or overbook.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("metadata.db");
    let first = SqliteStore::open(&path).expect("first connection");
    let second = SqliteStore::open(&path).expect("second connection");
    let both: Arc<dyn MetadataStore> = Arc::new(Alternating { stores: [first, second], next: Default::default() });
    metadata_store::concurrent_allocations(both).await;
}

#[tokio::test]
async fn records_survive_reopening_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested").join("metadata.db");
    let owner = AccessKey::from("AKREOPEN");
    let (session, kernels) = metadata_store::pending_session(
        &owner,
        "kept",
        2,
        &backend_core::ResourceSlots::from_pairs([("cpu", "1")]).unwrap(),
        Utc::now(),
    );
    let heartbeat = metadata_store::heartbeat(backend_core::ResourceSlots::from_pairs([("cpu", "4")]).unwrap());
    {
        let store = SqliteStore::open(&path).expect("create");
        store.insert_session(&session, &kernels).await.expect("insert");
        store.upsert_agent(&heartbeat, Utc::now()).await.expect("agent");
    }
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(store.session(session.id).await.unwrap(), Some(session.clone()), "the session is still there");
    assert_eq!(store.kernels(session.id).await.unwrap(), kernels);
    assert_eq!(store.find_session(&owner, "kept").await.unwrap().map(|s| s.id), Some(session.id));
    assert!(store.agent(&heartbeat.id).await.unwrap().is_some());
}

/// Sends each call to the next of two stores, so concurrent calls use both connections.
struct Alternating {
    stores: [SqliteStore; 2],
    next: std::sync::atomic::AtomicUsize,
}

impl Alternating {
    fn pick(&self) -> &SqliteStore {
        &self.stores[self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 2]
    }
}

#[async_trait::async_trait]
impl MetadataStore for Alternating {
    async fn insert_keypair(&self, keypair: &backend_core::model::KeyPair) -> backend_core::Result<()> {
        self.pick().insert_keypair(keypair).await
    }
    async fn keypair(&self, access_key: &AccessKey) -> backend_core::Result<Option<backend_core::model::KeyPair>> {
        self.pick().keypair(access_key).await
    }
    async fn list_keypairs(&self) -> backend_core::Result<Vec<backend_core::model::KeyPair>> {
        self.pick().list_keypairs().await
    }
    async fn set_keypair_active(&self, access_key: &AccessKey, active: bool) -> backend_core::Result<()> {
        self.pick().set_keypair_active(access_key, active).await
    }
    async fn put_domain(&self, domain: &Domain) -> backend_core::Result<()> {
        self.pick().put_domain(domain).await
    }
    async fn domain(&self, name: &str) -> backend_core::Result<Option<Domain>> {
        self.pick().domain(name).await
    }
    async fn list_domains(&self) -> backend_core::Result<Vec<Domain>> {
        self.pick().list_domains().await
    }
    async fn delete_domain(&self, name: &str) -> backend_core::Result<()> {
        self.pick().delete_domain(name).await
    }
    async fn put_group(&self, group: &Group) -> backend_core::Result<()> {
        self.pick().put_group(group).await
    }
    async fn group(&self, domain: &str, name: &str) -> backend_core::Result<Option<Group>> {
        self.pick().group(domain, name).await
    }
    async fn list_groups(&self, domain: Option<&str>) -> backend_core::Result<Vec<Group>> {
        self.pick().list_groups(domain).await
    }
    async fn delete_group(&self, domain: &str, name: &str) -> backend_core::Result<()> {
        self.pick().delete_group(domain, name).await
    }
    async fn put_user(&self, user: &User) -> backend_core::Result<()> {
        self.pick().put_user(user).await
    }
    async fn user(&self, email: &str) -> backend_core::Result<Option<User>> {
        self.pick().user(email).await
    }
    async fn list_users(&self, domain: Option<&str>) -> backend_core::Result<Vec<User>> {
        self.pick().list_users(domain).await
    }
    async fn delete_user(&self, email: &str) -> backend_core::Result<()> {
        self.pick().delete_user(email).await
    }
    async fn put_resource_policy(&self, policy: &KeyPairResourcePolicy) -> backend_core::Result<()> {
        self.pick().put_resource_policy(policy).await
    }
    async fn resource_policy(&self, name: &str) -> backend_core::Result<Option<KeyPairResourcePolicy>> {
        self.pick().resource_policy(name).await
    }
    async fn list_resource_policies(&self) -> backend_core::Result<Vec<KeyPairResourcePolicy>> {
        self.pick().list_resource_policies().await
    }
    async fn delete_resource_policy(&self, name: &str) -> backend_core::Result<()> {
        self.pick().delete_resource_policy(name).await
    }
    async fn put_scaling_group(&self, group: &ScalingGroup) -> backend_core::Result<()> {
        self.pick().put_scaling_group(group).await
    }
    async fn scaling_group(&self, name: &str) -> backend_core::Result<Option<ScalingGroup>> {
        self.pick().scaling_group(name).await
    }
    async fn list_scaling_groups(&self) -> backend_core::Result<Vec<ScalingGroup>> {
        self.pick().list_scaling_groups().await
    }
    async fn delete_scaling_group(&self, name: &str) -> backend_core::Result<()> {
        self.pick().delete_scaling_group(name).await
    }
    async fn upsert_agent(
        &self,
        heartbeat: &backend_core::model::AgentHeartbeat,
        now: chrono::DateTime<Utc>,
    ) -> backend_core::Result<backend_core::model::AgentInfo> {
        self.pick().upsert_agent(heartbeat, now).await
    }
    async fn agent(&self, id: &backend_core::AgentId) -> backend_core::Result<Option<backend_core::model::AgentInfo>> {
        self.pick().agent(id).await
    }
    async fn list_agents(&self) -> backend_core::Result<Vec<backend_core::model::AgentInfo>> {
        self.pick().list_agents().await
    }
    async fn set_agent_status(
        &self,
        id: &backend_core::AgentId,
        status: backend_core::model::AgentStatus,
        now: chrono::DateTime<Utc>,
    ) -> backend_core::Result<()> {
        self.pick().set_agent_status(id, status, now).await
    }
    async fn insert_session(
        &self,
        session: &backend_core::model::SessionRecord,
        kernels: &[backend_core::model::KernelRecord],
    ) -> backend_core::Result<()> {
        self.pick().insert_session(session, kernels).await
    }
    async fn rename_session(&self, id: backend_core::SessionId, name: &str) -> backend_core::Result<()> {
        self.pick().rename_session(id, name).await
    }
    async fn session(
        &self,
        id: backend_core::SessionId,
    ) -> backend_core::Result<Option<backend_core::model::SessionRecord>> {
        self.pick().session(id).await
    }
    async fn find_session(
        &self,
        owner: &AccessKey,
        name_or_id: &str,
    ) -> backend_core::Result<Option<backend_core::model::SessionRecord>> {
        self.pick().find_session(owner, name_or_id).await
    }
    async fn list_sessions(
        &self,
        filter: &backend_core::store::SessionFilter,
    ) -> backend_core::Result<Vec<backend_core::model::SessionRecord>> {
        self.pick().list_sessions(filter).await
    }
    async fn pending_sessions(
        &self,
    ) -> backend_core::Result<Vec<(backend_core::model::SessionRecord, Vec<backend_core::model::KernelRecord>)>> {
        self.pick().pending_sessions().await
    }
    async fn kernels(
        &self,
        session: backend_core::SessionId,
    ) -> backend_core::Result<Vec<backend_core::model::KernelRecord>> {
        self.pick().kernels(session).await
    }
    async fn kernel(
        &self,
        id: backend_core::KernelId,
    ) -> backend_core::Result<Option<backend_core::model::KernelRecord>> {
        self.pick().kernel(id).await
    }
    async fn kernels_on_agent(
        &self,
        agent: &backend_core::AgentId,
    ) -> backend_core::Result<Vec<backend_core::model::KernelRecord>> {
        self.pick().kernels_on_agent(agent).await
    }
    async fn allocate(
        &self,
        session: backend_core::SessionId,
        placements: &[backend_core::store::Placement],
        now: chrono::DateTime<Utc>,
    ) -> backend_core::Result<()> {
        self.pick().allocate(session, placements, now).await
    }
    async fn update_kernel(
        &self,
        id: backend_core::KernelId,
        change: backend_core::store::KernelChange,
        now: chrono::DateTime<Utc>,
    ) -> backend_core::Result<backend_core::store::KernelTransition> {
        self.pick().update_kernel(id, change, now).await
    }
    async fn occupancy(
        &self,
        owners: &[AccessKey],
    ) -> backend_core::Result<std::collections::BTreeMap<AccessKey, (u32, backend_core::ResourceSlots)>> {
        self.pick().occupancy(owners).await
    }
    async fn occupancy_by_group_and_domain(
        &self,
        domains: &[String],
    ) -> backend_core::Result<backend_core::store::ScopeOccupancy> {
        self.pick().occupancy_by_group_and_domain(domains).await
    }
    async fn allocate_batch(
        &self,
        batch: &[backend_core::store::Allocation],
        now: chrono::DateTime<Utc>,
    ) -> backend_core::Result<Vec<backend_core::Result<backend_core::store::Allocated>>> {
        self.pick().allocate_batch(batch, now).await
    }
    async fn update_kernels(
        &self,
        changes: &[(backend_core::KernelId, backend_core::store::KernelChange)],
        now: chrono::DateTime<Utc>,
    ) -> backend_core::Result<Vec<backend_core::Result<backend_core::store::KernelTransition>>> {
        self.pick().update_kernels(changes, now).await
    }
    async fn update_session(
        &self,
        id: backend_core::SessionId,
        change: backend_core::store::SessionChange,
        now: chrono::DateTime<Utc>,
    ) -> backend_core::Result<Option<(backend_core::SessionStatus, backend_core::SessionStatus)>> {
        self.pick().update_session(id, change, now).await
    }
    async fn insert_vfolder(&self, folder: &VFolder) -> backend_core::Result<()> {
        self.pick().insert_vfolder(folder).await
    }
    async fn vfolder(&self, id: VFolderId) -> backend_core::Result<Option<VFolder>> {
        self.pick().vfolder(id).await
    }
    async fn list_vfolders(&self) -> backend_core::Result<Vec<VFolder>> {
        self.pick().list_vfolders().await
    }
    async fn accessible_vfolders(&self, email: &str) -> backend_core::Result<Vec<VFolderAccess>> {
        self.pick().accessible_vfolders(email).await
    }
    async fn rename_vfolder(&self, id: VFolderId, name: &str) -> backend_core::Result<()> {
        self.pick().rename_vfolder(id, name).await
    }
    async fn update_vfolder_options(
        &self,
        id: VFolderId,
        permission: VFolderPermission,
        cloneable: bool,
    ) -> backend_core::Result<()> {
        self.pick().update_vfolder_options(id, permission, cloneable).await
    }
    async fn delete_vfolder(&self, id: VFolderId) -> backend_core::Result<()> {
        self.pick().delete_vfolder(id).await
    }
    async fn set_vfolder_share(
        &self,
        id: VFolderId,
        email: &str,
        permission: Option<VFolderPermission>,
    ) -> backend_core::Result<()> {
        self.pick().set_vfolder_share(id, email, permission).await
    }
    async fn vfolder_shares(&self, id: VFolderId) -> backend_core::Result<Vec<(String, VFolderPermission)>> {
        self.pick().vfolder_shares(id).await
    }
    async fn insert_vfolder_invitation(&self, invitation: &VFolderInvitation) -> backend_core::Result<()> {
        self.pick().insert_vfolder_invitation(invitation).await
    }
    async fn vfolder_invitation(&self, id: InvitationId) -> backend_core::Result<Option<VFolderInvitation>> {
        self.pick().vfolder_invitation(id).await
    }
    async fn pending_vfolder_invitations(&self, invitee: &str) -> backend_core::Result<Vec<VFolderInvitation>> {
        self.pick().pending_vfolder_invitations(invitee).await
    }
    async fn answer_vfolder_invitation(
        &self,
        id: InvitationId,
        state: InvitationState,
        now: chrono::DateTime<Utc>,
    ) -> backend_core::Result<VFolderInvitation> {
        self.pick().answer_vfolder_invitation(id, state, now).await
    }
}
