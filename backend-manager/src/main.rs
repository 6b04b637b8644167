//! `backend-manager`: the standalone server and keypair administration.

use anyhow::Context;
use backend_core::auth::generate_keypair;
use backend_core::model::{KeyPair, Role};
use backend_core::store::sqlite::SqliteStore;
use backend_core::store::MetadataStore;
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
    /// Manage keypairs.
    #[command(subcommand)]
    Keypair(KeypairCommand),
}

#[derive(Subcommand)]
enum KeypairCommand {
    /// Create a keypair and print it.
    Create {
        /// Make it an admin keypair.
        #[arg(long)]
        admin: bool,
        /// The owning user.
        #[arg(long, default_value = "user@example.com")]
        user: String,
        /// Requests per 15 minutes.
        #[arg(long, default_value_t = 30_000)]
        rate_limit: u32,
    },
    /// List keypairs (secrets are not shown).
    List,
    /// Revoke a keypair.
    Revoke {
        /// Its access key.
        access_key: String,
    },
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
        Command::Keypair(cmd) => {
            std::fs::create_dir_all(&cli.data_dir)?;
            let store = SqliteStore::open(&cli.data_dir.join("metadata.db")).context("opening the store")?;
            match cmd {
                KeypairCommand::Create { admin, user, rate_limit } => {
                    let (ak, sk) = generate_keypair();
                    let kp = KeyPair {
                        access_key: ak.into(),
                        secret_key: sk,
                        user_id: user,
                        role: if admin { Role::Admin } else { Role::User },
                        is_active: true,
                        rate_limit,
                        resource_policy: "default".into(),
                        created_at: chrono::Utc::now(),
                    };
                    store.insert_keypair(&kp).await?;
                    println!("access_key: {}\nsecret_key: {}\nrole: {}", kp.access_key, kp.secret_key, kp.role);
                }
                KeypairCommand::List => {
                    println!("{:<20} {:<10} {:<6} {:<10} user", "access_key", "role", "active", "rate_limit");
                    for kp in store.list_keypairs().await? {
                        println!(
                            "{:<22} {:<11} {:<7} {:<10} {}",
                            kp.access_key, kp.role, kp.is_active, kp.rate_limit, kp.user_id
                        );
                    }
                }
                KeypairCommand::Revoke { access_key } => {
                    store.set_keypair_active(&access_key.as_str().into(), false).await?;
                    println!("revoked {access_key}");
                }
            }
        }
    }
    Ok(())
}
