//! The PostgreSQL metadata store against the `MetadataStore` conformance suite, its migrations, and two stores (two
//! pools, as two managers would hold) racing over one database.
//!
//! The server comes from `BACKEND_AI_TEST_POSTGRES` (default: the one `bash scripts/services.sh` starts); the role
//! must be allowed to create databases. Each test works in a fresh database of its own, dropped at the end, so the
//! tests run in parallel. An unreachable server fails the tests: they are never skipped.
#![cfg(feature = "postgres")]

use backend_core::conformance::metadata_store::{self, assert_occupancy_invariant};
use backend_core::conformance::postgres::{ScratchDatabase, ScratchStore};
use backend_core::error::ErrorKind;
use backend_core::model::KernelRecord;
use backend_core::status::{KernelStatus, SessionStatus};
use backend_core::store::postgres::PostgresStore;
use backend_core::store::prelude::*;
use backend_core::store::{KernelChange, Placement};
use backend_core::{AccessKey, AgentId, ResourceSlots, SessionId};
use chrono::{Duration, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// A migrated store on `db`.
async fn migrated_store(db: &ScratchDatabase, pool_size: usize) -> PostgresStore {
    let store = PostgresStore::connect(&db.url, pool_size).await.expect("connect to the test database");
    store.migrate().await.expect("migrate");
    store
}

// The whole suite, one test per check, each on a scratch database of its own.
backend_core::metadata_store_suite!(ScratchStore::create("t", 4));

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_allocations_through_one_pool() {
    let db = ScratchDatabase::create("t").await;
    let store: Arc<dyn MetadataStore> = Arc::new(migrated_store(&db, 8).await);
    metadata_store::sessions::concurrent_allocations(store).await;
}

#[tokio::test]
async fn migrate_is_idempotent_and_reports_its_status() {
    let db = ScratchDatabase::create("t").await;
    let store = PostgresStore::connect(&db.url, 2).await.expect("connect");

    let before = store.migration_status().await.expect("status before");
    assert!(before.len() >= 2, "the embedded migrations: {before:?}");
    assert!(before.iter().all(|(_, applied)| !applied), "a fresh database has none applied: {before:?}");

    let applied = store.migrate().await.expect("first migrate");
    let versions: Vec<String> = before.iter().map(|(v, _)| v.clone()).collect();
    assert_eq!(applied, versions, "the first run applies every migration, oldest first");

    let after = store.migration_status().await.expect("status after");
    assert_eq!(after, versions.iter().map(|v| (v.clone(), true)).collect::<Vec<_>>());

    assert!(store.migrate().await.expect("second migrate").is_empty(), "nothing left to apply");
    let other = PostgresStore::connect_and_migrate(&db.url, 1).await.expect("another manager migrates");
    assert!(other.migration_status().await.expect("status").iter().all(|(_, applied)| *applied));

    // The schema works: a keypair round-trips.
    let owner = AccessKey::from("AKMIGRATED");
    let kp = backend_core::model::KeyPair {
        access_key: owner.clone(),
        secret_key: "secret".into(),
        user_id: "migrated@example.invalid".into(),
        role: backend_core::model::Role::User,
        is_active: true,
        rate_limit: 10,
        resource_policy: "default".into(),
        created_at: Utc::now(),
    };
    store.insert_keypair(&kp).await.expect("insert keypair");
    let err = other.insert_keypair(&kp).await.expect_err("a duplicate keypair");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_migrations_revert_everything_and_up_ones_apply_again() {
    use diesel::Connection;
    use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
    use diesel_async::AsyncPgConnection;
    use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

    let db = ScratchDatabase::create("t").await;
    let store = migrated_store(&db, 1).await;
    let url = db.url.clone();
    let reverted = tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url).expect("connect");
        conn.revert_all_migrations(MIGRATIONS).expect("revert every migration").len()
    })
    .await
    .expect("revert task");
    let status = store.migration_status().await.expect("status");
    assert_eq!(reverted, status.len(), "every migration has a down script");
    assert!(status.iter().all(|(_, applied)| !applied), "nothing left applied: {status:?}");
    assert_eq!(store.migrate().await.expect("migrate again").len(), status.len());
    assert!(store.list_vfolders().await.expect("the folder tables are back").is_empty());
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let err = PostgresStore::connect("postgres://nobody:secret@127.0.0.1:1/none", 1).await.expect_err("no server");
    assert_eq!(err.kind(), ErrorKind::ServiceUnavailable, "{err}");
    assert!(!err.to_string().contains("secret"), "the password stays out of messages: {err}");
}

/// Every agent's occupied slots equal what its live kernels hold and fit its capacity, seen through `store`.
async fn checkpoint(store: &dyn MetadataStore, agents: &[AgentId], when: &str) {
    assert_occupancy_invariant(store).await;
    for id in agents {
        let agent = store.agent(id).await.expect("agent").expect("agent exists");
        assert!(
            agent.occupied_slots.fits_in(&agent.available_slots),
            "{when}: agent {id} occupies {} of {}",
            agent.occupied_slots,
            agent.available_slots
        );
    }
}

/// Two managers (two stores, two pools) race to allocate the same pending sessions while they also terminate the
/// kernels allocated in the round before, until every session has run: each session is won exactly once, the loser
/// of a race gets Conflict or QuotaExceeded, and no agent is ever overbooked or left holding released slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn two_managers_race_without_breaking_the_occupancy_invariant() {
    const AGENTS: usize = 6;
    const SESSIONS: usize = 300;
    let db = ScratchDatabase::create("t").await;
    let first = Arc::new(migrated_store(&db, 8).await);
    let second = Arc::new(PostgresStore::connect(&db.url, 8).await.expect("second manager"));
    let managers: [Arc<dyn MetadataStore>; 2] = [first.clone(), second.clone()];

    let capacity = ResourceSlots::from_pairs([("cpu", "8"), ("mem", "16g")]).unwrap();
    let mut agents = Vec::new();
    for _ in 0..AGENTS {
        agents.push(first.upsert_agent(&metadata_store::heartbeat(capacity.clone()), Utc::now()).await.unwrap().id);
    }

    let owner = AccessKey::from(format!("AKRACE{}", uuid::Uuid::new_v4().simple()).to_uppercase());
    let t0 = Utc::now();
    let mut kernels_of: HashMap<SessionId, Vec<KernelRecord>> = HashMap::new();
    let mut order = Vec::new();
    for i in 0..SESSIONS {
        let each = ResourceSlots::from_pairs([("cpu", ["1", "0.5", "1.25"][i % 3]), ("mem", "1g")]).unwrap();
        let (session, kernels) = metadata_store::pending_session(
            &owner,
            &format!("race-{i}"),
            1 + (i % 3) as u32,
            &each,
            t0 + Duration::milliseconds(i as i64),
        );
        managers[i % 2].insert_session(&session, &kernels).await.expect("insert session");
        order.push(session.id);
        kernels_of.insert(session.id, kernels);
    }

    let started = Instant::now();
    let mut pending: Vec<SessionId> = order.clone();
    let mut to_terminate: Vec<SessionId> = Vec::new();
    let mut rounds = 0;
    let (mut allocations, mut refusals, mut terminations) = (0usize, 0usize, 0usize);
    while !pending.is_empty() || !to_terminate.is_empty() {
        rounds += 1;
        assert!(rounds <= 200, "no progress after {rounds} rounds: {} still pending", pending.len());

        // Both managers try every pending session, each placing all its kernels on one agent chosen its own way.
        let mut races = Vec::new();
        for (i, id) in pending.iter().enumerate() {
            for (m, manager) in managers.iter().enumerate() {
                let agent = agents[(i + m * 3 + rounds) % AGENTS].clone();
                let placements: Vec<Placement> =
                    kernels_of[id].iter().map(|k| Placement { kernel_id: k.id, agent_id: agent.clone() }).collect();
                let (manager, id) = (Arc::clone(manager), *id);
                races.push(tokio::spawn(async move { (id, manager.allocate(id, &placements, Utc::now()).await) }));
            }
        }
        // Meanwhile both managers terminate every kernel allocated in the previous round.
        let mut stops = Vec::new();
        for id in &to_terminate {
            for kernel in &kernels_of[id] {
                for manager in &managers {
                    let (manager, kernel) = (Arc::clone(manager), kernel.id);
                    stops.push(tokio::spawn(async move {
                        let change = KernelChange::status(KernelStatus::Terminated, Some("race over".into()));
                        manager.update_kernel(kernel, change, Utc::now()).await
                    }));
                }
            }
        }

        let mut wins: HashMap<SessionId, usize> = HashMap::new();
        for race in races {
            let (id, outcome) = race.await.expect("allocation task");
            match outcome {
                Ok(()) => *wins.entry(id).or_default() += 1,
                Err(e) => {
                    assert!(
                        matches!(e.kind(), ErrorKind::Conflict | ErrorKind::QuotaExceeded),
                        "a lost allocation race is Conflict or QuotaExceeded: {e}"
                    );
                    refusals += 1;
                }
            }
        }
        for stop in stops {
            stop.await.expect("termination task").expect("terminate a kernel");
            terminations += 1;
        }
        assert!(wins.values().all(|&n| n == 1), "a session allocated twice: {wins:?}");
        allocations += wins.len();

        for id in &to_terminate {
            let session = managers[rounds % 2].session(*id).await.unwrap().expect("session");
            assert_eq!(session.status, SessionStatus::Terminated, "session {id} after its kernels ended");
        }
        for id in wins.keys() {
            let session = managers[rounds % 2].session(*id).await.unwrap().expect("session");
            assert_eq!(session.status, SessionStatus::Scheduled, "session {id} after winning");
        }
        pending.retain(|id| !wins.contains_key(id));
        to_terminate = wins.into_keys().collect();
        checkpoint(&*managers[rounds % 2], &agents, &format!("round {rounds}")).await;
    }
    let elapsed = started.elapsed();

    assert_eq!(allocations, SESSIONS, "every session was allocated exactly once");
    for id in &agents {
        let agent = second.agent(id).await.unwrap().expect("agent");
        assert!(agent.occupied_slots.is_zero(), "agent {id} still occupies {}", agent.occupied_slots);
        assert!(second.kernels_on_agent(id).await.unwrap().is_empty());
    }
    checkpoint(&*first, &agents, "the end").await;
    eprintln!(
        "two managers: {SESSIONS} sessions on {AGENTS} agents in {rounds} rounds, {allocations} allocations, \
         {refusals} refusals, {terminations} kernel terminations, {elapsed:.2?}"
    );
}
