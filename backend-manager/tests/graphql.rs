//! Tests of `POST /admin/gql` (and the legacy `/admin/graphql`): the GraphQL subset the official CLI sends, driven
//! through `warp::test::request()` against `backend_manager::api::routes`.

mod common;

use backend_core::auth::{authorization_header, generate_keypair, SignedParts, API_VERSION};
use backend_core::config::LocalConfigStore;
use backend_core::events::LocalEventBus;
use backend_core::live::LocalLiveState;
use backend_core::model::{KeyPair, Role};
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

/// The query `backend.ai ps` sends (fields trimmed to the interesting ones).
const LIST: &str = "query($limit:Int!, $offset:Int!, $status: String, $access_key: String, $filter: String, \
                    $order: String) { compute_session_list(limit:$limit, offset:$offset, status:$status, \
                    access_key:$access_key, filter:$filter, order:$order) { items { name id group_name \
                    main_kernel_id image type status status_info status_changed result abusing_reports access_key \
                    occupying_slots containers { id cluster_role status occupied_slots agent } } total_count } }";

/// The query `backend.ai session info` sends (trimmed).
const INFO: &str = "query($id: UUID!) { compute_session(id: $id) { name id main_kernel_id image tag created_at \
                    terminated_at status status_info status_data occupying_slots idle_checks containers { id \
                    session_id status } dependencies { name id } } }";

fn signed_json(path: &str, kp: &KeyPair, body: &Value) -> RequestBuilder {
    let date = Utc::now().to_rfc3339();
    let parts = SignedParts {
        method: "POST",
        path_and_query: path,
        date: &date,
        host: HOST,
        content_type: "application/json",
        api_version: API_VERSION,
    };
    let authorization = authorization_header(kp.access_key.as_str(), &kp.secret_key, &parts).expect("signing");
    warp::test::request()
        .method("POST")
        .path(path)
        .header("host", HOST)
        .header("date", date.as_str())
        .header("x-backendai-version", API_VERSION)
        .header("authorization", authorization)
        .header("content-type", "application/json")
        .body(body.to_string())
}

struct Harness<F> {
    m: Arc<Manager>,
    api: F,
}

impl<F> Harness<F>
where
    F: Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static,
{
    async fn call(&self, req: RequestBuilder) -> (u16, Value) {
        let resp = tokio::time::timeout(std::time::Duration::from_secs(10), req.reply(&self.api))
            .await
            .expect("the API did not answer within 10 s");
        (resp.status().as_u16(), serde_json::from_slice(resp.body()).unwrap_or(Value::Null))
    }

    /// Runs a query on `/admin/gql`, expecting a 200; answers the whole body.
    async fn gql(&self, kp: &KeyPair, query: &str, variables: Value) -> Value {
        let (status, body) =
            self.call(signed_json("/admin/gql", kp, &json!({"query": query, "variables": variables}))).await;
        assert_eq!(status, 200, "body: {body}");
        body
    }

    async fn keypair(&self, role: Role) -> KeyPair {
        let (ak, sk) = generate_keypair();
        let kp = KeyPair {
            user_id: format!("{}@example.com", ak.to_ascii_lowercase()),
            access_key: AccessKey::from(ak),
            secret_key: sk,
            role,
            is_active: true,
            rate_limit: 1000,
            resource_policy: "default".into(),
            created_at: Utc::now(),
        };
        self.m.store.insert_keypair(&kp).await.expect("insert keypair");
        kp
    }

    async fn agent(&self) {
        let heartbeat = common::python_agent();
        self.m.store.upsert_agent(&heartbeat, Utc::now()).await.expect("upsert agent");
    }

    /// Creates a PENDING session (`enqueueOnly`) and answers its id.
    async fn enqueue(&self, kp: &KeyPair, name: &str) -> String {
        let body = json!({"image": "python:3.11", "name": name, "enqueueOnly": true});
        let date = Utc::now().to_rfc3339();
        let parts = SignedParts {
            method: "POST",
            path_and_query: "/session",
            date: &date,
            host: HOST,
            content_type: "application/json",
            api_version: API_VERSION,
        };
        let authorization = authorization_header(kp.access_key.as_str(), &kp.secret_key, &parts).unwrap();
        let req = warp::test::request()
            .method("POST")
            .path("/session")
            .header("host", HOST)
            .header("date", date.as_str())
            .header("x-backendai-version", API_VERSION)
            .header("authorization", authorization)
            .header("content-type", "application/json")
            .body(body.to_string());
        let (status, body) = self.call(req).await;
        assert_eq!(status, 201, "body: {body}");
        body["sessionId"].as_str().expect("sessionId").to_owned()
    }

    /// Cancels a pending session (DELETE /session/{name}).
    async fn cancel(&self, kp: &KeyPair, name: &str) {
        let path = format!("/session/{name}");
        let date = Utc::now().to_rfc3339();
        let parts = SignedParts {
            method: "DELETE",
            path_and_query: &path,
            date: &date,
            host: HOST,
            content_type: "",
            api_version: API_VERSION,
        };
        let authorization = authorization_header(kp.access_key.as_str(), &kp.secret_key, &parts).unwrap();
        let req = warp::test::request()
            .method("DELETE")
            .path(&path)
            .header("host", HOST)
            .header("date", date.as_str())
            .header("x-backendai-version", API_VERSION)
            .header("authorization", authorization);
        let (status, body) = self.call(req).await;
        assert_eq!(status, 200, "body: {body}");
    }
}

fn harness() -> Harness<impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static> {
    let m = Manager::new(
        ManagerConfig::default(),
        Arc::new(SqliteStore::in_memory().expect("in-memory store")),
        Arc::new(LocalEventBus::new()),
        Arc::new(LocalLiveState::new()),
        Arc::new(LocalConfigStore::new()),
        "test-agent-token",
    );
    let api = backend_manager::api::routes(m.clone());
    Harness { m, api }
}

fn names(body: &Value) -> Vec<String> {
    let mut names: Vec<String> = body["data"]["compute_session_list"]["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items; body: {body}"))
        .iter()
        .map(|i| i["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

fn errors(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|e| e.iter().map(|e| e["message"].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn users_list_only_their_own_sessions() {
    let h = harness();
    h.agent().await;
    let alice = h.keypair(Role::User).await;
    let bob = h.keypair(Role::User).await;
    let admin = h.keypair(Role::Admin).await;
    let id = h.enqueue(&alice, "alice-one").await;
    h.enqueue(&alice, "alice-two").await;
    h.enqueue(&bob, "bob-one").await;

    let r = h.gql(&alice, LIST, json!({"limit": 20, "offset": 0})).await;
    assert!(r.get("errors").is_none(), "body: {r}");
    assert_eq!(names(&r), ["alice-one", "alice-two"]);
    assert_eq!(r["data"]["compute_session_list"]["total_count"], 2);
    let item = r["data"]["compute_session_list"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "alice-one")
        .unwrap()
        .clone();
    assert_eq!(item["id"], id.as_str());
    assert_eq!(item["status"], "PENDING");
    assert_eq!(item["image"], "python:3.11");
    assert_eq!(item["access_key"], alice.access_key.as_str());
    assert_eq!(item["containers"].as_array().map(Vec::len), Some(1), "item: {item}");
    assert!(item["main_kernel_id"].is_string(), "item: {item}");
    assert!(item["occupying_slots"].is_string(), "a JSONString; item: {item}");

    // Pagination: total_count counts every match, items only the page.
    let r = h.gql(&alice, LIST, json!({"limit": 1, "offset": 1})).await;
    assert_eq!(r["data"]["compute_session_list"]["total_count"], 2);
    assert_eq!(r["data"]["compute_session_list"]["items"].as_array().map(Vec::len), Some(1));

    // Bob sees only his.
    let r = h.gql(&bob, LIST, json!({"limit": 20, "offset": 0})).await;
    assert_eq!(names(&r), ["bob-one"]);

    // A user may not name another keypair.
    let r = h.gql(&bob, LIST, json!({"limit": 20, "offset": 0, "access_key": alice.access_key.as_str()})).await;
    assert!(!errors(&r).is_empty(), "body: {r}");
    assert!(r["data"]["compute_session_list"].is_null(), "body: {r}");

    // An admin sees everyone's, or one keypair's.
    let r = h.gql(&admin, LIST, json!({"limit": 20, "offset": 0})).await;
    assert_eq!(names(&r), ["alice-one", "alice-two", "bob-one"]);
    let r = h.gql(&admin, LIST, json!({"limit": 20, "offset": 0, "access_key": alice.access_key.as_str()})).await;
    assert_eq!(names(&r), ["alice-one", "alice-two"]);

    // A simple minilang filter and order.
    let vars = json!({"limit": 20, "offset": 0, "filter": "name == \"alice-two\""});
    let r = h.gql(&alice, LIST, vars).await;
    assert_eq!(names(&r), ["alice-two"]);
    assert_eq!(r["data"]["compute_session_list"]["total_count"], 1);
    let r = h.gql(&alice, LIST, json!({"limit": 20, "offset": 0, "order": "-name"})).await;
    let first = &r["data"]["compute_session_list"]["items"][0]["name"];
    assert_eq!(first, "alice-two", "body: {r}");
    let r = h.gql(&alice, LIST, json!({"limit": 20, "offset": 0, "filter": "nosuchfield == 1"})).await;
    assert!(!errors(&r).is_empty(), "body: {r}");
}

#[tokio::test]
async fn compute_session_by_id_respects_ownership() {
    let h = harness();
    h.agent().await;
    let alice = h.keypair(Role::User).await;
    let bob = h.keypair(Role::User).await;
    let admin = h.keypair(Role::Admin).await;
    let id = h.enqueue(&alice, "alice-sess").await;

    let r = h.gql(&alice, INFO, json!({"id": id})).await;
    assert!(r.get("errors").is_none(), "body: {r}");
    let s = &r["data"]["compute_session"];
    assert_eq!(s["name"], "alice-sess");
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["status"], "PENDING");
    assert_eq!(s["status_data"], "{}");
    assert_eq!(s["dependencies"], json!([]));
    assert_eq!(s["containers"][0]["session_id"], id.as_str());

    // A session that depends on it lists it, with the fields asked for.
    let body = json!({"image": "python:3.11", "name": "alice-after", "enqueueOnly": true, "dependencies": [id]});
    let (status, created) = h.call(signed_json("/session", &alice, &body)).await;
    assert_eq!(status, 201, "body: {created}");
    let after = created["sessionId"].as_str().expect("sessionId");
    let r = h.gql(&alice, INFO, json!({"id": after})).await;
    assert_eq!(r["data"]["compute_session"]["dependencies"], json!([{"name": "alice-sess", "id": id}]), "body: {r}");

    // Another user gets null, as for a session that does not exist.
    let r = h.gql(&bob, INFO, json!({"id": id})).await;
    assert!(r["data"]["compute_session"].is_null(), "body: {r}");
    let r = h.gql(&alice, INFO, json!({"id": uuid::Uuid::new_v4().to_string()})).await;
    assert!(r["data"]["compute_session"].is_null(), "body: {r}");

    // An admin sees it.
    let r = h.gql(&admin, INFO, json!({"id": id})).await;
    assert_eq!(r["data"]["compute_session"]["name"], "alice-sess", "body: {r}");

    // Not a UUID: a GraphQL error.
    let r = h.gql(&alice, INFO, json!({"id": "alice-sess"})).await;
    assert!(!errors(&r).is_empty(), "body: {r}");
}

#[tokio::test]
async fn status_filter_is_a_comma_separated_list() {
    let h = harness();
    h.agent().await;
    let alice = h.keypair(Role::User).await;
    h.enqueue(&alice, "still-pending").await;
    h.enqueue(&alice, "gone-soon").await;
    h.cancel(&alice, "gone-soon").await;

    let active = "PENDING,SCHEDULED,PULLING,PREPARING,RUNNING,RUNNING_DEGRADED,TERMINATING,ERROR";
    let r = h.gql(&alice, LIST, json!({"limit": 20, "offset": 0, "status": active})).await;
    assert_eq!(names(&r), ["still-pending"]);
    let r = h.gql(&alice, LIST, json!({"limit": 20, "offset": 0, "status": "CANCELLED,TERMINATED"})).await;
    assert_eq!(names(&r), ["gone-soon"]);
    assert_eq!(r["data"]["compute_session_list"]["items"][0]["status"], "CANCELLED");
    let r = h.gql(&alice, LIST, json!({"limit": 20, "offset": 0})).await;
    assert_eq!(names(&r), ["gone-soon", "still-pending"]);
    let r = h.gql(&alice, LIST, json!({"limit": 20, "offset": 0, "status": "NAPPING"})).await;
    assert!(!errors(&r).is_empty(), "body: {r}");
}

#[tokio::test]
async fn admin_lists_are_refused_to_users() {
    let h = harness();
    h.agent().await;
    let alice = h.keypair(Role::User).await;
    let admin = h.keypair(Role::Superadmin).await;

    let agents = "query($limit:Int!, $offset:Int!, $status: String) { agent_list(limit:$limit, offset:$offset, \
                  status:$status) { items { id status architecture scaling_group region first_contact cpu_cur_pct \
                  mem_cur_bytes available_slots occupied_slots } total_count } }";
    let keypairs = "query($limit:Int!, $offset:Int!, $is_active: Boolean) { keypair_list(limit:$limit, \
                    offset:$offset, is_active:$is_active) { items { user_id projects user_info { full_name } \
                    access_key secret_key is_active is_admin created_at last_used resource_policy rate_limit \
                    concurrency_used } total_count } }";
    let vars = json!({"limit": 20, "offset": 0, "status": "ALIVE"});

    let r = h.gql(&alice, agents, vars.clone()).await;
    assert!(errors(&r).iter().any(|e| e.contains("admin")), "body: {r}");
    assert!(r["data"]["agent_list"].is_null(), "body: {r}");
    let r = h.gql(&alice, keypairs, json!({"limit": 20, "offset": 0})).await;
    assert!(errors(&r).iter().any(|e| e.contains("admin")), "body: {r}");
    assert!(r["data"]["keypair_list"].is_null(), "body: {r}");

    let r = h.gql(&admin, agents, vars).await;
    assert!(r.get("errors").is_none(), "body: {r}");
    assert_eq!(r["data"]["agent_list"]["total_count"], 1);
    assert_eq!(r["data"]["agent_list"]["items"][0]["id"], "i-test-agent");
    assert_eq!(r["data"]["agent_list"]["items"][0]["status"], "ALIVE");

    let r = h.gql(&admin, keypairs, json!({"limit": 20, "offset": 0})).await;
    assert!(r.get("errors").is_none(), "body: {r}");
    assert_eq!(r["data"]["keypair_list"]["total_count"], 2);
    let items = r["data"]["keypair_list"]["items"].as_array().unwrap();
    let mine = items.iter().find(|k| k["access_key"] == admin.access_key.as_str()).unwrap();
    assert_eq!(mine["secret_key"], admin.secret_key.as_str());
    assert_eq!(mine["is_admin"], true);
    let hers = items.iter().find(|k| k["access_key"] == alice.access_key.as_str()).unwrap();
    assert!(hers["secret_key"].is_null(), "another keypair's secret is never sent: {hers}");

    // Every caller may read its own keypair (`backend.ai ps` does, to learn whether it is an admin).
    let own = "query { keypair { user_id access_key secret_key is_active is_admin } }";
    let r = h.gql(&alice, own, json!({})).await;
    assert_eq!(r["data"]["keypair"]["access_key"], alice.access_key.as_str(), "body: {r}");
    assert_eq!(r["data"]["keypair"]["is_admin"], false);

    // Virtual folders: an empty list for everybody.
    let vf = "query($limit:Int!, $offset:Int!, $group_id: UUID, $filter: String, $order: String) { \
              vfolder_list(limit:$limit, offset:$offset, group_id:$group_id, filter:$filter, order:$order) { \
              items { host name created_at creator group permission ownership_type status } total_count } }";
    let r = h.gql(&alice, vf, json!({"limit": 20, "offset": 0, "group_id": null})).await;
    assert_eq!(r["data"]["vfolder_list"], json!({"items": [], "total_count": 0}), "body: {r}");
}

#[tokio::test]
async fn syntax_errors_come_back_in_errors() {
    let h = harness();
    let alice = h.keypair(Role::User).await;

    let r = h.gql(&alice, "query { compute_session_list(limit: 1, offset: 0 { total_count } }", json!({})).await;
    assert!(!errors(&r).is_empty(), "body: {r}");
    assert!(r["data"].is_null(), "body: {r}");

    // An unknown field is a validation error, also inside a 200.
    let r = h.gql(&alice, "query { no_such_thing }", json!({})).await;
    assert!(!errors(&r).is_empty(), "body: {r}");

    // The legacy endpoint answers bare data, or a 400 graphql-error problem.
    let q = json!({"query": "query { keypair { access_key } }", "variables": {}});
    let (status, body) = h.call(signed_json("/admin/graphql", &alice, &q)).await;
    assert_eq!(status, 200, "body: {body}");
    assert_eq!(body["keypair"]["access_key"], alice.access_key.as_str(), "body: {body}");
    let q = json!({"query": "query { keypair { ", "variables": {}});
    let (status, body) = h.call(signed_json("/admin/graphql", &alice, &q)).await;
    assert_eq!(status, 400, "body: {body}");
    assert_eq!(body["type"], "https://api.backend.ai/probs/graphql-error", "body: {body}");
    assert!(body["data"].as_array().is_some_and(|e| !e.is_empty()), "body: {body}");

    // Unsigned requests never reach the schema.
    let (status, _) = h
        .call(
            warp::test::request()
                .method("POST")
                .path("/admin/gql")
                .header("host", HOST)
                .header("content-type", "application/json")
                .body(json!({"query": "query { keypair { access_key } }"}).to_string()),
        )
        .await;
    assert_eq!(status, 401);
}
