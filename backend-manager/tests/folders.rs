//! Route tests of `/folders/...` and the transfer endpoints through `warp::test::request()`, over an in-memory
//! SQLite store and local volumes in a temporary directory: folder lifecycle, visibility, permissions, quotas, file
//! operations, resumable uploads, ranged downloads, sharing, and the resolution of session mounts.

mod common;

use backend_core::model::{KeyPair, Role};
use backend_core::storage::LocalStorage;
use backend_core::store::fixtures::{ensure_defaults, ensure_user};
use backend_core::vfolder::VFolderPermission;
use backend_manager::{Manager, ManagerConfig};
use chrono::Utc;
use common::{keypair, manager_with_storage, reply, signed, signed_json, sqlite, Resp, HOST};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::test::RequestBuilder;

struct Harness {
    m: Arc<Manager>,
    api: BoxedFilter<(Response,)>,
    alice: KeyPair,
    bob: KeyPair,
    admin: KeyPair,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Self {
        Self::with_config(ManagerConfig::default()).await
    }

    async fn with_config(config: ManagerConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = LocalStorage::new([
            ("local".to_owned(), dir.path().join("local")),
            ("other".to_owned(), dir.path().join("other")),
        ])
        .expect("volumes");
        let m = manager_with_storage(config, sqlite(), Arc::new(storage));
        ensure_defaults(m.store.as_ref()).await.expect("defaults");
        let (alice, bob, admin) = (
            keypair("alice@example.com", Role::User, "default"),
            keypair("bob@example.com", Role::User, "default"),
            keypair("admin@example.com", Role::Admin, "default"),
        );
        for kp in [&alice, &bob, &admin] {
            ensure_user(m.store.as_ref(), &kp.user_id, kp.role).await.expect("user");
            m.store.insert_keypair(kp).await.expect("keypair");
        }
        let api = backend_manager::api::routes(m.clone());
        Self { m, api, alice, bob, admin, _dir: dir }
    }

    /// A user of its own resource policy.
    async fn user_with_policy(&self, email: &str, max_count: u32, max_scope: Option<u64>) -> KeyPair {
        let mut policy = self.m.store.resource_policy("default").await.unwrap().unwrap();
        policy.name = format!("policy-{email}");
        policy.max_vfolder_count = max_count;
        policy.max_quota_scope_size = max_scope;
        self.m.store.put_resource_policy(&policy).await.unwrap();
        let kp = keypair(email, Role::User, &policy.name);
        ensure_user(self.m.store.as_ref(), email, Role::User).await.unwrap();
        self.m.store.insert_keypair(&kp).await.unwrap();
        kp
    }

    async fn raw(&self, req: RequestBuilder) -> warp::http::Response<bytes::Bytes> {
        req.reply(&self.api).await
    }

    async fn send(&self, req: RequestBuilder) -> Resp {
        reply(&self.api, req).await
    }

    async fn get(&self, path: &str, kp: &KeyPair) -> Resp {
        self.send(signed("GET", path, kp, None)).await
    }

    async fn call(&self, method: &str, path: &str, kp: &KeyPair, body: Value) -> Resp {
        self.send(signed_json(method, path, kp, &body)).await
    }

    async fn create(&self, kp: &KeyPair, name: &str) -> Value {
        self.call("POST", "/folders", kp, json!({"name": name})).await.ok(201).clone()
    }
}

/// The path and query of a transfer URL handed out by the manager, with its token.
fn transfer_path(ticket: &Value) -> String {
    let url = ticket["url"].as_str().unwrap();
    let path = url.strip_prefix(&format!("http://{HOST}")).unwrap_or_else(|| panic!("unexpected transfer URL {url}"));
    format!("{path}?token={}", ticket["token"].as_str().unwrap())
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> =
        list.as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_owned()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn folder_lifecycle() {
    let h = Harness::new().await;
    let hosts = h.get("/folders/_/hosts", &h.alice).await;
    assert_eq!(hosts.ok(200)["default"], "local");
    assert_eq!(hosts.body["allowed"], json!(["local"]), "the policy allows only local");
    assert_eq!(h.get("/folders/_/allowed_types", &h.alice).await.ok(200), &json!(["user", "group"]));

    let created = h
        .call(
            "POST",
            "/folders",
            &h.alice,
            json!({"name": "data", "host": null, "usage_mode": "general",
            "permission": "rw", "quota": "0", "cloneable": false, "group": null, "unmanaged_path": null}),
        )
        .await;
    let created = created.ok(201);
    assert_eq!(created["host"], "local");
    assert_eq!(created["is_owner"], true);
    assert_eq!(created["permission"], "wd");
    assert_eq!(created["ownership_type"], "user");
    h.call("POST", "/folders", &h.alice, json!({"name": "data"})).await.problem(409, "vfolder-already-exists");
    h.call("POST", "/folders", &h.alice, json!({"name": "x", "host": "other"})).await.problem(403, "forbidden");
    h.call("POST", "/folders", &h.alice, json!({"name": "x", "host": "nowhere"}))
        .await
        .problem(400, "invalid-api-params");
    h.call("POST", "/folders", &h.alice, json!({"name": ".ssh"})).await.problem(400, "invalid-api-params");
    h.create(&h.alice, "second").await;

    let listed = h.get("/folders", &h.alice).await;
    assert_eq!(names(listed.ok(200)), ["data", "second"]);
    let info = h.get("/folders/data", &h.alice).await;
    assert_eq!(info.ok(200)["id"], created["id"]);
    assert_eq!(info.body["numFiles"], 0);
    assert_eq!(info.body["type"], "user");

    let renamed = h.call("POST", "/folders/data/rename", &h.alice, json!({"new_name": "renamed"})).await;
    renamed.ok(201);
    h.call("POST", "/folders/renamed/rename", &h.alice, json!({"new_name": "second"}))
        .await
        .problem(409, "vfolder-already-exists");
    h.get("/folders/data", &h.alice).await.problem(404, "vfolder-not-found");
    assert_eq!(h.get("/folders/renamed", &h.alice).await.ok(200)["name"], "renamed");

    h.call("DELETE", "/folders/renamed", &h.alice, json!({})).await.ok(204);
    h.get("/folders/renamed", &h.alice).await.problem(404, "vfolder-not-found");
    let id = h.get("/folders/second", &h.alice).await.ok(200)["id"].clone();
    h.call("DELETE", "/folders", &h.alice, json!({"id": id})).await.ok(204);
    assert_eq!(names(h.get("/folders", &h.alice).await.ok(200)), Vec::<String>::new());
    let id: backend_core::VFolderId = id.as_str().unwrap().parse().unwrap();
    assert!(h.m.storage.folder_path("local", id).await.is_err(), "the directory is gone");
}

#[tokio::test]
async fn folder_count_quota() {
    let h = Harness::new().await;
    let carol = h.user_with_policy("carol@example.com", 2, None).await;
    h.create(&carol, "a").await;
    h.create(&carol, "b").await;
    let refused = h.call("POST", "/folders", &carol, json!({"name": "c"})).await;
    refused.problem(412, "quota-exceeded");
    assert!(refused.body["msg"].as_str().unwrap().contains('2'), "{}", refused.body);
    assert_eq!(names(h.get("/folders", &carol).await.ok(200)), ["a", "b"], "nothing is left behind");
}

#[tokio::test]
async fn foreign_folders_are_invisible() {
    let h = Harness::new().await;
    h.create(&h.alice, "private").await;
    h.get("/folders/private", &h.bob).await.problem(404, "vfolder-not-found");
    h.call("POST", "/folders/private/mkdir", &h.bob, json!({"path": "x"})).await.problem(404, "vfolder-not-found");
    h.call("DELETE", "/folders/private", &h.bob, json!({})).await.problem(404, "vfolder-not-found");
    assert_eq!(names(h.get("/folders", &h.bob).await.ok(200)), Vec::<String>::new());
    // Bob may have his own folder of the same name.
    h.create(&h.bob, "private").await;
}

#[tokio::test]
async fn file_operations() {
    let h = Harness::new().await;
    h.create(&h.alice, "work").await;
    let a = &h.alice;
    h.call("POST", "/folders/work/mkdir", a, json!({"path": "d1/d2", "parents": true, "exist_ok": false}))
        .await
        .ok(201);
    h.call("POST", "/folders/work/mkdir", a, json!({"path": "d1", "parents": false, "exist_ok": false}))
        .await
        .problem(409, "session-already-exists");
    let files = h.call("GET", "/folders/work/files", a, json!({"path": "d1"})).await;
    let items = files.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["name"], "d2");
    assert_eq!(items[0]["type"], "DIRECTORY");
    let legacy: Value = serde_json::from_str(files.body["files"].as_str().unwrap()).unwrap();
    assert_eq!(legacy[0]["filename"], "d2");
    assert!(legacy[0]["mode"].as_str().unwrap().starts_with('d'));
    // Parameters may also come as a query string.
    let by_query = h.get("/folders/work/files?path=d1", a).await;
    assert_eq!(by_query.ok(200)["items"][0]["name"], "d2");

    h.call("POST", "/folders/work/rename-file", a, json!({"target_path": "d1/d2", "new_name": "d3"})).await.ok(200);
    h.call("POST", "/folders/work/move-file", a, json!({"src": "d1/d3", "dst": "top"})).await.ok(200);
    let root = h.call("GET", "/folders/work/files", a, json!({"path": ""})).await;
    let mut root_names: Vec<&str> =
        root.ok(200)["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    root_names.sort();
    assert_eq!(root_names, ["d1", "top"]);

    for bad in ["../escape", "/etc", "d1/../../x"] {
        h.call("POST", "/folders/work/mkdir", a, json!({"path": bad})).await.problem(400, "invalid-api-params");
        h.call("GET", "/folders/work/files", a, json!({"path": bad})).await.problem(400, "invalid-api-params");
    }
    h.call("DELETE", "/folders/work/delete-files", a, json!({"files": ["d1"], "recursive": false}))
        .await
        .problem(400, "invalid-api-params");
    h.call("DELETE", "/folders/work/delete-files", a, json!({"files": ["d1", "top"], "recursive": true})).await.ok(200);
    let empty = h.call("GET", "/folders/work/files", a, json!({})).await;
    assert_eq!(empty.ok(200)["items"], json!([]));
}

async fn upload(h: &Harness, kp: &KeyPair, folder: &str, path: &str, data: &[u8]) {
    let ticket = h
        .call("POST", &format!("/folders/{folder}/request-upload"), kp, json!({"path": path, "size": data.len()}))
        .await;
    let target = transfer_path(ticket.ok(200));
    let resp = h
        .raw(
            warp::test::request()
                .method("PATCH")
                .path(&target)
                .header("tus-resumable", "1.0.0")
                .header("content-type", "application/offset+octet-stream")
                .header("upload-offset", "0")
                .body(data),
        )
        .await;
    assert_eq!(resp.status(), 204, "{:?}", resp.body());
}

#[tokio::test]
async fn resumable_upload_and_ranged_download() {
    let h = Harness::new().await;
    h.create(&h.alice, "up").await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let ticket = h
        .call("POST", "/folders/up/request-upload", &h.alice, json!({"path": "dir/blob.bin", "size": data.len()}))
        .await;
    assert!(ticket.ok(200)["url"].as_str().unwrap().ends_with("/upload"));
    let target = transfer_path(&ticket.body);
    let patch = |offset: usize, body: &[u8]| {
        warp::test::request()
            .method("PATCH")
            .path(&target)
            .header("tus-resumable", "1.0.0")
            .header("content-type", "application/offset+octet-stream")
            .header("upload-offset", offset.to_string())
            .body(body)
    };
    let head = || warp::test::request().method("HEAD").path(&target).header("tus-resumable", "1.0.0");

    let options = h.raw(warp::test::request().method("OPTIONS").path(&target)).await;
    assert_eq!(options.headers()["tus-version"], "1.0.0");
    let first = h.raw(patch(0, &data[..40_000])).await;
    assert_eq!(first.status(), 204);
    assert_eq!(first.headers()["upload-offset"], "40000");
    // The client was interrupted: it asks where the upload stands, then resumes from there.
    let status = h.raw(head()).await;
    assert_eq!(status.status(), 200);
    assert_eq!(status.headers()["upload-offset"], "40000");
    assert_eq!(status.headers()["upload-length"], data.len().to_string().as_str());
    assert_eq!(status.headers()["tus-resumable"], "1.0.0");
    assert_eq!(status.headers()["cache-control"], "no-store");
    let wrong = h.raw(patch(10, &data[10..20])).await;
    assert_eq!(wrong.status(), 409, "a PATCH at the wrong offset conflicts");
    let plain = h
        .raw(warp::test::request().method("PATCH").path(&target).header("upload-offset", "40000").body(vec![1u8]))
        .await;
    assert_eq!(plain.status(), 400, "a PATCH needs the tus content type");
    let rest = h.raw(patch(40_000, &data[40_000..])).await;
    assert_eq!(rest.status(), 204);
    assert_eq!(rest.headers()["upload-offset"], data.len().to_string().as_str());
    let forged = h.raw(warp::test::request().method("HEAD").path("/transfer/upload?token=forged.token")).await;
    assert_eq!(forged.status(), 401);

    let info = h.get("/folders/up", &h.alice).await;
    assert_eq!(info.ok(200)["numFiles"], 1);
    assert_eq!(info.body["used_bytes"], data.len());

    let ticket = h.call("POST", "/folders/up/request-download", &h.alice, json!({"path": "dir/blob.bin"})).await;
    let target = transfer_path(ticket.ok(200));
    let whole = h.raw(warp::test::request().method("GET").path(&target)).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-length"], data.len().to_string().as_str());
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert!(whole.headers()["content-disposition"].to_str().unwrap().contains("blob.bin"));
    assert_eq!(whole.body().as_ref(), &data[..]);
    let last_modified = whole.headers()["last-modified"].to_str().unwrap().to_owned();

    let part = h
        .raw(
            warp::test::request()
                .method("GET")
                .path(&target)
                .header("range", "bytes=60000-")
                .header("if-range", last_modified.as_str()),
        )
        .await;
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], format!("bytes 60000-{}/{}", data.len() - 1, data.len()).as_str());
    let mut joined = whole.body()[..60_000].to_vec();
    joined.extend_from_slice(part.body());
    assert_eq!(joined, data, "the resumed download completes the file");
    let stale = h
        .raw(
            warp::test::request()
                .method("GET")
                .path(&target)
                .header("range", "bytes=60000-")
                .header("if-range", "Thu, 01 Jan 1970 00:00:00 GMT"),
        )
        .await;
    assert_eq!(stale.status(), 200, "a stale If-Range gets the whole file");
    assert_eq!(stale.body().len(), data.len());
    let beyond = h.raw(warp::test::request().method("GET").path(&target).header("range", "bytes=100000-")).await;
    assert_eq!(beyond.status(), 416);

    h.call("POST", "/folders/up/request-download", &h.alice, json!({"path": "missing"}))
        .await
        .problem(404, "object-not-found");
    h.call("POST", "/folders/up/request-download", &h.bob, json!({"path": "dir/blob.bin"}))
        .await
        .problem(404, "vfolder-not-found");
}

#[tokio::test]
async fn upload_past_the_quota_scope_is_refused() {
    let h = Harness::new().await;
    let dave = h.user_with_policy("dave@example.com", 0, Some(1000)).await;
    h.create(&dave, "one").await;
    h.create(&dave, "two").await;
    upload(&h, &dave, "one", "a.bin", &[7u8; 600]).await;
    let refused = h.call("POST", "/folders/two/request-upload", &dave, json!({"path": "b.bin", "size": 500})).await;
    refused.problem(412, "quota-exceeded");
    h.call("POST", "/folders/two/request-upload", &dave, json!({"path": "b.bin", "size": 400})).await.ok(200);
}

#[tokio::test]
async fn sharing_flow() {
    let h = Harness::new().await;
    h.create(&h.alice, "shared").await;
    upload(&h, &h.alice, "shared", "f.txt", b"hello").await;
    h.call("POST", "/folders/shared/invite", &h.alice, json!({"perm": "ro", "user_ids": ["nobody@example.com"]}))
        .await
        .problem(404, "object-not-found");
    h.call("POST", "/folders/shared/invite", &h.bob, json!({"perm": "ro", "user_ids": ["alice@example.com"]}))
        .await
        .problem(404, "vfolder-not-found");
    let invited = h
        .call("POST", "/folders/shared/invite", &h.alice, json!({"perm": "ro", "user_ids": ["bob@example.com"]}))
        .await;
    assert_eq!(invited.ok(201)["invited_ids"], json!(["bob@example.com"]));

    let list = h.get("/folders/invitations/list", &h.bob).await;
    let invitation = list.ok(200)["invitations"][0].clone();
    assert_eq!(invitation["vfolder_name"], "shared");
    assert_eq!(invitation["perm"], "ro");
    assert_eq!(invitation["inviter"], "alice@example.com");
    h.call("POST", "/folders/invitations/accept", &h.alice, json!({"inv_id": invitation["id"]}))
        .await
        .problem(404, "object-not-found");
    h.call("POST", "/folders/invitations/accept", &h.bob, json!({"inv_id": invitation["id"]})).await.ok(200);
    assert_eq!(h.get("/folders/invitations/list", &h.bob).await.ok(200)["invitations"], json!([]));

    // Bob reads with ro and may not change anything.
    let seen = h.get("/folders/shared", &h.bob).await;
    assert_eq!(seen.ok(200)["permission"], "ro");
    assert_eq!(seen.body["is_owner"], false);
    assert_eq!(h.call("GET", "/folders/shared/files", &h.bob, json!({})).await.ok(200)["items"][0]["name"], "f.txt");
    h.call("POST", "/folders/shared/request-download", &h.bob, json!({"path": "f.txt"})).await.ok(200);
    for (method, op, body) in [
        ("POST", "mkdir", json!({"path": "x"})),
        ("POST", "request-upload", json!({"path": "x", "size": 1})),
        ("POST", "rename-file", json!({"target_path": "f.txt", "new_name": "g.txt"})),
        ("POST", "move-file", json!({"src": "f.txt", "dst": "g.txt"})),
        ("DELETE", "delete-files", json!({"files": ["f.txt"]})),
    ] {
        h.call(method, &format!("/folders/shared/{op}"), &h.bob, body).await.problem(403, "forbidden");
    }
    h.call("POST", "/folders/shared/rename", &h.bob, json!({"new_name": "mine"})).await.problem(403, "forbidden");
    h.call("DELETE", "/folders/shared", &h.bob, json!({})).await.problem(403, "forbidden");

    // Bob leaves; he no longer sees it.
    h.call("POST", "/folders/shared/leave", &h.bob, json!({"shared_user_uuid": null})).await.ok(200);
    h.get("/folders/shared", &h.bob).await.problem(404, "vfolder-not-found");
    h.call("POST", "/folders/shared/leave", &h.alice, json!({})).await.problem(400, "invalid-api-params");

    // Invited again with rw and accepted, then the owner unshares.
    h.call("POST", "/folders/shared/invite", &h.alice, json!({"perm": "rw", "emails": ["bob@example.com"]}))
        .await
        .ok(201);
    let inv = h.get("/folders/invitations/list", &h.bob).await.ok(200)["invitations"][0]["id"].clone();
    h.call("POST", "/folders/invitations/accept", &h.bob, json!({"inv_id": inv})).await.ok(200);
    h.call("POST", "/folders/shared/mkdir", &h.bob, json!({"path": "by-bob"})).await.ok(201);
    let unshared = h.call("DELETE", "/folders/shared/unshare", &h.alice, json!({"emails": ["bob@example.com"]})).await;
    assert_eq!(unshared.ok(200)["unshared_emails"], json!(["bob@example.com"]));
    h.get("/folders/shared", &h.bob).await.problem(404, "vfolder-not-found");

    // A declined invitation disappears from the list.
    h.call("POST", "/folders/shared/invite", &h.alice, json!({"perm": "ro", "emails": ["bob@example.com"]}))
        .await
        .ok(201);
    let inv = h.get("/folders/invitations/list", &h.bob).await.ok(200)["invitations"][0]["id"].clone();
    h.call("DELETE", "/folders/invitations/delete", &h.bob, json!({"inv_id": inv})).await.ok(200);
    assert_eq!(h.get("/folders/invitations/list", &h.bob).await.ok(200)["invitations"], json!([]));
}

#[tokio::test]
async fn group_folders_and_direct_share() {
    let h = Harness::new().await;
    let created =
        h.call("POST", "/folders", &h.alice, json!({"name": "team", "group": "default", "permission": "ro"})).await;
    assert_eq!(created.ok(201)["ownership_type"], "group");
    h.call("POST", "/folders", &h.alice, json!({"name": "t2", "group": "nosuch"}))
        .await
        .problem(404, "object-not-found");
    // Bob is a member of the default group too: he sees it with the folder's permission.
    assert_eq!(h.get("/folders/team", &h.bob).await.ok(200)["permission"], "ro");
    h.call("POST", "/folders/team/mkdir", &h.bob, json!({"path": "x"})).await.problem(403, "forbidden");
    h.call("POST", "/folders/team/share", &h.bob, json!({"permission": "rw", "emails": ["bob@example.com"]}))
        .await
        .problem(403, "forbidden");
    let shared = h
        .call("POST", "/folders/team/share", &h.admin, json!({"permission": "rw", "emails": ["bob@example.com"]}))
        .await;
    assert_eq!(shared.ok(201)["shared_emails"], json!(["bob@example.com"]));
    h.call("POST", "/folders/team/mkdir", &h.bob, json!({"path": "x"})).await.ok(201);
    h.call("DELETE", "/folders/team", &h.alice, json!({})).await.problem(403, "forbidden");
    h.call("DELETE", "/folders/team", &h.admin, json!({})).await.ok(204);
}

#[tokio::test]
async fn graphql_lists_visible_folders() {
    let h = Harness::new().await;
    h.create(&h.alice, "mine").await;
    h.create(&h.bob, "bobs").await;
    let query = json!({"query": "query($limit: Int!, $offset: Int!) { vfolder_list(limit: $limit, offset: $offset) \
        { items { id host name user group creator status permission ownership_type usage_mode max_size created_at \
        cloneable num_files cur_size } total_count } }", "variables": {"limit": 20, "offset": 0}});
    let resp = h.call("POST", "/admin/gql", &h.alice, query.clone()).await;
    let list = &resp.ok(200)["data"]["vfolder_list"];
    assert_eq!(list["total_count"], 1, "{}", resp.body);
    assert_eq!(list["items"][0]["name"], "mine");
    assert_eq!(list["items"][0]["ownership_type"], "user");
    assert_eq!(list["items"][0]["permission"], "wd");
    let own = json!({"query": "{ vfolder_own_list(limit: 10, offset: 0) { items { name } total_count } }"});
    assert_eq!(
        h.call("POST", "/admin/gql", &h.bob, own).await.ok(200)["data"]["vfolder_own_list"]["items"][0]["name"],
        "bobs"
    );
}

#[tokio::test]
async fn resolve_mounts_checks_names_paths_and_permissions() {
    async fn resolve_mounts(
        m: &Manager,
        owner: &KeyPair,
        mounts: &[String],
        map: &BTreeMap<String, String>,
    ) -> backend_core::error::Result<Vec<backend_core::vfolder::VFolderMount>> {
        let ctx = backend_manager::service::context::RequestContext::resolve(m, owner, None).await?;
        m.resolve_mounts(&ctx, mounts, map).await
    }
    let h = Harness::new().await;
    h.create(&h.alice, "data").await;
    h.create(&h.alice, "models").await;
    let invited =
        h.call("POST", "/folders/data/invite", &h.alice, json!({"perm": "ro", "emails": ["bob@example.com"]})).await;
    invited.ok(201);
    let inv = h.get("/folders/invitations/list", &h.bob).await.ok(200)["invitations"][0]["id"].clone();
    h.call("POST", "/folders/invitations/accept", &h.bob, json!({"inv_id": inv})).await.ok(200);

    let map = BTreeMap::from([("models".to_owned(), "/home/work/m".to_owned())]);
    let mounts = resolve_mounts(&h.m, &h.alice, &["data".to_owned()], &map).await.unwrap();
    assert_eq!(mounts.len(), 2);
    assert_eq!(mounts[0].name, "data");
    assert_eq!(mounts[0].kernel_path, "/home/work/data");
    assert_eq!(mounts[0].permission, VFolderPermission::ReadWriteDelete);
    assert!(mounts[0].host_path.is_dir());
    assert_eq!(mounts[1].kernel_path, "/home/work/m");

    let bobs = resolve_mounts(&h.m, &h.bob, &["data".to_owned()], &BTreeMap::new()).await.unwrap();
    assert_eq!(bobs[0].permission, VFolderPermission::ReadOnly, "the shared permission is carried");
    assert_eq!(bobs[0].host_path, mounts[0].host_path);

    let missing = resolve_mounts(&h.m, &h.bob, &["models".to_owned()], &BTreeMap::new()).await.unwrap_err();
    assert_eq!(missing.kind().status(), 404);
    assert!(missing.to_string().contains("models"), "{missing}");
    for bad in ["/etc/x", "../up", "/home/work/.ssh", "a/../b"] {
        let map = BTreeMap::from([("data".to_owned(), bad.to_owned())]);
        let e = resolve_mounts(&h.m, &h.alice, &[], &map).await.unwrap_err();
        assert_eq!(e.kind().status(), 400, "{bad}: {e}");
        assert!(e.to_string().contains("data"), "{e}");
    }
    let clash = BTreeMap::from([("models".to_owned(), "data".to_owned())]);
    let e = resolve_mounts(&h.m, &h.alice, &["data".to_owned()], &clash).await.unwrap_err();
    assert_eq!(e.kind().status(), 400, "{e}");
}

#[tokio::test]
async fn a_mounted_folder_cannot_be_deleted() {
    use backend_core::model::{SessionRecord, SessionResult, SessionType};
    use backend_core::status::StatusHistory;
    use backend_core::{SessionId, SessionStatus};
    let h = Harness::new().await;
    h.create(&h.alice, "busy").await;
    let ctx = backend_manager::service::context::RequestContext::resolve(&h.m, &h.alice, None).await.unwrap();
    let mounts = h.m.resolve_mounts(&ctx, &["busy".to_owned()], &BTreeMap::new()).await.unwrap();
    let now = Utc::now();
    let session = SessionRecord {
        id: SessionId::new(),
        name: "s1".into(),
        access_key: h.alice.access_key.clone(),
        domain: "default".into(),
        group: "default".into(),
        session_type: SessionType::Interactive,
        image: "python:3.11".into(),
        cluster_size: 1,
        status: SessionStatus::Pending,
        status_info: None,
        status_history: StatusHistory::starting(SessionStatus::Pending, now),
        requested_slots: Default::default(),
        environ: BTreeMap::new(),
        tag: None,
        scaling_group: "default".into(),
        priority: 0,
        startup_command: None,
        result: SessionResult::Undefined,
        created_at: now,
        terminated_at: None,
        starts_at: None,
        dependencies: Vec::new(),
        designated_agents: Vec::new(),
        architecture: None,
        bootstrap_script: None,
        batch_timeout: None,
        shmem: None,
        vfolder_mounts: mounts,
    };
    h.m.store.insert_session(&session, &[]).await.unwrap();
    let refused = h.call("DELETE", "/folders/busy", &h.alice, json!({})).await;
    refused.problem(409, "invalid-session-state");
    assert!(refused.body["msg"].as_str().unwrap().contains("s1"), "{}", refused.body);
    let change =
        backend_core::store::SessionChange { status: SessionStatus::Cancelled, status_info: None, result: None };
    h.m.store.update_session(session.id, change, Utc::now()).await.unwrap();
    h.call("DELETE", "/folders/busy", &h.alice, json!({})).await.ok(204);
}

#[tokio::test]
async fn transfer_urls_use_the_scheme_the_client_reached_us_by() {
    let url_of = |resp: Resp| resp.ok(200)["url"].as_str().unwrap().to_owned();
    let h = Harness::new().await;
    h.create(&h.alice, "f").await;
    let body = json!({"path": "a.txt", "size": 1});
    let plain = url_of(h.call("POST", "/folders/f/request-upload", &h.alice, body.clone()).await);
    assert!(plain.starts_with("http://"), "{plain}");
    let proxied =
        signed_json("POST", "/folders/f/request-upload", &h.alice, &body).header("x-forwarded-proto", "https");
    let proxied = url_of(h.send(proxied).await);
    assert!(proxied.starts_with("https://"), "behind a TLS proxy: {proxied}");

    let mut config = ManagerConfig::default();
    config.transfer.https = true;
    let h = Harness::with_config(config).await;
    h.create(&h.alice, "f").await;
    let own_tls = url_of(h.call("POST", "/folders/f/request-upload", &h.alice, body).await);
    assert!(own_tls.starts_with("https://"), "a manager serving TLS itself: {own_tls}");
}

#[tokio::test]
async fn transfers_run_through_a_separate_storage_service() {
    use backend_manager::api::transfer::{self, Transfers};
    // The storage service: the same volumes (a shared mount) and the same secret, no database, its own socket.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}{}", listener.local_addr().unwrap(), transfer::PREFIX);
    let mut config = ManagerConfig::default();
    config.transfer.public_url = Some(proxy.clone());
    let h = Harness::with_config(config).await;
    let service = Transfers::of(&h.m);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(transfer::serve(service, listener, async move {
        let _ = stopped.await;
    }));

    h.create(&h.alice, "far").await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let ticket =
        h.call("POST", "/folders/far/request-upload", &h.alice, json!({"path": "x.bin", "size": data.len()})).await;
    let url = format!("{}?token={}", ticket.ok(200)["url"].as_str().unwrap(), ticket.body["token"].as_str().unwrap());
    assert!(url.starts_with(&proxy), "the manager hands out the service's URL: {url}");
    let http = reqwest::Client::new();
    let patch = |offset: usize, part: &[u8]| {
        http.patch(&url)
            .header("tus-resumable", "1.0.0")
            .header("content-type", "application/offset+octet-stream")
            .header("upload-offset", offset.to_string())
            .body(part.to_vec())
            .send()
    };
    assert_eq!(patch(0, &data[..100_000]).await.unwrap().status().as_u16(), 204);
    let head = http.head(&url).header("tus-resumable", "1.0.0").send().await.unwrap();
    assert_eq!(head.headers()["upload-offset"], "100000", "the service knows where the upload stands");
    assert_eq!(patch(100_000, &data[100_000..]).await.unwrap().status().as_u16(), 204);
    let forged = url.replace("token=", "token=x");
    assert_eq!(http.head(&forged).send().await.unwrap().status().as_u16(), 401, "a forged token is refused");

    let ticket = h.call("POST", "/folders/far/request-download", &h.alice, json!({"path": "x.bin"})).await;
    let url = format!("{}?token={}", ticket.ok(200)["url"].as_str().unwrap(), ticket.body["token"].as_str().unwrap());
    let body = http.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert!(body[..] == data[..], "the download through the service is the upload");

    stop.send(()).unwrap();
    server.await.unwrap();
}
