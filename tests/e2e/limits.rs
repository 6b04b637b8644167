//! Limits and rich output a client can ask for: `options.exec_timeout` on an execution, `batch_timeout` on a batch
//! session, `config.resource_opts.shmem`, and `display()` items in the console.

use crate::common::{admin_stack, wait_for_status, Answer, Api};
use backend_core::events::Event;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

/// Follows `continued` until the run reaches another status; returns the last answer and every console item.
async fn follow(api: &Api, name: &str, mut a: Answer) -> (Answer, Vec<Value>) {
    let mut console = Vec::new();
    loop {
        assert_eq!(a.status, 200, "{}", a.body);
        console.extend(a.body["result"]["console"].as_array().unwrap().iter().cloned());
        if a.body["result"]["status"] != "continued" {
            return (a, console);
        }
        let run_id = a.body["result"]["runId"].as_str().unwrap().to_owned();
        a = api.execute(name, json!({"mode": "continue", "runId": run_id})).await;
    }
}

fn text_of(console: &[Value], kind: &str) -> String {
    console.iter().filter(|i| i[0] == kind).map(|i| i[1].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_timeout_stops_a_run_across_continue_calls_and_the_kernel_lives_on() {
    let (_dir, stack, api) = admin_stack().await;
    let a = api.create(json!({"image": "python", "name": "timed"})).await;
    assert_eq!(a.status, 201, "{}", a.body);
    api.run("timed", "x = 5").await;

    // The limit counts from the run's start, whichever call is waiting when it passes (3 s is past the ~2 s flush,
    // so at least one `continued` comes first).
    let a = api
        .execute(
            "timed",
            json!({"mode": "query", "code": "print('on')\nwhile True: pass", "options": {"exec_timeout": 3}}),
        )
        .await;
    assert_eq!(a.body["result"]["status"], "continued", "{}", a.body);
    let (a, console) = follow(&api, "timed", a).await;
    let r = &a.body["result"];
    assert_eq!(r["status"], "exec-timeout", "{}", a.body);
    assert_ne!(r["exitCode"].as_i64(), Some(0), "{}", a.body);
    assert_eq!(text_of(&console, "stdout"), "on\n");
    assert!(text_of(&console, "stderr").contains("KeyboardInterrupt"), "{console:?}");

    let (out, _, code) = api.run("timed", "print(x)").await;
    assert_eq!((out.as_str(), code), ("5\n", 0), "the kernel and its state survive");

    let a = api
        .execute("timed", json!({"mode": "query", "code": "while True: pass", "options": {"exec_timeout": 1}}))
        .await;
    let (a, _) = follow(&api, "timed", a).await;
    assert_eq!(a.body["result"]["status"], "exec-timeout", "{}", a.body);

    // Batch mode: the limit bounds the command.
    let a = api.execute("timed", json!({"mode": "batch", "options": {"exec": "sleep 30", "exec_timeout": 1}})).await;
    let (a, _) = follow(&api, "timed", a).await;
    assert_eq!(a.body["result"]["status"], "exec-timeout", "{}", a.body);
    assert_ne!(a.body["result"]["exitCode"].as_i64(), Some(0), "{}", a.body);

    for bad in [json!(0), json!(-2), json!("soon"), json!(true), json!({"s": 1})] {
        let a =
            api.execute("timed", json!({"mode": "query", "code": "print(1)", "options": {"exec_timeout": bad}})).await;
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
        assert!(a.body.to_string().contains("options.exec_timeout"), "{}", a.body);
    }
    let (out, _, _) = api.run("timed", "print('still here')").await;
    assert_eq!(out, "still here\n");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_timeout_fails_and_ends_a_batch_session_that_runs_too_long() {
    let (_dir, stack, api) = admin_stack().await;
    let mut events = stack.manager.bus.subscribe().await.unwrap();

    let a = api
        .create(json!({"image": "shell", "name": "slow-batch", "type": "batch", "startupCommand": "sleep 30", "batch_timeout": "1s"}))
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let session_id = a.body["sessionId"].as_str().unwrap().to_owned();
    let failure = loop {
        match events.next().await.expect("the bus stays open") {
            Event::SessionLifecycle { event, session_id: id, reason, .. }
                if id.to_string() == session_id && (event == "session_failure" || event == "session_success") =>
            {
                break (event, reason)
            }
            _ => {}
        }
    };
    assert_eq!(failure, ("session_failure".to_owned(), Some("batch-timeout".to_owned())));
    let info = wait_for_status(&api, "slow-batch", "TERMINATED").await;
    assert_eq!(info["result"], "FAILURE", "{info}");
    assert_eq!(info["statusInfo"], "batch-timeout", "{info}");
    assert_eq!(info["batchTimeout"], 1, "{info}");

    // Within its limit (a number of seconds, camelCase too) a batch session succeeds as before.
    let a = api
        .create(json!({"image": "shell", "name": "quick-batch", "type": "batch", "startupCommand": "true", "batchTimeout": 600}))
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let info = wait_for_status(&api, "quick-batch", "TERMINATED").await;
    assert_eq!((info["result"].as_str(), info["statusInfo"].as_str()), (Some("SUCCESS"), Some("batch-finished")));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_timeout_and_shmem_are_refused_where_they_cannot_hold() {
    let (_dir, stack, api) = admin_stack().await;
    let cases = [
        (json!({"image": "python", "name": "interactive-bt", "batch_timeout": "10m"}), "batch_timeout"),
        (
            json!({"image": "shell", "name": "bad-bt", "type": "batch", "startupCommand": "true", "batch_timeout": "soon"}),
            "batch_timeout",
        ),
        (
            json!({"image": "shell", "name": "zero-bt", "type": "batch", "startupCommand": "true", "batch_timeout": 0}),
            "batch_timeout",
        ),
        (
            json!({"image": "python", "name": "big-shm", "config": {"resources": {"mem": "256m"}, "resource_opts": {"shmem": "1g"}}}),
            "config.resource_opts.shmem",
        ),
        (
            json!({"image": "python", "name": "odd-shm", "config": {"resources": {"mem": "256m"}, "resource_opts": {"shmem": "lots"}}}),
            "config.resource_opts.shmem",
        ),
    ];
    for (body, named) in cases {
        let a = api.create(body.clone()).await;
        assert_eq!((a.status, a.problem()), (400, "invalid-api-params"), "{body} -> {}", a.body);
        assert!(a.body.to_string().contains(named), "{body} -> {}", a.body);
    }
    let sessions = api.send(Method::GET, "/session", None).await;
    assert_eq!(sessions.body["sessions"], json!([]), "a refused create leaves nothing");

    // A shmem within mem is accepted and kept with the session.
    let body = json!({"image": "python", "name": "ok-shm", "config": {"resources": {"mem": "256m"}, "resource_opts": {"shmem": "64m"}}});
    let a = api.create(body).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let session = stack.manager.store.find_session(&stack.admin.access_key, "ok-shm").await.unwrap().unwrap();
    assert_eq!(session.shmem, Some(64 << 20));
    let info = api.send(Method::GET, "/session/ok-shm", None).await;
    assert_eq!(info.body["resourceOpts"], json!({"shmem": 64 << 20}), "{}", info.body);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn display_puts_html_and_media_items_between_the_output_around_them() {
    let (_dir, stack, api) = admin_stack().await;
    let a = api.create(json!({"image": "python", "name": "rich"})).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let code = "class H:\n    def _repr_html_(self):\n        return '<b>x</b>'\n\
                print('a')\ndisplay(H())\nprint('b')\ndisplay('iVBORw==', mime='image/png')\nprint('c')";
    let a = api.execute("rich", json!({"mode": "query", "code": code})).await;
    let (a, console) = follow(&api, "rich", a).await;
    assert_eq!(a.body["result"]["status"], "finished", "{}", a.body);
    assert_eq!(
        Value::from(console),
        json!([
            ["stdout", "a\n"],
            ["html", "<b>x</b>"],
            ["stdout", "b\n"],
            ["media", ["image/png", "iVBORw=="]],
            ["stdout", "c\n"]
        ])
    );
    stack.shutdown().await;
}
