//! The main scenario on a standalone stack whose kernels are Docker containers: create a session, execute code,
//! upload and download a file, destroy it (no container left); and a session that survives a restart of the stack
//! (its container keeps running and the new agent re-attaches to it, interpreter state included).
//!
//! Needs a running Docker daemon and the images of `scripts/build-kernel-images.sh`; fails (does not skip) without.

use crate::common::{wait_until, Api};
use backend_agent::runtime::RuntimeKind;
use backend_manager::standalone::{Standalone, StandaloneConfig};
use reqwest::Method;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const HINT: &str = "the Docker end-to-end tests need a running Docker daemon and the kernel images: run \
                    `sudo scripts/build-kernel-images.sh` first";
const BOUNDARY: &str = "e2e-docker-boundary-51c3";

/// Builds `backend-kernel-runner` next to the test binaries, where the standalone stack looks for it.
fn ensure_runner() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = std::process::Command::new(option_env!("CARGO").unwrap_or("cargo"))
            .args(["build", "-q", "-p", "backend-agent", "--bin", "backend-kernel-runner"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("running cargo to build the kernel runner");
        // A tree that does not build right now (work in progress elsewhere) still has the last runner.
        let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/backend-kernel-runner");
        assert!(status.success() || built.is_file(), "building backend-kernel-runner failed");
    });
}

pub(crate) async fn start(dir: &Path, keep_kernels: bool) -> Standalone {
    ensure_runner();
    let mut config = StandaloneConfig::new(dir);
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.capacity = Some(backend_core::ResourceSlots::from([("cpu", 8.into()), ("mem", (8u64 << 30).into())]));
    config.runtime = RuntimeKind::Docker;
    config.keep_kernels = keep_kernels;
    Standalone::start(config).await.unwrap_or_else(|e| panic!("{HINT}: {e:#}"))
}

/// Docker containers of this stack's kernels (by the runtime's root label).
fn containers(dir: &Path) -> Vec<String> {
    let Ok(root) = std::fs::canonicalize(dir.join("kernels")) else { return vec![] };
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=ai.backend.rs.root={}", root.display())])
        .output()
        .expect("docker ps");
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

/// Removes the stack's containers when a test ends, passed or not (kept kernels outlive the stack).
pub(crate) struct Cleanup(pub(crate) PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ids = containers(&self.0);
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker").args(["rm", "-f"]).args(&ids).output();
        }
    }
}

/// Sends a signed request with a raw body of `content_type`; answers the status and the body.
async fn send(api: &Api, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let (status, _, body) = crate::common::send_typed(api, method, path, content_type, body).await;
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_session_executes_transfers_files_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_owned());
    let stack = start(dir.path(), false).await;
    let api = Api::new(&stack.endpoint, &stack.admin);
    // The bootstrap script runs in /home/work as the kernel's user before the kernel takes code.
    let created =
        api.create(json!({"image": "python", "name": "dock", "bootstrap_script": "id -u > booted.txt\n"})).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["status"], "RUNNING", "{}", created.body);
    assert_eq!(containers(dir.path()).len(), 1, "the kernel is a container");

    let (out, _, code) = api.run("dock", "print(1)").await;
    assert_eq!((out.as_str(), code), ("1\n", 0));
    let (out, _, _) = api.run("dock", "print(open('booted.txt').read().strip())").await;
    assert_eq!(out.trim(), "1000", "the bootstrap script ran before the first execution");
    let (out, _, _) = api.run("dock", "import os\nprint(os.getuid(), os.environ['BACKENDAI_CLUSTER_HOST'])").await;
    assert_eq!(out.trim(), "1000 main1", "runs as the work user with its cluster host name");

    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"src\"; filename=\"data/in.txt\"\r\n\
         Content-Type: application/octet-stream\r\n\r\nhello docker\r\n--{BOUNDARY}--\r\n"
    )
    .into_bytes();
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let (status, answer) = send(&api, Method::POST, "/session/dock/upload", &ct, std::mem::take(&mut body)).await;
    assert!(status < 300, "upload: {status} {}", String::from_utf8_lossy(&answer));
    let (out, _, _) = api
        .run("dock", "t = open('/home/work/data/in.txt').read()\nopen('out.txt', 'w').write(t.upper())\nprint(t)")
        .await;
    assert_eq!(out.trim(), "hello docker", "the upload is in the container's /home/work");
    let request = serde_json::to_vec(&json!({ "files": ["out.txt"] })).unwrap();
    let (status, raw) = send(&api, Method::GET, "/session/dock/download", "application/json", request).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&raw));
    assert!(raw.windows(12).any(|w| w == b"HELLO DOCKER"), "the download carries the file the kernel wrote");

    // The agent puts the kernel's usage into the live state with its heartbeats.
    let session_id: backend_core::SessionId = created.body["sessionId"].as_str().unwrap().parse().unwrap();
    let kernel = stack.manager.store.kernels(session_id).await.unwrap().remove(0);
    let key = format!("kernel.{}.stats", kernel.id);
    let stats = wait_until("the kernel's stats in the live state", async || {
        stack.manager.live.stat(&key, chrono::Utc::now()).await.unwrap()
    })
    .await;
    assert!(stats["mem_bytes"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["mem_limit"].as_u64().unwrap() >= stats["mem_bytes"].as_u64().unwrap(), "{stats}");
    assert!(stats["pids"].as_u64().unwrap() >= 1, "{stats}");

    let gone = api.send(Method::DELETE, "/session/dock", None).await;
    assert!(gone.status < 300, "{}", gone.body);
    let info = api.send(Method::GET, "/session/dock", None).await;
    assert_eq!(info.body["status"], "TERMINATED", "{}", info.body);
    assert!(containers(dir.path()).is_empty(), "no container is left behind");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_session_survives_a_restart_of_the_stack() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_owned());
    let stack = start(dir.path(), true).await;
    let api = Api::new(&stack.endpoint, &stack.admin);
    let created = api.create(json!({"image": "python:3.11", "name": "lasting"})).await;
    assert_eq!(created.body["status"], "RUNNING", "{}", created.body);
    let (_, _, code) = api.run("lasting", "x = 41").await;
    assert_eq!(code, 0);
    stack.shutdown().await;
    assert_eq!(containers(dir.path()).len(), 1, "the container outlives the stack");

    let stack = start(dir.path(), false).await;
    let api = Api::new(&stack.endpoint, &stack.admin);
    let info = api.send(Method::GET, "/session/lasting", None).await;
    assert_eq!(info.body["status"], "RUNNING", "{}", info.body);
    let (out, err, code) = api.run("lasting", "print(x + 1)").await;
    assert_eq!((out.trim(), code), ("42", 0), "the interpreter's state survived: {err}");
    let gone = api.send(Method::DELETE, "/session/lasting", None).await;
    assert!(gone.status < 300, "{}", gone.body);
    assert!(containers(dir.path()).is_empty(), "no container is left behind");
    stack.shutdown().await;
}
