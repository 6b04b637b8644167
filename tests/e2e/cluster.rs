//! A real cluster: two `backend-manager serve` and three `backend-agent` processes over PostgreSQL, Redis and etcd
//! (addresses from `BACKEND_AI_TEST_POSTGRES`, `BACKEND_AI_TEST_REDIS`, `BACKEND_AI_TEST_ETCD`, as
//! `scripts/services.sh` prints them; the test fails when one cannot be reached).
//!
//! Sessions created through either manager land on agents by capacity and run code through either; killing the
//! manager that holds the scheduler lease lets the other schedule; killing an agent makes it LOST, ends its session
//! with `agent-lost` and keeps new sessions off it; when it returns it is ALIVE again and its orphan kernel is removed.

use crate::common::{poll_until, wait_until, Answer, Api};
use backend_core::conformance::postgres::ScratchDatabase;
use backend_core::model::{KeyPair, Role};
use reqwest::Method;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A binary built beside this test (`cargo test --workspace` builds every package's binaries).
pub(crate) fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(path.is_file(), "{} is missing: build the binaries first (cargo build --bins)", path.display());
    path
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed when dropped.
pub(crate) struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) struct Cluster {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) common: Vec<String>,
    pub(crate) managers: Vec<(String, u16, Option<Proc>)>,
    pub(crate) agents: Vec<(String, u16, Option<Proc>)>,
}

impl Cluster {
    /// `backend-manager <args> --set ...` (the settings after the subcommand: clap lets a global option given there
    /// replace, not extend, values given before it).
    fn manager_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary("backend-manager"));
        cmd.args(args);
        for s in &self.common {
            cmd.arg("--set").arg(s);
        }
        cmd.env_remove("BACKENDAI_CONFIG").stdin(Stdio::null());
        cmd
    }

    /// Runs a manager tool command to its end; returns its stdout.
    pub(crate) fn tool(&self, args: &[&str]) -> String {
        let out = self.manager_command(args).output().unwrap();
        assert!(out.status.success(), "backend-manager {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn spawn(&self, mut cmd: Command, name: &str) -> Proc {
        let log = self.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        cmd.stdout(file.try_clone().unwrap()).stderr(file).env("RUST_LOG", "info");
        Proc { child: cmd.spawn().unwrap(), log }
    }

    pub(crate) fn start_manager(&mut self, i: usize) {
        let (id, port, _) = &self.managers[i];
        let mut cmd = self.manager_command(&["serve"]);
        cmd.args(["--set", &format!("manager.id={id}")]);
        cmd.args(["--set", &format!("manager.bind=127.0.0.1:{port}")]);
        cmd.args(["--set", "manager.heartbeat_timeout_secs=3", "--set", "manager.schedule_interval_secs=0.2"]);
        let proc = self.spawn(cmd, id);
        self.managers[i].2 = Some(proc);
    }

    fn start_agent(&mut self, i: usize) {
        self.start_agent_with(i, &[]);
    }

    /// Starts agent `i` with extra `--set` settings (after the common ones, so they win).
    pub(crate) fn start_agent_with(&mut self, i: usize, extra: &[&str]) {
        let (id, port, _) = &self.agents[i];
        let mut cmd = Command::new(binary("backend-agent"));
        for s in self.common.iter().filter(|s| !s.starts_with("db.")) {
            cmd.arg("--set").arg(s);
        }
        let data = self.dir.path().join(id);
        cmd.args(["--set", &format!("agent.id={id}"), "--set", &format!("agent.bind=127.0.0.1:{port}")]);
        cmd.args(["--set", &format!("agent.data_dir=\"{}\"", data.display())]);
        cmd.args([
            "--set",
            "agent.heartbeat_interval_secs=0.5",
            "--set",
            "agent.capacity={ cpu = \"2\", mem = \"2g\" }",
        ]);
        for s in extra {
            cmd.arg("--set").arg(s);
        }
        cmd.env_remove("BACKENDAI_CONFIG").stdin(Stdio::null());
        let proc = self.spawn(cmd, id);
        self.agents[i].2 = Some(proc);
    }

    /// Loads the fixtures through the admin tool; answers the superadmin keypair it printed.
    pub(crate) fn load_fixtures(&self) -> KeyPair {
        let printed = self.tool(&["fixtures", "load"]);
        let field = |name: &str| {
            printed.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_owned()).expect(&printed)
        };
        KeyPair {
            access_key: field("access_key:").as_str().into(),
            secret_key: field("secret_key:"),
            user_id: "admin@lablup.com".into(),
            role: Role::Superadmin,
            is_active: true,
            rate_limit: 30_000,
            resource_policy: "default".into(),
            created_at: chrono::Utc::now(),
        }
    }

    pub(crate) fn api(&self, i: usize, kp: &KeyPair) -> Api {
        Api::new(&format!("http://127.0.0.1:{}", self.managers[i].1), kp)
    }

    pub(crate) fn logs(&self) -> String {
        let mut all = String::new();
        for (id, _, p) in self.managers.iter().chain(&self.agents) {
            if let Some(p) = p {
                let log = p.log();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                all.push_str(&format!("--- {id}\n{}\n", tail.into_iter().rev().collect::<Vec<_>>().join("\n")));
            }
        }
        all
    }
}

/// Waits for `probe` to answer `Some`; fails with the tail of every process's log if it never does.
pub(crate) async fn wait_for<T>(what: &str, cluster: &Cluster, probe: impl AsyncFnMut() -> Option<T>) -> T {
    let reached = poll_until(probe).await;
    reached.unwrap_or_else(|| panic!("timed out waiting for {what}\n{}", cluster.logs()))
}

pub(crate) async fn agent_statuses(api: &Api) -> BTreeMap<String, String> {
    let q = json!({"query": "{ agents { id status } }"});
    let a = api.send(Method::POST, "/admin/gql", Some(q)).await;
    let Some(list) = a.body["data"]["agents"].as_array() else { return BTreeMap::new() };
    list.iter().map(|x| (x["id"].as_str().unwrap().to_owned(), x["status"].as_str().unwrap().to_owned())).collect()
}

pub(crate) async fn info(api: &Api, name: &str) -> Answer {
    api.send(Method::GET, &format!("/session/{name}"), None).await
}

pub(crate) fn agents_of(a: &Answer) -> Vec<String> {
    a.body["agents"].as_array().map(|l| l.iter().map(|x| x.as_str().unwrap().to_owned()).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_managers_three_agents_over_postgres_redis_and_etcd() {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let redis = env_or("BACKEND_AI_TEST_REDIS", "redis://127.0.0.1:16379");
    let etcd = env_or("BACKEND_AI_TEST_ETCD", "http://127.0.0.1:12379");
    let scratch = ScratchDatabase::create("cluster").await;
    let db = scratch.url.clone();

    let mut cluster = Cluster {
        dir: tempfile::tempdir().unwrap(),
        common: vec![format!("etcd.endpoints=[\"{etcd}\"]"), format!("etcd.namespace=test-{tag}")],
        managers: (0..2).map(|i| (format!("m{i}-{tag}"), free_port(), None)).collect(),
        agents: (0..3).map(|i| (format!("a{i}-{tag}"), free_port(), None)).collect(),
    };

    // First start: shared settings into etcd, the schema, the default records and an admin keypair.
    // Shaped like configs/shared.toml.
    let shared = cluster.dir.path().join("shared.toml");
    let text =
        format!("[config.db]\nurl = \"{db}\"\n[config.redis]\nurl = \"{redis}\"\n[config]\nagent-token = \"x\"\n");
    std::fs::write(&shared, text).unwrap();
    assert!(cluster.tool(&["config", "load", shared.to_str().unwrap()]).starts_with("loaded 3 key(s)"));
    cluster.tool(&["config", "put", "config/agent-token", &format!("token-{tag}")]);
    assert_eq!(cluster.tool(&["config", "get", "config/agent-token"]).trim(), format!("token-{tag}"));
    assert_eq!(cluster.tool(&["config", "get", "config/redis/url"]).trim(), redis);
    assert!(cluster.tool(&["schema", "status"]).contains("pending"));
    assert!(cluster.tool(&["schema", "migrate"]).starts_with("applied"));
    let status = cluster.tool(&["schema", "status"]);
    assert!(!status.contains("pending") && status.contains("applied"), "{status}");
    let admin = cluster.load_fixtures();

    for i in 0..2 {
        cluster.start_manager(i);
    }
    for i in 0..3 {
        cluster.start_agent(i);
    }
    let apis = [cluster.api(0, &admin), cluster.api(1, &admin)];
    let ports: Vec<u16> = cluster.managers.iter().map(|m| m.1).collect();
    wait_for("both managers to listen", &cluster, async || {
        ports.iter().all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok()).then_some(())
    })
    .await;
    let agent_ids: Vec<String> = cluster.agents.iter().map(|a| a.0.clone()).collect();
    wait_for("three ALIVE agents", &cluster, async || {
        let s = agent_statuses(&apis[1]).await;
        agent_ids.iter().all(|id| s.get(id).map(String::as_str) == Some("ALIVE")).then_some(())
    })
    .await;

    // Six one-CPU sessions through alternating managers fill the three two-CPU agents exactly.
    let mut placed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..6 {
        let name = format!("cl-{i}");
        let body = json!({"image": "python:3.11", "name": name, "config": {"resources": {"cpu": 1, "mem": "128m"}}});
        let created = apis[i % 2].create(body).await;
        assert_eq!(created.status, 201, "{}\n{}", created.body, cluster.logs());
        assert_eq!(created.body["status"], "RUNNING", "{}", created.body);
        let agents = agents_of(&info(&apis[(i + 1) % 2], &name).await);
        assert_eq!(agents.len(), 1);
        placed.entry(agents[0].clone()).or_default().push(name);
    }
    assert_eq!(placed.len(), 3, "every agent got sessions: {placed:?}");
    assert!(placed.values().all(|s| s.len() == 2), "two per agent, by capacity: {placed:?}");
    // Code runs through the manager that did not create the session.
    let (out, _, code) = apis[1].run("cl-0", "print(6 * 7)").await;
    assert_eq!((out.as_str(), code), ("42\n", 0));
    // The cluster is full: a seventh session waits in PENDING.
    let body =
        json!({"image": "python:3.11", "name": "cl-wait", "enqueueOnly": true, "config": {"resources": {"cpu": 1}}});
    let queued = apis[0].create(body).await;
    assert_eq!(queued.status, 201, "{}", queued.body);
    let waiting = wait_for("a pass to leave the seventh session pending, saying why", &cluster, async || {
        let b = info(&apis[0], "cl-wait").await.body;
        b["statusInfo"].as_str().is_some_and(|s| s.starts_with("pending: ")).then_some(b)
    })
    .await;
    assert_eq!(waiting["status"], "PENDING", "{waiting}");
    assert_eq!(waiting["statusInfo"], "pending: no agent has enough free resources now", "{waiting}");

    // Kill the manager holding the scheduler lease; freeing a slot through the other one lets it schedule.
    let lease: serde_json::Value = serde_json::from_str(&cluster.tool(&["config", "get", "leases/scheduler"])).unwrap();
    let holder = lease["holder"].as_str().unwrap().to_owned();
    let h = cluster.managers.iter().position(|m| m.0 == holder).expect("the lease names a manager");
    cluster.managers[h].2.as_mut().unwrap().kill();
    let survivor = &apis[1 - h];
    let a = survivor.send(Method::DELETE, "/session/cl-1", None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    wait_for("the surviving manager to schedule the waiting session", &cluster, async || {
        (info(survivor, "cl-wait").await.body["status"] == "RUNNING").then_some(())
    })
    .await;

    // Kill an agent: it becomes LOST, its sessions end with agent-lost, its slots are freed and new sessions avoid it.
    let victim = agents_of(&info(survivor, "cl-0").await).remove(0);
    let v = cluster.agents.iter().position(|a| a.0 == victim).unwrap();
    cluster.agents[v].2.as_mut().unwrap().kill();
    wait_for("the session on the killed agent to end with agent-lost", &cluster, async || {
        let b = info(survivor, "cl-0").await.body;
        (b["status"] == "ERROR" || b["status"] == "TERMINATED").then_some(b["statusInfo"].clone())
    })
    .await
    .as_str()
    .filter(|s| s.contains("agent-lost"))
    .expect("status info says agent-lost");
    assert_eq!(agent_statuses(survivor).await.get(&victim).map(String::as_str), Some("LOST"));
    // The other two agents are full: free one slot on them, and the next session goes there, not to the LOST one.
    let (_, on_survivor) = placed.iter().find(|(agent, _)| **agent != victim).unwrap();
    let freed = on_survivor.iter().find(|n| *n != "cl-1").unwrap();
    let a = survivor.send(Method::DELETE, &format!("/session/{freed}"), None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let body = json!({"image": "python:3.11", "name": "cl-after", "config": {"resources": {"cpu": 1}}});
    let created = survivor.create(body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(!agents_of(&info(survivor, "cl-after").await).contains(&victim), "new sessions avoid a LOST agent");

    // It comes back: ALIVE again, and the kernel it kept running for a dead session is removed.
    let kernels_dir = cluster.dir.path().join(&victim).join("kernels");
    let kernel_dirs = || std::fs::read_dir(&kernels_dir).map(|d| d.count()).unwrap_or(0);
    assert!(kernel_dirs() > 0, "the killed agent's kernels outlive it");
    cluster.start_agent(v);
    wait_for("the returning agent to be ALIVE", &cluster, async || {
        (agent_statuses(survivor).await.get(&victim).map(String::as_str) == Some("ALIVE")).then_some(())
    })
    .await;
    wait_for("the orphan kernels to be destroyed", &cluster, async || (kernel_dirs() == 0).then_some(())).await;

    // Clean up: destroy what runs, so no kernel process outlives the test.
    for name in ["cl-0", "cl-2", "cl-3", "cl-4", "cl-5", "cl-wait", "cl-after"] {
        let _ = survivor.send(Method::DELETE, &format!("/session/{name}?forced=true"), None).await;
    }
    drop(cluster);
}

/// Hundreds of creates and destroys through two managers (separate PostgreSQL pools, one Redis bus) onto small dummy
/// agents, so that sessions wait for each other's slots: no agent ever exceeds its capacity, and at the end every
/// session is over and the occupancy invariant holds with nothing occupied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_and_destroys_through_two_managers_keep_the_invariant() {
    use backend_agent::dummy::DummyAgent;
    use backend_core::conformance::metadata_store::{assert_occupancy_invariant, heartbeat};
    use backend_core::store::postgres::PostgresStore;
    use backend_core::store::prelude::*;
    use backend_manager::{Manager, ManagerConfig};
    use std::sync::Arc;

    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let redis = env_or("BACKEND_AI_TEST_REDIS", "redis://127.0.0.1:16379");
    let scratch = ScratchDatabase::create("race").await;
    let db = scratch.url.clone();
    let store = PostgresStore::connect_and_migrate(&db, 4).await.unwrap();
    backend_core::store::fixtures::ensure_defaults(&store).await.unwrap();
    let mut policy = store.resource_policy("default").await.unwrap().unwrap();
    policy.max_concurrent_sessions = 10_000;
    policy.max_pending_session_count = None;
    store.put_resource_policy(&policy).await.unwrap();
    let (ak, sk) = backend_core::auth::generate_keypair();
    let kp = KeyPair {
        access_key: ak.into(),
        secret_key: sk,
        user_id: "admin@lablup.com".into(),
        role: Role::Superadmin,
        is_active: true,
        rate_limit: 1_000_000,
        resource_policy: "default".into(),
        created_at: chrono::Utc::now(),
    };
    backend_core::store::fixtures::ensure_user(&store, "admin@lablup.com", Role::Superadmin).await.unwrap();
    store.insert_keypair(&kp).await.unwrap();

    // Four agents of four CPUs: sixteen one-CPU sessions at a time, for twenty-four clients.
    let dummy = DummyAgent::start().await.unwrap();
    let capacity = backend_core::ResourceSlots::from([("cpu", 4.into()), ("mem", (16u64 << 30).into())]);
    let mut agents = Vec::new();
    for _ in 0..4 {
        let mut hb = heartbeat(capacity.clone());
        hb.addr = dummy.addr.clone();
        store.upsert_agent(&hb, chrono::Utc::now()).await.unwrap();
        agents.push(hb.id);
    }
    let shared: Arc<dyn backend_core::config::ConfigStore> = Arc::new(backend_core::config::LocalConfigStore::new());
    let mut endpoints = Vec::new();
    let mut keep = Vec::new();
    for i in 0..2 {
        let config = ManagerConfig {
            id: format!("race-{i}"),
            schedule_interval: Duration::from_millis(20),
            heartbeat_timeout: Duration::from_secs(3600),
            ..ManagerConfig::default()
        };
        let m = Manager::new(
            config,
            Arc::new(PostgresStore::connect(&db, 8).await.unwrap()),
            Arc::new(backend_core::events::redis::RedisEventBus::connect(&redis, &tag).await.unwrap()),
            Arc::new(backend_core::live::redis::RedisLiveState::connect(&redis, &tag).await.unwrap()),
            shared.clone(),
            "token",
        );
        for id in &agents {
            m.live.touch_agent(id, chrono::Utc::now()).await.unwrap();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        endpoints.push(format!("http://{}", listener.local_addr().unwrap()));
        keep.push(backend_manager::start_background(&m).await.unwrap());
        tokio::spawn(backend_manager::serve(m, listener, std::future::pending()));
    }

    // A watcher reads each agent's row (one consistent row per read) while the clients work.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (store, agents, done, capacity) = (store.clone(), agents.clone(), done.clone(), capacity.clone());
        tokio::spawn(async move {
            let mut reads = 0;
            // A sampling pace, not a wait for anything: back-to-back reads would only load the database.
            let mut pace = tokio::time::interval(Duration::from_millis(5));
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                pace.tick().await;
                for id in &agents {
                    let a = store.agent(id).await.unwrap().unwrap();
                    assert!(a.occupied_slots.fits_in(&capacity), "{id} over capacity: {:?}", a.occupied_slots);
                    reads += 1;
                }
            }
            reads
        })
    };
    let total = 240;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..24 {
        let api = Api::new(&endpoints[c % 2], &kp);
        let other = Api::new(&endpoints[(c + 1) % 2], &kp);
        let next = next.clone();
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return;
                }
                let name = format!("race-{i}");
                let body = json!({"image": "python:3.11", "name": name, "config": {"resources": {"cpu": 1}}});
                let created = api.create(body).await;
                assert_eq!(created.status, 201, "{}", created.body);
                // Destroyed through the other manager, whatever state it reached.
                let a = other.send(Method::DELETE, &format!("/session/{name}"), None).await;
                assert!(a.status == 200 || a.status == 204, "{}", a.body);
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(watcher.await.unwrap() > 0);

    let all = store.list_sessions(&Default::default()).await.unwrap();
    assert_eq!(all.len(), total);
    wait_until("every session to end after every destroy", async || {
        store.list_sessions(&Default::default()).await.unwrap().iter().all(|s| s.status.is_final()).then_some(())
    })
    .await;
    assert_occupancy_invariant(&store).await;
    for id in &agents {
        assert!(store.agent(id).await.unwrap().unwrap().occupied_slots.is_zero(), "{id} still holds slots");
    }
    assert_eq!(dummy.created(), dummy.destroyed(), "every kernel created on an agent was destroyed there");
    drop(keep);
}
