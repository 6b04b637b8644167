//! The [`MetadataStore`] suite: what every implementation (SQLite, PostgreSQL, ...) must do, one module of checks
//! per store trait.
//!
//! The checks create their own keypairs, agents and sessions under fresh uuid-based names and only look at what they
//! created, so they pass on an empty store and on a database shared with other data. Timestamps are whole
//! microseconds, the precision every store keeps. After each check the occupancy invariant
//! ([`assert_occupancy_invariant`]) must hold for every agent of the store. An implementation runs them all with
//! [`metadata_store_suite!`](crate::metadata_store_suite), one test per check, plus
//! [`sessions::concurrent_allocations`] (which needs an `Arc` and a multi-threaded runtime).

pub mod accounts;
pub mod agents;
pub mod domains;
pub mod policies;
pub mod sessions;
pub mod vfolders;

/// Expands to the whole suite as tests: one module per store trait, one `#[tokio::test]` per check in it, each on a
/// fresh store from `$store` (an expression evaluating to a future of the store, e.g. `async {
/// SqliteStore::in_memory().unwrap() }`) and each followed by [`assert_occupancy_invariant`], so that one failing
/// check does not hide the others. Any type implementing the store traits will do, including a
/// [`Delegate`](crate::store::Delegate) that keeps a scratch database alive for as long as the store.
#[macro_export]
macro_rules! metadata_store_suite {
    ($store:expr) => {
        $crate::metadata_store_suite!(@checks $store;
            accounts: [keypairs, users, insert_user_refuses_taken_keys],
            domains: [domains, groups, insert_domain_and_group_refuse_taken_keys, concurrent_insert_domain],
            policies: [resource_policies, insert_resource_policy_refuses_a_taken_name],
            agents: [agents, scaling_groups, insert_scaling_group_refuses_a_taken_name],
            sessions: [
                sessions_insert_and_find,
                session_predicates,
                session_names,
                rename_session,
                list_sessions_filters,
                count_sessions_follows_the_filter,
                pending_sessions_oldest_first,
                allocate_places_kernels,
                allocate_refusals_change_nothing,
                allocate_batch_in_order,
                update_kernels_in_order,
                occupancy_counts_what_holds_resources,
                group_and_domain_occupancy,
                kernel_lifecycle,
                kernel_error_fails_session,
                update_session_moves_kernels,
                kernels_on_agent,
            ],
            vfolders: [vfolders, vfolder_sharing, vfolder_invitations, vfolder_quota_fields],
        );
    };
    (@checks $store:expr; $($module:ident: [$($check:ident),* $(,)?]),* $(,)?) => {
        $(
            mod $module {
                #[allow(unused_imports)]
                use super::*;
                $(
                    #[tokio::test]
                    async fn $check() {
                        let store = $store.await;
                        let store: &dyn $crate::store::MetadataStore = &store;
                        $crate::conformance::metadata_store::$module::$check(store).await;
                        $crate::conformance::metadata_store::assert_occupancy_invariant(store).await;
                    }
                )*
            }
        )*
    };
}

use crate::error::{ErrorKind, Result};
use crate::ids::{AccessKey, AgentId, InvitationId, KernelId, SessionId, VFolderId};
use crate::model::{
    AgentHeartbeat, AgentInfo, AgentStatus, Domain, Group, ImageInfo, KernelRecord, KeyPair, KeyPairResourcePolicy,
    Role, ScalingGroup, SessionRecord, SessionResult, SessionType, User,
};
use crate::slots::ResourceSlots;
use crate::status::{KernelStatus, SessionStatus, StatusHistory};
use crate::store::{
    Allocation, KernelChange, KernelTransition, MetadataStore, Placement, ScopeOccupancy, SessionChange, SessionFilter,
};
use crate::vfolder::{
    InvitationState, UsageMode, VFolder, VFolderAccess, VFolderInvitation, VFolderMount, VFolderOwner,
    VFolderPermission,
};
use chrono::{DateTime, Duration, SubsecRound, Utc};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use uuid::Uuid;

/// The invariant every store keeps: for every agent, `occupied_slots` equal the sum of the `occupied_slots` of the
/// kernels on it that hold resources (each of which holds exactly what it requested), and do not exceed
/// `available_slots`.
pub async fn assert_occupancy_invariant(store: &dyn MetadataStore) {
    for agent in store.list_agents().await.expect("list agents") {
        let mut held = ResourceSlots::new();
        for k in store.kernels_on_agent(&agent.id).await.expect("kernels on agent") {
            assert!(k.status.holds_resources(), "kernel {} on agent {} is {}", k.id, agent.id, k.status);
            assert_eq!(k.agent_id.as_ref(), Some(&agent.id), "kernel {} listed on the wrong agent", k.id);
            assert!(
                same_slots(&k.occupied_slots, &k.requested_slots),
                "kernel {} ({}) occupies {} but requested {}",
                k.id,
                k.status,
                k.occupied_slots,
                k.requested_slots
            );
            held = held + k.occupied_slots;
        }
        assert!(
            same_slots(&agent.occupied_slots, &held),
            "agent {}: occupied {} but its kernels hold {}",
            agent.id,
            agent.occupied_slots,
            held
        );
        assert!(
            agent.occupied_slots.fits_in(&agent.available_slots),
            "agent {}: occupied {} exceeds available {}",
            agent.id,
            agent.occupied_slots,
            agent.available_slots
        );
    }
}

/// A heartbeat of a new agent (uuid-based id) with the given capacity.
pub fn heartbeat(capacity: ResourceSlots) -> AgentHeartbeat {
    let id = format!("conformance-agent-{}", Uuid::new_v4().simple());
    AgentHeartbeat {
        addr: format!("http://{id}.invalid:6001"),
        id: AgentId(id),
        scaling_group: "default".into(),
        architecture: "x86_64".into(),
        available_slots: capacity,
        images: vec![ImageInfo {
            name: "python:3.11".into(),
            aliases: vec!["python".into()],
            lang: "python".into(),
            min_slots: cpu("0.5"),
        }],
        runtime: "process".into(),
        version: "0.1.0".into(),
    }
}

/// A PENDING session of `owner` named `name` with `kernels` kernels (one `main`, then `sub`s) each asking for `each`,
/// created at `created_at` (truncated to the microsecond), ready for [`MetadataStore::insert_session`].
pub fn pending_session(
    owner: &AccessKey,
    name: &str,
    kernels: u32,
    each: &ResourceSlots,
    created_at: DateTime<Utc>,
) -> (SessionRecord, Vec<KernelRecord>) {
    let created_at = created_at.trunc_subsecs(6);
    let id = SessionId::new();
    let kernel_records = (0..kernels)
        .map(|i| {
            let (role, idx) = if i == 0 { ("main", 1) } else { ("sub", i) };
            KernelRecord {
                id: KernelId::new(),
                session_id: id,
                access_key: owner.clone(),
                cluster_role: role.into(),
                cluster_idx: idx,
                cluster_hostname: format!("{role}{idx}"),
                image: "python:3.11".into(),
                agent_id: None,
                agent_addr: None,
                container_id: None,
                status: KernelStatus::Pending,
                status_info: None,
                status_history: StatusHistory::starting(KernelStatus::Pending, created_at),
                requested_slots: each.clone(),
                occupied_slots: ResourceSlots::new(),
                exit_code: None,
                created_at,
                terminated_at: None,
            }
        })
        .collect();
    let session = SessionRecord {
        id,
        name: name.into(),
        access_key: owner.clone(),
        domain: "default".into(),
        group: "default".into(),
        session_type: SessionType::Interactive,
        image: "python:3.11".into(),
        cluster_size: kernels,
        status: SessionStatus::Pending,
        status_info: None,
        status_history: StatusHistory::starting(SessionStatus::Pending, created_at),
        requested_slots: each.scaled(kernels),
        environ: BTreeMap::from([("CONFORMANCE".to_owned(), "1".to_owned())]),
        tag: Some("conformance".into()),
        scaling_group: "default".into(),
        priority: 0,
        startup_command: None,
        result: SessionResult::Undefined,
        created_at,
        terminated_at: None,
        starts_at: None,
        dependencies: vec![],
        designated_agents: vec![],
        architecture: None,
        vfolder_mounts: vec![],
        bootstrap_script: None,
        batch_timeout: None,
        shmem: None,
    };
    (session, kernel_records)
}

/// Now, at the microsecond precision every store keeps.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn slots(pairs: &[(&str, &str)]) -> ResourceSlots {
    ResourceSlots::from_pairs(pairs.iter().copied()).expect("valid slots")
}

fn cpu(amount: &str) -> ResourceSlots {
    slots(&[("cpu", amount)])
}

/// Equal amounts, where a missing slot and a zero one are the same.
fn same_slots(a: &ResourceSlots, b: &ResourceSlots) -> bool {
    a.fits_in(b) && b.fits_in(a)
}

fn statuses(history: &StatusHistory) -> Vec<&str> {
    history.0.iter().map(|c| c.status.as_str()).collect()
}

fn user_owner(u: &User) -> VFolderOwner {
    VFolderOwner::User { email: u.email.clone() }
}

fn group_owner(domain: &str, name: &str) -> VFolderOwner {
    VFolderOwner::Group { domain: domain.into(), name: name.into() }
}

/// A general-purpose folder record on host `local`.
fn folder(owner: VFolderOwner, name: &str, permission: VFolderPermission, created_at: DateTime<Utc>) -> VFolder {
    let creator = match &owner {
        VFolderOwner::User { email } => email.clone(),
        VFolderOwner::Group { .. } => "admin@conformance.invalid".into(),
    };
    VFolder {
        id: VFolderId::new(),
        name: name.into(),
        host: "local".into(),
        owner,
        usage_mode: UsageMode::General,
        permission,
        creator,
        max_size: None,
        cloneable: false,
        created_at,
    }
}

fn invitation(
    folder: &VFolder,
    inviter: &User,
    invitee: &User,
    permission: VFolderPermission,
    created_at: DateTime<Utc>,
) -> VFolderInvitation {
    VFolderInvitation {
        id: InvitationId::new(),
        vfolder: folder.id,
        inviter: inviter.email.clone(),
        invitee: invitee.email.clone(),
        permission,
        state: InvitationState::Pending,
        created_at,
        modified_at: created_at,
    }
}

/// A fresh domain with groups `team` and `other`, and users in the given groups.
async fn vfolder_fixture(store: &dyn MetadataStore, members: &[&[&str]]) -> (Domain, Vec<User>) {
    let t0 = now();
    let d = domain(&unique_name("conf-vfdomain"), t0);
    store.put_domain(&d).await.expect("put domain");
    for name in ["team", "other"] {
        store.put_group(&group(&d.name, name, t0)).await.expect("put group");
    }
    let mut users = Vec::new();
    for groups in members {
        let u = user(&d.name, groups, t0);
        store.put_user(&u).await.expect("put user");
        users.push(u);
    }
    (d, users)
}

/// What `email` may do with `id`, as [`MetadataStore::accessible_vfolders`] reports it.
async fn access_to(store: &dyn MetadataStore, email: &str, id: VFolderId) -> Option<(VFolderPermission, bool)> {
    let all = store.accessible_vfolders(email).await.expect("accessible folders");
    let mine: Vec<&VFolderAccess> = all.iter().filter(|a| a.folder.id == id).collect();
    assert!(mine.len() <= 1, "folder {id} is listed once for {email}: {mine:?}");
    mine.first().map(|a| (a.permission, a.is_owner))
}

fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::new_v4().simple())
}

#[track_caller]
fn expect_kind<T: Debug>(result: Result<T>, kind: ErrorKind, what: &str) {
    match result {
        Ok(value) => panic!("{what}: expected {kind:?}, got Ok({value:?})"),
        Err(e) => assert_eq!(e.kind(), kind, "{what}: got {e}"),
    }
}

fn keypair(created_at: DateTime<Utc>) -> KeyPair {
    KeyPair {
        access_key: AccessKey(format!("AKCONF{}", Uuid::new_v4().simple()).to_uppercase()),
        secret_key: Uuid::new_v4().simple().to_string(),
        user_id: format!("{}@conformance.invalid", Uuid::new_v4().simple()),
        role: Role::User,
        is_active: true,
        rate_limit: 1000,
        resource_policy: "default".into(),
        created_at: created_at.trunc_subsecs(6),
    }
}

fn domain(name: &str, created_at: DateTime<Utc>) -> Domain {
    Domain {
        name: name.into(),
        description: Some("conformance".into()),
        is_active: true,
        total_resource_slots: cpu("4"),
        created_at,
    }
}

fn group(domain: &str, name: &str, created_at: DateTime<Utc>) -> Group {
    Group {
        name: name.into(),
        domain: domain.into(),
        description: Some("conformance".into()),
        is_active: true,
        total_resource_slots: ResourceSlots::new(),
        created_at,
    }
}

/// A resource policy under a fresh name, with every field set.
fn policy(created_at: DateTime<Utc>) -> KeyPairResourcePolicy {
    KeyPairResourcePolicy {
        name: unique_name("conf-policy"),
        total_resource_slots: slots(&[("cpu", "8"), ("mem", "16g")]),
        max_concurrent_sessions: 5,
        max_containers_per_session: 2,
        max_pending_session_count: Some(3),
        idle_timeout: 600,
        max_session_lifetime: 86_400,
        allowed_vfolder_hosts: vec!["local".into(), "nfs".into()],
        max_vfolder_count: 12,
        max_quota_scope_size: Some(5 << 40),
        created_at,
    }
}

/// A user of `domain` in `groups`, with a fresh e-mail and username.
fn user(domain: &str, groups: &[&str], created_at: DateTime<Utc>) -> User {
    let id = Uuid::new_v4().simple();
    User {
        email: format!("{id}@conformance.invalid"),
        username: format!("conf-{id}"),
        domain: domain.into(),
        role: Role::User,
        is_active: true,
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        created_at,
    }
}

/// A new keypair, whose access key owns the sessions of a check.
async fn new_owner(store: &dyn MetadataStore) -> AccessKey {
    let kp = keypair(now());
    store.insert_keypair(&kp).await.expect("insert owner keypair");
    kp.access_key
}

async fn new_agent(store: &dyn MetadataStore, capacity: ResourceSlots) -> AgentInfo {
    store.upsert_agent(&heartbeat(capacity), now()).await.expect("upsert agent")
}

async fn new_agent_with_id(store: &dyn MetadataStore, id: AgentId, capacity: ResourceSlots) -> AgentInfo {
    let hb = AgentHeartbeat { id, ..heartbeat(capacity) };
    store.upsert_agent(&hb, now()).await.expect("upsert agent")
}

/// The heartbeat an agent would send again.
fn agent_heartbeat(agent: &AgentInfo) -> AgentHeartbeat {
    AgentHeartbeat {
        id: agent.id.clone(),
        addr: agent.addr.clone(),
        scaling_group: agent.scaling_group.clone(),
        architecture: agent.architecture.clone(),
        available_slots: agent.available_slots.clone(),
        images: agent.images.clone(),
        runtime: agent.runtime.clone(),
        version: "0.1.0".into(),
    }
}

async fn occupied(store: &dyn MetadataStore, agent: &AgentId) -> ResourceSlots {
    store.agent(agent).await.expect("agent").expect("agent exists").occupied_slots
}

/// Inserts a PENDING session of one-cpu kernels.
async fn insert(
    store: &dyn MetadataStore,
    owner: &AccessKey,
    name: &str,
    kernels: u32,
    created_at: DateTime<Utc>,
) -> (SessionRecord, Vec<KernelRecord>) {
    let (session, kernel_records) = pending_session(owner, name, kernels, &cpu("1"), created_at);
    store.insert_session(&session, &kernel_records).await.expect("insert session");
    (session, kernel_records)
}

/// Inserts a session and allocates all its kernels on `agent`; returns the records as stored afterwards.
async fn allocated(
    store: &dyn MetadataStore,
    owner: &AccessKey,
    agent: &AgentId,
    kernels: u32,
    each: &ResourceSlots,
    created_at: DateTime<Utc>,
) -> (SessionRecord, Vec<KernelRecord>) {
    let (session, kernel_records) = pending_session(owner, &unique_name("placed"), kernels, each, created_at);
    store.insert_session(&session, &kernel_records).await.expect("insert session");
    let placements: Vec<Placement> =
        kernel_records.iter().map(|k| Placement { kernel_id: k.id, agent_id: agent.clone() }).collect();
    store.allocate(session.id, &placements, session.created_at).await.expect("allocate");
    let session = store.session(session.id).await.unwrap().expect("session");
    let kernel_records = store.kernels(session.id).await.unwrap();
    (session, kernel_records)
}

async fn advance(
    store: &dyn MetadataStore,
    kernel: KernelId,
    status: KernelStatus,
    at: DateTime<Utc>,
) -> KernelTransition {
    let moved = store.update_kernel(kernel, KernelChange::status(status, None), at).await;
    moved.unwrap_or_else(|e| panic!("kernel {kernel} → {status}: {e}"))
}

/// What a refused call must leave untouched.
#[derive(Debug, PartialEq)]
struct Snapshot {
    session: Option<SessionRecord>,
    kernels: Vec<KernelRecord>,
    agents: Vec<Option<AgentInfo>>,
}

async fn snapshot(store: &dyn MetadataStore, session: SessionId, agents: &[AgentId]) -> Snapshot {
    let mut infos = Vec::new();
    for id in agents {
        infos.push(store.agent(id).await.expect("agent"));
    }
    Snapshot {
        session: store.session(session).await.expect("session"),
        kernels: store.kernels(session).await.expect("kernels"),
        agents: infos,
    }
}
