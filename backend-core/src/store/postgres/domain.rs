//! Domains and groups of the PostgreSQL store ([`DomainStore`]). A replaced record keeps its `created_at`.

use super::*;
use crate::store::rows::{conflict, not_found, taken};
use crate::store::DomainStore;
use async_trait::async_trait;

pub(super) async fn domain(conn: &mut AsyncPgConnection, name: &str) -> Tx<Option<Domain>> {
    let row = domains::table.find(name).select(DomainRow::as_select()).first(conn).await.optional()?;
    row.map(DomainRow::into_model).transpose()
}

async fn delete_domain(conn: &mut AsyncPgConnection, name: &str) -> Tx<()> {
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

pub(super) async fn group_row(conn: &mut AsyncPgConnection, domain: &str, name: &str) -> Tx<Option<GroupRow>> {
    Ok(groups::table
        .filter(groups::domain_name.eq(domain))
        .filter(groups::name.eq(name))
        .select(GroupRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Inserts a group after checking its domain: `Replace` updates a group already there instead of failing.
async fn write_group(conn: &mut AsyncPgConnection, g: &Group, existing: Existing) -> Tx<()> {
    if domain(conn, &g.domain).await?.is_none() {
        return Err(not_found(format!("domain {}", g.domain)));
    }
    let insert = diesel::insert_into(groups::table).values(GroupRow::from_model(g)?);
    match existing {
        Existing::Refuse => {
            insert.execute(conn).await.map_err(taken(|| format!("group {} in domain {}", g.name, g.domain)))?;
        }
        Existing::Replace => {
            insert
                .on_conflict((groups::domain_name, groups::name))
                .do_update()
                .set((
                    groups::description.eq(excluded(groups::description)),
                    groups::is_active.eq(excluded(groups::is_active)),
                    groups::total_resource_slots.eq(excluded(groups::total_resource_slots)),
                ))
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

/// What an insert does when the key is taken.
#[derive(Debug, Clone, Copy)]
enum Existing {
    Refuse,
    Replace,
}

async fn list_groups(conn: &mut AsyncPgConnection, domain: Option<&str>) -> Tx<Vec<Group>> {
    let mut query = groups::table.select(GroupRow::as_select()).into_boxed();
    if let Some(d) = domain {
        query = query.filter(groups::domain_name.eq(d.to_owned()));
    }
    let rows = query.order((groups::domain_name.asc(), groups::name.asc())).load(conn).await?;
    rows.into_iter().map(GroupRow::into_model).collect()
}

async fn delete_group(conn: &mut AsyncPgConnection, domain: &str, name: &str) -> Tx<()> {
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

#[async_trait]
impl DomainStore for PostgresStore {
    async fn insert_domain(&self, domain: &Domain) -> Result<()> {
        let row = DomainRow::from_model(domain).map_err(store_error)?;
        transaction!(self, Mode::Statement, |conn| async {
            diesel::insert_into(domains::table)
                .values(&row)
                .execute(conn)
                .await
                .map_err(taken(|| format!("domain {}", row.name)))?;
            Ok(())
        })
    }

    async fn put_domain(&self, domain: &Domain) -> Result<()> {
        let row = DomainRow::from_model(domain).map_err(store_error)?;
        transaction!(self, Mode::Write, |conn| async {
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
        })
    }

    async fn domain(&self, name: &str) -> Result<Option<Domain>> {
        transaction!(self, Mode::Read, |conn| domain(conn, name))
    }

    async fn list_domains(&self) -> Result<Vec<Domain>> {
        transaction!(self, Mode::Read, |conn| async {
            let rows = domains::table.order(domains::name.asc()).select(DomainRow::as_select()).load(conn).await?;
            rows.into_iter().map(DomainRow::into_model).collect::<Tx<Vec<_>>>()
        })
    }

    async fn delete_domain(&self, name: &str) -> Result<()> {
        transaction!(self, Mode::Write, |conn| delete_domain(conn, name))
    }

    async fn insert_group(&self, group: &Group) -> Result<()> {
        transaction!(self, Mode::Write, |conn| write_group(conn, group, Existing::Refuse))
    }

    async fn put_group(&self, group: &Group) -> Result<()> {
        transaction!(self, Mode::Write, |conn| write_group(conn, group, Existing::Replace))
    }

    async fn group(&self, domain: &str, name: &str) -> Result<Option<Group>> {
        transaction!(self, Mode::Read, |conn| async {
            group_row(conn, domain, name).await?.map(GroupRow::into_model).transpose()
        })
    }

    async fn list_groups(&self, domain: Option<&str>) -> Result<Vec<Group>> {
        transaction!(self, Mode::Read, |conn| list_groups(conn, domain))
    }

    async fn delete_group(&self, domain: &str, name: &str) -> Result<()> {
        transaction!(self, Mode::Write, |conn| delete_group(conn, domain, name))
    }
}
