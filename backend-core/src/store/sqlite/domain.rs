//! Domains and groups of the SQLite store ([`DomainStore`]). A replaced record keeps its `created_at`.

use super::*;
use crate::store::rows::{conflict, not_found, taken};
use crate::store::DomainStore;
use async_trait::async_trait;

fn insert_domain(conn: &mut SqliteConnection, d: &Domain) -> Tx<()> {
    let row = DomainRow::from_model(d)?;
    diesel::insert_into(domains::table).values(&row).execute(conn).map_err(taken(|| format!("domain {}", d.name)))?;
    Ok(())
}

fn put_domain(conn: &mut SqliteConnection, d: &Domain) -> Tx<()> {
    let row = DomainRow::from_model(d)?;
    let n = diesel::update(domains::table.find(&d.name))
        .set((
            domains::description.eq(&row.description),
            domains::is_active.eq(row.is_active),
            domains::total_resource_slots.eq(&row.total_resource_slots),
        ))
        .execute(conn)?;
    if n == 0 {
        diesel::insert_into(domains::table).values(&row).execute(conn)?;
    }
    Ok(())
}

pub(super) fn domain(conn: &mut SqliteConnection, name: &str) -> Tx<Option<Domain>> {
    let row = domains::table.find(name).select(DomainRow::as_select()).first(conn).optional()?;
    row.map(DomainRow::into_model).transpose()
}

fn delete_domain(conn: &mut SqliteConnection, name: &str) -> Tx<()> {
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

pub(super) fn group_row(conn: &mut SqliteConnection, domain: &str, name: &str) -> Tx<Option<GroupRow>> {
    Ok(groups::table
        .filter(groups::domain_name.eq(domain))
        .filter(groups::name.eq(name))
        .select(GroupRow::as_select())
        .first(conn)
        .optional()?)
}

fn insert_group(conn: &mut SqliteConnection, g: &Group) -> Tx<()> {
    if domain(conn, &g.domain)?.is_none() {
        return Err(not_found(format!("domain {}", g.domain)));
    }
    let row = GroupRow::from_model(g)?;
    diesel::insert_into(groups::table)
        .values(&row)
        .execute(conn)
        .map_err(taken(|| format!("group {} in domain {}", g.name, g.domain)))?;
    Ok(())
}

fn put_group(conn: &mut SqliteConnection, g: &Group) -> Tx<()> {
    let Some(row) = group_row(conn, &g.domain, &g.name)? else { return insert_group(conn, g) };
    diesel::update(groups::table.find(&row.id))
        .set((
            groups::description.eq(&g.description),
            groups::is_active.eq(g.is_active),
            groups::total_resource_slots.eq(to_json(&g.total_resource_slots)?),
        ))
        .execute(conn)?;
    Ok(())
}

fn list_groups(conn: &mut SqliteConnection, domain: Option<&str>) -> Tx<Vec<Group>> {
    let mut query = groups::table.select(GroupRow::as_select()).into_boxed();
    if let Some(d) = domain {
        query = query.filter(groups::domain_name.eq(d.to_owned()));
    }
    let rows = query.order((groups::domain_name.asc(), groups::name.asc())).load(conn)?;
    rows.into_iter().map(GroupRow::into_model).collect()
}

fn delete_group(conn: &mut SqliteConnection, domain: &str, name: &str) -> Tx<()> {
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

#[async_trait]
impl DomainStore for SqliteStore {
    async fn insert_domain(&self, domain: &Domain) -> Result<()> {
        let domain = domain.clone();
        self.with_conn(move |conn| insert_domain(conn, &domain)).await
    }

    async fn put_domain(&self, domain: &Domain) -> Result<()> {
        let domain = domain.clone();
        self.write(move |conn| put_domain(conn, &domain)).await
    }

    async fn domain(&self, name: &str) -> Result<Option<Domain>> {
        let name = name.to_owned();
        self.with_conn(move |conn| domain(conn, &name)).await
    }

    async fn list_domains(&self) -> Result<Vec<Domain>> {
        self.with_conn(|conn| {
            let rows = domains::table.order(domains::name.asc()).select(DomainRow::as_select()).load(conn)?;
            rows.into_iter().map(DomainRow::into_model).collect()
        })
        .await
    }

    async fn delete_domain(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.write(move |conn| delete_domain(conn, &name)).await
    }

    async fn insert_group(&self, group: &Group) -> Result<()> {
        let group = group.clone();
        self.write(move |conn| insert_group(conn, &group)).await
    }

    async fn put_group(&self, group: &Group) -> Result<()> {
        let group = group.clone();
        self.write(move |conn| put_group(conn, &group)).await
    }

    async fn group(&self, domain: &str, name: &str) -> Result<Option<Group>> {
        let (domain, name) = (domain.to_owned(), name.to_owned());
        self.with_conn(move |conn| group_row(conn, &domain, &name)?.map(GroupRow::into_model).transpose()).await
    }

    async fn list_groups(&self, domain: Option<&str>) -> Result<Vec<Group>> {
        let domain = domain.map(str::to_owned);
        self.with_conn(move |conn| list_groups(conn, domain.as_deref())).await
    }

    async fn delete_group(&self, domain: &str, name: &str) -> Result<()> {
        let (domain, name) = (domain.to_owned(), name.to_owned());
        self.write(move |conn| delete_group(conn, &domain, &name)).await
    }
}
