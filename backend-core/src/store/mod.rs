//! The metadata store: durable records of domains, groups, users, keypairs, resource policies, scaling groups,
//! agents, sessions, kernels and virtual folders, behind one trait per kind of record.
//!
//! [`MetadataStore`] is the sum of [`AccountStore`], [`DomainStore`], [`PolicyStore`], [`AgentStore`],
//! [`SessionStore`] and [`VFolderStore`]; callers hold an `Arc<dyn MetadataStore>` and bring the traits into scope
//! with `use backend_core::store::prelude::*`. Implementations: [`sqlite::SqliteStore`] (embedded, feature
//! `sqlite`) and `postgres::PostgresStore` (clusters, feature `postgres`). Every implementation must pass
//! [`crate::conformance::metadata_store`]. Decorators implement [`Delegate`] and get every trait by forwarding.

// First: the other modules declare their traits with its `store_trait!`.
#[macro_use]
mod delegate;

// Next: the store modules emit their rows with its `record_rows!`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[macro_use]
mod rows;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[macro_use]
mod queries;

mod account;
mod agent;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod changes;
mod domain;
pub mod faults;
pub mod fixtures;
mod policy;
#[cfg(feature = "postgres")]
pub mod postgres;
mod session;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod vfolder;

pub use account::AccountStore;
pub use agent::AgentStore;
pub use delegate::Delegate;
pub use domain::DomainStore;
pub use policy::PolicyStore;
pub use session::{
    Allocated, Allocation, KernelChange, KernelTransition, Placement, ScopeOccupancy, SessionChange, SessionFilter,
    SessionStore,
};
pub use vfolder::VFolderStore;

/// The store traits, for callers of an `Arc<dyn MetadataStore>` (a trait's methods need the trait in scope).
pub mod prelude {
    pub use super::{AccountStore, AgentStore, DomainStore, MetadataStore, PolicyStore, SessionStore, VFolderStore};
}

/// Durable metadata: every store trait. Every method is atomic: it either does all it says or nothing.
///
/// Invariant kept by every implementation: an agent's `occupied_slots` equal the sum of the `occupied_slots` of its
/// kernels, which are non-empty exactly while the kernel's status holds resources, and never exceed its
/// `available_slots` through [`SessionStore::allocate`].
///
/// Implemented for every type that implements the six traits.
pub trait MetadataStore: AccountStore + DomainStore + PolicyStore + AgentStore + SessionStore + VFolderStore {}

impl<T> MetadataStore for T where T: AccountStore + DomainStore + PolicyStore + AgentStore + SessionStore + VFolderStore {}
