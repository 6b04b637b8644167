//! [`PolicyStore`]: the resource policies that bound what an owner may use.

use crate::error::Result;
use crate::model::KeyPairResourcePolicy;

store_trait! {
    /// Keypair resource policies.
    pub trait PolicyStore {
        /// Adds a keypair resource policy. `AlreadyExists` when the name is taken (decided by the insert itself).
        async fn insert_resource_policy(&self, policy: &KeyPairResourcePolicy) -> Result<()>;
        /// Creates or replaces a keypair resource policy (a replaced one keeps its `created_at`).
        async fn put_resource_policy(&self, policy: &KeyPairResourcePolicy) -> Result<()>;
        /// A keypair resource policy by name.
        async fn resource_policy(&self, name: &str) -> Result<Option<KeyPairResourcePolicy>>;
        /// Every keypair resource policy, by name.
        async fn list_resource_policies(&self) -> Result<Vec<KeyPairResourcePolicy>>;
        /// Deletes a keypair resource policy. `NotFound` when unknown, `Conflict` while keypairs name it in
        /// `resource_policy`.
        async fn delete_resource_policy(&self, name: &str) -> Result<()>;
    }
}
