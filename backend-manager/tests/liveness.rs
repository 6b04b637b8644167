//! An agent that stops sending heartbeats becomes LOST; its kernels end in ERROR with `agent-lost` and its slots are
//! freed, while an agent that keeps beating stays ALIVE.

mod common;

use backend_core::conformance::metadata_store::{heartbeat, pending_session};
use backend_core::model::AgentStatus;
use backend_core::status::{KernelStatus, SessionStatus};
use backend_core::store::{KernelChange, Placement};
use backend_core::ResourceSlots;
use backend_manager::ManagerConfig;
use chrono::Utc;

#[tokio::test]
async fn silent_agents_are_lost_and_their_kernels_end() {
    let m = common::in_memory_manager(ManagerConfig::default());
    let timeout = chrono::Duration::from_std(m.config.heartbeat_timeout).unwrap();
    let capacity = ResourceSlots::from([("cpu", 4.into())]);
    let silent = heartbeat(capacity.clone());
    let beating = heartbeat(capacity.clone());
    // The checks below pass their own `now`, counted from this moment.
    let start = Utc::now();
    for hb in [&silent, &beating] {
        m.store.upsert_agent(hb, start).await.unwrap();
        m.live.touch_agent(&hb.id, start).await.unwrap();
    }
    let (session, kernels) =
        pending_session(&"AKIATEST".into(), "on-silent", 1, &ResourceSlots::from([("cpu", 1.into())]), Utc::now());
    m.store.insert_session(&session, &kernels).await.unwrap();
    let placement = Placement { kernel_id: kernels[0].id, agent_id: silent.id.clone() };
    m.store.allocate(session.id, &[placement], Utc::now()).await.unwrap();
    for step in [KernelStatus::Preparing, KernelStatus::Creating, KernelStatus::Running] {
        m.change_kernel(kernels[0].id, KernelChange::status(step, None)).await.unwrap();
    }

    // Within the timeout both are alive.
    assert_eq!(m.check_liveness(start + timeout / 2).await.unwrap(), 0);
    assert!(m.store.list_agents().await.unwrap().iter().all(|a| a.status == AgentStatus::Alive));

    // Past the timeout, only the beating agent has been heard from again.
    let later = start + timeout + chrono::Duration::seconds(1);
    m.live.touch_agent(&beating.id, later).await.unwrap();
    assert_eq!(m.check_liveness(later).await.unwrap(), 1);

    let lost = m.store.agent(&silent.id).await.unwrap().unwrap();
    assert_eq!(lost.status, AgentStatus::Lost);
    assert!(lost.lost_at.is_some());
    assert!(lost.occupied_slots.is_zero(), "the lost agent's slots are freed");
    assert_eq!(m.store.agent(&beating.id).await.unwrap().unwrap().status, AgentStatus::Alive);
    let kernel = m.store.kernel(kernels[0].id).await.unwrap().unwrap();
    assert_eq!((kernel.status, kernel.status_info.as_deref()), (KernelStatus::Error, Some("agent-lost")));
    let session = m.store.session(session.id).await.unwrap().unwrap();
    assert_eq!(session.status, SessionStatus::Error);
    assert_eq!(m.check_liveness(later).await.unwrap(), 0, "a lost agent is not lost twice");
}
