//! The subcommands of `backend-manager` and their bodies: the standalone server, a clustered manager, the storage
//! proxy, schema and shared-configuration tools, and administration of the metadata store ([`admin`]).

pub mod admin;

use crate::cluster::ManagerSettings;
use crate::standalone::{Standalone, StandaloneConfig};
use anyhow::Context;
use backend_client::cli::admin::{AdminCommand, KeypairCommand};
use backend_core::config::ConfigStore;
use backend_core::model::Role;
use backend_core::store::MetadataStore;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The command line of `backend-manager`.
#[derive(Parser)]
#[command(version, about = "Backend.AI manager (Rust)")]
pub struct Cli {
    /// Data directory of the embedded store (standalone mode, and administration without --config).
    #[arg(long, env = "BACKENDAI_DATA_DIR", default_value = "./data", global = true)]
    data_dir: PathBuf,
    /// Cluster settings file (manager.toml): PostgreSQL, Redis, etcd. Administration commands then work on
    /// PostgreSQL instead of the embedded store.
    #[arg(long, short = 'f', env = "BACKENDAI_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Overrides one setting: `--set db.pool_size=32` (after the file and the BACKENDAI_* environment).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE", global = true)]
    overrides: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Run a manager and an agent in one process on the embedded defaults.
    Standalone {
        /// Address of the public API.
        #[arg(long, env = "BACKENDAI_BIND", default_value = "127.0.0.1:8081")]
        bind: SocketAddr,
        /// Where kernels run: `process` (local processes) or `docker` (containers of the images
        /// scripts/build-kernel-images.sh builds).
        #[arg(long, env = "BACKENDAI_RUNTIME", default_value = "process")]
        runtime: backend_agent::runtime::RuntimeKind,
    },
    /// Run a clustered manager on PostgreSQL, Redis and etcd (settings: --config, BACKENDAI_*, --set).
    Serve,
    /// Serve only the vfolder transfer endpoints (uploads, downloads), e.g. on a storage machine; volumes and the
    /// token secret come from the same settings and config store as `serve`.
    StorageProxy {
        /// Address to listen on.
        #[arg(long, env = "BACKENDAI_STORAGE_PROXY_BIND", default_value = "0.0.0.0:6021")]
        bind: SocketAddr,
    },
    /// The PostgreSQL schema.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Default records (domain, group, scaling group, resource policy, admin keypair) in PostgreSQL.
    #[command(subcommand)]
    Fixtures(FixturesCommand),
    /// The shared configuration in etcd.
    #[command(subcommand, name = "config")]
    SharedConfig(ConfigCommand),
    /// Administration of the metadata store: domain, group, user, policy, scaling-group, keypair.
    #[command(flatten)]
    Admin(AdminCommand),
}

/// `schema ...`
#[derive(Subcommand)]
pub enum SchemaCommand {
    /// Apply pending migrations (the first start of a cluster; safe to repeat).
    Migrate,
    /// List every migration and whether it is applied.
    Status,
}

/// `fixtures ...`
#[derive(Subcommand)]
pub enum FixturesCommand {
    /// Create the default records that are missing and print an admin keypair.
    Load,
}

/// `config ...`
#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Load a TOML file into etcd: `[config.redis] url = "..."` becomes `config/redis/url`.
    Load {
        /// The TOML file.
        file: PathBuf,
    },
    /// Print one key's value.
    Get {
        /// The key, relative to the namespace (`config/redis/url`).
        key: String,
    },
    /// Set one key.
    Put {
        /// The key, relative to the namespace.
        key: String,
        /// Its value.
        value: String,
    },
    /// Print every key under a prefix (all by default).
    Dump {
        /// The prefix.
        #[arg(default_value = "")]
        prefix: String,
    },
}

/// Runs a parsed command line to its end.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let settings = || ManagerSettings::load(cli.config.as_deref(), &cli.overrides);
    match cli.command {
        Command::Standalone { bind, runtime } => {
            let mut config = StandaloneConfig::new(&cli.data_dir);
            config.bind = bind;
            config.runtime = runtime;
            let stack = Standalone::start(config).await?;
            println!("Backend.AI standalone manager at {}", stack.endpoint);
            println!("Admin credentials (mode 0600): {}", stack.credentials_file.display());
            println!("Use them with: source {}", stack.credentials_file.display());
            tokio::signal::ctrl_c().await?;
            stack.shutdown().await;
        }
        Command::Serve => crate::cluster::serve(&settings()?, terminated()).await?,
        Command::StorageProxy { bind } => crate::cluster::serve_storage_proxy(&settings()?, bind, terminated()).await?,
        Command::Schema(cmd) => {
            let settings = settings()?;
            let store = settings.connect_db(&settings.connect_etcd().await?).await?;
            match cmd {
                SchemaCommand::Migrate => {
                    let applied = store.migrate().await?;
                    println!("applied {} migration(s){}", applied.len(), listed(&applied));
                }
                SchemaCommand::Status => {
                    for (version, applied) in store.migration_status().await? {
                        println!("{} {version}", if applied { "applied" } else { "pending" });
                    }
                }
            }
        }
        Command::Fixtures(FixturesCommand::Load) => {
            let settings = settings()?;
            let store = settings.connect_db(&settings.connect_etcd().await?).await?;
            backend_core::store::fixtures::ensure_defaults(&store).await?;
            let admin = "admin@lablup.com";
            backend_core::store::fixtures::ensure_user(&store, admin, backend_core::model::Role::Superadmin).await?;
            let create = KeypairCommand::Create {
                user: admin.into(),
                role: Role::Admin,
                rate_limit: 30_000,
                policy: "default".into(),
            };
            admin::run(&store, AdminCommand::Keypair(create)).await?;
        }
        Command::SharedConfig(cmd) => {
            let shared = settings()?.connect_etcd().await?;
            match cmd {
                ConfigCommand::Load { file } => {
                    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
                    let values = backend_core::config::flatten_toml(&text)?;
                    for (key, value) in &values {
                        shared.put(key, value).await?;
                    }
                    println!("loaded {} key(s) from {}", values.len(), file.display());
                }
                ConfigCommand::Get { key } => match shared.get(&key).await? {
                    Some(value) => println!("{value}"),
                    None => anyhow::bail!("no such key: {key}"),
                },
                ConfigCommand::Put { key, value } => shared.put(&key, &value).await?,
                ConfigCommand::Dump { prefix } => {
                    for (key, value) in shared.get_prefix(&prefix).await? {
                        println!("{key} = {value}");
                    }
                }
            }
        }
        Command::Admin(cmd) => match &cli.config {
            Some(_) => {
                let settings = settings()?;
                let store = settings.connect_db(&settings.connect_etcd().await?).await?;
                admin::run(&store as &dyn MetadataStore, cmd).await?
            }
            None => admin::run(&admin::open_embedded(&cli.data_dir)?, cmd).await?,
        },
    }
    Ok(())
}

fn listed(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!(": {}", items.join(", "))
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
