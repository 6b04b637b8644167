//! The core of a Rust implementation of the Backend.AI server side.
//!
//! It holds what the manager, the agent and the client share, and nothing that serves HTTP or parses a command
//! line:
//! - domain and wire types: [`ids`], [`slots`], [`status`], [`model`], [`api`], [`runner`];
//! - the one error type and error-kind table: [`error`];
//! - request signing: [`auth`];
//! - the plug points, each a trait with an embedded implementation and a [`conformance`] suite:
//!   [`store::MetadataStore`] (the sum of one trait per kind of record), [`events::EventBus`], [`live::LiveState`],
//!   [`config::ConfigStore`], [`runtime::ContainerRuntime`], [`scheduler::Sequencer`] /
//!   [`scheduler::AgentSelector`], [`storage::StorageBackend`].
//!
//! ```no_run
//! use backend_core::store::{prelude::*, sqlite::SqliteStore};
//! # async fn demo() -> backend_core::Result<()> {
//! let store = SqliteStore::in_memory()?;
//! let agents = store.list_agents().await?;
//! assert!(agents.is_empty());
//! # Ok(()) }
//! ```

pub mod accelerator;
pub mod api;
pub mod auth;
pub mod config;
pub mod conformance;
pub mod error;
pub mod events;
pub mod ids;
pub mod live;
pub mod model;
pub mod query;
pub mod runner;
pub mod runtime;
pub mod scheduler;
pub mod settings;
pub mod slots;
pub mod status;
pub mod storage;
pub mod store;
pub mod vfolder;

pub use error::{Error, ErrorKind, Problem, Result};
pub use ids::{AccessKey, AgentId, InvitationId, KernelId, SessionId, VFolderId};
pub use slots::ResourceSlots;
pub use status::{KernelStatus, SessionStatus};
