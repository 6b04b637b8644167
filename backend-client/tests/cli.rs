//! End-to-end tests of the `bai` binary: each test starts a standalone manager+agent stack in-process on
//! 127.0.0.1:0 and runs the real binary against it, checking its standard output, standard error and exit status.
//!
//! The stack's agent starts kernels with `backend-kernel-runner`, which is another package's binary: cargo builds it
//! for `cargo test --workspace`, but not for `cargo test -p backend-client`, so the tests say so when it is missing.

use backend_core::conformance::wait::poll_until;
use backend_core::model::KeyPair;
use backend_core::store::SessionFilter;
use backend_core::SessionStatus;
use backend_manager::standalone::{Standalone, StandaloneConfig};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How long one `bai` command may take before the test fails (a safety net, not a timing assertion).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Fails the test unless the kernel runner can be found the way the agent looks for it
/// (`backend_agent::runtime::process::RunnerCommand::locate`). Without it the agent falls back to running this
/// test executable as the runner, which is not one, and every session fails to start.
fn require_kernel_runner() {
    if std::env::var_os("BACKENDAI_KERNEL_RUNNER").is_some() {
        return;
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let dirs: Vec<&Path> = exe.parent().into_iter().chain(exe.parent().and_then(Path::parent)).collect();
    let found = dirs.iter().any(|dir| dir.join("backend-kernel-runner").is_file());
    assert!(
        found,
        "backend-kernel-runner is not built (looked in {}): run `cargo build -p backend-agent` first, or test the \
         whole workspace with `cargo test --workspace`, which builds it",
        dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(" and ")
    );
}

/// Starts a standalone stack with its data in `dir` and a fixed capacity (so the tests do not depend on the
/// machine).
async fn start(dir: &Path) -> Standalone {
    require_kernel_runner();
    let mut config = StandaloneConfig::new(dir);
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.capacity = Some(backend_core::ResourceSlots::from([("cpu", 8.into()), ("mem", (8u64 << 30).into())]));
    Standalone::start(config).await.expect("standalone stack starts")
}

/// What one `bai` command did.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `bai` with a chosen environment.
struct Bai {
    env: Vec<(&'static str, String)>,
    /// Start from an empty environment instead of this process's one.
    clear_env: bool,
}

impl Bai {
    /// `bai` configured for `stack` with the keypair `kp`.
    fn new(stack: &Standalone, kp: &KeyPair) -> Self {
        Self::with_keys(stack, kp.access_key.to_string(), kp.secret_key.clone())
    }

    fn with_keys(stack: &Standalone, access_key: String, secret_key: String) -> Self {
        Self {
            env: vec![
                ("BACKEND_ENDPOINT", stack.endpoint.clone()),
                ("BACKEND_ACCESS_KEY", access_key),
                ("BACKEND_SECRET_KEY", secret_key),
            ],
            clear_env: false,
        }
    }

    /// `bai` with nothing in its environment but the endpoint.
    fn without_keys(stack: &Standalone) -> Self {
        Self { env: vec![("BACKEND_ENDPOINT", stack.endpoint.clone())], clear_env: true }
    }

    /// Starts `bai args...` with every standard stream piped.
    fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_bai"));
        if self.clear_env {
            cmd.env_clear();
        } else {
            // Only what this test sets configures the client.
            for name in ["BACKEND_ENDPOINT", "BACKEND_ACCESS_KEY", "BACKEND_SECRET_KEY"] {
                cmd.env_remove(name);
            }
        }
        cmd.args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd.spawn().expect("bai starts")
    }

    /// Runs `bai args...` with `stdin` as its standard input (empty when `None`).
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Outcome {
        let mut child = self.spawn(args);
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(stdin.unwrap_or("").as_bytes()).await.expect("writing bai's standard input");
        // Dropping the pipe closes it, so bai sees the end of its input.
        drop(pipe);
        finish(child, args).await
    }

    /// Runs `bai args...` and expects exit status 0.
    async fn ok(&self, args: &[&str]) -> Outcome {
        let out = self.run(args, None).await;
        assert_eq!(out.code, Some(0), "bai {args:?} failed: {out:?}");
        out
    }
}

/// Waits for `child` to exit (with a generous safety limit) and collects what it wrote.
async fn finish(child: tokio::process::Child, args: &[&str]) -> Outcome {
    let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("bai {args:?} did not finish within {COMMAND_TIMEOUT:?}"))
        .expect("waiting for bai");
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    }
}

/// Every session of `kp`, newest first.
async fn sessions_of(stack: &Standalone, kp: &KeyPair) -> Vec<backend_core::model::SessionRecord> {
    let filter = SessionFilter { access_key: Some(kp.access_key.clone()), ..Default::default() };
    stack.manager.store.list_sessions(&filter).await.expect("listing sessions")
}

/// Waits (with a generous safety limit) until every session of `kp` is TERMINATED, and returns how many there are.
async fn all_terminated(stack: &Standalone, kp: &KeyPair) -> usize {
    let mut states: Vec<String> = Vec::new();
    let ended = poll_until(async || {
        let sessions = sessions_of(stack, kp).await;
        if sessions.iter().all(|s| s.status == SessionStatus::Terminated) {
            return Some(sessions.len());
        }
        states = sessions.iter().map(|s| format!("{} {}", s.name, s.status)).collect();
        None
    })
    .await;
    ended.unwrap_or_else(|| panic!("sessions not terminated: {states:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_prints_the_output_and_exits_with_the_code_s_status() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(dir.path()).await;
    let bai = Bai::new(&stack, &stack.admin);

    let out = bai.run(&["run", "python", "-c", "print(6*7)"], None).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "42\n", "{out:?}");
    assert_eq!(out.stderr, "", "{out:?}");

    let code = r#"import sys; print("e", file=sys.stderr); sys.exit(3)"#;
    let out = bai.run(&["run", "python", "-c", code], None).await;
    assert_eq!(out.code, Some(3), "{out:?}");
    assert_eq!(out.stdout, "", "{out:?}");
    assert_eq!(out.stderr, "e\n", "{out:?}");

    // Both sessions were destroyed by the commands that created them.
    assert_eq!(all_terminated(&stack, &stack.admin).await, 2);
    let out = bai.ok(&["session", "ls"]).await;
    assert!(!out.stdout.contains("RUNNING"), "{out:?}");

    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reads_the_code_from_standard_input_or_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(dir.path()).await;
    let bai = Bai::new(&stack, &stack.admin);

    let code = "total = sum(range(5))\nprint('stdin', total)\n";
    let out = bai.run(&["run", "python", "-"], Some(code)).await;
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "stdin 10\n"), "{out:?}");

    let file: PathBuf = dir.path().join("prog.py");
    std::fs::write(&file, "import sys\nprint('file', len(sys.argv) >= 0)\nsys.exit(5)\n").unwrap();
    let out = bai.run(&["run", "python", file.to_str().unwrap()], None).await;
    assert_eq!((out.code, out.stdout.as_str()), (Some(5), "file True\n"), "{out:?}");

    // An unreadable file is reported before any session is made.
    let missing = dir.path().join("missing.py");
    let out = bai.run(&["run", "python", missing.to_str().unwrap()], None).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.starts_with("error: ") && out.stderr.contains("missing.py"), "{out:?}");

    assert_eq!(all_terminated(&stack, &stack.admin).await, 2);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_answers_input_prompts_from_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(dir.path()).await;
    let bai = Bai::new(&stack, &stack.admin);

    let code = r#"n = input("name? "); print("hi", n)"#;
    let out = bai.run(&["run", "python", "-c", code], Some("bob\n")).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("hi bob\n"), "{out:?}");
    assert_eq!(out.stdout.matches("name? ").count(), 1, "the prompt is shown once: {out:?}");

    // At the end of standard input the code sees EOFError.
    let code = r#"
try:
    input("more? ")
except EOFError:
    print("eof")
"#;
    let out = bai.run(&["run", "python", "-c", code], Some("")).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.ends_with("eof\n"), "{out:?}");

    assert_eq!(all_terminated(&stack, &stack.admin).await, 2);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_lives_from_create_to_rm() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(dir.path()).await;
    let bai = Bai::new(&stack, &stack.admin);

    let out = bai.ok(&["session", "create", "python", "--name", "cli-sess"]).await;
    assert!(out.stdout.contains("cli-sess") && out.stdout.contains("RUNNING"), "{out:?}");

    let out = bai.ok(&["exec", "cli-sess", "x = 5"]).await;
    assert_eq!(out.stdout, "", "{out:?}");
    let out = bai.ok(&["exec", "cli-sess", "print(x * 2)"]).await;
    assert_eq!(out.stdout, "10\n", "{out:?}");
    let out = bai.run(&["exec", "cli-sess", "-"], Some("import sys\nprint(x + 1)\nsys.exit(4)\n")).await;
    assert_eq!((out.code, out.stdout.as_str()), (Some(4), "6\n"), "{out:?}");

    let out = bai.ok(&["session", "ls"]).await;
    let row = out.stdout.lines().find(|l| l.starts_with("cli-sess ")).unwrap_or_else(|| panic!("{out:?}"));
    assert!(row.contains("RUNNING"), "{out:?}");

    let out = bai.ok(&["session", "info", "cli-sess"]).await;
    let status = out.stdout.lines().find(|l| l.starts_with("Status:")).unwrap_or_else(|| panic!("{out:?}"));
    assert!(status.contains("RUNNING"), "{out:?}");

    let out = bai.ok(&["--json", "session", "info", "cli-sess"]).await;
    let info: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(info["status"], "RUNNING", "{info}");
    assert_eq!(info["sessionName"], "cli-sess", "{info}");

    let out = bai.ok(&["session", "rm", "cli-sess"]).await;
    assert!(out.stdout.contains("destroyed session cli-sess"), "{out:?}");

    let out = bai.ok(&["session", "info", "cli-sess"]).await;
    let status = out.stdout.lines().find(|l| l.starts_with("Status:")).unwrap_or_else(|| panic!("{out:?}"));
    assert!(status.contains("TERMINATED"), "{out:?}");
    assert_eq!(all_terminated(&stack, &stack.admin).await, 1);

    // A destroyed session takes no more code.
    let out = bai.run(&["exec", "cli-sess", "print(1)"], None).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.starts_with("error: "), "{out:?}");

    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_print_an_error_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(dir.path()).await;

    // A wrong secret key.
    let wrong = Bai::with_keys(&stack, stack.admin.access_key.to_string(), "not-the-secret".into());
    let out = wrong.run(&["session", "ls"], None).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.starts_with("error: "), "{out:?}");
    assert!(out.stderr.contains("Credential/signature mismatch"), "{out:?}");
    assert_eq!(out.stdout, "", "{out:?}");
    let out = wrong.run(&["run", "python", "-c", "print(1)"], None).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.starts_with("error: ") && out.stderr.contains("Credential/signature mismatch"), "{out:?}");
    assert!(sessions_of(&stack, &stack.admin).await.is_empty(), "no session for a failed sign-in");

    // An unknown access key.
    let unknown = Bai::with_keys(&stack, "AKIANOSUCHKEY0000000".into(), stack.admin.secret_key.clone());
    let out = unknown.run(&["session", "ls"], None).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.starts_with("error: ") && out.stderr.contains("Credential/signature mismatch"), "{out:?}");

    // No such session.
    let bai = Bai::new(&stack, &stack.admin);
    let out = bai.run(&["exec", "no-such-session", "print(1)"], None).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.starts_with("error: No such session"), "{out:?}");
    assert!(out.stderr.contains("no-such-session"), "{out:?}");
    assert_eq!(out.stdout, "", "{out:?}");
    let out = bai.run(&["session", "info", "no-such-session"], None).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.starts_with("error: No such session"), "{out:?}");

    // No keys at all.
    let out = Bai::without_keys(&stack).run(&["session", "ls"], None).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.starts_with("error: "), "{out:?}");
    assert!(out.stderr.contains("access key") && out.stderr.contains("BACKEND_ACCESS_KEY"), "{out:?}");
    let only_access = Bai {
        env: vec![
            ("BACKEND_ENDPOINT", stack.endpoint.clone()),
            ("BACKEND_ACCESS_KEY", stack.admin.access_key.to_string()),
        ],
        clear_env: true,
    };
    let out = only_access.run(&["session", "ls"], None).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.starts_with("error: ") && out.stderr.contains("BACKEND_SECRET_KEY"), "{out:?}");

    // A server that is not there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut gone = Bai::new(&stack, &stack.admin);
    gone.env[0].1 = format!("http://127.0.0.1:{port}");
    let out = gone.run(&["session", "ls"], None).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.starts_with("error: ") && out.stderr.contains(&port.to_string()), "{out:?}");

    // Usage errors exit 2.
    let out = bai.run(&["run", "python"], None).await;
    assert_eq!(out.code, Some(2), "{out:?}");

    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_interrupts_the_code_and_the_session_still_goes() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let stack = start(dir.path()).await;
    let bai = Bai::new(&stack, &stack.admin);

    let args = ["run", "python", "-c", "import time\nprint('start', flush=True)\ntime.sleep(600)\nprint('slept')"];
    let mut child = bai.spawn(&args);
    drop(child.stdin.take());
    // Once the code has printed, `bai` is following the run and listens for Ctrl-C.
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    tokio::time::timeout(COMMAND_TIMEOUT, stdout.read_line(&mut first)).await.expect("the code starts").unwrap();
    assert_eq!(first, "start\n");
    let pid = child.id().expect("bai is running").to_string();
    let status = std::process::Command::new("kill").args(["-INT", &pid]).status().expect("kill runs");
    assert!(status.success());
    let mut rest = String::new();
    tokio::time::timeout(COMMAND_TIMEOUT, tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut rest))
        .await
        .expect("bai's output ends")
        .unwrap();
    let out = finish(child, &args).await;
    assert_eq!(out.code, Some(1), "{out:?} {rest:?}");
    assert_eq!(rest, "", "the code did not go on: {out:?}");
    assert!(out.stderr.contains("KeyboardInterrupt"), "{out:?}");
    assert_eq!(all_terminated(&stack, &stack.admin).await, 1);

    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_standard_output_is_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(dir.path()).await;
    let bai = Bai::new(&stack, &stack.admin);

    for args in [&["--json", "run", "python", "-"][..], &["session", "ls"][..]] {
        let mut child = bai.spawn(args);
        // Nobody reads the answer (`bai ... | head -0`); the code arrives only after that.
        drop(child.stdout.take());
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"import sys\nprint('x' * 100)\nsys.exit(6)\n").await.unwrap();
        drop(stdin);
        let out = finish(child, args).await;
        assert!(!out.stderr.contains("panicked"), "{args:?}: {out:?}");
        let expected = if args[0] == "--json" { 6 } else { 0 };
        assert_eq!(out.code, Some(expected), "{args:?}: {out:?}");
    }
    assert_eq!(all_terminated(&stack, &stack.admin).await, 1);

    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_domains_are_created_listed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(dir.path()).await;
    let bai = Bai::new(&stack, &stack.admin);

    let out = bai.ok(&["admin", "domain", "create", "research", "--description", "R&D"]).await;
    assert_eq!(out.stdout, "created domain research\n", "{out:?}");
    let out = bai.ok(&["admin", "domain", "list"]).await;
    let row = out.stdout.lines().find(|l| l.starts_with("research ")).unwrap_or_else(|| panic!("{out:?}"));
    assert!(row.contains("R&D"), "{out:?}");
    assert!(out.stdout.lines().any(|l| l.starts_with("default ")), "the default domain is there: {out:?}");
    let out = bai.ok(&["--json", "admin", "domain", "list"]).await;
    let list: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert!(list["domains"].as_array().unwrap().iter().any(|d| d["name"] == "research"), "{list}");

    let out = bai.run(&["admin", "domain", "create", "research"], None).await;
    assert_eq!(out.code, Some(1), "a taken name fails: {out:?}");
    let out = bai.ok(&["admin", "user", "list"]).await;
    assert!(out.stdout.contains("admin@lablup.com"), "the standalone admin is a user: {out:?}");
    bai.ok(&["admin", "domain", "delete", "research"]).await;

    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_quotas_and_agent_selectors_are_set_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(dir.path()).await;
    let bai = Bai::new(&stack, &stack.admin);

    bai.ok(&["admin", "domain", "create", "lab", "--slots", "cpu=16"]).await;
    bai.ok(&["admin", "group", "create", "ml", "--domain", "lab", "--slots", "cpu=4,mem=8g"]).await;
    let out = bai.ok(&["admin", "group", "set-quota", "ml", "--domain", "lab", "--slots", "cpu=2"]).await;
    assert!(out.stdout.contains("total resource slots cpu=2"), "{out:?}");
    let out = bai.ok(&["--json", "admin", "group", "list", "--domain", "lab"]).await;
    let list: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(list["groups"][0]["total_resource_slots"], serde_json::json!({"cpu": "2"}), "{list}");
    let out = bai.ok(&["admin", "domain", "list"]).await;
    let row = out.stdout.lines().find(|l| l.starts_with("lab ")).unwrap_or_else(|| panic!("{out:?}"));
    assert!(row.contains("cpu=16"), "{out:?}");
    bai.ok(&["admin", "domain", "set-quota", "lab"]).await;
    let out = bai.ok(&["admin", "domain", "list"]).await;
    let row = out.stdout.lines().find(|l| l.starts_with("lab ")).unwrap_or_else(|| panic!("{out:?}"));
    assert!(row.contains("unlimited"), "no flag: unlimited: {out:?}");

    bai.ok(&["admin", "scaling-group", "create", "packed", "--agent-selector", "concentrated"]).await;
    let out = bai.ok(&["admin", "scaling-group", "list"]).await;
    let row = out.stdout.lines().find(|l| l.starts_with("packed ")).unwrap_or_else(|| panic!("{out:?}"));
    assert!(row.contains("concentrated"), "{out:?}");
    let out = bai.run(&["admin", "scaling-group", "create", "odd", "--agent-selector", "random"], None).await;
    assert_eq!(out.code, Some(1), "an unknown selector is refused: {out:?}");

    stack.shutdown().await;
}
