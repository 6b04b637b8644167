//! Bad input gets the right 4xx with a problem+json body, and a refused create leaves nothing behind.

use crate::common::{admin_stack, start, user_keypair, Api};
use backend_core::store::SessionFilter;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_have_the_right_status_and_leave_nothing() {
    let (_dir, stack, api) = admin_stack().await;

    let cases = [
        (json!({"name": "no-image"}), 400, "invalid-api-params"),
        (json!({"image": "ruby:3", "name": "unknown-image"}), 404, "image-not-found"),
        (json!({"image": "python", "name": "x"}), 400, "invalid-api-params"),
        (
            json!({"image": "python", "name": "neg-cpu", "config": {"resources": {"cpu": -1}}}),
            400,
            "invalid-api-params",
        ),
        (
            json!({"image": "python", "name": "huge-mem", "config": {"resources": {"mem": "900p"}}}),
            400,
            "invalid-api-params",
        ),
        (
            json!({"image": "python", "name": "odd-slot", "config": {"resources": {"cuda.device": 1}}}),
            400,
            "invalid-api-params",
        ),
        (
            json!({"image": "python", "name": "many-cpus", "config": {"resources": {"cpu": 64}}}),
            400,
            "invalid-api-params",
        ),
        (json!({"image": "python", "name": "zero-cluster", "clusterSize": 0}), 400, "invalid-api-params"),
        (json!({"image": "python", "name": "bad-type", "type": "forever"}), 400, "invalid-api-params"),
        (json!({"image": 42, "name": "wrong-type"}), 400, "invalid-api-params"),
        (json!({"image": "python", "name": "with-mount", "config": {"mounts": ["data"]}}), 404, "vfolder-not-found"),
        (json!({"image": "python", "name": "later", "starts_at": "whenever"}), 400, "invalid-api-params"),
        (json!({"image": "python", "name": "depends", "dependencies": ["no-such-session"]}), 404, "session-not-found"),
        (json!({"image": "python", "name": "callback", "callback_url": "http://x"}), 400, "invalid-api-params"),
        (
            json!({"image": "python", "name": "opts", "config": {"resource_opts": {"gpu": 1}}}),
            400,
            "invalid-api-params",
        ),
        (json!({"image": "python", "name": "sparc", "architecture": "sparc64"}), 400, "invalid-api-params"),
        (json!({"image": "python", "name": "batch-no-cmd", "type": "batch"}), 400, "invalid-api-params"),
    ];
    for (body, status, problem) in cases {
        let a = api.create(body.clone()).await;
        assert_eq!(a.status, status, "{body} -> {}", a.body);
        assert_eq!(a.problem(), problem, "{body} -> {}", a.body);
        assert!(a.headers["content-type"].to_str().unwrap().starts_with("application/problem+json"));
        assert!(a.body["title"].as_str().is_some_and(|t| !t.is_empty()));
    }
    let malformed = api.send_raw(Method::POST, "/session", Some(b"{not json".to_vec()), chrono::Utc::now()).await;
    assert_eq!((malformed.status, malformed.problem()), (400, "invalid-api-params"));
    let big = vec![b' '; 9 << 20];
    let too_large = api.send_raw(Method::POST, "/session", Some(big), chrono::Utc::now()).await;
    assert_eq!((too_large.status, too_large.problem()), (413, "request-too-large"));

    let rows = stack.manager.store.list_sessions(&SessionFilter::default()).await.unwrap();
    assert!(rows.is_empty(), "refused creates left rows: {rows:?}");
    assert!(stack.agent.kernels.handles().is_empty(), "refused creates left kernels");

    let missing = api.send(Method::GET, "/session/nope-nope", None).await;
    assert_eq!((missing.status, missing.problem()), (404, "session-not-found"));
    let nowhere = api.send(Method::GET, "/no/such/route", None).await;
    assert_eq!(nowhere.status, 404);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorised_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(dir.path()).await;
    let admin = Api::new(&stack.endpoint, &stack.admin);
    let user_kp = user_keypair(&stack).await;
    let user = Api::new(&stack.endpoint, &user_kp);

    // No credentials at all.
    let plain = reqwest::get(format!("{}/session", stack.endpoint)).await.unwrap();
    assert_eq!(plain.status(), 401);
    // A wrong secret.
    let mut forged = Api::new(&stack.endpoint, &stack.admin);
    forged.secret_key = "not-the-secret".into();
    let a = forged.send(Method::GET, "/session", None).await;
    assert_eq!((a.status, a.problem()), (401, "auth-failed"));
    // A date outside ±15 minutes.
    let stale = chrono::Utc::now() - chrono::Duration::minutes(20);
    let a = admin.send_raw(Method::GET, "/session", None, stale).await;
    assert_eq!(a.status, 401);
    // A revoked keypair.
    stack.manager.store.set_keypair_active(&user_kp.access_key, false).await.unwrap();
    assert_eq!(user.send(Method::GET, "/session", None).await.status, 401);
    stack.manager.store.set_keypair_active(&user_kp.access_key, true).await.unwrap();

    // Another keypair's session is invisible; acting for another keypair needs admin.
    let created = admin.create(json!({"image": "python", "name": "admins-own", "enqueueOnly": true})).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let a = user.send(Method::GET, "/session/admins-own", None).await;
    assert_eq!((a.status, a.problem()), (404, "session-not-found"));
    let a = user.send(Method::DELETE, "/session/admins-own", None).await;
    assert_eq!(a.status, 404);
    let a =
        user.send(Method::GET, &format!("/session/admins-own?owner_access_key={}", stack.admin.access_key), None).await;
    assert_eq!((a.status, a.problem()), (403, "forbidden"));
    let a = admin.send(Method::GET, &format!("/session?owner_access_key={}", user_kp.access_key), None).await;
    assert_eq!(a.status, 200);
    assert!(a.body["sessions"].as_array().unwrap().is_empty());
    admin.send(Method::DELETE, "/session/admins-own", None).await;
    stack.shutdown().await;
}

/// A session's domain and group follow its owner's user as in Backend.AI: the domain defaults to the user's and
/// cannot be another (400), the group must exist in it (400) and, for a plain user, be one of the user's groups
/// (400); a superadmin may name any active group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_and_group_follow_the_owner() {
    use backend_core::model::{Group, KeyPair, Role};
    let dir = tempfile::tempdir().unwrap();
    let stack = start(dir.path()).await;
    let store = &stack.manager.store;
    backend_core::store::fixtures::ensure_user(store.as_ref(), "member@example.com", Role::User).await.unwrap();
    let (ak, sk) = backend_core::auth::generate_keypair();
    let kp = KeyPair {
        access_key: ak.into(),
        secret_key: sk,
        user_id: "member@example.com".into(),
        role: Role::User,
        is_active: true,
        rate_limit: 1000,
        resource_policy: "default".into(),
        created_at: chrono::Utc::now(),
    };
    store.insert_keypair(&kp).await.unwrap();
    let research = Group {
        name: "research".into(),
        domain: "default".into(),
        description: None,
        is_active: true,
        created_at: chrono::Utc::now(),
        total_resource_slots: Default::default(),
    };
    store.put_group(&research).await.unwrap();
    let member = Api::new(&stack.endpoint, &kp);
    let admin = Api::new(&stack.endpoint, &stack.admin);

    for (body, why) in [
        (json!({"image": "python", "name": "elsewhere", "domain": "other"}), "another domain"),
        (json!({"image": "python", "name": "nogroup", "group": "no-such-group"}), "an unknown group"),
        (json!({"image": "python", "name": "notmine", "group": "research"}), "a group the user is not in"),
    ] {
        let a = member.create(body.clone()).await;
        assert_eq!((a.status, a.problem()), (400, "invalid-api-params"), "{why}: {}", a.body);
    }
    let a = admin.create(json!({"image": "python", "name": "nodomain", "domain": "no-such-domain"})).await;
    assert_eq!((a.status, a.problem()), (400, "invalid-api-params"), "an unknown domain: {}", a.body);
    assert!(store.list_sessions(&SessionFilter::default()).await.unwrap().is_empty(), "refusals left rows");

    let a = member.create(json!({"image": "python", "name": "plain", "domain": "default", "enqueueOnly": true})).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let a = admin.create(json!({"image": "python", "name": "theirs", "group": "research", "enqueueOnly": true})).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let sessions = store.list_sessions(&SessionFilter::default()).await.unwrap();
    let of = |name: &str| sessions.iter().find(|s| s.name == name).map(|s| (s.domain.clone(), s.group.clone()));
    assert_eq!(of("plain"), Some(("default".into(), "default".into())));
    assert_eq!(of("theirs"), Some(("default".into(), "research".into())));
    stack.shutdown().await;
}
