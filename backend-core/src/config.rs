//! Shared configuration: a key-value tree that every manager and agent reads, with change notifications and
//! leases that elect one holder (for example, the one manager that runs the scheduler).
//!
//! Keys are `/`-separated paths (`config/agent-token`, `volumes/default/path`). The embedded store is loaded from a
//! TOML file whose nested tables become path segments; `etcd::EtcdConfigStore` (feature `etcd`) keeps them in etcd.

use crate::error::{Error, Result};
use async_trait::async_trait;
use futures::stream::BoxStream;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

#[cfg(feature = "etcd")]
pub mod etcd;

/// A change to one key: its new value, or `None` when deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    /// The key.
    pub key: String,
    /// The new value.
    pub value: Option<String>,
}

/// Shared configuration.
#[async_trait]
pub trait ConfigStore: Send + Sync {
    /// The value of a key.
    async fn get(&self, key: &str) -> Result<Option<String>>;
    /// Every key under a prefix, with values.
    async fn get_prefix(&self, prefix: &str) -> Result<BTreeMap<String, String>>;
    /// Sets a key.
    async fn put(&self, key: &str, value: &str) -> Result<()>;
    /// Removes a key (no error when absent).
    async fn delete(&self, key: &str) -> Result<()>;
    /// Changes under a prefix from now on. Optional: the default answers `Unsupported`.
    async fn watch(&self, prefix: &str) -> Result<BoxStream<'static, ConfigChange>> {
        let _ = prefix;
        Err(Error::Unsupported { what: "watching configuration".into() })
    }
    /// Takes or renews the lease `name` for `holder` for `ttl`. True when `holder` holds it afterwards; false when
    /// another holder's lease has not expired.
    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool>;
    /// Gives a lease back (no error when not held by `holder`).
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
}

/// Configuration in process memory.
pub struct LocalConfigStore {
    values: Mutex<BTreeMap<String, String>>,
    leases: Mutex<HashMap<String, (String, Instant)>>,
    changes: broadcast::Sender<ConfigChange>,
}

impl Default for LocalConfigStore {
    fn default() -> Self {
        Self { values: Mutex::default(), leases: Mutex::default(), changes: broadcast::channel(256).0 }
    }
}

impl LocalConfigStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding the flattened contents of a TOML document.
    pub fn from_toml(text: &str) -> Result<Self> {
        let store = Self::new();
        *store.values.lock().expect("config lock") = flatten_toml(text)?;
        Ok(store)
    }
}

/// Flattens a TOML document into `a/b/c = value` pairs (strings as they are, other values as TOML text).
pub fn flatten_toml(text: &str) -> Result<BTreeMap<String, String>> {
    let table: toml::Table =
        text.parse().map_err(|e| Error::InvalidParams { msg: format!("configuration is not valid TOML: {e}") })?;
    let mut out = BTreeMap::new();
    fn walk(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
        match value {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}/{k}") };
                    walk(&key, v, out);
                }
            }
            toml::Value::String(s) => {
                out.insert(prefix.to_owned(), s.clone());
            }
            other => {
                out.insert(prefix.to_owned(), other.to_string());
            }
        }
    }
    walk("", &toml::Value::Table(table), &mut out);
    Ok(out)
}

#[async_trait]
impl ConfigStore for LocalConfigStore {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        Ok(self.values.lock().expect("config lock").get(key).cloned())
    }

    async fn get_prefix(&self, prefix: &str) -> Result<BTreeMap<String, String>> {
        let values = self.values.lock().expect("config lock");
        Ok(values
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn put(&self, key: &str, value: &str) -> Result<()> {
        self.values.lock().expect("config lock").insert(key.to_owned(), value.to_owned());
        let _ = self.changes.send(ConfigChange { key: key.to_owned(), value: Some(value.to_owned()) });
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        if self.values.lock().expect("config lock").remove(key).is_some() {
            let _ = self.changes.send(ConfigChange { key: key.to_owned(), value: None });
        }
        Ok(())
    }

    async fn watch(&self, prefix: &str) -> Result<BoxStream<'static, ConfigChange>> {
        let rx = self.changes.subscribe();
        let prefix = prefix.to_owned();
        Ok(Box::pin(futures::stream::unfold((rx, prefix), |(mut rx, prefix)| async move {
            loop {
                match rx.recv().await {
                    Ok(c) if c.key.starts_with(&prefix) => return Some((c, (rx, prefix))),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })))
    }

    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let mut leases = self.leases.lock().expect("config lock");
        let now = Instant::now();
        match leases.get(name) {
            Some((h, until)) if h != holder && *until > now => Ok(false),
            _ => {
                leases.insert(name.to_owned(), (holder.to_owned(), now + ttl));
                Ok(true)
            }
        }
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let mut leases = self.leases.lock().expect("config lock");
        if leases.get(name).is_some_and(|(h, _)| h == holder) {
            leases.remove(name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_config_store_conforms() {
        crate::conformance::config_store::run(&LocalConfigStore::new()).await;
    }

    #[tokio::test]
    async fn loads_nested_toml() {
        let store = LocalConfigStore::from_toml(
            "[config]\nagent-token = \"t\"\n[volumes.default]\npath = \"/srv\"\nquota = 5\n",
        )
        .unwrap();
        assert_eq!(store.get("config/agent-token").await.unwrap().as_deref(), Some("t"));
        assert_eq!(store.get("volumes/default/quota").await.unwrap().as_deref(), Some("5"));
        assert_eq!(store.get_prefix("volumes/").await.unwrap().len(), 2);
        assert!(LocalConfigStore::from_toml("not = [valid").is_err());
    }
}
