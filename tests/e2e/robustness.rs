//! A crashing kernel runner or code that prints megabytes does not take the agent down.

use crate::common::{admin_stack, wait_for_session};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_kernel_ends_its_session_and_the_agent_lives_on() {
    let (_dir, stack, api) = admin_stack().await;
    let created = api.create(json!({"image": "python", "name": "doomed"})).await;
    assert_eq!(created.body["status"], "RUNNING", "{}", created.body);
    let session_id = created.body["sessionId"].as_str().unwrap().parse().unwrap();
    let kernel = &stack.manager.store.kernels(session_id).await.unwrap()[0];
    let pid: i32 = kernel.container_id.as_deref().unwrap().trim_start_matches("pid:").parse().unwrap();
    nix_kill(pid);

    let info = wait_for_session(&api, "doomed", "ended", |b| b["status"] != "RUNNING").await;
    assert_eq!(info["status"], "ERROR", "{info}");
    assert!(info["statusInfo"].as_str().unwrap().contains("exit code 137"), "{info}");
    let agent = stack.manager.store.agent(&stack.agent.config.id).await.unwrap().unwrap();
    assert!(agent.occupied_slots.is_zero(), "the dead kernel's slots are released");

    // The agent still serves new sessions.
    let next = api.create(json!({"image": "python", "name": "after-crash"})).await;
    assert_eq!(next.body["status"], "RUNNING", "{}", next.body);
    assert_eq!(api.run("after-crash", "print('alive')").await.0, "alive\n");
    assert_eq!(
        api.send(Method::DELETE, "/session/doomed", None).await.status,
        200,
        "an ERROR session can be destroyed"
    );
    api.send(Method::DELETE, "/session/after-crash", None).await;
    stack.shutdown().await;
}

fn nix_kill(pid: i32) {
    assert!(pid > 1, "a kernel's own process group");
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)
        .expect("killed the kernel's process group");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabytes_of_output_are_bounded_and_the_kernel_lives_on() {
    let (_dir, stack, api) = admin_stack().await;
    api.create(json!({"image": "python", "name": "chatty"})).await;
    // 30 MB of output, collected through `continued` calls.
    let (out, err, code) = api.run("chatty", "for i in range(30000):\n    print('x' * 999)").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.len() <= 30_000_000, "no output invented");
    if out.len() < 30_000_000 {
        assert!(err.contains("output truncated"), "missing output is announced");
    }
    assert!(out.len() >= 8 << 20, "at least the first 8 MiB arrive: {}", out.len());
    assert_eq!(api.run("chatty", "print('still here')").await.0, "still here\n");
    api.send(Method::DELETE, "/session/chatty", None).await;
    stack.shutdown().await;
}
