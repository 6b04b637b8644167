//! Where the client connects and with which keypair: [`ClientConfig`] and its errors.

use backend_core::auth::API_VERSION;
use reqwest::Url;

/// The endpoint used when `BACKEND_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8081";

/// Environment variable naming the manager's URL.
pub const ENDPOINT_ENV: &str = "BACKEND_ENDPOINT";
/// Environment variable holding the access key.
pub const ACCESS_KEY_ENV: &str = "BACKEND_ACCESS_KEY";
/// Environment variable holding the secret key.
pub const SECRET_KEY_ENV: &str = "BACKEND_SECRET_KEY";

/// A configuration the client cannot work with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required setting has no value.
    #[error("{what} is not set (set {env} or pass it on the command line)")]
    Missing {
        /// The setting (`the access key`).
        what: &'static str,
        /// The environment variable that provides it.
        env: &'static str,
    },
    /// The endpoint is not an `http://` or `https://` URL with a host.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    Http {
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
}

/// Where to connect and how to sign.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The manager's URL (`http://127.0.0.1:8081`); a path, if any, prefixes every API path.
    pub endpoint: String,
    /// The keypair's access key (`AKIA...`).
    pub access_key: String,
    /// The keypair's secret key.
    pub secret_key: String,
    /// The `X-BackendAI-Version` sent and signed.
    pub api_version: String,
}

impl std::fmt::Debug for ClientConfig {
    // The secret key stays out of logs and panic messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoint", &self.endpoint)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("api_version", &self.api_version)
            .finish()
    }
}

impl ClientConfig {
    /// A configuration speaking [`API_VERSION`].
    pub fn new(endpoint: impl Into<String>, access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            api_version: API_VERSION.to_owned(),
        }
    }

    /// Reads `BACKEND_ENDPOINT` (default [`DEFAULT_ENDPOINT`]), `BACKEND_ACCESS_KEY` and `BACKEND_SECRET_KEY`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env) with values from `lookup` instead of the process environment; empty
    /// values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let endpoint = get(ENDPOINT_ENV).unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let access_key =
            get(ACCESS_KEY_ENV).ok_or(ConfigError::Missing { what: "the access key", env: ACCESS_KEY_ENV })?;
        let secret_key =
            get(SECRET_KEY_ENV).ok_or(ConfigError::Missing { what: "the secret key", env: SECRET_KEY_ENV })?;
        let config = Self::new(endpoint, access_key, secret_key);
        config.endpoint_url()?;
        Ok(config)
    }

    /// The endpoint parsed and checked: `http` or `https`, with a host.
    pub fn endpoint_url(&self) -> Result<Url, ConfigError> {
        let invalid = |reason: String| ConfigError::InvalidEndpoint { endpoint: self.endpoint.clone(), reason };
        let url = Url::parse(self.endpoint.trim()).map_err(|e| invalid(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!("scheme {:?} is not http or https", url.scheme())));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host".into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("an endpoint has no query or fragment".into()));
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn reads_the_environment_with_a_default_endpoint() {
        let c = ClientConfig::from_lookup(lookup(&[(ACCESS_KEY_ENV, "AKIA1"), (SECRET_KEY_ENV, "s")])).unwrap();
        assert_eq!(c.endpoint, DEFAULT_ENDPOINT);
        assert_eq!((c.access_key.as_str(), c.secret_key.as_str()), ("AKIA1", "s"));
        assert_eq!(c.api_version, API_VERSION);
        let c = ClientConfig::from_lookup(lookup(&[
            (ENDPOINT_ENV, "http://10.0.0.1:9000"),
            (ACCESS_KEY_ENV, "AKIA1"),
            (SECRET_KEY_ENV, "s"),
        ]))
        .unwrap();
        assert_eq!(c.endpoint, "http://10.0.0.1:9000");
    }

    #[test]
    fn missing_keys_are_named() {
        let e = ClientConfig::from_lookup(lookup(&[(SECRET_KEY_ENV, "s")])).unwrap_err();
        assert!(e.to_string().contains("BACKEND_ACCESS_KEY"), "{e}");
        let e = ClientConfig::from_lookup(lookup(&[(ACCESS_KEY_ENV, "AKIA1"), (SECRET_KEY_ENV, " ")])).unwrap_err();
        assert!(e.to_string().contains("BACKEND_SECRET_KEY"), "{e}");
    }

    #[test]
    fn endpoints_must_be_http_urls() {
        for bad in ["127.0.0.1:8081", "ftp://h", "http://h/?x=1", "not a url"] {
            assert!(ClientConfig::new(bad, "a", "s").endpoint_url().is_err(), "{bad}");
        }
        ClientConfig::new("https://api.example.com/prefix", "a", "s").endpoint_url().unwrap();
    }

    #[test]
    fn debug_hides_the_secret() {
        let shown = format!("{:?}", ClientConfig::new(DEFAULT_ENDPOINT, "AKIA1", "hunter2"));
        assert!(!shown.contains("hunter2") && shown.contains("AKIA1"));
    }
}
