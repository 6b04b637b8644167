//! The [`ConfigStore`] suite.

use crate::config::ConfigStore;
use crate::conformance::wait::wait_until;
use futures::StreamExt;
use std::time::Duration;

/// Runs every check.
pub async fn run(store: &dyn ConfigStore) {
    let prefix = format!("conformance/{}/", uuid::Uuid::new_v4());
    values(store, &prefix).await;
    watch(store, &prefix).await;
    leases(store, &prefix).await;
}

/// Put, get, prefix listing and delete.
pub async fn values(store: &dyn ConfigStore, prefix: &str) {
    let k = |s: &str| format!("{prefix}{s}");
    assert_eq!(store.get(&k("a")).await.unwrap(), None);
    store.put(&k("a"), "1").await.unwrap();
    store.put(&k("b/c"), "2").await.unwrap();
    store.put(&format!("{}x", prefix.trim_end_matches('/')), "outside").await.unwrap();
    assert_eq!(store.get(&k("a")).await.unwrap().as_deref(), Some("1"));
    let all = store.get_prefix(prefix).await.unwrap();
    assert_eq!(all.len(), 2, "only keys under the prefix: {all:?}");
    assert_eq!(all.get(&k("b/c")).map(String::as_str), Some("2"));
    store.delete(&k("a")).await.unwrap();
    store.delete(&k("a")).await.unwrap();
    assert_eq!(store.get(&k("a")).await.unwrap(), None);
}

/// A watcher sees puts and deletes under its prefix (skipped for stores that do not support watching).
pub async fn watch(store: &dyn ConfigStore, prefix: &str) {
    let Ok(mut changes) = store.watch(prefix).await else { return };
    let key = format!("{prefix}watched");
    store.put("elsewhere/key", "x").await.unwrap();
    store.put(&key, "v").await.unwrap();
    store.delete(&key).await.unwrap();
    let wait = Duration::from_secs(10);
    let c = tokio::time::timeout(wait, changes.next()).await.expect("change in time").expect("open");
    assert_eq!((c.key.as_str(), c.value.as_deref()), (key.as_str(), Some("v")));
    let c = tokio::time::timeout(wait, changes.next()).await.expect("change in time").expect("open");
    assert_eq!((c.key.as_str(), c.value), (key.as_str(), None));
}

/// One holder at a time; renewal by the holder; release; expiry.
pub async fn leases(store: &dyn ConfigStore, prefix: &str) {
    let name = format!("{prefix}scheduler");
    let long = Duration::from_secs(30);
    assert!(store.try_lease(&name, "m1", long).await.unwrap());
    assert!(!store.try_lease(&name, "m2", long).await.unwrap(), "held by m1");
    assert!(store.try_lease(&name, "m1", long).await.unwrap(), "renewed by its holder");
    store.release_lease(&name, "m2").await.unwrap();
    assert!(!store.try_lease(&name, "m2", long).await.unwrap(), "only the holder releases");
    store.release_lease(&name, "m1").await.unwrap();
    assert!(store.try_lease(&name, "m2", Duration::from_millis(200)).await.unwrap());
    // A store may round a short lease up (etcd's are at least 2 s): the expiry is awaited, not guessed.
    wait_until("m2's 200 ms lease to expire so that m1 can take it", async || {
        store.try_lease(&name, "m1", long).await.unwrap().then_some(())
    })
    .await;
}
