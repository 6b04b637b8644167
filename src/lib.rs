//! Facade for the Backend.AI server side in Rust: re-exports the SDK crates so an application can depend on one.
//!
//! - [`core`]: domain types, traits, algorithms and embedded backends.
//! - [`manager`]: the manager service (REST API, scheduler, agent registry).
//! - [`agent`]: the agent service (kernel runtimes, RPC API, heartbeats).
//! - [`client`]: the typed client.

pub use backend_agent as agent;
pub use backend_client as client;
pub use backend_core as core;
pub use backend_manager as manager;
