//! Shared helpers: a standalone stack on 127.0.0.1:0 in a temporary directory, a raw signed HTTP client that
//! speaks the wire protocol directly (so these tests check the API itself, not only our typed client), and waiting
//! for a session to reach a state.

use backend_core::auth::{authorization_header, SignedParts, API_VERSION};
pub use backend_core::conformance::wait::{poll_until, wait_until};
use backend_core::model::KeyPair;
use backend_manager::standalone::{Standalone, StandaloneConfig};
use reqwest::Method;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Starts a standalone stack with its data in `dir` and a fixed capacity (so tests do not depend on the machine).
pub async fn start(dir: &Path) -> Standalone {
    let mut config = StandaloneConfig::new(dir);
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.capacity = Some(backend_core::ResourceSlots::from([("cpu", 8.into()), ("mem", (8u64 << 30).into())]));
    Standalone::start(config).await.expect("standalone stack starts")
}

/// A standalone stack in a temporary directory of its own (dropped last: keep it alive), and a client signed as its
/// superadmin.
pub async fn admin_stack() -> (tempfile::TempDir, Standalone, Api) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let stack = start(dir.path()).await;
    let api = Api::new(&stack.endpoint, &stack.admin);
    (dir, stack, api)
}

/// A signed raw client for one keypair.
pub struct Api {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    http: reqwest::Client,
}

/// A response: status, headers and the JSON body (Null when empty or not JSON).
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The problem `type` slug of an error body.
    pub fn problem(&self) -> &str {
        self.body["type"].as_str().unwrap_or("").trim_start_matches("https://api.backend.ai/probs/")
    }
}

impl Api {
    pub fn new(endpoint: &str, kp: &KeyPair) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            access_key: kp.access_key.to_string(),
            secret_key: kp.secret_key.clone(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap(),
        }
    }

    /// Sends a request signed at `date` with a raw body.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        date: chrono::DateTime<chrono::Utc>,
    ) -> Answer {
        let host = self.endpoint.trim_start_matches("http://").to_owned();
        let date = date.to_rfc3339();
        let content_type = if body.is_some() { "application/json" } else { "" };
        let parts = SignedParts {
            method: method.as_str(),
            path_and_query: path,
            date: &date,
            host: &host,
            content_type,
            api_version: API_VERSION,
        };
        let auth = authorization_header(&self.access_key, &self.secret_key, &parts).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.endpoint))
            .header("Date", &date)
            .header("X-BackendAI-Version", API_VERSION)
            .header("Authorization", auth);
        if let Some(body) = body {
            req = req.header("Content-Type", content_type).body(body);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        Answer { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.send_raw(method, path, body.map(|b| serde_json::to_vec(&b).unwrap()), chrono::Utc::now()).await
    }

    pub async fn create(&self, body: Value) -> Answer {
        self.send(Method::POST, "/session", Some(body)).await
    }

    pub async fn execute(&self, name: &str, body: Value) -> Answer {
        self.send(Method::POST, &format!("/session/{name}"), Some(body)).await
    }

    /// Runs code to its end (following `continued`), returning (stdout, stderr, exit code).
    pub async fn run(&self, name: &str, code: &str) -> (String, String, i32) {
        let mut a = self.execute(name, serde_json::json!({"mode": "query", "code": code})).await;
        let (mut out, mut err) = (String::new(), String::new());
        loop {
            assert_eq!(a.status, 200, "execute failed: {}", a.body);
            let r = &a.body["result"];
            for item in r["console"].as_array().unwrap() {
                match item[0].as_str().unwrap() {
                    "stdout" => out.push_str(item[1].as_str().unwrap()),
                    "stderr" => err.push_str(item[1].as_str().unwrap()),
                    _ => {}
                }
            }
            match r["status"].as_str().unwrap() {
                "finished" => return (out, err, r["exitCode"].as_i64().unwrap() as i32),
                "continued" => {
                    let run_id = r["runId"].as_str().unwrap().to_owned();
                    a = self.execute(name, serde_json::json!({"mode": "continue", "runId": run_id})).await;
                }
                other => panic!("unexpected run status {other}: {}", a.body),
            }
        }
    }
}

/// A second, non-admin keypair in the stack's store.
pub async fn user_keypair(stack: &Standalone) -> KeyPair {
    let (ak, sk) = backend_core::auth::generate_keypair();
    let kp = KeyPair {
        access_key: ak.into(),
        secret_key: sk,
        user_id: "user@example.com".into(),
        role: backend_core::model::Role::User,
        is_active: true,
        rate_limit: 1000,
        resource_policy: "default".into(),
        created_at: chrono::Utc::now(),
    };
    stack.manager.store.insert_keypair(&kp).await.unwrap();
    kp
}

/// Sends a signed request with a body of `content_type` (signed as its bare media type, like the official client);
/// answers the status, the content type and the raw body.
pub async fn send_typed(
    api: &Api,
    method: Method,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    let host = api.endpoint.trim_start_matches("http://").to_owned();
    let date = chrono::Utc::now().to_rfc3339();
    let bare = content_type.split(';').next().unwrap().trim();
    let parts = SignedParts {
        method: method.as_str(),
        path_and_query: path,
        date: &date,
        host: &host,
        content_type: bare,
        api_version: API_VERSION,
    };
    let auth = authorization_header(&api.access_key, &api.secret_key, &parts).unwrap();
    let resp = reqwest::Client::new()
        .request(method, format!("{}{path}", api.endpoint))
        .header("Date", &date)
        .header("X-BackendAI-Version", API_VERSION)
        .header("Authorization", auth)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    (status, ct, resp.bytes().await.unwrap().to_vec())
}

/// Polls session `name`'s info until `done` holds for its body (`what` names that state); answers the body. Fails
/// with the last body seen if it never does.
pub async fn wait_for_session(api: &Api, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let reached = poll_until(async || {
        let body = api.send(Method::GET, &format!("/session/{name}"), None).await.body;
        if done(&body) {
            return Some(body);
        }
        last = body;
        None
    })
    .await;
    reached.unwrap_or_else(|| panic!("session {name} never became {what}; last seen: {last}"))
}

/// Waits until session `name` has `status`; answers its info.
pub async fn wait_for_status(api: &Api, name: &str, status: &str) -> Value {
    wait_for_session(api, name, status, |b| b["status"] == status).await
}
