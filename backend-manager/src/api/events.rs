//! `GET /events/session`: session and kernel lifecycle events as Server-Sent Events.
//!
//! Query: `sessionName` (alias `name`, default `*`), `ownerAccessKey` (alias `owner_access_key`: admins only),
//! `sessionId` (overrides `sessionName`), `group` (alias `groupName`, default `*`), `scope` (`session`, `kernel`,
//! `*`). Each event is named by its Backend.AI event name (`session_started`, `kernel_terminated`, ...) and its
//! `data` is a JSON object: `{"reason", "sessionName", "ownerAccessKey", "sessionId"}`, plus `exitCode` when known,
//! plus `kernelId`, `clusterRole` and `clusterIdx` for kernel events. The stream only carries the sessions of the
//! keypair the caller acts for; each session and kernel is looked up once, through the session service.

use super::authenticated;
use super::Caller;
use crate::service::context::acting_for;
use crate::Manager;
use backend_agent::http::error_reply;
use backend_core::error::{Error, Result};
use backend_core::events::{Event, EventStream};
use backend_core::ids::{AccessKey, KernelId, SessionId};
use serde::Deserialize;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

/// Query parameters of `GET /events/session`.
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    /// A session name, or `*` for every session.
    #[serde(rename = "sessionName", alias = "name")]
    pub session_name: Option<String>,
    /// Admins: the keypair whose sessions to watch.
    #[serde(rename = "ownerAccessKey", alias = "owner_access_key")]
    pub owner_access_key: Option<String>,
    /// One session by id (overrides `sessionName`).
    #[serde(rename = "sessionId")]
    pub session_id: Option<String>,
    /// A group (project) name, or `*`.
    #[serde(alias = "groupName")]
    pub group: Option<String>,
    /// `session`, `kernel` or `*`.
    pub scope: Option<String>,
}

/// Which events a stream carries.
#[derive(Debug, Clone)]
struct Selection {
    owner: AccessKey,
    session_id: Option<SessionId>,
    session_name: Option<String>,
    group: Option<String>,
    sessions: bool,
    kernels: bool,
}

fn wildcard(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty() && s != "*")
}

impl Selection {
    async fn new(m: &Manager, caller: &Caller, q: EventsQuery) -> Result<Self> {
        let invalid = |msg: String| Error::InvalidParams { msg };
        let (sessions, kernels) = match q.scope.as_deref().unwrap_or("*") {
            "*" | "" => (true, true),
            "session" => (true, false),
            "kernel" => (false, true),
            other => return Err(invalid(format!("scope must be session, kernel or *, not {other:?}"))),
        };
        let session_id = match wildcard(q.session_id) {
            Some(id) => Some(id.parse().map_err(|_| invalid(format!("sessionId {id:?} is not a UUID")))?),
            None => None,
        };
        let owner = acting_for(m, &caller.keypair, q.owner_access_key.as_deref()).await?;
        Ok(Self {
            owner,
            session_id,
            session_name: wildcard(q.session_name),
            group: wildcard(q.group),
            sessions,
            kernels,
        })
    }
}

/// What a stream remembers of the sessions it has seen: `None` for those it must not show.
#[derive(Debug, Clone)]
struct SessionFacts {
    name: String,
    owner: AccessKey,
    group: String,
}

/// What a stream remembers of the kernels it has seen: their place in the cluster.
#[derive(Debug, Clone)]
struct KernelFacts {
    role: String,
    idx: u32,
}

struct State {
    m: Arc<Manager>,
    events: EventStream,
    select: Selection,
    sessions: HashMap<SessionId, Option<SessionFacts>>,
    kernels: HashMap<KernelId, Option<KernelFacts>>,
}

impl State {
    async fn session(&mut self, id: SessionId) -> Option<SessionFacts> {
        if let Some(known) = self.sessions.get(&id) {
            return known.clone();
        }
        let facts = match self.m.session_by_id(id).await {
            Ok(Some(s)) if s.access_key == self.select.owner => {
                Some(SessionFacts { name: s.name, owner: s.access_key, group: s.group })
            }
            Ok(_) => None,
            // Not cached: the next event tries again.
            Err(e) => {
                tracing::warn!(session = %id, error = %e, "event stream: cannot read the session");
                return None;
            }
        };
        self.sessions.insert(id, facts.clone());
        facts
    }

    async fn kernel(&mut self, id: KernelId) -> Option<KernelFacts> {
        if let Some(known) = self.kernels.get(&id) {
            return known.clone();
        }
        let facts = match self.m.kernel_by_id(id).await {
            Ok(k) => k.map(|k| KernelFacts { role: k.cluster_role, idx: k.cluster_idx }),
            Err(_) => return None,
        };
        self.kernels.insert(id, facts.clone());
        facts
    }

    /// The SSE event for a bus event, if this stream shows it.
    async fn render(&mut self, ev: Event) -> Option<warp::sse::Event> {
        let Event::SessionLifecycle { event, session_id, kernel_id, reason, exit_code, .. } = ev else {
            return None;
        };
        let is_kernel = event.starts_with("kernel_");
        if (is_kernel && !self.select.kernels) || (!is_kernel && !self.select.sessions) {
            return None;
        }
        if self.select.session_id.is_some_and(|id| id != session_id) {
            return None;
        }
        let facts = self.session(session_id).await?;
        if self.select.session_id.is_none() && self.select.session_name.as_ref().is_some_and(|n| *n != facts.name) {
            return None;
        }
        if self.select.group.as_ref().is_some_and(|g| *g != facts.group) {
            return None;
        }
        let mut data = serde_json::json!({
            "reason": reason.unwrap_or_default(),
            "sessionName": facts.name,
            "ownerAccessKey": facts.owner.to_string(),
            "sessionId": session_id.to_string(),
        });
        if let Some(code) = exit_code {
            data["exitCode"] = code.into();
        }
        if let (true, Some(kid)) = (is_kernel, kernel_id) {
            data["kernelId"] = kid.to_string().into();
            if let Some(facts) = self.kernel(kid).await {
                data["clusterRole"] = facts.role.into();
                data["clusterIdx"] = facts.idx.into();
            }
        }
        Some(warp::sse::Event::default().event(event).data(data.to_string()))
    }
}

/// The SSE stream of a [`State`]. The filtering runs in a task of its own (warp wants a `Sync` stream, and the
/// store's futures are not), which ends when the client goes away.
fn sse_stream(mut state: State) -> impl futures::Stream<Item = std::result::Result<warp::sse::Event, Infallible>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<warp::sse::Event>(64);
    tokio::spawn(async move {
        use futures::StreamExt;
        loop {
            let ev = tokio::select! {
                ev = state.events.next() => match ev {
                    Some(ev) => ev,
                    None => return,
                },
                () = tx.closed() => return,
            };
            if let Some(sse) = state.render(ev).await {
                if tx.send(sse).await.is_err() {
                    return;
                }
            }
        }
    });
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|ev| ev.map(Ok)))
}

/// The `/events/session` route.
pub fn routes(m: Arc<Manager>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let auth = authenticated(m.clone());
    let with_m = warp::any().map(move || m.clone());
    warp::path!("events" / "session").and(warp::get()).and(auth).and(with_m).and(warp::query::<EventsQuery>()).then(
        |caller: Caller, m: Arc<Manager>, q: EventsQuery| async move {
            let opened = async {
                let select = Selection::new(&m, &caller, q).await?;
                // Subscribe before answering, so that nothing published after the response is missed.
                let events = m.bus.subscribe().await?;
                Ok::<_, Error>(State { m, events, select, sessions: HashMap::new(), kernels: HashMap::new() })
            }
            .await;
            let resp = match opened {
                Ok(state) => {
                    let keep_alive = warp::sse::keep_alive().interval(Duration::from_secs(15));
                    warp::sse::reply(keep_alive.stream(sse_stream(state))).into_response()
                }
                Err(e) => error_reply(&e),
            };
            caller.decorate(resp)
        },
    )
}
