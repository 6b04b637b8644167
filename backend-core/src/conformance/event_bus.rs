//! The [`EventBus`] suite.

use crate::events::{Event, EventBus};
use crate::ids::{AgentId, KernelId, SessionId};
use futures::StreamExt;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn lifecycle(session_id: SessionId) -> Event {
    Event::SessionLifecycle {
        event: "session_started".into(),
        session_id,
        kernel_id: None,
        status: "RUNNING".into(),
        reason: None,
        exit_code: None,
    }
}

fn exited(n: u32) -> Event {
    Event::KernelExited {
        agent_id: AgentId::from(format!("agent-{n}")),
        kernel_id: KernelId::new(),
        exit_code: Some(n as i32),
        reason: "self-terminated".into(),
    }
}

/// Runs every check.
pub async fn run(bus: &dyn EventBus) {
    broadcast_reaches_every_subscriber(bus).await;
    anycast_reaches_one_consumer_per_group(bus).await;
    publish_all_keeps_order(bus).await;
}

/// Events published together arrive like events published one by one: broadcast ones at a subscriber in order,
/// anycast ones at the group's consumer.
pub async fn publish_all_keeps_order(bus: &dyn EventBus) {
    let group = format!("conformance-all-{}", uuid::Uuid::new_v4());
    let mut sub = bus.subscribe().await.expect("subscribe");
    let mut consumer = bus.consume(&group).await.expect("consume");
    let ids: Vec<SessionId> = (0..50).map(|_| SessionId::new()).collect();
    let mut events: Vec<Event> = ids.iter().map(|id| lifecycle(*id)).collect();
    events.push(exited(7));
    bus.publish_all(events).await.expect("publish_all");
    bus.publish_all(Vec::new()).await.expect("publish nothing");
    let mut seen = Vec::new();
    while seen.len() < ids.len() {
        let ev = tokio::time::timeout(WAIT, sub.next()).await.expect("broadcast event in time").expect("open");
        if let Some(id) = ev.session_id().filter(|id| ids.contains(id)) {
            seen.push(id);
        }
    }
    assert_eq!(seen, ids, "events published together arrive in order");
    let ev = tokio::time::timeout(WAIT, consumer.next()).await.expect("anycast event in time").expect("open");
    assert!(matches!(ev, Event::KernelExited { exit_code: Some(7), .. }), "{ev:?}");
}

/// Two subscribers both receive a broadcast event, in publish order.
pub async fn broadcast_reaches_every_subscriber(bus: &dyn EventBus) {
    let mut a = bus.subscribe().await.expect("subscribe");
    let mut b = bus.subscribe().await.expect("subscribe");
    let (s1, s2) = (SessionId::new(), SessionId::new());
    bus.publish(lifecycle(s1)).await.expect("publish");
    bus.publish(lifecycle(s2)).await.expect("publish");
    for sub in [&mut a, &mut b] {
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let ev = tokio::time::timeout(WAIT, sub.next()).await.expect("broadcast event in time").expect("open");
            if let Some(id) = ev.session_id().filter(|id| *id == s1 || *id == s2) {
                seen.push(id);
            }
        }
        assert_eq!(seen, vec![s1, s2], "broadcast events arrive in order");
    }
}

/// Each anycast event goes to exactly one consumer of a group, and to every group.
pub async fn anycast_reaches_one_consumer_per_group(bus: &dyn EventBus) {
    let group = format!("conformance-{}", uuid::Uuid::new_v4());
    let other = format!("{group}-other");
    let mut c1 = bus.consume(&group).await.expect("consume");
    let mut c2 = bus.consume(&group).await.expect("consume");
    let mut o = bus.consume(&other).await.expect("consume");
    let n = 20;
    for i in 0..n {
        bus.publish(exited(i)).await.expect("publish");
    }
    let mut got = Vec::new();
    while got.len() < n as usize {
        let next = async {
            tokio::select! { Some(ev) = c1.next() => ev, Some(ev) = c2.next() => ev }
        };
        let ev = tokio::time::timeout(WAIT, next)
            .await
            .unwrap_or_else(|_| panic!("anycast events missing: got {} of {n}", got.len()));
        if let Event::KernelExited { exit_code: Some(c), .. } = ev {
            got.push(c);
        }
    }
    got.sort();
    assert_eq!(got, (0..n as i32).collect::<Vec<_>>(), "each event delivered once within the group");
    let mut other_got = 0;
    while other_got < n {
        tokio::time::timeout(WAIT, o.next()).await.expect("other group gets its copy").expect("open");
        other_got += 1;
    }
    // Nothing more for the first group.
    let extra = tokio::time::timeout(Duration::from_millis(200), async {
        tokio::select! { Some(ev) = c1.next() => ev, Some(ev) = c2.next() => ev }
    })
    .await;
    assert!(extra.is_err(), "an anycast event was delivered twice in one group: {extra:?}");
}
