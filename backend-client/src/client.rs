//! [`Client`]: one typed method per API call, plus [`Client::execute_to_end`] and [`Client::run_code`], which drive
//! a run through `continued` and `waiting-input` to its end.

pub mod admin;
pub mod folders;

use crate::config::{ClientConfig, ConfigError};
use crate::signing::{path_and_query_of, signed_headers};
use backend_core::api::{
    ConsoleItem, CreateSessionRequest, CreateSessionResponse, DestroyResponse, ExecuteMode, ExecuteRequest,
    ExecuteResponse, ExecutionResult, RunStatus, SessionInfo, SessionList, VersionInfo,
};
use backend_core::error::{Error, Problem, Result};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::time::Duration;

/// The input text that tells a run waiting for input that its standard input has ended (Ctrl-D).
pub const EOF_INPUT: &str = "\u{4}";

/// The exit code [`Client::run_code`] reports for a run that ended with `exec-timeout` and no exit code of its
/// own (the code `timeout(1)` uses).
pub const TIMEOUT_EXIT_CODE: i32 = 124;

const JSON: &str = "application/json";

/// A typed client of the Backend.AI API. Cloning is cheap and shares the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    config: ClientConfig,
    base: Url,
    http: reqwest::Client,
    owner_access_key: Option<String>,
}

impl Client {
    /// A client for `config`; fails when the endpoint is not an HTTP URL.
    pub fn new(config: ClientConfig) -> Result<Self, ConfigError> {
        let base = config.endpoint_url()?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| ConfigError::Http { source })?;
        Ok(Self { config, base, http, owner_access_key: None })
    }

    /// A client configured by the environment (see [`ClientConfig::from_env`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::new(ClientConfig::from_env()?)
    }

    /// The same client acting for another keypair (admins only): every call carries `owner_access_key`.
    pub fn acting_for(mut self, owner_access_key: impl Into<String>) -> Self {
        self.owner_access_key = Some(owner_access_key.into());
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// `GET /`: the API and server versions.
    pub async fn version(&self) -> Result<VersionInfo> {
        self.call(Method::GET, &[], &[], None).await
    }

    /// `POST /session`: creates a session, or returns the caller's live one of the same name (`created` false).
    pub async fn create_session(&self, request: &CreateSessionRequest) -> Result<CreateSessionResponse> {
        let body = match (&request.owner_access_key, &self.owner_access_key) {
            (None, Some(owner)) => {
                let request = CreateSessionRequest { owner_access_key: Some(owner.clone()), ..request.clone() };
                to_json(&request)?
            }
            _ => to_json(request)?,
        };
        self.call(Method::POST, &["session"], &[], Some(body)).await
    }

    /// `GET /session`: the caller's sessions, newest first.
    pub async fn list_sessions(&self) -> Result<SessionList> {
        self.call(Method::GET, &["session"], &self.owner_query(), None).await
    }

    /// `GET /session/{name}`: one session's status, resources and kernels.
    pub async fn session_info(&self, name: &str) -> Result<SessionInfo> {
        self.call(Method::GET, &["session", name], &self.owner_query(), None).await
    }

    /// `DELETE /session/{name}`: destroys a session; `forced` skips the graceful stop.
    pub async fn destroy_session(&self, name: &str, forced: bool) -> Result<DestroyResponse> {
        let mut query = self.owner_query();
        if forced {
            query.push(("forced", "true"));
        }
        self.call(Method::DELETE, &["session", name], &query, None).await
    }

    /// `POST /session/{name}`: one execute call. Most callers want [`execute_to_end`](Self::execute_to_end).
    pub async fn execute(&self, name: &str, request: &ExecuteRequest) -> Result<ExecutionResult> {
        let answer: ExecuteResponse =
            self.call(Method::POST, &["session", name], &self.owner_query(), Some(to_json(request)?)).await?;
        Ok(answer.result)
    }

    /// `POST /session/{name}/interrupt`: interrupts the code running in the session.
    pub async fn interrupt(&self, name: &str) -> Result<()> {
        let _: serde::de::IgnoredAny =
            self.call(Method::POST, &["session", name, "interrupt"], &self.owner_query(), None).await?;
        Ok(())
    }

    /// `GET /session/{name}/logs`: the session's container logs.
    pub async fn logs(&self, name: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct Logs {
            logs: String,
        }
        #[derive(Deserialize)]
        struct Answer {
            result: Logs,
        }
        let answer: Answer = self.call(Method::GET, &["session", name, "logs"], &self.owner_query(), None).await?;
        Ok(answer.result.logs)
    }

    /// Starts a run with `request` and follows it to its end: each call's console items go to `on_output` as
    /// they arrive, `continued` (and the batch milestones `clean-finished`, `build-finished`) are followed with
    /// mode `continue`, and `waiting-input` asks `input` for a line given the prompt (`None` sends end of file,
    /// [`EOF_INPUT`]). Returns the last result (`finished` or `exec-timeout`) with `console` holding every item
    /// of the run.
    pub async fn execute_to_end(
        &self,
        name: &str,
        request: ExecuteRequest,
        mut on_output: impl FnMut(&ConsoleItem),
        input: &mut dyn FnMut(&str) -> Option<String>,
    ) -> Result<ExecutionResult> {
        let mut console = Vec::new();
        let mut request = request;
        loop {
            let mut result = self.execute(name, &request).await?;
            result.console.iter().for_each(&mut on_output);
            console.append(&mut result.console);
            let (mode, code) = match result.status {
                RunStatus::Finished | RunStatus::ExecTimeout => {
                    result.console = console;
                    return Ok(result);
                }
                RunStatus::Continued | RunStatus::CleanFinished | RunStatus::BuildFinished => {
                    (ExecuteMode::Continue, String::new())
                }
                RunStatus::WaitingInput => {
                    let prompt = result.options.get("prompt").and_then(serde_json::Value::as_str).unwrap_or("");
                    (ExecuteMode::Input, input(prompt).unwrap_or_else(|| EOF_INPUT.to_owned()))
                }
            };
            request = ExecuteRequest { mode, code, run_id: Some(result.run_id), options: serde_json::Value::Null };
        }
    }

    /// Runs `code` in query mode (see [`execute_to_end`](Self::execute_to_end)) and returns its exit code
    /// ([`TIMEOUT_EXIT_CODE`] when it timed out without one).
    pub async fn run_code(
        &self,
        name: &str,
        code: &str,
        on_output: impl FnMut(&ConsoleItem),
        input: &mut dyn FnMut(&str) -> Option<String>,
    ) -> Result<i32> {
        let request = ExecuteRequest {
            mode: ExecuteMode::Query,
            code: code.to_owned(),
            run_id: None,
            options: serde_json::Value::Null,
        };
        let result = self.execute_to_end(name, request, on_output, input).await?;
        Ok(result.exit_code.unwrap_or(match result.status {
            RunStatus::ExecTimeout => TIMEOUT_EXIT_CODE,
            _ => 0,
        }))
    }

    fn owner_query(&self) -> Vec<(&str, &str)> {
        self.owner_access_key.iter().map(|owner| ("owner_access_key", owner.as_str())).collect()
    }

    /// The URL of an API path below the endpoint; segments are percent-encoded.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if !segments.is_empty() {
            // The endpoint was checked to be http(s), which always has path segments.
            if let Ok(mut path) = url.path_segments_mut() {
                path.pop_if_empty().extend(segments);
            }
        }
        if query.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(query);
        }
        url
    }

    /// Sends one signed request (with a JSON body, if any) and answers a 2xx status and its body, or the decoded
    /// problem+json of any other status.
    pub(crate) async fn send_signed(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<(reqwest::StatusCode, Vec<u8>)> {
        let content_type = body.as_ref().map(|_| JSON);
        let headers = signed_headers(&self.config, &method, &url, content_type, chrono::Utc::now())?;
        let mut request = self.http.request(method, url).headers(headers);
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.map_err(|e| self.unavailable(e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.unavailable(e))?;
        if !status.is_success() {
            return Err(Error::from_problem(status.as_u16(), problem_of(status, &bytes)));
        }
        Ok((status, bytes.to_vec()))
    }

    /// Sends one signed request and decodes a 2xx JSON answer, or the problem+json body of any other status.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        let url = self.url(segments, query);
        let what = format!("{method} {}", path_and_query_of(&url));
        let (status, bytes) = self.send_signed(method, url, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Internal {
            msg: format!("unexpected answer to {what} ({status}): {e}: {}", snippet(&bytes)),
        })
    }

    fn unavailable(&self, e: reqwest::Error) -> Error {
        let mut msg = format!("cannot reach {}", self.config.endpoint);
        // reqwest's own message repeats the URL; its causes say what went wrong.
        let mut cause = std::error::Error::source(&e);
        if cause.is_none() {
            msg.push_str(&format!(": {e}"));
        }
        while let Some(c) = cause {
            msg.push_str(&format!(": {c}"));
            cause = c.source();
        }
        Error::Unavailable { msg }
    }
}

fn to_json(value: &impl serde::Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(Error::internal)
}

/// The problem+json body of an error answer; a body that is not one becomes a problem titled by the status.
fn problem_of(status: reqwest::StatusCode, body: &[u8]) -> Problem {
    serde_json::from_slice(body).unwrap_or_else(|_| Problem {
        kind: "about:blank".to_owned(),
        title: status.canonical_reason().unwrap_or("HTTP error").to_owned(),
        msg: snippet(body),
    })
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backend_core::auth::{parse_authorization, verify, SignedParts};
    use backend_core::ErrorKind;
    use serde_json::{json, Value};
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const SECRET: &str = "test-secret";

    /// One request as the fake server received it.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        target: String,
        body: Value,
    }

    /// An HTTP server that checks each request's signature and answers from a script, in order.
    struct FakeServer {
        endpoint: String,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl FakeServer {
        async fn start(script: Vec<(u16, Value)>) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let endpoint = format!("http://{}", listener.local_addr().unwrap());
            let seen = Arc::new(Mutex::new(Vec::new()));
            let record = seen.clone();
            let mut script: VecDeque<_> = script.into();
            tokio::spawn(async move {
                while let Ok((mut conn, _)) = listener.accept().await {
                    let request = read_request(&mut conn).await;
                    let (status, body) = match check_signature(&request) {
                        Ok(()) => script.pop_front().unwrap_or((500, json!({"unexpected": true}))),
                        Err(e) => (401, serde_json::to_value(e.to_problem()).unwrap()),
                    };
                    record.lock().unwrap().push(request.seen);
                    let body = body.to_string();
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                         connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                }
            });
            Self { endpoint, seen }
        }

        fn client(&self) -> Client {
            Client::new(ClientConfig::new(&self.endpoint, "AKIATEST", SECRET)).unwrap()
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    struct RawRequest {
        seen: Seen,
        headers: Vec<(String, String)>,
    }

    async fn read_request(conn: &mut tokio::net::TcpStream) -> RawRequest {
        let mut buf = Vec::new();
        let head_end = loop {
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed mid-request");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap().split(' ');
        let (method, target) = (request_line.next().unwrap(), request_line.next().unwrap());
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = &buf[head_end..head_end + length];
        let body = if body.is_empty() { Value::Null } else { serde_json::from_slice(body).unwrap() };
        let seen = Seen { method: method.to_owned(), target: target.to_owned(), body };
        RawRequest { seen, headers }
    }

    /// Verifies a request the way the manager does, from what arrived on the wire.
    fn check_signature(request: &RawRequest) -> Result<()> {
        let header =
            |name: &str| request.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("");
        assert_eq!(header("date"), header("x-backendai-date"));
        let credential = parse_authorization(header("authorization"))?;
        assert_eq!(credential.access_key, "AKIATEST");
        let parts = SignedParts {
            method: &request.seen.method,
            path_and_query: &request.seen.target,
            date: header("x-backendai-date"),
            host: header("host"),
            content_type: header("content-type"),
            api_version: header("x-backendai-version"),
        };
        verify(SECRET, &parts, &credential.signature, chrono::Utc::now())
    }

    fn result(status: &str, exit_code: Option<i32>, options: Value, console: Value) -> (u16, Value) {
        let result = json!({"runId": "r1", "status": status, "exitCode": exit_code, "options": options,
                            "files": [], "console": console});
        (200, json!({ "result": result }))
    }

    #[tokio::test]
    async fn a_run_is_followed_through_continue_and_input() {
        let server = FakeServer::start(vec![
            result("continued", None, Value::Null, json!([["stdout", "a"]])),
            result("waiting-input", None, json!({"prompt": "name? "}), json!([["stderr", "b"]])),
            result("waiting-input", None, json!({"prompt": ""}), json!([])),
            result("finished", Some(3), Value::Null, json!([["stdout", "c"]])),
        ])
        .await;
        let client = server.client();
        let mut items = Vec::new();
        let mut prompts = Vec::new();
        let mut answers = vec![None, Some("bob".to_owned())];
        let mut input = |prompt: &str| {
            prompts.push(prompt.to_owned());
            answers.pop().unwrap()
        };
        let code = client.run_code("s1", "x = input()", |i| items.push(i.clone()), &mut input).await.unwrap();
        assert_eq!(code, 3);
        assert_eq!(
            items,
            vec![ConsoleItem::Stdout("a".into()), ConsoleItem::Stderr("b".into()), ConsoleItem::Stdout("c".into())]
        );
        assert_eq!(prompts, ["name? ", ""]);
        let seen = server.seen();
        let bodies: Vec<(&str, &str, Option<&str>)> = seen
            .iter()
            .map(|s| (s.body["mode"].as_str().unwrap(), s.body["code"].as_str().unwrap(), s.body["runId"].as_str()))
            .collect();
        assert_eq!(
            bodies,
            [
                ("query", "x = input()", None),
                ("continue", "", Some("r1")),
                ("input", "bob", Some("r1")),
                ("input", EOF_INPUT, Some("r1")),
            ]
        );
        assert!(seen.iter().all(|s| s.method == "POST" && s.target == "/session/s1"));
    }

    #[tokio::test]
    async fn batch_milestones_continue_and_the_whole_console_is_returned() {
        let server = FakeServer::start(vec![
            result("clean-finished", Some(0), Value::Null, json!([["stdout", "1"]])),
            result("build-finished", Some(0), Value::Null, json!([["stdout", "2"]])),
            result("exec-timeout", None, Value::Null, json!([["stdout", "3"]])),
        ])
        .await;
        let request = ExecuteRequest {
            mode: ExecuteMode::Batch,
            code: String::new(),
            run_id: None,
            options: json!({"exec": "sleep 100"}),
        };
        let result = server.client().execute_to_end("s1", request, |_| {}, &mut |_| None).await.unwrap();
        assert_eq!(result.status, RunStatus::ExecTimeout);
        let texts: Vec<ConsoleItem> = ["1", "2", "3"].map(|t| ConsoleItem::Stdout(t.into())).into();
        assert_eq!(result.console, texts);
        let modes: Vec<Value> = server.seen().iter().map(|s| s.body["mode"].clone()).collect();
        assert_eq!(modes, [json!("batch"), json!("continue"), json!("continue")]);
    }

    #[tokio::test]
    async fn problems_are_decoded_into_remote_errors() {
        let problem = json!({"type": "https://api.backend.ai/probs/session-not-found", "title": "No such session.",
                             "msg": "session not found: nope"});
        let server = FakeServer::start(vec![(404, problem), (502, json!("not a problem"))]).await;
        let client = server.client();
        let e = client.session_info("nope").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SessionNotFound);
        match e {
            Error::Remote { status, problem } => {
                assert_eq!((status, problem.msg.as_str()), (404, "session not found: nope"))
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = client.logs("s1").await.unwrap_err();
        assert!(matches!(&e, Error::Remote { status: 502, problem } if problem.title == "Bad Gateway"), "{e:?}");
    }

    #[tokio::test]
    async fn every_call_goes_to_its_route() {
        let session = json!({"sessionId": "id1", "sessionName": "s 1", "status": "RUNNING", "servicePorts": [],
                             "created": true});
        let server = FakeServer::start(vec![
            (200, json!({"version": "v7.20230615", "manager": "0.1.0"})),
            (201, session),
            (200, json!({"sessions": []})),
            (200, json!({})),
            (200, json!({"result": {"logs": "hello\n"}})),
            (200, json!({"stats": {}})),
        ])
        .await;
        let client = server.client().acting_for("AKIAOTHER");
        assert_eq!(client.version().await.unwrap().version, "v7.20230615");
        let request = CreateSessionRequest { image: Some("python".into()), ..Default::default() };
        assert!(client.create_session(&request).await.unwrap().created);
        assert!(client.list_sessions().await.unwrap().sessions.is_empty());
        client.interrupt("s 1").await.unwrap();
        assert_eq!(client.logs("s 1").await.unwrap(), "hello\n");
        client.destroy_session("s 1", true).await.unwrap();
        let seen = server.seen();
        let routes: Vec<(&str, &str)> = seen.iter().map(|s| (s.method.as_str(), s.target.as_str())).collect();
        assert_eq!(
            routes,
            [
                ("GET", "/"),
                ("POST", "/session"),
                ("GET", "/session?owner_access_key=AKIAOTHER"),
                ("POST", "/session/s%201/interrupt?owner_access_key=AKIAOTHER"),
                ("GET", "/session/s%201/logs?owner_access_key=AKIAOTHER"),
                ("DELETE", "/session/s%201?owner_access_key=AKIAOTHER&forced=true"),
            ]
        );
        assert_eq!(seen[1].body["image"], "python");
        assert_eq!(seen[1].body["owner_access_key"], "AKIAOTHER");
    }

    #[tokio::test]
    async fn an_endpoint_path_prefixes_every_route() {
        let server = FakeServer::start(vec![(200, json!({"sessions": []}))]).await;
        let client = Client::new(ClientConfig::new(format!("{}/api/", server.endpoint), "AKIATEST", SECRET)).unwrap();
        client.list_sessions().await.unwrap();
        assert_eq!(server.seen()[0].target, "/api/session");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable() {
        // Bind and drop to find a port nobody listens on.
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let client = Client::new(ClientConfig::new(format!("http://127.0.0.1:{port}"), "AKIATEST", SECRET)).unwrap();
        let e = client.version().await.unwrap_err();
        assert!(matches!(&e, Error::Unavailable { msg } if msg.contains(&port.to_string())), "{e:?}");
    }
}
