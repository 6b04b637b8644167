//! The embedded metadata store: SQLite through diesel, in a file of the data directory or in memory.
//!
//! Diesel is synchronous, so the store holds one connection behind a mutex and runs every call on tokio's blocking
//! pool. Calls that write take SQLite's write lock up front (`BEGIN IMMEDIATE`), so two writers, in this process or
//! another one opening the same file, queue on the busy timeout instead of deadlocking on a lock upgrade.
//!
//! Storage conventions (see `migrations/sqlite`): timestamps are RFC 3339 text in UTC with six fractional digits,
//! so they sort as text and keep microsecond precision (a timestamp read back is the one written, truncated to the
//! microsecond); slots, images, environments and status histories are JSON text; statuses are their wire names.

mod account;
mod agent;
mod domain;
mod policy;
mod schema;
mod session;
mod vfolder;

use self::schema::*;
use super::rows::{failure_error, Failure};
use crate::error::{Error, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use uuid::Uuid;

/// The schema, compiled in so that opening a store brings any database file up to date.
const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");

/// How long a writer waits for another connection's write lock before giving up.
const BUSY_TIMEOUT_MS: u32 = 5_000;

/// The embedded [`MetadataStore`] on SQLite. Cloning shares the connection.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<SqliteConnection>>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it and its directory when missing) the database file at `path`, in WAL mode with foreign
    /// keys on, and applies the migrations it lacks.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let url = path.to_str().ok_or_else(|| Error::InvalidParams {
            msg: format!("database path {} is not valid UTF-8", path.display()),
        })?;
        let mut conn = SqliteConnection::establish(url)
            .map_err(|e| Error::internal(format!("opening sqlite database {}: {e}", path.display())))?;
        // The busy timeout comes first so that switching to WAL waits for another process holding the file.
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA foreign_keys = ON;"
        ))
        .map_err(|e| Error::internal(format!("configuring sqlite database {}: {e}", path.display())))?;
        Self::migrated(conn)
    }

    /// A fresh private database in memory (for tests and throwaway runs); it vanishes with the store.
    pub fn in_memory() -> Result<Self> {
        let mut conn = SqliteConnection::establish(":memory:")
            .map_err(|e| Error::internal(format!("opening in-memory sqlite database: {e}")))?;
        conn.batch_execute("PRAGMA foreign_keys = ON;")
            .map_err(|e| Error::internal(format!("configuring in-memory sqlite database: {e}")))?;
        Self::migrated(conn)
    }

    fn migrated(mut conn: SqliteConnection) -> Result<Self> {
        conn.run_pending_migrations(MIGRATIONS)
            .map_err(|e| Error::internal(format!("migrating the sqlite schema: {e}")))?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with_conn<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Tx<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let joined = tokio::task::spawn_blocking(move || {
            // A panic never leaves the mutex poisoned (see below), but a poisoned one would still hold a usable
            // connection.
            let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            match panic::catch_unwind(AssertUnwindSafe(|| f(&mut guard))) {
                Ok(result) => result.map_err(store_error),
                Err(payload) => {
                    // Roll back whatever transaction the panicking call left open, so the next call starts clean.
                    while AnsiTransactionManager::rollback_transaction(&mut *guard).is_ok() {}
                    drop(guard);
                    panic::resume_unwind(payload)
                }
            }
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(e) if e.is_panic() => panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Error::internal(format!("sqlite store task: {e}"))),
        }
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`); any error rolls everything back.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Tx<T> + Send + 'static,
    {
        self.with_conn(move |conn| conn.immediate_transaction(f)).await
    }

    /// Runs `f` in a read transaction, so that its queries see one snapshot.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Tx<T> + Send + 'static,
    {
        self.with_conn(move |conn| conn.transaction(f)).await
    }
}

/// The error a failed store call answers.
fn store_error(f: Failure) -> Error {
    failure_error(f, |e| Error::internal(format!("sqlite: {e}")))
}

fn corrupt(what: &str, value: &str, e: impl fmt::Display) -> Failure {
    Error::internal(format!("corrupt {what} {value:?} in the sqlite store: {e}")).into()
}

/// The one text form of a timestamp in this store.
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn time_of(s: String) -> Tx<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)).map_err(|e| corrupt("timestamp", &s, e))
}

/// Ids are kept as their hyphenated text.
fn uuid_col(id: Uuid) -> String {
    id.to_string()
}

fn uuid_of(what: &str, s: String) -> Tx<Uuid> {
    parse(what, &s)
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Tx<String> {
    serde_json::to_string(value).map_err(|e| Error::internal(format!("encoding a store column: {e}")).into())
}

fn from_json<T: DeserializeOwned>(what: &str, s: String) -> Tx<T> {
    serde_json::from_str(&s).map_err(|e| corrupt(what, &s, e))
}

record_rows!(backend: diesel::sqlite::Sqlite, uuid: String, time: String, json: String);
record_queries!(backend: diesel::sqlite::Sqlite, conn: SqliteConnection, uuid: String, async: [], await: [], seq: rowid);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AgentId;
    use crate::store::prelude::*;
    use chrono::SubsecRound;

    #[test]
    fn timestamps_sort_as_text_and_keep_microseconds() {
        let early = DateTime::parse_from_rfc3339("2025-01-02T03:04:05.123456789Z").unwrap().with_timezone(&Utc);
        let late = early + chrono::Duration::seconds(10);
        assert_eq!(ts(early), "2025-01-02T03:04:05.123456Z");
        assert!(ts(early) < ts(late));
        assert_eq!(time_of(ts(early)).unwrap(), early.trunc_subsecs(6));
    }

    #[test]
    fn migrations_revert_and_apply_again() {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        conn.batch_execute("PRAGMA foreign_keys = ON;").unwrap();
        let applied = conn.run_pending_migrations(MIGRATIONS).unwrap().len();
        assert_eq!(conn.revert_all_migrations(MIGRATIONS).unwrap().len(), applied, "every down migration runs");
        assert_eq!(conn.run_pending_migrations(MIGRATIONS).unwrap().len(), applied, "and every up one again");
    }

    #[tokio::test]
    async fn a_panicking_call_leaves_the_connection_usable() {
        let store = SqliteStore::in_memory().unwrap();
        let outcome = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .write(|conn| -> Tx<()> {
                        diesel::sql_query(
                            "INSERT INTO agents VALUES ('x','ALIVE','','','','{}','{}','[]',1,'','','t',NULL)",
                        )
                        .execute(conn)?;
                        panic!("boom")
                    })
                    .await
            }
        })
        .await;
        assert!(outcome.is_err(), "the panic reaches the caller");
        assert!(store.list_agents().await.unwrap().is_empty(), "the half-done write was rolled back");
        assert!(store.agent(&AgentId::from("x")).await.unwrap().is_none());
    }
}
