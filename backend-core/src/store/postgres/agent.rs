//! Agents and scaling groups of the PostgreSQL store ([`AgentStore`]).

use super::*;
use crate::store::rows::{conflict, not_found, taken};
use crate::store::AgentStore;
use async_trait::async_trait;

pub(super) async fn load_agent(conn: &mut AsyncPgConnection, id: &AgentId, lock: Lock) -> Tx<Option<AgentInfo>> {
    let query = agents::table.find(id.as_str()).select(AgentRow::as_select());
    let row = match lock {
        Lock::No => query.first(conn).await.optional()?,
        Lock::ForUpdate => query.for_update().first(conn).await.optional()?,
    };
    row.map(AgentRow::into_model).transpose()
}

async fn upsert_agent(conn: &mut AsyncPgConnection, hb: &AgentHeartbeat, now: DateTime<Utc>) -> Tx<AgentInfo> {
    let row = AgentRow::first_contact(hb, now)?;
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

async fn scaling_group(conn: &mut AsyncPgConnection, name: &str) -> Tx<Option<ScalingGroup>> {
    let row = scaling_groups::table.find(name).select(ScalingGroupRow::as_select()).first(conn).await.optional()?;
    row.map(ScalingGroupRow::into_model).transpose()
}

async fn delete_scaling_group(conn: &mut AsyncPgConnection, name: &str) -> Tx<()> {
    if scaling_group(conn, name).await?.is_none() {
        return Err(not_found(format!("scaling group {name}")));
    }
    let served: i64 = agents::table.filter(agents::scaling_group.eq(name)).count().get_result(conn).await?;
    if served > 0 {
        return Err(conflict(format!("scaling group {name} is served by {served} agent(s)")));
    }
    diesel::delete(scaling_groups::table.find(name)).execute(conn).await?;
    Ok(())
}

#[async_trait]
impl AgentStore for PostgresStore {
    async fn upsert_agent(&self, heartbeat: &AgentHeartbeat, now: DateTime<Utc>) -> Result<AgentInfo> {
        transaction!(self, Mode::Write, |conn| upsert_agent(conn, heartbeat, now))
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

    async fn insert_scaling_group(&self, group: &ScalingGroup) -> Result<()> {
        let row = ScalingGroupRow::from_model(group);
        transaction!(self, Mode::Statement, |conn| async {
            diesel::insert_into(scaling_groups::table)
                .values(&row)
                .execute(conn)
                .await
                .map_err(taken(|| format!("scaling group {}", row.name)))?;
            Ok(())
        })
    }

    async fn put_scaling_group(&self, group: &ScalingGroup) -> Result<()> {
        let row = ScalingGroupRow::from_model(group);
        transaction!(self, Mode::Write, |conn| async {
            diesel::insert_into(scaling_groups::table)
                .values(&row)
                .on_conflict(scaling_groups::name)
                .do_update()
                .set((
                    scaling_groups::description.eq(excluded(scaling_groups::description)),
                    scaling_groups::is_active.eq(excluded(scaling_groups::is_active)),
                    scaling_groups::scheduler.eq(excluded(scaling_groups::scheduler)),
                    scaling_groups::agent_selector.eq(excluded(scaling_groups::agent_selector)),
                ))
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    async fn scaling_group(&self, name: &str) -> Result<Option<ScalingGroup>> {
        transaction!(self, Mode::Read, |conn| scaling_group(conn, name))
    }

    async fn list_scaling_groups(&self) -> Result<Vec<ScalingGroup>> {
        transaction!(self, Mode::Read, |conn| async {
            let rows = scaling_groups::table
                .order(scaling_groups::name.asc())
                .select(ScalingGroupRow::as_select())
                .load(conn)
                .await?;
            rows.into_iter().map(ScalingGroupRow::into_model).collect::<Tx<Vec<_>>>()
        })
    }

    async fn delete_scaling_group(&self, name: &str) -> Result<()> {
        transaction!(self, Mode::Write, |conn| delete_scaling_group(conn, name))
    }
}
