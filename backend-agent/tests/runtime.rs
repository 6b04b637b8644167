//! The process runtime passes the container-runtime conformance suite.

use backend_agent::runtime::process::{ProcessRuntime, ProcessRuntimeConfig, RunnerCommand};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_runtime_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ProcessRuntimeConfig::new(dir.path().join("kernels"));
    config.runner = RunnerCommand { program: env!("CARGO_BIN_EXE_backend-kernel-runner").into(), args: vec![] };
    let runtime = ProcessRuntime::new(config).unwrap();
    backend_core::conformance::container_runtime::run(&runtime).await;
    assert!(std::fs::read_dir(dir.path().join("kernels")).unwrap().next().is_none(), "no kernel directory left");
}

/// Kernels get their own cgroups with the requested limits where the machine allows creating them; elsewhere the
/// runtime says it has none (and kernels run with rlimits only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernels_get_cgroup_limits_where_allowed() {
    use backend_agent::runtime::cgroup::Cgroups;
    use backend_core::conformance::wait::wait_until;
    use backend_core::runner::{AgentCodec, BatchOptions, RunMode, RunnerEvent, RunnerRequest, Stream};
    use backend_core::runtime::{ContainerRuntime, KernelSpec, RunnerEndpoint};
    use futures::{SinkExt, StreamExt};

    let dir = tempfile::tempdir().unwrap();
    let mut config = ProcessRuntimeConfig::new(dir.path().join("kernels"));
    config.runner = RunnerCommand { program: env!("CARGO_BIN_EXE_backend-kernel-runner").into(), args: vec![] };
    let runtime = ProcessRuntime::new(config).unwrap();
    let writable = std::fs::create_dir_all("/sys/fs/cgroup/backend-ai-probe")
        .or_else(|_| std::fs::create_dir_all("/sys/fs/cgroup/memory/backend-ai-probe"))
        .is_ok();
    let _ = std::fs::remove_dir("/sys/fs/cgroup/backend-ai-probe");
    let _ = std::fs::remove_dir("/sys/fs/cgroup/memory/backend-ai-probe");
    let Some(cgroups) = runtime.cgroups().cloned() else {
        assert!(!writable, "cgroups are writable here, so kernels must get them");
        return;
    };

    let spec = KernelSpec::main(
        "AKIATEST",
        "python:3.11",
        backend_core::ResourceSlots::from([("cpu", rust_decimal::Decimal::new(5, 1)), ("mem", (128u64 << 20).into())]),
    );
    let handle = runtime.create_kernel(&spec).await.unwrap();
    let dirs = cgroups.dirs(spec.kernel_id);
    let read =
        |file: &str| dirs.iter().find_map(|d| std::fs::read_to_string(d.join(file)).ok()).map(|s| s.trim().to_owned());
    match &cgroups {
        Cgroups::V1 { .. } => {
            assert_eq!(read("memory.limit_in_bytes").as_deref(), Some("134217728"));
            assert_eq!(read("cpu.cfs_quota_us").as_deref(), Some("50000"));
        }
        Cgroups::V2 { .. } => {
            assert_eq!(read("memory.max").as_deref(), Some("134217728"));
            assert_eq!(read("cpu.max").as_deref(), Some("50000 100000"));
        }
    }

    // The interpreter (started by the runner after it joined) is in the kernel's group.
    let RunnerEndpoint::Unix(path) = &handle.endpoint;
    let stream = wait_until("the runner to listen", async || tokio::net::UnixStream::connect(path).await.ok()).await;
    let mut conn = tokio_util::codec::Framed::new(stream, AgentCodec::default());
    let run_id = "r1".to_owned();
    let code = "print(open('/proc/self/cgroup').read())".to_owned();
    conn.send(RunnerRequest::Execute {
        run_id: run_id.clone(),
        mode: RunMode::Query,
        code,
        options: BatchOptions::default(),
        timeout_ms: None,
    })
    .await
    .unwrap();
    let mut out = String::new();
    while let Some(Ok(ev)) = conn.next().await {
        match ev {
            RunnerEvent::Output { stream: Stream::Stdout, data, .. } => out.push_str(&data),
            RunnerEvent::Finished { .. } => break,
            _ => {}
        }
    }
    assert!(out.contains(&spec.kernel_id.to_string()), "{out}");

    runtime.destroy_kernel(spec.kernel_id, true).await.unwrap();
    assert!(dirs.iter().all(|d| !d.exists()), "the kernel's cgroups are removed with it");
}
