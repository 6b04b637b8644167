//! Keypairs and users of the SQLite store ([`AccountStore`]).

use super::*;
use crate::store::rows::{conflict, not_found, taken, user_status};
use crate::store::AccountStore;
use async_trait::async_trait;
use std::collections::BTreeMap;

pub(super) fn user_row(conn: &mut SqliteConnection, email: &str) -> Tx<Option<UserRow>> {
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

/// The ids of `u`'s groups. `NotFound` when its domain or one of them is unknown.
fn group_ids(conn: &mut SqliteConnection, u: &User) -> Tx<Vec<String>> {
    if domain::domain(conn, &u.domain)?.is_none() {
        return Err(not_found(format!("domain {}", u.domain)));
    }
    let mut ids = Vec::with_capacity(u.groups.len());
    for name in &u.groups {
        let row = domain::group_row(conn, &u.domain, name)?
            .ok_or_else(|| not_found(format!("group {name} in domain {}", u.domain)))?;
        if !ids.contains(&row.id) {
            ids.push(row.id);
        }
    }
    Ok(ids)
}

/// Makes `group_ids` the groups of the user `uuid`.
fn set_memberships(conn: &mut SqliteConnection, uuid: &str, group_ids: Vec<String>) -> Tx<()> {
    diesel::delete(association_groups_users::table.filter(association_groups_users::user_id.eq(uuid))).execute(conn)?;
    for group_id in group_ids {
        diesel::insert_into(association_groups_users::table)
            .values((association_groups_users::group_id.eq(group_id), association_groups_users::user_id.eq(uuid)))
            .execute(conn)?;
    }
    Ok(())
}

fn insert_user(conn: &mut SqliteConnection, u: &User) -> Tx<()> {
    let group_ids = group_ids(conn, u)?;
    let row = UserRow::from_model(u);
    diesel::insert_into(users::table)
        .values(&row)
        .execute(conn)
        .map_err(taken(|| format!("a user with e-mail {} or username {:?}", u.email, u.username)))?;
    set_memberships(conn, &row.uuid, group_ids)
}

fn put_user(conn: &mut SqliteConnection, u: &User) -> Tx<()> {
    let group_ids = group_ids(conn, u)?;
    let taken_name = || format!("username {:?}", u.username);
    let uuid = match user_row(conn, &u.email)? {
        Some(row) => {
            diesel::update(users::table.find(&row.uuid))
                .set((
                    users::username.eq(&u.username),
                    users::domain_name.eq(&u.domain),
                    users::role.eq(u.role.as_str()),
                    users::status.eq(user_status(u.is_active)),
                ))
                .execute(conn)
                .map_err(taken(taken_name))?;
            row.uuid
        }
        None => {
            let row = UserRow::from_model(u);
            diesel::insert_into(users::table).values(&row).execute(conn).map_err(taken(taken_name))?;
            row.uuid
        }
    };
    set_memberships(conn, &uuid, group_ids)
}

fn user(conn: &mut SqliteConnection, email: &str) -> Tx<Option<User>> {
    let Some(row) = user_row(conn, email)? else { return Ok(None) };
    let groups = memberships(conn, Some(&row.uuid))?.remove(&row.uuid).unwrap_or_default();
    row.into_model(groups).map(Some)
}

fn list_users(conn: &mut SqliteConnection, domain: Option<&str>) -> Tx<Vec<User>> {
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

fn delete_user(conn: &mut SqliteConnection, email: &str) -> Tx<()> {
    let row = user_row(conn, email)?.ok_or_else(|| not_found(format!("user {email}")))?;
    let keys: i64 = keypairs::table.filter(keypairs::user_id.eq(email)).count().get_result(conn)?;
    if keys > 0 {
        return Err(conflict(format!("user {email} still has {keys} keypair(s)")));
    }
    let folders: i64 = vfolders::table.filter(vfolders::user_id.eq(&row.uuid)).count().get_result(conn)?;
    if folders > 0 {
        return Err(conflict(format!("user {email} still owns {folders} virtual folder(s)")));
    }
    set_memberships(conn, &row.uuid, Vec::new())?;
    diesel::delete(users::table.find(&row.uuid)).execute(conn)?;
    Ok(())
}

#[async_trait]
impl AccountStore for SqliteStore {
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

    async fn insert_user(&self, user: &User) -> Result<()> {
        let user = user.clone();
        self.write(move |conn| insert_user(conn, &user)).await
    }

    async fn put_user(&self, user: &User) -> Result<()> {
        let user = user.clone();
        self.write(move |conn| put_user(conn, &user)).await
    }

    async fn user(&self, email: &str) -> Result<Option<User>> {
        let email = email.to_owned();
        self.read(move |conn| user(conn, &email)).await
    }

    async fn list_users(&self, domain: Option<&str>) -> Result<Vec<User>> {
        let domain = domain.map(str::to_owned);
        self.read(move |conn| list_users(conn, domain.as_deref())).await
    }

    async fn delete_user(&self, email: &str) -> Result<()> {
        let email = email.to_owned();
        self.write(move |conn| delete_user(conn, &email)).await
    }
}
