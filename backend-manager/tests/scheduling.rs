//! Scheduling scenarios on the embedded store, one per Backend.AI scheduler bug this server must not repeat:
//! #2155 (one unschedulable session blocks the queue), #13706 (a low-priority session takes what a waiting
//! high-priority one needs), #13975 (a slot no agent serves leaves a session PENDING forever) and #13074 (pending
//! limits not enforced); plus the keypair predicates and the choice of sequencer by the scaling group's name.

use backend_core::api::CreateSessionRequest;
use backend_core::config::LocalConfigStore;
use backend_core::conformance::metadata_store::{heartbeat, pending_session};
use backend_core::error::ErrorKind;
use backend_core::events::LocalEventBus;
use backend_core::live::LocalLiveState;
use backend_core::model::{KeyPair, KeyPairResourcePolicy, Role, ScalingGroup, SessionRecord};
use backend_core::status::{KernelStatus, SessionStatus};
use backend_core::store::fixtures::ensure_defaults;
use backend_core::store::sqlite::SqliteStore;
use backend_core::store::{KernelChange, Placement};
use backend_core::{AccessKey, AgentId, ResourceSlots, SessionId};
use backend_manager::{Manager, ManagerConfig};
use chrono::{Duration, Utc};
use std::sync::Arc;

fn cpu(n: &str) -> ResourceSlots {
    ResourceSlots::from_pairs([("cpu", n), ("mem", "256m")]).unwrap()
}

async fn manager() -> Arc<Manager> {
    let m = Manager::new(
        ManagerConfig::default(),
        Arc::new(SqliteStore::in_memory().unwrap()),
        Arc::new(LocalEventBus::new()),
        Arc::new(LocalLiveState::new()),
        Arc::new(LocalConfigStore::new()),
        "token",
    );
    ensure_defaults(m.store.as_ref()).await.unwrap();
    m
}

async fn agent(m: &Manager, cpus: &str) -> AgentId {
    let hb = heartbeat(ResourceSlots::from_pairs([("cpu", cpus), ("mem", "64g")]).unwrap());
    m.store.upsert_agent(&hb, Utc::now()).await.unwrap();
    hb.id
}

async fn keypair(m: &Manager, access_key: &str, policy: Option<KeyPairResourcePolicy>) -> KeyPair {
    let mut resource_policy = "default".to_owned();
    if let Some(p) = policy {
        resource_policy = p.name.clone();
        m.store.put_resource_policy(&p).await.unwrap();
    }
    let kp = KeyPair {
        access_key: access_key.into(),
        secret_key: "secret".into(),
        user_id: format!("{access_key}@example.com"),
        role: Role::User,
        is_active: true,
        rate_limit: 1000,
        resource_policy,
        created_at: Utc::now(),
    };
    m.store.insert_keypair(&kp).await.unwrap();
    kp
}

fn policy(name: &str) -> KeyPairResourcePolicy {
    KeyPairResourcePolicy {
        name: name.into(),
        total_resource_slots: ResourceSlots::new(),
        max_concurrent_sessions: 30,
        max_containers_per_session: 8,
        max_pending_session_count: None,
        idle_timeout: 0,
        max_session_lifetime: 0,
        allowed_vfolder_hosts: vec![],
        created_at: Utc::now(),
    }
}

/// Enqueues a session of `owner` asking `each` per kernel, `age_secs` old, with `priority`.
async fn enqueue(
    m: &Manager,
    owner: &str,
    name: &str,
    each: &ResourceSlots,
    age_secs: i64,
    priority: i32,
) -> SessionId {
    let (mut session, kernels) =
        pending_session(&AccessKey::from(owner), name, 1, each, Utc::now() - Duration::seconds(age_secs));
    session.priority = priority;
    m.store.insert_session(&session, &kernels).await.unwrap();
    session.id
}

/// A RUNNING session of `owner` holding `each` on `agent`.
async fn occupy(m: &Manager, owner: &str, agent: &AgentId, each: &ResourceSlots) -> SessionId {
    let (session, kernels) = pending_session(&AccessKey::from(owner), "running", 1, each, Utc::now());
    m.store.insert_session(&session, &kernels).await.unwrap();
    let placement = Placement { kernel_id: kernels[0].id, agent_id: agent.clone() };
    m.store.allocate(session.id, &[placement], Utc::now()).await.unwrap();
    for step in [KernelStatus::Preparing, KernelStatus::Creating, KernelStatus::Running] {
        m.change_kernel(kernels[0].id, KernelChange::status(step, None)).await.unwrap();
    }
    session.id
}

async fn end(m: &Manager, session: SessionId) {
    let kernel = m.store.kernels(session).await.unwrap().remove(0);
    for step in [KernelStatus::Terminating, KernelStatus::Terminated] {
        m.change_kernel(kernel.id, KernelChange::status(step, "done".to_owned())).await.unwrap();
    }
}

async fn session(m: &Manager, id: SessionId) -> SessionRecord {
    m.store.session(id).await.unwrap().unwrap()
}

fn create(name: &str, resources: &[(&str, &str)]) -> CreateSessionRequest {
    let mut req = CreateSessionRequest {
        image: Some("python".into()),
        name: Some(name.into()),
        enqueue_only: Some(true),
        ..CreateSessionRequest::default()
    };
    req.config.resources = ResourceSlots::from_pairs(resources.iter().copied()).unwrap();
    req
}

#[tokio::test]
async fn issue_2155_an_unschedulable_session_does_not_block_later_ones() {
    let m = manager().await;
    let a = agent(&m, "4").await;
    occupy(&m, "AKOTHER", &a, &cpu("3")).await;
    let big = enqueue(&m, "AKUSER", "big-one", &cpu("4"), 60, 0).await;
    let small = enqueue(&m, "AKUSER", "small-one", &cpu("1"), 10, 0).await;

    let report = m.schedule_once().await.unwrap();
    assert_eq!((report.scheduled, report.pending, report.refused), (1, 1, 0));
    assert_ne!(session(&m, small).await.status, SessionStatus::Pending, "the later, smaller session runs");
    let waiting = session(&m, big).await;
    assert_eq!(waiting.status, SessionStatus::Pending, "the big one waits, it is not refused");
    assert_eq!(waiting.status_info.as_deref(), Some("pending: no agent has enough free resources now"));
}

#[tokio::test]
async fn issue_13706_a_low_priority_session_does_not_take_what_a_high_priority_one_needs() {
    let m = manager().await;
    let a = agent(&m, "4").await;
    let running = occupy(&m, "AKOTHER", &a, &cpu("2")).await;
    let high = enqueue(&m, "AKUSER", "urgent", &cpu("4"), 1, 10).await;
    let low = enqueue(&m, "AKUSER", "routine", &cpu("1"), 120, 0).await;

    let report = m.schedule_once().await.unwrap();
    assert_eq!(report.scheduled, 0, "the free 2 cpu stay reserved for the high-priority session");
    let low_now = session(&m, low).await;
    assert_eq!(low_now.status, SessionStatus::Pending);
    assert!(low_now.status_info.as_deref().unwrap().contains("reserved"), "{:?}", low_now.status_info);

    end(&m, running).await;
    let report = m.schedule_once().await.unwrap();
    assert_eq!(report.scheduled, 1);
    assert_ne!(session(&m, high).await.status, SessionStatus::Pending, "the high-priority session goes first");
    assert_eq!(session(&m, low).await.status, SessionStatus::Pending);
}

#[tokio::test]
async fn issue_13975_a_slot_no_agent_serves_is_refused_at_once() {
    let m = manager().await;
    agent(&m, "4").await;
    let kp = keypair(&m, "AKUSER", None).await;

    let err = m.create_session(&kp, create("tpu-job", &[("cpu", "1"), ("tpu.device", "1")])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidParams);
    assert_eq!(err.kind().status(), 400);
    assert!(err.to_string().contains("tpu.device"), "{err}");
    let err = m.create_session(&kp, create("too-big", &[("cpu", "64")])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidParams, "{err}");
    assert!(m.store.pending_sessions().await.unwrap().is_empty(), "nothing is left PENDING");

    let (created, resp) = m.create_session(&kp, create("fits", &[("cpu", "2")])).await.unwrap();
    assert!(created);
    assert_eq!(resp.status, "PENDING");
}

#[tokio::test]
async fn issue_13074_pending_and_concurrency_limits_are_enforced() {
    let m = manager().await;
    agent(&m, "16").await;
    let limited =
        KeyPairResourcePolicy { max_pending_session_count: Some(2), max_concurrent_sessions: 1, ..policy("limited") };
    let kp = keypair(&m, "AKLIMITED", Some(limited)).await;

    m.create_session(&kp, create("first", &[("cpu", "1")])).await.unwrap();
    m.create_session(&kp, create("second", &[("cpu", "1")])).await.unwrap();
    let err = m.create_session(&kp, create("third", &[("cpu", "1")])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuotaExceeded, "{err}");
    assert_eq!(err.kind().status(), 412);

    let report = m.schedule_once().await.unwrap();
    assert_eq!((report.scheduled, report.pending), (1, 1), "one at a time");
    let waiting = m.store.pending_sessions().await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].0.status_info.as_deref(), Some("pending: keypair concurrent-session limit reached (1)"));
    // With one session no longer pending, a new one may be enqueued again.
    m.create_session(&kp, create("third", &[("cpu", "1")])).await.unwrap();
}

#[tokio::test]
async fn keypair_total_slots_refuse_the_impossible_and_hold_back_the_rest() {
    let m = manager().await;
    agent(&m, "16").await;
    let small = KeyPairResourcePolicy {
        total_resource_slots: ResourceSlots::from_pairs([("cpu", "3")]).unwrap(),
        ..policy("small")
    };
    let kp = keypair(&m, "AKSMALL", Some(small)).await;
    let err = m.create_session(&kp, create("huge", &[("cpu", "4")])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuotaExceeded, "{err}");

    m.create_session(&kp, create("one-one", &[("cpu", "2")])).await.unwrap();
    m.create_session(&kp, create("two-two", &[("cpu", "2")])).await.unwrap();
    let report = m.schedule_once().await.unwrap();
    assert_eq!((report.scheduled, report.pending), (1, 1));
    let waiting = m.store.pending_sessions().await.unwrap();
    assert!(waiting[0].0.status_info.as_deref().unwrap().contains("total resource slots"), "{:?}", waiting[0].0);
}

#[tokio::test]
async fn image_minimums_raise_defaults_and_refuse_explicit_requests_below_them() {
    let m = manager().await;
    agent(&m, "4").await;
    let kp = keypair(&m, "AKUSER", None).await;
    // The conformance agent's image needs cpu=0.5.
    let err = m.create_session(&kp, create("tiny", &[("cpu", "0.25")])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidParams, "{err}");
    assert!(err.to_string().contains("at least cpu=0.5"), "{err}");
}

#[tokio::test]
async fn the_scaling_group_names_the_sequencer() {
    let m = manager().await;
    let a = agent(&m, "4").await;
    let mut sg: ScalingGroup = m.store.scaling_group("default").await.unwrap().unwrap();
    sg.scheduler = "lifo".into();
    m.store.put_scaling_group(&sg).await.unwrap();
    occupy(&m, "AKOTHER", &a, &cpu("1")).await;
    let old = enqueue(&m, "AKUSER", "older", &cpu("3"), 60, 0).await;
    let new = enqueue(&m, "AKUSER", "newer", &cpu("3"), 5, 0).await;
    m.schedule_once().await.unwrap();
    assert_ne!(session(&m, new).await.status, SessionStatus::Pending, "LIFO: the newest first");
    assert_eq!(session(&m, old).await.status, SessionStatus::Pending);

    sg.scheduler = "shortest-job-first".into();
    m.store.put_scaling_group(&sg).await.unwrap();
    let report = m.schedule_once().await.unwrap();
    assert_eq!(report.scheduled, 0);
    let info = session(&m, old).await.status_info.unwrap();
    assert!(info.contains("unknown scheduler \"shortest-job-first\""), "{info}");
}
