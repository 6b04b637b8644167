//! Standalone restart: records survive; kernels that died with the process are marked terminated with a reason.

use crate::common::{start, Api};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_records_and_ends_lost_kernels() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(dir.path()).await;
    let admin = stack.admin.clone();
    let api = Api::new(&stack.endpoint, &admin);
    let created = api.create(json!({"image": "python", "name": "survivor"})).await;
    assert_eq!(created.body["status"], "RUNNING", "{}", created.body);
    let done = api.create(json!({"image": "python", "name": "finished"})).await;
    assert_eq!(done.status, 201);
    api.send(Method::DELETE, "/session/finished", None).await;

    let mode = std::fs::metadata(&stack.credentials_file).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o600);
    let creds = std::fs::read_to_string(&stack.credentials_file).unwrap();
    assert!(creds.contains(&format!("BACKEND_SECRET_KEY={}", admin.secret_key)));
    stack.shutdown().await;

    let stack = start(dir.path()).await;
    assert_eq!(stack.admin.access_key, admin.access_key, "the admin keypair is kept");
    let api = Api::new(&stack.endpoint, &stack.admin);
    let info = api.send(Method::GET, "/session/survivor", None).await;
    assert_eq!(info.status, 200, "{}", info.body);
    assert_eq!(info.body["status"], "TERMINATED", "{}", info.body);
    assert!(info.body["statusInfo"].as_str().unwrap().starts_with("kernel-lost"), "{}", info.body);
    let agent = stack.manager.store.agent(&stack.agent.config.id).await.unwrap().unwrap();
    assert!(agent.occupied_slots.is_zero());
    let finished = api.send(Method::GET, "/session/finished", None).await;
    assert_eq!(finished.body["status"], "TERMINATED");
    assert_eq!(finished.body["statusInfo"], "user-requested");
    stack.shutdown().await;
}
