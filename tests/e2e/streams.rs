//! The streaming endpoints: `GET /stream/session/{name}/execute` (WebSocket) and `GET /events/session` (SSE), each
//! signed the way the official client signs them.

use crate::common::{admin_stack, start, user_keypair, Api};
use backend_core::auth::{authorization_header, SignedParts, API_VERSION};
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The `Date`, `X-BackendAI-Version` and `Authorization` headers of a GET signed with `content_type` (the official
/// client signs streaming GETs with `application/octet-stream` and sends no `Content-Type` header).
fn signed_get(api: &Api, path: &str, content_type: &str) -> Vec<(&'static str, String)> {
    let host = api.endpoint.trim_start_matches("http://").to_owned();
    let date = chrono::Utc::now().to_rfc3339();
    let parts = SignedParts {
        method: "GET",
        path_and_query: path,
        date: &date,
        host: &host,
        content_type,
        api_version: API_VERSION,
    };
    let auth = authorization_header(&api.access_key, &api.secret_key, &parts).unwrap();
    vec![("Date", date), ("X-BackendAI-Version", API_VERSION.to_owned()), ("Authorization", auth)]
}

/// Opens the execute stream, or returns the HTTP status it was refused with.
async fn connect(api: &Api, path: &str) -> Result<Socket, u16> {
    let url = format!("{}{path}", api.endpoint.replacen("http://", "ws://", 1));
    let mut req = url.into_client_request().unwrap();
    for (k, v) in signed_get(api, path, "application/octet-stream") {
        req.headers_mut().insert(k, v.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket connect failed: {e}"),
    }
}

/// Every JSON message until the server closes the socket.
async fn messages(socket: &mut Socket) -> Vec<Value> {
    let mut out = vec![];
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), socket.next()).await.expect("a message in time");
        match msg {
            Some(Ok(Message::Text(t))) => out.push(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Close(_))) | None => return out,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("websocket error: {e}"),
        }
    }
}

fn stdout_of(results: &[Value]) -> String {
    results
        .iter()
        .flat_map(|r| r["console"].as_array().cloned().unwrap_or_default())
        .filter(|i| i[0] == "stdout")
        .map(|i| i[1].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_execute_streams_results() {
    let (_dir, stack, api) = admin_stack().await;
    let created = api.create(json!({"image": "python:3.11", "name": "e2e-ws"})).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let session_id = created.body["sessionId"].as_str().unwrap().to_owned();

    // A query: one `finished` result with the output and exit code, then the server closes.
    let mut ws = connect(&api, "/stream/session/e2e-ws/execute").await.expect("upgrade");
    ws.send(Message::text(json!({"mode": "query", "code": "print(6*7)", "options": {}}).to_string())).await.unwrap();
    let results = messages(&mut ws).await;
    let last = results.last().expect("a result");
    assert_eq!(last["status"], "finished", "{results:?}");
    assert_eq!(last["exitCode"], 0);
    assert!(last["runId"].is_string());
    assert_eq!(stdout_of(&results), "42\n");

    // By id; a run longer than the flush window is followed by the server itself (`continued`, then `finished`),
    // and the exit code comes through.
    let path = format!("/stream/session/{session_id}/execute");
    let mut ws = connect(&api, &path).await.expect("upgrade");
    let code = "import sys, time\nprint('a', flush=True)\ntime.sleep(3)\nprint('b')\nsys.exit(3)";
    ws.send(Message::text(json!({"mode": "query", "code": code, "options": {}}).to_string())).await.unwrap();
    let results = messages(&mut ws).await;
    assert!(results.iter().any(|r| r["status"] == "continued"), "{results:?}");
    let last = results.last().unwrap();
    assert_eq!((last["status"].as_str(), last["exitCode"].as_i64()), (Some("finished"), Some(3)), "{results:?}");
    assert_eq!(stdout_of(&results), "a\nb\n");

    // Input: after `waiting-input` the client sends the raw text.
    let mut ws = connect(&api, "/stream/session/e2e-ws/execute").await.expect("upgrade");
    let code = "name = input('who? ')\nprint('hi', name)";
    ws.send(Message::text(json!({"mode": "query", "code": code, "options": {}}).to_string())).await.unwrap();
    let mut seen = vec![];
    loop {
        let Some(Ok(Message::Text(t))) = ws.next().await else { panic!("closed before waiting-input: {seen:?}") };
        let r: Value = serde_json::from_str(t.as_str()).unwrap();
        let waiting = r["status"] == "waiting-input";
        seen.push(r);
        if waiting {
            break;
        }
    }
    ws.send(Message::text("bob")).await.unwrap();
    seen.extend(messages(&mut ws).await);
    assert_eq!(seen.last().unwrap()["status"], "finished", "{seen:?}");
    assert!(stdout_of(&seen).contains("hi bob"), "{seen:?}");

    // A bad first message: an error message, then the close.
    let mut ws = connect(&api, "/stream/session/e2e-ws/execute").await.expect("upgrade");
    ws.send(Message::text("not json")).await.unwrap();
    let results = messages(&mut ws).await;
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0]["status"], "error");

    // Refusals before the upgrade: unknown session, another keypair's session, a plain GET, a forged signature.
    assert_eq!(connect(&api, "/stream/session/no-such/execute").await.err(), Some(404));
    let user = Api::new(&stack.endpoint, &user_keypair(&stack).await);
    assert_eq!(connect(&user, "/stream/session/e2e-ws/execute").await.err(), Some(404));
    let path = format!("/stream/session/e2e-ws/execute?owner_access_key={}", stack.admin.access_key);
    assert_eq!(connect(&user, &path).await.err(), Some(403));
    let plain = api.send(Method::GET, "/stream/session/e2e-ws/execute", None).await;
    assert_eq!((plain.status, plain.problem()), (400, "invalid-api-params"), "{}", plain.body);
    let mut forged = Api::new(&stack.endpoint, &stack.admin);
    forged.secret_key = "not-the-secret".into();
    assert_eq!(connect(&forged, "/stream/session/e2e-ws/execute").await.err(), Some(401));

    api.send(Method::DELETE, "/session/e2e-ws", None).await;
    stack.shutdown().await;
}

/// A Server-Sent Events reader.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(api: &Api, path: &str) -> Result<Self, u16> {
        let mut req = reqwest::Client::new().get(format!("{}{path}", api.endpoint));
        for (k, v) in signed_get(api, path, "") {
            req = req.header(k, v);
        }
        let resp = req.send().await.unwrap();
        if resp.status() != 200 {
            return Err(resp.status().as_u16());
        }
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        Ok(Self { resp, buf: String::new() })
    }

    /// The next (event name, data) pair.
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut data) = (String::from("message"), String::new());
                for line in block.lines() {
                    match line.split_once(':') {
                        Some(("event", v)) => event = v.trim_start().to_owned(),
                        Some(("data", v)) => data.push_str(v.trim_start()),
                        _ => {}
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return (event, serde_json::from_str(&data).unwrap());
            }
            let chunk = tokio::time::timeout(Duration::from_secs(60), self.resp.chunk())
                .await
                .expect("an event in time")
                .unwrap()
                .expect("the stream stays open");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_events_are_streamed_to_their_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(dir.path()).await;
    let admin = Api::new(&stack.endpoint, &stack.admin);
    let user_kp = user_keypair(&stack).await;
    let user = Api::new(&stack.endpoint, &user_kp);

    let mut all = Sse::open(&user, "/events/session").await.expect("events open");
    let mut sessions_only = Sse::open(&user, "/events/session?sessionName=e2e-sse&scope=session").await.unwrap();

    // Another keypair's session first: its events must not reach the user's stream.
    let other = admin.create(json!({"image": "python:3.11", "name": "e2e-sse-admin"})).await;
    assert_eq!(other.status, 201, "{}", other.body);
    let mine = user.create(json!({"image": "python:3.11", "name": "e2e-sse"})).await;
    assert_eq!(mine.status, 201, "{}", mine.body);
    let my_id = mine.body["sessionId"].as_str().unwrap().to_owned();
    let destroyed = user.send(Method::DELETE, "/session/e2e-sse", None).await;
    assert_eq!(destroyed.status, 200, "{}", destroyed.body);

    let mut names = vec![];
    loop {
        let (event, data) = all.next().await;
        assert_eq!(data["sessionName"], "e2e-sse", "{event} {data}");
        assert_eq!(data["sessionId"], my_id.as_str());
        assert_eq!(data["ownerAccessKey"], user_kp.access_key.as_str());
        if event.starts_with("kernel_") {
            assert_eq!((data["clusterRole"].as_str(), data["clusterIdx"].as_u64()), (Some("main"), Some(1)));
        }
        names.push(event.clone());
        if event == "session_terminated" {
            break;
        }
    }
    let at = |n: &str| names.iter().position(|e| e == n).unwrap_or_else(|| panic!("no {n} in {names:?}"));
    assert!(at("session_enqueued") < at("session_started"), "{names:?}");
    assert!(at("session_started") < at("session_terminated"), "{names:?}");
    assert!(names.iter().any(|e| e.starts_with("kernel_")), "{names:?}");

    let mut scoped = vec![];
    loop {
        let (event, data) = sessions_only.next().await;
        assert!(event.starts_with("session_"), "{event} {data}");
        assert_eq!(data["sessionName"], "e2e-sse");
        scoped.push(event.clone());
        if event == "session_terminated" {
            break;
        }
    }
    assert_eq!(scoped.first().map(String::as_str), Some("session_enqueued"), "{scoped:?}");

    // Refusals: a bad scope, a user acting for another keypair; an admin may.
    assert_eq!(Sse::open(&user, "/events/session?scope=nope").await.err(), Some(400));
    let path = format!("/events/session?ownerAccessKey={}", stack.admin.access_key);
    assert_eq!(Sse::open(&user, &path).await.err(), Some(403));
    let path = format!("/events/session?ownerAccessKey={}&scope=session", user_kp.access_key);
    let mut for_user = Sse::open(&admin, &path).await.expect("admins may watch another keypair");
    let again = user.create(json!({"image": "python:3.11", "name": "e2e-sse-2"})).await;
    assert_eq!(again.status, 201, "{}", again.body);
    let (event, data) = for_user.next().await;
    assert_eq!((event.as_str(), data["sessionName"].as_str()), ("session_enqueued", Some("e2e-sse-2")));

    user.send(Method::DELETE, "/session/e2e-sse-2", None).await;
    admin.send(Method::DELETE, "/session/e2e-sse-admin", None).await;
    stack.shutdown().await;
}
