//! The cluster metadata store: PostgreSQL through diesel-async (tokio-postgres, no libpq) and a deadpool pool.
//!
//! Every call runs in one transaction on a pooled connection. Writes that move resources take row locks in one
//! global order, session, then its kernels, then agents sorted by id, so that any number of managers sharing the
//! database serialize on the rows they touch and never deadlock: [`MetadataStore::allocate`] re-reads each agent
//! with `SELECT ... FOR UPDATE` before checking its room, and a kernel giving its slots back locks its agent the same
//! way. Transactions run at READ COMMITTED (a locked row is always read at its latest committed version); reads
//! that issue several queries run as one REPEATABLE READ, READ ONLY snapshot. A transaction the server aborts as a
//! deadlock or serialization failure is retried a few times.
//!
//! Storage conventions (see `migrations/postgres`): ids are `uuid` (agents keep their text ids); timestamps are
//! `timestamptz`, written truncated to the microsecond, so a timestamp read back is the one written, truncated to
//! the microsecond; slots, images, environments and status histories are `jsonb`, slot amounts being the decimal
//! strings [`ResourceSlots`] serializes (exact round trips); statuses are their wire names.
//!
//! Connecting does not touch the schema: call [`PostgresStore::migrate`] (the manager's `schema migrate`), or
//! [`PostgresStore::connect_and_migrate`].

use self::schema::*;
use super::rows::{failure_error, Failure};
use crate::error::{Error, Result};
use chrono::{DateTime, SubsecRound, Utc};
use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::prelude::{ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::upsert::excluded;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::{AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection, TransactionManager};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;
use uuid::Uuid;

/// The schema, compiled in; [`PostgresStore::migrate`] applies what a database lacks.
const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// The advisory lock that keeps two managers from migrating one database at the same time.
const MIGRATION_LOCK: i64 = 0x6261_695f_6d69_6772; // "bai_migr"

/// How many times a transaction aborted by a deadlock or a serialization failure runs.
const MAX_ATTEMPTS: u32 = 5;

/// How long a call waits for a pooled connection before reporting the database unavailable.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(30);

/// The [`crate::store::MetadataStore`] on PostgreSQL, for clusters of managers. Cloning shares the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool<AsyncPgConnection>,
    /// The URL without its password, for messages.
    shown_url: String,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore").field("url", &self.shown_url).finish_non_exhaustive()
    }
}

/// `url` without the password of its user-info part.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

impl PostgresStore {
    /// A pool of at most `pool_size` connections (at least one) to the database at `url`
    /// (`postgres://user:password@host:port/database`), checked by opening one connection. The schema is left
    /// alone. `Unavailable` when the server cannot be reached or refuses the login.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Self> {
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .build()
            .map_err(|e| Error::internal(format!("building the postgres pool: {e}")))?;
        let store = Self { pool, shown_url: redact(url) };
        drop(store.checkout().await?);
        Ok(store)
    }

    /// [`PostgresStore::connect`], then [`PostgresStore::migrate`].
    pub async fn connect_and_migrate(url: &str, pool_size: usize) -> Result<Self> {
        let store = Self::connect(url, pool_size).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the embedded migrations the database lacks, oldest first, each in its own transaction, and returns
    /// the versions applied (empty when the schema is current). Two managers migrating at once take turns.
    pub async fn migrate(&self) -> Result<Vec<String>> {
        self.with_harness(|conn| {
            let applied = conn.run_pending_migrations(MIGRATIONS)?;
            Ok(applied.into_iter().map(|v| v.to_string()).collect())
        })
        .await
        .map_err(|e| Error::internal(format!("migrating the postgres schema: {e}")))
    }

    /// Every embedded migration, oldest first, as its version and whether the database has it applied.
    pub async fn migration_status(&self) -> Result<Vec<(String, bool)>> {
        self.with_harness(|conn| {
            let applied: BTreeSet<String> = conn.applied_migrations()?.into_iter().map(|v| v.to_string()).collect();
            let mut known: Vec<String> = MigrationSource::<Pg>::migrations(&MIGRATIONS)?
                .iter()
                .map(|m| m.name().version().to_string())
                .collect();
            known.sort();
            Ok(known.into_iter().map(|v| (v.clone(), applied.contains(&v))).collect())
        })
        .await
        .map_err(|e| Error::internal(format!("reading the postgres migration status: {e}")))
    }

    /// Runs diesel's synchronous migration harness on a connection taken out of the pool, on the blocking pool
    /// (which works under either tokio runtime flavour), holding the migration advisory lock.
    async fn with_harness<T, F>(&self, f: F) -> std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>
    where
        T: Send + 'static,
        F: FnOnce(&mut AsyncConnectionWrapper<AsyncPgConnection>) -> diesel::migration::Result<T> + Send + 'static,
    {
        let conn = Object::take(self.checkout().await?);
        tokio::task::spawn_blocking(move || {
            let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
            SimpleConnection::batch_execute(&mut conn, &format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
            let out = f(&mut conn);
            // The connection is dropped next, which would release the lock too.
            let _ = SimpleConnection::batch_execute(&mut conn, &format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
            out
        })
        .await?
    }

    async fn checkout(&self) -> Result<Object<AsyncPgConnection>> {
        let unavailable =
            |e: &dyn fmt::Display| Error::Unavailable { msg: format!("postgres at {}: {e}", self.shown_url) };
        match tokio::time::timeout(CHECKOUT_TIMEOUT, self.pool.get()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(unavailable(&e)),
            Err(_) => Err(unavailable(&format!("no connection within {CHECKOUT_TIMEOUT:?}"))),
        }
    }
}

/// Runs `$body` (an async block using the connection `$conn`) in a transaction on a pooled connection: committed
/// when it returns `Ok`, rolled back otherwise, and run again from the start when the server aborted it as a
/// deadlock or serialization failure. `Read` transactions are one REPEATABLE READ, READ ONLY snapshot; a
/// `Statement` body runs without a transaction around it.
macro_rules! transaction {
    ($store:expr, $mode:expr, |$conn:ident| $body:expr) => {{
        let mut attempt = 1;
        loop {
            let mut pooled = $store.checkout().await?;
            let $conn: &mut AsyncPgConnection = &mut pooled;
            let outcome: Tx<_> = match begin($conn, $mode).await {
                Err(e) => Err(e.into()),
                Ok(false) => $body.await,
                Ok(true) => match $body.await {
                    Ok(value) => AnsiTransactionManager::commit_transaction($conn)
                        .await
                        .map(|()| value)
                        .map_err(Failure::from),
                    Err(failure) => {
                        if let Err(e) = AnsiTransactionManager::rollback_transaction($conn).await {
                            tracing::warn!(error = %e, "rolling back a postgres transaction");
                        }
                        Err(failure)
                    }
                },
            };
            match outcome {
                Err(Failure::Db(e)) if attempt < MAX_ATTEMPTS && retryable(&e) => {
                    tracing::debug!(attempt, error = %e, "retrying a postgres transaction");
                    drop(pooled);
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                    attempt += 1;
                }
                other => break other.map_err(store_error),
            }
        }
    }};
}

// After `transaction!`, which they use.
mod account;
mod agent;
mod domain;
mod policy;
mod schema;
mod session;
mod vfolder;

/// How a transaction starts.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// READ COMMITTED, with explicit row locks where it matters.
    Write,
    /// One snapshot for several queries.
    Read,
    /// One statement, atomic by itself: no BEGIN, SET TRANSACTION and COMMIT round trips around it.
    Statement,
}

/// Opens the transaction `mode` asks for; answers whether it did.
async fn begin(conn: &mut AsyncPgConnection, mode: Mode) -> diesel::QueryResult<bool> {
    if let Mode::Statement = mode {
        return Ok(false);
    }
    AnsiTransactionManager::begin_transaction(conn).await?;
    if let Mode::Read = mode {
        conn.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?;
    }
    Ok(true)
}

/// Whether the server aborted the transaction for a reason that running it again can cure.
fn retryable(e: &DieselError) -> bool {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        DieselError::DatabaseError(_, info) => info.message().contains("deadlock detected"),
        _ => false,
    }
}

/// The error a failed store call answers.
fn store_error(f: Failure) -> Error {
    failure_error(f, |e| match e {
        // Only a concurrent writer gets here: the store checks references before it deletes or refers.
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
            Error::Conflict { msg: info.message().to_owned() }
        }
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
            Error::Unavailable { msg: format!("postgres: {}", info.message()) }
        }
        e => Error::internal(format!("postgres: {e}")),
    })
}

fn corrupt(what: &str, value: &str, e: impl fmt::Display) -> Failure {
    Error::internal(format!("corrupt {what} {value:?} in the postgres store: {e}")).into()
}

/// A timestamp as this store keeps it: whole microseconds, truncated (PostgreSQL itself would round).
fn ts(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

fn time_of(t: DateTime<Utc>) -> Tx<DateTime<Utc>> {
    Ok(t)
}

/// Ids are `uuid` columns.
fn uuid_col(id: Uuid) -> Uuid {
    id
}

fn uuid_of(_what: &str, id: Uuid) -> Tx<Uuid> {
    Ok(id)
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Tx<Value> {
    serde_json::to_value(value).map_err(|e| Error::internal(format!("encoding a store column: {e}")).into())
}

fn from_json<T: DeserializeOwned>(what: &str, value: Value) -> Tx<T> {
    serde_json::from_value(value.clone()).map_err(|e| corrupt(what, &value.to_string(), e))
}

record_rows!(backend: Pg, uuid: Uuid, time: DateTime<Utc>, json: Value);
record_queries!(backend: Pg, conn: AsyncPgConnection, uuid: Uuid, async: [async], await: [.await], seq: seq);

/// Whether a read takes the row lock (`FOR UPDATE`) until the transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    No,
    ForUpdate,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slots::ResourceSlots;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(redact("postgres://backend:secret@127.0.0.1:15432/db"), "postgres://backend:***@127.0.0.1:15432/db");
        assert_eq!(redact("postgres://backend@host/db"), "postgres://backend:***@host/db");
        assert_eq!(redact("postgres://host/db"), "postgres://host/db");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn timestamps_are_truncated_to_the_microsecond() {
        let t = DateTime::parse_from_rfc3339("2025-01-02T03:04:05.123456789Z").unwrap().with_timezone(&Utc);
        assert_eq!(ts(t).to_rfc3339(), "2025-01-02T03:04:05.123456+00:00");
    }

    #[test]
    fn slots_round_trip_through_json_exactly() {
        let slots = ResourceSlots::from_pairs([("cpu", "0.333333333333333333"), ("mem", "17179869184")]).unwrap();
        let back: ResourceSlots = from_json("slots", to_json(&slots).unwrap()).unwrap();
        assert_eq!(back, slots);
    }
}
