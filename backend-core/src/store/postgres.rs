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

mod admin;
mod schema;
mod vfolder;

use self::schema::{agents, kernels, keypairs, sessions};
use super::{
    changes, Allocated, Allocation, KernelChange, KernelTransition, MetadataStore, ScopeOccupancy, SessionChange,
    SessionFilter,
};
use crate::error::{Error, Result};
use crate::ids::{AccessKey, AgentId, InvitationId, KernelId, SessionId, VFolderId};
use crate::model::{
    AgentHeartbeat, AgentInfo, AgentStatus, Domain, Group, KernelRecord, KeyPair, KeyPairResourcePolicy, ScalingGroup,
    SessionRecord, SessionResult, User,
};
use crate::slots::ResourceSlots;
use crate::status::{KernelStatus, SessionStatus};
use crate::vfolder::{InvitationState, VFolder, VFolderAccess, VFolderInvitation, VFolderPermission};
use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::prelude::{
    AsChangeset, ExpressionMethods, Insertable, OptionalExtension, QueryDsl, Queryable, Selectable, SelectableHelper,
};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{Array, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::upsert::excluded;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::{AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection, TransactionManager};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
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

/// The [`MetadataStore`] on PostgreSQL, for clusters of managers. Cloning shares the pool.
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
                other => break other.map_err(Error::from),
            }
        }
    }};
}

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

/// A failure inside a store call: the database's, or a domain error that must roll the transaction back too.
#[derive(Debug)]
enum Failure {
    Db(DieselError),
    Domain(Error),
}

type Tx<T> = std::result::Result<T, Failure>;

impl From<DieselError> for Failure {
    fn from(e: DieselError) -> Self {
        Failure::Db(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Domain(e)
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Domain(e) => e,
            Failure::Db(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)) => {
                Error::AlreadyExists { msg: info.message().to_owned() }
            }
            // Only a concurrent writer gets here: the store checks references before it deletes or refers.
            Failure::Db(DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info)) => {
                Error::Conflict { msg: info.message().to_owned() }
            }
            Failure::Db(DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info)) => {
                Error::Unavailable { msg: format!("postgres: {}", info.message()) }
            }
            Failure::Db(e) => Error::internal(format!("postgres: {e}")),
        }
    }
}

/// Maps a unique violation to `AlreadyExists` naming `what`.
fn taken(what: impl FnOnce() -> String) -> impl FnOnce(DieselError) -> Failure {
    move |e| match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            Error::AlreadyExists { msg: what() }.into()
        }
        other => other.into(),
    }
}

fn corrupt(what: &str, value: &str, e: impl fmt::Display) -> Failure {
    Error::internal(format!("corrupt {what} {value:?} in the postgres store: {e}")).into()
}

/// A timestamp as this store keeps it: whole microseconds, truncated (PostgreSQL itself would round).
fn ts(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Tx<Value> {
    serde_json::to_value(value).map_err(|e| Error::internal(format!("encoding a store column: {e}")).into())
}

fn from_json<T: DeserializeOwned>(what: &str, value: Value) -> Tx<T> {
    serde_json::from_value(value.clone()).map_err(|e| corrupt(what, &value.to_string(), e))
}

fn parse<T: FromStr>(what: &str, s: &str) -> Tx<T>
where
    T::Err: fmt::Display,
{
    s.parse().map_err(|e| corrupt(what, s, e))
}

fn to_u32(what: &str, n: i64) -> Tx<u32> {
    u32::try_from(n).map_err(|e| corrupt(what, &n.to_string(), e))
}

/// Wire names of the statuses matching `pred`.
fn kernel_statuses(pred: impl Fn(KernelStatus) -> bool) -> Vec<&'static str> {
    KernelStatus::ALL.into_iter().filter(|s| pred(*s)).map(KernelStatus::as_str).collect()
}

fn final_session_statuses() -> Vec<&'static str> {
    SessionStatus::ALL.into_iter().filter(|s| s.is_final()).map(SessionStatus::as_str).collect()
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = keypairs, check_for_backend(Pg))]
struct KeyPairRow {
    access_key: String,
    secret_key: String,
    user_id: String,
    role: String,
    is_active: bool,
    rate_limit: i64,
    resource_policy: String,
    created_at: DateTime<Utc>,
}

impl KeyPairRow {
    fn from_model(k: &KeyPair) -> Self {
        Self {
            access_key: k.access_key.0.clone(),
            secret_key: k.secret_key.clone(),
            user_id: k.user_id.clone(),
            role: k.role.as_str().to_owned(),
            is_active: k.is_active,
            rate_limit: i64::from(k.rate_limit),
            resource_policy: k.resource_policy.clone(),
            created_at: ts(k.created_at),
        }
    }

    fn into_model(self) -> Tx<KeyPair> {
        Ok(KeyPair {
            role: parse("role", &self.role)?,
            rate_limit: to_u32("rate limit", self.rate_limit)?,
            created_at: self.created_at,
            access_key: AccessKey(self.access_key),
            secret_key: self.secret_key,
            user_id: self.user_id,
            is_active: self.is_active,
            resource_policy: self.resource_policy,
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = agents, check_for_backend(Pg))]
struct AgentRow {
    id: String,
    status: String,
    addr: String,
    scaling_group: String,
    architecture: String,
    available_slots: Value,
    occupied_slots: Value,
    images: Value,
    schedulable: bool,
    runtime: String,
    version: String,
    first_contact: DateTime<Utc>,
    lost_at: Option<DateTime<Utc>>,
}

impl AgentRow {
    fn into_model(self) -> Tx<AgentInfo> {
        Ok(AgentInfo {
            status: parse("agent status", &self.status)?,
            available_slots: from_json("available slots", self.available_slots)?,
            occupied_slots: from_json("occupied slots", self.occupied_slots)?,
            images: from_json("images", self.images)?,
            first_contact: self.first_contact,
            lost_at: self.lost_at,
            id: AgentId(self.id),
            addr: self.addr,
            scaling_group: self.scaling_group,
            architecture: self.architecture,
            schedulable: self.schedulable,
            runtime: self.runtime,
        })
    }
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = sessions, treat_none_as_null = true, check_for_backend(Pg))]
struct SessionRow {
    id: Uuid,
    name: String,
    access_key: String,
    domain_name: String,
    group_name: String,
    session_type: String,
    image: String,
    cluster_size: i64,
    status: String,
    status_info: Option<String>,
    status_history: Value,
    requested_slots: Value,
    environ: Value,
    tag: Option<String>,
    scaling_group: String,
    priority: i32,
    startup_command: Option<String>,
    result: String,
    created_at: DateTime<Utc>,
    terminated_at: Option<DateTime<Utc>>,
    starts_at: Option<DateTime<Utc>>,
    dependencies: Value,
    designated_agents: Value,
    architecture: Option<String>,
    bootstrap_script: Option<String>,
    batch_timeout: Option<i64>,
    shmem: Option<i64>,
    vfolder_mounts: Value,
}

impl SessionRow {
    fn from_model(s: &SessionRecord) -> Tx<Self> {
        Ok(Self {
            id: s.id.0,
            name: s.name.clone(),
            access_key: s.access_key.0.clone(),
            domain_name: s.domain.clone(),
            group_name: s.group.clone(),
            session_type: s.session_type.as_str().to_owned(),
            image: s.image.clone(),
            cluster_size: i64::from(s.cluster_size),
            status: s.status.as_str().to_owned(),
            status_info: s.status_info.clone(),
            status_history: to_json(&s.status_history)?,
            requested_slots: to_json(&s.requested_slots)?,
            environ: to_json(&s.environ)?,
            tag: s.tag.clone(),
            scaling_group: s.scaling_group.clone(),
            priority: s.priority,
            startup_command: s.startup_command.clone(),
            result: s.result.as_str().to_owned(),
            created_at: ts(s.created_at),
            terminated_at: s.terminated_at.map(ts),
            starts_at: s.starts_at.map(ts),
            dependencies: to_json(&s.dependencies)?,
            designated_agents: to_json(&s.designated_agents)?,
            architecture: s.architecture.clone(),
            bootstrap_script: s.bootstrap_script.clone(),
            batch_timeout: s.batch_timeout.map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
            shmem: s.shmem.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
            vfolder_mounts: to_json(&s.vfolder_mounts)?,
        })
    }

    fn into_model(self) -> Tx<SessionRecord> {
        Ok(SessionRecord {
            id: SessionId(self.id),
            session_type: parse("session type", &self.session_type)?,
            cluster_size: to_u32("cluster size", self.cluster_size)?,
            status: parse("session status", &self.status)?,
            status_history: from_json("status history", self.status_history)?,
            requested_slots: from_json("requested slots", self.requested_slots)?,
            environ: from_json::<BTreeMap<String, String>>("environ", self.environ)?,
            result: parse::<SessionResult>("session result", &self.result)?,
            created_at: self.created_at,
            terminated_at: self.terminated_at,
            starts_at: self.starts_at,
            dependencies: from_json("dependencies", self.dependencies)?,
            designated_agents: from_json("designated agents", self.designated_agents)?,
            architecture: self.architecture,
            bootstrap_script: self.bootstrap_script,
            batch_timeout: self.batch_timeout.and_then(|t| u64::try_from(t).ok()),
            shmem: self.shmem.and_then(|b| u64::try_from(b).ok()),
            vfolder_mounts: from_json("vfolder mounts", self.vfolder_mounts)?,
            name: self.name,
            access_key: AccessKey(self.access_key),
            domain: self.domain_name,
            group: self.group_name,
            image: self.image,
            status_info: self.status_info,
            tag: self.tag,
            scaling_group: self.scaling_group,
            priority: self.priority,
            startup_command: self.startup_command,
        })
    }
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = kernels, treat_none_as_null = true, check_for_backend(Pg))]
struct KernelRow {
    id: Uuid,
    session_id: Uuid,
    access_key: String,
    cluster_role: String,
    cluster_idx: i64,
    cluster_hostname: String,
    image: String,
    agent_id: Option<String>,
    agent_addr: Option<String>,
    container_id: Option<String>,
    status: String,
    status_info: Option<String>,
    status_history: Value,
    requested_slots: Value,
    occupied_slots: Value,
    exit_code: Option<i32>,
    created_at: DateTime<Utc>,
    terminated_at: Option<DateTime<Utc>>,
}

impl KernelRow {
    fn from_model(k: &KernelRecord) -> Tx<Self> {
        Ok(Self {
            id: k.id.0,
            session_id: k.session_id.0,
            access_key: k.access_key.0.clone(),
            cluster_role: k.cluster_role.clone(),
            cluster_idx: i64::from(k.cluster_idx),
            cluster_hostname: k.cluster_hostname.clone(),
            image: k.image.clone(),
            agent_id: k.agent_id.as_ref().map(|a| a.0.clone()),
            agent_addr: k.agent_addr.clone(),
            container_id: k.container_id.clone(),
            status: k.status.as_str().to_owned(),
            status_info: k.status_info.clone(),
            status_history: to_json(&k.status_history)?,
            requested_slots: to_json(&k.requested_slots)?,
            occupied_slots: to_json(&k.occupied_slots)?,
            exit_code: k.exit_code,
            created_at: ts(k.created_at),
            terminated_at: k.terminated_at.map(ts),
        })
    }

    fn into_model(self) -> Tx<KernelRecord> {
        Ok(KernelRecord {
            id: KernelId(self.id),
            session_id: SessionId(self.session_id),
            cluster_idx: to_u32("cluster index", self.cluster_idx)?,
            status: parse("kernel status", &self.status)?,
            status_history: from_json("status history", self.status_history)?,
            requested_slots: from_json("requested slots", self.requested_slots)?,
            occupied_slots: from_json("occupied slots", self.occupied_slots)?,
            created_at: self.created_at,
            terminated_at: self.terminated_at,
            access_key: AccessKey(self.access_key),
            cluster_role: self.cluster_role,
            cluster_hostname: self.cluster_hostname,
            image: self.image,
            agent_id: self.agent_id.map(AgentId),
            agent_addr: self.agent_addr,
            container_id: self.container_id,
            status_info: self.status_info,
            exit_code: self.exit_code,
        })
    }
}

/// Whether a read takes the row lock (`FOR UPDATE`) until the transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    No,
    ForUpdate,
}

async fn load_session(conn: &mut AsyncPgConnection, id: SessionId, lock: Lock) -> Tx<Option<SessionRecord>> {
    let query = sessions::table.find(id.0).select(SessionRow::as_select());
    let row = match lock {
        Lock::No => query.first(conn).await.optional()?,
        Lock::ForUpdate => query.for_update().first(conn).await.optional()?,
    };
    row.map(SessionRow::into_model).transpose()
}

async fn load_kernel(conn: &mut AsyncPgConnection, id: KernelId, lock: Lock) -> Tx<Option<KernelRecord>> {
    let query = kernels::table.find(id.0).select(KernelRow::as_select());
    let row = match lock {
        Lock::No => query.first(conn).await.optional()?,
        Lock::ForUpdate => query.for_update().first(conn).await.optional()?,
    };
    row.map(KernelRow::into_model).transpose()
}

/// The main kernel first, then by role and index.
fn sort_kernels(kernels: &mut [KernelRecord]) {
    kernels.sort_by(|a, b| {
        (!a.is_main(), &a.cluster_role, a.cluster_idx).cmp(&(!b.is_main(), &b.cluster_role, b.cluster_idx))
    });
}

async fn load_kernels(conn: &mut AsyncPgConnection, session: SessionId, lock: Lock) -> Tx<Vec<KernelRecord>> {
    let query = kernels::table.filter(kernels::session_id.eq(session.0)).order(kernels::id.asc());
    let rows = match lock {
        Lock::No => query.select(KernelRow::as_select()).load(conn).await?,
        Lock::ForUpdate => query.select(KernelRow::as_select()).for_update().load(conn).await?,
    };
    let mut kernels = rows.into_iter().map(KernelRow::into_model).collect::<Tx<Vec<_>>>()?;
    sort_kernels(&mut kernels);
    Ok(kernels)
}

async fn load_agent(conn: &mut AsyncPgConnection, id: &AgentId, lock: Lock) -> Tx<Option<AgentInfo>> {
    let query = agents::table.find(id.as_str()).select(AgentRow::as_select());
    let row = match lock {
        Lock::No => query.first(conn).await.optional()?,
        Lock::ForUpdate => query.for_update().first(conn).await.optional()?,
    };
    row.map(AgentRow::into_model).transpose()
}

async fn save_session(conn: &mut AsyncPgConnection, session: &SessionRecord) -> Tx<()> {
    let row = SessionRow::from_model(session)?;
    diesel::update(sessions::table.find(row.id)).set(&row).execute(conn).await?;
    Ok(())
}

async fn save_kernel(conn: &mut AsyncPgConnection, kernel: &KernelRecord) -> Tx<()> {
    let row = KernelRow::from_model(kernel)?;
    diesel::update(kernels::table.find(row.id)).set(&row).execute(conn).await?;
    Ok(())
}

async fn save_agent_occupied(conn: &mut AsyncPgConnection, id: &AgentId, occupied: &ResourceSlots) -> Tx<()> {
    diesel::update(agents::table.find(id.as_str()))
        .set(agents::occupied_slots.eq(to_json(occupied)?))
        .execute(conn)
        .await?;
    Ok(())
}

/// Gives a kernel's occupied slots back to its agent (once: the kernel holds nothing afterwards), under the
/// agent's row lock.
async fn release(conn: &mut AsyncPgConnection, kernel: &mut KernelRecord) -> Tx<()> {
    let held = std::mem::take(&mut kernel.occupied_slots);
    if held.is_zero() {
        return Ok(());
    }
    let Some(agent_id) = &kernel.agent_id else {
        tracing::warn!(kernel = %kernel.id, "a kernel without an agent held slots");
        return Ok(());
    };
    match load_agent(conn, agent_id, Lock::ForUpdate).await? {
        Some(agent) => save_agent_occupied(conn, agent_id, &changes::without(&agent.occupied_slots, &held)).await,
        None => {
            tracing::warn!(kernel = %kernel.id, agent = %agent_id, "the kernel's agent is unknown");
            Ok(())
        }
    }
}

/// Moves a kernel to `status` at `now`: history, end time for final statuses, slots back for dead ones.
async fn enter(
    conn: &mut AsyncPgConnection,
    kernel: &mut KernelRecord,
    status: KernelStatus,
    now: DateTime<Utc>,
) -> Tx<()> {
    kernel.status = status;
    kernel.status_history.push(status, now);
    if status.is_final() {
        kernel.terminated_at = Some(now);
    }
    if status.is_dead() {
        release(conn, kernel).await?;
    }
    Ok(())
}

fn enter_session(session: &mut SessionRecord, status: SessionStatus, now: DateTime<Utc>) {
    session.status = status;
    session.status_history.push(status, now);
    if status.is_final() {
        session.terminated_at = Some(now);
    }
}

/// Locks, in id order, the agents of the kernels that hold slots, so that releasing them later keeps the global
/// lock order (session, kernels, agents by id).
async fn lock_agents_of(conn: &mut AsyncPgConnection, kernels: &[KernelRecord]) -> Tx<()> {
    let ids: BTreeSet<&AgentId> =
        kernels.iter().filter(|k| !k.occupied_slots.is_zero()).filter_map(|k| k.agent_id.as_ref()).collect();
    for id in ids {
        load_agent(conn, id, Lock::ForUpdate).await?;
    }
    Ok(())
}

/// Reads and locks (`FOR UPDATE`, in id order) the sessions of `ids` that exist, by id.
async fn lock_sessions(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> Tx<HashMap<Uuid, SessionRecord>> {
    let rows = sessions::table
        .filter(sessions::id.eq_any(ids))
        .order(sessions::id.asc())
        .select(SessionRow::as_select())
        .for_update()
        .load(conn)
        .await?;
    rows.into_iter().map(|row| row.into_model().map(|s| (s.id.0, s))).collect()
}

/// Reads and locks (in id order) every kernel of the sessions of `ids`, by session; each session's kernels main
/// first, as [`load_kernels`] gives them.
async fn lock_kernels_of(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> Tx<HashMap<Uuid, Vec<KernelRecord>>> {
    let rows = kernels::table
        .filter(kernels::session_id.eq_any(ids))
        .order(kernels::id.asc())
        .select(KernelRow::as_select())
        .for_update()
        .load(conn)
        .await?;
    let mut by_session: HashMap<Uuid, Vec<KernelRecord>> = HashMap::new();
    for row in rows {
        let kernel = row.into_model()?;
        by_session.entry(kernel.session_id.0).or_default().push(kernel);
    }
    by_session.values_mut().for_each(|ks| sort_kernels(ks));
    Ok(by_session)
}

/// Reads and locks (in id order) the agents of `ids` that exist, by id.
async fn lock_agents(conn: &mut AsyncPgConnection, ids: &[String]) -> Tx<HashMap<AgentId, AgentInfo>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = agents::table
        .filter(agents::id.eq_any(ids))
        .order(agents::id.asc())
        .select(AgentRow::as_select())
        .for_update()
        .load(conn)
        .await?;
    rows.into_iter().map(|row| row.into_model().map(|a| (a.id.clone(), a))).collect()
}

/// Allocates a batch in one transaction: reads the sessions, their kernels and the agents named under row locks
/// (three statements, in the global lock order: sessions, kernels, agents, each by id), checks and applies each
/// allocation in memory in the batch's order, then writes what changed with one statement per table.
async fn allocate_batch_in(
    conn: &mut AsyncPgConnection,
    batch: &[Allocation],
    now: DateTime<Utc>,
) -> Tx<Vec<Result<Allocated>>> {
    let ids: Vec<Uuid> = batch.iter().map(|a| a.session.0).collect();
    let mut found = lock_sessions(conn, &ids).await?;
    let mut kernels_of = lock_kernels_of(conn, &ids).await?;
    let agent_ids: Vec<String> =
        changes::agents_named(batch.iter().flat_map(|a| &a.placements)).into_iter().map(|a| a.0).collect();
    let mut agents = lock_agents(conn, &agent_ids).await?;

    let mut answers = Vec::with_capacity(batch.len());
    let mut placed_agents: BTreeSet<AgentId> = BTreeSet::new();
    for a in batch {
        let Some(mut session) = found.get(&a.session.0).cloned() else {
            answers.push(Err(Error::SessionNotFound { name: a.session.to_string() }));
            continue;
        };
        let mut kernels = kernels_of.get(&a.session.0).cloned().unwrap_or_default();
        match changes::allocate(&mut session, &mut kernels, &mut agents, &a.placements, now) {
            Ok(()) => {
                placed_agents.extend(a.placements.iter().map(|p| p.agent_id.clone()));
                // A session named twice in a batch is PENDING only the first time.
                found.insert(session.id.0, session.clone());
                kernels_of.insert(session.id.0, kernels.clone());
                answers.push(Ok((session, kernels)));
            }
            Err(e) => answers.push(Err(e)),
        }
    }

    let placed: Vec<&Allocated> = answers.iter().filter_map(|a| a.as_ref().ok()).collect();
    if placed.is_empty() {
        return Ok(answers);
    }
    let (mut agent_ids, mut occupied) = (Vec::new(), Vec::new());
    for id in &placed_agents {
        agent_ids.push(id.0.clone());
        occupied.push(to_json(&agents[id].occupied_slots)?);
    }
    save_agents_occupied(conn, agent_ids, occupied).await?;

    let mut k = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for kernel in placed.iter().flat_map(|(_, kernels)| kernels) {
        k.0.push(kernel.id.0);
        k.1.push(kernel.agent_id.as_ref().map(|a| a.0.clone()).unwrap_or_default());
        k.2.push(kernel.agent_addr.clone().unwrap_or_default());
        k.3.push(to_json(&kernel.occupied_slots)?);
        k.4.push(kernel.status.as_str().to_owned());
        k.5.push(to_json(&kernel.status_history)?);
    }
    diesel::sql_query(
        "UPDATE kernels AS k SET agent_id = v.agent_id, agent_addr = v.agent_addr, occupied_slots = v.occupied, \
         status = v.status, status_history = v.history \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::jsonb[]) \
         AS v(id, agent_id, agent_addr, occupied, status, history) WHERE k.id = v.id",
    )
    .bind::<Array<SqlUuid>, _>(k.0)
    .bind::<Array<Text>, _>(k.1)
    .bind::<Array<Text>, _>(k.2)
    .bind::<Array<Jsonb>, _>(k.3)
    .bind::<Array<Text>, _>(k.4)
    .bind::<Array<Jsonb>, _>(k.5)
    .execute(conn)
    .await?;

    let mut s = (Vec::new(), Vec::new(), Vec::new());
    for (session, _) in &placed {
        s.0.push(session.id.0);
        s.1.push(session.status.as_str().to_owned());
        s.2.push(to_json(&session.status_history)?);
    }
    diesel::sql_query(
        "UPDATE sessions AS s SET status = v.status, status_history = v.history \
         FROM unnest($1::uuid[], $2::text[], $3::jsonb[]) AS v(id, status, history) WHERE s.id = v.id",
    )
    .bind::<Array<SqlUuid>, _>(s.0)
    .bind::<Array<Text>, _>(s.1)
    .bind::<Array<Jsonb>, _>(s.2)
    .execute(conn)
    .await?;
    Ok(answers)
}

/// Changes a batch of kernels in one transaction: finds their sessions, then locks those sessions, all their
/// kernels and the agents that may get slots back (the global lock order, each by id, one statement each), applies
/// the changes in memory in order ([`changes::change_kernel`]) and writes what changed with one statement per table.
async fn update_kernels_in(
    conn: &mut AsyncPgConnection,
    batch: &[(KernelId, KernelChange)],
    now: DateTime<Utc>,
) -> Tx<Vec<Result<KernelTransition>>> {
    // A kernel never changes session, so an unlocked read finds which sessions to lock.
    let ids: Vec<Uuid> = batch.iter().map(|(id, _)| id.0).collect();
    let owner_of: HashMap<Uuid, Uuid> = kernels::table
        .filter(kernels::id.eq_any(&ids))
        .select((kernels::id, kernels::session_id))
        .load::<(Uuid, Uuid)>(conn)
        .await?
        .into_iter()
        .collect();
    let session_ids: Vec<Uuid> = owner_of.values().copied().collect::<BTreeSet<_>>().into_iter().collect();
    let mut sessions_by_id = lock_sessions(conn, &session_ids).await?;
    let mut kernels_of = lock_kernels_of(conn, &session_ids).await?;
    let find = |kernels_of: &HashMap<Uuid, Vec<KernelRecord>>, id: &KernelId| {
        owner_of.get(&id.0).and_then(|s| kernels_of.get(s)).and_then(|ks| ks.iter().find(|k| k.id == *id).cloned())
    };
    let mut agent_ids: BTreeSet<String> = BTreeSet::new();
    for (id, change) in batch {
        if let Some(agent_id) = find(&kernels_of, id).and_then(|k| k.agent_id.filter(|_| change.status.is_dead())) {
            agent_ids.insert(agent_id.0);
        }
    }
    let mut agents = lock_agents(conn, &agent_ids.into_iter().collect::<Vec<_>>()).await?;
    let occupied_before: HashMap<AgentId, ResourceSlots> =
        agents.iter().map(|(id, a)| (id.clone(), a.occupied_slots.clone())).collect();

    let mut answers = Vec::with_capacity(batch.len());
    let (mut dirty_kernels, mut dirty_sessions) = (BTreeSet::new(), BTreeSet::new());
    for (id, change) in batch {
        let Some(session_id) = owner_of.get(&id.0) else {
            answers.push(Err(Error::KernelNotFound { id: id.to_string() }));
            continue;
        };
        let (Some(session), Some(kernels)) = (sessions_by_id.get_mut(session_id), kernels_of.get_mut(session_id))
        else {
            return Err(Error::internal(format!("kernel {id} belongs to no session")).into());
        };
        let answer = changes::change_kernel(session, kernels, &mut agents, *id, change.clone(), now);
        if let Ok(t) = &answer {
            dirty_kernels.insert((*session_id, id.0));
            if t.session.is_some() {
                dirty_sessions.insert(*session_id);
            }
        }
        answers.push(answer);
    }

    if !dirty_kernels.is_empty() {
        let mut k = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (session_id, kernel_id) in &dirty_kernels {
            let Some(kernel) = kernels_of[session_id].iter().find(|k| k.id.0 == *kernel_id) else { continue };
            k.0.push(kernel.id.0);
            k.1.push(kernel.status.as_str().to_owned());
            k.2.push(kernel.status_info.clone());
            k.3.push(to_json(&kernel.status_history)?);
            k.4.push(to_json(&kernel.occupied_slots)?);
            k.5.push(kernel.container_id.clone());
            k.6.push(kernel.exit_code);
            k.7.push(kernel.terminated_at);
        }
        diesel::sql_query(
            "UPDATE kernels AS k SET status = v.status, status_info = v.status_info, status_history = v.history, \
             occupied_slots = v.occupied, container_id = v.container_id, exit_code = v.exit_code, \
             terminated_at = v.terminated_at \
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::jsonb[], $6::text[], $7::int4[], \
             $8::timestamptz[]) AS v(id, status, status_info, history, occupied, container_id, exit_code, \
             terminated_at) WHERE k.id = v.id",
        )
        .bind::<Array<SqlUuid>, _>(k.0)
        .bind::<Array<Text>, _>(k.1)
        .bind::<Array<Nullable<Text>>, _>(k.2)
        .bind::<Array<Jsonb>, _>(k.3)
        .bind::<Array<Jsonb>, _>(k.4)
        .bind::<Array<Nullable<Text>>, _>(k.5)
        .bind::<Array<Nullable<Integer>>, _>(k.6)
        .bind::<Array<Nullable<Timestamptz>>, _>(k.7)
        .execute(conn)
        .await?;
    }
    if !dirty_sessions.is_empty() {
        let mut v = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for id in &dirty_sessions {
            let session = &sessions_by_id[id];
            v.0.push(session.id.0);
            v.1.push(session.status.as_str().to_owned());
            v.2.push(session.status_info.clone());
            v.3.push(to_json(&session.status_history)?);
            v.4.push(session.terminated_at);
        }
        diesel::sql_query(
            "UPDATE sessions AS s SET status = v.status, status_info = v.status_info, status_history = v.history, \
             terminated_at = v.terminated_at \
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::timestamptz[]) \
             AS v(id, status, status_info, history, terminated_at) WHERE s.id = v.id",
        )
        .bind::<Array<SqlUuid>, _>(v.0)
        .bind::<Array<Text>, _>(v.1)
        .bind::<Array<Nullable<Text>>, _>(v.2)
        .bind::<Array<Jsonb>, _>(v.3)
        .bind::<Array<Nullable<Timestamptz>>, _>(v.4)
        .execute(conn)
        .await?;
    }
    let released: Vec<&AgentInfo> = agents.values().filter(|a| occupied_before[&a.id] != a.occupied_slots).collect();
    if !released.is_empty() {
        let ids: Vec<String> = released.iter().map(|a| a.id.0.clone()).collect();
        let occupied = released.iter().map(|a| to_json(&a.occupied_slots)).collect::<Tx<Vec<_>>>()?;
        save_agents_occupied(conn, ids, occupied).await?;
    }
    Ok(answers)
}

/// Sets the occupied slots of several agents in one statement.
async fn save_agents_occupied(conn: &mut AsyncPgConnection, ids: Vec<String>, occupied: Vec<Value>) -> Tx<()> {
    diesel::sql_query(
        "UPDATE agents AS a SET occupied_slots = v.occupied \
         FROM unnest($1::text[], $2::jsonb[]) AS v(id, occupied) WHERE a.id = v.id",
    )
    .bind::<Array<Text>, _>(ids)
    .bind::<Array<Jsonb>, _>(occupied)
    .execute(conn)
    .await?;
    Ok(())
}

async fn update_session_in(
    conn: &mut AsyncPgConnection,
    id: SessionId,
    change: SessionChange,
    now: DateTime<Utc>,
) -> Tx<Option<(SessionStatus, SessionStatus)>> {
    let mut session = load_session(conn, id, Lock::ForUpdate)
        .await?
        .ok_or_else(|| Error::SessionNotFound { name: id.to_string() })?;
    let from = session.status;
    if change.status != from {
        from.transition(change.status)?;
    }
    let kernel_status = KernelStatus::from(change.status);
    let kernels = load_kernels(conn, id, Lock::ForUpdate).await?;
    if kernel_status.is_dead() {
        lock_agents_of(conn, &kernels).await?;
    }
    for mut kernel in kernels {
        if kernel.status.is_dead() || kernel.status == kernel_status || !kernel.status.can_transition_to(kernel_status)
        {
            continue;
        }
        enter(conn, &mut kernel, kernel_status, now).await?;
        if change.status_info.is_some() {
            kernel.status_info = change.status_info.clone();
        }
        save_kernel(conn, &kernel).await?;
    }
    if change.status != from {
        enter_session(&mut session, change.status, now);
    }
    if change.status_info.is_some() {
        session.status_info = change.status_info;
    }
    if let Some(result) = change.result {
        session.result = result;
    }
    save_session(conn, &session).await?;
    Ok((change.status != from).then_some((from, change.status)))
}

async fn insert_session_in(conn: &mut AsyncPgConnection, row: &SessionRow, kernel_rows: &[KernelRow]) -> Tx<()> {
    let live: i64 = sessions::table
        .filter(sessions::access_key.eq(&row.access_key))
        .filter(sessions::name.eq(&row.name))
        .filter(sessions::status.ne_all(final_session_statuses()))
        .count()
        .get_result(conn)
        .await?;
    let already = || format!("session {:?} of {}", row.name, row.access_key);
    if live > 0 {
        return Err(Error::AlreadyExists { msg: already() }.into());
    }
    // A concurrent insert of the same live name trips the partial unique index instead.
    diesel::insert_into(sessions::table).values(row).execute(conn).await.map_err(taken(already))?;
    if !kernel_rows.is_empty() {
        diesel::insert_into(kernels::table)
            .values(kernel_rows)
            .execute(conn)
            .await
            .map_err(taken(|| format!("a kernel of session {}", row.id)))?;
    }
    Ok(())
}

async fn rename_session_in(conn: &mut AsyncPgConnection, id: SessionId, name: &str) -> Tx<()> {
    let session =
        load_session(conn, id, Lock::ForUpdate).await?.ok_or(Error::SessionNotFound { name: id.to_string() })?;
    if session.status.is_final() {
        return Err(Error::Conflict { msg: format!("session {id} is {}", session.status) }.into());
    }
    let taken_by_other: i64 = sessions::table
        .filter(sessions::access_key.eq(session.access_key.as_str()))
        .filter(sessions::name.eq(name))
        .filter(sessions::id.ne(id.0))
        .filter(sessions::status.ne_all(final_session_statuses()))
        .count()
        .get_result(conn)
        .await?;
    let already = || format!("session {name:?} of {}", session.access_key);
    if taken_by_other > 0 {
        return Err(Error::AlreadyExists { msg: already() }.into());
    }
    diesel::update(sessions::table.find(id.0))
        .set(sessions::name.eq(name))
        .execute(conn)
        .await
        .map_err(taken(already))?;
    Ok(())
}

async fn find_session_in(conn: &mut AsyncPgConnection, owner: &str, key: &str) -> Tx<Option<SessionRecord>> {
    if let Ok(id) = Uuid::parse_str(key) {
        let by_id = sessions::table
            .find(id)
            .filter(sessions::access_key.eq(owner))
            .select(SessionRow::as_select())
            .first(conn)
            .await
            .optional()?;
        if let Some(row) = by_id {
            return row.into_model().map(Some);
        }
    }
    let named = || {
        sessions::table
            .filter(sessions::access_key.eq(owner.to_owned()))
            .filter(sessions::name.eq(key.to_owned()))
            .order((sessions::created_at.desc(), sessions::seq.desc()))
            .select(SessionRow::as_select())
            .into_boxed()
    };
    let live = named().filter(sessions::status.ne_all(final_session_statuses())).first(conn).await.optional()?;
    let row = match live {
        Some(live) => Some(live),
        None => named().first(conn).await.optional()?,
    };
    row.map(SessionRow::into_model).transpose()
}

async fn pending_sessions_in(conn: &mut AsyncPgConnection) -> Tx<Vec<(SessionRecord, Vec<KernelRecord>)>> {
    let pending = SessionStatus::Pending.as_str();
    let sessions = sessions::table
        .filter(sessions::status.eq(pending))
        .order((sessions::created_at.asc(), sessions::seq.asc()))
        .select(SessionRow::as_select())
        .load(conn)
        .await?;
    let kernel_rows = kernels::table
        .inner_join(sessions::table)
        .filter(sessions::status.eq(pending))
        .select(KernelRow::as_select())
        .load(conn)
        .await?;
    let mut by_session: HashMap<SessionId, Vec<KernelRecord>> = HashMap::new();
    for row in kernel_rows {
        let k = row.into_model()?;
        by_session.entry(k.session_id).or_default().push(k);
    }
    sessions
        .into_iter()
        .map(|row| {
            let session = row.into_model()?;
            let mut kernels = by_session.remove(&session.id).unwrap_or_default();
            sort_kernels(&mut kernels);
            Ok((session, kernels))
        })
        .collect()
}

async fn upsert_agent_in(conn: &mut AsyncPgConnection, hb: &AgentHeartbeat, now: DateTime<Utc>) -> Tx<AgentInfo> {
    let row = AgentRow {
        id: hb.id.0.clone(),
        status: AgentStatus::Alive.as_str().to_owned(),
        addr: hb.addr.clone(),
        scaling_group: hb.scaling_group.clone(),
        architecture: hb.architecture.clone(),
        available_slots: to_json(&hb.available_slots)?,
        occupied_slots: to_json(&ResourceSlots::new())?,
        images: to_json(&hb.images)?,
        schedulable: true,
        runtime: hb.runtime.clone(),
        version: hb.version.clone(),
        first_contact: ts(now),
        lost_at: None,
    };
    // A known agent keeps its occupied slots, schedulability, first contact and `lost_at`.
    let stored = diesel::insert_into(agents::table)
        .values(&row)
        .on_conflict(agents::id)
        .do_update()
        .set((
            agents::status.eq(excluded(agents::status)),
            agents::addr.eq(excluded(agents::addr)),
            agents::scaling_group.eq(excluded(agents::scaling_group)),
            agents::architecture.eq(excluded(agents::architecture)),
            agents::available_slots.eq(excluded(agents::available_slots)),
            agents::images.eq(excluded(agents::images)),
            agents::runtime.eq(excluded(agents::runtime)),
            agents::version.eq(excluded(agents::version)),
        ))
        .returning(AgentRow::as_returning())
        .get_result(conn)
        .await?;
    stored.into_model()
}

#[async_trait]
impl MetadataStore for PostgresStore {
    async fn insert_keypair(&self, keypair: &KeyPair) -> Result<()> {
        let row = KeyPairRow::from_model(keypair);
        transaction!(self, Mode::Write, |conn| async {
            diesel::insert_into(keypairs::table)
                .values(&row)
                .execute(conn)
                .await
                .map_err(taken(|| format!("keypair {}", row.access_key)))?;
            Ok(())
        })
    }

    async fn keypair(&self, access_key: &AccessKey) -> Result<Option<KeyPair>> {
        transaction!(self, Mode::Statement, |conn| async {
            let row = keypairs::table
                .find(access_key.as_str())
                .select(KeyPairRow::as_select())
                .first(conn)
                .await
                .optional()?;
            row.map(KeyPairRow::into_model).transpose()
        })
    }

    async fn list_keypairs(&self) -> Result<Vec<KeyPair>> {
        transaction!(self, Mode::Statement, |conn| async {
            keypairs::table
                .order((keypairs::created_at.asc(), keypairs::seq.asc()))
                .select(KeyPairRow::as_select())
                .load(conn)
                .await?
                .into_iter()
                .map(KeyPairRow::into_model)
                .collect::<Tx<Vec<_>>>()
        })
    }

    async fn set_keypair_active(&self, access_key: &AccessKey, active: bool) -> Result<()> {
        transaction!(self, Mode::Write, |conn| async {
            let n = diesel::update(keypairs::table.find(access_key.as_str()))
                .set(keypairs::is_active.eq(active))
                .execute(conn)
                .await?;
            if n == 0 {
                return Err(Error::NotFound { what: format!("keypair {access_key}") }.into());
            }
            Ok(())
        })
    }

    async fn put_domain(&self, domain: &Domain) -> Result<()> {
        transaction!(self, Mode::Write, |conn| admin::put_domain(conn, domain))
    }

    async fn domain(&self, name: &str) -> Result<Option<Domain>> {
        transaction!(self, Mode::Read, |conn| admin::domain(conn, name))
    }

    async fn list_domains(&self) -> Result<Vec<Domain>> {
        transaction!(self, Mode::Read, |conn| admin::list_domains(conn))
    }

    async fn delete_domain(&self, name: &str) -> Result<()> {
        transaction!(self, Mode::Write, |conn| admin::delete_domain(conn, name))
    }

    async fn put_group(&self, group: &Group) -> Result<()> {
        transaction!(self, Mode::Write, |conn| admin::put_group(conn, group))
    }

    async fn group(&self, domain: &str, name: &str) -> Result<Option<Group>> {
        transaction!(self, Mode::Read, |conn| admin::group(conn, domain, name))
    }

    async fn list_groups(&self, domain: Option<&str>) -> Result<Vec<Group>> {
        transaction!(self, Mode::Read, |conn| admin::list_groups(conn, domain))
    }

    async fn delete_group(&self, domain: &str, name: &str) -> Result<()> {
        transaction!(self, Mode::Write, |conn| admin::delete_group(conn, domain, name))
    }

    async fn put_user(&self, user: &User) -> Result<()> {
        transaction!(self, Mode::Write, |conn| admin::put_user(conn, user))
    }

    async fn user(&self, email: &str) -> Result<Option<User>> {
        transaction!(self, Mode::Read, |conn| admin::user(conn, email))
    }

    async fn list_users(&self, domain: Option<&str>) -> Result<Vec<User>> {
        transaction!(self, Mode::Read, |conn| admin::list_users(conn, domain))
    }

    async fn delete_user(&self, email: &str) -> Result<()> {
        transaction!(self, Mode::Write, |conn| admin::delete_user(conn, email))
    }

    async fn put_resource_policy(&self, policy: &KeyPairResourcePolicy) -> Result<()> {
        transaction!(self, Mode::Write, |conn| admin::put_resource_policy(conn, policy))
    }

    async fn resource_policy(&self, name: &str) -> Result<Option<KeyPairResourcePolicy>> {
        transaction!(self, Mode::Statement, |conn| admin::resource_policy(conn, name))
    }

    async fn list_resource_policies(&self) -> Result<Vec<KeyPairResourcePolicy>> {
        transaction!(self, Mode::Read, |conn| admin::list_resource_policies(conn))
    }

    async fn delete_resource_policy(&self, name: &str) -> Result<()> {
        transaction!(self, Mode::Write, |conn| admin::delete_resource_policy(conn, name))
    }

    async fn put_scaling_group(&self, group: &ScalingGroup) -> Result<()> {
        transaction!(self, Mode::Write, |conn| admin::put_scaling_group(conn, group))
    }

    async fn scaling_group(&self, name: &str) -> Result<Option<ScalingGroup>> {
        transaction!(self, Mode::Read, |conn| admin::scaling_group(conn, name))
    }

    async fn list_scaling_groups(&self) -> Result<Vec<ScalingGroup>> {
        transaction!(self, Mode::Read, |conn| admin::list_scaling_groups(conn))
    }

    async fn delete_scaling_group(&self, name: &str) -> Result<()> {
        transaction!(self, Mode::Write, |conn| admin::delete_scaling_group(conn, name))
    }

    async fn upsert_agent(&self, heartbeat: &AgentHeartbeat, now: DateTime<Utc>) -> Result<AgentInfo> {
        transaction!(self, Mode::Write, |conn| upsert_agent_in(conn, heartbeat, now))
    }

    async fn agent(&self, id: &AgentId) -> Result<Option<AgentInfo>> {
        transaction!(self, Mode::Statement, |conn| load_agent(conn, id, Lock::No))
    }

    async fn list_agents(&self) -> Result<Vec<AgentInfo>> {
        transaction!(self, Mode::Statement, |conn| async {
            agents::table
                .order(agents::id.asc())
                .select(AgentRow::as_select())
                .load(conn)
                .await?
                .into_iter()
                .map(AgentRow::into_model)
                .collect::<Tx<Vec<_>>>()
        })
    }

    async fn set_agent_status(&self, id: &AgentId, status: AgentStatus, now: DateTime<Utc>) -> Result<()> {
        transaction!(self, Mode::Write, |conn| async {
            let target = agents::table.find(id.as_str());
            let n = if status == AgentStatus::Lost {
                diesel::update(target)
                    .set((agents::status.eq(status.as_str()), agents::lost_at.eq(ts(now))))
                    .execute(conn)
                    .await?
            } else {
                diesel::update(target).set(agents::status.eq(status.as_str())).execute(conn).await?
            };
            if n == 0 {
                return Err(Error::NotFound { what: format!("agent {id}") }.into());
            }
            Ok(())
        })
    }

    async fn insert_session(&self, session: &SessionRecord, kernels: &[KernelRecord]) -> Result<()> {
        if let Some(k) = kernels.iter().find(|k| k.session_id != session.id) {
            return Err(Error::InvalidParams {
                msg: format!("kernel {} belongs to session {}, not {}", k.id, k.session_id, session.id),
            });
        }
        let row = SessionRow::from_model(session)?;
        let kernel_rows = kernels.iter().map(KernelRow::from_model).collect::<Tx<Vec<_>>>()?;
        transaction!(self, Mode::Write, |conn| insert_session_in(conn, &row, &kernel_rows))
    }

    async fn rename_session(&self, id: SessionId, name: &str) -> Result<()> {
        transaction!(self, Mode::Write, |conn| rename_session_in(conn, id, name))
    }

    async fn session(&self, id: SessionId) -> Result<Option<SessionRecord>> {
        transaction!(self, Mode::Statement, |conn| load_session(conn, id, Lock::No))
    }

    async fn find_session(&self, owner: &AccessKey, name_or_id: &str) -> Result<Option<SessionRecord>> {
        transaction!(self, Mode::Read, |conn| find_session_in(conn, owner.as_str(), name_or_id))
    }

    async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionRecord>> {
        transaction!(self, Mode::Statement, |conn| async {
            let mut query = sessions::table.select(SessionRow::as_select()).into_boxed();
            if let Some(owner) = &filter.access_key {
                query = query.filter(sessions::access_key.eq(owner.0.clone()));
            }
            if let Some(statuses) = &filter.statuses {
                query = query.filter(sessions::status.eq_any(statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>()));
            }
            query = query.order((sessions::created_at.desc(), sessions::seq.desc()));
            if let Some(limit) = filter.limit {
                query = query.limit(i64::try_from(limit).unwrap_or(i64::MAX));
            }
            query.load(conn).await?.into_iter().map(SessionRow::into_model).collect::<Tx<Vec<_>>>()
        })
    }

    async fn pending_sessions(&self) -> Result<Vec<(SessionRecord, Vec<KernelRecord>)>> {
        transaction!(self, Mode::Read, |conn| pending_sessions_in(conn))
    }

    async fn kernels(&self, session: SessionId) -> Result<Vec<KernelRecord>> {
        transaction!(self, Mode::Statement, |conn| load_kernels(conn, session, Lock::No))
    }

    async fn kernel(&self, id: KernelId) -> Result<Option<KernelRecord>> {
        transaction!(self, Mode::Statement, |conn| load_kernel(conn, id, Lock::No))
    }

    async fn kernels_on_agent(&self, agent: &AgentId) -> Result<Vec<KernelRecord>> {
        transaction!(self, Mode::Statement, |conn| async {
            kernels::table
                .filter(kernels::agent_id.eq(agent.as_str()))
                .filter(kernels::status.eq_any(kernel_statuses(KernelStatus::holds_resources)))
                .order((kernels::created_at.asc(), kernels::id.asc()))
                .select(KernelRow::as_select())
                .load(conn)
                .await?
                .into_iter()
                .map(KernelRow::into_model)
                .collect::<Tx<Vec<_>>>()
        })
    }

    async fn occupancy(&self, owners: &[AccessKey]) -> Result<BTreeMap<AccessKey, (u32, ResourceSlots)>> {
        let keys: Vec<&str> = owners.iter().map(|o| o.0.as_str()).collect();
        let holding: Vec<&str> =
            SessionStatus::ALL.iter().filter(|s| s.holds_resources()).map(|s| s.as_str()).collect();
        transaction!(self, Mode::Statement, |conn| async {
            let rows: Vec<(String, Value)> = sessions::table
                .filter(sessions::access_key.eq_any(&keys))
                .filter(sessions::status.eq_any(&holding))
                .select((sessions::access_key, sessions::requested_slots))
                .load(conn)
                .await?;
            let mut out: BTreeMap<AccessKey, (u32, ResourceSlots)> = BTreeMap::new();
            for (key, slots) in rows {
                let slots: ResourceSlots = from_json("requested slots", slots)?;
                let entry = out.entry(AccessKey(key)).or_default();
                entry.0 += 1;
                entry.1 = std::mem::take(&mut entry.1) + slots;
            }
            Ok(out)
        })
    }

    async fn occupancy_by_group_and_domain(&self, domains: &[String]) -> Result<ScopeOccupancy> {
        let holding: Vec<&str> =
            SessionStatus::ALL.iter().filter(|s| s.holds_resources()).map(|s| s.as_str()).collect();
        transaction!(self, Mode::Statement, |conn| async {
            let rows: Vec<(String, String, Value)> = sessions::table
                .filter(sessions::domain_name.eq_any(domains))
                .filter(sessions::status.eq_any(&holding))
                .select((sessions::domain_name, sessions::group_name, sessions::requested_slots))
                .load(conn)
                .await?;
            let mut out = ScopeOccupancy::default();
            for (domain, group, slots) in rows {
                let slots: ResourceSlots = from_json("requested slots", slots)?;
                out.add(&domain, &group, &slots);
            }
            Ok(out)
        })
    }

    async fn allocate_batch(&self, batch: &[Allocation], now: DateTime<Utc>) -> Result<Vec<Result<Allocated>>> {
        let now = ts(now);
        transaction!(self, Mode::Write, |conn| allocate_batch_in(conn, batch, now))
    }

    async fn update_kernels(
        &self,
        changes: &[(KernelId, KernelChange)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<KernelTransition>>> {
        let now = ts(now);
        transaction!(self, Mode::Write, |conn| update_kernels_in(conn, changes, now))
    }

    async fn update_session(
        &self,
        id: SessionId,
        change: SessionChange,
        now: DateTime<Utc>,
    ) -> Result<Option<(SessionStatus, SessionStatus)>> {
        let now = ts(now);
        transaction!(self, Mode::Write, |conn| update_session_in(conn, id, change.clone(), now))
    }
    async fn insert_vfolder(&self, folder: &VFolder) -> Result<()> {
        transaction!(self, Mode::Write, |conn| vfolder::insert(conn, folder))
    }

    async fn vfolder(&self, id: VFolderId) -> Result<Option<VFolder>> {
        transaction!(self, Mode::Read, |conn| vfolder::get(conn, id))
    }

    async fn list_vfolders(&self) -> Result<Vec<VFolder>> {
        transaction!(self, Mode::Read, |conn| vfolder::list(conn))
    }

    async fn accessible_vfolders(&self, email: &str) -> Result<Vec<VFolderAccess>> {
        transaction!(self, Mode::Read, |conn| vfolder::accessible(conn, email))
    }

    async fn rename_vfolder(&self, id: VFolderId, name: &str) -> Result<()> {
        transaction!(self, Mode::Write, |conn| vfolder::rename(conn, id, name))
    }

    async fn update_vfolder_options(
        &self,
        id: VFolderId,
        permission: VFolderPermission,
        cloneable: bool,
    ) -> Result<()> {
        transaction!(self, Mode::Write, |conn| vfolder::update_options(conn, id, permission, cloneable))
    }

    async fn delete_vfolder(&self, id: VFolderId) -> Result<()> {
        transaction!(self, Mode::Write, |conn| vfolder::delete(conn, id))
    }

    async fn set_vfolder_share(&self, id: VFolderId, email: &str, permission: Option<VFolderPermission>) -> Result<()> {
        transaction!(self, Mode::Write, |conn| vfolder::set_share(conn, id, email, permission))
    }

    async fn vfolder_shares(&self, id: VFolderId) -> Result<Vec<(String, VFolderPermission)>> {
        transaction!(self, Mode::Read, |conn| vfolder::shares(conn, id))
    }

    async fn insert_vfolder_invitation(&self, invitation: &VFolderInvitation) -> Result<()> {
        transaction!(self, Mode::Write, |conn| vfolder::insert_invitation(conn, invitation))
    }

    async fn vfolder_invitation(&self, id: InvitationId) -> Result<Option<VFolderInvitation>> {
        transaction!(self, Mode::Read, |conn| vfolder::invitation(conn, id))
    }

    async fn pending_vfolder_invitations(&self, invitee: &str) -> Result<Vec<VFolderInvitation>> {
        transaction!(self, Mode::Read, |conn| vfolder::pending_invitations(conn, invitee))
    }

    async fn answer_vfolder_invitation(
        &self,
        id: InvitationId,
        state: InvitationState,
        now: DateTime<Utc>,
    ) -> Result<VFolderInvitation> {
        transaction!(self, Mode::Write, |conn| vfolder::answer_invitation(conn, id, state, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
