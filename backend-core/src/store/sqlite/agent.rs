//! Agents and scaling groups of the SQLite store ([`AgentStore`]).

use super::*;
use crate::store::rows::{conflict, not_found, taken};
use crate::store::AgentStore;
use async_trait::async_trait;

pub(super) fn load_agent(conn: &mut SqliteConnection, id: &AgentId) -> Tx<Option<AgentInfo>> {
    let row = agents::table.find(id.as_str()).select(AgentRow::as_select()).first(conn).optional()?;
    row.map(AgentRow::into_model).transpose()
}

fn upsert_agent(conn: &mut SqliteConnection, hb: &AgentHeartbeat, now: DateTime<Utc>) -> Tx<AgentInfo> {
    let row = AgentRow::first_contact(hb, now)?;
    // A known agent keeps its occupied slots, schedulability, first contact and `lost_at`.
    let known = diesel::update(agents::table.find(hb.id.as_str()))
        .set((
            agents::status.eq(&row.status),
            agents::addr.eq(&row.addr),
            agents::scaling_group.eq(&row.scaling_group),
            agents::architecture.eq(&row.architecture),
            agents::available_slots.eq(&row.available_slots),
            agents::images.eq(&row.images),
            agents::runtime.eq(&row.runtime),
            agents::version.eq(&row.version),
        ))
        .execute(conn)?;
    if known == 0 {
        diesel::insert_into(agents::table).values(&row).execute(conn)?;
    }
    load_agent(conn, &hb.id)?.ok_or_else(|| Error::internal("an upserted agent vanished").into())
}

fn put_scaling_group(conn: &mut SqliteConnection, g: &ScalingGroup) -> Tx<()> {
    let n = diesel::update(scaling_groups::table.find(&g.name))
        .set((
            scaling_groups::description.eq(&g.description),
            scaling_groups::is_active.eq(g.is_active),
            scaling_groups::scheduler.eq(&g.scheduler),
            scaling_groups::agent_selector.eq(&g.agent_selector),
        ))
        .execute(conn)?;
    if n == 0 {
        diesel::insert_into(scaling_groups::table).values(&ScalingGroupRow::from_model(g)).execute(conn)?;
    }
    Ok(())
}

fn scaling_group(conn: &mut SqliteConnection, name: &str) -> Tx<Option<ScalingGroup>> {
    let row = scaling_groups::table.find(name).select(ScalingGroupRow::as_select()).first(conn).optional()?;
    row.map(ScalingGroupRow::into_model).transpose()
}

fn delete_scaling_group(conn: &mut SqliteConnection, name: &str) -> Tx<()> {
    if scaling_group(conn, name)?.is_none() {
        return Err(not_found(format!("scaling group {name}")));
    }
    let served: i64 = agents::table.filter(agents::scaling_group.eq(name)).count().get_result(conn)?;
    if served > 0 {
        return Err(conflict(format!("scaling group {name} is served by {served} agent(s)")));
    }
    diesel::delete(scaling_groups::table.find(name)).execute(conn)?;
    Ok(())
}

#[async_trait]
impl AgentStore for SqliteStore {
    async fn upsert_agent(&self, heartbeat: &AgentHeartbeat, now: DateTime<Utc>) -> Result<AgentInfo> {
        let hb = heartbeat.clone();
        self.write(move |conn| upsert_agent(conn, &hb, now)).await
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

    async fn insert_scaling_group(&self, group: &ScalingGroup) -> Result<()> {
        let row = ScalingGroupRow::from_model(group);
        self.with_conn(move |conn| {
            let name = row.name.clone();
            diesel::insert_into(scaling_groups::table)
                .values(&row)
                .execute(conn)
                .map_err(taken(|| format!("scaling group {name}")))?;
            Ok(())
        })
        .await
    }

    async fn put_scaling_group(&self, group: &ScalingGroup) -> Result<()> {
        let group = group.clone();
        self.write(move |conn| put_scaling_group(conn, &group)).await
    }

    async fn scaling_group(&self, name: &str) -> Result<Option<ScalingGroup>> {
        let name = name.to_owned();
        self.with_conn(move |conn| scaling_group(conn, &name)).await
    }

    async fn list_scaling_groups(&self) -> Result<Vec<ScalingGroup>> {
        self.with_conn(|conn| {
            let rows = scaling_groups::table
                .order(scaling_groups::name.asc())
                .select(ScalingGroupRow::as_select())
                .load(conn)?;
            rows.into_iter().map(ScalingGroupRow::into_model).collect()
        })
        .await
    }

    async fn delete_scaling_group(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.write(move |conn| delete_scaling_group(conn, &name)).await
    }
}
