//! The records every installation starts with: domain `default` with group `default`, scaling group `default` and
//! keypair resource policy `default`. Each is created only when missing, so calling [`ensure_defaults`] again
//! changes nothing.

use super::prelude::*;
use crate::error::Result;
use crate::model::{Domain, Group, KeyPairResourcePolicy, Role, ScalingGroup, User};
use crate::slots::ResourceSlots;
use chrono::Utc;

/// The name of every default record.
pub const DEFAULT: &str = "default";

/// Creates the default domain, group, scaling group and resource policy where missing.
pub async fn ensure_defaults(store: &dyn MetadataStore) -> Result<()> {
    let now = Utc::now();
    if store.domain(DEFAULT).await?.is_none() {
        store
            .put_domain(&Domain {
                name: DEFAULT.into(),
                description: Some("The default domain".into()),
                is_active: true,
                total_resource_slots: ResourceSlots::new(),
                created_at: now,
            })
            .await?;
    }
    if store.group(DEFAULT, DEFAULT).await?.is_none() {
        store
            .put_group(&Group {
                name: DEFAULT.into(),
                domain: DEFAULT.into(),
                description: Some("The default group".into()),
                is_active: true,
                total_resource_slots: ResourceSlots::new(),
                created_at: now,
            })
            .await?;
    }
    if store.scaling_group(DEFAULT).await?.is_none() {
        store
            .put_scaling_group(&ScalingGroup {
                name: DEFAULT.into(),
                description: Some("The default scaling group".into()),
                is_active: true,
                scheduler: "fifo".into(),
                agent_selector: None,
                created_at: now,
            })
            .await?;
    }
    if store.resource_policy(DEFAULT).await?.is_none() {
        store.put_resource_policy(&default_policy(now)).await?;
    }
    Ok(())
}

/// Generous limits: no slot limit, 30 concurrent sessions, 8 kernels per session, no idle timeout or lifetime.
fn default_policy(created_at: chrono::DateTime<Utc>) -> KeyPairResourcePolicy {
    KeyPairResourcePolicy {
        name: DEFAULT.into(),
        total_resource_slots: ResourceSlots::new(),
        max_concurrent_sessions: 30,
        max_containers_per_session: 8,
        max_pending_session_count: None,
        idle_timeout: 0,
        max_session_lifetime: 0,
        allowed_vfolder_hosts: vec!["local".into()],
        max_vfolder_count: 0,
        max_quota_scope_size: None,
        created_at,
    }
}

/// Creates the user `email` with `role` in the default domain and group when no user has that e-mail (after
/// [`ensure_defaults`]).
pub async fn ensure_user(store: &dyn MetadataStore, email: &str, role: Role) -> Result<()> {
    if store.user(email).await?.is_some() {
        return Ok(());
    }
    store
        .put_user(&User {
            email: email.into(),
            username: email.split('@').next().unwrap_or(email).into(),
            domain: DEFAULT.into(),
            role,
            is_active: true,
            groups: vec![DEFAULT.into()],
            created_at: Utc::now(),
        })
        .await
}
