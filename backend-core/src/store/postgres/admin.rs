//! Administration records of the PostgreSQL store: domains, groups and their members, users, keypair resource policies
//! and scaling groups. Each write runs inside the caller's write transaction; a replaced record keeps its
//! `created_at`.

use super::schema::{
    agents, association_groups_users, domains, groups, keypair_resource_policies, keypairs, scaling_groups, users,
    vfolders,
};
use super::{from_json, parse, taken, to_json, to_u32, ts, Tx};
use crate::error::Error;
use crate::model::{Domain, Group, KeyPairResourcePolicy, ScalingGroup, User};
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::{
    ExpressionMethods, Insertable, OptionalExtension, QueryDsl, Queryable, Selectable, SelectableHelper,
};
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

fn not_found(what: String) -> super::Failure {
    Error::NotFound { what }.into()
}

fn conflict(msg: String) -> super::Failure {
    Error::Conflict { msg }.into()
}

fn to_i64(what: &str, n: u64) -> Tx<i64> {
    i64::try_from(n).map_err(|_| Error::InvalidParams { msg: format!("{what} {n} is too large") }.into())
}

fn to_u64(what: &str, n: i64) -> Tx<u64> {
    u64::try_from(n).map_err(|e| super::corrupt(what, &n.to_string(), e))
}

// ---- domains ----

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = domains, check_for_backend(Pg))]
pub(super) struct DomainRow {
    name: String,
    description: Option<String>,
    is_active: bool,
    total_resource_slots: Value,
    created_at: DateTime<Utc>,
}

impl DomainRow {
    fn into_model(self) -> Tx<Domain> {
        Ok(Domain {
            created_at: self.created_at,
            total_resource_slots: from_json("total resource slots", self.total_resource_slots)?,
            name: self.name,
            description: self.description,
            is_active: self.is_active,
        })
    }
}

pub(super) async fn put_domain(conn: &mut AsyncPgConnection, d: &Domain) -> Tx<()> {
    let row = DomainRow {
        name: d.name.clone(),
        description: d.description.clone(),
        is_active: d.is_active,
        total_resource_slots: to_json(&d.total_resource_slots)?,
        created_at: ts(d.created_at),
    };
    diesel::insert_into(domains::table)
        .values(&row)
        .on_conflict(domains::name)
        .do_update()
        .set((
            domains::description.eq(excluded(domains::description)),
            domains::is_active.eq(excluded(domains::is_active)),
            domains::total_resource_slots.eq(excluded(domains::total_resource_slots)),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

pub(super) async fn domain(conn: &mut AsyncPgConnection, name: &str) -> Tx<Option<Domain>> {
    let row = domains::table.find(name).select(DomainRow::as_select()).first(conn).await.optional()?;
    row.map(DomainRow::into_model).transpose()
}

pub(super) async fn list_domains(conn: &mut AsyncPgConnection) -> Tx<Vec<Domain>> {
    let rows = domains::table.order(domains::name.asc()).select(DomainRow::as_select()).load(conn).await?;
    rows.into_iter().map(DomainRow::into_model).collect()
}

pub(super) async fn delete_domain(conn: &mut AsyncPgConnection, name: &str) -> Tx<()> {
    if domain(conn, name).await?.is_none() {
        return Err(not_found(format!("domain {name}")));
    }
    let group_count: i64 = groups::table.filter(groups::domain_name.eq(name)).count().get_result(conn).await?;
    let user_count: i64 = users::table.filter(users::domain_name.eq(name)).count().get_result(conn).await?;
    if group_count + user_count > 0 {
        return Err(conflict(format!("domain {name} still has {group_count} group(s) and {user_count} user(s)")));
    }
    diesel::delete(domains::table.find(name)).execute(conn).await?;
    Ok(())
}

// ---- groups ----

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = groups, check_for_backend(Pg))]
pub(super) struct GroupRow {
    id: Uuid,
    name: String,
    domain_name: String,
    description: Option<String>,
    is_active: bool,
    total_resource_slots: Value,
    created_at: DateTime<Utc>,
}

impl GroupRow {
    fn into_model(self) -> Tx<Group> {
        Ok(Group {
            created_at: self.created_at,
            total_resource_slots: from_json("total resource slots", self.total_resource_slots)?,
            name: self.name,
            domain: self.domain_name,
            description: self.description,
            is_active: self.is_active,
        })
    }
}

async fn group_row(conn: &mut AsyncPgConnection, domain: &str, name: &str) -> Tx<Option<GroupRow>> {
    Ok(groups::table
        .filter(groups::domain_name.eq(domain))
        .filter(groups::name.eq(name))
        .select(GroupRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

pub(super) async fn put_group(conn: &mut AsyncPgConnection, g: &Group) -> Tx<()> {
    if domain(conn, &g.domain).await?.is_none() {
        return Err(not_found(format!("domain {}", g.domain)));
    }
    let row = GroupRow {
        id: Uuid::new_v4(),
        name: g.name.clone(),
        domain_name: g.domain.clone(),
        description: g.description.clone(),
        is_active: g.is_active,
        total_resource_slots: to_json(&g.total_resource_slots)?,
        created_at: ts(g.created_at),
    };
    diesel::insert_into(groups::table)
        .values(&row)
        .on_conflict((groups::domain_name, groups::name))
        .do_update()
        .set((
            groups::description.eq(excluded(groups::description)),
            groups::is_active.eq(excluded(groups::is_active)),
            groups::total_resource_slots.eq(excluded(groups::total_resource_slots)),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

pub(super) async fn group(conn: &mut AsyncPgConnection, domain: &str, name: &str) -> Tx<Option<Group>> {
    group_row(conn, domain, name).await?.map(GroupRow::into_model).transpose()
}

pub(super) async fn list_groups(conn: &mut AsyncPgConnection, domain: Option<&str>) -> Tx<Vec<Group>> {
    let mut query = groups::table.select(GroupRow::as_select()).into_boxed();
    if let Some(d) = domain {
        query = query.filter(groups::domain_name.eq(d.to_owned()));
    }
    let rows = query.order((groups::domain_name.asc(), groups::name.asc())).load(conn).await?;
    rows.into_iter().map(GroupRow::into_model).collect()
}

pub(super) async fn delete_group(conn: &mut AsyncPgConnection, domain: &str, name: &str) -> Tx<()> {
    let row =
        group_row(conn, domain, name).await?.ok_or_else(|| not_found(format!("group {name} in domain {domain}")))?;
    let members: i64 = association_groups_users::table
        .filter(association_groups_users::group_id.eq(row.id))
        .count()
        .get_result(conn)
        .await?;
    if members > 0 {
        return Err(conflict(format!("group {name} in domain {domain} still has {members} member(s)")));
    }
    let folders: i64 = vfolders::table.filter(vfolders::group_id.eq(row.id)).count().get_result(conn).await?;
    if folders > 0 {
        return Err(conflict(format!("group {name} in domain {domain} still owns {folders} virtual folder(s)")));
    }
    diesel::delete(groups::table.find(row.id)).execute(conn).await?;
    Ok(())
}

// ---- users ----

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = users, check_for_backend(Pg))]
pub(super) struct UserRow {
    uuid: Uuid,
    username: String,
    email: String,
    domain_name: String,
    role: String,
    status: String,
    created_at: DateTime<Utc>,
}

impl UserRow {
    fn into_model(self, mut groups: Vec<String>) -> Tx<User> {
        groups.sort();
        Ok(User {
            role: parse("role", &self.role)?,
            created_at: self.created_at,
            is_active: self.status == "active",
            email: self.email,
            username: self.username,
            domain: self.domain_name,
            groups,
        })
    }
}

async fn user_row(conn: &mut AsyncPgConnection, email: &str) -> Tx<Option<UserRow>> {
    Ok(users::table.filter(users::email.eq(email)).select(UserRow::as_select()).first(conn).await.optional()?)
}

/// The names of the groups each user (by uuid) belongs to.
async fn memberships(conn: &mut AsyncPgConnection, user: Option<Uuid>) -> Tx<BTreeMap<Uuid, Vec<String>>> {
    let mut query = association_groups_users::table
        .inner_join(groups::table)
        .select((association_groups_users::user_id, groups::name))
        .into_boxed();
    if let Some(uuid) = user {
        query = query.filter(association_groups_users::user_id.eq(uuid));
    }
    let mut by_user: BTreeMap<Uuid, Vec<String>> = BTreeMap::new();
    for (user_id, group) in query.load::<(Uuid, String)>(conn).await? {
        by_user.entry(user_id).or_default().push(group);
    }
    Ok(by_user)
}

pub(super) async fn put_user(conn: &mut AsyncPgConnection, u: &User) -> Tx<()> {
    if domain(conn, &u.domain).await?.is_none() {
        return Err(not_found(format!("domain {}", u.domain)));
    }
    let mut group_ids = Vec::with_capacity(u.groups.len());
    for name in &u.groups {
        let row = group_row(conn, &u.domain, name)
            .await?
            .ok_or_else(|| not_found(format!("group {name} in domain {}", u.domain)))?;
        if !group_ids.contains(&row.id) {
            group_ids.push(row.id);
        }
    }
    let status = if u.is_active { "active" } else { "inactive" };
    let taken_name = || format!("username {:?}", u.username);
    let row = UserRow {
        uuid: Uuid::new_v4(),
        username: u.username.clone(),
        email: u.email.clone(),
        domain_name: u.domain.clone(),
        role: u.role.as_str().to_owned(),
        status: status.to_owned(),
        created_at: ts(u.created_at),
    };
    // A known user keeps its uuid and `created_at`; a username taken by another user fails on its own index.
    let uuid: Uuid = diesel::insert_into(users::table)
        .values(&row)
        .on_conflict(users::email)
        .do_update()
        .set((
            users::username.eq(excluded(users::username)),
            users::domain_name.eq(excluded(users::domain_name)),
            users::role.eq(excluded(users::role)),
            users::status.eq(excluded(users::status)),
        ))
        .returning(users::uuid)
        .get_result(conn)
        .await
        .map_err(taken(taken_name))?;
    diesel::delete(association_groups_users::table.filter(association_groups_users::user_id.eq(uuid)))
        .execute(conn)
        .await?;
    for group_id in group_ids {
        diesel::insert_into(association_groups_users::table)
            .values((association_groups_users::group_id.eq(group_id), association_groups_users::user_id.eq(uuid)))
            .execute(conn)
            .await?;
    }
    Ok(())
}

pub(super) async fn user(conn: &mut AsyncPgConnection, email: &str) -> Tx<Option<User>> {
    let Some(row) = user_row(conn, email).await? else { return Ok(None) };
    let groups = memberships(conn, Some(row.uuid)).await?.remove(&row.uuid).unwrap_or_default();
    row.into_model(groups).map(Some)
}

pub(super) async fn list_users(conn: &mut AsyncPgConnection, domain: Option<&str>) -> Tx<Vec<User>> {
    let mut query = users::table.select(UserRow::as_select()).into_boxed();
    if let Some(d) = domain {
        query = query.filter(users::domain_name.eq(d.to_owned()));
    }
    let rows = query.order(users::email.asc()).load(conn).await?;
    let mut by_user = memberships(conn, None).await?;
    rows.into_iter()
        .map(|row| {
            let groups = by_user.remove(&row.uuid).unwrap_or_default();
            row.into_model(groups)
        })
        .collect()
}

pub(super) async fn delete_user(conn: &mut AsyncPgConnection, email: &str) -> Tx<()> {
    let row = user_row(conn, email).await?.ok_or_else(|| not_found(format!("user {email}")))?;
    let keys: i64 = keypairs::table.filter(keypairs::user_id.eq(email)).count().get_result(conn).await?;
    if keys > 0 {
        return Err(conflict(format!("user {email} still has {keys} keypair(s)")));
    }
    let folders: i64 = vfolders::table.filter(vfolders::user_id.eq(row.uuid)).count().get_result(conn).await?;
    if folders > 0 {
        return Err(conflict(format!("user {email} still owns {folders} virtual folder(s)")));
    }
    diesel::delete(association_groups_users::table.filter(association_groups_users::user_id.eq(row.uuid)))
        .execute(conn)
        .await?;
    diesel::delete(users::table.find(row.uuid)).execute(conn).await?;
    Ok(())
}

// ---- keypair resource policies ----

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = keypair_resource_policies, check_for_backend(Pg))]
pub(super) struct PolicyRow {
    name: String,
    total_resource_slots: Value,
    max_session_lifetime: i64,
    max_concurrent_sessions: i64,
    max_containers_per_session: i64,
    idle_timeout: i64,
    max_pending_session_count: Option<i64>,
    allowed_vfolder_hosts: Value,
    max_vfolder_count: i64,
    max_quota_scope_size: Option<i64>,
    created_at: DateTime<Utc>,
}

impl PolicyRow {
    fn from_model(p: &KeyPairResourcePolicy) -> Tx<Self> {
        Ok(Self {
            name: p.name.clone(),
            total_resource_slots: to_json(&p.total_resource_slots)?,
            max_session_lifetime: to_i64("max_session_lifetime", p.max_session_lifetime)?,
            max_concurrent_sessions: i64::from(p.max_concurrent_sessions),
            max_containers_per_session: i64::from(p.max_containers_per_session),
            idle_timeout: to_i64("idle_timeout", p.idle_timeout)?,
            max_pending_session_count: p.max_pending_session_count.map(i64::from),
            allowed_vfolder_hosts: to_json(&p.allowed_vfolder_hosts)?,
            max_vfolder_count: i64::from(p.max_vfolder_count),
            max_quota_scope_size: p.max_quota_scope_size.map(|n| to_i64("max_quota_scope_size", n)).transpose()?,
            created_at: ts(p.created_at),
        })
    }

    fn into_model(self) -> Tx<KeyPairResourcePolicy> {
        Ok(KeyPairResourcePolicy {
            total_resource_slots: from_json("total resource slots", self.total_resource_slots)?,
            max_session_lifetime: to_u64("max session lifetime", self.max_session_lifetime)?,
            max_concurrent_sessions: to_u32("max concurrent sessions", self.max_concurrent_sessions)?,
            max_containers_per_session: to_u32("max containers per session", self.max_containers_per_session)?,
            idle_timeout: to_u64("idle timeout", self.idle_timeout)?,
            max_pending_session_count: self
                .max_pending_session_count
                .map(|n| to_u32("max pending session count", n))
                .transpose()?,
            allowed_vfolder_hosts: from_json("allowed vfolder hosts", self.allowed_vfolder_hosts)?,
            max_vfolder_count: to_u32("max vfolder count", self.max_vfolder_count)?,
            max_quota_scope_size: self.max_quota_scope_size.map(|n| to_u64("max quota scope size", n)).transpose()?,
            created_at: self.created_at,
            name: self.name,
        })
    }
}

pub(super) async fn put_resource_policy(conn: &mut AsyncPgConnection, p: &KeyPairResourcePolicy) -> Tx<()> {
    let row = PolicyRow::from_model(p)?;
    use keypair_resource_policies as t;
    diesel::insert_into(t::table)
        .values(&row)
        .on_conflict(t::name)
        .do_update()
        .set((
            t::total_resource_slots.eq(excluded(t::total_resource_slots)),
            t::max_session_lifetime.eq(excluded(t::max_session_lifetime)),
            t::max_concurrent_sessions.eq(excluded(t::max_concurrent_sessions)),
            t::max_containers_per_session.eq(excluded(t::max_containers_per_session)),
            t::idle_timeout.eq(excluded(t::idle_timeout)),
            t::max_pending_session_count.eq(excluded(t::max_pending_session_count)),
            t::allowed_vfolder_hosts.eq(excluded(t::allowed_vfolder_hosts)),
            t::max_vfolder_count.eq(excluded(t::max_vfolder_count)),
            t::max_quota_scope_size.eq(excluded(t::max_quota_scope_size)),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

pub(super) async fn resource_policy(conn: &mut AsyncPgConnection, name: &str) -> Tx<Option<KeyPairResourcePolicy>> {
    let row =
        keypair_resource_policies::table.find(name).select(PolicyRow::as_select()).first(conn).await.optional()?;
    row.map(PolicyRow::into_model).transpose()
}

pub(super) async fn list_resource_policies(conn: &mut AsyncPgConnection) -> Tx<Vec<KeyPairResourcePolicy>> {
    let rows = keypair_resource_policies::table
        .order(keypair_resource_policies::name.asc())
        .select(PolicyRow::as_select())
        .load(conn)
        .await?;
    rows.into_iter().map(PolicyRow::into_model).collect()
}

pub(super) async fn delete_resource_policy(conn: &mut AsyncPgConnection, name: &str) -> Tx<()> {
    if resource_policy(conn, name).await?.is_none() {
        return Err(not_found(format!("resource policy {name}")));
    }
    let keys: i64 = keypairs::table.filter(keypairs::resource_policy.eq(name)).count().get_result(conn).await?;
    if keys > 0 {
        return Err(conflict(format!("resource policy {name} is used by {keys} keypair(s)")));
    }
    diesel::delete(keypair_resource_policies::table.find(name)).execute(conn).await?;
    Ok(())
}

// ---- scaling groups ----

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = scaling_groups, check_for_backend(Pg))]
pub(super) struct ScalingGroupRow {
    name: String,
    description: Option<String>,
    is_active: bool,
    scheduler: String,
    agent_selector: Option<String>,
    created_at: DateTime<Utc>,
}

impl ScalingGroupRow {
    fn into_model(self) -> Tx<ScalingGroup> {
        Ok(ScalingGroup {
            created_at: self.created_at,
            name: self.name,
            description: self.description,
            is_active: self.is_active,
            scheduler: self.scheduler,
            agent_selector: self.agent_selector,
        })
    }
}

pub(super) async fn put_scaling_group(conn: &mut AsyncPgConnection, g: &ScalingGroup) -> Tx<()> {
    let row = ScalingGroupRow {
        name: g.name.clone(),
        description: g.description.clone(),
        is_active: g.is_active,
        scheduler: g.scheduler.clone(),
        agent_selector: g.agent_selector.clone(),
        created_at: ts(g.created_at),
    };
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
}

pub(super) async fn scaling_group(conn: &mut AsyncPgConnection, name: &str) -> Tx<Option<ScalingGroup>> {
    let row = scaling_groups::table.find(name).select(ScalingGroupRow::as_select()).first(conn).await.optional()?;
    row.map(ScalingGroupRow::into_model).transpose()
}

pub(super) async fn list_scaling_groups(conn: &mut AsyncPgConnection) -> Tx<Vec<ScalingGroup>> {
    let rows =
        scaling_groups::table.order(scaling_groups::name.asc()).select(ScalingGroupRow::as_select()).load(conn).await?;
    rows.into_iter().map(ScalingGroupRow::into_model).collect()
}

pub(super) async fn delete_scaling_group(conn: &mut AsyncPgConnection, name: &str) -> Tx<()> {
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
