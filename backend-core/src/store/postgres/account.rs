//! Keypairs and users of the PostgreSQL store ([`AccountStore`]).

use super::*;
use crate::store::rows::{conflict, not_found, taken};
use crate::store::AccountStore;
use async_trait::async_trait;
use std::collections::BTreeMap;

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

/// The ids of `u`'s groups. `NotFound` when its domain or one of them is unknown.
async fn group_ids(conn: &mut AsyncPgConnection, u: &User) -> Tx<Vec<Uuid>> {
    if domain::domain(conn, &u.domain).await?.is_none() {
        return Err(not_found(format!("domain {}", u.domain)));
    }
    let mut ids = Vec::with_capacity(u.groups.len());
    for name in &u.groups {
        let row = domain::group_row(conn, &u.domain, name)
            .await?
            .ok_or_else(|| not_found(format!("group {name} in domain {}", u.domain)))?;
        if !ids.contains(&row.id) {
            ids.push(row.id);
        }
    }
    Ok(ids)
}

/// Makes `group_ids` the groups of the user `uuid`.
async fn set_memberships(conn: &mut AsyncPgConnection, uuid: Uuid, group_ids: Vec<Uuid>) -> Tx<()> {
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

async fn insert_user(conn: &mut AsyncPgConnection, u: &User) -> Tx<()> {
    let group_ids = group_ids(conn, u).await?;
    let row = UserRow::from_model(u);
    diesel::insert_into(users::table)
        .values(&row)
        .execute(conn)
        .await
        .map_err(taken(|| format!("a user with e-mail {} or username {:?}", u.email, u.username)))?;
    set_memberships(conn, row.uuid, group_ids).await
}

async fn put_user(conn: &mut AsyncPgConnection, u: &User) -> Tx<()> {
    let group_ids = group_ids(conn, u).await?;
    // A known user keeps its uuid and `created_at`; a username taken by another user fails on its own index.
    let uuid: Uuid = diesel::insert_into(users::table)
        .values(&UserRow::from_model(u))
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
        .map_err(taken(|| format!("username {:?}", u.username)))?;
    set_memberships(conn, uuid, group_ids).await
}

async fn user(conn: &mut AsyncPgConnection, email: &str) -> Tx<Option<User>> {
    let Some(row) = user_row(conn, email).await? else { return Ok(None) };
    let groups = memberships(conn, Some(row.uuid)).await?.remove(&row.uuid).unwrap_or_default();
    row.into_model(groups).map(Some)
}

async fn list_users(conn: &mut AsyncPgConnection, domain: Option<&str>) -> Tx<Vec<User>> {
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

async fn delete_user(conn: &mut AsyncPgConnection, email: &str) -> Tx<()> {
    let row = user_row(conn, email).await?.ok_or_else(|| not_found(format!("user {email}")))?;
    let keys: i64 = keypairs::table.filter(keypairs::user_id.eq(email)).count().get_result(conn).await?;
    if keys > 0 {
        return Err(conflict(format!("user {email} still has {keys} keypair(s)")));
    }
    let folders: i64 = vfolders::table.filter(vfolders::user_id.eq(row.uuid)).count().get_result(conn).await?;
    if folders > 0 {
        return Err(conflict(format!("user {email} still owns {folders} virtual folder(s)")));
    }
    set_memberships(conn, row.uuid, Vec::new()).await?;
    diesel::delete(users::table.find(row.uuid)).execute(conn).await?;
    Ok(())
}

#[async_trait]
impl AccountStore for PostgresStore {
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

    async fn insert_user(&self, user: &User) -> Result<()> {
        transaction!(self, Mode::Write, |conn| insert_user(conn, user))
    }

    async fn put_user(&self, user: &User) -> Result<()> {
        transaction!(self, Mode::Write, |conn| put_user(conn, user))
    }

    async fn user(&self, email: &str) -> Result<Option<User>> {
        transaction!(self, Mode::Read, |conn| user(conn, email))
    }

    async fn list_users(&self, domain: Option<&str>) -> Result<Vec<User>> {
        transaction!(self, Mode::Read, |conn| list_users(conn, domain))
    }

    async fn delete_user(&self, email: &str) -> Result<()> {
        transaction!(self, Mode::Write, |conn| delete_user(conn, email))
    }
}
