//! Layered settings for the server binaries: built-in defaults, then a TOML file, then environment variables, then
//! `--set section.key=value` arguments, each layer overriding the one before.
//!
//! Environment variables are named `<PREFIX>_<SECTION>_<KEY>` in upper case: with the prefix `BACKENDAI`, the key
//! `pool_size` of section `[db]` is `BACKENDAI_DB_POOL_SIZE`. Section names hold no underscore, so the first one
//! after the prefix ends the section. A value is read as a TOML value when it parses as one (`16`, `true`,
//! `["a", "b"]`) and as a string otherwise.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use std::path::Path;
use toml::{Table, Value};

/// Where one layer of settings comes from.
#[derive(Debug, Clone, Default)]
pub struct Layers<'a> {
    /// The built-in defaults, as TOML text.
    pub defaults: &'a str,
    /// The settings file, when one is given.
    pub file: Option<&'a Path>,
    /// The environment variable prefix (`BACKENDAI`).
    pub env_prefix: &'a str,
    /// The environment, as `(name, value)` pairs (pass `std::env::vars()` in binaries).
    pub env: Vec<(String, String)>,
    /// `section.key=value` overrides from the command line.
    pub overrides: &'a [String],
}

impl Layers<'_> {
    /// Merges the layers and deserialises the result.
    pub fn load<T: DeserializeOwned>(&self) -> Result<T> {
        let mut merged = parse_table(self.defaults, "the built-in defaults")?;
        if let Some(path) = self.file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::io(format!("reading the settings file {}", path.display()), e))?;
            merge(&mut merged, parse_table(&text, &path.display().to_string())?);
        }
        let prefix = format!("{}_", self.env_prefix.to_ascii_uppercase());
        for (name, value) in &self.env {
            let Some(rest) = name.strip_prefix(&prefix) else { continue };
            let Some((section, key)) = rest.split_once('_') else { continue };
            let section = section.to_ascii_lowercase();
            // Only sections the defaults declare: other BACKENDAI_* variables belong to other programs.
            if merged.get(&section).is_some_and(Value::is_table) {
                set(&mut merged, &section, &key.to_ascii_lowercase(), value);
            }
        }
        for assignment in self.overrides {
            let (path, value) = assignment.split_once('=').ok_or_else(|| Error::InvalidParams {
                msg: format!("`--set {assignment}`: expected section.key=value"),
            })?;
            let (section, key) = path.split_once('.').ok_or_else(|| Error::InvalidParams {
                msg: format!("`--set {assignment}`: expected section.key=value"),
            })?;
            set(&mut merged, section, key, value);
        }
        // Through text, so that an error quotes the offending key and value.
        let text = toml::to_string(&merged).map_err(|e| Error::InvalidParams { msg: format!("settings: {e}") })?;
        toml::from_str(&text).map_err(|e| Error::InvalidParams { msg: format!("settings: {e}") })
    }
}

fn parse_table(text: &str, origin: &str) -> Result<Table> {
    text.parse::<Table>().map_err(|e| Error::InvalidParams { msg: format!("{origin}: {}", e.message()) })
}

fn merge(into: &mut Table, from: Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Table(old)), Value::Table(new)) => merge(old, new),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

fn set(table: &mut Table, section: &str, key: &str, raw: &str) {
    let value = format!("v = {raw}").parse::<Table>().ok().and_then(|mut t| t.remove("v"));
    let value = value.unwrap_or_else(|| Value::String(raw.to_owned()));
    let section = table.entry(section.to_owned()).or_insert_with(|| Value::Table(Table::new()));
    if let Value::Table(section) = section {
        section.insert(key.to_owned(), value);
    }
}

/// Where the cluster's etcd is and which namespace this cluster uses in it (the `[etcd]` section of both
/// `manager.toml` and `agent.toml`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EtcdSettings {
    /// Client URLs (`http://127.0.0.1:2379`).
    pub endpoints: Vec<String>,
    /// The namespace: every key lives under `/backend.ai/<namespace>/`.
    pub namespace: String,
}

/// Where the cluster's Redis is (the `[redis]` section of both `manager.toml` and `agent.toml`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// Redis URL; default: the config store's `config/redis/url`.
    pub url: Option<String>,
}

/// A local setting named `setting`, or else the shared value under `key` in the config store; a clear error naming
/// both when neither is there.
pub async fn local_or_shared(
    local: Option<&str>,
    shared: &dyn crate::config::ConfigStore,
    key: &str,
    setting: &str,
) -> Result<String> {
    if let Some(value) = local {
        return Ok(value.to_owned());
    }
    shared.get(key).await?.ok_or_else(|| Error::InvalidParams {
        msg: format!("no {setting}: set it in the settings file or put `{key}` into the config store (backend-manager config put)"),
    })
}

/// The shared keys managers and agents read from the config store at start (relative to the namespace).
pub mod keys {
    /// The PostgreSQL URL (`postgres://user:password@host:port/database`).
    pub const DB_URL: &str = "config/db/url";
    /// The Redis URL (`redis://host:port`).
    pub const REDIS_URL: &str = "config/redis/url";
    /// The token agents require from managers on their RPC API.
    pub const AGENT_TOKEN: &str = "config/agent-token";
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Settings {
        db: Db,
        manager: Manager,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Db {
        url: Option<String>,
        pool_size: u32,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Manager {
        bind: String,
        tags: Vec<String>,
    }

    const DEFAULTS: &str = "[db]\npool_size = 8\n[manager]\nbind = '127.0.0.1:8081'\ntags = []\n";

    #[test]
    fn each_layer_overrides_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("manager.toml");
        std::fs::write(&file, "[db]\nurl = 'postgres://file'\npool_size = 16\n[manager]\nbind = '0.0.0.0:1'\n")
            .unwrap();
        let env = vec![
            ("BACKENDAI_DB_POOL_SIZE".to_owned(), "32".to_owned()),
            ("BACKENDAI_MANAGER_TAGS".to_owned(), "[\"a\", \"b\"]".to_owned()),
            ("BACKENDAI_NOSUCH_THING".to_owned(), "ignored".to_owned()),
            ("OTHER_DB_URL".to_owned(), "ignored".to_owned()),
        ];
        let overrides = vec!["manager.bind=0.0.0.0:2".to_owned()];
        let layers =
            Layers { defaults: DEFAULTS, file: Some(&file), env_prefix: "BACKENDAI", env, overrides: &overrides };
        let settings: Settings = layers.load().unwrap();
        assert_eq!(
            settings,
            Settings {
                db: Db { url: Some("postgres://file".into()), pool_size: 32 },
                manager: Manager { bind: "0.0.0.0:2".into(), tags: vec!["a".into(), "b".into()] },
            }
        );
    }

    #[test]
    fn bad_layers_are_clear_errors() {
        let bad_override = vec!["nodot=1".to_owned()];
        let layers = Layers { defaults: DEFAULTS, overrides: &bad_override, ..Default::default() };
        assert!(layers.load::<Settings>().unwrap_err().to_string().contains("section.key=value"));
        let bad_type = vec!["db.pool_size=many".to_owned()];
        let layers = Layers { defaults: DEFAULTS, overrides: &bad_type, ..Default::default() };
        assert!(layers.load::<Settings>().unwrap_err().to_string().contains("pool_size"));
        let layers = Layers { defaults: DEFAULTS, file: Some(Path::new("/nonexistent/x.toml")), ..Default::default() };
        assert!(layers.load::<Settings>().is_err());
    }
}
