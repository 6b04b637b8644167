//! The typed client against a real stack: signing, streaming with input, and errors decoded into the shared type.

use crate::common::start;
use backend_client::{Client, ClientConfig};
use backend_core::api::{ConsoleItem, CreateSessionRequest};
use backend_core::ErrorKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_client_runs_code_with_input_and_decodes_errors() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(dir.path()).await;
    let client = Client::new(ClientConfig::new(
        stack.endpoint.clone(),
        stack.admin.access_key.to_string(),
        stack.admin.secret_key.clone(),
    ))
    .unwrap();
    assert_eq!(client.version().await.unwrap().version, "v7.20230615");
    let req = CreateSessionRequest { image: Some("python".into()), name: Some("typed".into()), ..Default::default() };
    let created = client.create_session(&req).await.unwrap();
    assert_eq!(created.status, "RUNNING");

    let mut out = String::new();
    let mut prompts = Vec::new();
    let mut answer = |prompt: &str| {
        prompts.push(prompt.to_owned());
        Some("ada".to_owned())
    };
    let code = client
        .run_code(
            "typed",
            "import sys\nname = input('name? ')\nprint('hello', name)\nsys.exit(4)",
            |item| {
                if let ConsoleItem::Stdout(s) = item {
                    out.push_str(s)
                }
            },
            &mut answer,
        )
        .await
        .unwrap();
    assert_eq!(code, 4);
    assert_eq!(prompts, ["name? "]);
    assert!(out.contains("hello ada"), "{out}");

    let err = client.session_info("no-such-session").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SessionNotFound);
    let wrong =
        Client::new(ClientConfig::new(stack.endpoint.clone(), stack.admin.access_key.to_string(), "wrong")).unwrap();
    assert_eq!(wrong.list_sessions().await.unwrap_err().kind(), ErrorKind::AuthFailed);

    client.destroy_session("typed", false).await.unwrap();
    assert_eq!(client.session_info("typed").await.unwrap().status, "TERMINATED");
    stack.shutdown().await;
}
