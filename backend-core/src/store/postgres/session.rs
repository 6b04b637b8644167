//! Sessions and kernels of the PostgreSQL store ([`SessionStore`]): each change locks its rows in the global order
//! (sessions, their kernels, agents, each by id), applies the shared checks and changes of [`changes`] in memory,
//! and writes back what changed with one statement per table.

use super::*;
use crate::slots::ResourceSlots;
use crate::status::{KernelStatus, SessionStatus};
use crate::store::changes;
use crate::store::rows::{
    capped, final_session_statuses, holding_session_statuses, kernel_statuses, sort_kernels, taken,
};
use crate::store::{
    Allocated, Allocation, KernelChange, KernelTransition, ScopeOccupancy, SessionChange, SessionFilter, SessionStore,
};
use async_trait::async_trait;
use diesel::sql_types::{Array, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use std::collections::{BTreeMap, HashMap};

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

/// Moves a whole session under the locks of the session, its kernels and, when they die, the agents they hold
/// slots on (the global lock order).
async fn update_session_in(
    conn: &mut AsyncPgConnection,
    id: SessionId,
    change: SessionChange,
    now: DateTime<Utc>,
) -> Tx<Option<(SessionStatus, SessionStatus)>> {
    let mut session = load_session(conn, id, Lock::ForUpdate)
        .await?
        .ok_or_else(|| Error::SessionNotFound { name: id.to_string() })?;
    let mut kernels = load_kernels(conn, id, Lock::ForUpdate).await?;
    let mut agents = HashMap::new();
    if KernelStatus::from(change.status).is_dead() {
        let ids: Vec<String> = changes::holders(&kernels).into_iter().map(|a| a.0).collect();
        agents = lock_agents(conn, &ids).await?;
    }
    let occupied_before: HashMap<AgentId, ResourceSlots> =
        agents.iter().map(|(id, a)| (id.clone(), a.occupied_slots.clone())).collect();
    let (moved, changed) = changes::change_session(&mut session, &mut kernels, &mut agents, change, now)?;
    for agent in agents.values().filter(|a| occupied_before[&a.id] != a.occupied_slots) {
        save_agent_occupied(conn, &agent.id, &agent.occupied_slots).await?;
    }
    for i in changed {
        save_kernel(conn, &kernels[i]).await?;
    }
    save_session(conn, &session).await?;
    Ok(moved)
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

#[async_trait]
impl SessionStore for PostgresStore {
    async fn insert_session(&self, session: &SessionRecord, kernels: &[KernelRecord]) -> Result<()> {
        let (row, kernel_rows) = new_session_rows(session, kernels)?;
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
            let mut query = sessions_matching(filter).order((sessions::created_at.desc(), sessions::seq.desc()));
            if let Some(limit) = filter.limit {
                query = query.limit(i64::try_from(limit).unwrap_or(i64::MAX));
            }
            let rows = query.select(SessionRow::as_select()).load(conn).await?;
            rows.into_iter().map(SessionRow::into_model).collect::<Tx<Vec<_>>>()
        })
    }

    async fn count_sessions(&self, filter: &SessionFilter) -> Result<usize> {
        transaction!(self, Mode::Statement, |conn| async {
            let n: i64 = sessions_matching(filter).count().get_result(conn).await?;
            Ok(capped(n, filter.limit))
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
        let holding = holding_session_statuses();
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
        let holding = holding_session_statuses();
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
}
