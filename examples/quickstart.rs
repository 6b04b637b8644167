//! The README's first command: a standalone manager and agent in this process, a Python session that runs two cells
//! sharing state, every status transition with its time, and the session destroyed.
//!
//! `cargo run --release --example quickstart` (`BACKENDAI_RUNTIME=docker` runs the kernels as containers of the images
//! `scripts/build-kernel-images.sh` builds).

use backend_client::{Client, ClientConfig};
use backend_core::api::{ConsoleItem, CreateSessionRequest, SessionInfo};
use backend_manager::standalone::{Standalone, StandaloneConfig};
use std::time::Instant;

fn show_history(info: &SessionInfo) {
    let Some(start) = info.status_history.0.first().map(|c| c.at) else { return };
    for change in &info.status_history.0 {
        let ms = (change.at - start).num_microseconds().unwrap_or(0) as f64 / 1000.0;
        println!("    {:>9.1} ms  {}", ms, change.status);
    }
}

fn main() -> anyhow::Result<()> {
    // The process runtime may start this very executable as a kernel runner (before any async runtime exists).
    backend_agent::runner_entry::dispatch();
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let mut config = StandaloneConfig::new(data.path());
    config.bind = "127.0.0.1:0".parse()?;
    if let Ok(runtime) = std::env::var("BACKENDAI_RUNTIME") {
        config.runtime = runtime.parse()?;
    }
    let stack = Standalone::start(config).await?;
    println!("standalone manager at {} (credentials in {})", stack.endpoint, stack.credentials_file.display());

    let client = Client::new(ClientConfig::new(
        stack.endpoint.clone(),
        stack.admin.access_key.to_string(),
        stack.admin.secret_key.clone(),
    ))?;
    let t = Instant::now();
    let request = CreateSessionRequest {
        image: Some("python:3.11".into()),
        name: Some("quickstart".into()),
        ..Default::default()
    };
    let created = client.create_session(&request).await?;
    println!(
        "\ncreated session {} ({}) in {:.1} ms: {}",
        created.session_name,
        created.session_id,
        t.elapsed().as_secs_f64() * 1e3,
        created.status
    );

    let mut no_input = |_: &str| None;
    for cell in ["greeting = 'Hello from a persistent interpreter'\nx = 6", "print(greeting, x * 7)"] {
        println!("\n>>> {}", cell.replace('\n', "\n... "));
        let t = Instant::now();
        let code = client
            .run_code(
                &created.session_name,
                cell,
                |item| match item {
                    ConsoleItem::Stdout(s) => print!("{s}"),
                    ConsoleItem::Stderr(s) => eprint!("{s}"),
                    _ => {}
                },
                &mut no_input,
            )
            .await?;
        println!("[exit code {code}, {:.1} ms]", t.elapsed().as_secs_f64() * 1e3);
    }

    let t = Instant::now();
    client.destroy_session(&created.session_name, false).await?;
    println!("\ndestroyed in {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    let info = client.session_info(&created.session_name).await?;
    println!("status history of {}:", info.session_name);
    show_history(&info);
    stack.shutdown().await;
    Ok(())
}
