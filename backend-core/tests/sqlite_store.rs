//! The embedded SQLite metadata store against the `MetadataStore` conformance suite, in memory and in a file.

use backend_core::conformance::metadata_store;
use backend_core::store::prelude::*;
use backend_core::store::sqlite::SqliteStore;
use backend_core::store::Delegate;
use backend_core::AccessKey;
use chrono::Utc;
use std::sync::Arc;

/// The suite on a store in memory.
mod in_memory {
    use super::*;

    backend_core::metadata_store_suite!(async { SqliteStore::in_memory().expect("in-memory store") });
}

/// The suite on a store in a file of a temporary directory.
mod in_a_file {
    use super::*;

    backend_core::metadata_store_suite!(FileStore::create());
}

/// A store on a file of its own temporary directory, removed with it.
struct FileStore {
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

impl FileStore {
    async fn create() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("metadata.db")).expect("file store");
        Self { store, _dir: dir }
    }
}

impl Delegate for FileStore {
    fn delegate(&self, _method: &'static str) -> backend_core::Result<&dyn MetadataStore> {
        Ok(&self.store)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_allocations_in_memory() {
    let store: Arc<dyn MetadataStore> = Arc::new(SqliteStore::in_memory().expect("in-memory store"));
    metadata_store::sessions::concurrent_allocations(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_allocations_through_two_connections_to_one_file() {
    // Two stores on one file are two connections: their write transactions must queue, not deadlock or overbook.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("metadata.db");
    let first = SqliteStore::open(&path).expect("first connection");
    let second = SqliteStore::open(&path).expect("second connection");
    let both: Arc<dyn MetadataStore> = Arc::new(Alternating { stores: [first, second], next: Default::default() });
    metadata_store::sessions::concurrent_allocations(both).await;
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

impl Delegate for Alternating {
    fn delegate(&self, _method: &'static str) -> backend_core::Result<&dyn MetadataStore> {
        Ok(self.pick())
    }
}
