//! `POST /admin/gql` (and the pre-v6.20210815 `POST /admin/graphql`): the read-only GraphQL subset the official
//! client and CLI send for `session list` / `ps`, `session info`, `admin agent list`, `admin keypair list` and
//! `vfolder list`.
//!
//! Names follow Backend.AI's graphene schema (snake_case fields and arguments). Fields the manager keeps no data for
//! answer `null` or an empty value. `JSONString` fields (slots, `status_data`, ...) are JSON documents inside a string,
//! as graphene renders them.
//!
//! `filter` and `order` take a subset of Backend.AI's minilang: comparisons `field OP value` with `==`, `!=`, `<`,
//! `<=`, `>`, `>=`, `is`, `isnot`, `like`, `ilike`, `contains`, `in`, `notin` (values: `"strings"`, numbers, `true`,
//! `false`, `null`, `[lists]`), combined with `&`, `|`, `!` and parentheses; orders are comma-separated field names
//! with an optional `+` (ascending, the default) or `-` (descending) prefix. An expression that does not parse or
//! names an unknown field is a GraphQL error. The minilang itself is [`backend_core::query`]; this module holds the
//! schema, the resolvers' context and the query root, and one file per object type (`session`, `agent`, `keypair`,
//! `vfolder`).
//!
//! Errors: on `/admin/gql` every GraphQL error (syntax, validation, permission) comes back inside a 200 reply as
//! `{"data": ..., "errors": [...]}`, as Backend.AI does; the client turns a non-empty `errors` into its own 400
//! `graphql-error`. The legacy `/admin/graphql` answers the bare `data` object, or a 400 problem+json of type
//! `graphql-error` carrying the errors in `data`.

mod agent;
mod keypair;
mod session;
mod vfolder;

use super::{authenticated, Caller};
use crate::service::context::acting_for;
use crate::Manager;
use agent::{agents_matching, Agent, AgentList};
use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Schema, Variables};
use backend_agent::http::{json_object, json_reply};
use backend_core::error::{Error, PROBLEM_BASE};
use backend_core::model::KeyPair;
use backend_core::query::Attrs;
use backend_core::status::StatusHistory;
use backend_core::store::SessionFilter;
use backend_core::vfolder::VFolderOwner;
use backend_core::{AccessKey, AgentId, ResourceSlots, SessionId, SessionStatus};
use keypair::{keypairs_matching, KeyPairGql, KeyPairList};
use serde::Deserialize;
use session::{ComputeSession, ComputeSessionList};
use std::sync::Arc;
use uuid::Uuid;
use vfolder::{vfolders, FolderScope, VirtualFolderList};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

/// The schema served.
pub type GqlSchema = Schema<QueryRoot, EmptyMutation, EmptySubscription>;

type GResult<T> = async_graphql::Result<T>;

/// Builds the schema.
pub fn schema() -> GqlSchema {
    Schema::build(QueryRoot, EmptyMutation, EmptySubscription).finish()
}

/// What every resolver sees: the manager and the caller.
struct Gql {
    m: Arc<Manager>,
    caller: KeyPair,
}

fn gql<'a>(ctx: &Context<'a>) -> &'a Gql {
    ctx.data_unchecked::<Gql>()
}

fn require_admin(g: &Gql) -> GResult<()> {
    if g.caller.role.is_admin() {
        Ok(())
    } else {
        Err(async_graphql::Error::new("forbidden: this query requires the admin privilege"))
    }
}

fn slots_json(slots: &ResourceSlots) -> String {
    serde_json::to_string(slots).unwrap_or_else(|_| "{}".into())
}

fn history_json(history: &StatusHistory) -> String {
    let map: serde_json::Map<String, serde_json::Value> =
        history.0.iter().map(|c| (c.status.to_lowercase(), c.at.to_rfc3339().into())).collect();
    serde_json::Value::Object(map).to_string()
}

/// Filters, orders and pages a list ([`backend_core::query::paginate`]); a bad filter or order, or a negative limit
/// or offset, is a GraphQL error.
fn paginate<T: Attrs>(
    items: Vec<T>,
    filter: Option<&str>,
    order: Option<&str>,
    limit: i32,
    offset: i32,
) -> GResult<(Vec<T>, i32)> {
    let (Ok(limit), Ok(offset)) = (usize::try_from(limit), usize::try_from(offset)) else {
        return Err("limit and offset must not be negative".into());
    };
    match backend_core::query::paginate(items, filter, order, limit, offset) {
        Ok((page, total)) => Ok((page, i32::try_from(total).unwrap_or(i32::MAX))),
        Err(Error::InvalidParams { msg }) => Err(async_graphql::Error::new(msg)),
        Err(other) => Err(async_graphql::Error::new(other.to_string())),
    }
}

fn parse_statuses<S: std::str::FromStr>(text: Option<&str>) -> GResult<Option<Vec<S>>> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    if text.eq_ignore_ascii_case("ALL") {
        return Ok(None);
    }
    text.split(',')
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<S>().map_err(|_| async_graphql::Error::new(format!("unknown status {s:?}"))))
        .collect::<GResult<Vec<S>>>()
        .map(Some)
}

/// The root of every query.
pub struct QueryRoot;

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl QueryRoot {
    /// One session by id: the caller's own, or any for admins; `null` when not visible.
    async fn compute_session(&self, ctx: &Context<'_>, id: Uuid) -> GResult<Option<ComputeSession>> {
        let g = gql(ctx);
        let Some(s) = g.m.session_by_id(SessionId(id)).await? else { return Ok(None) };
        if !g.caller.role.is_admin() && s.access_key != g.caller.access_key {
            return Ok(None);
        }
        let kernels = g.m.kernels_of(s.id).await?;
        Ok(Some(ComputeSession { s, kernels }))
    }

    /// A page of sessions. Users see their own; admins see everyone's, or one keypair's with `access_key`.
    #[allow(clippy::too_many_arguments)]
    async fn compute_session_list(
        &self,
        ctx: &Context<'_>,
        limit: i32,
        offset: i32,
        filter: Option<String>,
        order: Option<String>,
        domain_name: Option<String>,
        group_id: Option<Uuid>,
        access_key: Option<String>,
        status: Option<String>,
    ) -> GResult<Option<ComputeSessionList>> {
        let g = gql(ctx);
        let owner: Option<AccessKey> = match access_key.as_deref().filter(|a| !a.is_empty()) {
            Some(a) => Some(acting_for(&g.m, &g.caller, Some(a)).await?),
            None if g.caller.role.is_admin() => None,
            None => Some(g.caller.access_key.clone()),
        };
        let statuses = parse_statuses::<SessionStatus>(status.as_deref())?;
        let mut sessions = g.m.session_records(&SessionFilter { access_key: owner, statuses, limit: None }).await?;
        if let Some(d) = domain_name.as_deref().filter(|d| !d.is_empty()) {
            sessions.retain(|s| s.domain == d);
        }
        if group_id.is_some() {
            // Groups have no ids here yet: no session belongs to a group named by id.
            sessions.clear();
        }
        let order = order.or_else(|| Some("-created_at".into()));
        let (page, total_count) = paginate(sessions, filter.as_deref(), order.as_deref(), limit, offset)?;
        let mut items = Vec::with_capacity(page.len());
        for s in page {
            let kernels = g.m.kernels_of(s.id).await?;
            items.push(ComputeSession { s, kernels });
        }
        Ok(Some(ComputeSessionList { items, total_count }))
    }

    /// One agent (admins only).
    async fn agent(&self, ctx: &Context<'_>, agent_id: String) -> GResult<Option<Agent>> {
        let g = gql(ctx);
        require_admin(g)?;
        Ok(g.m.agent_record(&AgentId::from(agent_id.as_str())).await?.map(Agent))
    }

    /// Agents (admins only), legacy unpaginated form.
    async fn agents(
        &self,
        ctx: &Context<'_>,
        scaling_group: Option<String>,
        status: Option<String>,
    ) -> GResult<Option<Vec<Agent>>> {
        let agents = agents_matching(gql(ctx), status.as_deref(), scaling_group.as_deref()).await?;
        Ok(Some(agents.into_iter().map(Agent).collect()))
    }

    /// A page of agents (admins only).
    #[allow(clippy::too_many_arguments)]
    async fn agent_list(
        &self,
        ctx: &Context<'_>,
        limit: i32,
        offset: i32,
        filter: Option<String>,
        order: Option<String>,
        scaling_group: Option<String>,
        status: Option<String>,
    ) -> GResult<Option<AgentList>> {
        let agents = agents_matching(gql(ctx), status.as_deref(), scaling_group.as_deref()).await?;
        let (page, total_count) = paginate(agents, filter.as_deref(), order.as_deref(), limit, offset)?;
        Ok(Some(AgentList { items: page.into_iter().map(Agent).collect(), total_count }))
    }

    /// One keypair: the caller's own by default; another's for admins.
    async fn keypair(
        &self,
        ctx: &Context<'_>,
        domain_name: Option<String>,
        access_key: Option<String>,
    ) -> GResult<Option<KeyPairGql>> {
        let _ = domain_name;
        let g = gql(ctx);
        let ak = acting_for(&g.m, &g.caller, access_key.as_deref()).await?;
        Ok(g.m.keypair_record(&ak).await?.map(|k| KeyPairGql::new(k, &g.caller)))
    }

    /// Keypairs (admins only), legacy unpaginated form.
    async fn keypairs(
        &self,
        ctx: &Context<'_>,
        domain_name: Option<String>,
        email: Option<String>,
        is_active: Option<bool>,
    ) -> GResult<Option<Vec<KeyPairGql>>> {
        let _ = domain_name;
        Ok(Some(keypairs_matching(gql(ctx), email.as_deref(), is_active).await?))
    }

    /// A page of keypairs (admins only).
    #[allow(clippy::too_many_arguments)]
    async fn keypair_list(
        &self,
        ctx: &Context<'_>,
        limit: i32,
        offset: i32,
        filter: Option<String>,
        order: Option<String>,
        domain_name: Option<String>,
        email: Option<String>,
        is_active: Option<bool>,
    ) -> GResult<Option<KeyPairList>> {
        let _ = domain_name;
        let keypairs = keypairs_matching(gql(ctx), email.as_deref(), is_active).await?;
        let (items, total_count) = paginate(keypairs, filter.as_deref(), order.as_deref(), limit, offset)?;
        Ok(Some(KeyPairList { items, total_count }))
    }

    /// The folders the caller (or, for admins, the keypair `access_key`) may use. Groups have no ids here:
    /// `group_id` keeps user folders only.
    #[allow(clippy::too_many_arguments)]
    async fn vfolder_list(
        &self,
        ctx: &Context<'_>,
        limit: i32,
        offset: i32,
        filter: Option<String>,
        order: Option<String>,
        domain_name: Option<String>,
        group_id: Option<Uuid>,
        access_key: Option<String>,
    ) -> GResult<Option<VirtualFolderList>> {
        let page = (limit, offset, filter.as_deref(), order.as_deref());
        let mut list = vfolders(gql(ctx), FolderScope::All, access_key.as_deref(), page).await?;
        if let Some(d) = domain_name.as_deref().filter(|d| !d.is_empty()) {
            let before = list.items.len();
            list.items.retain(|f| match &f.0.folder.owner {
                VFolderOwner::Group { domain, .. } => domain == d,
                VFolderOwner::User { .. } => true,
            });
            list.total_count -= (before - list.items.len()) as i32;
        }
        if group_id.is_some() {
            let before = list.items.len();
            list.items.retain(|f| matches!(f.0.folder.owner, VFolderOwner::User { .. }));
            list.total_count -= (before - list.items.len()) as i32;
        }
        Ok(Some(list))
    }

    /// The caller's own folders.
    async fn vfolder_own_list(
        &self,
        ctx: &Context<'_>,
        limit: i32,
        offset: i32,
        filter: Option<String>,
        order: Option<String>,
    ) -> GResult<Option<VirtualFolderList>> {
        let page = (limit, offset, filter.as_deref(), order.as_deref());
        vfolders(gql(ctx), FolderScope::Own, None, page).await.map(Some)
    }

    /// Other users' folders shared with the caller.
    async fn vfolder_invited_list(
        &self,
        ctx: &Context<'_>,
        limit: i32,
        offset: i32,
        filter: Option<String>,
        order: Option<String>,
    ) -> GResult<Option<VirtualFolderList>> {
        let page = (limit, offset, filter.as_deref(), order.as_deref());
        vfolders(gql(ctx), FolderScope::Invited, None, page).await.map(Some)
    }

    /// Project (group) folders the caller may use.
    async fn vfolder_project_list(
        &self,
        ctx: &Context<'_>,
        limit: i32,
        offset: i32,
        filter: Option<String>,
        order: Option<String>,
    ) -> GResult<Option<VirtualFolderList>> {
        let page = (limit, offset, filter.as_deref(), order.as_deref());
        vfolders(gql(ctx), FolderScope::Project, None, page).await.map(Some)
    }
}

/// The body the client sends.
#[derive(Debug, Deserialize)]
struct GqlBody {
    query: String,
    #[serde(default)]
    variables: Option<serde_json::Value>,
    #[serde(default, rename = "operationName")]
    operation_name: Option<String>,
}

async fn execute(schema: &GqlSchema, m: Arc<Manager>, caller: &Caller, body: GqlBody) -> async_graphql::Response {
    let mut req = async_graphql::Request::new(body.query);
    if let Some(v) = body.variables.filter(|v| !v.is_null()) {
        req = req.variables(Variables::from_json(v));
    }
    if let Some(op) = body.operation_name {
        req = req.operation_name(op);
    }
    schema.execute(req.data(Gql { m, caller: caller.keypair.clone() })).await
}

/// `POST /admin/gql` and `POST /admin/graphql`.
pub fn routes(m: Arc<Manager>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let limit = m.config.max_body_bytes;
    let auth = authenticated(m.clone());
    let with_m = warp::any().map(move || m.clone());
    let schema = schema();
    let with_schema = warp::any().map(move || schema.clone());

    let gql = warp::path!("admin" / "gql")
        .and(warp::post())
        .and(auth.clone())
        .and(with_m.clone())
        .and(with_schema.clone())
        .and(json_object::<GqlBody>(limit))
        .then(|caller: Caller, m: Arc<Manager>, schema: GqlSchema, body: GqlBody| async move {
            let resp = execute(&schema, m, &caller, body).await;
            caller.decorate(json_reply(StatusCode::OK, &resp))
        });

    let legacy = warp::path!("admin" / "graphql")
        .and(warp::post())
        .and(auth)
        .and(with_m)
        .and(with_schema)
        .and(json_object::<GqlBody>(limit))
        .then(|caller: Caller, m: Arc<Manager>, schema: GqlSchema, body: GqlBody| async move {
            let resp = execute(&schema, m, &caller, body).await;
            let reply = if resp.errors.is_empty() {
                json_reply(StatusCode::OK, &resp.data)
            } else {
                let problem = serde_json::json!({
                    "type": format!("{PROBLEM_BASE}graphql-error"),
                    "title": "GraphQL-generated error",
                    "msg": resp.errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; "),
                    "data": resp.errors,
                });
                let mut r = json_reply(StatusCode::BAD_REQUEST, &problem);
                r.headers_mut()
                    .insert("content-type", warp::http::HeaderValue::from_static("application/problem+json"));
                r
            };
            caller.decorate(reply)
        });

    gql.or(legacy).unify()
}
