//! Sessions and kernels of the SQLite store ([`SessionStore`]): each change loads the rows, applies the shared
//! checks and changes of [`changes`] in memory, and writes back what changed, inside one write transaction.

use super::agent::load_agent;
use super::*;
use crate::slots::ResourceSlots;
use crate::status::{KernelStatus, SessionStatus};
use crate::store::changes;
use crate::store::rows::{capped, final_session_statuses, kernel_statuses, sort_kernels, taken};
use crate::store::{Allocated, Allocation, KernelChange, KernelTransition, SessionChange, SessionFilter, SessionStore};
use async_trait::async_trait;
use chrono::SubsecRound;
use std::collections::HashMap;

fn load_session(conn: &mut SqliteConnection, id: SessionId) -> Tx<Option<SessionRecord>> {
    let row = sessions::table.find(id.to_string()).select(SessionRow::as_select()).first(conn).optional()?;
    row.map(SessionRow::into_model).transpose()
}

fn load_kernel(conn: &mut SqliteConnection, id: KernelId) -> Tx<Option<KernelRecord>> {
    let row = kernels::table.find(id.to_string()).select(KernelRow::as_select()).first(conn).optional()?;
    row.map(KernelRow::into_model).transpose()
}

fn load_kernels(conn: &mut SqliteConnection, session: SessionId) -> Tx<Vec<KernelRecord>> {
    let rows =
        kernels::table.filter(kernels::session_id.eq(session.to_string())).select(KernelRow::as_select()).load(conn)?;
    let mut kernels = rows.into_iter().map(KernelRow::into_model).collect::<Tx<Vec<_>>>()?;
    sort_kernels(&mut kernels);
    Ok(kernels)
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
    let mut kernels = load_kernels(conn, id)?;
    let mut agents = HashMap::new();
    if KernelStatus::from(change.status).is_dead() {
        for agent_id in changes::holders(&kernels) {
            if let Some(agent) = load_agent(conn, &agent_id)? {
                agents.insert(agent_id, agent);
            }
        }
    }
    let (moved, changed) = changes::change_session(&mut session, &mut kernels, &mut agents, change, now)?;
    for agent in agents.values() {
        save_agent_occupied(conn, &agent.id, &agent.occupied_slots)?;
    }
    for i in changed {
        save_kernel(conn, &kernels[i])?;
    }
    save_session(conn, &session)?;
    Ok(moved)
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn insert_session(&self, session: &SessionRecord, kernels: &[KernelRecord]) -> Result<()> {
        let (row, kernel_rows) = new_session_rows(session, kernels)?;
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
        let (owner, key) = (owner.0.clone(), name_or_id.to_owned());
        self.read(move |conn| find_session_in(conn, &owner, &key)).await
    }

    async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionRecord>> {
        let filter = filter.clone();
        self.with_conn(move |conn| {
            let mut query = sessions_matching(&filter).order((sessions::created_at.desc(), sessions::rowid.desc()));
            if let Some(limit) = filter.limit {
                query = query.limit(i64::try_from(limit).unwrap_or(i64::MAX));
            }
            query.select(SessionRow::as_select()).load(conn)?.into_iter().map(SessionRow::into_model).collect()
        })
        .await
    }

    async fn count_sessions(&self, filter: &SessionFilter) -> Result<usize> {
        let filter = filter.clone();
        self.with_conn(move |conn| {
            let n: i64 = sessions_matching(&filter).count().get_result(conn)?;
            Ok(capped(n, filter.limit))
        })
        .await
    }

    async fn pending_sessions(&self) -> Result<Vec<(SessionRecord, Vec<KernelRecord>)>> {
        self.read(pending_sessions_in).await
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
}
