//! Route tests of the `/admin/...` API through `warp::test::request()`: each endpoint's happy path, 403 for a user
//! keypair, 404 for unknown names, 409 for deleting what is referenced and 400 for malformed input.

use backend_core::auth::{authorization_header, generate_keypair, SignedParts, API_VERSION};
use backend_core::config::LocalConfigStore;
use backend_core::events::LocalEventBus;
use backend_core::live::LocalLiveState;
use backend_core::model::{KeyPair, Role};
use backend_core::store::fixtures::ensure_defaults;
use backend_core::store::sqlite::SqliteStore;
use backend_core::AccessKey;
use backend_manager::{Manager, ManagerConfig};
use chrono::Utc;
use serde_json::{json, Value};
use std::sync::Arc;
use warp::reply::Response;
use warp::test::RequestBuilder;
use warp::Filter;

const HOST: &str = "127.0.0.1:8081";
const PROBLEM_BASE: &str = "https://api.backend.ai/probs/";

struct Harness<F> {
    m: Arc<Manager>,
    api: F,
    superadmin: KeyPair,
    admin: KeyPair,
    user: KeyPair,
}

#[derive(Debug)]
struct Resp {
    status: u16,
    body: Value,
}

impl Resp {
    #[track_caller]
    fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.body);
        &self.body
    }

    #[track_caller]
    fn problem(&self, status: u16, slug: &str) {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.body);
        assert_eq!(self.body["type"], format!("{PROBLEM_BASE}{slug}"), "body: {}", self.body);
    }
}

fn signed(method: &str, path: &str, kp: &KeyPair, body: Option<&[u8]>) -> RequestBuilder {
    let date = Utc::now().to_rfc3339();
    let content_type = if body.is_some() { "application/json" } else { "" };
    let parts =
        SignedParts { method, path_and_query: path, date: &date, host: HOST, content_type, api_version: API_VERSION };
    let authorization = authorization_header(kp.access_key.as_str(), &kp.secret_key, &parts).expect("signing");
    let mut req = warp::test::request()
        .method(method)
        .path(path)
        .header("host", HOST)
        .header("date", date.as_str())
        .header("x-backendai-version", API_VERSION)
        .header("authorization", authorization);
    if let Some(body) = body {
        req = req.header("content-type", content_type).body(body);
    }
    req
}

fn new_keypair(role: Role) -> KeyPair {
    let (ak, sk) = generate_keypair();
    KeyPair {
        user_id: format!("{}@example.com", ak.to_ascii_lowercase()),
        access_key: AccessKey::from(ak),
        secret_key: sk,
        role,
        is_active: true,
        rate_limit: 0,
        resource_policy: "default".into(),
        created_at: Utc::now(),
    }
}

impl<F> Harness<F>
where
    F: Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static,
{
    async fn send(&self, req: RequestBuilder) -> Resp {
        let resp = tokio::time::timeout(std::time::Duration::from_secs(10), req.reply(&self.api))
            .await
            .expect("the API did not answer within 10 s");
        Resp { status: resp.status().as_u16(), body: serde_json::from_slice(resp.body()).unwrap_or(Value::Null) }
    }

    async fn get(&self, path: &str, kp: &KeyPair) -> Resp {
        self.send(signed("GET", path, kp, None)).await
    }

    async fn delete(&self, path: &str, kp: &KeyPair) -> Resp {
        self.send(signed("DELETE", path, kp, None)).await
    }

    async fn post(&self, path: &str, kp: &KeyPair, body: &Value) -> Resp {
        self.send(signed("POST", path, kp, Some(body.to_string().as_bytes()))).await
    }

    async fn put(&self, path: &str, kp: &KeyPair, body: &Value) -> Resp {
        self.send(signed("PUT", path, kp, Some(body.to_string().as_bytes()))).await
    }
}

async fn harness(
) -> Harness<impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static> {
    let m = Manager::new(
        ManagerConfig::default(),
        Arc::new(SqliteStore::in_memory().expect("in-memory store")),
        Arc::new(LocalEventBus::new()),
        Arc::new(LocalLiveState::new()),
        Arc::new(LocalConfigStore::new()),
        "test-agent-token",
    );
    ensure_defaults(m.store.as_ref()).await.expect("defaults");
    let (superadmin, admin, user) = (new_keypair(Role::Superadmin), new_keypair(Role::Admin), new_keypair(Role::User));
    for kp in [&superadmin, &admin, &user] {
        m.store.insert_keypair(kp).await.expect("insert keypair");
    }
    let api = backend_manager::api::routes(m.clone());
    Harness { m, api, superadmin, admin, user }
}

#[tokio::test]
async fn defaults_are_there_and_idempotent() {
    let h = harness().await;
    ensure_defaults(h.m.store.as_ref()).await.expect("second run changes nothing");
    let su = &h.superadmin;
    let domains = h.get("/admin/domains", su).await;
    assert_eq!(domains.ok(200)["domains"][0]["name"], "default");
    assert_eq!(h.get("/admin/groups?domain=default", su).await.ok(200)["groups"][0]["name"], "default");
    assert_eq!(h.get("/admin/scaling-groups", su).await.ok(200)["scaling_groups"][0]["scheduler"], "fifo");
    assert_eq!(h.get("/admin/resource-policies/default", su).await.ok(200)["name"], "default");
}

#[tokio::test]
async fn domains_crud() {
    let h = harness().await;
    let su = &h.superadmin;
    let created = h.post("/admin/domains", su, &json!({"name": "research", "description": "R&D"})).await;
    assert_eq!(created.ok(201)["description"], "R&D");
    assert_eq!(created.body["is_active"], true);
    h.post("/admin/domains", su, &json!({"name": "research"})).await.problem(409, "session-already-exists");
    assert_eq!(h.get("/admin/domains/research", su).await.ok(200)["name"], "research");
    let listed = h.get("/admin/domains", su).await;
    let names: Vec<&str> =
        listed.ok(200)["domains"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "research"]);
    let replaced = h.put("/admin/domains/research", su, &json!({"is_active": false})).await;
    assert_eq!(replaced.ok(200)["is_active"], false);
    assert_eq!(replaced.body["created_at"], created.body["created_at"], "replacing keeps created_at");
    h.put("/admin/domains/research", su, &json!({"name": "other"})).await.problem(400, "invalid-api-params");
    assert_eq!(h.delete("/admin/domains/research", su).await.ok(200)["name"], "research");
    h.get("/admin/domains/research", su).await.problem(404, "object-not-found");
    h.delete("/admin/domains/research", su).await.problem(404, "object-not-found");
    h.delete("/admin/domains/default", su).await.problem(409, "invalid-session-state");
}

#[tokio::test]
async fn domains_and_policies_need_a_superadmin() {
    let h = harness().await;
    for kp in [&h.admin, &h.user] {
        h.get("/admin/domains", kp).await.problem(403, "forbidden");
        h.post("/admin/domains", kp, &json!({"name": "x"})).await.problem(403, "forbidden");
        h.delete("/admin/domains/default", kp).await.problem(403, "forbidden");
        h.get("/admin/resource-policies", kp).await.problem(403, "forbidden");
        h.post("/admin/scaling-groups", kp, &json!({"name": "x"})).await.problem(403, "forbidden");
    }
    for path in ["/admin/groups", "/admin/users", "/admin/scaling-groups", "/admin/keypairs"] {
        h.get(path, &h.user).await.problem(403, "forbidden");
        h.get(path, &h.admin).await.ok(200);
    }
    h.post("/admin/users", &h.user, &json!({"email": "x@y.z"})).await.problem(403, "forbidden");
    h.post("/admin/keypairs", &h.user, &json!({"user_id": "x@y.z"})).await.problem(403, "forbidden");
}

#[tokio::test]
async fn groups_crud() {
    let h = harness().await;
    let a = &h.admin;
    let created = h.post("/admin/groups", a, &json!({"name": "ml", "description": "ML"})).await;
    assert_eq!(created.ok(201)["domain"], "default");
    h.post("/admin/groups", a, &json!({"name": "ml"})).await.problem(409, "session-already-exists");
    h.post("/admin/groups", a, &json!({"name": "x", "domain": "nowhere"})).await.problem(404, "object-not-found");
    assert_eq!(h.get("/admin/groups/default/ml", a).await.ok(200)["description"], "ML");
    let groups = h.get("/admin/groups?domain=default", a).await;
    assert_eq!(groups.ok(200)["groups"].as_array().unwrap().len(), 2);
    assert_eq!(
        h.put("/admin/groups/default/ml", a, &json!({"description": "new"})).await.ok(200)["description"],
        "new"
    );
    h.post("/admin/users", a, &json!({"email": "member@example.com", "groups": ["ml"]})).await.ok(201);
    h.delete("/admin/groups/default/ml", a).await.problem(409, "invalid-session-state");
    h.delete("/admin/users/member@example.com", a).await.ok(200);
    assert_eq!(h.delete("/admin/groups/default/ml", a).await.ok(200)["name"], "ml");
    h.get("/admin/groups/default/ml", a).await.problem(404, "object-not-found");
}

#[tokio::test]
async fn users_crud() {
    let h = harness().await;
    let a = &h.admin;
    let body = json!({"email": "alice@example.com", "role": "admin", "groups": ["default"]});
    let created = h.post("/admin/users", a, &body).await;
    assert_eq!(created.ok(201)["username"], "alice");
    assert_eq!(created.body["groups"], json!(["default"]));
    h.post("/admin/users", a, &body).await.problem(409, "session-already-exists");
    h.post("/admin/users", a, &json!({"email": "bob@example.com", "groups": ["nope"]}))
        .await
        .problem(404, "object-not-found");
    h.post("/admin/users", a, &json!({"email": "root@example.com", "role": "superadmin"}))
        .await
        .problem(403, "forbidden");
    assert_eq!(h.get("/admin/users/alice@example.com", a).await.ok(200)["role"], "admin");
    assert_eq!(h.get("/admin/users/alice%40example.com", a).await.ok(200)["role"], "admin", "escaped paths");
    assert_eq!(h.get("/admin/users?domain=default", a).await.ok(200)["users"].as_array().unwrap().len(), 1);
    let changed = h.put("/admin/users/alice@example.com", a, &json!({"role": "user", "groups": []})).await;
    assert_eq!(changed.ok(200)["groups"], json!([]));
    h.get("/admin/users/nobody@example.com", a).await.problem(404, "object-not-found");

    let kp = h.post("/admin/keypairs", a, &json!({"user_id": "alice@example.com"})).await;
    assert!(kp.ok(201)["secret_key"].as_str().is_some_and(|s| !s.is_empty()), "the secret is shown once");
    h.delete("/admin/users/alice@example.com", a).await.problem(409, "invalid-session-state");
}

#[tokio::test]
async fn resource_policies_crud() {
    let h = harness().await;
    let su = &h.superadmin;
    let body = json!({"name": "small", "total_resource_slots": {"cpu": "4", "mem": "8g"}, "max_concurrent_sessions": 2,
                      "idle_timeout": 600, "allowed_vfolder_hosts": ["local"]});
    let created = h.post("/admin/resource-policies", su, &body).await;
    assert_eq!(created.ok(201)["max_concurrent_sessions"], 2);
    assert_eq!(created.body["max_containers_per_session"], 1);
    h.post("/admin/resource-policies", su, &body).await.problem(409, "session-already-exists");
    let changed = h.put("/admin/resource-policies/small", su, &json!({"max_pending_session_count": 3})).await;
    assert_eq!(changed.ok(200)["max_pending_session_count"], 3);
    assert_eq!(h.get("/admin/resource-policies", su).await.ok(200)["resource_policies"].as_array().unwrap().len(), 2);
    h.post("/admin/resource-policies", su, &json!({"name": "bad", "max_concurrent_sessions": -1}))
        .await
        .problem(400, "invalid-api-params");
    h.delete("/admin/resource-policies/default", su).await.problem(409, "invalid-session-state");
    assert_eq!(h.delete("/admin/resource-policies/small", su).await.ok(200)["name"], "small");
    h.get("/admin/resource-policies/small", su).await.problem(404, "object-not-found");
}

#[tokio::test]
async fn scaling_groups_crud() {
    let h = harness().await;
    let su = &h.superadmin;
    let created = h.post("/admin/scaling-groups", su, &json!({"name": "gpu"})).await;
    assert_eq!(created.ok(201)["scheduler"], "fifo");
    h.post("/admin/scaling-groups", su, &json!({"name": "gpu"})).await.problem(409, "session-already-exists");
    assert_eq!(h.get("/admin/scaling-groups/gpu", &h.admin).await.ok(200)["name"], "gpu");
    let changed = h.put("/admin/scaling-groups/gpu", su, &json!({"is_active": false})).await;
    assert_eq!(changed.ok(200)["is_active"], false);
    assert_eq!(h.delete("/admin/scaling-groups/gpu", su).await.ok(200)["name"], "gpu");
    h.delete("/admin/scaling-groups/gpu", su).await.problem(404, "object-not-found");
}

#[tokio::test]
async fn keypairs_create_list_revoke() {
    let h = harness().await;
    let a = &h.admin;
    h.post("/admin/users", a, &json!({"email": "carol@example.com"})).await.ok(201);
    let created = h.post("/admin/keypairs", a, &json!({"user_id": "carol@example.com", "rate_limit": 100})).await;
    let ak = created.ok(201)["access_key"].as_str().unwrap().to_owned();
    let listed = h.get("/admin/keypairs", a).await;
    let entry = listed.ok(200)["keypairs"].as_array().unwrap().iter().find(|k| k["access_key"] == ak.as_str()).cloned();
    let entry = entry.expect("listed");
    assert_eq!(entry["rate_limit"], 100);
    assert!(entry.get("secret_key").is_none(), "lists never show secrets");
    assert_eq!(h.get(&format!("/admin/keypairs/{ak}"), a).await.ok(200)["is_active"], true);
    assert_eq!(h.delete(&format!("/admin/keypairs/{ak}"), a).await.ok(200)["is_active"], false);
    h.delete("/admin/keypairs/AKNOPE", a).await.problem(404, "object-not-found");
    h.delete(&format!("/admin/keypairs/{}", h.superadmin.access_key), a).await.problem(403, "forbidden");
    h.post("/admin/keypairs", a, &json!({"user_id": "nobody@example.com"})).await.problem(404, "object-not-found");
    h.post("/admin/keypairs", a, &json!({"user_id": "carol@example.com", "role": "superadmin"}))
        .await
        .problem(403, "forbidden");
    h.post("/admin/keypairs", a, &json!({"user_id": "carol@example.com", "resource_policy": "nope"}))
        .await
        .problem(404, "object-not-found");
}

#[tokio::test]
async fn malformed_bodies_are_400() {
    let h = harness().await;
    let su = &h.superadmin;
    h.send(signed("POST", "/admin/domains", su, Some(b"{not json"))).await.problem(400, "invalid-api-params");
    h.post("/admin/domains", su, &json!([1, 2])).await.problem(400, "invalid-api-params");
    h.post("/admin/domains", su, &json!({"name": ""})).await.problem(400, "invalid-api-params");
    h.post("/admin/domains", su, &json!({"name": "a/b"})).await.problem(400, "invalid-api-params");
    h.post("/admin/domains", su, &json!({"name": "x", "unknown": 1})).await.problem(400, "invalid-api-params");
    h.post("/admin/users", su, &json!({"email": "not-an-address"})).await.problem(400, "invalid-api-params");
    h.post("/admin/users", su, &json!({"email": "a@b.c", "role": "king"})).await.problem(400, "invalid-api-params");
    h.post("/admin/keypairs", su, &json!({})).await.problem(400, "invalid-api-params");
}

#[tokio::test]
async fn quotas_and_agent_selectors_are_written_and_read_back() {
    let h = harness().await;
    let su = &h.superadmin;
    let body = json!({"name": "lab", "total_resource_slots": {"cpu": "16", "mem": "64g"}});
    let lab = h.post("/admin/domains", su, &body).await;
    assert_eq!(lab.ok(201)["total_resource_slots"]["cpu"], "16", "body: {}", lab.body);
    let body = json!({"name": "ml", "domain": "lab", "total_resource_slots": {"cpu": "4"}});
    h.post("/admin/groups", su, &body).await.ok(201);
    let ml = h.get("/admin/groups/lab/ml", &h.admin).await;
    assert_eq!(ml.ok(200)["total_resource_slots"], json!({"cpu": "4"}));
    let changed = h.put("/admin/groups/lab/ml", su, &json!({"total_resource_slots": {"cpu": "8"}})).await;
    assert_eq!(changed.ok(200)["total_resource_slots"], json!({"cpu": "8"}));
    let body = json!({"name": "x", "total_resource_slots": {"cpu": "-1"}});
    h.post("/admin/domains", su, &body).await.problem(400, "invalid-api-params");

    let sg = h.post("/admin/scaling-groups", su, &json!({"name": "gpu", "agent_selector": "concentrated"})).await;
    assert_eq!(sg.ok(201)["agent_selector"], "concentrated");
    let sg = h.put("/admin/scaling-groups/gpu", su, &json!({"agent_selector": "RoundRobin"})).await;
    assert_eq!(sg.ok(200)["agent_selector"], "roundrobin", "stored by its canonical name");
    let body = json!({"agent_selector": "random"});
    h.put("/admin/scaling-groups/gpu", su, &body).await.problem(400, "invalid-api-params");
    assert_eq!(h.get("/admin/scaling-groups/gpu", su).await.ok(200)["agent_selector"], "roundrobin", "unchanged");
    let sg = h.put("/admin/scaling-groups/gpu", su, &json!({})).await;
    assert!(sg.ok(200)["agent_selector"].is_null(), "none: the manager's default");
}
