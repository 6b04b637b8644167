//! A cluster with one GPU agent (`--set agent.accelerator=mock:1`) and one CPU agent over PostgreSQL, Redis and etcd:
//! a session asking for `cuda.device` lands on the GPU agent and sees its device, a CPU-only session still runs, and
//! a second GPU session waits PENDING (never landing on the CPU agent) until the first one ends.

use crate::cluster::{agent_statuses, agents_of, env_or, free_port, info, wait_for, Cluster};
use backend_core::conformance::postgres::ScratchDatabase;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_sessions_go_to_the_gpu_agent_and_wait_for_its_device() {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let redis = env_or("BACKEND_AI_TEST_REDIS", "redis://127.0.0.1:16379");
    let etcd = env_or("BACKEND_AI_TEST_ETCD", "http://127.0.0.1:12379");
    let scratch = ScratchDatabase::create("gpu").await;
    let db = scratch.url.clone();
    let mut cluster = Cluster {
        dir: tempfile::tempdir().unwrap(),
        common: vec![format!("etcd.endpoints=[\"{etcd}\"]"), format!("etcd.namespace=test-{tag}")],
        managers: vec![(format!("m-{tag}"), free_port(), None)],
        agents: vec![(format!("cpu-{tag}"), free_port(), None), (format!("gpu-{tag}"), free_port(), None)],
    };
    let shared = cluster.dir.path().join("shared.toml");
    let text = format!(
        "[config.db]\nurl = \"{db}\"\n[config.redis]\nurl = \"{redis}\"\n[config]\nagent-token = \"token-{tag}\"\n"
    );
    std::fs::write(&shared, text).unwrap();
    cluster.tool(&["config", "load", shared.to_str().unwrap()]);
    cluster.tool(&["schema", "migrate"]);
    let admin = cluster.load_fixtures();
    cluster.start_manager(0);
    cluster.start_agent_with(0, &[]);
    cluster.start_agent_with(1, &["agent.accelerator=mock:1"]);
    let api = cluster.api(0, &admin);
    let port = cluster.managers[0].1;
    wait_for("the manager to listen", &cluster, async || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok().then_some(())
    })
    .await;
    let (cpu_agent, gpu_agent) = (cluster.agents[0].0.clone(), cluster.agents[1].0.clone());
    wait_for("two ALIVE agents", &cluster, async || {
        let s = agent_statuses(&api).await;
        [&cpu_agent, &gpu_agent].iter().all(|id| s.get(*id).map(String::as_str) == Some("ALIVE")).then_some(())
    })
    .await;
    // The GPU agent announces its device slots; the CPU agent none.
    let q = json!({"query": "{ agents { id available_slots } }"});
    let listed = api.send(Method::POST, "/admin/gql", Some(q)).await;
    let slots_of = |id: &str| -> serde_json::Value {
        let agents = listed.body["data"]["agents"].as_array().expect("agents listed");
        let agent = agents.iter().find(|a| a["id"] == id).expect("the agent is listed");
        serde_json::from_str(agent["available_slots"].as_str().expect("slots as JSON text")).unwrap()
    };
    let (gpu, cpu) = (slots_of(&gpu_agent), slots_of(&cpu_agent));
    assert_eq!(gpu["cuda.device"], "1", "{}", listed.body);
    assert_eq!(gpu["cuda.shares"], "1", "{}", listed.body);
    assert!(cpu.get("cuda.device").is_none(), "{}", listed.body);

    let gpu_session = |name: &str, enqueue: bool| {
        json!({"image": "python:3.11", "name": name, "enqueueOnly": enqueue,
               "config": {"resources": {"cpu": 1, "mem": "128m", "cuda.device": 1}}})
    };
    let created = api.create(gpu_session("gpu-1", false)).await;
    assert_eq!(created.status, 201, "{}\n{}", created.body, cluster.logs());
    assert_eq!(created.body["status"], "RUNNING", "{}", created.body);
    assert_eq!(agents_of(&info(&api, "gpu-1").await), vec![gpu_agent.clone()]);
    let (out, _, code) = api.run("gpu-1", "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])").await;
    assert_eq!((out.as_str(), code), ("0\n", 0));

    // A CPU-only session still runs (and sees no device).
    let body = json!({"image": "python:3.11", "name": "cpu-1", "config": {"resources": {"cpu": 1, "mem": "128m"}}});
    let created = api.create(body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["status"], "RUNNING", "{}", created.body);
    let (out, _, _) = api.run("cpu-1", "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES', 'none'))").await;
    assert_eq!(out, "none\n");

    // The only device is taken: a second GPU session waits, although the CPU agent has room for its CPU and memory.
    let queued = api.create(gpu_session("gpu-2", true)).await;
    assert_eq!(queued.status, 201, "{}", queued.body);
    let waiting = wait_for("a pass to leave the second GPU session pending, saying why", &cluster, async || {
        let a = info(&api, "gpu-2").await;
        a.body["statusInfo"].as_str().is_some_and(|s| s.starts_with("pending: ")).then_some(a)
    })
    .await;
    assert_eq!(waiting.body["status"], "PENDING", "{}", waiting.body);
    assert_eq!(waiting.body["statusInfo"], "pending: no agent has enough free resources now", "{}", waiting.body);
    assert!(agents_of(&waiting).is_empty(), "{}", waiting.body);

    // The first ends: the second gets the device, on the GPU agent.
    let a = api.send(Method::DELETE, "/session/gpu-1", None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    wait_for("the waiting GPU session to run", &cluster, async || {
        (info(&api, "gpu-2").await.body["status"] == "RUNNING").then_some(())
    })
    .await;
    assert_eq!(agents_of(&info(&api, "gpu-2").await), vec![gpu_agent.clone()]);
    let (out, _, _) = api.run("gpu-2", "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])").await;
    assert_eq!(out, "0\n");

    for name in ["gpu-2", "cpu-1"] {
        let _ = api.send(Method::DELETE, &format!("/session/{name}?forced=true"), None).await;
    }
    drop(cluster);
}
