//! `/session` routes: create, list, info, destroy, execute, interrupt, restart, rename, complete, logs. Each handler
//! resolves the keypair it acts for ([`acting_for`]) and makes one call to the session service
//! ([`crate::service::session`]).

use super::{authenticated, Caller};
use crate::service::context::acting_for;
use crate::service::session::Creation;
use crate::Manager;
use backend_agent::http::{error_reply, json_object, json_reply};
use backend_core::api::{ConsoleItem, CreateSessionRequest, ExecuteMode, ExecuteRequest, SessionList, SessionSummary};
use backend_core::error::Error;
use backend_core::error::Result;
use serde::Deserialize;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

/// Query of `POST /session/{name}/rename`.
#[derive(Debug, Default, Deserialize)]
pub struct RenameQuery {
    /// The new name.
    pub name: Option<String>,
    /// Admins: act for this keypair.
    pub owner_access_key: Option<String>,
}

/// Body of `POST /session/{name}/complete`.
#[derive(Debug, Default, Deserialize)]
pub struct CompleteRequest {
    /// The text before the cursor.
    #[serde(default)]
    pub code: String,
    /// Cursor details (`row`, `col`, `line`, `post`).
    #[serde(default)]
    pub options: serde_json::Value,
}

/// Query parameters every session route accepts.
#[derive(Debug, Default, Deserialize)]
pub struct OwnerQuery {
    /// Admins: act for this keypair.
    pub owner_access_key: Option<String>,
    /// Destroy: skip the graceful stop.
    #[serde(default, deserialize_with = "bool_text")]
    pub forced: bool,
}

fn bool_text<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    Ok(matches!(s.as_deref(), Some("true" | "1" | "yes" | "True")))
}

fn respond<T: serde::Serialize>(caller: &Caller, result: Result<T>, status: StatusCode) -> Response {
    caller.decorate(match result {
        Ok(body) => json_reply(status, &body),
        Err(e) => error_reply(&e),
    })
}

/// The `/session` routes.
pub fn routes(m: Arc<Manager>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let limit = m.config.max_body_bytes;
    let auth = authenticated(m.clone());
    let with_m = warp::any().map(move || m.clone());
    let query = warp::query::<OwnerQuery>();

    let create =
        warp::path!("session").and(warp::post()).and(auth.clone()).and(with_m.clone()).and(json_object(limit)).then(
            |caller: Caller, m: Arc<Manager>, req: CreateSessionRequest| async move {
                match m.create_session(&caller.keypair, req).await {
                    Ok(Creation::New(body)) => respond(&caller, Ok(body), StatusCode::CREATED),
                    Ok(Creation::Reused(body)) => respond(&caller, Ok(body), StatusCode::OK),
                    Err(e) => respond::<()>(&caller, Err(e), StatusCode::OK),
                }
            },
        );

    let list = warp::path!("session").and(warp::get()).and(auth.clone()).and(with_m.clone()).and(query).then(
        |caller: Caller, m: Arc<Manager>, q: OwnerQuery| async move {
            let result = async {
                let owner = acting_for(&m, &caller.keypair, q.owner_access_key.as_deref()).await?;
                let sessions = m.sessions_of(&owner).await?;
                Ok(SessionList { sessions: sessions.iter().map(SessionSummary::from).collect() })
            }
            .await;
            respond(&caller, result, StatusCode::OK)
        },
    );

    let info = warp::path!("session" / String).and(warp::get()).and(auth.clone()).and(with_m.clone()).and(query).then(
        |name: String, caller: Caller, m: Arc<Manager>, q: OwnerQuery| async move {
            let result = async {
                let owner = acting_for(&m, &caller.keypair, q.owner_access_key.as_deref()).await?;
                m.session_info(&owner, &name).await
            }
            .await;
            respond(&caller, result, StatusCode::OK)
        },
    );

    let destroy =
        warp::path!("session" / String).and(warp::delete()).and(auth.clone()).and(with_m.clone()).and(query).then(
            |name: String, caller: Caller, m: Arc<Manager>, q: OwnerQuery| async move {
                let result = async {
                    let owner = acting_for(&m, &caller.keypair, q.owner_access_key.as_deref()).await?;
                    m.destroy_session(&owner, &name, q.forced).await
                }
                .await;
                respond(&caller, result, StatusCode::OK)
            },
        );

    let execute = warp::path!("session" / String)
        .and(warp::post())
        .and(auth.clone())
        .and(with_m.clone())
        .and(query)
        .and(json_object(limit))
        .then(|name: String, caller: Caller, m: Arc<Manager>, q: OwnerQuery, req: ExecuteRequest| async move {
            let result = async {
                let owner = acting_for(&m, &caller.keypair, q.owner_access_key.as_deref()).await?;
                m.execute(&owner, &name, req).await.map(|result| serde_json::json!({ "result": result }))
            }
            .await;
            respond(&caller, result, StatusCode::OK)
        });

    let interrupt = warp::path!("session" / String / "interrupt")
        .and(warp::post())
        .and(auth.clone())
        .and(with_m.clone())
        .and(query)
        .then(|name: String, caller: Caller, m: Arc<Manager>, q: OwnerQuery| async move {
            let result = async {
                let owner = acting_for(&m, &caller.keypair, q.owner_access_key.as_deref()).await?;
                m.interrupt(&owner, &name).await.map(|()| serde_json::json!({}))
            }
            .await;
            respond(&caller, result, StatusCode::OK)
        });

    let restart =
        warp::path!("session" / String).and(warp::patch()).and(auth.clone()).and(with_m.clone()).and(query).then(
            |name: String, caller: Caller, m: Arc<Manager>, q: OwnerQuery| async move {
                let result = async {
                    let owner = acting_for(&m, &caller.keypair, q.owner_access_key.as_deref()).await?;
                    m.restart_session(&owner, &name).await.map(|()| serde_json::json!({}))
                }
                .await;
                respond(&caller, result, StatusCode::OK)
            },
        );

    let rename = warp::path!("session" / String / "rename")
        .and(warp::post())
        .and(auth.clone())
        .and(with_m.clone())
        .and(warp::query::<RenameQuery>())
        .then(|name: String, caller: Caller, m: Arc<Manager>, q: RenameQuery| async move {
            let result = async {
                let owner = acting_for(&m, &caller.keypair, q.owner_access_key.as_deref()).await?;
                let new_name = q.name.ok_or_else(|| Error::InvalidParams { msg: "`name` is required".into() })?;
                m.rename_session(&owner, &name, &new_name).await.map(|()| serde_json::json!({}))
            }
            .await;
            respond(&caller, result, StatusCode::OK)
        });

    let complete = warp::path!("session" / String / "complete")
        .and(warp::post())
        .and(auth.clone())
        .and(with_m.clone())
        .and(query)
        .and(json_object(limit))
        .then(|name: String, caller: Caller, m: Arc<Manager>, q: OwnerQuery, body: CompleteRequest| async move {
            let result = async {
                let owner = acting_for(&m, &caller.keypair, q.owner_access_key.as_deref()).await?;
                let req = ExecuteRequest {
                    mode: ExecuteMode::Complete,
                    code: body.code,
                    run_id: None,
                    options: body.options,
                };
                let r = m.execute(&owner, &name, req).await?;
                let completions: Vec<String> = r
                    .console
                    .into_iter()
                    .flat_map(|c| match c {
                        ConsoleItem::Completion(items) => items,
                        _ => vec![],
                    })
                    .collect();
                Ok(serde_json::json!({ "result": { "status": "finished", "completions": completions } }))
            }
            .await;
            respond(&caller, result, StatusCode::OK)
        });

    let logs = warp::path!("session" / String / "logs").and(warp::get()).and(auth).and(with_m).and(query).then(
        |name: String, caller: Caller, m: Arc<Manager>, q: OwnerQuery| async move {
            let result = async {
                let owner = acting_for(&m, &caller.keypair, q.owner_access_key.as_deref()).await?;
                m.logs(&owner, &name).await.map(|logs| serde_json::json!({ "result": { "logs": logs } }))
            }
            .await;
            respond(&caller, result, StatusCode::OK)
        },
    );

    create
        .or(list)
        .unify()
        .or(info)
        .unify()
        .or(destroy)
        .unify()
        .or(execute)
        .unify()
        .or(interrupt)
        .unify()
        .or(logs)
        .unify()
        .or(restart)
        .unify()
        .or(rename)
        .unify()
        .or(complete)
        .unify()
}
