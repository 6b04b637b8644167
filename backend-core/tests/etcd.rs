//! [`EtcdConfigStore`] against a real etcd.
//!
//! They need the etcd of `scripts/services.sh` (or `BACKEND_AI_TEST_ETCD`); when it is unreachable they fail, they
//! do not skip. Each test works in its own namespace.
#![cfg(feature = "etcd")]

use backend_core::config::etcd::EtcdConfigStore;
use backend_core::config::{ConfigChange, ConfigStore};
use backend_core::conformance::wait::wait_until;
use futures::StreamExt;
use std::time::{Duration, Instant};

fn etcd_url() -> String {
    std::env::var("BACKEND_AI_TEST_ETCD").unwrap_or_else(|_| "http://127.0.0.1:12379".to_owned())
}

fn namespace() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}

async fn store(namespace: &str) -> EtcdConfigStore {
    let url = etcd_url();
    EtcdConfigStore::connect(&[url.as_str()], namespace).await.unwrap_or_else(|e| {
        panic!(
            "etcd at {url} is unreachable ({e}); start it with `bash scripts/services.sh` or set BACKEND_AI_TEST_ETCD"
        )
    })
}

#[tokio::test]
async fn config_store_conforms() {
    backend_core::conformance::config_store::run(&store(&namespace()).await).await;
}

#[tokio::test]
async fn keys_live_under_the_namespace() {
    let ns = namespace();
    let s = store(&ns).await;
    s.put("config/redis", "redis://10.0.0.1:6379").await.unwrap();
    let mut raw = etcd_client::Client::connect([etcd_url()], None).await.unwrap();
    let resp = raw.get(format!("/backend.ai/{ns}/config/redis"), None).await.unwrap();
    assert_eq!(resp.kvs().first().map(|kv| kv.value()), Some(&b"redis://10.0.0.1:6379"[..]));
    assert_eq!(s.get_prefix("").await.unwrap().keys().collect::<Vec<_>>(), ["config/redis"]);
    assert_eq!(store(&namespace()).await.get("config/redis").await.unwrap(), None, "namespaces are separate");
}

#[tokio::test]
async fn exactly_one_of_two_racing_holders_gets_a_lease() {
    let ns = namespace();
    let (a, b) = (store(&ns).await, store(&ns).await);
    let ttl = Duration::from_secs(30);
    for i in 0..10 {
        let name = format!("race-{i}");
        let (got_a, got_b) = tokio::join!(a.try_lease(&name, "m1", ttl), b.try_lease(&name, "m2", ttl));
        let (got_a, got_b) = (got_a.unwrap(), got_b.unwrap());
        assert!(got_a ^ got_b, "exactly one holder for {name}: m1 {got_a}, m2 {got_b}");
        let (winner, loser) = if got_a { (&a, &b) } else { (&b, &a) };
        let (w, l) = if got_a { ("m1", "m2") } else { ("m2", "m1") };
        assert!(winner.try_lease(&name, w, ttl).await.unwrap(), "the holder renews");
        assert!(!loser.try_lease(&name, l, ttl).await.unwrap(), "the other still cannot take it");
    }
}

#[tokio::test]
async fn a_holder_that_stops_renewing_loses_the_lease_within_ttl_plus_two_seconds() {
    let ns = namespace();
    let (a, b) = (store(&ns).await, store(&ns).await);
    let ttl = Duration::from_secs(3);
    assert!(a.try_lease("scheduler", "m1", ttl).await.unwrap());
    let since = Instant::now();
    // m1 renews at every look for a good while past one ttl (etcd's clock runs, so real time must pass), then stops
    // (as if it died).
    wait_until("m1 to keep its lease past one ttl by renewing it", async || {
        assert!(a.try_lease("scheduler", "m1", ttl).await.unwrap());
        assert!(!b.try_lease("scheduler", "m2", ttl).await.unwrap(), "held while renewed");
        (since.elapsed() > ttl + Duration::from_secs(1)).then_some(())
    })
    .await;
    let stopped = Instant::now();
    wait_until("m2 to get the lease m1 stopped renewing", async || {
        b.try_lease("scheduler", "m2", ttl).await.unwrap().then_some(())
    })
    .await;
    assert!(stopped.elapsed() < ttl + Duration::from_secs(2), "m2 did not get the lease in time");
    assert!(stopped.elapsed() >= ttl - Duration::from_millis(500), "taken too early: {:?}", stopped.elapsed());
    assert!(since.elapsed() > ttl, "renewals kept the lease past its first ttl");
    assert!(!a.try_lease("scheduler", "m1", ttl).await.unwrap(), "now m2 holds it");
}

#[tokio::test]
async fn the_lease_key_vanishes_when_its_holder_dies() {
    let s = store(&namespace()).await;
    assert!(s.try_lease("scheduler", "m1", Duration::from_secs(1)).await.unwrap());
    assert!(s.get("leases/scheduler").await.unwrap().is_some_and(|v| v.contains("m1")));
    // etcd's minimum TTL (2 s), plus its expiry sweep, plus slack.
    let since = Instant::now();
    wait_until("the etcd lease to expire the key", async || {
        s.get("leases/scheduler").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(since.elapsed() < Duration::from_secs(6), "the etcd lease did not expire the key in time");
}

#[tokio::test]
async fn release_lets_the_other_holder_in_at_once() {
    let ns = namespace();
    let (a, b) = (store(&ns).await, store(&ns).await);
    let ttl = Duration::from_secs(60);
    assert!(a.try_lease("scheduler", "m1", ttl).await.unwrap());
    assert!(!b.try_lease("scheduler", "m2", ttl).await.unwrap());
    b.release_lease("scheduler", "m2").await.unwrap();
    assert!(!b.try_lease("scheduler", "m2", ttl).await.unwrap(), "a non-holder's release changes nothing");
    a.release_lease("scheduler", "m1").await.unwrap();
    assert!(b.try_lease("scheduler", "m2", ttl).await.unwrap());
    assert_eq!(a.get("leases/scheduler").await.unwrap().map(|v| v.contains("m2")), Some(true));
}

#[tokio::test]
async fn watch_sees_puts_and_deletes_under_its_prefix_only() {
    let ns = namespace();
    let (s, other_ns) = (store(&ns).await, store(&namespace()).await);
    let mut changes = s.watch("nodes/").await.unwrap();
    s.put("config/agent-token", "outside the prefix").await.unwrap();
    other_ns.put("nodes/manager/m0", "another namespace").await.unwrap();
    s.put("nodes/manager/m1", "10.0.0.1:8081").await.unwrap();
    s.put("nodesx", "a sibling, not under nodes/").await.unwrap();
    s.delete("nodes/manager/m1").await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let c = tokio::time::timeout(Duration::from_secs(10), changes.next()).await.expect("change in time");
        seen.push(c.expect("the watch stays open"));
    }
    assert_eq!(
        seen,
        [
            ConfigChange { key: "nodes/manager/m1".into(), value: Some("10.0.0.1:8081".into()) },
            ConfigChange { key: "nodes/manager/m1".into(), value: None },
        ]
    );
    // Changes arrive in revision order: when a last put under the prefix is the next change seen, nothing else
    // (the keys outside the prefix, the other namespace's) was delivered before it.
    s.put("nodes/last", "end").await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), changes.next()).await.expect("change in time");
    assert_eq!(
        next,
        Some(ConfigChange { key: "nodes/last".into(), value: Some("end".into()) }),
        "nothing else under the prefix"
    );
}
