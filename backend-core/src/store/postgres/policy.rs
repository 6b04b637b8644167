//! Keypair resource policies of the PostgreSQL store ([`PolicyStore`]). A replaced policy keeps its `created_at`.

use super::*;
use crate::store::rows::{conflict, not_found, taken};
use crate::store::PolicyStore;
use async_trait::async_trait;

async fn resource_policy(conn: &mut AsyncPgConnection, name: &str) -> Tx<Option<KeyPairResourcePolicy>> {
    let row =
        keypair_resource_policies::table.find(name).select(PolicyRow::as_select()).first(conn).await.optional()?;
    row.map(PolicyRow::into_model).transpose()
}

async fn delete_resource_policy(conn: &mut AsyncPgConnection, name: &str) -> Tx<()> {
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

#[async_trait]
impl PolicyStore for PostgresStore {
    async fn insert_resource_policy(&self, policy: &KeyPairResourcePolicy) -> Result<()> {
        let row = PolicyRow::from_model(policy).map_err(store_error)?;
        transaction!(self, Mode::Statement, |conn| async {
            diesel::insert_into(keypair_resource_policies::table)
                .values(&row)
                .execute(conn)
                .await
                .map_err(taken(|| format!("resource policy {}", row.name)))?;
            Ok(())
        })
    }

    async fn put_resource_policy(&self, policy: &KeyPairResourcePolicy) -> Result<()> {
        let row = PolicyRow::from_model(policy).map_err(store_error)?;
        use keypair_resource_policies as t;
        transaction!(self, Mode::Write, |conn| async {
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
        })
    }

    async fn resource_policy(&self, name: &str) -> Result<Option<KeyPairResourcePolicy>> {
        transaction!(self, Mode::Statement, |conn| resource_policy(conn, name))
    }

    async fn list_resource_policies(&self) -> Result<Vec<KeyPairResourcePolicy>> {
        transaction!(self, Mode::Read, |conn| async {
            let rows = keypair_resource_policies::table
                .order(keypair_resource_policies::name.asc())
                .select(PolicyRow::as_select())
                .load(conn)
                .await?;
            rows.into_iter().map(PolicyRow::into_model).collect::<Tx<Vec<_>>>()
        })
    }

    async fn delete_resource_policy(&self, name: &str) -> Result<()> {
        transaction!(self, Mode::Write, |conn| delete_resource_policy(conn, name))
    }
}
