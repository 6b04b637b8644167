//! Conformance suites: one public module per trait. Every implementation of a trait runs its suite (the embedded
//! ones in this crate's tests, the real backends in theirs); a suite panics with a message on the first failure.

pub mod config_store;
pub mod container_runtime;
pub mod event_bus;
pub mod live_state;
pub mod metadata_store;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod scheduler;
pub mod storage;
pub mod wait;
