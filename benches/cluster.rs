//! Figures of the real backends, printed as tables (a bench binary, not a timed test). Needs PostgreSQL and Redis
//! (`eval "$(scripts/services.sh)"`).
//!
//! 1. Sessions per second end to end through PostgreSQL: clients create sessions through the API of one or two
//!    managers (Redis event bus and live state, a shared lease so one of them schedules), the scheduler allocates
//!    them in PostgreSQL and the managers start them on 200 dummy agents whose runtime does no work (an HTTP server
//!    that answers the agent RPC's create-kernel call at once). Reported: sessions scheduled per second (PENDING to
//!    SCHEDULED) and created-to-RUNNING per second, with the create call's p50/p99.
//! 2. `GET /session/{name}` p50/p99 and requests per second, PostgreSQL against SQLite.
//!
//! `cargo bench --bench cluster` (`BENCH_QUICK=1` for a short run).

#[path = "support/mod.rs"]
mod support;

use backend_client::{Client, ClientConfig};
use backend_core::api::CreateSessionRequest;
use backend_core::config::{ConfigStore, LocalConfigStore};
use backend_core::conformance::metadata_store::{heartbeat, pending_session};
use backend_core::conformance::postgres::ScratchDatabase;
use backend_core::events::redis::RedisEventBus;
use backend_core::events::{EventBus, LocalEventBus};
use backend_core::live::redis::RedisLiveState;
use backend_core::live::{LiveState, LocalLiveState};
use backend_core::model::{KeyPair, Role};
use backend_core::store::postgres::PostgresStore;
use backend_core::store::sqlite::SqliteStore;
use backend_core::store::{prelude::*, SessionFilter};
use backend_core::{ResourceSlots, SessionStatus};
use backend_manager::{Manager, ManagerConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::percentile;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A keypair allowed as many sessions and requests as the bench makes.
async fn bench_keypair(store: &dyn MetadataStore) -> anyhow::Result<KeyPair> {
    backend_core::store::fixtures::ensure_defaults(store).await?;
    let mut policy = store.resource_policy("default").await?.expect("default policy");
    policy.max_concurrent_sessions = 1_000_000;
    policy.max_pending_session_count = None;
    policy.total_resource_slots = ResourceSlots::new();
    store.put_resource_policy(&policy).await?;
    backend_core::store::fixtures::ensure_user(store, "bench@example.com", Role::Superadmin).await?;
    let (ak, sk) = backend_core::auth::generate_keypair();
    let kp = KeyPair {
        access_key: ak.into(),
        secret_key: sk,
        user_id: "bench@example.com".into(),
        role: Role::Superadmin,
        is_active: true,
        rate_limit: 1_000_000_000,
        resource_policy: "default".into(),
        created_at: chrono::Utc::now(),
    };
    store.insert_keypair(&kp).await?;
    Ok(kp)
}

fn client(endpoint: &str, kp: &KeyPair) -> Client {
    Client::new(ClientConfig::new(endpoint, kp.access_key.to_string(), kp.secret_key.clone())).expect("client")
}

struct Throughput {
    sessions: usize,
    scheduled_per_s: f64,
    running_per_s: f64,
    create_p50: f64,
    create_p99: f64,
}

/// `sessions` creates from `clients` concurrent clients spread over `managers` managers; with `backlog`, the
/// sessions are queued in the store before the managers start instead, so only the scheduler and the start path run.
async fn scheduling(managers: usize, sessions: usize, clients: usize, backlog: bool) -> anyhow::Result<Throughput> {
    let redis = env_or("BACKEND_AI_TEST_REDIS", "redis://127.0.0.1:16379");
    let scratch = ScratchDatabase::create("bench_sched").await;
    let db = scratch.url.clone();
    let namespace = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let shared: Arc<dyn ConfigStore> = Arc::new(LocalConfigStore::new());
    let setup = PostgresStore::connect_and_migrate(&db, 4).await?;
    let kp = bench_keypair(&setup).await?;
    let agent = backend_agent::dummy::DummyAgent::start().await?;
    let capacity = ResourceSlots::from([("cpu", 64.into()), ("mem", (256u64 << 30).into())]);
    if backlog {
        let slots = ResourceSlots::from([("cpu", 1.into()), ("mem", (256u64 << 20).into())]);
        for i in 0..sessions {
            let name = format!("bench-{i}");
            let (session, kernels) = pending_session(&kp.access_key, &name, 1, &slots, chrono::Utc::now());
            setup.insert_session(&session, &kernels).await?;
        }
    }
    let mut endpoints = Vec::new();
    let mut stacks = Vec::new();
    let started = Instant::now();
    for i in 0..managers {
        let store = Arc::new(PostgresStore::connect(&db, 16).await?);
        let bus: Arc<dyn EventBus> = Arc::new(RedisEventBus::connect(&redis, &namespace).await?);
        let live: Arc<dyn LiveState> = Arc::new(RedisLiveState::connect(&redis, &namespace).await?);
        let config = ManagerConfig {
            id: format!("bench-manager-{i}"),
            schedule_interval: Duration::from_millis(20),
            heartbeat_timeout: Duration::from_secs(3600),
            ..ManagerConfig::default()
        };
        let m = Manager::new(config, store, bus, live, shared.clone(), "token");
        if i == 0 {
            for _ in 0..200 {
                let mut hb = heartbeat(capacity.clone());
                hb.addr = agent.addr.clone();
                m.store.upsert_agent(&hb, chrono::Utc::now()).await?;
                m.live.touch_agent(&hb.id, chrono::Utc::now()).await?;
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        endpoints.push(format!("http://{}", listener.local_addr()?));
        let background = backend_manager::start_background(&m).await?;
        tokio::spawn(backend_manager::serve(m.clone(), listener, std::future::pending()));
        stacks.push((m, background));
    }

    let next = Arc::new(std::sync::atomic::AtomicUsize::new(if backlog { sessions } else { 0 }));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = client(&endpoints[c % managers], &kp);
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= sessions {
                    return latencies;
                }
                let request = CreateSessionRequest {
                    image: Some("python:3.11".into()),
                    name: Some(format!("bench-{i}")),
                    ..CreateSessionRequest::default()
                };
                let t = Instant::now();
                let created = client.create_session(&request).await.expect("create");
                assert_eq!(created.status, "RUNNING", "{created:?}");
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await?);
    }
    let running = SessionFilter { statuses: Some(vec![SessionStatus::Running]), ..SessionFilter::default() };
    while setup.list_sessions(&running).await?.len() < sessions {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    latencies.sort();

    // When each session was scheduled, from its status history.
    let all = setup.list_sessions(&Default::default()).await?;
    let first = if backlog {
        chrono::Utc::now() - chrono::Duration::from_std(elapsed)?
    } else {
        all.iter().map(|s| s.created_at).min().unwrap()
    };
    let last_scheduled = all
        .iter()
        .filter_map(|s| s.status_history.entered(SessionStatus::Scheduled))
        .max()
        .expect("scheduled sessions");
    let running = all.iter().filter(|s| s.status == SessionStatus::Running).count();
    assert_eq!(running, sessions, "every session RUNNING");
    let sched_secs = (last_scheduled - first).num_microseconds().unwrap() as f64 / 1e6;
    drop(stacks);
    Ok(Throughput {
        sessions,
        scheduled_per_s: sessions as f64 / sched_secs,
        running_per_s: sessions as f64 / elapsed.as_secs_f64(),
        create_p50: percentile(&latencies, 0.5),
        create_p99: percentile(&latencies, 0.99),
    })
}

/// `GET /session/{name}` through the API on one store: (p50 ms, p99 ms, requests/s) over `requests` with
/// `clients` concurrent clients.
async fn session_reads(
    store: Arc<dyn MetadataStore>,
    requests: usize,
    clients: usize,
) -> anyhow::Result<(f64, f64, f64)> {
    let kp = bench_keypair(store.as_ref()).await?;
    let m = Manager::new(
        ManagerConfig::default(),
        store.clone(),
        Arc::new(LocalEventBus::new()),
        Arc::new(LocalLiveState::new()),
        Arc::new(LocalConfigStore::new()),
        "token",
    );
    let now = chrono::Utc::now();
    let slots = ResourceSlots::from([("cpu", 1.into())]);
    for i in 0..100 {
        let (session, kernels) = backend_core::conformance::metadata_store::pending_session(
            &kp.access_key,
            &format!("read-{i}"),
            1,
            &slots,
            now,
        );
        store.insert_session(&session, &kernels).await?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    tokio::spawn(backend_manager::serve(m, listener, std::future::pending()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client = client(&endpoint, &kp);
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= requests {
                    return latencies;
                }
                let t = Instant::now();
                client.session_info(&format!("read-{}", i % 100)).await.expect("session info");
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await?);
    }
    let rps = requests as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    Ok((percentile(&latencies, 0.5), percentile(&latencies, 0.99), rps))
}

fn main() -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let (sessions, reads) = if quick { (300, 2000) } else { (3000, 20000) };
    let clients = 64;

    println!("Sessions through PostgreSQL ({sessions} sessions, 200 dummy agents; Redis bus and live state)");
    println!("| workload | managers | sessions | scheduled/s | RUNNING/s | create p50 ms | create p99 ms |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (workload, backlog) in [("queued backlog", true), ("API creates, 64 clients", false)] {
        for managers in [1, 2] {
            let t = scheduling(managers, sessions, clients, backlog).await?;
            let ms = |v: f64| if v.is_nan() { "-".to_owned() } else { format!("{v:.2}") };
            println!(
                "| {workload} | {managers} | {} | {:.0} | {:.0} | {} | {} |",
                t.sessions,
                t.scheduled_per_s,
                t.running_per_s,
                ms(t.create_p50),
                ms(t.create_p99)
            );
        }
    }

    println!();
    println!("GET /session/{{name}} ({reads} requests, 16 clients)");
    println!("| store | p50 ms | p99 ms | requests/s |");
    println!("| --- | --- | --- | --- |");
    let scratch = ScratchDatabase::create("bench_reads").await;
    let db = scratch.url.clone();
    let stores: [(&str, Arc<dyn MetadataStore>); 2] = [
        ("PostgreSQL", Arc::new(PostgresStore::connect_and_migrate(&db, 16).await?)),
        ("SQLite", Arc::new(SqliteStore::open(&tempfile::tempdir()?.keep().join("bench.db"))?)),
    ];
    for (name, store) in stores {
        let (p50, p99, rps) = session_reads(store, reads, 16).await?;
        println!("| {name} | {p50:.3} | {p99:.3} | {rps:.0} |");
    }
    Ok(())
}
