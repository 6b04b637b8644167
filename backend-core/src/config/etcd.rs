//! [`ConfigStore`] in etcd (v3 API), shared by every manager and agent of a cluster.
//!
//! # Layout
//!
//! The trait's keys are relative; this store keeps each one under `/backend.ai/<namespace>/`, so one etcd serves
//! several clusters (or tests). A cluster's tree looks like:
//!
//! ```text
//! /backend.ai/<namespace>/config/redis            the Redis URL
//! /backend.ai/<namespace>/config/db/...           the metadata database (url, pool size, ...)
//! /backend.ai/<namespace>/config/agent-token      the shared token of the manager → agent RPC
//! /backend.ai/<namespace>/volumes/<name>/path     a storage volume's mount point (and its other settings)
//! /backend.ai/<namespace>/nodes/manager/<id>      a running manager
//! /backend.ai/<namespace>/leases/<name>           a lease (see below), e.g. leases/scheduler
//! ```
//!
//! [`ConfigStore::get_prefix`] and [`ConfigStore::watch`] take relative prefixes and answer relative keys.
//!
//! # Leases
//!
//! [`ConfigStore::try_lease`] writes `leases/<name>` = `{"holder": "<holder>", "until_ms": <deadline>}` (the
//! deadline in milliseconds since the Unix epoch, by the writer's clock), attached to a fresh etcd lease, in a
//! transaction that succeeds only if the key is still as read: absent (`create_revision == 0`), or held by
//! `holder` (a renewal), or held by another holder whose deadline has passed (a takeover), each compared on
//! `mod_revision`; the previous etcd lease is then revoked. [`ConfigStore::release_lease`] deletes the key in a
//! transaction that succeeds only if it still holds the record read (so only if `holder` holds it) and revokes
//! its etcd lease.
//!
//! The deadline in the value decides who may take a lease, so a lease lasts exactly its `ttl` (as
//! [`LocalConfigStore`](super::LocalConfigStore) does) even when that is shorter than etcd allows; the managers'
//! clocks must therefore agree (NTP) to well within a lease's `ttl`. The etcd lease only makes the key vanish when
//! its holder stops renewing (it died): its TTL is the `ttl` rounded up to whole seconds and clamped to at least
//! [`MIN_ETCD_LEASE_TTL`] seconds, because etcd raises shorter TTLs to its own minimum (1.5 × the election
//! timeout, 2 s with the default settings) anyway.
//!
//! # Watching
//!
//! A watch is one etcd watch on the prefix, established before [`ConfigStore::watch`] returns. If the connection
//! to etcd is lost, the stream reconnects with backoff and resumes at the revision after the last change it
//! delivered, so nothing is missed unless etcd compacted those revisions in the meantime (then the missed changes
//! are skipped with a warning). The stream never ends on its own.

use crate::config::{ConfigChange, ConfigStore};
use crate::error::{Error, Result};
use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, PutOptions, Txn, TxnOp, WatchOptions,
    WatchStream,
};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// The shortest etcd lease TTL, in seconds, this store asks for (see the module docs).
pub const MIN_ETCD_LEASE_TTL: i64 = 2;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How many times a lease operation re-reads the key after losing a race before it gives up.
const LEASE_ATTEMPTS: usize = 5;

/// Configuration in etcd (see the module docs for the key layout and lease semantics).
#[derive(Clone)]
pub struct EtcdConfigStore {
    client: Client,
    root: String,
}

#[derive(Serialize, Deserialize)]
struct LeaseRecord {
    holder: String,
    until_ms: i64,
}

impl EtcdConfigStore {
    /// Connects to etcd at `endpoints` (`http://host:port`, several for a cluster) and checks that it answers.
    /// Keys are kept under `/backend.ai/<namespace>/`; `namespace` must be non-empty and contain no `/`.
    pub async fn connect<E: AsRef<str>>(endpoints: &[E], namespace: &str) -> Result<Self> {
        if namespace.is_empty() || namespace.contains('/') {
            return Err(Error::InvalidParams { msg: format!("etcd namespace {namespace:?} must be one path segment") });
        }
        let shown = endpoints.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(",");
        // HTTP/2 keep-alive pings make a watch notice a silently dead connection.
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let mut client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| unavailable(&format!("connecting to etcd at {shown}"), e))?;
        // The channel connects lazily: ask something so that an unreachable etcd fails here.
        match tokio::time::timeout(CONNECT_TIMEOUT, client.status()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(unavailable(&format!("etcd at {shown}"), e)),
            Err(_) => return Err(Error::Unavailable { msg: format!("etcd at {shown}: no answer in time") }),
        }
        Ok(Self { client, root: format!("/backend.ai/{namespace}/") })
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.root)
    }

    fn lease_key(&self, name: &str) -> String {
        self.full(&format!("leases/{name}"))
    }

    async fn read(&self, key: &str) -> Result<Option<KeyValue>> {
        let mut resp = self.client.clone().get(key, None).await.map_err(|e| unavailable("reading from etcd", e))?;
        Ok(resp.take_kvs().into_iter().next())
    }
}

fn unavailable(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable { msg: format!("{context}: {e}") }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The etcd lease TTL for a lease of `ttl`: whole seconds, rounded up, at least [`MIN_ETCD_LEASE_TTL`].
fn etcd_ttl(ttl: Duration) -> i64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX).max(MIN_ETCD_LEASE_TTL)
}

#[async_trait]
impl ConfigStore for EtcdConfigStore {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let Some(kv) = self.read(&self.full(key)).await? else { return Ok(None) };
        Ok(Some(String::from_utf8_lossy(kv.value()).into_owned()))
    }

    async fn get_prefix(&self, prefix: &str) -> Result<BTreeMap<String, String>> {
        let resp = self
            .client
            .clone()
            .get(self.full(prefix), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| unavailable("listing etcd keys", e))?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = String::from_utf8_lossy(kv.key());
                let rel = key.strip_prefix(&self.root)?.to_owned();
                Some((rel, String::from_utf8_lossy(kv.value()).into_owned()))
            })
            .collect())
    }

    async fn put(&self, key: &str, value: &str) -> Result<()> {
        self.client.clone().put(self.full(key), value, None).await.map_err(|e| unavailable("writing to etcd", e))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.client.clone().delete(self.full(key), None).await.map_err(|e| unavailable("deleting from etcd", e))?;
        Ok(())
    }

    async fn watch(&self, prefix: &str) -> Result<BoxStream<'static, ConfigChange>> {
        let mut watch = PrefixWatch {
            client: self.client.clone(),
            root: self.root.clone(),
            prefix: self.full(prefix),
            stream: None,
            next_revision: 0,
            pending: VecDeque::new(),
            backoff: FIRST_BACKOFF,
        };
        watch.open().await?;
        Ok(Box::pin(futures::stream::unfold(watch, |mut watch| async move {
            let change = watch.next_change().await;
            Some((change, watch))
        })))
    }

    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let key = self.lease_key(name);
        let mut client = self.client.clone();
        for _ in 0..LEASE_ATTEMPTS {
            let current = self.read(&key).await?;
            let now = now_ms();
            let unchanged = match &current {
                None => Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
                Some(kv) => {
                    // A record nobody can read holds nothing: take it over.
                    if let Ok(record) = serde_json::from_slice::<LeaseRecord>(kv.value()) {
                        if record.holder != holder && record.until_ms > now {
                            return Ok(false);
                        }
                    }
                    Compare::mod_revision(key.as_str(), CompareOp::Equal, kv.mod_revision())
                }
            };
            let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            let record = LeaseRecord { holder: holder.to_owned(), until_ms: now.saturating_add(ttl_ms) };
            let value = serde_json::to_string(&record).map_err(Error::internal)?;
            let lease = client
                .lease_grant(etcd_ttl(ttl), None)
                .await
                .map_err(|e| unavailable("granting an etcd lease", e))?
                .id();
            let txn = Txn::new().when([unchanged]).and_then([TxnOp::put(
                key.as_str(),
                value,
                Some(PutOptions::new().with_lease(lease)),
            )]);
            match client.txn(txn).await {
                Ok(resp) if resp.succeeded() => {
                    // The key now lives on the new lease; the old one would only keep an empty lease around.
                    if let Some(old) = current.filter(|kv| kv.lease() != 0) {
                        let _ = client.lease_revoke(old.lease()).await;
                    }
                    return Ok(true);
                }
                Ok(_) => {
                    // Somebody changed the key since we read it: read again.
                    let _ = client.lease_revoke(lease).await;
                }
                Err(e) => {
                    let _ = client.lease_revoke(lease).await;
                    return Err(unavailable("taking an etcd lease", e));
                }
            }
        }
        Ok(false)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let key = self.lease_key(name);
        let mut client = self.client.clone();
        for _ in 0..LEASE_ATTEMPTS {
            let Some(kv) = self.read(&key).await? else { return Ok(()) };
            let held = serde_json::from_slice::<LeaseRecord>(kv.value()).is_ok_and(|r| r.holder == holder);
            if !held {
                return Ok(());
            }
            let txn = Txn::new()
                .when([Compare::value(key.as_str(), CompareOp::Equal, kv.value())])
                .and_then([TxnOp::delete(key.as_str(), None)]);
            let resp = client.txn(txn).await.map_err(|e| unavailable("releasing an etcd lease", e))?;
            if resp.succeeded() {
                if kv.lease() != 0 {
                    let _ = client.lease_revoke(kv.lease()).await;
                }
                return Ok(());
            }
        }
        Ok(())
    }
}

/// One watch on a prefix that survives losing its connection.
struct PrefixWatch {
    client: Client,
    root: String,
    prefix: String,
    stream: Option<WatchStream>,
    /// The first revision not yet delivered (0 before the first watch: from now on).
    next_revision: i64,
    pending: VecDeque<ConfigChange>,
    backoff: Duration,
}

impl PrefixWatch {
    /// Starts the etcd watch and waits until etcd has created it.
    async fn open(&mut self) -> Result<()> {
        let mut options = WatchOptions::new().with_prefix();
        if self.next_revision > 0 {
            options = options.with_start_revision(self.next_revision);
        }
        let mut stream = self
            .client
            .clone()
            .watch(self.prefix.as_str(), Some(options))
            .await
            .map_err(|e| unavailable("watching etcd", e))?;
        loop {
            let resp = match tokio::time::timeout(CONNECT_TIMEOUT, stream.message()).await {
                Ok(Ok(Some(resp))) => resp,
                Ok(Ok(None)) => return Err(Error::Unavailable { msg: "etcd ended the watch".into() }),
                Ok(Err(e)) => return Err(unavailable("watching etcd", e)),
                Err(_) => return Err(Error::Unavailable { msg: "etcd did not create the watch in time".into() }),
            };
            if resp.canceled() {
                if resp.compact_revision() > 0 {
                    tracing::warn!(
                        prefix = self.prefix,
                        from = self.next_revision,
                        to = resp.compact_revision(),
                        "etcd compacted revisions a watch had not seen; changes in between are skipped"
                    );
                    self.next_revision = resp.compact_revision();
                    return Err(Error::Unavailable { msg: "etcd watch start was compacted; retrying".into() });
                }
                return Err(Error::Unavailable { msg: format!("etcd cancelled the watch: {}", resp.cancel_reason()) });
            }
            if resp.created() {
                if self.next_revision == 0 {
                    self.next_revision = resp.header().map_or(0, |h| h.revision()) + 1;
                }
                self.take_events(&resp);
                self.stream = Some(stream);
                self.backoff = FIRST_BACKOFF;
                return Ok(());
            }
        }
    }

    fn take_events(&mut self, resp: &etcd_client::WatchResponse) {
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            self.next_revision = self.next_revision.max(kv.mod_revision() + 1);
            let key = String::from_utf8_lossy(kv.key());
            let Some(rel) = key.strip_prefix(&self.root) else { continue };
            let value = match event.event_type() {
                EventType::Put => Some(String::from_utf8_lossy(kv.value()).into_owned()),
                EventType::Delete => None,
            };
            self.pending.push_back(ConfigChange { key: rel.to_owned(), value });
        }
    }

    /// The next change, waiting through outages.
    async fn next_change(&mut self) -> ConfigChange {
        loop {
            if let Some(change) = self.pending.pop_front() {
                return change;
            }
            let Some(stream) = self.stream.as_mut() else {
                tokio::time::sleep(self.backoff).await;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                if let Err(e) = self.open().await {
                    tracing::debug!(error = %e, prefix = self.prefix, "etcd watch not re-established yet");
                }
                continue;
            };
            match stream.message().await {
                Ok(Some(resp)) if resp.canceled() => {
                    tracing::warn!(prefix = self.prefix, reason = resp.cancel_reason(), "etcd cancelled a watch");
                    if resp.compact_revision() > 0 {
                        self.next_revision = self.next_revision.max(resp.compact_revision());
                    }
                    self.stream = None;
                }
                Ok(Some(resp)) => self.take_events(&resp),
                Ok(None) => {
                    tracing::warn!(prefix = self.prefix, "etcd ended a watch; re-establishing it");
                    self.stream = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, prefix = self.prefix, "lost an etcd watch; re-establishing it");
                    self.stream = None;
                }
            }
        }
    }
}
