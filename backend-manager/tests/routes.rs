//! Route tests of the manager's public API, driven through `warp::test::request()` against
//! `backend_manager::api::routes` (no sockets, no agents, no scheduler loop).
//!
//! Every request is signed as PROTOCOL.md describes: `Date` (RFC 3339), `X-BackendAI-Version`, `Host`,
//! `Content-Type: application/json` for bodies, and `Authorization: BackendAI signMethod=HMAC-SHA256, ...`.

mod common;

use backend_core::auth::{authorization_header, SignedParts, API_VERSION};
use backend_core::model::{KeyPair, Role};
use backend_core::store::SessionFilter;
use backend_manager::{Manager, ManagerConfig};
use chrono::{Duration, Utc};
use common::{in_memory_manager, reply, signed, signed_json, signed_with, Resp, Sign, HOST};
use serde_json::json;
use std::sync::Arc;
use warp::reply::Response;
use warp::test::RequestBuilder;
use warp::Filter;

/// A manager with in-memory plug-points and its API filter.
struct Harness<F> {
    m: Arc<Manager>,
    api: F,
}

/// A fresh keypair with its own user id and this rate limit; not stored.
fn new_keypair(role: Role, rate_limit: u32) -> KeyPair {
    let kp = common::keypair("", role, "default");
    let user_id = format!("{}@example.com", kp.access_key.as_str().to_ascii_lowercase());
    KeyPair { user_id, rate_limit, ..kp }
}

impl<F> Harness<F>
where
    F: Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static,
{
    async fn call(&self, req: RequestBuilder) -> Resp {
        reply(&self.api, req).await
    }

    /// Inserts a fresh active keypair.
    async fn keypair(&self, role: Role, rate_limit: u32) -> KeyPair {
        let kp = new_keypair(role, rate_limit);
        self.m.store.insert_keypair(&kp).await.expect("insert keypair");
        kp
    }

    /// Registers an ALIVE agent serving `python:3.11` with cpu=4, mem=8g (no process behind it).
    async fn agent(&self) {
        self.m.store.upsert_agent(&common::python_agent(), Utc::now()).await.expect("upsert agent");
    }

    async fn session_count(&self) -> usize {
        self.m.store.list_sessions(&SessionFilter::default()).await.expect("list sessions").len()
    }

    /// Creates a PENDING session with `enqueueOnly` and answers its id.
    async fn enqueue(&self, kp: &KeyPair, name: &str) -> String {
        let r = self
            .call(signed_json(
                "POST",
                "/session",
                kp,
                &json!({"image": "python:3.11", "name": name, "enqueueOnly": true}),
            ))
            .await;
        r.ok(201);
        r.body["sessionId"].as_str().expect("sessionId").to_owned()
    }
}

fn harness_with(
    config: ManagerConfig,
) -> Harness<impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static> {
    let m = in_memory_manager(config);
    let api = backend_manager::api::routes(m.clone());
    Harness { m, api }
}

fn harness() -> Harness<impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static> {
    harness_with(ManagerConfig::default())
}

// ---------------------------------------------------------------------------------------------------------------
// Version and authentication
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn root_answers_the_version_without_auth() {
    let h = harness();
    let r = h.call(warp::test::request().method("GET").path("/").header("host", HOST)).await;
    r.ok(200);
    assert_eq!(r.body["version"], "v7.20230615");
    assert!(!r.body["manager"].as_str().unwrap_or_default().is_empty(), "body: {}", r.body);
}

#[tokio::test]
async fn a_signed_request_is_accepted() {
    let h = harness();
    let kp = h.keypair(Role::User, 1000).await;
    let r = h.call(signed("GET", "/session", &kp, None)).await;
    r.ok(200);
    assert_eq!(r.body["sessions"], json!([]));
}

#[tokio::test]
async fn missing_authorization_is_401() {
    let h = harness();
    let r = h
        .call(
            warp::test::request()
                .method("GET")
                .path("/session")
                .header("host", HOST)
                .header("date", Utc::now().to_rfc3339())
                .header("x-backendai-version", API_VERSION),
        )
        .await;
    r.problem(401, "auth-failed");
    // Also on a path with a parameter.
    let r = h.call(warp::test::request().method("GET").path("/session/abcd").header("host", HOST)).await;
    r.problem(401, "auth-failed");
}

#[tokio::test]
async fn malformed_authorization_is_401() {
    let h = harness();
    let r = h
        .call(
            warp::test::request()
                .method("GET")
                .path("/session")
                .header("host", HOST)
                .header("date", Utc::now().to_rfc3339())
                .header("x-backendai-version", API_VERSION)
                .header("authorization", "Bearer something"),
        )
        .await;
    r.problem(401, "auth-failed");
}

#[tokio::test]
async fn wrong_signature_is_401() {
    let h = harness();
    let kp = h.keypair(Role::User, 1000).await;
    let opts = Sign { secret: Some("not-the-secret-key"), ..Sign::default() };
    let r = h.call(signed_with("GET", "/session", &kp, None, &opts)).await;
    r.problem(401, "auth-failed");
    // A signature over another path does not carry over.
    let req = signed("GET", "/session", &kp, None).path("/session?owner_access_key=x");
    h.call(req).await.problem(401, "auth-failed");
    // Nor over another host.
    let req = signed("GET", "/session", &kp, None).header("host", "localhost:8081");
    h.call(req).await.problem(401, "auth-failed");
}

#[tokio::test]
async fn unknown_access_key_is_401() {
    let h = harness();
    let stranger = new_keypair(Role::User, 1000); // never inserted
    let r = h.call(signed("GET", "/session", &stranger, None)).await;
    r.problem(401, "auth-failed");
}

#[tokio::test]
async fn revoked_keypair_is_401() {
    let h = harness();
    let kp = h.keypair(Role::User, 1000).await;
    h.call(signed("GET", "/session", &kp, None)).await.ok(200);
    h.m.store.set_keypair_active(&kp.access_key, false).await.unwrap();
    let r = h.call(signed("GET", "/session", &kp, None)).await;
    r.problem(401, "auth-failed");
}

#[tokio::test]
async fn a_date_20_minutes_off_is_401() {
    let h = harness();
    let kp = h.keypair(Role::User, 1000).await;
    for offset in [Duration::minutes(-20), Duration::minutes(20)] {
        let opts = Sign { date: Utc::now() + offset, ..Sign::default() };
        let r = h.call(signed_with("GET", "/session", &kp, None, &opts)).await;
        r.problem(401, "auth-failed");
    }
    // Within the 15-minute window it passes.
    let opts = Sign { date: Utc::now() - Duration::minutes(10), ..Sign::default() };
    h.call(signed_with("GET", "/session", &kp, None, &opts)).await.ok(200);
}

#[tokio::test]
async fn missing_date_is_401() {
    let h = harness();
    let kp = h.keypair(Role::User, 1000).await;
    let date = Utc::now().to_rfc3339();
    let parts = SignedParts {
        method: "GET",
        path_and_query: "/session",
        date: &date,
        host: HOST,
        content_type: "",
        api_version: API_VERSION,
    };
    let authorization = authorization_header(kp.access_key.as_str(), &kp.secret_key, &parts).unwrap();
    let req = warp::test::request()
        .method("GET")
        .path("/session")
        .header("host", HOST)
        .header("x-backendai-version", API_VERSION)
        .header("authorization", authorization);
    h.call(req).await.problem(401, "auth-failed");
}

#[tokio::test]
async fn x_backendai_date_replaces_date() {
    let h = harness();
    let kp = h.keypair(Role::User, 1000).await;
    let opts = Sign { date_header: "x-backendai-date", ..Sign::default() };
    let r = h.call(signed_with("GET", "/session", &kp, None, &opts)).await;
    r.ok(200);
}

#[tokio::test]
async fn unsupported_api_versions_are_400() {
    let h = harness();
    let kp = h.keypair(Role::User, 1000).await;
    for version in ["v3.20170615", "v8.20250101", "v7.20991231", "garbage"] {
        let opts = Sign { version, ..Sign::default() };
        let r = h.call(signed_with("GET", "/session", &kp, None, &opts)).await;
        r.problem(400, "invalid-api-params");
    }
}

#[tokio::test]
async fn older_supported_api_versions_are_accepted() {
    let h = harness();
    let kp = h.keypair(Role::User, 1000).await;
    for version in ["v4.20181215", "v6.20220615", API_VERSION] {
        let opts = Sign { version, ..Sign::default() };
        let r = h.call(signed_with("GET", "/session", &kp, None, &opts)).await;
        assert_eq!(r.status, 200, "version {version}: {}", r.body);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Rate limit
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn rate_limit_counts_down_then_answers_429() {
    let h = harness();
    let kp = h.keypair(Role::User, 3).await;
    for expected_remaining in [2, 1, 0] {
        let r = h.call(signed("GET", "/session", &kp, None)).await;
        r.ok(200);
        assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(r.header("x-ratelimit-remaining"), Some(expected_remaining.to_string().as_str()));
        assert_eq!(r.header("x-ratelimit-window"), Some("900"));
    }
    let r = h.call(signed("GET", "/session", &kp, None)).await;
    r.problem(429, "too-many-requests");
    // Another keypair is not affected.
    let other = h.keypair(Role::User, 3).await;
    let r = h.call(signed("GET", "/session", &other, None)).await;
    r.ok(200);
    assert_eq!(r.header("x-ratelimit-remaining"), Some("2"));
}

#[tokio::test]
async fn error_answers_carry_rate_limit_headers_too() {
    let h = harness();
    let kp = h.keypair(Role::User, 10).await;
    let r = h.call(signed("GET", "/session/nope-nope", &kp, None)).await;
    r.problem(404, "session-not-found");
    assert_eq!(r.header("x-ratelimit-limit"), Some("10"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("9"));
    assert_eq!(r.header("x-ratelimit-window"), Some("900"));
}

// ---------------------------------------------------------------------------------------------------------------
// POST /session
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_rejects_malformed_json() {
    let h = harness();
    h.agent().await;
    let kp = h.keypair(Role::User, 1000).await;
    let r = h.call(signed("POST", "/session", &kp, Some(b"{\"image\": \"python:3.11\","))).await;
    r.problem(400, "invalid-api-params");
    let r = h.call(signed("POST", "/session", &kp, Some(b"not json at all"))).await;
    r.problem(400, "invalid-api-params");
    assert_eq!(h.session_count().await, 0);
}

#[tokio::test]
async fn create_rejects_wrong_field_types() {
    let h = harness();
    h.agent().await;
    let kp = h.keypair(Role::User, 1000).await;
    for body in [
        json!({"image": 311, "enqueueOnly": true}),
        json!({"image": "python:3.11", "clusterSize": "two", "enqueueOnly": true}),
        json!({"image": "python:3.11", "enqueueOnly": "yes please"}),
        json!({"image": "python:3.11", "config": "not an object", "enqueueOnly": true}),
        json!({"image": "python:3.11", "config": {"resources": {"cpu": true}}, "enqueueOnly": true}),
    ] {
        let r = h.call(signed_json("POST", "/session", &kp, &body)).await;
        r.problem(400, "invalid-api-params");
    }
    assert_eq!(h.session_count().await, 0);
}

#[tokio::test]
async fn create_rejects_a_json_array_body() {
    // The body must be a JSON object. serde's derived `Deserialize` also accepts a sequence, matching elements to
    // fields by position (image, name, type, group, domain, clusterSize, clusterMode, config, tag, enqueueOnly); a
    // server relying on that would create a session from this array.
    let h = harness();
    h.agent().await;
    let kp = h.keypair(Role::User, 1000).await;
    let body = json!(["python:3.11", "from-array", null, null, null, null, null, null, null, true]);
    let r = h.call(signed_json("POST", "/session", &kp, &body)).await;
    r.problem(400, "invalid-api-params");
    assert_eq!(h.session_count().await, 0);
}

#[tokio::test]
async fn create_requires_an_image() {
    let h = harness();
    h.agent().await;
    let kp = h.keypair(Role::User, 1000).await;
    for body in [json!({"enqueueOnly": true}), json!({"image": "", "name": "no-image", "enqueueOnly": true})] {
        let r = h.call(signed_json("POST", "/session", &kp, &body)).await;
        r.problem(400, "invalid-api-params");
    }
    assert_eq!(h.session_count().await, 0);
}

#[tokio::test]
async fn create_with_an_unknown_image_is_404() {
    let h = harness();
    h.agent().await;
    let kp = h.keypair(Role::User, 1000).await;
    let body = json!({"image": "ruby:3.2", "name": "rubyist", "enqueueOnly": true});
    let r = h.call(signed_json("POST", "/session", &kp, &body)).await;
    r.problem(404, "image-not-found");
    assert_eq!(h.session_count().await, 0);
}

#[tokio::test]
async fn create_rejects_negative_or_zero_cpu() {
    let h = harness();
    h.agent().await;
    let kp = h.keypair(Role::User, 1000).await;
    for cpu in [json!(-1), json!("-2"), json!(0)] {
        let body = json!({"image": "python:3.11", "name": "negative", "enqueueOnly": true,
                          "config": {"resources": {"cpu": cpu, "mem": "1g"}}});
        let r = h.call(signed_json("POST", "/session", &kp, &body)).await;
        r.problem(400, "invalid-api-params");
    }
    assert_eq!(h.session_count().await, 0);
}

#[tokio::test]
async fn create_rejects_a_body_over_the_limit() {
    let h = harness_with(ManagerConfig { max_body_bytes: 1024, ..ManagerConfig::default() });
    h.agent().await;
    let kp = h.keypair(Role::User, 1000).await;
    let body = json!({"image": "python:3.11", "name": "too-big", "enqueueOnly": true, "tag": "x".repeat(4096)});
    let r = h.call(signed_json("POST", "/session", &kp, &body)).await;
    r.problem(413, "request-too-large");
    assert_eq!(h.session_count().await, 0);
    // A small one still goes through.
    h.enqueue(&kp, "small-one").await;
    assert_eq!(h.session_count().await, 1);
}

#[tokio::test]
async fn create_enqueue_only_then_reuse_then_conflict() {
    let h = harness();
    h.agent().await;
    let kp = h.keypair(Role::User, 1000).await;
    let body = json!({"image": "python:3.11", "name": "my-sess", "enqueueOnly": true});
    let r = h.call(signed_json("POST", "/session", &kp, &body)).await;
    r.ok(201);
    assert_eq!(r.body["status"], "PENDING");
    assert_eq!(r.body["sessionName"], "my-sess");
    assert_eq!(r.body["created"], true);
    let id = r.body["sessionId"].as_str().expect("sessionId is a string").to_owned();
    uuid::Uuid::parse_str(&id).expect("sessionId is a UUID");
    assert_eq!(h.session_count().await, 1);

    // The same name again reuses the live session.
    let r = h.call(signed_json("POST", "/session", &kp, &body)).await;
    r.ok(200);
    assert_eq!(r.body["created"], false);
    assert_eq!(r.body["sessionId"], id.as_str());
    assert_eq!(r.body["status"], "PENDING");
    assert_eq!(h.session_count().await, 1);

    // Unless the caller refuses reuse.
    let body = json!({"image": "python:3.11", "name": "my-sess", "enqueueOnly": true, "reuseIfExists": false});
    let r = h.call(signed_json("POST", "/session", &kp, &body)).await;
    r.problem(409, "session-already-exists");
    assert_eq!(h.session_count().await, 1);

    // The stored session matches what was answered.
    let sessions = h.m.store.list_sessions(&SessionFilter::default()).await.unwrap();
    assert_eq!(sessions[0].id.to_string(), id);
    assert_eq!(sessions[0].access_key, kp.access_key);
    assert_eq!(sessions[0].image, "python:3.11");

    // Another keypair may use the same name.
    let other = h.keypair(Role::User, 1000).await;
    let r = h
        .call(signed_json(
            "POST",
            "/session",
            &other,
            &json!({"image": "python", "name": "my-sess", "enqueueOnly": true}),
        ))
        .await;
    r.ok(201);
    assert_ne!(r.body["sessionId"], id.as_str());
    assert_eq!(h.session_count().await, 2);
}

#[tokio::test]
async fn create_accepts_the_legacy_client_session_token() {
    let h = harness();
    h.agent().await;
    let kp = h.keypair(Role::User, 1000).await;
    let body = json!({"lang": "python:3.11", "clientSessionToken": "legacy-name", "enqueueOnly": true});
    let r = h.call(signed_json("POST", "/session", &kp, &body)).await;
    r.ok(201);
    assert_eq!(r.body["sessionName"], "legacy-name");
}

#[tokio::test]
async fn create_rejects_invalid_names_and_cluster_sizes() {
    let h = harness();
    h.agent().await;
    let kp = h.keypair(Role::User, 1000).await;
    for body in [
        json!({"image": "python:3.11", "name": "a b c d", "enqueueOnly": true}),
        json!({"image": "python:3.11", "name": "ab", "enqueueOnly": true}),
        json!({"image": "python:3.11", "name": "ok-name", "clusterSize": 0, "enqueueOnly": true}),
        json!({"image": "python:3.11", "name": "ok-name", "clusterMode": "sideways", "enqueueOnly": true}),
    ] {
        let r = h.call(signed_json("POST", "/session", &kp, &body)).await;
        r.problem(400, "invalid-api-params");
    }
    assert_eq!(h.session_count().await, 0);
}

// ---------------------------------------------------------------------------------------------------------------
// GET /session/{name}: ownership
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn session_info_respects_ownership() {
    let h = harness();
    h.agent().await;
    let alice = h.keypair(Role::User, 1000).await;
    let bob = h.keypair(Role::User, 1000).await;
    let admin = h.keypair(Role::Admin, 1000).await;
    let id = h.enqueue(&alice, "alice-sess").await;

    // The owner sees it, by name and by id.
    let r = h.call(signed("GET", "/session/alice-sess", &alice, None)).await;
    r.ok(200);
    assert_eq!(r.body["sessionId"], id.as_str());
    assert_eq!(r.body["status"], "PENDING");
    assert_eq!(r.body["image"], "python:3.11");
    let r = h.call(signed("GET", &format!("/session/{id}"), &alice, None)).await;
    r.ok(200);
    assert_eq!(r.body["sessionName"], "alice-sess");

    // Another user does not, by name or by id.
    let r = h.call(signed("GET", "/session/alice-sess", &bob, None)).await;
    r.problem(404, "session-not-found");
    let r = h.call(signed("GET", &format!("/session/{id}"), &bob, None)).await;
    r.problem(404, "session-not-found");

    // A user may not act for another keypair.
    let path = format!("/session/alice-sess?owner_access_key={}", alice.access_key.as_str());
    let r = h.call(signed("GET", &path, &bob, None)).await;
    r.problem(403, "forbidden");

    // Naming oneself is fine.
    let path = format!("/session/alice-sess?owner_access_key={}", alice.access_key.as_str());
    h.call(signed("GET", &path, &alice, None)).await.ok(200);

    // An admin acting for the owner sees it.
    let r = h.call(signed("GET", &path, &admin, None)).await;
    r.ok(200);
    assert_eq!(r.body["sessionId"], id.as_str());
    assert_eq!(r.body["accessKey"], alice.access_key.as_str());

    // An admin without owner_access_key looks among their own sessions.
    let r = h.call(signed("GET", "/session/alice-sess", &admin, None)).await;
    r.problem(404, "session-not-found");
}

#[tokio::test]
async fn session_list_respects_ownership() {
    let h = harness();
    h.agent().await;
    let alice = h.keypair(Role::User, 1000).await;
    let bob = h.keypair(Role::User, 1000).await;
    let admin = h.keypair(Role::Admin, 1000).await;
    h.enqueue(&alice, "alice-one").await;

    let r = h.call(signed("GET", "/session", &alice, None)).await;
    r.ok(200);
    assert_eq!(r.body["sessions"].as_array().map(Vec::len), Some(1), "body: {}", r.body);

    let r = h.call(signed("GET", "/session", &bob, None)).await;
    r.ok(200);
    assert_eq!(r.body["sessions"], json!([]));

    let path = format!("/session?owner_access_key={}", alice.access_key.as_str());
    h.call(signed("GET", &path, &bob, None)).await.problem(403, "forbidden");
    let r = h.call(signed("GET", &path, &admin, None)).await;
    r.ok(200);
    assert_eq!(r.body["sessions"].as_array().map(Vec::len), Some(1), "body: {}", r.body);
}

// ---------------------------------------------------------------------------------------------------------------
// POST /session/{name}: execute
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn execute_on_a_pending_session_is_409() {
    let h = harness();
    h.agent().await;
    let kp = h.keypair(Role::User, 1000).await;
    h.enqueue(&kp, "pending-one").await;
    let body = json!({"mode": "query", "code": "print(1)", "runId": "run-1"});
    let r = h.call(signed_json("POST", "/session/pending-one", &kp, &body)).await;
    r.problem(409, "invalid-session-state");
}

#[tokio::test]
async fn execute_on_an_unknown_session_is_404() {
    let h = harness();
    let kp = h.keypair(Role::User, 1000).await;
    let body = json!({"mode": "query", "code": "print(1)"});
    let r = h.call(signed_json("POST", "/session/no-such-session", &kp, &body)).await;
    r.problem(404, "session-not-found");
}

#[tokio::test]
async fn execute_with_a_malformed_body_is_400() {
    let h = harness();
    h.agent().await;
    let kp = h.keypair(Role::User, 1000).await;
    h.enqueue(&kp, "pending-two").await;
    for body in [&b"{\"mode\": \"nope\"}"[..], b"{}", b"{\"mode\": "] {
        let r = h.call(signed("POST", "/session/pending-two", &kp, Some(body))).await;
        r.problem(400, "invalid-api-params");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// DELETE /session/{name}
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn delete_cancels_a_pending_session() {
    let h = harness();
    h.agent().await;
    let kp = h.keypair(Role::User, 1000).await;
    let other = h.keypair(Role::User, 1000).await;
    let id = h.enqueue(&kp, "to-cancel").await;

    // Another user cannot delete it.
    let r = h.call(signed("DELETE", "/session/to-cancel", &other, None)).await;
    r.problem(404, "session-not-found");

    let r = h.call(signed("DELETE", "/session/to-cancel", &kp, None)).await;
    r.ok(200);

    let r = h.call(signed("GET", "/session/to-cancel", &kp, None)).await;
    r.ok(200);
    assert_eq!(r.body["sessionId"], id.as_str());
    assert_eq!(r.body["status"], "CANCELLED");
    assert_eq!(r.body["statusInfo"], "user-requested");
    assert!(r.body["terminationTime"].is_string(), "body: {}", r.body);

    let r = h.call(signed("DELETE", "/session/to-cancel", &kp, None)).await;
    r.problem(404, "session-not-found");

    // The name is free again: a new create makes a new session.
    let new_id = h.enqueue(&kp, "to-cancel").await;
    assert_ne!(new_id, id);
}

#[tokio::test]
async fn delete_of_an_unknown_session_is_404() {
    let h = harness();
    let kp = h.keypair(Role::User, 1000).await;
    let r = h.call(signed("DELETE", "/session/never-existed", &kp, None)).await;
    r.problem(404, "session-not-found");
}

// ---------------------------------------------------------------------------------------------------------------
// Unknown routes and methods
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_route_is_a_404_problem() {
    let h = harness();
    let kp = h.keypair(Role::User, 1000).await;
    let r = h.call(signed("GET", "/no/such/route", &kp, None)).await;
    r.problem(404, "object-not-found");
    let r = h.call(warp::test::request().method("GET").path("/nothing-here").header("host", HOST)).await;
    r.problem(404, "object-not-found");
}

#[tokio::test]
async fn wrong_method_is_a_4xx_problem() {
    let h = harness();
    let kp = h.keypair(Role::User, 1000).await;
    let r = h.call(signed_json("PUT", "/session", &kp, &json!({}))).await;
    r.client_problem();
    r.problem(405, "method-not-allowed");
    let r = h.call(signed("PUT", "/session/some-name", &kp, None)).await;
    r.client_problem();
    r.problem(405, "method-not-allowed");
    let r = h.call(warp::test::request().method("DELETE").path("/").header("host", HOST)).await;
    r.client_problem();
    r.problem(405, "method-not-allowed");
}
