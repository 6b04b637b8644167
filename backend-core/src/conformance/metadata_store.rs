//! The [`MetadataStore`] suite: what every implementation (SQLite, PostgreSQL, ...) must do.
//!
//! The checks create their own keypairs, agents and sessions under fresh uuid-based names and only look at what they
//! created, so they pass on an empty store and on a database shared with other data. Timestamps are whole
//! microseconds, the precision every store keeps. After each check the occupancy invariant
//! ([`assert_occupancy_invariant`]) must hold for every agent of the store.

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

/// Runs every check but [`concurrent_allocations`] (which needs an `Arc`), checking the occupancy invariant after
/// each.
pub async fn run(store: &dyn MetadataStore) {
    keypairs(store).await;
    assert_occupancy_invariant(store).await;
    domains(store).await;
    groups(store).await;
    users(store).await;
    resource_policies(store).await;
    scaling_groups(store).await;
    assert_occupancy_invariant(store).await;
    agents(store).await;
    assert_occupancy_invariant(store).await;
    sessions_insert_and_find(store).await;
    session_predicates(store).await;
    session_names(store).await;
    rename_session(store).await;
    list_sessions_filters(store).await;
    pending_sessions_oldest_first(store).await;
    allocate_places_kernels(store).await;
    assert_occupancy_invariant(store).await;
    allocate_refusals_change_nothing(store).await;
    assert_occupancy_invariant(store).await;
    allocate_batch_in_order(store).await;
    assert_occupancy_invariant(store).await;
    update_kernels_in_order(store).await;
    assert_occupancy_invariant(store).await;
    occupancy_counts_what_holds_resources(store).await;
    group_and_domain_occupancy(store).await;
    assert_occupancy_invariant(store).await;
    kernel_lifecycle(store).await;
    assert_occupancy_invariant(store).await;
    kernel_error_fails_session(store).await;
    assert_occupancy_invariant(store).await;
    update_session_moves_kernels(store).await;
    assert_occupancy_invariant(store).await;
    kernels_on_agent(store).await;
    assert_occupancy_invariant(store).await;
    vfolders(store).await;
    vfolder_sharing(store).await;
    vfolder_invitations(store).await;
    vfolder_quota_fields(store).await;
}

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

/// Keypairs: insert, get, list oldest first, duplicate refused, revoke and reactivate, unknown keys.
pub async fn keypairs(store: &dyn MetadataStore) {
    let t0 = now();
    let a = keypair(t0);
    let b = keypair(t0 + Duration::seconds(1));
    // Inserted newest first, so that "oldest first" is not just insertion order.
    store.insert_keypair(&b).await.expect("insert keypair b");
    store.insert_keypair(&a).await.expect("insert keypair a");
    assert_eq!(store.keypair(&a.access_key).await.unwrap(), Some(a.clone()), "a keypair reads back as written");

    let listed = store.list_keypairs().await.unwrap();
    let pos = |k: &KeyPair| listed.iter().position(|x| x.access_key == k.access_key).expect("listed");
    assert_eq!(listed[pos(&a)], a);
    assert_eq!(listed[pos(&b)], b);
    assert!(pos(&a) < pos(&b), "keypairs are listed oldest first");

    let mut dup = keypair(t0);
    dup.access_key = a.access_key.clone();
    expect_kind(store.insert_keypair(&dup).await, ErrorKind::AlreadyExists, "a taken access key");
    assert_eq!(store.keypair(&a.access_key).await.unwrap(), Some(a.clone()), "the refused insert changed nothing");

    store.set_keypair_active(&a.access_key, false).await.expect("revoke");
    assert!(!store.keypair(&a.access_key).await.unwrap().expect("still there").is_active, "revoked");
    assert!(store.keypair(&b.access_key).await.unwrap().expect("b").is_active, "only a was revoked");
    store.set_keypair_active(&a.access_key, true).await.expect("reactivate");
    assert_eq!(store.keypair(&a.access_key).await.unwrap(), Some(a), "reactivated");

    let unknown = AccessKey(format!("AKNONE{}", Uuid::new_v4().simple()));
    expect_kind(store.set_keypair_active(&unknown, false).await, ErrorKind::NotFound, "revoking an unknown key");
    assert_eq!(store.keypair(&unknown).await.unwrap(), None);
}

/// Domains: put reads back, a second put replaces all but `created_at`, list by name, delete, unknown names, and
/// `Conflict` while a group is in the domain.
pub async fn domains(store: &dyn MetadataStore) {
    let t0 = now();
    let b = domain(&unique_name("conf-domain-b"), t0);
    let a = Domain { name: unique_name("conf-domain-a"), ..b.clone() };
    store.put_domain(&b).await.expect("put domain b");
    store.put_domain(&a).await.expect("put domain a");
    assert_eq!(store.domain(&a.name).await.unwrap(), Some(a.clone()), "a domain reads back as written");

    let changed = Domain {
        description: None,
        is_active: false,
        total_resource_slots: cpu("8"),
        created_at: t0 + Duration::seconds(5),
        ..a.clone()
    };
    store.put_domain(&changed).await.expect("replace domain");
    let expected = Domain { created_at: a.created_at, ..changed };
    assert_eq!(store.domain(&a.name).await.unwrap(), Some(expected.clone()), "a replaced domain keeps created_at");

    let listed = store.list_domains().await.unwrap();
    let pos = |n: &str| listed.iter().position(|d| d.name == n).expect("listed");
    assert!(pos(&a.name) < pos(&b.name), "domains are listed by name");
    assert_eq!(listed[pos(&a.name)], expected);

    let g = group(&b.name, "conf-group", t0);
    store.put_group(&g).await.expect("put group");
    expect_kind(store.delete_domain(&b.name).await, ErrorKind::Conflict, "deleting a domain with a group");
    assert!(store.domain(&b.name).await.unwrap().is_some(), "the refused delete changed nothing");
    store.delete_group(&b.name, &g.name).await.expect("delete group");
    store.delete_domain(&b.name).await.expect("delete domain b");
    store.delete_domain(&a.name).await.expect("delete domain a");
    assert_eq!(store.domain(&a.name).await.unwrap(), None, "deleted");
    expect_kind(store.delete_domain(&a.name).await, ErrorKind::NotFound, "deleting an unknown domain");
}

/// Groups: keyed by domain and name (the same name in two domains is two groups), listed by domain then name,
/// `NotFound` for an unknown domain or group, `Conflict` while a user belongs to the group.
pub async fn groups(store: &dyn MetadataStore) {
    let t0 = now();
    let d1 = domain(&unique_name("conf-gdomain"), t0);
    let d2 = domain(&unique_name("conf-gdomain"), t0);
    store.put_domain(&d1).await.expect("put domain 1");
    store.put_domain(&d2).await.expect("put domain 2");
    let g1 = group(&d1.name, "shared", t0);
    let g2 = Group { domain: d2.name.clone(), description: None, ..g1.clone() };
    let other = group(&d1.name, "another", t0);
    for g in [&g1, &g2, &other] {
        store.put_group(g).await.expect("put group");
    }
    assert_eq!(store.group(&d1.name, "shared").await.unwrap(), Some(g1.clone()));
    assert_eq!(store.group(&d2.name, "shared").await.unwrap(), Some(g2.clone()), "one name, two domains");

    let replaced = Group {
        is_active: false,
        total_resource_slots: ResourceSlots::from_pairs([("cpu", "2"), ("mem", "1024")]).expect("slots"),
        created_at: t0 + Duration::seconds(3),
        ..g1.clone()
    };
    store.put_group(&replaced).await.expect("replace group");
    let g1 = Group { created_at: g1.created_at, ..replaced };
    assert_eq!(store.group(&d1.name, "shared").await.unwrap(), Some(g1.clone()), "replaced, created_at kept");

    assert_eq!(store.list_groups(Some(&d1.name)).await.unwrap(), vec![other.clone(), g1.clone()], "by name");
    let all = store.list_groups(None).await.unwrap();
    assert!(all.contains(&g1) && all.contains(&g2) && all.contains(&other), "all domains' groups are listed");

    let missing = group(&unique_name("conf-nodomain"), "x", t0);
    expect_kind(store.put_group(&missing).await, ErrorKind::NotFound, "a group of an unknown domain");
    expect_kind(store.delete_group(&d1.name, "nope").await, ErrorKind::NotFound, "deleting an unknown group");
    assert_eq!(store.group(&d1.name, "nope").await.unwrap(), None);

    let member = user(&d1.name, &["shared"], t0);
    store.put_user(&member).await.expect("put member");
    expect_kind(store.delete_group(&d1.name, "shared").await, ErrorKind::Conflict, "deleting a group with members");
    store.delete_user(&member.email).await.expect("delete member");
    for g in [&g1, &g2, &other] {
        store.delete_group(&g.domain, &g.name).await.expect("delete group");
    }
    assert_eq!(store.list_groups(Some(&d1.name)).await.unwrap(), vec![]);
    store.delete_domain(&d1.name).await.expect("delete domain 1");
    store.delete_domain(&d2.name).await.expect("delete domain 2");
}

/// Users: keyed by e-mail with their groups, replaced with new memberships, unique usernames, `NotFound` for an
/// unknown domain or group, `Conflict` while a keypair names the user, and a domain with users cannot go.
pub async fn users(store: &dyn MetadataStore) {
    let t0 = now();
    let d = domain(&unique_name("conf-udomain"), t0);
    store.put_domain(&d).await.expect("put domain");
    for name in ["g1", "g2"] {
        store.put_group(&group(&d.name, name, t0)).await.expect("put group");
    }
    let u = user(&d.name, &["g2", "g1"], t0);
    store.put_user(&u).await.expect("put user");
    let read = store.user(&u.email).await.unwrap().expect("user reads back");
    assert_eq!(read, User { groups: vec!["g1".into(), "g2".into()], ..u.clone() }, "groups come back sorted");

    let moved = User { role: Role::Admin, is_active: false, groups: vec!["g2".into()], ..u.clone() };
    store.put_user(&moved).await.expect("replace user");
    assert_eq!(store.user(&u.email).await.unwrap(), Some(moved.clone()), "replaced with its new memberships");

    let second = user(&d.name, &[], t0);
    store.put_user(&second).await.expect("put second user");
    let listed = store.list_users(Some(&d.name)).await.unwrap();
    let mut emails = vec![moved.email.clone(), second.email.clone()];
    emails.sort();
    assert_eq!(listed.iter().map(|u| u.email.clone()).collect::<Vec<_>>(), emails, "by e-mail, in the domain");
    assert!(store.list_users(None).await.unwrap().contains(&moved));

    let clash = User { username: moved.username.clone(), ..user(&d.name, &[], t0) };
    expect_kind(store.put_user(&clash).await, ErrorKind::AlreadyExists, "a taken username");
    assert_eq!(store.user(&clash.email).await.unwrap(), None, "the refused put changed nothing");
    let bad_group = User { groups: vec!["nope".into()], ..user(&d.name, &[], t0) };
    expect_kind(store.put_user(&bad_group).await, ErrorKind::NotFound, "a user in an unknown group");
    assert_eq!(store.user(&bad_group.email).await.unwrap(), None);
    let bad_domain = user(&unique_name("conf-nodomain"), &[], t0);
    expect_kind(store.put_user(&bad_domain).await, ErrorKind::NotFound, "a user of an unknown domain");

    store.delete_group(&d.name, "g1").await.expect("g1 lost its only member");
    expect_kind(store.delete_domain(&d.name).await, ErrorKind::Conflict, "deleting a domain with users");

    let kp = KeyPair { user_id: moved.email.clone(), ..keypair(t0) };
    store.insert_keypair(&kp).await.expect("insert keypair");
    expect_kind(store.delete_user(&moved.email).await, ErrorKind::Conflict, "deleting a user with a keypair");
    assert!(store.user(&moved.email).await.unwrap().is_some());

    store.delete_user(&second.email).await.expect("delete second");
    assert_eq!(store.user(&second.email).await.unwrap(), None);
    expect_kind(store.delete_user(&second.email).await, ErrorKind::NotFound, "deleting an unknown user");
}

/// Keypair resource policies: every field reads back, replace keeps `created_at`, listed by name, `Conflict`
/// while a keypair names the policy, `NotFound` when unknown.
pub async fn resource_policies(store: &dyn MetadataStore) {
    let t0 = now();
    let p = KeyPairResourcePolicy {
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
        created_at: t0,
    };
    store.put_resource_policy(&p).await.expect("put policy");
    let read = store.resource_policy(&p.name).await.unwrap().expect("reads back");
    assert!(same_slots(&read.total_resource_slots, &p.total_resource_slots));
    assert_eq!(KeyPairResourcePolicy { total_resource_slots: p.total_resource_slots.clone(), ..read }, p);

    let changed = KeyPairResourcePolicy {
        total_resource_slots: ResourceSlots::new(),
        max_pending_session_count: None,
        allowed_vfolder_hosts: vec![],
        max_vfolder_count: 0,
        max_quota_scope_size: None,
        created_at: t0 + Duration::seconds(9),
        ..p.clone()
    };
    store.put_resource_policy(&changed).await.expect("replace policy");
    let p = KeyPairResourcePolicy { created_at: p.created_at, ..changed };
    assert_eq!(store.resource_policy(&p.name).await.unwrap(), Some(p.clone()), "replaced, created_at kept");
    let q = KeyPairResourcePolicy { name: unique_name("conf-policz"), ..p.clone() };
    store.put_resource_policy(&q).await.expect("put second policy");
    let listed = store.list_resource_policies().await.unwrap();
    let pos = |n: &str| listed.iter().position(|x| x.name == n).expect("listed");
    assert!(pos(&p.name) < pos(&q.name), "policies are listed by name");

    let kp = KeyPair { resource_policy: p.name.clone(), ..keypair(t0) };
    store.insert_keypair(&kp).await.expect("insert keypair");
    expect_kind(store.delete_resource_policy(&p.name).await, ErrorKind::Conflict, "deleting a policy in use");
    store.delete_resource_policy(&q.name).await.expect("delete unused policy");
    assert_eq!(store.resource_policy(&q.name).await.unwrap(), None);
    expect_kind(store.delete_resource_policy(&q.name).await, ErrorKind::NotFound, "deleting an unknown policy");
}

/// Scaling groups: read back, replace keeps `created_at`, listed by name, `Conflict` while an agent serves it,
/// `NotFound` when unknown.
pub async fn scaling_groups(store: &dyn MetadataStore) {
    let t0 = now();
    let g = ScalingGroup {
        name: unique_name("conf-sgroup"),
        description: Some("conformance".into()),
        is_active: true,
        scheduler: "fifo".into(),
        agent_selector: Some("dispersed".into()),
        created_at: t0,
    };
    store.put_scaling_group(&g).await.expect("put scaling group");
    assert_eq!(store.scaling_group(&g.name).await.unwrap(), Some(g.clone()));
    let changed = ScalingGroup {
        scheduler: "lifo".into(),
        agent_selector: None,
        is_active: false,
        created_at: t0 + Duration::seconds(2),
        ..g.clone()
    };
    store.put_scaling_group(&changed).await.expect("replace scaling group");
    let g = ScalingGroup { created_at: g.created_at, ..changed };
    assert_eq!(store.scaling_group(&g.name).await.unwrap(), Some(g.clone()), "replaced, created_at kept");
    let h = ScalingGroup { name: unique_name("conf-sgrouq"), ..g.clone() };
    store.put_scaling_group(&h).await.expect("put second scaling group");
    let listed = store.list_scaling_groups().await.unwrap();
    let pos = |n: &str| listed.iter().position(|x| x.name == n).expect("listed");
    assert!(pos(&g.name) < pos(&h.name), "scaling groups are listed by name");

    let hb = AgentHeartbeat { scaling_group: g.name.clone(), ..heartbeat(cpu("1")) };
    store.upsert_agent(&hb, t0).await.expect("agent");
    expect_kind(store.delete_scaling_group(&g.name).await, ErrorKind::Conflict, "deleting a served scaling group");
    store.delete_scaling_group(&h.name).await.expect("delete scaling group");
    assert_eq!(store.scaling_group(&h.name).await.unwrap(), None);
    expect_kind(store.delete_scaling_group(&h.name).await, ErrorKind::NotFound, "deleting an unknown scaling group");
}

/// Agents: a new agent is ALIVE with nothing occupied; heartbeats update address, capacity and images but keep
/// first contact and occupied slots; LOST sets `lost_at`; unknown agents.
pub async fn agents(store: &dyn MetadataStore) {
    let t0 = now();
    let hb = heartbeat(slots(&[("cpu", "4"), ("mem", "4g")]));
    let info = store.upsert_agent(&hb, t0).await.expect("first heartbeat");
    assert_eq!(info.id, hb.id);
    assert_eq!(info.status, AgentStatus::Alive);
    assert_eq!(info.addr, hb.addr);
    assert_eq!(info.scaling_group, hb.scaling_group);
    assert_eq!(info.architecture, hb.architecture);
    assert_eq!(info.runtime, hb.runtime);
    assert_eq!(info.images, hb.images);
    assert!(same_slots(&info.available_slots, &hb.available_slots));
    assert!(info.occupied_slots.is_zero(), "a new agent has nothing occupied");
    assert!(info.schedulable);
    assert_eq!(info.first_contact, t0);
    assert_eq!(info.lost_at, None);
    assert_eq!(store.agent(&hb.id).await.unwrap(), Some(info.clone()), "upsert returns what is stored");

    // Something runs on it, then the next heartbeat brings a new address and more capacity.
    let owner = new_owner(store).await;
    let (session, _) = allocated(store, &owner, &hb.id, 1, &cpu("1"), t0).await;
    let mut hb2 = hb.clone();
    hb2.addr = format!("{}-moved", hb.addr);
    hb2.available_slots = slots(&[("cpu", "8"), ("mem", "8g")]);
    hb2.images.push(ImageInfo { name: "shell:1".into(), aliases: vec![], lang: "shell".into(), min_slots: cpu("0") });
    let info2 = store.upsert_agent(&hb2, t0 + Duration::seconds(60)).await.expect("second heartbeat");
    assert_eq!(info2.addr, hb2.addr, "address updated");
    assert!(same_slots(&info2.available_slots, &hb2.available_slots), "capacity updated");
    assert_eq!(info2.images, hb2.images, "images updated");
    assert_eq!(info2.first_contact, t0, "first contact kept");
    assert!(same_slots(&info2.occupied_slots, &cpu("1")), "occupied kept across heartbeats: {}", info2.occupied_slots);

    let lost_at = t0 + Duration::seconds(120);
    store.set_agent_status(&hb.id, AgentStatus::Lost, lost_at).await.expect("mark lost");
    let lost = store.agent(&hb.id).await.unwrap().expect("agent");
    assert_eq!(lost.status, AgentStatus::Lost);
    assert_eq!(lost.lost_at, Some(lost_at), "LOST sets lost_at");
    let back = store.upsert_agent(&hb2, t0 + Duration::seconds(180)).await.expect("heartbeat after loss");
    assert_eq!(back.status, AgentStatus::Alive, "a heartbeat revives a lost agent");
    assert_eq!(back.first_contact, t0);
    assert!(same_slots(&back.occupied_slots, &cpu("1")));

    let listed = store.list_agents().await.unwrap();
    assert!(listed.iter().any(|a| a.id == hb.id), "listed");
    assert!(listed.windows(2).all(|w| w[0].id < w[1].id), "agents are listed by id");

    let unknown = AgentId(format!("conformance-none-{}", Uuid::new_v4().simple()));
    assert_eq!(store.agent(&unknown).await.unwrap(), None);
    expect_kind(
        store.set_agent_status(&unknown, AgentStatus::Lost, t0).await,
        ErrorKind::NotFound,
        "marking an unknown agent lost",
    );

    // Cancelling the scheduled session hands its slot back.
    let change = SessionChange { status: SessionStatus::Cancelled, status_info: None, result: None };
    store.update_session(session.id, change, t0 + Duration::seconds(240)).await.expect("cancel");
    assert!(occupied(store, &hb.id).await.is_zero(), "the cancelled session's slot is free again");
}

/// Sessions: insert, read back by id, by name and by full id (only by their owner); kernels main first; unknown ids;
/// a taken session id and kernels of another session are refused.
pub async fn sessions_insert_and_find(store: &dyn MetadataStore) {
    let owner = new_owner(store).await;
    let other = new_owner(store).await;
    let name = unique_name("find");
    let (session, kernels) = pending_session(&owner, &name, 3, &cpu("1"), now());
    let reversed: Vec<KernelRecord> = kernels.iter().rev().cloned().collect();
    store.insert_session(&session, &reversed).await.expect("insert session");

    assert_eq!(store.session(session.id).await.unwrap(), Some(session.clone()), "reads back as written");
    assert_eq!(store.kernels(session.id).await.unwrap(), kernels, "kernels: main first, then by role and index");
    for k in &kernels {
        assert_eq!(store.kernel(k.id).await.unwrap().as_ref(), Some(k));
    }
    let by_id = store.find_session(&owner, &session.id.to_string()).await.unwrap();
    assert_eq!(by_id, Some(session.clone()), "found by full id");
    assert_eq!(store.find_session(&owner, &name).await.unwrap(), Some(session.clone()), "found by name");
    assert_eq!(store.find_session(&other, &session.id.to_string()).await.unwrap(), None, "not another owner's");
    assert_eq!(store.find_session(&other, &name).await.unwrap(), None, "not another owner's, by name");
    assert_eq!(store.find_session(&owner, &unique_name("none")).await.unwrap(), None);
    assert_eq!(store.session(SessionId::new()).await.unwrap(), None);
    assert_eq!(store.kernel(KernelId::new()).await.unwrap(), None);
    assert!(store.kernels(SessionId::new()).await.unwrap().is_empty());

    // The same id again, under another name and with new kernels: refused whole.
    let (mut again, mut again_kernels) = pending_session(&owner, &unique_name("find"), 1, &cpu("1"), now());
    again.id = session.id;
    again_kernels[0].session_id = session.id;
    expect_kind(store.insert_session(&again, &again_kernels).await, ErrorKind::AlreadyExists, "a taken session id");
    assert_eq!(store.kernel(again_kernels[0].id).await.unwrap(), None, "no kernel of the refused session");
    assert_eq!(store.session(session.id).await.unwrap(), Some(session.clone()));

    // Kernels that belong to another session.
    let (stray, _) = pending_session(&owner, &unique_name("find"), 1, &cpu("1"), now());
    let result = store.insert_session(&stray, &kernels[..1]).await;
    expect_kind(result, ErrorKind::InvalidParams, "kernels of another session");
    assert_eq!(store.session(stray.id).await.unwrap(), None);
}

/// Scheduling predicates: a start time, dependencies, designated agents and an architecture (and the bootstrap
/// script) read back as written, from every read path, and survive a status change.
pub async fn session_predicates(store: &dyn MetadataStore) {
    let owner = new_owner(store).await;
    let (first, first_kernels) = pending_session(&owner, &unique_name("dep"), 1, &cpu("1"), now());
    store.insert_session(&first, &first_kernels).await.expect("insert the dependency");
    let (second, second_kernels) = pending_session(&owner, &unique_name("dep"), 1, &cpu("1"), now());
    store.insert_session(&second, &second_kernels).await.expect("insert the dependency");
    let name = unique_name("preds");
    let (mut session, kernels) = pending_session(&owner, &name, 1, &cpu("1"), now());
    session.starts_at = Some(now() + Duration::minutes(5));
    session.dependencies = vec![first.id, second.id];
    session.designated_agents = vec![AgentId::from("agent-a"), AgentId::from("agent-b")];
    session.architecture = Some("aarch64".into());
    session.bootstrap_script = Some("pip install --user tqdm\n".into());
    session.batch_timeout = Some(90);
    session.shmem = Some(64 << 20);
    store.insert_session(&session, &kernels).await.expect("insert session");

    assert_eq!(store.session(session.id).await.unwrap(), Some(session.clone()), "reads back as written");
    assert_eq!(store.find_session(&owner, &name).await.unwrap(), Some(session.clone()), "found by name");
    let pending = store.pending_sessions().await.unwrap();
    let listed = pending.iter().find(|(s, _)| s.id == session.id).expect("listed as pending");
    assert_eq!(listed.0, session, "pending sessions carry the predicates");
    let filter = SessionFilter { access_key: Some(owner.clone()), ..SessionFilter::default() };
    let all = store.list_sessions(&filter).await.unwrap();
    assert_eq!(all.iter().find(|s| s.id == session.id), Some(&session), "listed with the predicates");

    let change = SessionChange {
        status: SessionStatus::Pending,
        status_info: Some("pending: waiting for 2 dependencies".into()),
        result: None,
    };
    store.update_session(session.id, change, now()).await.expect("note why it waits");
    let after = store.session(session.id).await.unwrap().unwrap();
    assert_eq!(after.status_info.as_deref(), Some("pending: waiting for 2 dependencies"));
    assert_eq!(
        (&after.starts_at, &after.dependencies, &after.designated_agents, &after.architecture),
        (&session.starts_at, &session.dependencies, &session.designated_agents, &session.architecture),
        "a status change keeps the predicates"
    );
    // Plain sessions keep the empty defaults.
    let plain = store.session(first.id).await.unwrap().unwrap();
    assert_eq!(
        (plain.starts_at, plain.dependencies, plain.designated_agents, plain.architecture),
        (None, vec![], vec![], None)
    );
}

/// Names: a live name is unique per owner, free again once its session is final; by name, the newest live session
/// wins over a newer final one, else the newest.
pub async fn session_names(store: &dyn MetadataStore) {
    let owner = new_owner(store).await;
    let other = new_owner(store).await;
    let name = unique_name("named");
    let t0 = now();
    // `first` is the newer one by creation time, so "the live one wins" below is not just "the newest wins".
    let (first, _) = insert(store, &owner, &name, 1, t0 + Duration::seconds(10)).await;

    let (second, second_kernels) = pending_session(&owner, &name, 1, &cpu("1"), t0);
    let refused = store.insert_session(&second, &second_kernels).await;
    expect_kind(refused, ErrorKind::AlreadyExists, "a live name taken by the same owner");
    assert_eq!(store.session(second.id).await.unwrap(), None, "nothing inserted");
    assert_eq!(store.kernel(second_kernels[0].id).await.unwrap(), None, "no kernel inserted");
    insert(store, &other, &name, 1, t0).await;

    let end =
        SessionChange { status: SessionStatus::Terminated, status_info: Some("user-requested".into()), result: None };
    let t1 = t0 + Duration::seconds(20);
    let moved = store.update_session(first.id, end, t1).await.expect("terminate the first");
    assert_eq!(moved, Some((SessionStatus::Pending, SessionStatus::Terminated)));
    let first = store.session(first.id).await.unwrap().expect("first");
    assert_eq!(first.terminated_at, Some(t1));

    store.insert_session(&second, &second_kernels).await.expect("the name is free once the first is final");
    let found = store.find_session(&owner, &name).await.unwrap().expect("by name");
    assert_eq!(found.id, second.id, "the live session wins over a newer final one");

    let cancel = SessionChange { status: SessionStatus::Cancelled, status_info: None, result: None };
    store.update_session(second.id, cancel, t1).await.expect("cancel the second");
    let found = store.find_session(&owner, &name).await.unwrap().expect("by name");
    assert_eq!(found.id, first.id, "with no live session, the newest");
}

/// Renaming: to a free name; not to another live session's name of the same owner; not a final session.
pub async fn rename_session(store: &dyn MetadataStore) {
    let owner = new_owner(store).await;
    let t0 = now();
    let (a, _) = insert(store, &owner, &unique_name("rename-a"), 1, t0).await;
    let (b, _) = insert(store, &owner, &unique_name("rename-b"), 1, t0).await;
    let fresh = unique_name("renamed");
    store.rename_session(a.id, &fresh).await.expect("rename to a free name");
    assert_eq!(store.find_session(&owner, &fresh).await.unwrap().map(|s| s.id), Some(a.id));
    expect_kind(store.rename_session(b.id, &fresh).await, ErrorKind::AlreadyExists, "a live name of the same owner");
    assert_eq!(store.session(b.id).await.unwrap().unwrap().name, b.name, "a refused rename changes nothing");
    let end = SessionChange { status: SessionStatus::Cancelled, status_info: None, result: None };
    store.update_session(a.id, end, t0).await.expect("cancel");
    expect_kind(store.rename_session(a.id, "later").await, ErrorKind::Conflict, "a final session");
    store.rename_session(b.id, &fresh).await.expect("the name is free once its holder is final");
    let unknown = store.rename_session(crate::ids::SessionId::new(), "x").await;
    assert_eq!(unknown.unwrap_err().kind().status(), 404);
}

/// Listing: by owner, by statuses, with a limit, newest first.
pub async fn list_sessions_filters(store: &dyn MetadataStore) {
    let owner = new_owner(store).await;
    let other = new_owner(store).await;
    let t0 = now();
    let mut ids = Vec::new();
    for i in 0..3 {
        let (s, _) = insert(store, &owner, &unique_name("listed"), 1, t0 + Duration::seconds(i)).await;
        ids.push(s.id);
    }
    let (foreign, _) = insert(store, &other, &unique_name("listed"), 1, t0 + Duration::seconds(3)).await;
    let cancel = SessionChange { status: SessionStatus::Cancelled, status_info: None, result: None };
    store.update_session(ids[1], cancel, t0 + Duration::seconds(4)).await.expect("cancel");

    let list = |access_key: Option<&AccessKey>, statuses: Option<Vec<SessionStatus>>, limit: Option<usize>| {
        let filter = SessionFilter { access_key: access_key.cloned(), statuses, limit };
        async move {
            let sessions = store.list_sessions(&filter).await.expect("list sessions");
            sessions.into_iter().map(|s| s.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(list(Some(&owner), None, None).await, vec![ids[2], ids[1], ids[0]], "by owner, newest first");
    let pending = list(Some(&owner), Some(vec![SessionStatus::Pending]), None).await;
    assert_eq!(pending, vec![ids[2], ids[0]], "by status");
    let ended = list(Some(&owner), Some(vec![SessionStatus::Cancelled, SessionStatus::Terminated]), None).await;
    assert_eq!(ended, vec![ids[1]], "by several statuses");
    assert_eq!(list(Some(&owner), None, Some(2)).await, vec![ids[2], ids[1]], "a limit keeps the newest");
    assert_eq!(list(Some(&other), None, None).await, vec![foreign.id]);

    let everyone = list(None, None, None).await;
    let pos = |id: SessionId| everyone.iter().position(|x| *x == id).expect("listed without an owner filter");
    assert!(pos(foreign.id) < pos(ids[2]) && pos(ids[2]) < pos(ids[1]) && pos(ids[1]) < pos(ids[0]));
}

/// Pending sessions come oldest first with their kernels, and leave the list when they stop pending.
pub async fn pending_sessions_oldest_first(store: &dyn MetadataStore) {
    let owner = new_owner(store).await;
    let t0 = now();
    // The later one is inserted first, so that "oldest first" is not just insertion order.
    let (late, late_kernels) = insert(store, &owner, &unique_name("pending"), 2, t0 + Duration::seconds(5)).await;
    let (early, early_kernels) = insert(store, &owner, &unique_name("pending"), 1, t0).await;

    let mine = |all: Vec<(SessionRecord, Vec<KernelRecord>)>| {
        all.into_iter().filter(|(s, _)| s.access_key == owner).collect::<Vec<_>>()
    };
    let pending = mine(store.pending_sessions().await.expect("pending sessions"));
    assert_eq!(pending.len(), 2, "both pending sessions");
    assert_eq!(pending[0], (early.clone(), early_kernels), "oldest first, with its kernels");
    assert_eq!(pending[1], (late.clone(), late_kernels), "then the next, kernels main first");

    let cancel = SessionChange { status: SessionStatus::Cancelled, status_info: None, result: None };
    store.update_session(late.id, cancel, t0 + Duration::seconds(6)).await.expect("cancel");
    let pending = mine(store.pending_sessions().await.unwrap());
    assert_eq!(pending.iter().map(|(s, _)| s.id).collect::<Vec<_>>(), vec![early.id], "cancelled ones leave");
}

/// Allocation: kernels become SCHEDULED on their agents and occupy their slots, the agents' occupied slots grow, the
/// session becomes SCHEDULED, and both histories record PENDING then SCHEDULED with their times.
pub async fn allocate_places_kernels(store: &dyn MetadataStore) {
    let a = new_agent(store, slots(&[("cpu", "4"), ("mem", "8g")])).await;
    let b = new_agent(store, slots(&[("cpu", "4"), ("mem", "8g")])).await;
    let owner = new_owner(store).await;
    let t0 = now();
    let each = slots(&[("cpu", "1"), ("mem", "1g")]);
    let (session, kernels) = pending_session(&owner, &unique_name("alloc"), 3, &each, t0);
    store.insert_session(&session, &kernels).await.expect("insert");

    // The main kernel and the first sub on `a`, the second sub on `b`.
    let placements = vec![
        Placement { kernel_id: kernels[0].id, agent_id: a.id.clone() },
        Placement { kernel_id: kernels[1].id, agent_id: a.id.clone() },
        Placement { kernel_id: kernels[2].id, agent_id: b.id.clone() },
    ];
    let t1 = t0 + Duration::seconds(1);
    store.allocate(session.id, &placements, t1).await.expect("allocate");

    let s = store.session(session.id).await.unwrap().expect("session");
    assert_eq!(s.status, SessionStatus::Scheduled);
    assert_eq!(statuses(&s.status_history), ["PENDING", "SCHEDULED"]);
    assert_eq!(s.status_history.entered(SessionStatus::Pending), Some(t0));
    assert_eq!(s.status_history.entered(SessionStatus::Scheduled), Some(t1));
    for (k, p) in store.kernels(session.id).await.unwrap().iter().zip(&placements) {
        let agent = if p.agent_id == a.id { &a } else { &b };
        assert_eq!(k.id, p.kernel_id);
        assert_eq!(k.status, KernelStatus::Scheduled);
        assert_eq!(k.agent_id.as_ref(), Some(&agent.id), "kernel records its agent");
        assert_eq!(k.agent_addr.as_ref(), Some(&agent.addr), "and the agent's address");
        assert!(same_slots(&k.occupied_slots, &each), "kernel occupies what it requested");
        assert_eq!(statuses(&k.status_history), ["PENDING", "SCHEDULED"]);
        assert_eq!(k.status_history.entered(KernelStatus::Scheduled), Some(t1));
    }
    assert!(same_slots(&occupied(store, &a.id).await, &each.scaled(2)), "agent a holds two kernels");
    assert!(same_slots(&occupied(store, &b.id).await, &each), "agent b holds one");
    let on_a: Vec<KernelId> = store.kernels_on_agent(&a.id).await.unwrap().iter().map(|k| k.id).collect();
    assert_eq!(on_a.len(), 2);
    assert!(on_a.contains(&kernels[0].id) && on_a.contains(&kernels[1].id));
    let pending = store.pending_sessions().await.unwrap();
    assert!(pending.iter().all(|(p, _)| p.id != session.id), "no longer pending");
}

/// Refused allocations (no room, no longer PENDING, agent LOST or unknown, placements that do not cover exactly the
/// session's kernels, unknown session) each leave session, kernels and agents exactly as they were.
pub async fn allocate_refusals_change_nothing(store: &dyn MetadataStore) {
    // `a` sorts before `b` and is placed first, so a store that writes agent by agent, in either order, touches `a`
    // before it finds that `b` lacks room.
    let base = format!("conformance-agent-{}", Uuid::new_v4().simple());
    let a = new_agent_with_id(store, AgentId(format!("{base}-1")), cpu("2")).await;
    let b = new_agent_with_id(store, AgentId(format!("{base}-2")), cpu("2")).await;
    let owner = new_owner(store).await;
    let t0 = now();
    let t1 = t0 + Duration::seconds(1);
    let agents = [a.id.clone(), b.id.clone()];

    // Each kernel fits `a` alone, three together do not.
    let (crowd, crowd_kernels) = insert(store, &owner, &unique_name("crowd"), 3, t0).await;
    let before = snapshot(store, crowd.id, &agents).await;
    let all_on_a: Vec<Placement> =
        crowd_kernels.iter().map(|k| Placement { kernel_id: k.id, agent_id: a.id.clone() }).collect();
    expect_kind(store.allocate(crowd.id, &all_on_a, t1).await, ErrorKind::QuotaExceeded, "three kernels on two cpus");
    assert_eq!(snapshot(store, crowd.id, &agents).await, before, "nothing changed after QuotaExceeded");

    // `b` is full; a session split over `a` (room) and `b` (no room) is refused whole.
    let (filler, _) = allocated(store, &owner, &b.id, 1, &cpu("2"), t0).await;
    let (split, split_kernels) = insert(store, &owner, &unique_name("split"), 2, t0).await;
    let before = snapshot(store, split.id, &agents).await;
    let placements = vec![
        Placement { kernel_id: split_kernels[0].id, agent_id: a.id.clone() },
        Placement { kernel_id: split_kernels[1].id, agent_id: b.id.clone() },
    ];
    expect_kind(store.allocate(split.id, &placements, t1).await, ErrorKind::QuotaExceeded, "one agent lacks room");
    assert_eq!(snapshot(store, split.id, &agents).await, before, "the agent with room was not touched");

    // The filler is SCHEDULED already.
    let before = snapshot(store, filler.id, &agents).await;
    let again: Vec<Placement> = store
        .kernels(filler.id)
        .await
        .unwrap()
        .iter()
        .map(|k| Placement { kernel_id: k.id, agent_id: a.id.clone() })
        .collect();
    expect_kind(store.allocate(filler.id, &again, t1).await, ErrorKind::Conflict, "allocating a SCHEDULED session");
    assert_eq!(snapshot(store, filler.id, &agents).await, before, "nothing changed after Conflict");

    // Placements that do not cover exactly the session's kernels.
    let (pair, pair_kernels) = insert(store, &owner, &unique_name("pair"), 2, t0).await;
    let before = snapshot(store, pair.id, &agents).await;
    let on_a = |k: &KernelRecord| Placement { kernel_id: k.id, agent_id: a.id.clone() };
    let incomplete = vec![on_a(&pair_kernels[0])];
    expect_kind(store.allocate(pair.id, &incomplete, t1).await, ErrorKind::InvalidParams, "a kernel left unplaced");
    let twice = vec![on_a(&pair_kernels[0]), on_a(&pair_kernels[0]), on_a(&pair_kernels[1])];
    expect_kind(store.allocate(pair.id, &twice, t1).await, ErrorKind::InvalidParams, "a kernel placed twice");
    let foreign = vec![on_a(&pair_kernels[0]), on_a(&pair_kernels[1]), on_a(&crowd_kernels[0])];
    expect_kind(store.allocate(pair.id, &foreign, t1).await, ErrorKind::InvalidParams, "another session's kernel");
    expect_kind(store.allocate(pair.id, &[], t1).await, ErrorKind::InvalidParams, "no placements");
    assert_eq!(snapshot(store, pair.id, &agents).await, before, "nothing changed after InvalidParams");

    // Unknown and LOST agents.
    let nowhere = AgentId(format!("conformance-none-{}", Uuid::new_v4().simple()));
    let unknown: Vec<Placement> =
        pair_kernels.iter().map(|k| Placement { kernel_id: k.id, agent_id: nowhere.clone() }).collect();
    expect_kind(store.allocate(pair.id, &unknown, t1).await, ErrorKind::AgentNotFound, "an unknown agent");
    assert_eq!(snapshot(store, pair.id, &agents).await, before, "nothing changed after an unknown agent");
    store.set_agent_status(&a.id, AgentStatus::Lost, t1).await.expect("lose a");
    let before = snapshot(store, pair.id, &agents).await;
    let placements: Vec<Placement> = pair_kernels.iter().map(on_a).collect();
    expect_kind(store.allocate(pair.id, &placements, t1).await, ErrorKind::AgentNotFound, "a LOST agent");
    assert_eq!(snapshot(store, pair.id, &agents).await, before, "nothing changed after a LOST agent");

    // The refused session is still allocatable once its agent is back.
    store.upsert_agent(&agent_heartbeat(&a), t1).await.expect("a is back");
    store.allocate(pair.id, &placements, t1).await.expect("allocate after the refusals");
    assert!(same_slots(&occupied(store, &a.id).await, &cpu("2")));

    let missing = store.allocate(SessionId::new(), &placements, t1).await;
    assert_eq!(missing.expect_err("an unknown session").kind().status(), 404, "an unknown session is not found");
}

/// A batch is allocated in order, each session seeing what the ones before it took: a refused session (unknown
/// agent, no room left, already SCHEDULED, unknown) gets the error `allocate` gives and changes nothing, and the
/// sessions after it are still allocated; the answers carry the allocated records.
pub async fn allocate_batch_in_order(store: &dyn MetadataStore) {
    let agent = new_agent(store, cpu("4")).await;
    let other = new_agent(store, cpu("4")).await;
    let owner = new_owner(store).await;
    let t0 = now();
    let t1 = t0 + Duration::seconds(1);
    let agents = [agent.id.clone(), other.id.clone()];
    let mut sessions = Vec::new();
    for (i, n) in ["2", "1", "2", "1"].iter().enumerate() {
        let (s, ks) = pending_session(&owner, &unique_name("batch"), 1, &cpu(n), t0 + Duration::milliseconds(i as i64));
        store.insert_session(&s, &ks).await.expect("insert");
        sessions.push((s, ks));
    }
    let on = |i: usize, agent_id: &AgentId| Allocation {
        session: sessions[i].0.id,
        placements: vec![Placement { kernel_id: sessions[i].1[0].id, agent_id: agent_id.clone() }],
    };
    let nowhere = AgentId(format!("conformance-none-{}", Uuid::new_v4().simple()));
    let unknown_session = Allocation { session: SessionId::new(), placements: on(0, &agent.id).placements };
    let before_1 = snapshot(store, sessions[1].0.id, &agents).await;
    let batch = vec![
        on(0, &agent.id), // 2 of 4
        on(1, &nowhere),  // unknown agent
        on(2, &agent.id), // 4 of 4
        on(3, &agent.id), // no room left
        on(0, &other.id), // SCHEDULED by the first allocation of the batch
        unknown_session,
    ];
    let answers = store.allocate_batch(&batch, t1).await.expect("the batch runs");
    assert_eq!(answers.len(), batch.len(), "one answer per allocation");
    let kinds: Vec<Option<ErrorKind>> = answers.iter().map(|a| a.as_ref().err().map(|e| e.kind())).collect();
    assert_eq!(
        kinds,
        vec![
            None,
            Some(ErrorKind::AgentNotFound),
            None,
            Some(ErrorKind::QuotaExceeded),
            Some(ErrorKind::Conflict),
            Some(ErrorKind::SessionNotFound),
        ]
    );
    for i in [0, 2] {
        let (s, ks) = answers[i].as_ref().unwrap();
        assert_eq!(s.id, sessions[i].0.id);
        assert_eq!(s.status, SessionStatus::Scheduled);
        assert_eq!(ks.len(), 1);
        assert_eq!(ks[0].agent_id.as_ref(), Some(&agent.id));
        assert_eq!(ks[0].agent_addr.as_ref(), Some(&agent.addr));
        let stored = store.session(s.id).await.unwrap().expect("session");
        assert_eq!(&stored, s, "the answer is the stored session");
        assert_eq!(&store.kernels(s.id).await.unwrap(), ks, "and the stored kernels");
    }
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("4")), "the agent is full");
    assert!(occupied(store, &other.id).await.is_zero(), "nothing went to the other agent");
    let after_1 = snapshot(store, sessions[1].0.id, &agents).await;
    assert_eq!(
        (after_1.session, after_1.kernels),
        (before_1.session, before_1.kernels),
        "the refused one is unchanged"
    );
    for i in [1, 3] {
        let s = store.session(sessions[i].0.id).await.unwrap().expect("session");
        assert_eq!(s.status, SessionStatus::Pending);
        assert_eq!(statuses(&s.status_history), ["PENDING"]);
        assert!(store.kernels(s.id).await.unwrap().iter().all(|k| k.agent_id.is_none() && k.occupied_slots.is_zero()));
    }
    assert!(store.allocate_batch(&[], t1).await.expect("an empty batch").is_empty());
}

/// A batch of kernel changes is applied in order, each as `update_kernel` would: two moves of the same kernel in
/// one batch both land, a refused change (unknown kernel, a move the table forbids) changes nothing and the others
/// go on, a dying kernel gives its slots back, and each session follows its kernels.
pub async fn update_kernels_in_order(store: &dyn MetadataStore) {
    let agent = new_agent(store, cpu("4")).await;
    let owner = new_owner(store).await;
    let t0 = now();
    let t1 = t0 + Duration::seconds(1);
    let (starting, starting_kernels) = allocated(store, &owner, &agent.id, 1, &cpu("1"), t0).await;
    let (doomed, doomed_kernels) = allocated(store, &owner, &agent.id, 1, &cpu("2"), t0).await;
    let (k, d) = (starting_kernels[0].id, doomed_kernels[0].id);
    let batch = vec![
        (k, KernelChange::status(KernelStatus::Preparing, None)),
        (KernelId::new(), KernelChange::status(KernelStatus::Preparing, None)),
        (k, KernelChange::status(KernelStatus::Pending, None)),
        (k, KernelChange::status(KernelStatus::Creating, None)),
        (d, KernelChange::status(KernelStatus::Cancelled, Some("gone".into()))),
    ];
    let answers = store.update_kernels(&batch, t1).await.expect("the batch runs");
    let kinds: Vec<Option<ErrorKind>> = answers.iter().map(|a| a.as_ref().err().map(|e| e.kind())).collect();
    assert_eq!(kinds, vec![None, Some(ErrorKind::KernelNotFound), Some(ErrorKind::Conflict), None, None]);
    let moves: Vec<Option<(SessionStatus, SessionStatus)>> =
        answers.iter().filter_map(|a| a.as_ref().ok()).map(|t| t.session).collect();
    assert_eq!(
        moves,
        vec![
            Some((SessionStatus::Scheduled, SessionStatus::Preparing)),
            Some((SessionStatus::Preparing, SessionStatus::Creating)),
            Some((SessionStatus::Scheduled, SessionStatus::Cancelled)),
        ]
    );

    let kernel = store.kernel(k).await.unwrap().expect("kernel");
    assert_eq!(kernel.status, KernelStatus::Creating);
    assert_eq!(statuses(&kernel.status_history), ["PENDING", "SCHEDULED", "PREPARING", "CREATING"]);
    assert_eq!(answers[3].as_ref().unwrap().kernel, kernel, "the answer is the stored kernel");
    let s = store.session(starting.id).await.unwrap().expect("session");
    assert_eq!(s.status, SessionStatus::Creating);
    assert_eq!(statuses(&s.status_history), ["PENDING", "SCHEDULED", "PREPARING", "CREATING"]);

    let dead = store.kernel(d).await.unwrap().expect("kernel");
    assert_eq!(dead.status, KernelStatus::Cancelled);
    assert!(dead.occupied_slots.is_zero() && dead.terminated_at == Some(t1));
    let s = store.session(doomed.id).await.unwrap().expect("session");
    assert_eq!(
        (s.status, s.status_info.as_deref(), s.terminated_at),
        (SessionStatus::Cancelled, Some("gone"), Some(t1))
    );
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("1")), "the cancelled kernel's slots are back");
    assert!(store.update_kernels(&[], t1).await.expect("an empty batch").is_empty());
}

/// `occupancy_by_group_and_domain` sums, for the domains asked about, the requested slots of the sessions whose
/// status holds resources per domain and per `(domain, group)`; PENDING and ended sessions, and the sessions of
/// domains not asked about, are left out. A group name used in two domains is two groups.
pub async fn group_and_domain_occupancy(store: &dyn MetadataStore) {
    let agent = new_agent(store, cpu("16")).await;
    let owner = new_owner(store).await;
    let (d1, d2, other) = (unique_name("conf-qdomain"), unique_name("conf-qdomain"), unique_name("conf-qdomain"));
    let t0 = now();
    let scoped = |domain: &str, group: &str, each: &str| {
        let (mut session, kernels) = pending_session(&owner, &unique_name("scoped"), 1, &cpu(each), t0);
        session.domain = domain.to_owned();
        session.group = group.to_owned();
        (session, kernels)
    };
    let mut ended = None;
    for (domain, group, each, allocate) in [
        (&d1, "a", "1", true),
        (&d1, "a", "2", true),
        (&d1, "b", "4", true),
        (&d1, "b", "8", false),
        (&d1, "b", "3", true),
        (&d2, "a", "0.5", true),
        (&other, "a", "1", true),
    ] {
        let (session, kernels) = scoped(domain, group, each);
        store.insert_session(&session, &kernels).await.expect("insert scoped session");
        if allocate {
            let placements: Vec<Placement> =
                kernels.iter().map(|k| Placement { kernel_id: k.id, agent_id: agent.id.clone() }).collect();
            store.allocate(session.id, &placements, t0).await.expect("allocate scoped session");
            if each == "3" {
                ended = Some(session.id);
            }
        }
    }
    let cancel = SessionChange { status: SessionStatus::Cancelled, status_info: None, result: None };
    store.update_session(ended.expect("one to end"), cancel, t0).await.expect("cancel");

    let got = store.occupancy_by_group_and_domain(&[d1.clone(), d2.clone()]).await.expect("scope occupancy");
    let groups: Vec<_> = got.groups.keys().cloned().collect();
    let key = |d: &str, g: &str| (d.to_owned(), g.to_owned());
    assert_eq!(groups, {
        let mut want = vec![key(&d1, "a"), key(&d1, "b"), key(&d2, "a")];
        want.sort();
        want
    });
    assert!(same_slots(&got.groups[&key(&d1, "a")], &cpu("3")), "two sessions of d1/a");
    assert!(same_slots(&got.groups[&key(&d1, "b")], &cpu("4")), "the pending and the cancelled one do not count");
    assert!(same_slots(&got.groups[&key(&d2, "a")], &cpu("0.5")), "the same group name in another domain");
    assert_eq!(got.domains.keys().collect::<Vec<_>>(), {
        let mut want = vec![&d1, &d2];
        want.sort();
        want
    });
    assert!(same_slots(&got.domains[&d1], &cpu("7")));
    assert!(same_slots(&got.domains[&d2], &cpu("0.5")));
    let none = store.occupancy_by_group_and_domain(&[unique_name("conf-qdomain")]).await.expect("empty domain");
    assert_eq!(none, ScopeOccupancy::default(), "a domain holding nothing is left out");
    assert_eq!(store.occupancy_by_group_and_domain(&[]).await.expect("nothing"), ScopeOccupancy::default());
}

/// `occupancy` counts, per owner asked about, the sessions whose status holds resources and sums their requested
/// slots; PENDING and ended sessions and owners not asked about are left out.
pub async fn occupancy_counts_what_holds_resources(store: &dyn MetadataStore) {
    let agent = new_agent(store, cpu("8")).await;
    let (owner, other, idle) = (new_owner(store).await, new_owner(store).await, new_owner(store).await);
    let t0 = now();
    allocated(store, &owner, &agent.id, 1, &cpu("1"), t0).await;
    allocated(store, &owner, &agent.id, 2, &cpu("2"), t0).await;
    let (ended, _) = allocated(store, &owner, &agent.id, 1, &cpu("1"), t0).await;
    let cancel = SessionChange { status: SessionStatus::Cancelled, status_info: None, result: None };
    store.update_session(ended.id, cancel, t0).await.expect("cancel");
    insert(store, &owner, &unique_name("waiting"), 1, t0).await;
    allocated(store, &other, &agent.id, 1, &cpu("1"), t0).await;
    insert(store, &idle, &unique_name("waiting"), 1, t0).await;

    let got = store.occupancy(&[owner.clone(), idle.clone()]).await.expect("occupancy");
    assert_eq!(got.keys().collect::<Vec<_>>(), vec![&owner], "only owners asked about that hold something");
    let (sessions, slots) = &got[&owner];
    assert_eq!(*sessions, 2, "two sessions hold resources");
    assert!(same_slots(slots, &cpu("5")), "1 cpu + 2 kernels of 2 cpus: {slots}");
    assert!(store.occupancy(&[]).await.expect("nobody").is_empty());
}

/// One kernel through PREPARING → CREATING → RUNNING → TERMINATING → TERMINATED: the session follows, the slots stay
/// held until the dead status and are released exactly once, and illegal moves are refused with nothing written.
pub async fn kernel_lifecycle(store: &dyn MetadataStore) {
    let agent = new_agent(store, cpu("4")).await;
    let owner = new_owner(store).await;
    let t0 = now();
    let at = |s: i64| t0 + Duration::seconds(s);
    // A neighbour on the same agent: releasing twice would eat into its slot.
    let (neighbour, neighbour_kernels) = allocated(store, &owner, &agent.id, 1, &cpu("1"), t0).await;
    let (session, kernels) = allocated(store, &owner, &agent.id, 1, &cpu("2"), t0).await;
    let id = kernels[0].id;
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("3")));

    let t = advance(store, id, KernelStatus::Preparing, at(2)).await;
    assert_eq!(t.session, Some((SessionStatus::Scheduled, SessionStatus::Preparing)), "the session follows");
    assert_eq!(t.kernel.status, KernelStatus::Preparing);
    let t = advance(store, id, KernelStatus::Creating, at(3)).await;
    assert_eq!(t.session, Some((SessionStatus::Preparing, SessionStatus::Creating)));
    let container = format!("container-{}", Uuid::new_v4().simple());
    let change = KernelChange {
        status: KernelStatus::Running,
        status_info: None,
        container_id: Some(container.clone()),
        exit_code: None,
    };
    let t = store.update_kernel(id, change, at(4)).await.expect("running");
    assert_eq!(t.session, Some((SessionStatus::Creating, SessionStatus::Running)));
    assert_eq!(t.kernel.container_id.as_deref(), Some(container.as_str()), "container id recorded");
    assert_eq!(store.kernel(id).await.unwrap().as_ref(), Some(&t.kernel), "the returned kernel is the stored one");
    assert_eq!(store.session(session.id).await.unwrap().expect("session").status, SessionStatus::Running);

    // Moving to the status it has only updates the other fields.
    let t = store
        .update_kernel(id, KernelChange::status(KernelStatus::Running, Some("warm".to_owned())), at(5))
        .await
        .expect("same status");
    assert_eq!(t.session, None, "no session change");
    assert_eq!(t.kernel.status_info.as_deref(), Some("warm"));
    assert_eq!(t.kernel.container_id.as_deref(), Some(container.as_str()), "fields given as None are kept");
    assert_eq!(statuses(&t.kernel.status_history).len(), 5, "no history entry for a non-move");

    // A move the table forbids: refused, nothing written.
    let before = snapshot(store, session.id, std::slice::from_ref(&agent.id)).await;
    let illegal = KernelChange {
        status: KernelStatus::Pending,
        status_info: Some("back".into()),
        container_id: Some("other".into()),
        exit_code: Some(3),
    };
    expect_kind(store.update_kernel(id, illegal, at(6)).await, ErrorKind::Conflict, "RUNNING → PENDING");
    assert_eq!(snapshot(store, session.id, std::slice::from_ref(&agent.id)).await, before, "nothing written");

    let t = store
        .update_kernel(id, KernelChange::status(KernelStatus::Terminating, Some("user-requested".to_owned())), at(7))
        .await
        .expect("terminating");
    assert_eq!(t.session, Some((SessionStatus::Running, SessionStatus::Terminating)));
    let s = store.session(session.id).await.unwrap().expect("session");
    assert_eq!(s.status_info.as_deref(), Some("user-requested"), "the kernel's reason goes to the session");
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("3")), "TERMINATING still holds its slots");

    let change =
        KernelChange { status: KernelStatus::Terminated, status_info: None, container_id: None, exit_code: Some(0) };
    let t = store.update_kernel(id, change, at(8)).await.expect("terminated");
    assert_eq!(t.session, Some((SessionStatus::Terminating, SessionStatus::Terminated)));
    assert!(t.kernel.occupied_slots.is_zero(), "a dead kernel holds nothing");
    assert_eq!(t.kernel.exit_code, Some(0));
    assert_eq!(t.kernel.terminated_at, Some(at(8)));
    assert_eq!(
        statuses(&t.kernel.status_history),
        ["PENDING", "SCHEDULED", "PREPARING", "CREATING", "RUNNING", "TERMINATING", "TERMINATED"]
    );
    assert_eq!(t.kernel.status_history.entered(KernelStatus::Running), Some(at(4)));
    let s = store.session(session.id).await.unwrap().expect("session");
    assert_eq!(s.status, SessionStatus::Terminated);
    assert_eq!(s.terminated_at, Some(at(8)));
    assert_eq!(
        statuses(&s.status_history),
        ["PENDING", "SCHEDULED", "PREPARING", "CREATING", "RUNNING", "TERMINATING", "TERMINATED"]
    );
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("1")), "the slots went back; the neighbour's stay");

    // Released exactly once: a repeated TERMINATED report changes no slots.
    let change =
        KernelChange { status: KernelStatus::Terminated, status_info: None, container_id: None, exit_code: Some(0) };
    store.update_kernel(id, change, at(9)).await.expect("a repeated report");
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("1")), "not released twice");
    expect_kind(
        store.update_kernel(id, KernelChange::status(KernelStatus::Running, None), at(9)).await,
        ErrorKind::Conflict,
        "TERMINATED → RUNNING",
    );

    // A live kernel's illegal move: SCHEDULED → RUNNING skips the table.
    let before = snapshot(store, neighbour.id, std::slice::from_ref(&agent.id)).await;
    let skip = KernelChange {
        status: KernelStatus::Running,
        status_info: Some("skip".into()),
        container_id: Some("c".into()),
        exit_code: None,
    };
    expect_kind(
        store.update_kernel(neighbour_kernels[0].id, skip, at(10)).await,
        ErrorKind::Conflict,
        "SCHEDULED → RUNNING",
    );
    assert_eq!(snapshot(store, neighbour.id, std::slice::from_ref(&agent.id)).await, before, "nothing written");

    let missing = store.update_kernel(KernelId::new(), KernelChange::status(KernelStatus::Running, None), at(10)).await;
    assert_eq!(missing.expect_err("an unknown kernel").kind().status(), 404, "an unknown kernel is not found");

    let t = advance(store, neighbour_kernels[0].id, KernelStatus::Terminated, at(11)).await;
    assert_eq!(t.session, Some((SessionStatus::Scheduled, SessionStatus::Terminated)));
    assert!(occupied(store, &agent.id).await.is_zero());
}

/// A two-kernel session where one kernel fails becomes ERROR; each kernel's slots go back once, and the session ends
/// TERMINATED when the failed kernel is cleaned up.
pub async fn kernel_error_fails_session(store: &dyn MetadataStore) {
    let agent = new_agent(store, cpu("4")).await;
    let owner = new_owner(store).await;
    let t0 = now();
    let at = |s: i64| t0 + Duration::seconds(s);
    let (_ballast, ballast_kernels) = allocated(store, &owner, &agent.id, 1, &cpu("1"), t0).await;
    let (session, kernels) = allocated(store, &owner, &agent.id, 2, &cpu("1"), t0).await;
    let (main, sub) = (kernels[0].id, kernels[1].id);

    let t = advance(store, main, KernelStatus::Preparing, at(1)).await;
    assert_eq!(t.session, None, "the session is as far as its least advanced kernel");
    advance(store, sub, KernelStatus::Preparing, at(1)).await;
    advance(store, main, KernelStatus::Creating, at(2)).await;
    advance(store, sub, KernelStatus::Creating, at(2)).await;
    advance(store, main, KernelStatus::Running, at(3)).await;
    let t = advance(store, sub, KernelStatus::Running, at(3)).await;
    assert_eq!(t.session, Some((SessionStatus::Creating, SessionStatus::Running)), "running once both run");
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("3")));

    let t = store
        .update_kernel(sub, KernelChange::status(KernelStatus::Error, Some("kernel-crashed".to_owned())), at(4))
        .await
        .expect("error");
    assert_eq!(t.session, Some((SessionStatus::Running, SessionStatus::Error)), "one failed kernel fails the session");
    assert!(t.kernel.occupied_slots.is_zero());
    let s = store.session(session.id).await.unwrap().expect("session");
    assert_eq!(s.status, SessionStatus::Error);
    assert_eq!(s.status_info.as_deref(), Some("kernel-crashed"));
    assert_eq!(s.terminated_at, None, "ERROR is not final");
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("2")), "the failed kernel's slot went back");

    let t = advance(store, main, KernelStatus::Terminating, at(5)).await;
    assert_eq!(t.session, None, "still ERROR");
    let t = advance(store, main, KernelStatus::Terminated, at(6)).await;
    assert_eq!(t.session, None, "still ERROR while a kernel is");
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("1")));

    let t = advance(store, sub, KernelStatus::Terminated, at(7)).await;
    assert_eq!(t.session, Some((SessionStatus::Error, SessionStatus::Terminated)));
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("1")), "ERROR → TERMINATED releases nothing more");
    assert_eq!(store.session(session.id).await.unwrap().expect("session").terminated_at, Some(at(7)));

    advance(store, ballast_kernels[0].id, KernelStatus::Terminated, at(8)).await;
    assert!(occupied(store, &agent.id).await.is_zero());
}

/// Whole-session moves: cancelling a PENDING or SCHEDULED session cancels its kernels (and frees the scheduled
/// ones' slots); ending a RUNNING one records its result; moves the table forbids are refused with nothing written.
pub async fn update_session_moves_kernels(store: &dyn MetadataStore) {
    let agent = new_agent(store, cpu("4")).await;
    let agents = [agent.id.clone()];
    let owner = new_owner(store).await;
    let t0 = now();
    let at = |s: i64| t0 + Duration::seconds(s);
    let cancel =
        || SessionChange { status: SessionStatus::Cancelled, status_info: Some("user-requested".into()), result: None };

    let (pending, _) = insert(store, &owner, &unique_name("cancel"), 2, t0).await;
    let moved = store.update_session(pending.id, cancel(), at(1)).await.expect("cancel pending");
    assert_eq!(moved, Some((SessionStatus::Pending, SessionStatus::Cancelled)));
    let s = store.session(pending.id).await.unwrap().expect("session");
    assert_eq!(s.status, SessionStatus::Cancelled);
    assert_eq!(s.status_info.as_deref(), Some("user-requested"));
    assert_eq!(s.terminated_at, Some(at(1)));
    assert_eq!(s.status_history.entered(SessionStatus::Cancelled), Some(at(1)));
    for k in store.kernels(pending.id).await.unwrap() {
        assert_eq!(k.status, KernelStatus::Cancelled, "its kernels are cancelled");
        assert_eq!(k.terminated_at, Some(at(1)));
        assert_eq!(statuses(&k.status_history), ["PENDING", "CANCELLED"]);
    }
    let before = snapshot(store, pending.id, &agents).await;
    let revive = SessionChange { status: SessionStatus::Running, status_info: None, result: None };
    expect_kind(store.update_session(pending.id, revive, at(2)).await, ErrorKind::Conflict, "CANCELLED → RUNNING");
    assert_eq!(snapshot(store, pending.id, &agents).await, before, "nothing written");

    let (scheduled, _) = allocated(store, &owner, &agent.id, 2, &cpu("1"), t0).await;
    assert!(same_slots(&occupied(store, &agent.id).await, &cpu("2")));
    let moved = store.update_session(scheduled.id, cancel(), at(3)).await.expect("cancel scheduled");
    assert_eq!(moved, Some((SessionStatus::Scheduled, SessionStatus::Cancelled)));
    for k in store.kernels(scheduled.id).await.unwrap() {
        assert_eq!(k.status, KernelStatus::Cancelled);
        assert!(k.occupied_slots.is_zero());
    }
    assert!(occupied(store, &agent.id).await.is_zero(), "cancelled kernels give their slots back");

    let (running, kernels) = allocated(store, &owner, &agent.id, 1, &cpu("1"), t0).await;
    for (i, status) in [KernelStatus::Preparing, KernelStatus::Creating, KernelStatus::Running].into_iter().enumerate()
    {
        advance(store, kernels[0].id, status, at(4 + i as i64)).await;
    }
    let before = snapshot(store, running.id, &agents).await;
    expect_kind(store.update_session(running.id, cancel(), at(8)).await, ErrorKind::Conflict, "RUNNING → CANCELLED");
    assert_eq!(snapshot(store, running.id, &agents).await, before, "nothing written");
    let finish = SessionChange {
        status: SessionStatus::Terminated,
        status_info: Some("finished".into()),
        result: Some(SessionResult::Success),
    };
    let moved = store.update_session(running.id, finish, at(9)).await.expect("end running");
    assert_eq!(moved, Some((SessionStatus::Running, SessionStatus::Terminated)));
    let s = store.session(running.id).await.unwrap().expect("session");
    assert_eq!(s.result, SessionResult::Success, "the result is recorded");
    assert_eq!(s.terminated_at, Some(at(9)));
    let k = store.kernel(kernels[0].id).await.unwrap().expect("kernel");
    assert_eq!(k.status, KernelStatus::Terminated);
    assert_eq!(k.status_info.as_deref(), Some("finished"));
    assert!(occupied(store, &agent.id).await.is_zero());

    let missing = store.update_session(SessionId::new(), cancel(), at(10)).await;
    assert_eq!(missing.expect_err("an unknown session").kind().status(), 404, "an unknown session is not found");
}

/// `kernels_on_agent` lists the kernels placed on that agent while they hold resources, and only those.
pub async fn kernels_on_agent(store: &dyn MetadataStore) {
    let a = new_agent(store, cpu("4")).await;
    let b = new_agent(store, cpu("4")).await;
    let owner = new_owner(store).await;
    let t0 = now();
    let (_, on_a) = allocated(store, &owner, &a.id, 2, &cpu("1"), t0).await;
    let (_, on_b) = allocated(store, &owner, &b.id, 1, &cpu("1"), t0).await;
    insert(store, &owner, &unique_name("unplaced"), 1, t0).await;

    let ids = |ks: Vec<KernelRecord>| {
        let mut ids: Vec<KernelId> = ks.into_iter().map(|k| k.id).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(store.kernels_on_agent(&a.id).await.unwrap()), ids(on_a.clone()));
    assert_eq!(ids(store.kernels_on_agent(&b.id).await.unwrap()), ids(on_b));

    advance(store, on_a[1].id, KernelStatus::Cancelled, t0 + Duration::seconds(1)).await;
    assert_eq!(ids(store.kernels_on_agent(&a.id).await.unwrap()), ids(vec![on_a[0].clone()]), "dead kernels leave");
    let nowhere = AgentId(format!("conformance-none-{}", Uuid::new_v4().simple()));
    assert!(store.kernels_on_agent(&nowhere).await.unwrap().is_empty());
}

/// Twenty one-cpu sessions allocated at once onto a four-cpu agent: exactly four succeed, the others get
/// `QuotaExceeded`, and the invariant holds; cancelling them all at once frees the agent again.
pub async fn concurrent_allocations(store: Arc<dyn MetadataStore>) {
    let agent = new_agent(&*store, cpu("4")).await;
    let owner = new_owner(&*store).await;
    let t0 = now();
    let mut sessions = Vec::new();
    for i in 0..20 {
        let (s, ks) = insert(&*store, &owner, &unique_name("race"), 1, t0 + Duration::milliseconds(i)).await;
        sessions.push((s.id, Placement { kernel_id: ks[0].id, agent_id: agent.id.clone() }));
    }

    let tasks: Vec<_> = sessions
        .iter()
        .cloned()
        .map(|(id, placement)| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.allocate(id, &[placement], now()).await })
        })
        .collect();
    let (mut won, mut refused) = (0, 0);
    for task in tasks {
        match task.await.expect("allocation task") {
            Ok(()) => won += 1,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::QuotaExceeded, "a lost race is QuotaExceeded: {e}");
                refused += 1;
            }
        }
    }
    assert_eq!((won, refused), (4, 16), "exactly as many as fit");
    assert!(same_slots(&occupied(&*store, &agent.id).await, &cpu("4")));
    assert_occupancy_invariant(&*store).await;

    let tasks: Vec<_> = sessions
        .iter()
        .map(|(id, _)| {
            let (store, id) = (Arc::clone(&store), *id);
            let change = SessionChange { status: SessionStatus::Cancelled, status_info: None, result: None };
            tokio::spawn(async move { store.update_session(id, change, now()).await })
        })
        .collect();
    for task in tasks {
        let moved = task.await.expect("cancel task").expect("cancel");
        assert!(matches!(moved, Some((_, SessionStatus::Cancelled))));
    }
    assert!(occupied(&*store, &agent.id).await.is_zero(), "every slot back");
    assert_occupancy_invariant(&*store).await;
}

// ---- helpers ----

/// Now, at the microsecond precision every store keeps.
/// Virtual folders: insert and read back, names unique per owner (not across owners), `NotFound` for an unknown
/// owning user or group, listing by owner then name, rename, options, delete.
pub async fn vfolders(store: &dyn MetadataStore) {
    let t0 = now();
    let (d, users) = vfolder_fixture(store, &[&["team"], &[]]).await;
    let (alice, bob) = (&users[0], &users[1]);

    let own = folder(user_owner(alice), "data", VFolderPermission::ReadWrite, t0);
    let own = VFolder { usage_mode: UsageMode::Model, max_size: Some(1 << 30), cloneable: true, ..own };
    store.insert_vfolder(&own).await.expect("insert folder");
    assert_eq!(store.vfolder(own.id).await.unwrap(), Some(own.clone()), "reads back as written");
    assert_eq!(store.vfolder(VFolderId::new()).await.unwrap(), None);

    let dup = folder(user_owner(alice), "data", VFolderPermission::ReadOnly, t0);
    expect_kind(store.insert_vfolder(&dup).await, ErrorKind::AlreadyExists, "a taken name of the same user");
    assert_eq!(store.vfolder(dup.id).await.unwrap(), None, "the refused folder is not there");
    let bobs = folder(user_owner(bob), "data", VFolderPermission::ReadWrite, t0);
    store.insert_vfolder(&bobs).await.expect("the same name for another user");
    let team = folder(group_owner(&d.name, "team"), "data", VFolderPermission::ReadOnly, t0);
    store.insert_vfolder(&team).await.expect("the same name for a group");
    let team_dup = folder(group_owner(&d.name, "team"), "data", VFolderPermission::ReadOnly, t0);
    expect_kind(store.insert_vfolder(&team_dup).await, ErrorKind::AlreadyExists, "a taken name of the same group");
    let other = folder(group_owner(&d.name, "other"), "data", VFolderPermission::ReadWrite, t0);
    store.insert_vfolder(&other).await.expect("the same name for another group");

    let ghost = User { email: format!("{}@conformance.invalid", Uuid::new_v4().simple()), ..alice.clone() };
    let nobody = folder(user_owner(&ghost), "data", VFolderPermission::ReadWrite, t0);
    expect_kind(store.insert_vfolder(&nobody).await, ErrorKind::NotFound, "a folder of an unknown user");
    let no_group = folder(group_owner(&d.name, "nope"), "data", VFolderPermission::ReadWrite, t0);
    expect_kind(store.insert_vfolder(&no_group).await, ErrorKind::NotFound, "a folder of an unknown group");
    assert_eq!(store.vfolder(no_group.id).await.unwrap(), None);

    let extra = folder(user_owner(alice), "extra", VFolderPermission::ReadWrite, t0);
    store.insert_vfolder(&extra).await.expect("insert second folder");
    let ours = [own.id, extra.id, bobs.id, team.id, other.id];
    let listed: Vec<VFolder> =
        store.list_vfolders().await.unwrap().into_iter().filter(|f| ours.contains(&f.id)).collect();
    let mut users_first =
        vec![(alice.email.clone(), vec![own.clone(), extra.clone()]), (bob.email.clone(), vec![bobs.clone()])];
    users_first.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected: Vec<VFolder> = users_first.into_iter().flat_map(|(_, f)| f).collect();
    expected.extend([other.clone(), team.clone()]);
    assert_eq!(listed, expected, "users' folders by e-mail and name, then groups' by domain and name");

    store.rename_vfolder(own.id, "notes").await.expect("rename");
    let own = VFolder { name: "notes".into(), ..own };
    assert_eq!(store.vfolder(own.id).await.unwrap(), Some(own.clone()), "renamed, nothing else changed");
    expect_kind(store.rename_vfolder(extra.id, "notes").await, ErrorKind::AlreadyExists, "renaming onto a taken name");
    assert_eq!(store.vfolder(extra.id).await.unwrap().map(|f| f.name), Some("extra".into()));
    store.rename_vfolder(extra.id, "data").await.expect("the old name is free again");
    store.rename_vfolder(extra.id, "data").await.expect("renaming to its own name");
    expect_kind(store.rename_vfolder(VFolderId::new(), "x").await, ErrorKind::NotFound, "renaming an unknown folder");

    store.update_vfolder_options(team.id, VFolderPermission::ReadWrite, true).await.expect("update options");
    let team = VFolder { permission: VFolderPermission::ReadWrite, cloneable: true, ..team };
    assert_eq!(store.vfolder(team.id).await.unwrap(), Some(team.clone()));
    let unknown = store.update_vfolder_options(VFolderId::new(), VFolderPermission::ReadOnly, false).await;
    expect_kind(unknown, ErrorKind::NotFound, "options of an unknown folder");

    store.delete_vfolder(extra.id).await.expect("delete folder");
    assert_eq!(store.vfolder(extra.id).await.unwrap(), None);
    expect_kind(store.delete_vfolder(extra.id).await, ErrorKind::NotFound, "deleting an unknown folder");
    let again = VFolder { id: VFolderId::new(), name: "data".into(), ..extra };
    store.insert_vfolder(&again).await.expect("a deleted folder's name is free");

    // Owners of folders stay until their folders are gone: the files would be left without a record.
    expect_kind(store.delete_user(&bob.email).await, ErrorKind::Conflict, "deleting a user who owns a folder");
    assert_eq!(store.vfolder(bobs.id).await.unwrap(), Some(bobs.clone()), "the refused delete changed nothing");
    expect_kind(store.delete_group(&d.name, "other").await, ErrorKind::Conflict, "deleting a group that owns a folder");
    store.delete_vfolder(bobs.id).await.expect("delete bob's folder");
    store.delete_user(&bob.email).await.expect("a user without folders");
    store.delete_vfolder(other.id).await.expect("delete the group's folder");
    store.delete_group(&d.name, "other").await.expect("a group without folders");
}

/// Who may use which folder: owners `wd`, group members the folder's permission, shares their own; the highest
/// wins and each folder is listed once, by name. Shares are set, changed, removed and listed by e-mail.
pub async fn vfolder_sharing(store: &dyn MetadataStore) {
    let t0 = now();
    let (d, users) = vfolder_fixture(store, &[&["team"], &[], &["team"], &["other"]]).await;
    let (alice, bob, carol, dave) = (&users[0], &users[1], &users[2], &users[3]);
    let own = folder(user_owner(alice), "mine", VFolderPermission::ReadOnly, t0);
    let bobs = folder(user_owner(bob), "bobs", VFolderPermission::ReadWrite, t0);
    let team = folder(group_owner(&d.name, "team"), "common", VFolderPermission::ReadOnly, t0);
    for f in [&own, &bobs, &team] {
        store.insert_vfolder(f).await.expect("insert folder");
    }
    use VFolderPermission::{ReadOnly as Ro, ReadWrite as Rw, ReadWriteDelete as Wd};

    let alices = store.accessible_vfolders(&alice.email).await.unwrap();
    let seen: Vec<(VFolderId, VFolderPermission, bool)> =
        alices.iter().map(|a| (a.folder.id, a.permission, a.is_owner)).collect();
    assert_eq!(seen, vec![(team.id, Ro, false), (own.id, Wd, true)], "by name: her group's, then her own");
    assert_eq!(alices[1].folder, own, "the folder record comes with the access");
    assert_eq!(access_to(store, &carol.email, team.id).await, Some((Ro, false)), "a member of the group");
    assert_eq!(access_to(store, &carol.email, own.id).await, None, "another user's folder");
    assert_eq!(access_to(store, &dave.email, team.id).await, None, "not a member of the group");
    assert!(store.accessible_vfolders("nobody@conformance.invalid").await.unwrap().is_empty(), "an unknown user");

    store.set_vfolder_share(bobs.id, &alice.email, Some(Rw)).await.expect("share");
    assert_eq!(access_to(store, &alice.email, bobs.id).await, Some((Rw, false)), "shared with her");
    store.set_vfolder_share(bobs.id, &carol.email, Some(Ro)).await.expect("share");
    let mut expected = vec![(alice.email.clone(), Rw), (carol.email.clone(), Ro)];
    expected.sort();
    assert_eq!(store.vfolder_shares(bobs.id).await.unwrap(), expected, "shares by e-mail");
    store.set_vfolder_share(bobs.id, &alice.email, Some(Ro)).await.expect("change a share");
    assert_eq!(access_to(store, &alice.email, bobs.id).await, Some((Ro, false)), "the changed permission");
    store.set_vfolder_share(bobs.id, &alice.email, None).await.expect("unshare");
    assert_eq!(access_to(store, &alice.email, bobs.id).await, None, "unshared");
    assert_eq!(store.vfolder_shares(bobs.id).await.unwrap(), vec![(carol.email.clone(), Ro)]);
    store.set_vfolder_share(bobs.id, &alice.email, None).await.expect("removing a missing share is fine");

    // A group folder also shared with a member: once, with the higher permission.
    store.set_vfolder_share(team.id, &carol.email, Some(Rw)).await.expect("share a group folder");
    assert_eq!(access_to(store, &carol.email, team.id).await, Some((Rw, false)), "the share beats the group's ro");
    store.update_vfolder_options(team.id, Wd, false).await.expect("raise the group permission");
    assert_eq!(access_to(store, &carol.email, team.id).await, Some((Wd, false)), "the group's wd beats the share");
    // A user's own folder shared with that user stays `wd` and owned.
    store.set_vfolder_share(own.id, &alice.email, Some(Ro)).await.expect("share with the owner");
    assert_eq!(access_to(store, &alice.email, own.id).await, Some((Wd, true)));

    expect_kind(
        store.set_vfolder_share(VFolderId::new(), &alice.email, Some(Ro)).await,
        ErrorKind::NotFound,
        "sharing an unknown folder",
    );
    expect_kind(
        store.set_vfolder_share(bobs.id, "nobody@conformance.invalid", Some(Ro)).await,
        ErrorKind::NotFound,
        "sharing with an unknown user",
    );
    assert!(store.vfolder_shares(VFolderId::new()).await.unwrap().is_empty());

    store.delete_vfolder(bobs.id).await.expect("delete a shared folder");
    assert!(store.vfolder_shares(bobs.id).await.unwrap().is_empty(), "its shares went with it");
    assert_eq!(access_to(store, &carol.email, bobs.id).await, None);

    // A user who received shares may go; the shares go with the user.
    store.delete_user(&carol.email).await.expect("delete a user with shares");
    assert!(store.vfolder_shares(team.id).await.unwrap().is_empty(), "the deleted user's share is gone");
}

/// Invitations: read back, one pending per invitee and folder, pending ones oldest first, accepting shares in the
/// same call, answering twice refused, and a deleted folder takes its invitations along.
pub async fn vfolder_invitations(store: &dyn MetadataStore) {
    let t0 = now();
    let (_, users) = vfolder_fixture(store, &[&[], &[], &[]]).await;
    let (alice, bob, carol) = (&users[0], &users[1], &users[2]);
    let first = folder(user_owner(bob), "first", VFolderPermission::ReadWrite, t0);
    let second = folder(user_owner(bob), "second", VFolderPermission::ReadWrite, t0);
    for f in [&first, &second] {
        store.insert_vfolder(f).await.expect("insert folder");
    }
    use VFolderPermission::{ReadOnly as Ro, ReadWrite as Rw};

    let later = invitation(&second, bob, alice, Rw, t0 + Duration::seconds(5));
    let earlier = invitation(&first, bob, alice, Ro, t0);
    store.insert_vfolder_invitation(&later).await.expect("invite");
    store.insert_vfolder_invitation(&earlier).await.expect("invite");
    assert_eq!(store.vfolder_invitation(earlier.id).await.unwrap(), Some(earlier.clone()), "reads back");
    assert_eq!(store.vfolder_invitation(InvitationId::new()).await.unwrap(), None);
    assert_eq!(
        store.pending_vfolder_invitations(&alice.email).await.unwrap(),
        vec![earlier.clone(), later.clone()],
        "pending invitations, oldest first"
    );
    assert!(store.pending_vfolder_invitations(&carol.email).await.unwrap().is_empty());

    let twice = invitation(&first, bob, alice, Rw, t0);
    expect_kind(store.insert_vfolder_invitation(&twice).await, ErrorKind::AlreadyExists, "a second pending invitation");
    let nowhere = VFolderInvitation { vfolder: VFolderId::new(), ..invitation(&first, bob, carol, Ro, t0) };
    expect_kind(store.insert_vfolder_invitation(&nowhere).await, ErrorKind::NotFound, "an unknown folder");
    assert_eq!(store.vfolder_invitation(nowhere.id).await.unwrap(), None);

    let t1 = t0 + Duration::seconds(10);
    let accepted = store.answer_vfolder_invitation(earlier.id, InvitationState::Accepted, t1).await.expect("accept");
    let expected = VFolderInvitation { state: InvitationState::Accepted, modified_at: t1, ..earlier.clone() };
    assert_eq!(accepted, expected, "the answered invitation");
    assert_eq!(store.vfolder_invitation(earlier.id).await.unwrap(), Some(expected));
    assert_eq!(store.vfolder_shares(first.id).await.unwrap(), vec![(alice.email.clone(), Ro)], "accepting shares");
    assert_eq!(access_to(store, &alice.email, first.id).await, Some((Ro, false)));
    assert_eq!(store.pending_vfolder_invitations(&alice.email).await.unwrap(), vec![later.clone()]);
    let again = store.answer_vfolder_invitation(earlier.id, InvitationState::Rejected, t1).await;
    expect_kind(again, ErrorKind::Conflict, "answering twice");
    assert_eq!(store.vfolder_shares(first.id).await.unwrap(), vec![(alice.email.clone(), Ro)], "the share stays");
    let unknown = store.answer_vfolder_invitation(InvitationId::new(), InvitationState::Accepted, t1).await;
    expect_kind(unknown, ErrorKind::NotFound, "answering an unknown invitation");

    let rejected = store.answer_vfolder_invitation(later.id, InvitationState::Rejected, t1).await.expect("reject");
    assert_eq!(rejected.state, InvitationState::Rejected);
    assert!(store.vfolder_shares(second.id).await.unwrap().is_empty(), "rejecting shares nothing");
    assert!(store.pending_vfolder_invitations(&alice.email).await.unwrap().is_empty());

    // Only a pending invitation blocks another one; an invitee without a user record cannot accept.
    let anew = invitation(&second, bob, alice, Ro, t1);
    store.insert_vfolder_invitation(&anew).await.expect("invite again after an answer");
    let stranger = User { email: format!("{}@conformance.invalid", Uuid::new_v4().simple()), ..carol.clone() };
    let to_stranger = invitation(&second, bob, &stranger, Ro, t1);
    store.insert_vfolder_invitation(&to_stranger).await.expect("invite an e-mail without a user");
    let refused = store.answer_vfolder_invitation(to_stranger.id, InvitationState::Accepted, t1).await;
    expect_kind(refused, ErrorKind::NotFound, "accepting without a user record");
    let still = store.vfolder_invitation(to_stranger.id).await.unwrap().map(|i| i.state);
    assert_eq!(still, Some(InvitationState::Pending), "a refused acceptance changes nothing");

    store.delete_vfolder(second.id).await.expect("delete folder");
    assert_eq!(store.vfolder_invitation(anew.id).await.unwrap(), None, "invitations went with the folder");
    assert_eq!(store.vfolder_invitation(later.id).await.unwrap(), None);
    assert!(store.pending_vfolder_invitations(&alice.email).await.unwrap().is_empty());
}

/// The quota fields of a resource policy and the folders a session mounts read back as written.
pub async fn vfolder_quota_fields(store: &dyn MetadataStore) {
    let t0 = now();
    let p = KeyPairResourcePolicy {
        name: unique_name("conf-vfpolicy"),
        total_resource_slots: ResourceSlots::new(),
        max_concurrent_sessions: 1,
        max_containers_per_session: 1,
        max_pending_session_count: None,
        idle_timeout: 0,
        max_session_lifetime: 0,
        allowed_vfolder_hosts: vec!["local".into()],
        max_vfolder_count: 3,
        max_quota_scope_size: Some(10 * (1 << 30)),
        created_at: t0,
    };
    store.put_resource_policy(&p).await.expect("put policy");
    assert_eq!(store.resource_policy(&p.name).await.unwrap(), Some(p.clone()), "quota fields read back");
    let unlimited = KeyPairResourcePolicy { max_vfolder_count: 0, max_quota_scope_size: None, ..p.clone() };
    store.put_resource_policy(&unlimited).await.expect("replace policy");
    assert_eq!(store.resource_policy(&p.name).await.unwrap(), Some(unlimited), "back to unlimited");

    let owner = new_owner(store).await;
    let (session, kernels) = pending_session(&owner, &unique_name("mounts"), 1, &cpu("1"), t0);
    let mount = |name: &str, permission| VFolderMount {
        name: name.into(),
        vfolder_id: VFolderId::new(),
        host_path: format!("/volumes/local/{name}").into(),
        kernel_path: format!("/home/work/{name}"),
        permission,
    };
    let session = SessionRecord {
        vfolder_mounts: vec![mount("data", VFolderPermission::ReadWrite), mount("models", VFolderPermission::ReadOnly)],
        ..session
    };
    store.insert_session(&session, &kernels).await.expect("insert session");
    assert_eq!(store.session(session.id).await.unwrap(), Some(session.clone()), "mounts read back");
    let listed = store.list_sessions(&SessionFilter { access_key: Some(owner), ..Default::default() }).await.unwrap();
    assert_eq!(listed, vec![session], "and through the list");
}

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
