//! `KeyPair`: keypairs and their owners; the secret is shown only to its owner.

use super::{gql, require_admin, GResult, Gql};
use async_graphql::{Context, Object, SimpleObject};
use backend_core::model::KeyPair;
use backend_core::query::{Attrs, Val};
use backend_core::store::SessionFilter;
use chrono::{DateTime, Utc};

/// A keypair as the `KeyPair` type shows it; the secret only to its owner.
pub struct KeyPairGql {
    kp: KeyPair,
    show_secret: bool,
}

impl KeyPairGql {
    pub(super) fn new(kp: KeyPair, caller: &KeyPair) -> Self {
        let show_secret = kp.access_key == caller.access_key;
        Self { kp, show_secret }
    }
}

impl Attrs for KeyPairGql {
    fn attr(&self, name: &str) -> Option<Val> {
        let kp = &self.kp;
        Some(match name {
            "access_key" => kp.access_key.as_str().into(),
            "user_id" | "email" => kp.user_id.as_str().into(),
            "is_active" => kp.is_active.into(),
            "is_admin" => kp.role.is_admin().into(),
            "role" => kp.role.as_str().into(),
            "resource_policy" => kp.resource_policy.as_str().into(),
            "rate_limit" => f64::from(kp.rate_limit).into(),
            "created_at" => kp.created_at.into(),
            "full_name" | "last_used" | "modified_at" | "domain_name" => Val::Null,
            _ => return None,
        })
    }
}

/// The owning user's public details.
#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct UserInfo {
    email: String,
    full_name: Option<String>,
}

#[Object(name = "KeyPair", rename_fields = "snake_case", rename_args = "snake_case")]
impl KeyPairGql {
    async fn user_id(&self) -> String {
        self.kp.user_id.clone()
    }
    async fn full_name(&self) -> Option<String> {
        None
    }
    async fn user_info(&self) -> UserInfo {
        UserInfo { email: self.kp.user_id.clone(), full_name: None }
    }
    async fn projects(&self) -> Vec<String> {
        Vec::new()
    }
    async fn access_key(&self) -> String {
        self.kp.access_key.to_string()
    }
    async fn secret_key(&self) -> Option<String> {
        self.show_secret.then(|| self.kp.secret_key.clone())
    }
    async fn is_active(&self) -> bool {
        self.kp.is_active
    }
    async fn is_admin(&self) -> bool {
        self.kp.role.is_admin()
    }
    async fn role(&self) -> String {
        self.kp.role.as_str().into()
    }
    async fn resource_policy(&self) -> String {
        self.kp.resource_policy.clone()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.kp.created_at
    }
    async fn modified_at(&self) -> Option<DateTime<Utc>> {
        None
    }
    async fn last_used(&self) -> Option<DateTime<Utc>> {
        None
    }
    async fn rate_limit(&self) -> i32 {
        i32::try_from(self.kp.rate_limit).unwrap_or(i32::MAX)
    }
    async fn num_queries(&self) -> i32 {
        0
    }
    async fn concurrency_used(&self, ctx: &Context<'_>) -> GResult<i32> {
        let filter = SessionFilter { access_key: Some(self.kp.access_key.clone()), statuses: None, limit: None };
        let sessions = gql(ctx).m.session_records(&filter).await?;
        Ok(i32::try_from(sessions.iter().filter(|s| !s.status.is_final()).count()).unwrap_or(i32::MAX))
    }
    async fn domain_name(&self) -> Option<String> {
        None
    }
    async fn ssh_public_key(&self) -> Option<String> {
        None
    }
    async fn ssh_private_key(&self) -> Option<String> {
        None
    }
    async fn dotfiles(&self) -> String {
        "[]".into()
    }
    async fn bootstrap_script(&self) -> String {
        String::new()
    }
}

/// A page of keypairs.
#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct KeyPairList {
    pub(super) items: Vec<KeyPairGql>,
    pub(super) total_count: i32,
}

pub(super) async fn keypairs_matching(
    g: &Gql,
    email: Option<&str>,
    is_active: Option<bool>,
) -> GResult<Vec<KeyPairGql>> {
    require_admin(g)?;
    let mut keypairs = g.m.keypair_records().await?;
    keypairs
        .retain(|k| email.is_none_or(|e| e.is_empty() || k.user_id == e) && is_active.is_none_or(|a| k.is_active == a));
    keypairs.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.access_key.cmp(&b.access_key)));
    Ok(keypairs.into_iter().map(|k| KeyPairGql::new(k, &g.caller)).collect())
}
