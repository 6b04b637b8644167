//! Administration records of the SQLite store: domains, groups and their members, users, keypair resource policies
//! and scaling groups. Each write runs inside the caller's write transaction; a replaced record keeps its
//! `created_at`.

use super::schema::{
    agents, association_groups_users, domains, groups, keypair_resource_policies, keypairs, scaling_groups, users,
    vfolders,
};
use super::{from_json, parse, parse_ts, taken, to_json, to_u32, ts, Tx};
use crate::error::Error;
use crate::model::{Domain, Group, KeyPairResourcePolicy, ScalingGroup, User};
use diesel::prelude::*;
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
#[diesel(table_name = domains, check_for_backend(diesel::sqlite::Sqlite))]
pub(super) struct DomainRow {
    name: String,
    description: Option<String>,
    is_active: bool,
    total_resource_slots: String,
    created_at: String,
}

impl DomainRow {
    fn into_model(self) -> Tx<Domain> {
        Ok(Domain {
            created_at: parse_ts(&self.created_at)?,
            total_resource_slots: from_json("total resource slots", &self.total_resource_slots)?,
            name: self.name,
            description: self.description,
            is_active: self.is_active,
        })
    }
}

pub(super) fn put_domain(conn: &mut SqliteConnection, d: &Domain) -> Tx<()> {
    let slots = to_json(&d.total_resource_slots)?;
    let n = diesel::update(domains::table.find(&d.name))
        .set((
            domains::description.eq(&d.description),
            domains::is_active.eq(d.is_active),
            domains::total_resource_slots.eq(&slots),
        ))
        .execute(conn)?;
    if n == 0 {
        let row = DomainRow {
            name: d.name.clone(),
            description: d.description.clone(),
            is_active: d.is_active,
            total_resource_slots: slots,
            created_at: ts(d.created_at),
        };
        diesel::insert_into(domains::table).values(&row).execute(conn)?;
    }
    Ok(())
}

pub(super) fn domain(conn: &mut SqliteConnection, name: &str) -> Tx<Option<Domain>> {
    let row = domains::table.find(name).select(DomainRow::as_select()).first(conn).optional()?;
    row.map(DomainRow::into_model).transpose()
}

pub(super) fn list_domains(conn: &mut SqliteConnection) -> Tx<Vec<Domain>> {
    let rows = domains::table.order(domains::name.asc()).select(DomainRow::as_select()).load(conn)?;
    rows.into_iter().map(DomainRow::into_model).collect()
}

pub(super) fn delete_domain(conn: &mut SqliteConnection, name: &str) -> Tx<()> {
    if domain(conn, name)?.is_none() {
        return Err(not_found(format!("domain {name}")));
    }
    let group_count: i64 = groups::table.filter(groups::domain_name.eq(name)).count().get_result(conn)?;
    let user_count: i64 = users::table.filter(users::domain_name.eq(name)).count().get_result(conn)?;
    if group_count + user_count > 0 {
        return Err(conflict(format!("domain {name} still has {group_count} group(s) and {user_count} user(s)")));
    }
    diesel::delete(domains::table.find(name)).execute(conn)?;
    Ok(())
}

// ---- groups ----

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = groups, check_for_backend(diesel::sqlite::Sqlite))]
pub(super) struct GroupRow {
    id: String,
    name: String,
    domain_name: String,
    description: Option<String>,
    is_active: bool,
    total_resource_slots: String,
    created_at: String,
}

impl GroupRow {
    fn into_model(self) -> Tx<Group> {
        Ok(Group {
            created_at: parse_ts(&self.created_at)?,
            total_resource_slots: from_json("total resource slots", &self.total_resource_slots)?,
            name: self.name,
            domain: self.domain_name,
            description: self.description,
            is_active: self.is_active,
        })
    }
}

fn group_row(conn: &mut SqliteConnection, domain: &str, name: &str) -> Tx<Option<GroupRow>> {
    Ok(groups::table
        .filter(groups::domain_name.eq(domain))
        .filter(groups::name.eq(name))
        .select(GroupRow::as_select())
        .first(conn)
        .optional()?)
}

pub(super) fn put_group(conn: &mut SqliteConnection, g: &Group) -> Tx<()> {
    if domain(conn, &g.domain)?.is_none() {
        return Err(not_found(format!("domain {}", g.domain)));
    }
    let slots = to_json(&g.total_resource_slots)?;
    match group_row(conn, &g.domain, &g.name)? {
        Some(row) => {
            diesel::update(groups::table.find(&row.id))
                .set((
                    groups::description.eq(&g.description),
                    groups::is_active.eq(g.is_active),
                    groups::total_resource_slots.eq(&slots),
                ))
                .execute(conn)?;
        }
        None => {
            let row = GroupRow {
                id: Uuid::new_v4().to_string(),
                name: g.name.clone(),
                domain_name: g.domain.clone(),
                description: g.description.clone(),
                is_active: g.is_active,
                total_resource_slots: slots,
                created_at: ts(g.created_at),
            };
            diesel::insert_into(groups::table)
                .values(&row)
                .execute(conn)
                .map_err(taken(|| format!("group {} in domain {}", g.name, g.domain)))?;
        }
    }
    Ok(())
}

pub(super) fn group(conn: &mut SqliteConnection, domain: &str, name: &str) -> Tx<Option<Group>> {
    group_row(conn, domain, name)?.map(GroupRow::into_model).transpose()
}

pub(super) fn list_groups(conn: &mut SqliteConnection, domain: Option<&str>) -> Tx<Vec<Group>> {
    let mut query = groups::table.select(GroupRow::as_select()).into_boxed();
    if let Some(d) = domain {
        query = query.filter(groups::domain_name.eq(d.to_owned()));
    }
    let rows = query.order((groups::domain_name.asc(), groups::name.asc())).load(conn)?;
    rows.into_iter().map(GroupRow::into_model).collect()
}

pub(super) fn delete_group(conn: &mut SqliteConnection, domain: &str, name: &str) -> Tx<()> {
    let row = group_row(conn, domain, name)?.ok_or_else(|| not_found(format!("group {name} in domain {domain}")))?;
    let members: i64 = association_groups_users::table
        .filter(association_groups_users::group_id.eq(&row.id))
        .count()
        .get_result(conn)?;
    if members > 0 {
        return Err(conflict(format!("group {name} in domain {domain} still has {members} member(s)")));
    }
    let folders: i64 = vfolders::table.filter(vfolders::group_id.eq(&row.id)).count().get_result(conn)?;
    if folders > 0 {
        return Err(conflict(format!("group {name} in domain {domain} still owns {folders} virtual folder(s)")));
    }
    diesel::delete(groups::table.find(&row.id)).execute(conn)?;
    Ok(())
}

// ---- users ----

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = users, check_for_backend(diesel::sqlite::Sqlite))]
pub(super) struct UserRow {
    uuid: String,
    username: String,
    email: String,
    domain_name: String,
    role: String,
    status: String,
    created_at: String,
}

impl UserRow {
    fn into_model(self, mut groups: Vec<String>) -> Tx<User> {
        groups.sort();
        Ok(User {
            role: parse("role", &self.role)?,
            created_at: parse_ts(&self.created_at)?,
            is_active: self.status == "active",
            email: self.email,
            username: self.username,
            domain: self.domain_name,
            groups,
        })
    }
}

fn user_row(conn: &mut SqliteConnection, email: &str) -> Tx<Option<UserRow>> {
    Ok(users::table.filter(users::email.eq(email)).select(UserRow::as_select()).first(conn).optional()?)
}

/// The names of the groups each user (by uuid) belongs to.
fn memberships(conn: &mut SqliteConnection, user: Option<&str>) -> Tx<BTreeMap<String, Vec<String>>> {
    let mut query = association_groups_users::table
        .inner_join(groups::table)
        .select((association_groups_users::user_id, groups::name))
        .into_boxed();
    if let Some(uuid) = user {
        query = query.filter(association_groups_users::user_id.eq(uuid.to_owned()));
    }
    let mut by_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (user_id, group) in query.load::<(String, String)>(conn)? {
        by_user.entry(user_id).or_default().push(group);
    }
    Ok(by_user)
}

pub(super) fn put_user(conn: &mut SqliteConnection, u: &User) -> Tx<()> {
    if domain(conn, &u.domain)?.is_none() {
        return Err(not_found(format!("domain {}", u.domain)));
    }
    let mut group_ids = Vec::with_capacity(u.groups.len());
    for name in &u.groups {
        let row = group_row(conn, &u.domain, name)?
            .ok_or_else(|| not_found(format!("group {name} in domain {}", u.domain)))?;
        if !group_ids.contains(&row.id) {
            group_ids.push(row.id);
        }
    }
    let status = if u.is_active { "active" } else { "inactive" };
    let taken_name = || format!("username {:?}", u.username);
    let uuid = match user_row(conn, &u.email)? {
        Some(row) => {
            diesel::update(users::table.find(&row.uuid))
                .set((
                    users::username.eq(&u.username),
                    users::domain_name.eq(&u.domain),
                    users::role.eq(u.role.as_str()),
                    users::status.eq(status),
                ))
                .execute(conn)
                .map_err(taken(taken_name))?;
            row.uuid
        }
        None => {
            let row = UserRow {
                uuid: Uuid::new_v4().to_string(),
                username: u.username.clone(),
                email: u.email.clone(),
                domain_name: u.domain.clone(),
                role: u.role.as_str().to_owned(),
                status: status.to_owned(),
                created_at: ts(u.created_at),
            };
            diesel::insert_into(users::table).values(&row).execute(conn).map_err(taken(taken_name))?;
            row.uuid
        }
    };
    diesel::delete(association_groups_users::table.filter(association_groups_users::user_id.eq(&uuid)))
        .execute(conn)?;
    for group_id in group_ids {
        diesel::insert_into(association_groups_users::table)
            .values((association_groups_users::group_id.eq(group_id), association_groups_users::user_id.eq(&uuid)))
            .execute(conn)?;
    }
    Ok(())
}

pub(super) fn user(conn: &mut SqliteConnection, email: &str) -> Tx<Option<User>> {
    let Some(row) = user_row(conn, email)? else { return Ok(None) };
    let groups = memberships(conn, Some(&row.uuid))?.remove(&row.uuid).unwrap_or_default();
    row.into_model(groups).map(Some)
}

pub(super) fn list_users(conn: &mut SqliteConnection, domain: Option<&str>) -> Tx<Vec<User>> {
    let mut query = users::table.select(UserRow::as_select()).into_boxed();
    if let Some(d) = domain {
        query = query.filter(users::domain_name.eq(d.to_owned()));
    }
    let rows = query.order(users::email.asc()).load(conn)?;
    let mut by_user = memberships(conn, None)?;
    rows.into_iter()
        .map(|row| {
            let groups = by_user.remove(&row.uuid).unwrap_or_default();
            row.into_model(groups)
        })
        .collect()
}

pub(super) fn delete_user(conn: &mut SqliteConnection, email: &str) -> Tx<()> {
    let row = user_row(conn, email)?.ok_or_else(|| not_found(format!("user {email}")))?;
    let keys: i64 = keypairs::table.filter(keypairs::user_id.eq(email)).count().get_result(conn)?;
    if keys > 0 {
        return Err(conflict(format!("user {email} still has {keys} keypair(s)")));
    }
    let folders: i64 = vfolders::table.filter(vfolders::user_id.eq(&row.uuid)).count().get_result(conn)?;
    if folders > 0 {
        return Err(conflict(format!("user {email} still owns {folders} virtual folder(s)")));
    }
    diesel::delete(association_groups_users::table.filter(association_groups_users::user_id.eq(&row.uuid)))
        .execute(conn)?;
    diesel::delete(users::table.find(&row.uuid)).execute(conn)?;
    Ok(())
}

// ---- keypair resource policies ----

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = keypair_resource_policies, check_for_backend(diesel::sqlite::Sqlite))]
pub(super) struct PolicyRow {
    name: String,
    total_resource_slots: String,
    max_session_lifetime: i64,
    max_concurrent_sessions: i64,
    max_containers_per_session: i64,
    idle_timeout: i64,
    max_pending_session_count: Option<i64>,
    allowed_vfolder_hosts: String,
    max_vfolder_count: i64,
    max_quota_scope_size: Option<i64>,
    created_at: String,
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
            total_resource_slots: from_json("total resource slots", &self.total_resource_slots)?,
            max_session_lifetime: to_u64("max session lifetime", self.max_session_lifetime)?,
            max_concurrent_sessions: to_u32("max concurrent sessions", self.max_concurrent_sessions)?,
            max_containers_per_session: to_u32("max containers per session", self.max_containers_per_session)?,
            idle_timeout: to_u64("idle timeout", self.idle_timeout)?,
            max_pending_session_count: self
                .max_pending_session_count
                .map(|n| to_u32("max pending session count", n))
                .transpose()?,
            allowed_vfolder_hosts: from_json("allowed vfolder hosts", &self.allowed_vfolder_hosts)?,
            max_vfolder_count: to_u32("max vfolder count", self.max_vfolder_count)?,
            max_quota_scope_size: self.max_quota_scope_size.map(|n| to_u64("max quota scope size", n)).transpose()?,
            created_at: parse_ts(&self.created_at)?,
            name: self.name,
        })
    }
}

pub(super) fn put_resource_policy(conn: &mut SqliteConnection, p: &KeyPairResourcePolicy) -> Tx<()> {
    let row = PolicyRow::from_model(p)?;
    use keypair_resource_policies as t;
    let n = diesel::update(t::table.find(&row.name))
        .set((
            t::total_resource_slots.eq(&row.total_resource_slots),
            t::max_session_lifetime.eq(row.max_session_lifetime),
            t::max_concurrent_sessions.eq(row.max_concurrent_sessions),
            t::max_containers_per_session.eq(row.max_containers_per_session),
            t::idle_timeout.eq(row.idle_timeout),
            t::max_pending_session_count.eq(row.max_pending_session_count),
            t::allowed_vfolder_hosts.eq(&row.allowed_vfolder_hosts),
            t::max_vfolder_count.eq(row.max_vfolder_count),
            t::max_quota_scope_size.eq(row.max_quota_scope_size),
        ))
        .execute(conn)?;
    if n == 0 {
        diesel::insert_into(t::table).values(&row).execute(conn)?;
    }
    Ok(())
}

pub(super) fn resource_policy(conn: &mut SqliteConnection, name: &str) -> Tx<Option<KeyPairResourcePolicy>> {
    let row = keypair_resource_policies::table.find(name).select(PolicyRow::as_select()).first(conn).optional()?;
    row.map(PolicyRow::into_model).transpose()
}

pub(super) fn list_resource_policies(conn: &mut SqliteConnection) -> Tx<Vec<KeyPairResourcePolicy>> {
    let rows = keypair_resource_policies::table
        .order(keypair_resource_policies::name.asc())
        .select(PolicyRow::as_select())
        .load(conn)?;
    rows.into_iter().map(PolicyRow::into_model).collect()
}

pub(super) fn delete_resource_policy(conn: &mut SqliteConnection, name: &str) -> Tx<()> {
    if resource_policy(conn, name)?.is_none() {
        return Err(not_found(format!("resource policy {name}")));
    }
    let keys: i64 = keypairs::table.filter(keypairs::resource_policy.eq(name)).count().get_result(conn)?;
    if keys > 0 {
        return Err(conflict(format!("resource policy {name} is used by {keys} keypair(s)")));
    }
    diesel::delete(keypair_resource_policies::table.find(name)).execute(conn)?;
    Ok(())
}

// ---- scaling groups ----

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = scaling_groups, check_for_backend(diesel::sqlite::Sqlite))]
pub(super) struct ScalingGroupRow {
    name: String,
    description: Option<String>,
    is_active: bool,
    scheduler: String,
    agent_selector: Option<String>,
    created_at: String,
}

impl ScalingGroupRow {
    fn into_model(self) -> Tx<ScalingGroup> {
        Ok(ScalingGroup {
            created_at: parse_ts(&self.created_at)?,
            name: self.name,
            description: self.description,
            is_active: self.is_active,
            scheduler: self.scheduler,
            agent_selector: self.agent_selector,
        })
    }
}

pub(super) fn put_scaling_group(conn: &mut SqliteConnection, g: &ScalingGroup) -> Tx<()> {
    let n = diesel::update(scaling_groups::table.find(&g.name))
        .set((
            scaling_groups::description.eq(&g.description),
            scaling_groups::is_active.eq(g.is_active),
            scaling_groups::scheduler.eq(&g.scheduler),
            scaling_groups::agent_selector.eq(&g.agent_selector),
        ))
        .execute(conn)?;
    if n == 0 {
        let row = ScalingGroupRow {
            name: g.name.clone(),
            description: g.description.clone(),
            is_active: g.is_active,
            scheduler: g.scheduler.clone(),
            agent_selector: g.agent_selector.clone(),
            created_at: ts(g.created_at),
        };
        diesel::insert_into(scaling_groups::table).values(&row).execute(conn)?;
    }
    Ok(())
}

pub(super) fn scaling_group(conn: &mut SqliteConnection, name: &str) -> Tx<Option<ScalingGroup>> {
    let row = scaling_groups::table.find(name).select(ScalingGroupRow::as_select()).first(conn).optional()?;
    row.map(ScalingGroupRow::into_model).transpose()
}

pub(super) fn list_scaling_groups(conn: &mut SqliteConnection) -> Tx<Vec<ScalingGroup>> {
    let rows =
        scaling_groups::table.order(scaling_groups::name.asc()).select(ScalingGroupRow::as_select()).load(conn)?;
    rows.into_iter().map(ScalingGroupRow::into_model).collect()
}

pub(super) fn delete_scaling_group(conn: &mut SqliteConnection, name: &str) -> Tx<()> {
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
