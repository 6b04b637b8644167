//! The Docker runtime against the real engine: the container-runtime conformance suite, resource limits really
//! applied (memory in the kernel's cgroup, OOM reported), the kernel's user, isolation between kernels, re-attachment
//! by a fresh runtime instance, and cleanup.
//!
//! Needs a reachable Docker daemon and the kernel images of `scripts/build-kernel-images.sh`; these tests fail (they
//! do not skip) when either is missing. The kernel runner binary is `$BACKENDAI_KERNEL_RUNNER`, else it is built
//! (`cargo build -p backend-agent --bin backend-kernel-runner`) into the workspace's target directory.
#![cfg(feature = "docker")]

use backend_core::error::ErrorKind;
use backend_core::ids::KernelId;
use backend_core::runner::{AgentCodec, BatchOptions, RunMode, RunnerEvent, RunnerRequest, Stream};
use backend_core::runtime::docker::{DockerRuntime, DockerRuntimeConfig, KernelNetwork, LABEL_KERNEL_ID};
use backend_core::runtime::{ContainerRuntime, KernelHandle, KernelSpec, RunnerEndpoint};
use backend_core::ResourceSlots;
use futures::{SinkExt, StreamExt};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::net::UnixStream;
use tokio_util::codec::Framed;

const WAIT: Duration = Duration::from_secs(60);
const HINT: &str = "the Docker tests need a running Docker daemon and the kernel images: run \
                    `sudo scripts/build-kernel-images.sh` first";

/// The host-built kernel runner to bind-mount (built once per test run so it is never stale).
fn runner() -> PathBuf {
    static RUNNER: OnceLock<PathBuf> = OnceLock::new();
    RUNNER
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("BACKENDAI_KERNEL_RUNNER") {
                return p.into();
            }
            let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
            let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or(workspace.join("target"));
            let status = std::process::Command::new(option_env!("CARGO").unwrap_or("cargo"))
                .args(["build", "-q", "-p", "backend-agent", "--bin", "backend-kernel-runner"])
                .current_dir(&workspace)
                .status()
                .expect("running cargo to build the kernel runner");
            let built = target.join("debug").join("backend-kernel-runner");
            // A tree that does not build right now (work in progress elsewhere) still has the last runner.
            assert!(status.success() || built.is_file(), "building backend-kernel-runner failed");
            built
        })
        .clone()
}

/// Removes a test's containers when it ends, passed or not.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(root) = std::fs::canonicalize(&self.0) else { return };
        let filter = format!("label=ai.backend.rs.root={}", root.display());
        let Ok(out) = std::process::Command::new("docker").args(["ps", "-aq", "--filter", &filter]).output() else {
            return;
        };
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker").args(["rm", "-f"]).args(&ids).output();
        }
    }
}

async fn runtime_at(root: &std::path::Path, network: KernelNetwork) -> DockerRuntime {
    let mut config = DockerRuntimeConfig::new(root, runner());
    config.network = network;
    // Removed with their last kernel, so that no test leaves a network behind.
    config.network_linger = std::time::Duration::ZERO;
    let rt = DockerRuntime::connect(config).await.unwrap_or_else(|e| panic!("{HINT}: {e}"));
    let names: Vec<String> =
        rt.images().await.unwrap_or_else(|e| panic!("{HINT}: {e}")).into_iter().map(|i| i.name).collect();
    for wanted in ["python:3.11", "shell:latest"] {
        assert!(names.iter().any(|n| n == wanted), "{HINT}: image {wanted} missing (have {names:?})");
    }
    rt
}

fn spec(image: &str, owner: &str, mem: u64) -> KernelSpec {
    KernelSpec::main(owner, image, ResourceSlots::from([("cpu", 1.into()), ("mem", mem.into())]))
}

struct Conn(Framed<UnixStream, AgentCodec>);

impl Conn {
    async fn open(handle: &KernelHandle) -> Self {
        let RunnerEndpoint::Unix(path) = &handle.endpoint;
        let stream = UnixStream::connect(path).await.expect("the runner listens once create_kernel returns");
        let mut conn = Framed::new(stream, AgentCodec::default());
        match tokio::time::timeout(WAIT, conn.next()).await.expect("ready in time").expect("open").expect("frame") {
            RunnerEvent::Ready { .. } => Conn(conn),
            other => panic!("expected Ready, got {other:?}"),
        }
    }

    /// Runs code to its end: (stdout + stderr, exit code), or None when the connection ends first.
    async fn run(&mut self, code: &str) -> Option<(String, i32)> {
        let run_id = uuid::Uuid::new_v4().to_string();
        let req = RunnerRequest::Execute {
            run_id: run_id.clone(),
            mode: RunMode::Query,
            code: code.into(),
            options: BatchOptions::default(),
            timeout_ms: None,
        };
        self.0.send(req).await.ok()?;
        let mut out = String::new();
        loop {
            match tokio::time::timeout(WAIT, self.0.next()).await.expect("event in time")? {
                Ok(RunnerEvent::Output { data, stream: Stream::Stdout | Stream::Stderr, .. }) => out.push_str(&data),
                Ok(RunnerEvent::Finished { run_id: r, exit_code }) if r == run_id => return Some((out, exit_code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    async fn output(&mut self, code: &str) -> String {
        let (out, exit) = self.run(code).await.expect("the run finishes");
        assert_eq!(exit, 0, "{code:?} failed: {out}");
        out.trim().to_owned()
    }
}

async fn containers_of(rt: &DockerRuntime, id: KernelId) -> usize {
    let filters = HashMap::from([("label", vec![format!("{LABEL_KERNEL_ID}={id}")])]);
    let options = bollard::query_parameters::ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    rt.client().list_containers(Some(options)).await.expect("list containers").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_runtime_passes_the_conformance_suite() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(root.path().to_owned());
    let rt = runtime_at(root.path(), KernelNetwork::PerOwner).await;
    backend_core::conformance::container_runtime::run(&rt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_is_applied_and_exceeding_it_is_reported_as_oom() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(root.path().to_owned());
    let rt = runtime_at(root.path(), KernelNetwork::None).await;
    let spec = spec("python", "AKIAOOMTEST", 128 << 20);
    let handle = rt.create_kernel(&spec).await.expect("create");
    let mut conn = Conn::open(&handle).await;
    let cg = "/sys/fs/cgroup/memory/memory";
    let limit = conn.output(&format!("print(open('{cg}.limit_in_bytes').read())")).await;
    assert_eq!(limit, (128u64 << 20).to_string(), "the kernel's cgroup carries its memory limit");
    let swap = conn
        .output(&format!(
            "import os\nf='{cg}.memsw.limit_in_bytes'\nprint(open(f).read() if os.path.exists(f) else 'none')"
        ))
        .await;
    assert!(swap == "none" || swap == (128u64 << 20).to_string(), "no swap beyond the limit: {swap}");
    let stats = rt.stats(spec.kernel_id).await.expect("stats");
    assert_eq!(stats.mem_limit, 128 << 20);
    assert!(stats.mem_bytes > 0 && stats.pids > 0, "{stats:?}");

    // Touch more than the limit (bytes multiplication writes every page).
    let _ = conn.run("hog = b'x' * (512 << 20)\nprint(len(hog))").await;
    let exit =
        tokio::time::timeout(WAIT, rt.wait_kernel(spec.kernel_id)).await.expect("the kernel ends").expect("wait");
    assert_eq!(exit.reason, "oom-killed", "{exit:?}");
    rt.destroy_kernel(spec.kernel_id, true).await.expect("destroy after OOM");
    assert_eq!(containers_of(&rt, spec.kernel_id).await, 0);
}

/// `KernelSpec::shmem` (the session's `config.resource_opts.shmem`) sizes the container's `/dev/shm`; without it the
/// runtime's default (64 MiB, Docker's and Backend.AI's) holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_memory_follows_the_spec() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(root.path().to_owned());
    let rt = runtime_at(root.path(), KernelNetwork::None).await;
    let size = "import os\ns = os.statvfs('/dev/shm')\nprint(s.f_blocks * s.f_frsize)";
    let sized = KernelSpec { shmem: Some(32 << 20), ..spec("python", "AKIASHMTEST", 256 << 20) };
    let handle = rt.create_kernel(&sized).await.expect("create");
    assert_eq!(Conn::open(&handle).await.output(size).await, (32u64 << 20).to_string());
    let default = spec("python", "AKIASHMTEST", 256 << 20);
    let handle = rt.create_kernel(&default).await.expect("create");
    assert_eq!(Conn::open(&handle).await.output(size).await, (64u64 << 20).to_string());
    for id in [sized.kernel_id, default.kernel_id] {
        rt.destroy_kernel(id, true).await.expect("destroy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernels_run_unprivileged_and_cannot_see_each_other() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(root.path().to_owned());
    let rt = runtime_at(root.path(), KernelNetwork::PerOwner).await;
    let a = spec("python:3.11", "AKIAOWNERA", 256 << 20);
    let mut b = spec("python:3.11", "AKIAOWNERB", 256 << 20);
    b.cluster_hostname = "kernel-b".into();
    let (ha, hb) = tokio::join!(rt.create_kernel(&a), rt.create_kernel(&b));
    let (ha, hb) = (ha.expect("create a"), hb.expect("create b"));
    let (mut ca, mut cb) = (Conn::open(&ha).await, Conn::open(&hb).await);

    assert_eq!(ca.output("import os\nprint(os.getuid(), os.getgid(), os.getcwd())").await, "1000 1000 /home/work");
    assert_eq!(cb.output("import socket\nprint(socket.gethostname())").await, "kernel-b");
    let caps = ca.output("print([l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0])").await;
    assert_eq!(caps, "0000000000000000", "no capabilities");
    let nnp =
        ca.output("print([l.split()[1] for l in open('/proc/self/status') if l.startswith('NoNewPrivs')][0])").await;
    assert_eq!(nnp, "1");

    // A's file is in A's work directory on the host (file transfers) and nowhere in B.
    ca.output("open('/home/work/secret.txt', 'w').write('only a')").await;
    let host_file = rt.work_dir(a.kernel_id).unwrap().join("secret.txt");
    assert_eq!(std::fs::read_to_string(&host_file).unwrap(), "only a");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&host_file).unwrap()), 1000);
    let seen = cb
        .output("import os\nprint(any('secret.txt' in fs for _, _, fs in os.walk('/', onerror=lambda e: None)))")
        .await;
    assert_eq!(seen, "False", "kernel B cannot find kernel A's file");

    // Owners are on separate networks: B cannot connect to a port A listens on.
    let a_ip = ca
        .output(
            "import socket, threading\nsrv = socket.socket(); srv.bind(('0.0.0.0', 7777)); srv.listen()\n\
             threading.Thread(target=lambda: [srv.accept() for _ in range(10)], daemon=True).start()\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(('10.255.255.255', 1))\n\
             print(s.getsockname()[0])",
        )
        .await;
    let probe = format!(
        "import socket\ns = socket.socket(); s.settimeout(2)\ntry:\n    s.connect(('{a_ip}', 7777)); print('reached')\n\
         except OSError as e:\n    print('unreachable')"
    );
    assert_eq!(cb.output(&probe).await, "unreachable", "another owner's kernel is unreachable");
    let a2 = spec("python:3.11", "AKIAOWNERA", 256 << 20);
    let h2 = rt.create_kernel(&a2).await.expect("create a2");
    let mut c2 = Conn::open(&h2).await;
    assert_eq!(c2.output(&probe).await, "reached", "the same owner's kernels share a network");

    for id in [a.kernel_id, b.kernel_id, a2.kernel_id] {
        rt.destroy_kernel(id, false).await.expect("destroy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_runtime_reattaches_and_destroy_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(root.path().to_owned());
    let first = runtime_at(root.path(), KernelNetwork::None).await;
    let spec = spec("shell", "AKIAREATTACH", 128 << 20);
    let handle = first.create_kernel(&spec).await.expect("create");
    let mut conn = Conn::open(&handle).await;
    conn.output("echo state > /home/work/kept").await;
    drop(conn);
    drop(first);

    // As after an agent restart: a new instance finds the kernel by its labels and talks to it again.
    let second = runtime_at(root.path(), KernelNetwork::None).await;
    let listed = second.list_kernels().await.expect("list");
    let found = listed.iter().find(|h| h.kernel_id == spec.kernel_id).expect("the kernel is listed");
    assert_eq!(found.endpoint, handle.endpoint);
    let mut conn = Conn::open(found).await;
    assert_eq!(conn.output("cat /home/work/kept").await, "state");

    // Restart keeps the work directory.
    let restarted = second.restart_kernel(&spec).await.expect("restart");
    assert_ne!(restarted.container_id, handle.container_id);
    let mut conn = Conn::open(&restarted).await;
    assert_eq!(conn.output("cat /home/work/kept").await, "state");

    let exit = second.destroy_kernel(spec.kernel_id, false).await.expect("destroy");
    assert_eq!(exit.reason, "user-requested");
    assert_eq!(containers_of(&second, spec.kernel_id).await, 0, "no container is left behind");
    assert!(!root.path().join(spec.kernel_id.to_string()).exists(), "no directory is left behind");
    assert_eq!(second.destroy_kernel(spec.kernel_id, true).await.unwrap_err().kind(), ErrorKind::KernelNotFound);
    assert_eq!(second.wait_kernel(spec.kernel_id).await.unwrap_err().kind(), ErrorKind::KernelNotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_are_swept_after_the_grace_period() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(root.path().to_owned());
    let rt = runtime_at(root.path(), KernelNetwork::None).await;
    let kept = spec("shell", "AKIASWEEP", 64 << 20);
    let orphan = spec("shell", "AKIASWEEP", 64 << 20);
    rt.create_kernel(&kept).await.expect("create");
    rt.create_kernel(&orphan).await.expect("create");
    let known = HashSet::from([kept.kernel_id]);
    assert!(rt.sweep_orphans(&known, Duration::from_secs(3600)).await.unwrap().is_empty(), "young kernels stay");
    let removed = rt.sweep_orphans(&known, Duration::ZERO).await.unwrap();
    assert_eq!(removed, vec![orphan.kernel_id]);
    assert_eq!(containers_of(&rt, orphan.kernel_id).await, 0);
    assert_eq!(containers_of(&rt, kept.kernel_id).await, 1);
    rt.destroy_kernel(kept.kernel_id, true).await.expect("destroy");
}

/// An accelerator plugin's `--gpus "device=..."` reaches Docker as a device request: on a host without an NVIDIA
/// container runtime Docker refuses to start such a container (and nothing of the kernel is left), while arguments
/// Docker cannot take are refused before anything is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_arguments_become_a_device_request() {
    let root = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(root.path().to_owned());
    let rt = runtime_at(root.path(), KernelNetwork::None).await;
    let odd = KernelSpec { container_args: vec!["--privileged".into()], ..spec("python", "AKIAGPUTEST", 256 << 20) };
    assert!(matches!(rt.create_kernel(&odd).await, Err(backend_core::Error::InvalidParams { .. })));
    assert!(!root.path().join(odd.kernel_id.to_string()).exists());
    if std::process::Command::new("nvidia-smi").output().is_ok_and(|o| o.status.success()) {
        return; // A GPU host would start it; this checks the refusal a GPU-less Docker gives.
    }
    let gpu = KernelSpec {
        container_args: vec!["--gpus".into(), "\"device=0\"".into()],
        ..spec("python", "AKIAGPUTEST", 256 << 20)
    };
    let err = rt.create_kernel(&gpu).await.expect_err("no GPU driver here");
    let text = err.to_string().to_lowercase();
    assert!(text.contains("gpu") || text.contains("device"), "Docker names the device request: {err}");
    assert!(!root.path().join(gpu.kernel_id.to_string()).exists(), "nothing of the kernel is left");
    assert!(rt.list_kernels().await.unwrap().iter().all(|h| h.kernel_id != gpu.kernel_id));
}
