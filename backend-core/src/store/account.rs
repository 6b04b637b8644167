//! [`AccountStore`]: who may call the API, keypairs and the users they belong to.

use crate::error::Result;
use crate::ids::AccessKey;
use crate::model::{KeyPair, User};

store_trait! {
    /// Keypairs and users.
    pub trait AccountStore {
        /// Adds a keypair. `AlreadyExists` when the access key is taken.
        async fn insert_keypair(&self, keypair: &KeyPair) -> Result<()>;
        /// A keypair by access key.
        async fn keypair(&self, access_key: &AccessKey) -> Result<Option<KeyPair>>;
        /// Every keypair, oldest first.
        async fn list_keypairs(&self) -> Result<Vec<KeyPair>>;
        /// Activates or revokes a keypair. `NotFound` when unknown.
        async fn set_keypair_active(&self, access_key: &AccessKey, active: bool) -> Result<()>;

        /// Adds a user, keyed by e-mail, with its group memberships. `AlreadyExists` when the e-mail or the username
        /// is taken (decided by the insert itself, so of concurrent inserts of one user exactly one succeeds),
        /// `NotFound` when the domain or one of the groups (in that domain) is unknown.
        async fn insert_user(&self, user: &User) -> Result<()>;
        /// Creates or replaces a user, keyed by e-mail, with its group memberships (a replaced one keeps its
        /// `created_at`). `NotFound` when the domain or one of the groups (in that domain) is unknown,
        /// `AlreadyExists` when another user has the username.
        async fn put_user(&self, user: &User) -> Result<()>;
        /// A user by e-mail.
        async fn user(&self, email: &str) -> Result<Option<User>>;
        /// The users of one domain, or of all, by e-mail.
        async fn list_users(&self, domain: Option<&str>) -> Result<Vec<User>>;
        /// Deletes a user with its memberships and the shares it received. `NotFound` when unknown, `Conflict` while
        /// keypairs name it in `user_id` or it owns virtual folders (their files would be left without a record).
        async fn delete_user(&self, email: &str) -> Result<()>;
    }
}
