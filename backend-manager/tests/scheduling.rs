//! Scheduling scenarios on the embedded store, one per Backend.AI scheduler bug this server must not repeat:
//! #2155 (one unschedulable session blocks the queue), #13706 (a low-priority session takes what a waiting
//! high-priority one needs), #13975 (a slot no agent serves leaves a session PENDING forever) and #13074 (pending
//! limits not enforced); plus the keypair predicates, the group and domain quotas (`total_resource_slots`), the
//! choice of sequencer and agent selector by the scaling group's names, and the session's own predicates:
//! `starts_at`, dependencies (#5218: a failed dependency never leaves a session stuck) and admin-designated agents.

mod common;

use backend_core::api::CreateSessionRequest;
use backend_core::conformance::metadata_store::{heartbeat, pending_session};
use backend_core::error::ErrorKind;
use backend_core::model::{
    Domain, Group, KeyPair, KeyPairResourcePolicy, Role, ScalingGroup, SessionRecord, SessionResult, SessionType,
};
use backend_core::status::{KernelStatus, SessionStatus};
use backend_core::store::faults::FaultyStore;
use backend_core::store::fixtures::ensure_defaults;
use backend_core::store::{KernelChange, Placement, SessionChange};
use backend_core::{AccessKey, AgentId, ResourceSlots, SessionId};
use backend_manager::{Manager, ManagerConfig};
use chrono::{Duration, Utc};
use std::sync::Arc;

fn cpu(n: &str) -> ResourceSlots {
    ResourceSlots::from_pairs([("cpu", n), ("mem", "256m")]).unwrap()
}

async fn manager() -> Arc<Manager> {
    let m = common::in_memory_manager(ManagerConfig::default());
    ensure_defaults(m.store.as_ref()).await.unwrap();
    m
}

async fn agent(m: &Manager, cpus: &str) -> AgentId {
    let hb = heartbeat(ResourceSlots::from_pairs([("cpu", cpus), ("mem", "64g")]).unwrap());
    m.store.upsert_agent(&hb, Utc::now()).await.unwrap();
    hb.id
}

async fn keypair(m: &Manager, access_key: &str, policy: Option<KeyPairResourcePolicy>) -> KeyPair {
    keypair_as(m, access_key, policy, Role::User).await
}

async fn keypair_as(m: &Manager, access_key: &str, policy: Option<KeyPairResourcePolicy>, role: Role) -> KeyPair {
    let mut resource_policy = "default".to_owned();
    if let Some(p) = policy {
        resource_policy = p.name.clone();
        m.store.put_resource_policy(&p).await.unwrap();
    }
    let kp = KeyPair {
        access_key: access_key.into(),
        secret_key: "secret".into(),
        user_id: format!("{access_key}@example.com"),
        role,
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
        max_vfolder_count: 0,
        max_quota_scope_size: None,
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
    run_named(m, owner, "running", agent, each).await
}

/// A RUNNING interactive session of `owner` named `name`, holding `each` on `agent`.
async fn run_named(m: &Manager, owner: &str, name: &str, agent: &AgentId, each: &ResourceSlots) -> SessionId {
    let (session, kernels) = pending_session(&AccessKey::from(owner), name, 1, each, Utc::now());
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

    let report = m.schedule_once(Utc::now()).await.unwrap();
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

    let report = m.schedule_once(Utc::now()).await.unwrap();
    assert_eq!(report.scheduled, 0, "the free 2 cpu stay reserved for the high-priority session");
    let low_now = session(&m, low).await;
    assert_eq!(low_now.status, SessionStatus::Pending);
    assert!(low_now.status_info.as_deref().unwrap().contains("reserved"), "{:?}", low_now.status_info);

    end(&m, running).await;
    let report = m.schedule_once(Utc::now()).await.unwrap();
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

    let created = m.create_session(&kp, create("fits", &[("cpu", "2")])).await.unwrap();
    assert!(created.is_new());
    assert_eq!(created.response().status, "PENDING");
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

    let report = m.schedule_once(Utc::now()).await.unwrap();
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
    let report = m.schedule_once(Utc::now()).await.unwrap();
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
    m.schedule_once(Utc::now()).await.unwrap();
    assert_ne!(session(&m, new).await.status, SessionStatus::Pending, "LIFO: the newest first");
    assert_eq!(session(&m, old).await.status, SessionStatus::Pending);

    sg.scheduler = "shortest-job-first".into();
    m.store.put_scaling_group(&sg).await.unwrap();
    let report = m.schedule_once(Utc::now()).await.unwrap();
    assert_eq!(report.scheduled, 0);
    let info = session(&m, old).await.status_info.unwrap();
    assert!(info.contains("unknown scheduler \"shortest-job-first\""), "{info}");
}

#[tokio::test]
async fn starts_at_holds_a_session_until_its_time() {
    let m = manager().await;
    agent(&m, "4").await;
    let kp = keypair(&m, "AKUSER", None).await;
    let mut later = create("later-one", &[("cpu", "1")]);
    later.starts_at = Some((Utc::now() + Duration::hours(1)).to_rfc3339());
    let resp = m.create_session(&kp, later).await.unwrap().into_response();
    let later: SessionId = resp.session_id.parse().unwrap();
    let starts_at = session(&m, later).await.starts_at.expect("the start time is stored");
    let now = enqueue(&m, "AKUSER", "now-one", &cpu("1"), 0, 0).await;

    let report = m.schedule_once(Utc::now()).await.unwrap();
    assert_eq!((report.scheduled, report.pending), (1, 1));
    assert_ne!(session(&m, now).await.status, SessionStatus::Pending, "a session without a start time goes");
    let waiting = session(&m, later).await;
    assert_eq!(waiting.status, SessionStatus::Pending);
    let info = waiting.status_info.unwrap();
    assert!(info.starts_with("pending: starts at "), "{info}");

    // A pass just before the start time leaves it waiting for that reason; a pass at the start time places it.
    let report = m.schedule_once(starts_at - Duration::milliseconds(1)).await.unwrap();
    assert_eq!((report.scheduled, report.pending), (0, 1), "not placed before its start time");
    assert_eq!(session(&m, later).await.status_info.as_deref(), Some(info.as_str()));
    let report = m.schedule_once(starts_at).await.unwrap();
    assert_eq!((report.scheduled, report.pending), (1, 0), "placed at its start time");
    assert_ne!(session(&m, later).await.status, SessionStatus::Pending);

    // A delay in the client's relative form is accepted; nonsense is refused.
    let mut relative = create("relative", &[("cpu", "1")]);
    relative.starts_at = Some("1h30m".into());
    let resp = m.create_session(&kp, relative).await.unwrap().into_response();
    let stored = session(&m, resp.session_id.parse().unwrap()).await;
    assert!(stored.starts_at.unwrap() > Utc::now() + Duration::minutes(89));
    let mut bad = create("bad-time", &[("cpu", "1")]);
    bad.starts_at = Some("soonish".into());
    let err = m.create_session(&kp, bad).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidParams, "{err}");
}

#[tokio::test]
async fn a_dependent_session_is_placed_only_after_its_dependency_terminates() {
    let m = manager().await;
    let a = agent(&m, "4").await;
    let kp = keypair(&m, "AKUSER", None).await;
    let first = run_named(&m, "AKUSER", "first-step", &a, &cpu("1")).await;
    let mut req = create("second-step", &[("cpu", "1")]);
    req.dependencies = Some(vec!["first-step".into()]);
    req.enqueue_only = None; // a session with dependencies answers PENDING at once anyway
    let resp = m.create_session(&kp, req).await.unwrap().into_response();
    assert_eq!(resp.status, "PENDING");
    let second: SessionId = resp.session_id.parse().unwrap();
    assert_eq!(session(&m, second).await.dependencies, vec![first], "the name is resolved to the session's id");

    let report = m.schedule_once(Utc::now()).await.unwrap();
    assert_eq!(report.scheduled, 0, "the agent has room, but the dependency is still running");
    let waiting = session(&m, second).await;
    assert_eq!(waiting.status, SessionStatus::Pending);
    assert_eq!(waiting.status_info.as_deref(), Some("pending: waiting for 1 dependency"));

    end(&m, first).await;
    let report = m.schedule_once(Utc::now()).await.unwrap();
    assert_eq!(report.scheduled, 1);
    let placed = session(&m, second).await;
    let scheduled_at = placed.status_history.entered(SessionStatus::Scheduled).expect("it was scheduled");
    let terminated_at = session(&m, first).await.terminated_at.unwrap();
    assert!(scheduled_at >= terminated_at, "placed after its dependency ended");

    let mut unknown = create("orphan", &[("cpu", "1")]);
    unknown.dependencies = Some(vec!["no-such-session".into()]);
    let err = m.create_session(&kp, unknown).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SessionNotFound, "{err}");
    assert_eq!(err.kind().status(), 404);
    assert!(err.to_string().contains("no-such-session"), "{err}");
}

#[tokio::test]
async fn issue_5218_a_failed_dependency_cancels_its_dependents() {
    let m = manager().await;
    let a = agent(&m, "4").await;
    let kp = keypair(&m, "AKUSER", None).await;
    let broken = run_named(&m, "AKUSER", "broken-step", &a, &cpu("1")).await;
    let mut req = create("next-step", &[("cpu", "1")]);
    req.dependencies = Some(vec![broken.to_string()]);
    let resp = m.create_session(&kp, req).await.unwrap().into_response();
    let next: SessionId = resp.session_id.parse().unwrap();
    let mut req = create("last-step", &[("cpu", "1")]);
    req.dependencies = Some(vec!["next-step".into()]);
    let resp = m.create_session(&kp, req).await.unwrap().into_response();
    let last: SessionId = resp.session_id.parse().unwrap();
    m.schedule_once(Utc::now()).await.unwrap();
    assert_eq!(session(&m, next).await.status, SessionStatus::Pending);

    let kernel = m.store.kernels(broken).await.unwrap().remove(0);
    m.change_kernel(kernel.id, KernelChange::status(KernelStatus::Error, "kernel-crashed".to_owned())).await.unwrap();
    assert_eq!(session(&m, broken).await.status, SessionStatus::Error);
    let report = m.schedule_once(Utc::now()).await.unwrap();
    let again = m.schedule_once(Utc::now()).await.unwrap();
    assert_eq!(report.cancelled + again.cancelled, 2, "the whole chain behind the failed session is cancelled");
    let cancelled = session(&m, next).await;
    assert_eq!(cancelled.status, SessionStatus::Cancelled);
    assert_eq!(cancelled.status_info.as_deref(), Some("dependency-failed: broken-step"));
    let last = session(&m, last).await;
    assert_eq!(last.status, SessionStatus::Cancelled);
    assert_eq!(last.status_info.as_deref(), Some("dependency-failed: next-step"));
    assert!(m.store.pending_sessions().await.unwrap().is_empty());

    // A batch dependency that ended with a FAILURE result fails its dependents too.
    let (mut job, kernels) = pending_session(&AccessKey::from("AKUSER"), "batch-job", 1, &cpu("1"), Utc::now());
    job.session_type = SessionType::Batch;
    m.store.insert_session(&job, &kernels).await.unwrap();
    let change =
        SessionChange { status: SessionStatus::Terminated, status_info: None, result: Some(SessionResult::Failure) };
    m.store.update_session(job.id, change, Utc::now()).await.unwrap();
    let mut req = create("after-batch", &[("cpu", "1")]);
    req.dependencies = Some(vec![job.id.to_string()]);
    let resp = m.create_session(&kp, req).await.unwrap().into_response();
    m.schedule_once(Utc::now()).await.unwrap();
    let after = session(&m, resp.session_id.parse().unwrap()).await;
    assert_eq!(after.status_info.as_deref(), Some("dependency-failed: batch-job"));
}

#[tokio::test]
async fn a_designated_agent_is_honoured_and_only_admins_may_designate() {
    let m = manager().await;
    let first = agent(&m, "8").await;
    let second = agent(&m, "8").await;
    let user = keypair(&m, "AKUSER", None).await;
    let admin = keypair_as(&m, "AKADMIN", None, Role::Admin).await;

    let mut req = create("chosen", &[("cpu", "1")]);
    req.agent_list = Some(vec![second.to_string()]);
    let err = m.create_session(&user, req.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden, "{err}");
    assert_eq!(err.kind().status(), 403);
    assert!(m.store.pending_sessions().await.unwrap().is_empty());

    let mut ids = vec![];
    for (name, target) in [("on-second", &second), ("on-first", &first), ("again-second", &second)] {
        let mut req = create(name, &[("cpu", "1")]);
        req.config.agent_list = Some(vec![target.to_string()]); // where the official client puts it
        let resp = m.create_session(&admin, req).await.unwrap().into_response();
        let id: SessionId = resp.session_id.parse().unwrap();
        assert_eq!(session(&m, id).await.designated_agents, vec![target.clone()]);
        ids.push((id, target.clone()));
    }
    let report = m.schedule_once(Utc::now()).await.unwrap();
    assert_eq!(report.scheduled, 3);
    for (id, target) in ids {
        let kernels = m.store.kernels(id).await.unwrap();
        assert_eq!(kernels[0].agent_id.as_ref(), Some(&target), "placed on the designated agent");
    }

    let mut unknown = create("nowhere", &[("cpu", "1")]);
    unknown.agent_list = Some(vec!["i-no-such-agent".into()]);
    let err = m.create_session(&admin, unknown).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AgentNotFound, "{err}");
    let mut two = create("two-agents", &[("cpu", "1")]);
    two.agent_list = Some(vec![first.to_string(), second.to_string()]);
    let err = m.create_session(&admin, two).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidParams, "{err}");
}

/// A manager over a store that fails on demand at named points.
async fn faulty_manager() -> (Arc<Manager>, Arc<FaultyStore>) {
    let store = Arc::new(FaultyStore::new(common::sqlite()));
    let m = common::manager_over(ManagerConfig::default(), store.clone());
    ensure_defaults(m.store.as_ref()).await.unwrap();
    (m, store)
}

async fn occupied_cpu(m: &Manager, agent: &AgentId) -> String {
    m.store.agent(agent).await.unwrap().unwrap().occupied_slots.get("cpu").to_string()
}

#[tokio::test]
async fn a_failed_allocation_leaves_nothing_half_allocated_and_is_retried() {
    let (m, faults) = faulty_manager().await;
    let a = agent(&m, "4").await;
    let id = enqueue(&m, "AKUSER", "victim", &cpu("2"), 10, 0).await;

    faults.fail("allocate_batch", 1);
    let report = m.schedule_once(Utc::now()).await.unwrap();
    assert_eq!(faults.fired("allocate_batch"), 1);
    assert_eq!((report.scheduled, report.pending), (0, 1));
    let s = session(&m, id).await;
    assert_eq!(s.status, SessionStatus::Pending, "the session waits for the next pass");
    assert_eq!(occupied_cpu(&m, &a).await, "0", "the agent holds nothing for it");
    let kernels = m.store.kernels(id).await.unwrap();
    assert!(kernels.iter().all(|k| k.agent_id.is_none() && k.occupied_slots.is_zero()), "{kernels:?}");

    let report = m.schedule_once(Utc::now()).await.unwrap();
    assert_eq!(report.scheduled, 1, "the next pass places it");
}

#[tokio::test]
async fn a_store_failure_while_starting_gives_the_slots_back() {
    let (m, faults) = faulty_manager().await;
    let a = agent(&m, "4").await;
    let id = enqueue(&m, "AKUSER", "victim", &cpu("2"), 10, 0).await;

    // The first kernel change after allocation (the batch to PREPARING) fails: the start is abandoned and cleaned
    // up.
    faults.fail("update_kernels", 1);
    let report = m.schedule_once(Utc::now()).await.unwrap();
    assert_eq!((report.scheduled, report.started.len()), (1, 1));
    report.started.finished().await;
    let s = session(&m, id).await;
    assert_eq!(faults.fired("update_kernels"), 1);
    assert!(!s.status.holds_resources(), "{:?}", s.status);
    assert_eq!(s.status_info.as_deref(), Some("kernel-creation-failed"));
    assert_eq!(occupied_cpu(&m, &a).await, "0", "the slots are given back");
}

#[tokio::test]
async fn a_start_that_failed_during_a_store_outage_is_recovered_later() {
    let (m, faults) = faulty_manager().await;
    let a = agent(&m, "4").await;
    let id = enqueue(&m, "AKUSER", "victim", &cpu("2"), 10, 0).await;

    // Every kernel change fails for a while: the start (the batch to PREPARING) and its cleanup (to TERMINATED)
    // both fail, and the session stays SCHEDULED.
    faults.fail("update_kernels", 2);
    let report = m.schedule_once(Utc::now()).await.unwrap();
    assert_eq!(report.scheduled, 1);
    report.started.finished().await;
    assert_eq!(faults.fired("update_kernels"), 2);
    assert_eq!(session(&m, id).await.status, SessionStatus::Scheduled);
    assert_eq!(occupied_cpu(&m, &a).await, "2");

    // Not yet stalled: nothing happens.
    assert_eq!(m.recover_stalled_starts(Utc::now()).await.unwrap(), 0);
    // Once stalled, the session is started again (here the agent is unreachable, so it fails for good and the
    // slots come back).
    let later = Utc::now() + backend_manager::scheduler::STALLED_START;
    assert_eq!(m.recover_stalled_starts(later).await.unwrap(), 1);
    let s = session(&m, id).await;
    assert!(!s.status.holds_resources(), "{:?}", s.status);
    assert_eq!(occupied_cpu(&m, &a).await, "0", "the slots are given back");
}

#[tokio::test]
async fn a_start_stuck_creating_times_out_and_gives_the_slots_back() {
    let m = manager().await;
    let a = agent(&m, "4").await;
    let id = enqueue(&m, "AKUSER", "stuck", &cpu("2"), 10, 0).await;
    let kernel = m.store.kernels(id).await.unwrap().remove(0);
    m.store.allocate(id, &[Placement { kernel_id: kernel.id, agent_id: a.clone() }], Utc::now()).await.unwrap();
    for step in [KernelStatus::Preparing, KernelStatus::Creating] {
        m.change_kernel(kernel.id, KernelChange::status(step, None)).await.unwrap();
    }
    assert_eq!(m.recover_stalled_starts(Utc::now() + backend_manager::scheduler::STALLED_START).await.unwrap(), 0);
    let later = Utc::now() + backend_manager::scheduler::START_TIMEOUT;
    assert_eq!(m.recover_stalled_starts(later).await.unwrap(), 1);
    let s = session(&m, id).await;
    assert!(!s.status.holds_resources(), "{:?}", s.status);
    assert_eq!(s.status_info.as_deref(), Some("start-timeout"));
    assert_eq!(occupied_cpu(&m, &a).await, "0");
}

/// A PENDING session of `owner` in `domain`/`group` asking `each`, `age_secs` old.
async fn enqueue_in(
    m: &Manager,
    owner: &str,
    (domain, group): (&str, &str),
    each: &ResourceSlots,
    age: i64,
) -> SessionId {
    let (mut session, kernels) = pending_session(
        &AccessKey::from(owner),
        &format!("q-{}", SessionId::new()),
        1,
        each,
        Utc::now() - Duration::seconds(age),
    );
    session.domain = domain.into();
    session.group = group.into();
    m.store.insert_session(&session, &kernels).await.unwrap();
    session.id
}

/// A RUNNING session of `owner` in `domain`/`group` holding `each` on `agent`.
async fn run_in(m: &Manager, owner: &str, scope: (&str, &str), agent: &AgentId, each: &ResourceSlots) -> SessionId {
    let id = enqueue_in(m, owner, scope, each, 0).await;
    let kernels = m.store.kernels(id).await.unwrap();
    let placement = Placement { kernel_id: kernels[0].id, agent_id: agent.clone() };
    m.store.allocate(id, &[placement], Utc::now()).await.unwrap();
    for step in [KernelStatus::Preparing, KernelStatus::Creating, KernelStatus::Running] {
        m.change_kernel(kernels[0].id, KernelChange::status(step, None)).await.unwrap();
    }
    id
}

async fn put_group(m: &Manager, domain: &str, name: &str, quota: &str) {
    let total_resource_slots = ResourceSlots::from_pairs([("cpu", quota)]).unwrap();
    let g = Group {
        name: name.into(),
        domain: domain.into(),
        description: None,
        is_active: true,
        total_resource_slots,
        created_at: Utc::now(),
    };
    m.store.put_group(&g).await.unwrap();
}

#[tokio::test]
async fn a_group_quota_holds_back_its_sessions_while_another_groups_are_placed() {
    let m = manager().await;
    let a = agent(&m, "16").await;
    put_group(&m, "default", "small", "4").await;
    let running = run_in(&m, "AKRUN", ("default", "small"), &a, &cpu("3")).await;
    let held = enqueue_in(&m, "AKUSER", ("default", "small"), &cpu("2"), 60).await;
    let other = enqueue_in(&m, "AKUSER", ("default", "default"), &cpu("2"), 30).await;

    let report = m.schedule_once(Utc::now()).await.unwrap();
    assert_eq!((report.scheduled, report.pending), (1, 1));
    assert_ne!(session(&m, other).await.status, SessionStatus::Pending, "another group's session is placed");
    let s = session(&m, held).await;
    assert_eq!(s.status, SessionStatus::Pending);
    assert_eq!(s.status_info.as_deref(), Some("pending: group small total_resource_slots exceeded (cpu 3 of 4 used)"));

    // The slots the running session frees let the held one in.
    end(&m, running).await;
    m.schedule_once(Utc::now()).await.unwrap();
    assert_ne!(session(&m, held).await.status, SessionStatus::Pending, "placed once the group's slots are free");
}

#[tokio::test]
async fn a_domain_quota_counts_every_group_of_the_domain() {
    let m = manager().await;
    let a = agent(&m, "16").await;
    let lab = Domain {
        name: "lab".into(),
        description: None,
        is_active: true,
        total_resource_slots: ResourceSlots::from_pairs([("cpu", "4")]).unwrap(),
        created_at: Utc::now(),
    };
    m.store.put_domain(&lab).await.unwrap();
    put_group(&m, "lab", "g1", "100").await;
    put_group(&m, "lab", "g2", "100").await;
    let running = run_in(&m, "AKRUN", ("lab", "g1"), &a, &cpu("3")).await;
    let held = enqueue_in(&m, "AKUSER", ("lab", "g2"), &cpu("2"), 60).await;
    let other = enqueue_in(&m, "AKUSER", ("default", "default"), &cpu("2"), 30).await;

    m.schedule_once(Utc::now()).await.unwrap();
    assert_ne!(session(&m, other).await.status, SessionStatus::Pending, "another domain's session is placed");
    let s = session(&m, held).await;
    assert_eq!(s.status, SessionStatus::Pending);
    assert_eq!(s.status_info.as_deref(), Some("pending: domain lab total_resource_slots exceeded (cpu 3 of 4 used)"));

    end(&m, running).await;
    m.schedule_once(Utc::now()).await.unwrap();
    assert_ne!(session(&m, held).await.status, SessionStatus::Pending, "placed once the domain's slots are free");
}

#[tokio::test]
async fn a_request_larger_than_its_group_or_domain_quota_is_refused_at_create() {
    let m = manager().await;
    agent(&m, "16").await;
    let kp = keypair(&m, "AKUSER", None).await;
    put_group(&m, "default", "default", "4").await;
    let err = m.create_session(&kp, create("too-big-for-group", &[("cpu", "5")])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuotaExceeded, "{err}");
    assert!(err.to_string().contains("group default may use at most 4"), "{err}");

    put_group(&m, "default", "default", "100").await;
    let mut domain = m.store.domain("default").await.unwrap().unwrap();
    domain.total_resource_slots = ResourceSlots::from_pairs([("cpu", "3")]).unwrap();
    m.store.put_domain(&domain).await.unwrap();
    let err = m.create_session(&kp, create("too-big-for-domain", &[("cpu", "4")])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuotaExceeded, "{err}");
    assert!(err.to_string().contains("domain default may use at most 3"), "{err}");
    m.create_session(&kp, create("fits", &[("cpu", "3")])).await.unwrap();
}

#[tokio::test]
async fn each_scaling_group_places_with_the_agent_selector_it_names() {
    let m = manager().await;
    let mut agents: Vec<(String, AgentId)> = Vec::new();
    for (name, selector) in [("packed", "concentrated"), ("spread", "dispersed")] {
        let sg = ScalingGroup {
            name: name.into(),
            description: None,
            is_active: true,
            scheduler: "fifo".into(),
            agent_selector: Some(selector.into()),
            created_at: Utc::now(),
        };
        m.store.put_scaling_group(&sg).await.unwrap();
        for _ in 0..2 {
            let hb = backend_core::model::AgentHeartbeat {
                scaling_group: name.into(),
                ..heartbeat(ResourceSlots::from_pairs([("cpu", "8"), ("mem", "64g")]).unwrap())
            };
            m.store.upsert_agent(&hb, Utc::now()).await.unwrap();
            agents.push((name.into(), hb.id));
        }
    }
    let mut sessions: Vec<(String, SessionId)> = Vec::new();
    for (i, name) in ["packed", "packed", "spread", "spread"].into_iter().enumerate() {
        let (mut s, kernels) = pending_session(
            &AccessKey::from("AKUSER"),
            &format!("s{i}"),
            1,
            &cpu("1"),
            Utc::now() - Duration::seconds(60 - i as i64),
        );
        s.scaling_group = name.into();
        m.store.insert_session(&s, &kernels).await.unwrap();
        sessions.push((name.into(), s.id));
    }
    assert_eq!(m.schedule_once(Utc::now()).await.unwrap().scheduled, 4);
    let mut used: std::collections::BTreeMap<String, std::collections::BTreeSet<AgentId>> = Default::default();
    for (group, id) in &sessions {
        let kernel = m.store.kernels(*id).await.unwrap().remove(0);
        let agent = kernel.agent_id.expect("placed");
        assert!(agents.contains(&(group.clone(), agent.clone())), "placed in its own scaling group");
        used.entry(group.clone()).or_default().insert(agent);
    }
    assert_eq!(used["packed"].len(), 1, "concentrated packs both sessions onto one agent");
    assert_eq!(used["spread"].len(), 2, "dispersed spreads them over both agents");
}
