//! A session's life: create, two executions sharing state, input, interrupt of an endless loop, destroy.

use crate::common::{admin_stack, start, wait_for_status, Api};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_runs_code_keeps_state_reads_input_survives_interrupt() {
    let (_dir, stack, api) = admin_stack().await;

    let root = api.send(Method::GET, "/", None).await;
    assert_eq!(root.body["version"], "v7.20230615");

    let created = api
        .create(json!({"image": "python:3.11", "name": "e2e-life", "config": {"resources": {"cpu": 1, "mem": "256m"}}}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["status"], "RUNNING");
    assert_eq!(created.headers["x-ratelimit-window"], "900");
    let session_id = created.body["sessionId"].as_str().unwrap().to_owned();

    // Reuse by name answers 200 with the same session.
    let again = api.create(json!({"image": "python:3.11", "name": "e2e-life"})).await;
    assert_eq!((again.status, again.body["sessionId"].as_str().unwrap()), (200, session_id.as_str()));
    assert_eq!(again.body["created"], false);

    let (out, _, code) = api.run("e2e-life", "x = 41").await;
    assert_eq!((out.as_str(), code), ("", 0));
    let (out, _, code) = api.run("e2e-life", "print(x + 1)").await;
    assert_eq!((out.as_str(), code), ("42\n", 0));

    // stderr and exit codes.
    let (_, err, code) = api.run("e2e-life", "raise ValueError('boom')").await;
    assert_eq!(code, 1);
    assert!(err.contains("ValueError: boom"), "{err}");

    // Input.
    let a = api.execute("e2e-life", json!({"mode": "query", "code": "name = input('who? ')\nprint('hi', name)"})).await;
    let r = &a.body["result"];
    assert_eq!(r["status"], "waiting-input", "{}", a.body);
    let run_id = r["runId"].as_str().unwrap().to_owned();
    let a = api.execute("e2e-life", json!({"mode": "input", "code": "bob", "runId": run_id})).await;
    let r = &a.body["result"];
    assert_eq!(r["status"], "finished", "{}", a.body);
    let out: String =
        r["console"].as_array().unwrap().iter().filter(|i| i[0] == "stdout").map(|i| i[1].as_str().unwrap()).collect();
    assert!(out.contains("hi bob"), "{out}");

    // An endless loop answers `continued`, is interrupted, and the kernel lives on.
    let a = api.execute("e2e-life", json!({"mode": "query", "code": "while True: pass"})).await;
    assert_eq!(a.body["result"]["status"], "continued", "{}", a.body);
    let run_id = a.body["result"]["runId"].as_str().unwrap().to_owned();
    let busy = api.execute("e2e-life", json!({"mode": "query", "code": "print(1)"})).await;
    assert_eq!(busy.status, 409, "a second run while one is active is refused: {}", busy.body);
    let i = api.send(Method::POST, "/session/e2e-life/interrupt", None).await;
    assert_eq!(i.status, 200, "{}", i.body);
    let mut done = api.execute("e2e-life", json!({"mode": "continue", "runId": run_id})).await;
    while done.body["result"]["status"] == "continued" {
        done = api.execute("e2e-life", json!({"mode": "continue", "runId": run_id})).await;
    }
    assert_eq!(done.body["result"]["status"], "finished");
    assert_ne!(done.body["result"]["exitCode"], 0);
    let (out, _, _) = api.run("e2e-life", "print(x)").await;
    assert_eq!(out, "41\n", "state survives the interrupt");

    // Info, list, destroy.
    let info = api.send(Method::GET, "/session/e2e-life", None).await;
    assert_eq!(info.body["status"], "RUNNING");
    let history: Vec<&str> =
        info.body["statusHistory"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap()).collect();
    assert_eq!(history, ["PENDING", "SCHEDULED", "PREPARING", "CREATING", "RUNNING"]);
    let list = api.send(Method::GET, "/session", None).await;
    assert!(list.body["sessions"].as_array().unwrap().iter().any(|s| s["sessionName"] == "e2e-life"));
    let occupied = &stack.manager.store.agent(&stack.agent.config.id).await.unwrap().unwrap().occupied_slots;
    assert_eq!(occupied.get("cpu"), 1.into());

    let d = api.send(Method::DELETE, "/session/e2e-life", None).await;
    assert_eq!(d.status, 200, "{}", d.body);
    let info = api.send(Method::GET, "/session/e2e-life", None).await;
    assert_eq!(info.body["status"], "TERMINATED");
    assert_eq!(info.body["statusInfo"], "user-requested");
    let agent = stack.manager.store.agent(&stack.agent.config.id).await.unwrap().unwrap();
    assert!(agent.occupied_slots.is_zero(), "slots released: {}", agent.occupied_slots);
    assert!(stack.agent.kernels.handles().is_empty(), "no kernel left on the agent");
    let gone = api.execute("e2e-life", json!({"mode": "query", "code": "print(1)"})).await;
    assert_eq!(gone.status, 409, "{}", gone.body);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_sessions_and_batch_mode() {
    let (_dir, stack, api) = admin_stack().await;
    let created = api.create(json!({"image": "shell", "name": "e2e-shell"})).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let (out, _, code) = api.run("e2e-shell", "echo $((6*7)); echo $BACKENDAI_CLUSTER_HOST; exit 3").await;
    assert_eq!((out.as_str(), code), ("42\nmain1\n", 3));

    let a = api
        .execute(
            "e2e-shell",
            json!({"mode": "batch", "options": {"clean": "echo c", "build": "echo b", "exec": "echo e"}}),
        )
        .await;
    assert_eq!(a.body["result"]["status"], "clean-finished", "{}", a.body);
    let run_id = a.body["result"]["runId"].as_str().unwrap().to_owned();
    let a = api.execute("e2e-shell", json!({"mode": "continue", "runId": run_id})).await;
    assert_eq!(a.body["result"]["status"], "build-finished", "{}", a.body);
    let a = api.execute("e2e-shell", json!({"mode": "continue", "runId": run_id})).await;
    assert_eq!(a.body["result"]["status"], "finished", "{}", a.body);
    assert_eq!(a.body["result"]["console"][0], json!(["stdout", "e\n"]));
    api.send(Method::DELETE, "/session/e2e-shell", None).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_only_and_cancel_of_a_pending_session() {
    let (_dir, stack, api) = admin_stack().await;
    // Two sessions of 5 CPUs on an 8-CPU agent: the second waits.
    let a = api.create(json!({"image": "python", "name": "big-one", "config": {"resources": {"cpu": 5}}})).await;
    assert_eq!(a.body["status"], "RUNNING", "{}", a.body);
    let b = api
        .create(json!({"image": "python", "name": "big-two", "enqueueOnly": true, "config": {"resources": {"cpu": 5}}}))
        .await;
    assert_eq!((b.status, b.body["status"].as_str()), (201, Some("PENDING")));
    let c = api
        .create(
            json!({"image": "python", "name": "big-three", "maxWaitSeconds": 1, "config": {"resources": {"cpu": 5}}}),
        )
        .await;
    assert_eq!(c.body["status"], "PENDING", "max wait passes while it cannot be placed");
    let d = api.send(Method::DELETE, "/session/big-three", None).await;
    assert_eq!(d.status, 200);
    let info = api.send(Method::GET, "/session/big-three", None).await;
    assert_eq!(info.body["status"], "CANCELLED");
    // Freeing the first lets the second run.
    api.send(Method::DELETE, "/session/big-one", None).await;
    wait_for_status(&api, "big-two", "RUNNING").await;
    api.send(Method::DELETE, "/session/big-two", None).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rename_and_complete() {
    let (_dir, stack, api) = admin_stack().await;
    let created = api.create(json!({"image": "python", "name": "to-restart"})).await;
    assert_eq!(created.body["status"], "RUNNING", "{}", created.body);
    api.run("to-restart", "kept = 1\nopen('scratch.txt', 'w').write('still here')").await;

    // Completion sees the interpreter's names.
    let c = api.send(Method::POST, "/session/to-restart/complete", Some(json!({"code": "kep", "options": {}}))).await;
    assert_eq!(c.status, 200, "{}", c.body);
    assert!(c.body["result"]["completions"].as_array().unwrap().iter().any(|i| i == "kept"), "{}", c.body);

    // Restart: fresh interpreter, same work directory.
    let r = api.send(Method::PATCH, "/session/to-restart", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, err, code) = api.run("to-restart", "print(kept)").await;
    assert_eq!(code, 1, "interpreter state is gone after a restart");
    assert!(err.contains("NameError"), "{err}");
    let (out, _, _) = api.run("to-restart", "print(open('scratch.txt').read())").await;
    assert_eq!(out, "still here\n");
    let info = api.send(Method::GET, "/session/to-restart", None).await;
    let history: Vec<&str> =
        info.body["statusHistory"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap()).collect();
    assert_eq!(&history[history.len() - 2..], ["RESTARTING", "RUNNING"]);

    // Rename, then the new name works and the old one is gone.
    let r = api.send(Method::POST, "/session/to-restart/rename?name=renamed-one", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(api.send(Method::GET, "/session/to-restart", None).await.status, 404);
    assert_eq!(api.run("renamed-one", "print(2)").await.0, "2\n");
    let other = api.create(json!({"image": "python", "name": "other-one", "enqueueOnly": true})).await;
    assert_eq!(other.status, 201);
    let taken = api.send(Method::POST, "/session/renamed-one/rename?name=other-one", None).await;
    assert_eq!(taken.status, 409, "{}", taken.body);
    let bad = api.send(Method::POST, "/session/renamed-one/rename?name=x", None).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    api.send(Method::DELETE, "/session/renamed-one", None).await;
    api.send(Method::DELETE, "/session/other-one", None).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_sessions_run_their_command_and_record_the_result() {
    let (_dir, stack, api) = admin_stack().await;
    for (name, command, result) in
        [("batch-ok", "echo fine", "SUCCESS"), ("batch-bad", "echo broken >&2; exit 7", "FAILURE")]
    {
        let created =
            api.create(json!({"image": "shell", "name": name, "type": "batch", "startupCommand": command})).await;
        assert_eq!(created.status, 201, "{}", created.body);
        let info = wait_for_status(&api, name, "TERMINATED").await;
        assert_eq!(info["result"], result, "{info}");
        assert_eq!(info["statusInfo"], "batch-finished", "{info}");
    }
    let agent = stack.manager.store.agent(&stack.agent.config.id).await.unwrap().unwrap();
    assert!(agent.occupied_slots.is_zero());
    stack.shutdown().await;
}

/// `--data-dir ./data`, as the README starts a standalone server: kernels run in directories of their own, so a
/// relative data directory must not leak relative paths to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_data_directory_runs_sessions_and_mounts() {
    let dir = tempfile::tempdir_in(".").unwrap();
    let relative = dir.path().strip_prefix(std::env::current_dir().unwrap()).unwrap().to_owned();
    assert!(relative.is_relative());
    let stack = start(&relative).await;
    let api = Api::new(&stack.endpoint, &stack.admin);
    let a = api.send(Method::POST, "/folders", Some(json!({"name": "rel"}))).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let a = api.create(json!({"image": "python", "name": "rel-data", "config": {"mounts": ["rel"]}})).await;
    assert_eq!((a.status, a.body["status"].as_str()), (201, Some("RUNNING")), "{}", a.body);
    let (out, _, _) = api.run("rel-data", "import os\nprint(os.path.isdir('rel'))").await;
    assert_eq!(out.trim(), "True");
    stack.shutdown().await;
}

/// `bootstrap_script` runs once in the kernel's work directory before it takes code; a failing script is logged and
/// the kernel still starts (as in Backend.AI), and a restart runs it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_script_runs_before_the_first_execution() {
    let (_dir, stack, api) = admin_stack().await;
    let script = "echo prepared >> boot.txt\nmkdir -p lib\n";
    let a = api.create(json!({"image": "python", "name": "boot", "bootstrap_script": script})).await;
    assert_eq!((a.status, a.body["status"].as_str()), (201, Some("RUNNING")), "{}", a.body);
    let (out, _, _) = api.run("boot", "import os\nprint(open('boot.txt').read().split(), os.path.isdir('lib'))").await;
    assert_eq!(out.trim(), "['prepared'] True");
    let a = api.send(Method::PATCH, "/session/boot", None).await;
    assert!(a.status < 300, "restart: {}", a.body);
    let (out, _, _) = api.run("boot", "print(open('boot.txt').read().split())").await;
    assert_eq!(out.trim(), "['prepared', 'prepared']", "a restart runs it again");

    let a = api.create(json!({"image": "python", "name": "boot-fails", "bootstrap_script": "exit 3"})).await;
    assert_eq!((a.status, a.body["status"].as_str()), (201, Some("RUNNING")), "{}", a.body);
    stack.shutdown().await;
}
