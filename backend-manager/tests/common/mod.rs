//! What the manager's test binaries share: a manager over in-memory plug points, keypairs, and requests signed as a
//! client signs them, answered by the API filter through `warp::test` (no sockets).
// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use backend_core::auth::{authorization_header, generate_keypair, SignedParts, API_VERSION};
use backend_core::config::LocalConfigStore;
use backend_core::conformance::wait::WAIT_LIMIT;
use backend_core::events::LocalEventBus;
use backend_core::live::LocalLiveState;
use backend_core::model::{AgentHeartbeat, ImageInfo, KeyPair, Role};
use backend_core::storage::{LocalStorage, StorageBackend};
use backend_core::store::sqlite::SqliteStore;
use backend_core::store::MetadataStore;
use backend_core::{AccessKey, AgentId, ResourceSlots};
use backend_manager::{Manager, ManagerConfig};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::sync::Arc;
use warp::http::HeaderMap;
use warp::reply::Response;
use warp::test::RequestBuilder;
use warp::Filter;

/// The host the tests address (and sign with).
pub const HOST: &str = "127.0.0.1:8081";
/// Where the problem types of error answers live.
pub const PROBLEM_BASE: &str = "https://api.backend.ai/probs/";
/// The token the manager sends to agents.
pub const AGENT_TOKEN: &str = "test-agent-token";

/// An empty in-memory SQLite store.
pub fn sqlite() -> Arc<SqliteStore> {
    Arc::new(SqliteStore::in_memory().expect("in-memory store"))
}

/// A manager over `store`, with the embedded event bus, live state and config store, and no vfolder volumes.
pub fn manager_over(config: ManagerConfig, store: Arc<dyn MetadataStore>) -> Arc<Manager> {
    let no_volumes = Arc::new(LocalStorage::new([]).expect("no volume to create"));
    manager_with_storage(config, store, no_volumes)
}

/// A manager over `store` like [`manager_over`], keeping vfolders in `storage`.
pub fn manager_with_storage(
    config: ManagerConfig,
    store: Arc<dyn MetadataStore>,
    storage: Arc<dyn StorageBackend>,
) -> Arc<Manager> {
    Manager::with_storage(
        config,
        store,
        Arc::new(LocalEventBus::new()),
        Arc::new(LocalLiveState::new()),
        Arc::new(LocalConfigStore::new()),
        AGENT_TOKEN,
        storage,
    )
}

/// A manager on an empty in-memory store (no default records).
pub fn in_memory_manager(config: ManagerConfig) -> Arc<Manager> {
    manager_over(config, sqlite())
}

/// A fresh active keypair of the user `user_id` under resource policy `policy`, without a rate limit; not stored.
pub fn keypair(user_id: &str, role: Role, policy: &str) -> KeyPair {
    let (ak, sk) = generate_keypair();
    KeyPair {
        user_id: user_id.into(),
        access_key: AccessKey::from(ak),
        secret_key: sk,
        role,
        is_active: true,
        rate_limit: 0,
        resource_policy: policy.into(),
        created_at: Utc::now(),
    }
}

/// The heartbeat of an agent `i-test-agent` serving `python:3.11` (alias `python`) with cpu=4, mem=8g, at an address
/// where nothing listens.
pub fn python_agent() -> AgentHeartbeat {
    AgentHeartbeat {
        id: AgentId::from("i-test-agent"),
        addr: "http://127.0.0.1:1".into(),
        scaling_group: "default".into(),
        architecture: "x86_64".into(),
        available_slots: ResourceSlots::from_pairs([("cpu", "4"), ("mem", "8g")]).unwrap(),
        images: vec![ImageInfo {
            name: "python:3.11".into(),
            aliases: vec!["python".into()],
            lang: "python".into(),
            min_slots: ResourceSlots::new(),
        }],
        runtime: "process".into(),
        version: "test".into(),
    }
}

/// How to sign a request; the defaults are what a well-behaved client sends.
#[derive(Clone)]
pub struct Sign<'a> {
    /// `X-BackendAI-Version` (also signed).
    pub version: &'a str,
    /// The request date.
    pub date: DateTime<Utc>,
    /// The header carrying the date: `date` or `x-backendai-date`.
    pub date_header: &'a str,
    /// Sign with this secret instead of the keypair's own.
    pub secret: Option<&'a str>,
}

impl Default for Sign<'_> {
    fn default() -> Self {
        Self { version: API_VERSION, date: Utc::now(), date_header: "date", secret: None }
    }
}

/// A request signed by `kp` with the default signing options.
pub fn signed(method: &str, path: &str, kp: &KeyPair, body: Option<&[u8]>) -> RequestBuilder {
    signed_with(method, path, kp, body, &Sign::default())
}

/// A request signed by `kp` as `opts` says.
pub fn signed_with(method: &str, path: &str, kp: &KeyPair, body: Option<&[u8]>, opts: &Sign<'_>) -> RequestBuilder {
    let date = opts.date.to_rfc3339();
    let content_type = if body.is_some() { "application/json" } else { "" };
    let parts =
        SignedParts { method, path_and_query: path, date: &date, host: HOST, content_type, api_version: opts.version };
    let secret = opts.secret.unwrap_or(&kp.secret_key);
    let authorization = authorization_header(kp.access_key.as_str(), secret, &parts).expect("signing");
    let mut req = warp::test::request()
        .method(method)
        .path(path)
        .header("host", HOST)
        .header(opts.date_header, date.as_str())
        .header("x-backendai-version", opts.version)
        .header("authorization", authorization);
    if let Some(body) = body {
        req = req.header("content-type", content_type).body(body);
    }
    req
}

/// A signed request with a JSON body.
pub fn signed_json(method: &str, path: &str, kp: &KeyPair, body: &Value) -> RequestBuilder {
    signed(method, path, kp, Some(body.to_string().as_bytes()))
}

/// A response, with its body parsed as JSON (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct Resp {
    /// The HTTP status.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The parsed body.
    pub body: Value,
}

impl Resp {
    /// A header's value, when it is present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status and answers the body.
    #[track_caller]
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.body);
        &self.body
    }

    /// Asserts a problem+json answer with this status and problem slug.
    #[track_caller]
    pub fn problem(&self, status: u16, slug: &str) {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.body);
        self.assert_problem_json();
        assert_eq!(self.body["type"], format!("{PROBLEM_BASE}{slug}"), "body: {}", self.body);
    }

    /// Asserts a 4xx problem+json answer (any slug under the problem base).
    #[track_caller]
    pub fn client_problem(&self) {
        assert!((400..500).contains(&self.status), "status {} is not 4xx; body: {}", self.status, self.body);
        self.assert_problem_json();
        let kind = self.body["type"].as_str().unwrap_or_default();
        assert!(kind.starts_with(PROBLEM_BASE) && kind.len() > PROBLEM_BASE.len(), "type {kind:?}");
    }

    #[track_caller]
    fn assert_problem_json(&self) {
        let ct = self.header("content-type").unwrap_or_default();
        assert!(
            ct.starts_with("application/problem+json"),
            "content-type {ct:?} is not problem+json; body: {}",
            self.body
        );
        let title = self.body["title"].as_str().unwrap_or_default();
        assert!(!title.trim().is_empty(), "empty title; body: {}", self.body);
    }
}

/// Answers `req` with the API filter `api`.
pub async fn reply<F>(api: &F, req: RequestBuilder) -> Resp
where
    F: Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static,
{
    // No request here may wait on a scheduler or an agent: a hang is a failure, not a stuck test run.
    let resp = tokio::time::timeout(WAIT_LIMIT, req.reply(api))
        .await
        .unwrap_or_else(|_| panic!("the API did not answer within {WAIT_LIMIT:?}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
    Resp { status, headers, body }
}
