//! Scratch PostgreSQL databases for tests and benchmarks of code that runs on the PostgreSQL store.
//!
//! The server comes from `BACKEND_AI_TEST_POSTGRES` (default: the one `bash scripts/services.sh` starts, role
//! `backend`, which may create databases). An unreachable server panics with a message saying so: tests that need
//! PostgreSQL fail, they are never skipped.

use crate::store::postgres::PostgresStore;
use crate::store::{Delegate, MetadataStore};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

/// The server `scripts/services.sh` starts.
pub const DEFAULT_URL: &str = "postgres://backend:backend@127.0.0.1:15432/backend";

/// The test server's URL: `BACKEND_AI_TEST_POSTGRES`, or [`DEFAULT_URL`].
pub fn server_url() -> String {
    std::env::var("BACKEND_AI_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let scheme_end = before_query.find("://").map_or(0, |i| i + 3);
    let host_part = match before_query[scheme_end..].find('/') {
        Some(slash) => &before_query[..scheme_end + slash],
        None => before_query,
    };
    match query {
        Some(query) => format!("{host_part}/{database}?{query}"),
        None => format!("{host_part}/{database}"),
    }
}

/// A fresh, empty database on the test server, dropped (best effort, even after a panic) with this value.
pub struct ScratchDatabase {
    base: String,
    name: String,
    /// Its URL.
    pub url: String,
}

impl ScratchDatabase {
    /// Creates a database named `<prefix>_<random>`. Panics when the server cannot be reached.
    pub async fn create(prefix: &str) -> Self {
        let base = server_url();
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut admin = AsyncPgConnection::establish(&base).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is unreachable at {base} ({e}). Start it with `bash scripts/services.sh`, or point \
                 BACKEND_AI_TEST_POSTGRES at a server whose role may create databases."
            )
        });
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("creating database {name} at {base}: {e}"));
        let url = with_database(&base, &name);
        Self { base, name, url }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // The caller's runtime may be gone or busy: drop the database from a runtime of our own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut admin = AsyncPgConnection::establish(&base).await.ok()?;
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop scratch database {}", self.name);
        }
    }
}

/// A migrated [`PostgresStore`] on a [`ScratchDatabase`] of its own, which lives as long as the store: a store for
/// one test (it implements the store traits by handing every call to the [`PostgresStore`]).
pub struct ScratchStore {
    store: PostgresStore,
    // Dropped after the store's pool, which the drop of the database forces closed anyway.
    _db: ScratchDatabase,
}

impl ScratchStore {
    /// A fresh database named `<prefix>_<random>`, migrated, with a pool of `pool_size` connections. Panics when the
    /// server cannot be reached or the migrations fail.
    pub async fn create(prefix: &str, pool_size: usize) -> Self {
        let db = ScratchDatabase::create(prefix).await;
        let store = PostgresStore::connect_and_migrate(&db.url, pool_size)
            .await
            .unwrap_or_else(|e| panic!("migrating scratch database {}: {e}", db.name));
        Self { store, _db: db }
    }

    /// The store itself.
    pub fn store(&self) -> &PostgresStore {
        &self.store
    }
}

impl Delegate for ScratchStore {
    fn delegate(&self, _method: &'static str) -> crate::Result<&dyn MetadataStore> {
        Ok(&self.store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_rewritten() {
        assert_eq!(with_database("postgres://u:p@h:1/backend", "t_x"), "postgres://u:p@h:1/t_x");
        assert_eq!(
            with_database("postgres://u:p@h:1/backend?sslmode=disable", "t_x"),
            "postgres://u:p@h:1/t_x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u:p@h:1", "t_x"), "postgres://u:p@h:1/t_x");
    }
}
