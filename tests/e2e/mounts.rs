//! Virtual folders mounted into sessions, on the process runtime and on Docker: a file uploaded to a folder is read
//! by code in the session, a result written there by code is downloaded through the folder API, a folder shared
//! read-only refuses writes from inside the session (and from the API), and bad mounts fail the create with a clear
//! error and leave no session behind.

use crate::common::{self, Api};
use backend_core::model::{Role, User};
use backend_manager::standalone::Standalone;
use reqwest::Method;
use serde_json::{json, Value};

/// Uploads `data` to `path` in `folder` with request-upload and one tus PATCH.
async fn upload(api: &Api, folder: &str, path: &str, data: &[u8]) {
    let a = api
        .send(
            Method::POST,
            &format!("/folders/{folder}/request-upload"),
            Some(json!({"path": path, "size": data.len()})),
        )
        .await;
    assert_eq!(a.status, 200, "request-upload: {}", a.body);
    let url = format!("{}?token={}", a.body["url"].as_str().unwrap(), a.body["token"].as_str().unwrap());
    let resp = reqwest::Client::new()
        .patch(url)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204, "tus PATCH: {}", resp.text().await.unwrap());
}

/// Downloads `path` from `folder` with request-download.
async fn download(api: &Api, folder: &str, path: &str) -> (u16, Vec<u8>) {
    let a = api.send(Method::POST, &format!("/folders/{folder}/request-download"), Some(json!({"path": path}))).await;
    if a.status != 200 {
        return (a.status, serde_json::to_vec(&a.body).unwrap());
    }
    let url = format!("{}?token={}", a.body["url"].as_str().unwrap(), a.body["token"].as_str().unwrap());
    let resp = reqwest::get(url).await.unwrap();
    (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
}

/// A second user (with a user record, which folders need) and its keypair.
async fn second_user(stack: &Standalone) -> Api {
    let kp = common::user_keypair(stack).await;
    stack
        .manager
        .store
        .put_user(&User {
            email: kp.user_id.clone(),
            username: "user".into(),
            domain: "default".into(),
            role: Role::User,
            is_active: true,
            groups: vec!["default".into()],
            created_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    Api::new(&stack.endpoint, &kp)
}

async fn sessions_named(stack: &Standalone, api: &Api, name: &str) -> usize {
    let owner = api.access_key.as_str().into();
    stack.manager.store.find_session(&owner, name).await.unwrap().into_iter().count()
}

/// The whole scenario on one stack. Code uses paths relative to the kernel's working directory, `/home/work` (the
/// process runtime's kernels have their own directory standing for it).
async fn mounts_scenario(stack: &Standalone, ro_enforced_in_kernel: bool) {
    let owner = Api::new(&stack.endpoint, &stack.admin);
    let user = second_user(stack).await;
    let created = owner.send(Method::POST, "/folders", Some(json!({"name": "data", "host": "local"}))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    upload(&owner, "data", "input/numbers.txt", b"1 2 3 4\n").await;

    // Read what was uploaded and write a result, from code in a session mounting the folder read-write.
    let a = owner.create(json!({"image": "python", "name": "mnt-rw", "config": {"mounts": ["data"]}})).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let code = "import os\nnums = open('data/input/numbers.txt').read().split()\n\
                open('data/sum.txt', 'w').write(str(sum(map(int, nums))))\nprint(len(nums))";
    let (out, err, exit) = owner.run("mnt-rw", code).await;
    assert_eq!((out.trim(), exit), ("4", 0), "stderr: {err}");
    assert_eq!(download(&owner, "data", "sum.txt").await, (200, b"10".to_vec()), "the result is in the folder");

    // A mapped path.
    let a = owner
        .create(json!({"image": "python", "name": "mnt-map", "config": {"mount_map": {"data": "/home/work/inputs"}}}))
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let (out, _, _) = owner.run("mnt-map", "print(open('inputs/sum.txt').read())").await;
    assert_eq!(out.trim(), "10");

    // Shared read-only with another user: readable, but neither code in a session nor the API may write.
    let a = owner
        .send(Method::POST, "/folders/data/invite", Some(json!({"perm": "ro", "user_ids": ["user@example.com"]})))
        .await;
    assert!(a.status < 300, "invite: {}", a.body);
    let invitations = user.send(Method::GET, "/folders/invitations/list", None).await;
    assert_eq!(invitations.status, 200, "{}", invitations.body);
    let inv_id = invitations.body["invitations"][0]["id"].as_str().expect("an invitation").to_owned();
    let a = user.send(Method::POST, "/folders/invitations/accept", Some(json!({"inv_id": inv_id}))).await;
    assert!(a.status < 300, "accept: {}", a.body);
    let a = user.create(json!({"image": "python", "name": "mnt-ro", "config": {"mounts": ["data"]}})).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let code = "print(open('data/sum.txt').read())\ntry:\n    open('data/x.txt', 'w').write('no')\n\
                except OSError as e:\n    print('refused', e.errno)";
    let (out, err, _) = user.run("mnt-ro", code).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first().copied(), Some("10"), "readable; stderr: {err}");
    if ro_enforced_in_kernel {
        assert!(lines.get(1).is_some_and(|l| l.starts_with("refused")), "a write to an ro mount fails: {out}");
        assert_eq!(download(&owner, "data", "x.txt").await.0, 404, "nothing was written");
    }
    let a = user.send(Method::POST, "/folders/data/request-upload", Some(json!({"path": "y.txt", "size": 1}))).await;
    assert_eq!(a.status, 403, "an ro share cannot upload: {}", a.body);

    // Bad mounts fail the create and leave nothing behind.
    let a = owner.create(json!({"image": "python", "name": "mnt-bad1", "config": {"mounts": ["nope"]}})).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert!(a.body["msg"].as_str().unwrap_or("").contains("nope"), "the error names the folder: {}", a.body);
    let bad_map =
        json!({"image": "python", "name": "mnt-bad2", "config": {"mount_map": {"data": "/home/work/../../etc"}}});
    let a = owner.create(bad_map).await;
    assert_eq!(a.status, 400, "{}", a.body);
    let a = user.create(json!({"image": "python", "name": "mnt-bad3", "config": {"mounts": ["data", "nope"]}})).await;
    assert_eq!(a.status, 404, "{}", a.body);
    for (api, name) in [(&owner, "mnt-bad1"), (&owner, "mnt-bad2"), (&user, "mnt-bad3")] {
        assert_eq!(sessions_named(stack, api, name).await, 0, "{name} left a session");
    }

    // A mounted folder cannot be deleted until its sessions end.
    let a = owner.send(Method::DELETE, "/folders/data", None).await;
    assert_eq!(a.status, 409, "{}", a.body);
    for (api, name) in [(&owner, "mnt-rw"), (&owner, "mnt-map"), (&user, "mnt-ro")] {
        let a = api.send(Method::DELETE, &format!("/session/{name}"), None).await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let a = owner.send(Method::DELETE, "/folders/data", None).await;
    assert!(a.status < 300, "{}", a.body);
    let left: Value = owner.send(Method::GET, "/folders", None).await.body;
    assert_eq!(left.as_array().map(Vec::len), Some(0), "{left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_mount_into_process_kernels() {
    let dir = tempfile::tempdir().unwrap();
    let stack = common::start(dir.path()).await;
    // The process runtime bind-mounts (and so enforces `ro`) only as root; otherwise it links the folder.
    mounts_scenario(&stack, nix::unistd::geteuid().is_root()).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_mount_into_docker_kernels() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = crate::docker::Cleanup(dir.path().to_owned());
    let stack = crate::docker::start(dir.path(), false).await;
    mounts_scenario(&stack, true).await;
    stack.shutdown().await;
}
