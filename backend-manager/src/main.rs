//! `backend-manager`: the standalone server and administration of the embedded store.

mod admin_cli;

use backend_manager::standalone::{Standalone, StandaloneConfig};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "Backend.AI manager (Rust)")]
struct Cli {
    /// Data directory of the embedded store.
    #[arg(long, env = "BACKENDAI_DATA_DIR", default_value = "./data", global = true)]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a manager and an agent in one process on the embedded defaults.
    Standalone {
        /// Address of the public API.
        #[arg(long, env = "BACKENDAI_BIND", default_value = "127.0.0.1:8081")]
        bind: SocketAddr,
    },
    /// Administration on the embedded store: domain, group, user, policy, scaling-group, keypair.
    #[command(flatten)]
    Admin(admin_cli::AdminCommand),
}

fn main() -> std::process::ExitCode {
    // The process runtime may start this very executable as a kernel runner (before any async runtime exists).
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
    let cli = Cli::parse();
    match cli.command {
        Command::Standalone { bind } => {
            let mut config = StandaloneConfig::new(&cli.data_dir);
            config.bind = bind;
            let stack = Standalone::start(config).await?;
            println!("Backend.AI standalone manager at {}", stack.endpoint);
            println!("Admin credentials (mode 0600): {}", stack.credentials_file.display());
            println!("Use them with: source {}", stack.credentials_file.display());
            tokio::signal::ctrl_c().await?;
            stack.shutdown().await;
        }
        Command::Admin(cmd) => admin_cli::run(&cli.data_dir, cmd).await?,
    }
    Ok(())
}
