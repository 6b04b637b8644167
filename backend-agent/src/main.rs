//! `backend-agent`: an agent of a cluster (settings: agent.toml, BACKENDAI_* environment, --set).

use backend_agent::cluster::AgentSettings;
use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "Backend.AI agent (Rust)")]
struct Cli {
    /// Settings file (agent.toml).
    #[arg(long, short = 'f', env = "BACKENDAI_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides one setting: `--set agent.id=gpu-1` (after the file and the BACKENDAI_* environment).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
    /// Accelerator devices: `none`, `mock:N` (N fake GPUs) or `nvidia`; short for `--set agent.accelerator=...`.
    #[arg(long, value_name = "none|mock:N|nvidia")]
    accelerator: Option<String>,
}

fn main() -> std::process::ExitCode {
    // The process runtime starts this very executable as a kernel runner (before any async runtime exists).
    backend_agent::runner_entry::dispatch();
    let result = tokio::runtime::Runtime::new().map_err(anyhow::Error::from).and_then(|rt| rt.block_on(run()));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let mut cli = Cli::parse();
    if let Some(accelerator) = cli.accelerator.take() {
        cli.overrides.push(format!("agent.accelerator={accelerator}"));
    }
    let settings = AgentSettings::load(cli.config.as_deref(), &cli.overrides)?;
    backend_agent::cluster::serve(&settings, terminated()).await
}

/// Resolves on SIGINT or SIGTERM.
async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
