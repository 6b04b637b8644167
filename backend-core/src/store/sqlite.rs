//! The embedded metadata store: SQLite through diesel, in a file of the data directory or in memory.
//!
//! Diesel is synchronous, so the store holds one connection behind a mutex and runs every call on tokio's blocking
//! pool. Calls that write take SQLite's write lock up front (`BEGIN IMMEDIATE`), so two writers, in this process or
//! another one opening the same file, queue on the busy timeout instead of deadlocking on a lock upgrade.
//!
//! Storage conventions (see `migrations/sqlite`): timestamps are RFC 3339 text in UTC with six fractional digits,
//! so they sort as text and keep microsecond precision (a timestamp read back is the one written, truncated to the
//! microsecond); slots, images, environments and status histories are JSON text; statuses are their wire names.

mod admin;
mod schema;
mod vfolder;

use self::schema::{agents, kernels, keypairs, sessions};
use super::{
    changes, Allocated, Allocation, KernelChange, KernelTransition, MetadataStore, SessionChange, SessionFilter,
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
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::str::FromStr;
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
                Ok(result) => result.map_err(Error::from),
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
            Failure::Db(e) => Error::internal(format!("sqlite: {e}")),
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
    Error::internal(format!("corrupt {what} {value:?} in the sqlite store: {e}")).into()
}

/// The one text form of a timestamp in this store.
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_ts(s: &str) -> Tx<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).map_err(|e| corrupt("timestamp", s, e))
}

fn parse_opt_ts(s: Option<String>) -> Tx<Option<DateTime<Utc>>> {
    s.as_deref().map(parse_ts).transpose()
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Tx<String> {
    serde_json::to_string(value).map_err(|e| Error::internal(format!("encoding a store column: {e}")).into())
}

fn from_json<T: DeserializeOwned>(what: &str, s: &str) -> Tx<T> {
    serde_json::from_str(s).map_err(|e| corrupt(what, s, e))
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
#[diesel(table_name = keypairs, check_for_backend(diesel::sqlite::Sqlite))]
struct KeyPairRow {
    access_key: String,
    secret_key: String,
    user_id: String,
    role: String,
    is_active: bool,
    rate_limit: i64,
    resource_policy: String,
    created_at: String,
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
            created_at: parse_ts(&self.created_at)?,
            access_key: AccessKey(self.access_key),
            secret_key: self.secret_key,
            user_id: self.user_id,
            is_active: self.is_active,
            resource_policy: self.resource_policy,
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = agents, check_for_backend(diesel::sqlite::Sqlite))]
struct AgentRow {
    id: String,
    status: String,
    addr: String,
    scaling_group: String,
    architecture: String,
    available_slots: String,
    occupied_slots: String,
    images: String,
    schedulable: bool,
    runtime: String,
    version: String,
    first_contact: String,
    lost_at: Option<String>,
}

impl AgentRow {
    fn into_model(self) -> Tx<AgentInfo> {
        Ok(AgentInfo {
            status: parse("agent status", &self.status)?,
            available_slots: from_json("available slots", &self.available_slots)?,
            occupied_slots: from_json("occupied slots", &self.occupied_slots)?,
            images: from_json("images", &self.images)?,
            first_contact: parse_ts(&self.first_contact)?,
            lost_at: parse_opt_ts(self.lost_at)?,
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
#[diesel(table_name = sessions, treat_none_as_null = true, check_for_backend(diesel::sqlite::Sqlite))]
struct SessionRow {
    id: String,
    name: String,
    access_key: String,
    domain_name: String,
    group_name: String,
    session_type: String,
    image: String,
    cluster_size: i64,
    status: String,
    status_info: Option<String>,
    status_history: String,
    requested_slots: String,
    environ: String,
    tag: Option<String>,
    scaling_group: String,
    priority: i32,
    startup_command: Option<String>,
    result: String,
    created_at: String,
    terminated_at: Option<String>,
    starts_at: Option<String>,
    dependencies: String,
    designated_agents: String,
    architecture: Option<String>,
    bootstrap_script: Option<String>,
    batch_timeout: Option<i64>,
    shmem: Option<i64>,
    vfolder_mounts: String,
}

impl SessionRow {
    fn from_model(s: &SessionRecord) -> Tx<Self> {
        Ok(Self {
            id: s.id.to_string(),
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
            id: SessionId(parse::<Uuid>("session id", &self.id)?),
            session_type: parse("session type", &self.session_type)?,
            cluster_size: to_u32("cluster size", self.cluster_size)?,
            status: parse("session status", &self.status)?,
            status_history: from_json("status history", &self.status_history)?,
            requested_slots: from_json("requested slots", &self.requested_slots)?,
            environ: from_json::<BTreeMap<String, String>>("environ", &self.environ)?,
            result: parse::<SessionResult>("session result", &self.result)?,
            created_at: parse_ts(&self.created_at)?,
            terminated_at: parse_opt_ts(self.terminated_at)?,
            starts_at: parse_opt_ts(self.starts_at)?,
            dependencies: from_json("dependencies", &self.dependencies)?,
            designated_agents: from_json("designated agents", &self.designated_agents)?,
            architecture: self.architecture,
            bootstrap_script: self.bootstrap_script,
            batch_timeout: self.batch_timeout.and_then(|t| u64::try_from(t).ok()),
            shmem: self.shmem.and_then(|b| u64::try_from(b).ok()),
            vfolder_mounts: from_json("vfolder mounts", &self.vfolder_mounts)?,
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
#[diesel(table_name = kernels, treat_none_as_null = true, check_for_backend(diesel::sqlite::Sqlite))]
struct KernelRow {
    id: String,
    session_id: String,
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
    status_history: String,
    requested_slots: String,
    occupied_slots: String,
    exit_code: Option<i32>,
    created_at: String,
    terminated_at: Option<String>,
}

impl KernelRow {
    fn from_model(k: &KernelRecord) -> Tx<Self> {
        Ok(Self {
            id: k.id.to_string(),
            session_id: k.session_id.to_string(),
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
            id: KernelId(parse::<Uuid>("kernel id", &self.id)?),
            session_id: SessionId(parse::<Uuid>("session id", &self.session_id)?),
            cluster_idx: to_u32("cluster index", self.cluster_idx)?,
            status: parse("kernel status", &self.status)?,
            status_history: from_json("status history", &self.status_history)?,
            requested_slots: from_json("requested slots", &self.requested_slots)?,
            occupied_slots: from_json("occupied slots", &self.occupied_slots)?,
            created_at: parse_ts(&self.created_at)?,
            terminated_at: parse_opt_ts(self.terminated_at)?,
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

fn load_session(conn: &mut SqliteConnection, id: SessionId) -> Tx<Option<SessionRecord>> {
    let row = sessions::table.find(id.to_string()).select(SessionRow::as_select()).first(conn).optional()?;
    row.map(SessionRow::into_model).transpose()
}

fn load_kernel(conn: &mut SqliteConnection, id: KernelId) -> Tx<Option<KernelRecord>> {
    let row = kernels::table.find(id.to_string()).select(KernelRow::as_select()).first(conn).optional()?;
    row.map(KernelRow::into_model).transpose()
}

/// The main kernel first, then by role and index.
fn sort_kernels(kernels: &mut [KernelRecord]) {
    kernels.sort_by(|a, b| {
        (!a.is_main(), &a.cluster_role, a.cluster_idx).cmp(&(!b.is_main(), &b.cluster_role, b.cluster_idx))
    });
}

fn load_kernels(conn: &mut SqliteConnection, session: SessionId) -> Tx<Vec<KernelRecord>> {
    let rows =
        kernels::table.filter(kernels::session_id.eq(session.to_string())).select(KernelRow::as_select()).load(conn)?;
    let mut kernels = rows.into_iter().map(KernelRow::into_model).collect::<Tx<Vec<_>>>()?;
    sort_kernels(&mut kernels);
    Ok(kernels)
}

fn load_agent(conn: &mut SqliteConnection, id: &AgentId) -> Tx<Option<AgentInfo>> {
    let row = agents::table.find(id.as_str()).select(AgentRow::as_select()).first(conn).optional()?;
    row.map(AgentRow::into_model).transpose()
}

fn save_session(conn: &mut SqliteConnection, session: &SessionRecord) -> Tx<()> {
    let row = SessionRow::from_model(session)?;
    diesel::update(sessions::table.find(&row.id)).set(&row).execute(conn)?;
    Ok(())
}

fn save_kernel(conn: &mut SqliteConnection, kernel: &KernelRecord) -> Tx<()> {
    let row = KernelRow::from_model(kernel)?;
    diesel::update(kernels::table.find(&row.id)).set(&row).execute(conn)?;
    Ok(())
}

fn save_agent_occupied(conn: &mut SqliteConnection, id: &AgentId, occupied: &ResourceSlots) -> Tx<()> {
    diesel::update(agents::table.find(id.as_str())).set(agents::occupied_slots.eq(to_json(occupied)?)).execute(conn)?;
    Ok(())
}

/// Gives a kernel's occupied slots back to its agent (once: the kernel holds nothing afterwards).
fn release(conn: &mut SqliteConnection, kernel: &mut KernelRecord) -> Tx<()> {
    let held = std::mem::take(&mut kernel.occupied_slots);
    if held.is_zero() {
        return Ok(());
    }
    let Some(agent_id) = &kernel.agent_id else {
        tracing::warn!(kernel = %kernel.id, "a kernel without an agent held slots");
        return Ok(());
    };
    match load_agent(conn, agent_id)? {
        Some(agent) => save_agent_occupied(conn, agent_id, &changes::without(&agent.occupied_slots, &held)),
        None => {
            tracing::warn!(kernel = %kernel.id, agent = %agent_id, "the kernel's agent is unknown");
            Ok(())
        }
    }
}

/// Moves a kernel to `status` at `now`: history, end time for final statuses, slots back for dead ones.
fn enter(conn: &mut SqliteConnection, kernel: &mut KernelRecord, status: KernelStatus, now: DateTime<Utc>) -> Tx<()> {
    kernel.status = status;
    kernel.status_history.push(status, now);
    if status.is_final() {
        kernel.terminated_at = Some(now);
    }
    if status.is_dead() {
        release(conn, kernel)?;
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

/// Allocates a batch in one transaction, one session after the other: each is checked and applied in memory
/// ([`changes::apply`]) and written only when it succeeded.
fn allocate_batch_in(
    conn: &mut SqliteConnection,
    batch: &[Allocation],
    now: DateTime<Utc>,
) -> Tx<Vec<Result<Allocated>>> {
    let mut agents: HashMap<AgentId, AgentInfo> = HashMap::new();
    for id in changes::agents_named(batch.iter().flat_map(|a| &a.placements)) {
        if let Some(agent) = load_agent(conn, &id)? {
            agents.insert(id, agent);
        }
    }
    let mut answers = Vec::with_capacity(batch.len());
    for a in batch {
        let Some(mut session) = load_session(conn, a.session)? else {
            answers.push(Err(Error::SessionNotFound { name: a.session.to_string() }));
            continue;
        };
        let mut kernels = load_kernels(conn, a.session)?;
        if let Err(e) = changes::allocate(&mut session, &mut kernels, &mut agents, &a.placements, now) {
            answers.push(Err(e));
            continue;
        }
        for agent_id in changes::agents_named(&a.placements) {
            save_agent_occupied(conn, &agent_id, &agents[&agent_id].occupied_slots)?;
        }
        for k in &kernels {
            save_kernel(conn, k)?;
        }
        save_session(conn, &session)?;
        answers.push(Ok((session, kernels)));
    }
    Ok(answers)
}

/// Changes kernels one after the other in one transaction, each through [`changes::change_kernel`] on its
/// session's records; a refused change writes nothing.
fn update_kernels_in(
    conn: &mut SqliteConnection,
    changes: &[(KernelId, KernelChange)],
    now: DateTime<Utc>,
) -> Tx<Vec<Result<KernelTransition>>> {
    let mut answers = Vec::with_capacity(changes.len());
    for (id, change) in changes {
        let Some(kernel) = load_kernel(conn, *id)? else {
            answers.push(Err(Error::KernelNotFound { id: id.to_string() }));
            continue;
        };
        let mut session = load_session(conn, kernel.session_id)?
            .ok_or_else(|| Error::internal(format!("kernel {id} belongs to no session")))?;
        let mut kernels = load_kernels(conn, session.id)?;
        let mut agents = HashMap::new();
        if let Some(agent_id) = changes::releases_to(&kernel, change) {
            if let Some(agent) = load_agent(conn, agent_id)? {
                agents.insert(agent.id.clone(), agent);
            }
        }
        match changes::change_kernel(&mut session, &mut kernels, &mut agents, *id, change.clone(), now) {
            Err(e) => answers.push(Err(e)),
            Ok(t) => {
                for agent in agents.values() {
                    save_agent_occupied(conn, &agent.id, &agent.occupied_slots)?;
                }
                save_kernel(conn, &t.kernel)?;
                if t.session.is_some() {
                    save_session(conn, &session)?;
                }
                answers.push(Ok(t));
            }
        }
    }
    Ok(answers)
}

fn update_session_in(
    conn: &mut SqliteConnection,
    id: SessionId,
    change: SessionChange,
    now: DateTime<Utc>,
) -> Tx<Option<(SessionStatus, SessionStatus)>> {
    let mut session = load_session(conn, id)?.ok_or_else(|| Error::SessionNotFound { name: id.to_string() })?;
    let from = session.status;
    if change.status != from {
        from.transition(change.status)?;
    }
    let kernel_status = KernelStatus::from(change.status);
    for mut kernel in load_kernels(conn, id)? {
        if kernel.status.is_dead() || kernel.status == kernel_status || !kernel.status.can_transition_to(kernel_status)
        {
            continue;
        }
        enter(conn, &mut kernel, kernel_status, now)?;
        if change.status_info.is_some() {
            kernel.status_info = change.status_info.clone();
        }
        save_kernel(conn, &kernel)?;
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
    save_session(conn, &session)?;
    Ok((change.status != from).then_some((from, change.status)))
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn insert_keypair(&self, keypair: &KeyPair) -> Result<()> {
        let row = KeyPairRow::from_model(keypair);
        self.with_conn(move |conn| {
            let access_key = row.access_key.clone();
            diesel::insert_into(keypairs::table)
                .values(&row)
                .execute(conn)
                .map_err(taken(|| format!("keypair {access_key}")))?;
            Ok(())
        })
        .await
    }

    async fn keypair(&self, access_key: &AccessKey) -> Result<Option<KeyPair>> {
        let key = access_key.0.clone();
        self.with_conn(move |conn| {
            let row = keypairs::table.find(key).select(KeyPairRow::as_select()).first(conn).optional()?;
            row.map(KeyPairRow::into_model).transpose()
        })
        .await
    }

    async fn list_keypairs(&self) -> Result<Vec<KeyPair>> {
        self.with_conn(|conn| {
            keypairs::table
                .order((keypairs::created_at.asc(), keypairs::rowid.asc()))
                .select(KeyPairRow::as_select())
                .load(conn)?
                .into_iter()
                .map(KeyPairRow::into_model)
                .collect()
        })
        .await
    }

    async fn set_keypair_active(&self, access_key: &AccessKey, active: bool) -> Result<()> {
        let key = access_key.0.clone();
        self.with_conn(move |conn| {
            let n = diesel::update(keypairs::table.find(&key)).set(keypairs::is_active.eq(active)).execute(conn)?;
            if n == 0 {
                return Err(Error::NotFound { what: format!("keypair {key}") }.into());
            }
            Ok(())
        })
        .await
    }

    async fn put_domain(&self, domain: &Domain) -> Result<()> {
        let domain = domain.clone();
        self.write(move |conn| admin::put_domain(conn, &domain)).await
    }

    async fn domain(&self, name: &str) -> Result<Option<Domain>> {
        let name = name.to_owned();
        self.with_conn(move |conn| admin::domain(conn, &name)).await
    }

    async fn list_domains(&self) -> Result<Vec<Domain>> {
        self.with_conn(admin::list_domains).await
    }

    async fn delete_domain(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.write(move |conn| admin::delete_domain(conn, &name)).await
    }

    async fn put_group(&self, group: &Group) -> Result<()> {
        let group = group.clone();
        self.write(move |conn| admin::put_group(conn, &group)).await
    }

    async fn group(&self, domain: &str, name: &str) -> Result<Option<Group>> {
        let (domain, name) = (domain.to_owned(), name.to_owned());
        self.with_conn(move |conn| admin::group(conn, &domain, &name)).await
    }

    async fn list_groups(&self, domain: Option<&str>) -> Result<Vec<Group>> {
        let domain = domain.map(str::to_owned);
        self.with_conn(move |conn| admin::list_groups(conn, domain.as_deref())).await
    }

    async fn delete_group(&self, domain: &str, name: &str) -> Result<()> {
        let (domain, name) = (domain.to_owned(), name.to_owned());
        self.write(move |conn| admin::delete_group(conn, &domain, &name)).await
    }

    async fn put_user(&self, user: &User) -> Result<()> {
        let user = user.clone();
        self.write(move |conn| admin::put_user(conn, &user)).await
    }

    async fn user(&self, email: &str) -> Result<Option<User>> {
        let email = email.to_owned();
        self.read(move |conn| admin::user(conn, &email)).await
    }

    async fn list_users(&self, domain: Option<&str>) -> Result<Vec<User>> {
        let domain = domain.map(str::to_owned);
        self.read(move |conn| admin::list_users(conn, domain.as_deref())).await
    }

    async fn delete_user(&self, email: &str) -> Result<()> {
        let email = email.to_owned();
        self.write(move |conn| admin::delete_user(conn, &email)).await
    }

    async fn put_resource_policy(&self, policy: &KeyPairResourcePolicy) -> Result<()> {
        let policy = policy.clone();
        self.write(move |conn| admin::put_resource_policy(conn, &policy)).await
    }

    async fn resource_policy(&self, name: &str) -> Result<Option<KeyPairResourcePolicy>> {
        let name = name.to_owned();
        self.with_conn(move |conn| admin::resource_policy(conn, &name)).await
    }

    async fn list_resource_policies(&self) -> Result<Vec<KeyPairResourcePolicy>> {
        self.with_conn(admin::list_resource_policies).await
    }

    async fn delete_resource_policy(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.write(move |conn| admin::delete_resource_policy(conn, &name)).await
    }

    async fn put_scaling_group(&self, group: &ScalingGroup) -> Result<()> {
        let group = group.clone();
        self.write(move |conn| admin::put_scaling_group(conn, &group)).await
    }

    async fn scaling_group(&self, name: &str) -> Result<Option<ScalingGroup>> {
        let name = name.to_owned();
        self.with_conn(move |conn| admin::scaling_group(conn, &name)).await
    }

    async fn list_scaling_groups(&self) -> Result<Vec<ScalingGroup>> {
        self.with_conn(admin::list_scaling_groups).await
    }

    async fn delete_scaling_group(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.write(move |conn| admin::delete_scaling_group(conn, &name)).await
    }

    async fn upsert_agent(&self, heartbeat: &AgentHeartbeat, now: DateTime<Utc>) -> Result<AgentInfo> {
        let hb = heartbeat.clone();
        self.write(move |conn| {
            let available = to_json(&hb.available_slots)?;
            let images = to_json(&hb.images)?;
            let known = diesel::update(agents::table.find(hb.id.as_str()))
                .set((
                    agents::status.eq(AgentStatus::Alive.as_str()),
                    agents::addr.eq(&hb.addr),
                    agents::scaling_group.eq(&hb.scaling_group),
                    agents::architecture.eq(&hb.architecture),
                    agents::available_slots.eq(&available),
                    agents::images.eq(&images),
                    agents::runtime.eq(&hb.runtime),
                    agents::version.eq(&hb.version),
                ))
                .execute(conn)?;
            if known == 0 {
                let row = AgentRow {
                    id: hb.id.0.clone(),
                    status: AgentStatus::Alive.as_str().to_owned(),
                    addr: hb.addr.clone(),
                    scaling_group: hb.scaling_group.clone(),
                    architecture: hb.architecture.clone(),
                    available_slots: available,
                    occupied_slots: to_json(&ResourceSlots::new())?,
                    images,
                    schedulable: true,
                    runtime: hb.runtime.clone(),
                    version: hb.version.clone(),
                    first_contact: ts(now),
                    lost_at: None,
                };
                diesel::insert_into(agents::table).values(&row).execute(conn)?;
            }
            load_agent(conn, &hb.id)?.ok_or_else(|| Error::internal("an upserted agent vanished").into())
        })
        .await
    }

    async fn agent(&self, id: &AgentId) -> Result<Option<AgentInfo>> {
        let id = id.clone();
        self.with_conn(move |conn| load_agent(conn, &id)).await
    }

    async fn list_agents(&self) -> Result<Vec<AgentInfo>> {
        self.with_conn(|conn| {
            agents::table
                .order(agents::id.asc())
                .select(AgentRow::as_select())
                .load(conn)?
                .into_iter()
                .map(AgentRow::into_model)
                .collect()
        })
        .await
    }

    async fn set_agent_status(&self, id: &AgentId, status: AgentStatus, now: DateTime<Utc>) -> Result<()> {
        let id = id.clone();
        self.with_conn(move |conn| {
            let target = agents::table.find(id.as_str());
            let n = if status == AgentStatus::Lost {
                diesel::update(target)
                    .set((agents::status.eq(status.as_str()), agents::lost_at.eq(ts(now))))
                    .execute(conn)?
            } else {
                diesel::update(target).set(agents::status.eq(status.as_str())).execute(conn)?
            };
            if n == 0 {
                return Err(Error::NotFound { what: format!("agent {id}") }.into());
            }
            Ok(())
        })
        .await
    }

    async fn insert_session(&self, session: &SessionRecord, kernels: &[KernelRecord]) -> Result<()> {
        if let Some(k) = kernels.iter().find(|k| k.session_id != session.id) {
            return Err(Error::InvalidParams {
                msg: format!("kernel {} belongs to session {}, not {}", k.id, k.session_id, session.id),
            });
        }
        let row = SessionRow::from_model(session)?;
        let kernel_rows = kernels.iter().map(KernelRow::from_model).collect::<Tx<Vec<_>>>()?;
        self.write(move |conn| {
            let live: i64 = sessions::table
                .filter(sessions::access_key.eq(&row.access_key))
                .filter(sessions::name.eq(&row.name))
                .filter(sessions::status.ne_all(final_session_statuses()))
                .count()
                .get_result(conn)?;
            let already = || format!("session {:?} of {}", row.name, row.access_key);
            if live > 0 {
                return Err(Error::AlreadyExists { msg: already() }.into());
            }
            diesel::insert_into(sessions::table).values(&row).execute(conn).map_err(taken(already))?;
            for k in &kernel_rows {
                diesel::insert_into(kernels::table)
                    .values(k)
                    .execute(conn)
                    .map_err(taken(|| format!("kernel {}", k.id)))?;
            }
            Ok(())
        })
        .await
    }

    async fn rename_session(&self, id: SessionId, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.write(move |conn| {
            let session = load_session(conn, id)?.ok_or(Error::SessionNotFound { name: id.to_string() })?;
            if session.status.is_final() {
                return Err(Error::Conflict { msg: format!("session {id} is {}", session.status) }.into());
            }
            let taken_by_other: i64 = sessions::table
                .filter(sessions::access_key.eq(session.access_key.as_str()))
                .filter(sessions::name.eq(&name))
                .filter(sessions::id.ne(id.to_string()))
                .filter(sessions::status.ne_all(final_session_statuses()))
                .count()
                .get_result(conn)?;
            if taken_by_other > 0 {
                return Err(Error::AlreadyExists { msg: format!("session {name:?} of {}", session.access_key) }.into());
            }
            diesel::update(sessions::table.find(id.to_string())).set(sessions::name.eq(&name)).execute(conn)?;
            Ok(())
        })
        .await
    }

    async fn session(&self, id: SessionId) -> Result<Option<SessionRecord>> {
        self.with_conn(move |conn| load_session(conn, id)).await
    }

    async fn find_session(&self, owner: &AccessKey, name_or_id: &str) -> Result<Option<SessionRecord>> {
        let owner = owner.0.clone();
        let key = name_or_id.to_owned();
        self.read(move |conn| {
            if let Ok(id) = Uuid::parse_str(&key) {
                let by_id = sessions::table
                    .find(id.to_string())
                    .filter(sessions::access_key.eq(&owner))
                    .select(SessionRow::as_select())
                    .first(conn)
                    .optional()?;
                if let Some(row) = by_id {
                    return row.into_model().map(Some);
                }
            }
            let named = || {
                sessions::table
                    .filter(sessions::access_key.eq(owner.clone()))
                    .filter(sessions::name.eq(key.clone()))
                    .order((sessions::created_at.desc(), sessions::rowid.desc()))
                    .select(SessionRow::as_select())
                    .into_boxed()
            };
            let row = match named().filter(sessions::status.ne_all(final_session_statuses())).first(conn).optional()? {
                Some(live) => Some(live),
                None => named().first(conn).optional()?,
            };
            row.map(SessionRow::into_model).transpose()
        })
        .await
    }

    async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionRecord>> {
        let filter = filter.clone();
        self.with_conn(move |conn| {
            let mut query = sessions::table.select(SessionRow::as_select()).into_boxed();
            if let Some(owner) = filter.access_key {
                query = query.filter(sessions::access_key.eq(owner.0));
            }
            if let Some(statuses) = filter.statuses {
                query = query.filter(sessions::status.eq_any(statuses.into_iter().map(SessionStatus::as_str)));
            }
            query = query.order((sessions::created_at.desc(), sessions::rowid.desc()));
            if let Some(limit) = filter.limit {
                query = query.limit(i64::try_from(limit).unwrap_or(i64::MAX));
            }
            query.load(conn)?.into_iter().map(SessionRow::into_model).collect()
        })
        .await
    }

    async fn pending_sessions(&self) -> Result<Vec<(SessionRecord, Vec<KernelRecord>)>> {
        self.read(|conn| {
            let pending = SessionStatus::Pending.as_str();
            let sessions = sessions::table
                .filter(sessions::status.eq(pending))
                .order((sessions::created_at.asc(), sessions::rowid.asc()))
                .select(SessionRow::as_select())
                .load(conn)?;
            let kernel_rows = kernels::table
                .inner_join(sessions::table)
                .filter(sessions::status.eq(pending))
                .select(KernelRow::as_select())
                .load(conn)?;
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
        })
        .await
    }

    async fn kernels(&self, session: SessionId) -> Result<Vec<KernelRecord>> {
        self.with_conn(move |conn| load_kernels(conn, session)).await
    }

    async fn kernel(&self, id: KernelId) -> Result<Option<KernelRecord>> {
        self.with_conn(move |conn| load_kernel(conn, id)).await
    }

    async fn kernels_on_agent(&self, agent: &AgentId) -> Result<Vec<KernelRecord>> {
        let agent = agent.0.clone();
        self.with_conn(move |conn| {
            kernels::table
                .filter(kernels::agent_id.eq(agent))
                .filter(kernels::status.eq_any(kernel_statuses(KernelStatus::holds_resources)))
                .order((kernels::created_at.asc(), kernels::id.asc()))
                .select(KernelRow::as_select())
                .load(conn)?
                .into_iter()
                .map(KernelRow::into_model)
                .collect()
        })
        .await
    }

    async fn allocate_batch(&self, batch: &[Allocation], now: DateTime<Utc>) -> Result<Vec<Result<Allocated>>> {
        let batch = batch.to_vec();
        let now = now.trunc_subsecs(6);
        self.write(move |conn| allocate_batch_in(conn, &batch, now)).await
    }

    async fn update_kernels(
        &self,
        changes: &[(KernelId, KernelChange)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<KernelTransition>>> {
        let changes = changes.to_vec();
        let now = now.trunc_subsecs(6);
        self.write(move |conn| update_kernels_in(conn, &changes, now)).await
    }

    async fn update_session(
        &self,
        id: SessionId,
        change: SessionChange,
        now: DateTime<Utc>,
    ) -> Result<Option<(SessionStatus, SessionStatus)>> {
        let now = now.trunc_subsecs(6);
        self.write(move |conn| update_session_in(conn, id, change, now)).await
    }
    async fn insert_vfolder(&self, folder: &VFolder) -> Result<()> {
        let folder = folder.clone();
        self.write(move |conn| vfolder::insert(conn, &folder)).await
    }

    async fn vfolder(&self, id: VFolderId) -> Result<Option<VFolder>> {
        self.read(move |conn| vfolder::get(conn, id)).await
    }

    async fn list_vfolders(&self) -> Result<Vec<VFolder>> {
        self.read(vfolder::list).await
    }

    async fn accessible_vfolders(&self, email: &str) -> Result<Vec<VFolderAccess>> {
        let email = email.to_owned();
        self.read(move |conn| vfolder::accessible(conn, &email)).await
    }

    async fn rename_vfolder(&self, id: VFolderId, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.write(move |conn| vfolder::rename(conn, id, &name)).await
    }

    async fn update_vfolder_options(
        &self,
        id: VFolderId,
        permission: VFolderPermission,
        cloneable: bool,
    ) -> Result<()> {
        self.write(move |conn| vfolder::update_options(conn, id, permission, cloneable)).await
    }

    async fn delete_vfolder(&self, id: VFolderId) -> Result<()> {
        self.write(move |conn| vfolder::delete(conn, id)).await
    }

    async fn set_vfolder_share(&self, id: VFolderId, email: &str, permission: Option<VFolderPermission>) -> Result<()> {
        let email = email.to_owned();
        self.write(move |conn| vfolder::set_share(conn, id, &email, permission)).await
    }

    async fn vfolder_shares(&self, id: VFolderId) -> Result<Vec<(String, VFolderPermission)>> {
        self.read(move |conn| vfolder::shares(conn, id)).await
    }

    async fn insert_vfolder_invitation(&self, invitation: &VFolderInvitation) -> Result<()> {
        let invitation = invitation.clone();
        self.write(move |conn| vfolder::insert_invitation(conn, &invitation)).await
    }

    async fn vfolder_invitation(&self, id: InvitationId) -> Result<Option<VFolderInvitation>> {
        self.read(move |conn| vfolder::invitation(conn, id)).await
    }

    async fn pending_vfolder_invitations(&self, invitee: &str) -> Result<Vec<VFolderInvitation>> {
        let invitee = invitee.to_owned();
        self.read(move |conn| vfolder::pending_invitations(conn, &invitee)).await
    }

    async fn answer_vfolder_invitation(
        &self,
        id: InvitationId,
        state: InvitationState,
        now: DateTime<Utc>,
    ) -> Result<VFolderInvitation> {
        let now = now.trunc_subsecs(6);
        self.write(move |conn| vfolder::answer_invitation(conn, id, state, now)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_as_text_and_keep_microseconds() {
        let early = DateTime::parse_from_rfc3339("2025-01-02T03:04:05.123456789Z").unwrap().with_timezone(&Utc);
        let late = early + chrono::Duration::seconds(10);
        assert_eq!(ts(early), "2025-01-02T03:04:05.123456Z");
        assert!(ts(early) < ts(late));
        assert_eq!(parse_ts(&ts(early)).unwrap(), early.trunc_subsecs(6));
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
