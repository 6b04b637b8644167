//! Figures of the foundation, printed as a table (a bench binary, not a timed test):
//! - session create → RUNNING through the API, against spawning the same interpreter raw;
//! - `print(1)` round trip client → manager → agent → runner → back (p50, p99), against the runner alone;
//! - executions per second with 1, 8 and 64 sessions at once.
//!
//! `cargo bench --bench roundtrip` (set `BENCH_QUICK=1` for a short run).

#[path = "support/mod.rs"]
mod support;

use backend_client::{Client, ClientConfig};
use backend_core::api::CreateSessionRequest;
use backend_manager::standalone::{Standalone, StandaloneConfig};
use std::time::Instant;
use support::{query, row};

fn main() -> anyhow::Result<()> {
    // The process runtime may start this very executable as a kernel runner (before any async runtime exists).
    backend_agent::runner_entry::dispatch();
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let n = if quick { 50 } else { 1000 };
    let creates = if quick { 10 } else { 50 };

    let data = tempfile::tempdir()?;
    let mut config = StandaloneConfig::new(data.path());
    config.bind = "127.0.0.1:0".parse()?;
    config.capacity = Some(backend_core::ResourceSlots::from([("cpu", 1000.into()), ("mem", (1u64 << 40).into())]));
    let stack = Standalone::start(config).await?;
    let client = Client::new(ClientConfig::new(
        stack.endpoint.clone(),
        stack.admin.access_key.to_string(),
        stack.admin.secret_key.clone(),
    ))?;

    println!("| measurement | n | p50 ms | p99 ms |");
    println!("| --- | ---: | ---: | ---: |");

    // Baseline: spawning the interpreter the kernel runs (its real path, not a shim), to its first output.
    let python = std::process::Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output()?;
    let python = String::from_utf8(python.stdout)?.trim().to_owned();
    let mut raw = Vec::new();
    for _ in 0..creates {
        let t = Instant::now();
        let out = tokio::process::Command::new(&python).args(["-c", "print(1)"]).output().await?;
        assert!(out.status.success());
        raw.push(t.elapsed());
    }
    row("baseline: spawn python3 -c 'print(1)'", raw);

    let mut create = Vec::new();
    let mut first = Vec::new();
    let mut destroy = Vec::new();
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
        let t = Instant::now();
        client.destroy_session(&s.session_name, false).await?;
        destroy.push(t.elapsed());
    }
    row("session create -> RUNNING (process runtime)", create);
    row("session create -> first print(1) answered", first);
    row("session destroy", destroy);

    // Round trip on one session, and the runner alone (the agent's own connection, no HTTP) as the baseline.
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
    row("execute print(1): client -> manager -> agent -> runner", api);
    let kernel = stack.agent.kernels.handles()[0].kernel_id;
    let mut direct = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        stack.agent.execute(kernel, query("print(1)")).await?;
        direct.push(t.elapsed());
    }
    row("baseline: execute print(1) on the runner only", direct);
    client.destroy_session("bench-exec", false).await?;

    println!();
    println!("| concurrent sessions | executions | seconds | executions/s |");
    println!("| ---: | ---: | ---: | ---: |");
    for sessions in [1usize, 8, 64] {
        let names: Vec<String> = (0..sessions).map(|i| format!("bench-par-{sessions}-{i}")).collect();
        let starts = names.iter().map(|name| {
            let client = client.clone();
            let req =
                CreateSessionRequest { image: Some("python".into()), name: Some(name.clone()), ..Default::default() };
            async move { client.create_session(&req).await }
        });
        for r in futures::future::join_all(starts).await {
            assert_eq!(r?.status, "RUNNING");
        }
        // Warm up: the first execution of a session waits for its interpreter to start.
        for name in &names {
            client.execute(name, &query("print(1)")).await?;
        }
        let per_session = (n / sessions).max(20);
        let t = Instant::now();
        let runs = names.iter().map(|name| {
            let client = client.clone();
            async move {
                for _ in 0..per_session {
                    client.execute(name, &query("print(1)")).await?;
                }
                anyhow::Ok(())
            }
        });
        for r in futures::future::join_all(runs).await {
            r?;
        }
        let secs = t.elapsed().as_secs_f64();
        let total = per_session * sessions;
        println!("| {sessions} | {total} | {secs:.3} | {:.0} |", total as f64 / secs);
        for name in &names {
            client.destroy_session(name, false).await?;
        }
    }
    stack.shutdown().await;
    Ok(())
}
