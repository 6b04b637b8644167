//! The Redis backends ([`RedisLiveState`], [`RedisEventBus`]) against a real Redis server.
//!
//! They need the server of `scripts/services.sh` (or `BACKEND_AI_TEST_REDIS`); when it is unreachable they fail,
//! they do not skip. Each test works in its own namespace. The restart test runs its own `redis-server` child on a
//! free port, so it never disturbs the shared server.
#![cfg(feature = "redis")]

use backend_core::conformance::wait::wait_until;
use backend_core::events::redis::RedisEventBus;
use backend_core::events::{Event, EventBus, EventStream};
use backend_core::ids::{AgentId, KernelId, SessionId};
use backend_core::live::redis::RedisLiveState;
use backend_core::live::LiveState;
use chrono::{Duration as ChronoDuration, Utc};
use futures::StreamExt;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

fn redis_url() -> String {
    std::env::var("BACKEND_AI_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:16379".to_owned())
}

fn namespace() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}

fn unreachable(url: &str, e: impl std::fmt::Display) -> ! {
    panic!("Redis at {url} is unreachable ({e}); start it with `bash scripts/services.sh` or set BACKEND_AI_TEST_REDIS")
}

async fn live_state(namespace: &str) -> RedisLiveState {
    let url = redis_url();
    RedisLiveState::connect(&url, namespace).await.unwrap_or_else(|e| unreachable(&url, e))
}

async fn event_bus(url: &str, namespace: &str) -> RedisEventBus {
    RedisEventBus::connect(url, namespace).await.unwrap_or_else(|e| unreachable(url, e))
}

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

fn exited(code: i32) -> Event {
    Event::KernelExited {
        agent_id: AgentId::from("agent-restart".to_owned()),
        kernel_id: KernelId::new(),
        exit_code: Some(code),
        reason: "self-terminated".into(),
    }
}

#[tokio::test]
async fn live_state_conforms() {
    backend_core::conformance::live_state::run(&live_state(&namespace()).await).await;
}

#[tokio::test]
async fn event_bus_conforms() {
    backend_core::conformance::event_bus::run(&event_bus(&redis_url(), &namespace()).await).await;
}

#[tokio::test]
async fn rate_limit_counts_each_hit_once_across_connections() {
    let ns = namespace();
    let (a, b) = (live_state(&ns).await, live_state(&ns).await);
    let window = ChronoDuration::minutes(15);
    let now = Utc::now();
    let hits = (0..40).map(|i| {
        let live = if i % 2 == 0 { &a } else { &b };
        live.hit_rate_limit("AKIARACE", now, window)
    });
    let mut counts: Vec<u64> = futures::future::try_join_all(hits).await.expect("hits");
    counts.sort_unstable();
    assert_eq!(counts, (1..=40).collect::<Vec<u64>>(), "every hit counted once, none lost or doubled");
    assert_eq!(b.hit_rate_limit("AKIARACE", now, window).await.unwrap(), 41);
    assert_eq!(a.hit_rate_limit("AKIARACE", now + window, window).await.unwrap(), 1, "the window rolled");
}

#[tokio::test]
async fn live_state_is_shared_between_connections_and_namespaces_are_separate() {
    let ns = namespace();
    let (a, b, other) = (live_state(&ns).await, live_state(&ns).await, live_state(&namespace()).await);
    let agent = AgentId::from("i-shared".to_owned());
    let now = Utc::now();
    a.touch_agent(&agent, now).await.unwrap();
    a.set_stat("kernel.k1", serde_json::json!({"mem": 5}), ChronoDuration::seconds(30), now).await.unwrap();
    assert!(b.agent_last_seen(&agent).await.unwrap().is_some());
    assert_eq!(b.stat("kernel.k1", now).await.unwrap(), Some(serde_json::json!({"mem": 5})));
    assert_eq!(other.agent_last_seen(&agent).await.unwrap(), None);
    assert_eq!(other.stat("kernel.k1", now).await.unwrap(), None);
}

/// A `redis-server` child of this test, on a port of its own, keeping nothing on disk.
struct OwnRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnRedis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().unwrap().port();
        let mut redis = Self { port, dir: tempfile::tempdir().expect("temp dir"), child: None };
        redis.restart().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server on the same port and waits until it answers.
    async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server must be installed (scripts/services.sh installs it)");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        wait_until(format!("the test's own redis-server on port {} to answer", self.port), async || {
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("PING").query_async::<String>(&mut conn).await.ok().map(drop)
        })
        .await;
    }

    /// Kills the server (this child only) and waits until it is gone.
    async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.expect("kill our redis-server");
    }
}

/// Waits for the next event, failing if the stream ends.
async fn next_within(stream: &mut EventStream, wait: Duration) -> Option<Event> {
    match tokio::time::timeout(wait, stream.next()).await {
        Ok(Some(ev)) => Some(ev),
        Ok(None) => panic!("an event stream ended"),
        Err(_) => None,
    }
}

#[tokio::test]
async fn subscriptions_survive_a_redis_restart() {
    let mut server = OwnRedis::start().await;
    let bus = event_bus(&server.url(), &namespace()).await;
    let mut broadcasts = bus.subscribe().await.expect("subscribe");
    let mut anycasts = bus.consume("managers").await.expect("consume");

    // Both deliveries work before the outage.
    let before = SessionId::new();
    bus.publish(lifecycle(before)).await.expect("publish");
    bus.publish(exited(1)).await.expect("publish");
    let ev = next_within(&mut broadcasts, Duration::from_secs(5)).await.expect("broadcast before the restart");
    assert_eq!(ev.session_id(), Some(before));
    let ev = next_within(&mut anycasts, Duration::from_secs(5)).await.expect("anycast before the restart");
    assert!(matches!(ev, Event::KernelExited { exit_code: Some(1), .. }), "{ev:?}");

    server.kill().await;
    let err = bus.publish(lifecycle(SessionId::new())).await.expect_err("broadcast publish while Redis is down");
    assert_eq!(err.kind(), backend_core::ErrorKind::ServiceUnavailable, "{err}");
    bus.publish(exited(2)).await.expect_err("anycast publish while Redis is down");
    // The streams notice the loss and keep trying, without ending or delivering anything.
    assert!(next_within(&mut broadcasts, Duration::from_millis(500)).await.is_none());
    assert!(next_within(&mut anycasts, Duration::from_millis(500)).await.is_none());

    server.restart().await;
    // Anycast events wait in the new stream until the consumer has recreated its group.
    wait_until("publish to work again after the restart", async || bus.publish(exited(3)).await.ok()).await;
    let ev = next_within(&mut anycasts, Duration::from_secs(15)).await.expect("anycast after the restart");
    assert!(matches!(ev, Event::KernelExited { exit_code: Some(3), .. }), "{ev:?}");

    // Broadcast events published before the subscriber resubscribed are lost by design: publish until one arrives.
    let mut sent = Vec::new();
    let mut received = None;
    for _ in 0..40 {
        let id = SessionId::new();
        sent.push(id);
        bus.publish(lifecycle(id)).await.expect("publish after the restart");
        if let Some(ev) = next_within(&mut broadcasts, Duration::from_millis(500)).await {
            received = Some(ev);
            break;
        }
    }
    let ev = received.expect("a broadcast event after the restart reaches the existing subscription");
    assert!(ev.session_id().is_some_and(|id| sent.contains(&id)), "{ev:?}");
    // And from then on, every one does.
    let last = SessionId::new();
    bus.publish(lifecycle(last)).await.expect("publish");
    loop {
        let ev = next_within(&mut broadcasts, Duration::from_secs(5)).await.expect("broadcast after resubscribing");
        if ev.session_id() == Some(last) {
            break;
        }
    }
}

#[tokio::test]
async fn a_consumer_recreates_its_group_when_the_stream_vanishes() {
    let (url, ns) = (redis_url(), namespace());
    let bus = event_bus(&url, &ns).await;
    let mut anycasts = bus.consume("managers").await.expect("consume");
    let mut raw = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("DEL").arg(format!("backend.ai:{ns}:events:anycast")).query_async(&mut raw).await.unwrap();
    bus.publish(exited(7)).await.expect("publish");
    let ev = next_within(&mut anycasts, Duration::from_secs(15)).await.expect("anycast after the stream vanished");
    assert!(matches!(ev, Event::KernelExited { exit_code: Some(7), .. }), "{ev:?}");
}
