//! `Agent`: the agents, for admins.

use super::session::ComputeContainer;
use super::{gql, parse_statuses, require_admin, slots_json, GResult, Gql};
use async_graphql::{Context, Object, SimpleObject};
use backend_core::model::{AgentInfo, AgentStatus};
use chrono::{DateTime, Utc};

/// An agent as the `Agent` type shows it.
pub struct Agent(pub(super) AgentInfo);

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl Agent {
    async fn id(&self) -> String {
        self.0.id.to_string()
    }
    async fn status(&self) -> String {
        self.0.status.as_str().into()
    }
    async fn status_changed(&self) -> Option<DateTime<Utc>> {
        self.0.lost_at
    }
    async fn region(&self) -> Option<String> {
        None
    }
    async fn scaling_group(&self) -> String {
        self.0.scaling_group.clone()
    }
    async fn schedulable(&self) -> bool {
        self.0.schedulable
    }
    async fn available_slots(&self) -> String {
        slots_json(&self.0.available_slots)
    }
    async fn occupied_slots(&self) -> String {
        slots_json(&self.0.occupied_slots)
    }
    async fn addr(&self) -> String {
        self.0.addr.clone()
    }
    async fn architecture(&self) -> String {
        self.0.architecture.clone()
    }
    async fn first_contact(&self) -> DateTime<Utc> {
        self.0.first_contact
    }
    async fn lost_at(&self) -> Option<DateTime<Utc>> {
        self.0.lost_at
    }
    async fn live_stat(&self) -> Option<String> {
        None
    }
    async fn version(&self) -> Option<String> {
        None
    }
    async fn compute_plugins(&self) -> String {
        "{}".into()
    }
    async fn hardware_metadata(&self) -> String {
        "{}".into()
    }
    async fn local_config(&self) -> String {
        "{}".into()
    }
    async fn auto_terminate_abusing_kernel(&self) -> bool {
        false
    }
    async fn cpu_cur_pct(&self) -> f64 {
        0.0
    }
    async fn mem_cur_bytes(&self) -> f64 {
        0.0
    }
    async fn container_count(&self, ctx: &Context<'_>) -> GResult<i32> {
        let kernels = gql(ctx).m.kernels_on_agent(&self.0.id).await?;
        Ok(i32::try_from(kernels.iter().filter(|k| !k.status.is_final()).count()).unwrap_or(i32::MAX))
    }
    async fn compute_containers(&self, ctx: &Context<'_>, status: Option<String>) -> GResult<Vec<ComputeContainer>> {
        let statuses = parse_statuses::<backend_core::KernelStatus>(status.as_deref())?;
        let kernels = gql(ctx).m.kernels_on_agent(&self.0.id).await?;
        Ok(kernels
            .into_iter()
            .filter(|k| match &statuses {
                Some(s) => s.contains(&k.status),
                None => !k.status.is_final(),
            })
            .map(ComputeContainer)
            .collect())
    }
}

/// A page of agents.
#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct AgentList {
    pub(super) items: Vec<Agent>,
    pub(super) total_count: i32,
}

pub(super) async fn agents_matching(
    g: &Gql,
    status: Option<&str>,
    scaling_group: Option<&str>,
) -> GResult<Vec<AgentInfo>> {
    require_admin(g)?;
    let statuses = parse_statuses::<AgentStatus>(status)?;
    let mut agents = g.m.agent_records().await?;
    agents.retain(|a| {
        statuses.as_ref().is_none_or(|s| s.contains(&a.status))
            && scaling_group.is_none_or(|sg| sg.is_empty() || a.scaling_group == sg)
    });
    agents.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(agents)
}
