//! `ComputeSession` and `ComputeContainer`: sessions and their kernels as the official client reads them.

use super::{gql, history_json, slots_json, GResult};
use async_graphql::{Context, Object, SimpleObject};
use backend_core::model::{KernelRecord, SessionRecord};
use backend_core::{ResourceSlots, SessionStatus};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A compute session as the `ComputeSession` type shows it.
pub struct ComputeSession {
    pub(super) s: SessionRecord,
    pub(super) kernels: Vec<KernelRecord>,
}

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl ComputeSession {
    async fn id(&self) -> Uuid {
        self.s.id.0
    }
    async fn session_id(&self) -> Uuid {
        self.s.id.0
    }
    async fn main_kernel_id(&self) -> Option<Uuid> {
        self.kernels.iter().find(|k| k.is_main()).map(|k| k.id.0)
    }
    async fn tag(&self) -> Option<String> {
        self.s.tag.clone()
    }
    async fn name(&self) -> String {
        self.s.name.clone()
    }
    #[graphql(name = "type")]
    async fn session_type(&self) -> String {
        self.s.session_type.as_str().to_uppercase()
    }
    async fn image(&self) -> String {
        self.s.image.clone()
    }
    async fn architecture(&self) -> Option<String> {
        None
    }
    async fn registry(&self) -> Option<String> {
        None
    }
    async fn cluster_template(&self) -> Option<String> {
        None
    }
    async fn cluster_mode(&self) -> String {
        "single-node".into()
    }
    async fn cluster_size(&self) -> i32 {
        i32::try_from(self.s.cluster_size).unwrap_or(i32::MAX)
    }
    async fn domain_name(&self) -> String {
        self.s.domain.clone()
    }
    async fn group_name(&self) -> String {
        self.s.group.clone()
    }
    async fn group_id(&self) -> Option<Uuid> {
        None
    }
    async fn user_email(&self, ctx: &Context<'_>) -> GResult<Option<String>> {
        Ok(gql(ctx).m.keypair_record(&self.s.access_key).await?.map(|k| k.user_id))
    }
    async fn user_id(&self) -> Option<Uuid> {
        None
    }
    async fn access_key(&self) -> String {
        self.s.access_key.to_string()
    }
    async fn created_user_email(&self, ctx: &Context<'_>) -> GResult<Option<String>> {
        Ok(gql(ctx).m.keypair_record(&self.s.access_key).await?.map(|k| k.user_id))
    }
    async fn created_user_id(&self) -> Option<Uuid> {
        None
    }
    async fn status(&self) -> String {
        self.s.status.as_str().into()
    }
    async fn status_info(&self) -> Option<String> {
        self.s.status_info.clone()
    }
    async fn status_data(&self) -> String {
        "{}".into()
    }
    async fn status_history(&self) -> String {
        history_json(&self.s.status_history)
    }
    async fn status_changed(&self) -> Option<DateTime<Utc>> {
        self.s.status_history.0.last().map(|c| c.at)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.s.created_at
    }
    async fn terminated_at(&self) -> Option<DateTime<Utc>> {
        self.s.terminated_at
    }
    async fn starts_at(&self) -> Option<DateTime<Utc>> {
        None
    }
    async fn scheduled_at(&self) -> Option<DateTime<Utc>> {
        self.s.status_history.entered(SessionStatus::Scheduled)
    }
    async fn startup_command(&self) -> Option<String> {
        self.s.startup_command.clone()
    }
    async fn result(&self) -> String {
        self.s.result.as_str().into()
    }
    async fn commit_status(&self) -> Option<String> {
        None
    }
    async fn resource_opts(&self) -> String {
        match self.s.shmem {
            Some(bytes) => serde_json::json!({ "shmem": bytes }).to_string(),
            None => "{}".into(),
        }
    }
    async fn scaling_group(&self) -> String {
        self.s.scaling_group.clone()
    }
    async fn service_ports(&self) -> String {
        "{}".into()
    }
    async fn mounts(&self) -> Vec<String> {
        Vec::new()
    }
    async fn agent_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> =
            self.kernels.iter().filter_map(|k| k.agent_id.as_ref().map(|a| a.to_string())).collect();
        ids.dedup();
        ids
    }
    async fn occupying_slots(&self) -> String {
        slots_json(&self.occupied())
    }
    async fn occupied_slots(&self) -> String {
        slots_json(&self.occupied())
    }
    async fn requested_slots(&self) -> String {
        slots_json(&self.s.requested_slots)
    }
    async fn containers(&self) -> Vec<ComputeContainer> {
        self.kernels.iter().cloned().map(ComputeContainer).collect()
    }
    /// The sessions this one waits for, in the order it named them; one that is gone or that the caller may not
    /// see is left out.
    async fn dependencies(&self, ctx: &Context<'_>) -> GResult<Vec<ComputeSession>> {
        let g = gql(ctx);
        let mut out = Vec::with_capacity(self.s.dependencies.len());
        for id in &self.s.dependencies {
            let Some(s) = g.m.session_by_id(*id).await? else { continue };
            if !g.caller.role.is_admin() && s.access_key != g.caller.access_key {
                continue;
            }
            let kernels = g.m.kernels_of(s.id).await?;
            out.push(ComputeSession { s, kernels });
        }
        Ok(out)
    }
    async fn abusing_reports(&self) -> Vec<String> {
        Vec::new()
    }
    async fn idle_checks(&self) -> String {
        "{}".into()
    }
}

impl ComputeSession {
    fn occupied(&self) -> ResourceSlots {
        self.kernels.iter().fold(ResourceSlots::new(), |acc, k| acc + k.occupied_slots.clone())
    }
}

/// A kernel as the `ComputeContainer` type shows it.
pub struct ComputeContainer(pub(super) KernelRecord);

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl ComputeContainer {
    async fn id(&self) -> Uuid {
        self.0.id.0
    }
    async fn kernel_id(&self) -> Uuid {
        self.0.id.0
    }
    async fn session_id(&self) -> Uuid {
        self.0.session_id.0
    }
    async fn cluster_role(&self) -> String {
        self.0.cluster_role.clone()
    }
    async fn role(&self) -> String {
        self.0.cluster_role.clone()
    }
    async fn cluster_idx(&self) -> i32 {
        i32::try_from(self.0.cluster_idx).unwrap_or(i32::MAX)
    }
    async fn idx(&self) -> i32 {
        i32::try_from(self.0.cluster_idx).unwrap_or(i32::MAX)
    }
    async fn local_rank(&self) -> i32 {
        0
    }
    async fn cluster_hostname(&self) -> String {
        self.0.cluster_hostname.clone()
    }
    async fn hostname(&self) -> String {
        self.0.cluster_hostname.clone()
    }
    async fn image(&self) -> String {
        self.0.image.clone()
    }
    async fn registry(&self) -> Option<String> {
        None
    }
    async fn architecture(&self) -> Option<String> {
        None
    }
    async fn status(&self) -> String {
        self.0.status.as_str().into()
    }
    async fn status_info(&self) -> Option<String> {
        self.0.status_info.clone()
    }
    async fn status_data(&self) -> String {
        "{}".into()
    }
    async fn status_changed(&self) -> Option<DateTime<Utc>> {
        self.0.status_history.0.last().map(|c| c.at)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn terminated_at(&self) -> Option<DateTime<Utc>> {
        self.0.terminated_at
    }
    async fn agent(&self) -> Option<String> {
        self.0.agent_id.as_ref().map(|a| a.to_string())
    }
    async fn agent_addr(&self) -> Option<String> {
        self.0.agent_addr.clone()
    }
    async fn container_id(&self) -> Option<String> {
        self.0.container_id.clone()
    }
    async fn resource_opts(&self) -> String {
        "{}".into()
    }
    async fn occupied_slots(&self) -> String {
        slots_json(&self.0.occupied_slots)
    }
    async fn requested_slots(&self) -> String {
        slots_json(&self.0.requested_slots)
    }
    async fn preopen_ports(&self) -> Vec<i32> {
        Vec::new()
    }
    async fn live_stat(&self) -> Option<String> {
        None
    }
    async fn last_stat(&self) -> Option<String> {
        None
    }
}

/// A page of sessions.
#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct ComputeSessionList {
    pub(super) items: Vec<ComputeSession>,
    pub(super) total_count: i32,
}
