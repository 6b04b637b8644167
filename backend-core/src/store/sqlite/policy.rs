//! Keypair resource policies of the SQLite store ([`PolicyStore`]). A replaced policy keeps its `created_at`.

use super::*;
use crate::store::rows::{conflict, not_found, taken};
use crate::store::PolicyStore;
use async_trait::async_trait;

fn put_resource_policy(conn: &mut SqliteConnection, row: &PolicyRow) -> Tx<()> {
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
        diesel::insert_into(t::table).values(row).execute(conn)?;
    }
    Ok(())
}

fn resource_policy(conn: &mut SqliteConnection, name: &str) -> Tx<Option<KeyPairResourcePolicy>> {
    let row = keypair_resource_policies::table.find(name).select(PolicyRow::as_select()).first(conn).optional()?;
    row.map(PolicyRow::into_model).transpose()
}

fn delete_resource_policy(conn: &mut SqliteConnection, name: &str) -> Tx<()> {
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

#[async_trait]
impl PolicyStore for SqliteStore {
    async fn insert_resource_policy(&self, policy: &KeyPairResourcePolicy) -> Result<()> {
        let row = PolicyRow::from_model(policy).map_err(store_error)?;
        self.with_conn(move |conn| {
            let name = row.name.clone();
            diesel::insert_into(keypair_resource_policies::table)
                .values(&row)
                .execute(conn)
                .map_err(taken(|| format!("resource policy {name}")))?;
            Ok(())
        })
        .await
    }

    async fn put_resource_policy(&self, policy: &KeyPairResourcePolicy) -> Result<()> {
        let row = PolicyRow::from_model(policy).map_err(store_error)?;
        self.write(move |conn| put_resource_policy(conn, &row)).await
    }

    async fn resource_policy(&self, name: &str) -> Result<Option<KeyPairResourcePolicy>> {
        let name = name.to_owned();
        self.with_conn(move |conn| resource_policy(conn, &name)).await
    }

    async fn list_resource_policies(&self) -> Result<Vec<KeyPairResourcePolicy>> {
        self.with_conn(|conn| {
            let rows = keypair_resource_policies::table
                .order(keypair_resource_policies::name.asc())
                .select(PolicyRow::as_select())
                .load(conn)?;
            rows.into_iter().map(PolicyRow::into_model).collect()
        })
        .await
    }

    async fn delete_resource_policy(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.write(move |conn| delete_resource_policy(conn, &name)).await
    }
}
