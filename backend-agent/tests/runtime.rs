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
