//! [`DomainStore`]: domains and the groups (projects) inside them.

use crate::error::Result;
use crate::model::{Domain, Group};

store_trait! {
    /// Domains and groups.
    pub trait DomainStore {
        /// Adds a domain. `AlreadyExists` when the name is taken (decided by the insert itself, so of concurrent
        /// inserts of one name exactly one succeeds).
        async fn insert_domain(&self, domain: &Domain) -> Result<()>;
        /// Creates or replaces a domain (a replaced one keeps its `created_at`).
        async fn put_domain(&self, domain: &Domain) -> Result<()>;
        /// A domain by name.
        async fn domain(&self, name: &str) -> Result<Option<Domain>>;
        /// Every domain, by name.
        async fn list_domains(&self) -> Result<Vec<Domain>>;
        /// Deletes a domain. `NotFound` when unknown, `Conflict` while it has groups or users.
        async fn delete_domain(&self, name: &str) -> Result<()>;

        /// Adds a group, keyed by domain and name. `AlreadyExists` when the domain has a group of that name (decided
        /// by the insert itself), `NotFound` when the domain is unknown.
        async fn insert_group(&self, group: &Group) -> Result<()>;
        /// Creates or replaces a group, keyed by domain and name (a replaced one keeps its `created_at`). `NotFound`
        /// when the domain is unknown.
        async fn put_group(&self, group: &Group) -> Result<()>;
        /// A group by domain and name.
        async fn group(&self, domain: &str, name: &str) -> Result<Option<Group>>;
        /// The groups of one domain, or of all, by domain then name.
        async fn list_groups(&self, domain: Option<&str>) -> Result<Vec<Group>>;
        /// Deletes a group. `NotFound` when unknown, `Conflict` while users belong to it or it owns virtual folders.
        async fn delete_group(&self, domain: &str, name: &str) -> Result<()>;
    }
}
