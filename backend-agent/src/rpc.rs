//! The agent's RPC API, as the manager calls it: wire types, the warp routes, and the typed HTTP client.
//!
//! Every route needs the shared agent token in `X-BackendAI-Agent-Token`.

use crate::http::{detailed_error_reply, json_object, json_reply, recover};
use crate::Agent;
use backend_core::api::{ExecuteRequest, ExecutionResult};
use backend_core::error::{Error, Problem, Result};
use backend_core::ids::KernelId;
use backend_core::runtime::{KernelExit, KernelHandle, KernelSpec};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

/// The header carrying the shared token.
pub const TOKEN_HEADER: &str = "x-backendai-agent-token";

/// Query of `DELETE /v1/kernels/{id}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DestroyQuery {
    /// Skip the graceful stop.
    #[serde(default)]
    pub forced: bool,
}

/// Query of the `/v1/kernels/{id}/files` routes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FileQuery {
    /// A path relative to the kernel's work directory.
    #[serde(default)]
    pub path: String,
}

/// The agent's RPC routes.
pub fn routes(agent: Arc<Agent>) -> warp::filters::BoxedFilter<(Response,)> {
    let token = agent.config.token.clone();
    let authed = warp::header::optional::<String>(TOKEN_HEADER)
        .and_then(move |given: Option<String>| {
            let token = token.clone();
            async move {
                use subtle_eq::eq;
                match given {
                    Some(g) if eq(g.as_bytes(), token.as_bytes()) => Ok(()),
                    _ => Err(crate::http::reject(Error::AuthFailed { msg: "missing or wrong agent token".into() })),
                }
            }
        })
        .untuple_one();
    let with_agent = warp::any().map(move || agent.clone());
    let kernels = warp::path!("v1" / "kernels");
    let kernel = warp::path!("v1" / "kernels" / KernelId);
    let create = kernels
        .and(warp::post())
        .and(authed.clone())
        .and(with_agent.clone())
        .and(json_object(1 << 20))
        .then(|agent: Arc<Agent>, spec: KernelSpec| async move {
            reply(agent.create_kernel(spec).await, StatusCode::CREATED)
        });
    let restart = warp::path!("v1" / "kernels" / KernelId / "restart")
        .and(warp::post())
        .and(authed.clone())
        .and(with_agent.clone())
        .and(json_object(1 << 20))
        .then(|id: KernelId, agent: Arc<Agent>, spec: KernelSpec| async move {
            if spec.kernel_id != id {
                return detailed_error_reply(&Error::InvalidParams { msg: "the spec is of another kernel".into() });
            }
            reply(agent.restart_kernel(spec).await, StatusCode::OK)
        });
    let list = kernels
        .and(warp::get())
        .and(authed.clone())
        .and(with_agent.clone())
        .map(|agent: Arc<Agent>| json_reply(StatusCode::OK, &agent.kernels.handles()));
    let destroy =
        kernel.and(warp::delete()).and(authed.clone()).and(with_agent.clone()).and(warp::query::<DestroyQuery>()).then(
            |id: KernelId, agent: Arc<Agent>, q: DestroyQuery| async move {
                reply(agent.destroy_kernel(id, q.forced).await, StatusCode::OK)
            },
        );
    let execute = warp::path!("v1" / "kernels" / KernelId / "execute")
        .and(warp::post())
        .and(authed.clone())
        .and(with_agent.clone())
        .and(json_object(16 << 20))
        .then(|id: KernelId, agent: Arc<Agent>, req: ExecuteRequest| async move {
            reply(agent.execute(id, req).await, StatusCode::OK)
        });
    let interrupt = warp::path!("v1" / "kernels" / KernelId / "interrupt")
        .and(warp::post())
        .and(authed.clone())
        .and(with_agent.clone())
        .then(|id: KernelId, agent: Arc<Agent>| async move {
            reply(agent.interrupt(id).await.map(|()| serde_json::json!({})), StatusCode::OK)
        });
    let files = warp::path!("v1" / "kernels" / KernelId / "files");
    let put_file = files
        .and(warp::put())
        .and(authed.clone())
        .and(with_agent.clone())
        .and(warp::query::<FileQuery>())
        .and(warp::body::content_length_limit(crate::files::MAX_FILE_BYTES))
        .and(warp::body::stream())
        .then(|id: KernelId, agent: Arc<Agent>, q: FileQuery, body| async move {
            reply(
                agent.put_file(id, &q.path, body).await.map(|size| serde_json::json!({ "size": size })),
                StatusCode::OK,
            )
        });
    let get_file =
        files.and(warp::get()).and(authed.clone()).and(with_agent.clone()).and(warp::query::<FileQuery>()).then(
            |id: KernelId, agent: Arc<Agent>, q: FileQuery| async move {
                match agent.get_file(id, &q.path).await {
                    Ok(bytes) => {
                        let mut resp = Response::new(bytes.into());
                        resp.headers_mut()
                            .insert("content-type", warp::http::HeaderValue::from_static("application/octet-stream"));
                        resp
                    }
                    Err(e) => detailed_error_reply(&e),
                }
            },
        );
    let list_files = warp::path!("v1" / "kernels" / KernelId / "files" / "list")
        .and(warp::get())
        .and(authed.clone())
        .and(with_agent.clone())
        .and(warp::query::<FileQuery>())
        .then(|id: KernelId, agent: Arc<Agent>, q: FileQuery| async move {
            reply(agent.list_files(id, &q.path).await, StatusCode::OK)
        });
    let logs = warp::path!("v1" / "kernels" / KernelId / "logs").and(warp::get()).and(authed).and(with_agent).then(
        |id: KernelId, agent: Arc<Agent>| async move {
            reply(agent.runtime.logs(id).await.map(|logs| serde_json::json!({ "logs": logs })), StatusCode::OK)
        },
    );
    create
        .or(restart)
        .unify()
        .or(list)
        .unify()
        .or(destroy)
        .unify()
        .or(execute)
        .unify()
        .or(interrupt)
        .unify()
        .or(logs)
        .unify()
        .or(put_file)
        .unify()
        .or(get_file)
        .unify()
        .or(list_files)
        .unify()
        .recover(recover)
        .unify()
        .boxed()
}

fn reply<T: Serialize>(result: Result<T>, status: StatusCode) -> Response {
    match result {
        Ok(body) => json_reply(status, &body),
        Err(e) => detailed_error_reply(&e),
    }
}

mod subtle_eq {
    /// Compares in time independent of where the inputs differ.
    pub fn eq(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Calls agents' RPC APIs. Cheap to clone; connections are pooled.
#[derive(Clone)]
pub struct AgentClient {
    http: reqwest::Client,
    token: String,
}

impl AgentClient {
    /// A client sending `token`.
    pub fn new(token: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .expect("HTTP client");
        Self { http, token: token.into() }
    }

    async fn call<T: serde::de::DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T> {
        let resp = req
            .header(TOKEN_HEADER, &self.token)
            .send()
            .await
            .map_err(|e| Error::Unavailable { msg: format!("agent unreachable: {e}") })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| Error::Unavailable { msg: format!("agent answer cut: {e}") })?;
        if status.is_success() {
            serde_json::from_slice(&bytes).map_err(|e| Error::internal(format!("bad agent answer: {e}")))
        } else {
            Err(Self::problem(status, &bytes))
        }
    }

    fn problem(status: reqwest::StatusCode, bytes: &[u8]) -> Error {
        let problem: Problem = serde_json::from_slice(bytes).unwrap_or_else(|_| Problem {
            kind: backend_core::ErrorKind::Internal.type_url(),
            title: "agent error".into(),
            msg: String::from_utf8_lossy(bytes).into_owned(),
        });
        Error::from_problem(status.as_u16(), problem)
    }

    /// Creates and starts a kernel.
    pub async fn create_kernel(&self, addr: &str, spec: &KernelSpec) -> Result<KernelHandle> {
        self.call(self.http.post(format!("{addr}/v1/kernels")).json(spec)).await
    }

    /// Restarts a kernel from its spec.
    pub async fn restart_kernel(&self, addr: &str, spec: &KernelSpec) -> Result<KernelHandle> {
        self.call(self.http.post(format!("{addr}/v1/kernels/{}/restart", spec.kernel_id)).json(spec)).await
    }

    /// Destroys a kernel.
    pub async fn destroy_kernel(&self, addr: &str, id: KernelId, forced: bool) -> Result<KernelExit> {
        self.call(self.http.delete(format!("{addr}/v1/kernels/{id}?forced={forced}"))).await
    }

    /// Runs one execute call.
    pub async fn execute(&self, addr: &str, id: KernelId, req: &ExecuteRequest) -> Result<ExecutionResult> {
        self.call(self.http.post(format!("{addr}/v1/kernels/{id}/execute")).json(req)).await
    }

    /// Interrupts the running code.
    pub async fn interrupt(&self, addr: &str, id: KernelId) -> Result<()> {
        self.call::<serde_json::Value>(self.http.post(format!("{addr}/v1/kernels/{id}/interrupt"))).await.map(drop)
    }

    /// The kernel's logs.
    pub async fn logs(&self, addr: &str, id: KernelId) -> Result<String> {
        let v: serde_json::Value = self.call(self.http.get(format!("{addr}/v1/kernels/{id}/logs"))).await?;
        Ok(v["logs"].as_str().unwrap_or_default().to_owned())
    }

    /// Stores `content` at `path` (relative to the kernel's work directory); returns the size written.
    pub async fn put_file(&self, addr: &str, id: KernelId, path: &str, content: bytes::Bytes) -> Result<u64> {
        let url = format!("{addr}/v1/kernels/{id}/files");
        let v: serde_json::Value = self.call(self.http.put(url).query(&[("path", path)]).body(content)).await?;
        Ok(v["size"].as_u64().unwrap_or_default())
    }

    /// The content of the file at `path` (relative to the kernel's work directory).
    pub async fn get_file(&self, addr: &str, id: KernelId, path: &str) -> Result<bytes::Bytes> {
        let url = format!("{addr}/v1/kernels/{id}/files");
        let resp = self
            .http
            .get(url)
            .query(&[("path", path)])
            .header(TOKEN_HEADER, &self.token)
            .send()
            .await
            .map_err(|e| Error::Unavailable { msg: format!("agent unreachable: {e}") })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| Error::Unavailable { msg: format!("agent answer cut: {e}") })?;
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(Self::problem(status, &bytes))
        }
    }

    /// The entries of the directory at `path` (relative to the kernel's work directory).
    pub async fn list_files(&self, addr: &str, id: KernelId, path: &str) -> Result<Vec<crate::files::FileEntry>> {
        self.call(self.http.get(format!("{addr}/v1/kernels/{id}/files/list")).query(&[("path", path)])).await
    }

    /// Kernels the agent runs.
    pub async fn list_kernels(&self, addr: &str) -> Result<Vec<KernelHandle>> {
        self.call(self.http.get(format!("{addr}/v1/kernels"))).await
    }
}
