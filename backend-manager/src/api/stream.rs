//! `GET /stream/session/{name}/execute`: the streamed form of execute over a WebSocket, used by `backend.ai run`.
//!
//! The protocol, as Backend.AI's manager speaks it (and the official client's `exec_loop` expects):
//!
//! 1. The client opens the socket (a GET signed like any other request) and sends one JSON text message
//!    `{"mode": "query"|"batch", "code": "...", "options": {...}}` (`runId` optional).
//! 2. The server runs it and sends each intermediate result as a JSON text message shaped like the `result` of
//!    `POST /session/{name}`: `{"runId", "status", "exitCode", "options", "files", "console"}`. After `continued`,
//!    `build-finished` and `clean-finished` it keeps collecting by itself (mode=continue); after `waiting-input`
//!    the client's next text message is the input (sent raw; a JSON object `{"mode": "input", "code": ...}` is
//!    accepted as well).
//! 3. After `finished` or `exec-timeout` the server closes the socket. Errors after the upgrade are sent as
//!    `{"status": "error", "msg": "...", "type": "...", "title": "..."}` before closing.
//!
//! If the client goes away while code runs, the run is interrupted.

use super::session::OwnerQuery;
use super::{authenticated, Caller};
use crate::service::context::acting_for;
use crate::Manager;
use backend_agent::http::error_reply;
use backend_core::api::{ExecuteMode, ExecuteRequest, ExecutionResult, RunStatus};
use backend_core::error::{Error, Result};
use backend_core::ids::AccessKey;
use futures::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::sync::Arc;
use warp::reply::Response;
use warp::ws::{Message, WebSocket, Ws};
use warp::{Filter, Rejection, Reply};

/// The `/stream/session/{name}/execute` route.
pub fn routes(m: Arc<Manager>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let auth = authenticated(m.clone());
    let with_m = warp::any().map(move || m.clone());
    let upgrade = warp::ws().map(Some).or(warp::any().map(|| None)).unify();
    warp::path!("stream" / "session" / String / "execute")
        .and(warp::get())
        .and(auth)
        .and(with_m)
        .and(warp::query::<OwnerQuery>())
        .and(upgrade)
        .then(|name: String, caller: Caller, m: Arc<Manager>, q: OwnerQuery, ws: Option<Ws>| async move {
            let resolved = async {
                let owner = acting_for(&m, &caller.keypair, q.owner_access_key.as_deref()).await?;
                let session = m.find_session(&owner, &name).await?;
                let ws = ws.ok_or_else(|| Error::InvalidParams {
                    msg: "this endpoint expects a WebSocket upgrade (Connection: upgrade, Upgrade: websocket)".into(),
                })?;
                Ok::<_, Error>((owner, session.id.to_string(), ws))
            }
            .await;
            let resp = match resolved {
                Ok((owner, target, ws)) => ws.on_upgrade(move |socket| relay(m, owner, target, socket)).into_response(),
                Err(e) => error_reply(&e),
            };
            caller.decorate(resp)
        })
}

/// A message from the client, or `None` once it has gone (closed the socket, or the connection broke).
async fn next_text(rx: &mut futures::stream::SplitStream<WebSocket>) -> Option<String> {
    while let Some(msg) = rx.next().await {
        let msg = msg.ok()?;
        if msg.is_close() {
            return None;
        }
        if let Ok(text) = msg.to_str() {
            return Some(text.to_owned());
        }
        if msg.is_binary() {
            return Some(String::from_utf8_lossy(msg.as_bytes()).into_owned());
        }
        // Pings are answered by the socket itself; pongs carry nothing.
    }
    None
}

/// The first message: what to run.
fn parse_request(text: &str) -> Result<ExecuteRequest> {
    let invalid = |msg: String| Error::InvalidParams { msg };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| invalid(format!("the first message must be a JSON object: {e}")))?;
    if !value.is_object() {
        return Err(invalid("the first message must be a JSON object".into()));
    }
    let req: ExecuteRequest = serde_json::from_value(value).map_err(|e| invalid(format!("malformed request: {e}")))?;
    if !matches!(req.mode, ExecuteMode::Query | ExecuteMode::Batch) {
        return Err(invalid("mode must be \"query\" or \"batch\" for a streamed execution".into()));
    }
    Ok(req)
}

/// An input message: the raw text, or the `code` of a JSON `{"mode": "input", "code": ...}`.
fn input_text(text: String) -> String {
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(&text) {
        if o.get("mode").and_then(|m| m.as_str()) == Some("input") {
            return o.get("code").and_then(|c| c.as_str()).unwrap_or_default().to_owned();
        }
    }
    text
}

fn error_message(e: &Error) -> Message {
    if e.kind() == backend_core::error::ErrorKind::Internal {
        tracing::error!(error = %e, "stream execute failed");
    }
    let p = e.to_problem();
    Message::text(serde_json::json!({"status": "error", "msg": p.msg, "type": p.kind, "title": p.title}).to_string())
}

fn result_message(r: &ExecutionResult) -> Message {
    Message::text(serde_json::to_string(r).unwrap_or_else(|_| "{}".into()))
}

/// Runs one request to its end, streaming every result; returns when the run is over or the client has gone.
async fn relay(m: Arc<Manager>, owner: AccessKey, target: String, socket: WebSocket) {
    let (mut tx, mut rx) = socket.split();
    let Some(first) = next_text(&mut rx).await else { return };
    let mut req = match parse_request(&first) {
        Ok(req) => req,
        Err(e) => {
            let _ = tx.send(error_message(&e)).await;
            let _ = tx.send(Message::close()).await;
            return;
        }
    };
    if req.run_id.as_deref().is_none_or(str::is_empty) {
        req.run_id = Some(format!("{:016x}", rand::random::<u64>()));
    }
    // Text the client sent while a call was in progress (input typed ahead).
    let mut pending: VecDeque<String> = VecDeque::new();
    loop {
        let call = m.execute(&owner, &target, req.clone());
        tokio::pin!(call);
        let outcome = loop {
            tokio::select! {
                r = &mut call => break Some(r),
                msg = next_text(&mut rx) => match msg {
                    Some(text) => pending.push_back(text),
                    None => break None,
                },
            }
        };
        let Some(outcome) = outcome else {
            // The client went away mid-run: stop the code, as Backend.AI does.
            tracing::debug!(session = %target, "stream execute: client disconnected, interrupting");
            let _ = m.interrupt(&owner, &target).await;
            return;
        };
        let result = match outcome {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(error_message(&e)).await;
                break;
            }
        };
        if tx.send(result_message(&result)).await.is_err() {
            let _ = m.interrupt(&owner, &target).await;
            return;
        }
        let run_id = Some(result.run_id.clone());
        req = match result.status {
            RunStatus::Finished | RunStatus::ExecTimeout => break,
            RunStatus::WaitingInput => {
                let text = match pending.pop_front() {
                    Some(t) => t,
                    None => match next_text(&mut rx).await {
                        Some(t) => t,
                        None => {
                            let _ = m.interrupt(&owner, &target).await;
                            return;
                        }
                    },
                };
                ExecuteRequest { mode: ExecuteMode::Input, code: input_text(text), run_id, options: Default::default() }
            }
            RunStatus::Continued | RunStatus::BuildFinished | RunStatus::CleanFinished => {
                ExecuteRequest { mode: ExecuteMode::Continue, code: String::new(), run_id, options: Default::default() }
            }
        };
    }
    let _ = tx.send(Message::close()).await;
}
