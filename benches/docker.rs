//! Figures of the Docker runtime, printed as a table (a bench binary, not a timed test), each beside its baseline
//! measured in the same run:
//! - session create → RUNNING through the standalone stack's API, against a raw bollard create + start of the same
//!   image (the least any Docker-backed session can cost);
//! - `print(1)` round trip on a Docker session, against `docker exec <container> python3 -c 'print(1)'`.
//!
//! Needs a Docker daemon and the images of `scripts/build-kernel-images.sh`.
//! `cargo bench --bench docker` (set `BENCH_QUICK=1` for a short run).

#[path = "support/mod.rs"]
mod support;

use backend_client::{Client, ClientConfig};
use backend_core::api::CreateSessionRequest;
use backend_core::runtime::docker::bollard;
use backend_core::runtime::docker::{DockerRuntime, DockerRuntimeConfig};
use backend_manager::standalone::{Standalone, StandaloneConfig};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::RemoveContainerOptionsBuilder;
use std::time::Instant;
use support::{query, row};

fn main() -> anyhow::Result<()> {
    // The Docker runtime may bind-mount this very executable as the kernel runner.
    backend_agent::runner_entry::dispatch();
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let creates = if quick { 5 } else { 30 };
    let n = if quick { 50 } else { 500 };
    let execs = if quick { 10 } else { 50 };

    let data = tempfile::tempdir()?;
    let mut config = StandaloneConfig::new(data.path());
    config.bind = "127.0.0.1:0".parse()?;
    config.capacity = Some(backend_core::ResourceSlots::from([("cpu", 1000.into()), ("mem", (1u64 << 40).into())]));
    config.runtime = backend_agent::runtime::RuntimeKind::Docker;
    let stack = Standalone::start(config).await?;
    let client = Client::new(ClientConfig::new(
        stack.endpoint.clone(),
        stack.admin.access_key.to_string(),
        stack.admin.secret_key.clone(),
    ))?;
    // The same client the runtime uses, for the baseline.
    let probe = tempfile::tempdir()?;
    let docker = DockerRuntime::connect(DockerRuntimeConfig::new(probe.path(), std::env::current_exe()?)).await?;
    let docker = docker.client().clone();

    println!("| measurement (Docker runtime) | n | p50 ms | p99 ms |");
    println!("| --- | ---: | ---: | ---: |");

    // Raw create + start without a network, and on a user-defined bridge network as the kernels get (one per
    // owner, made once; the session path reuses its owner's network too).
    let bridge = "backendai-bench-raw";
    let _ = docker.remove_network(bridge).await;
    docker
        .create_network(bollard::models::NetworkCreateRequest {
            name: bridge.into(),
            driver: Some("bridge".into()),
            ..Default::default()
        })
        .await?;
    for (label, network) in [
        ("baseline: raw bollard create + start (same image, no network)", "none"),
        ("baseline: raw bollard create + start (same image, bridge)", bridge),
    ] {
        let mut raw = Vec::new();
        for _ in 0..creates {
            let body = ContainerCreateBody {
                image: Some("backendai/python:3.11".into()),
                cmd: Some(vec!["sleep".into(), "60".into()]),
                host_config: Some(HostConfig { network_mode: Some(network.into()), ..Default::default() }),
                ..Default::default()
            };
            let t = Instant::now();
            let created = docker.create_container(None, body).await?;
            docker.start_container(&created.id, None).await?;
            raw.push(t.elapsed());
            let force = RemoveContainerOptionsBuilder::new().force(true).build();
            docker.remove_container(&created.id, Some(force)).await?;
        }
        row(label, raw);
    }
    let _ = docker.remove_network(bridge).await;

    let mut create = Vec::new();
    let mut first = Vec::new();
    for i in 0..creates {
        let req = CreateSessionRequest {
            image: Some("python".into()),
            name: Some(format!("bench-create-{i}")),
            ..Default::default()
        };
        let t = Instant::now();
        let s = client.create_session(&req).await?;
        create.push(t.elapsed());
        assert_eq!(s.status, "RUNNING");
        client.execute(&s.session_name, &query("print(1)")).await?;
        first.push(t.elapsed());
        client.destroy_session(&s.session_name, false).await?;
    }
    row("session create -> RUNNING (Docker, through the API)", create);
    row("session create -> first print(1) answered", first);

    let req =
        CreateSessionRequest { image: Some("python".into()), name: Some("bench-exec".into()), ..Default::default() };
    client.create_session(&req).await?;
    for _ in 0..20 {
        client.execute("bench-exec", &query("print(1)")).await?;
    }
    let mut api = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = client.execute("bench-exec", &query("print(1)")).await?;
        api.push(t.elapsed());
        assert_eq!(r.exit_code, Some(0));
    }
    row("execute print(1) on a Docker session (API round trip)", api);
    let container = stack.agent.kernels.handles()[0].container_id.clone();
    let mut exec = Vec::with_capacity(execs);
    for _ in 0..execs {
        let t = Instant::now();
        let out = tokio::process::Command::new("docker")
            .args(["exec", &container, "python3", "-c", "print(1)"])
            .output()
            .await?;
        exec.push(t.elapsed());
        assert!(out.status.success() && out.stdout == b"1\n");
    }
    row("baseline: docker exec <container> python3 -c 'print(1)'", exec);
    client.destroy_session("bench-exec", false).await?;
    stack.shutdown().await;
    Ok(())
}
