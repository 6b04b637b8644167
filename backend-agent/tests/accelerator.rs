//! An agent with accelerator devices (the mock plugin) over the process runtime: its capacity includes the device
//! slots, kernels asking for devices see theirs in `CUDA_VISIBLE_DEVICES`, devices are not handed out twice, and a
//! restarted agent takes back the devices of the kernels it re-attaches.

use backend_agent::accelerator::AcceleratorSetting;
use backend_agent::runtime::process::{ProcessRuntime, ProcessRuntimeConfig, RunnerCommand};
use backend_agent::{Agent, AgentConfig};
use backend_core::api::{ConsoleItem, ExecuteMode, ExecuteRequest, RunStatus};
use backend_core::conformance::wait::wait_until;
use backend_core::events::LocalEventBus;
use backend_core::live::LocalLiveState;
use backend_core::runtime::KernelSpec;
use backend_core::{Error, KernelId, ResourceSlots};
use rust_decimal::Decimal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn agent(dir: &Path, accelerator: AcceleratorSetting) -> Arc<Agent> {
    let mut config = ProcessRuntimeConfig::new(dir.join("kernels"));
    config.runner = RunnerCommand { program: env!("CARGO_BIN_EXE_backend-kernel-runner").into(), args: vec![] };
    config.cgroups = false;
    let runtime = Arc::new(ProcessRuntime::new(config).unwrap());
    let mut config = AgentConfig::new("gpu-agent", "token");
    config.capacity = Some(ResourceSlots::from([("cpu", 4.into()), ("mem", (4u64 << 30).into())]));
    config.accelerator = accelerator;
    config.state_dir = Some(dir.to_owned());
    config.flush_window = Duration::from_secs(30);
    Agent::new(config, runtime, Arc::new(LocalEventBus::new()), Arc::new(LocalLiveState::new()))
}

fn spec(image: &str, gpu: &[(&str, &str)]) -> KernelSpec {
    let mut slots = ResourceSlots::from([("cpu", 1.into()), ("mem", (128u64 << 20).into())]);
    for (name, amount) in gpu {
        slots.set(*name, amount.parse().unwrap());
    }
    KernelSpec::main("AKIAGPUTEST", image, slots)
}

/// Runs code in a kernel to its end; returns its stdout.
async fn run(agent: &Agent, id: KernelId, code: &str) -> String {
    let req = ExecuteRequest { mode: ExecuteMode::Query, code: code.into(), run_id: None, options: Default::default() };
    let mut result = agent.execute(id, req).await.unwrap();
    let mut out = String::new();
    loop {
        for item in &result.console {
            if let ConsoleItem::Stdout(t) = item {
                out.push_str(t);
            }
        }
        if result.status != RunStatus::Continued {
            assert_eq!(result.status, RunStatus::Finished, "{result:?}");
            return out;
        }
        let next = ExecuteRequest {
            mode: ExecuteMode::Continue,
            code: String::new(),
            run_id: Some(result.run_id.clone()),
            options: Default::default(),
        };
        result = agent.execute(id, next).await.unwrap();
    }
}

const VISIBLE: &str = "import os; print(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['BACKENDAI_CUDA_SHARES'])";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernels_get_distinct_devices_and_give_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(dir.path(), AcceleratorSetting::Mock(2));
    let capacity = agent.heartbeat("http://127.0.0.1:1").await.unwrap().available_slots;
    assert_eq!(capacity.get("cuda.device"), Decimal::from(2));
    assert_eq!(capacity.get("cuda.shares"), Decimal::from(2));
    assert_eq!(capacity.get("cpu"), Decimal::from(4), "the configured slots stay");

    let first = spec("python", &[("cuda.device", "1")]);
    let second = spec("python", &[("cuda.device", "1")]);
    agent.create_kernel(first.clone()).await.unwrap();
    agent.create_kernel(second.clone()).await.unwrap();
    let seen_first = run(&agent, first.kernel_id, VISIBLE).await;
    let seen_second = run(&agent, second.kernel_id, VISIBLE).await;
    let device = |seen: &str| seen.split_whitespace().next().unwrap().to_owned();
    let mut devices = [device(&seen_first), device(&seen_second)];
    devices.sort();
    assert_eq!(devices, ["0", "1"], "two kernels, two devices: {seen_first:?} {seen_second:?}");
    assert!(seen_first.trim().ends_with(":1"), "a whole device: {seen_first:?}");

    // Both devices are taken: a third kernel is refused, and nothing of it is left.
    let third = spec("shell", &[("cuda.device", "1")]);
    match agent.create_kernel(third.clone()).await {
        Err(Error::QuotaExceeded { msg }) => assert!(msg.contains("cuda.device=1"), "{msg}"),
        other => panic!("a third kernel must be refused, got {other:?}"),
    }
    assert!(agent.kernels.get(third.kernel_id).is_err());
    assert!(!dir.path().join("kernels").join(third.kernel_id.to_string()).exists());
    // A kernel asking for no device still runs, without any device variable.
    let cpu_only = spec("python", &[]);
    agent.create_kernel(cpu_only.clone()).await.unwrap();
    let env = run(&agent, cpu_only.kernel_id, "import os; print('CUDA_VISIBLE_DEVICES' in os.environ)").await;
    assert_eq!(env.trim(), "False");

    // Destroying one frees its device for the next kernel, which sees that very device (from a shell this time).
    agent.destroy_kernel(first.kernel_id, true).await.unwrap();
    agent.create_kernel(third.clone()).await.unwrap();
    let seen_third = run(&agent, third.kernel_id, "echo $CUDA_VISIBLE_DEVICES").await;
    assert_eq!(seen_third.trim(), device(&seen_first));

    // A kernel that ends by itself (its runner killed) gives its device back too.
    let handle = agent.kernels.get(second.kernel_id).unwrap().handle.clone();
    let pid = nix::unistd::Pid::from_raw(
        handle.container_id.trim_start_matches("pid:").parse().expect("the process runtime names kernels by pid"),
    );
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_until("the dead kernel's device to be given back", async || {
        agent.devices.held(second.kernel_id).is_none().then_some(())
    })
    .await;
    let fourth = spec("python", &[("cuda.shares", "0.5")]);
    agent.create_kernel(fourth.clone()).await.unwrap();
    assert_eq!(run(&agent, fourth.kernel_id, VISIBLE).await.trim(), format!("{0} {0}:0.5", device(&seen_second)));

    for k in [&third, &fourth, &cpu_only] {
        agent.destroy_kernel(k.kernel_id, true).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_devices_refuses_device_kernels_and_offers_no_device_slots() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(dir.path(), AcceleratorSetting::None);
    let capacity = agent.heartbeat("http://127.0.0.1:1").await.unwrap().available_slots;
    assert!(capacity.get("cuda.device").is_zero() && capacity.get("cuda.shares").is_zero(), "{capacity}");
    let asking = spec("python", &[("cuda.device", "1")]);
    match agent.create_kernel(asking).await {
        Err(Error::QuotaExceeded { msg }) => assert!(msg.contains("no accelerator"), "{msg}"),
        other => panic!("must be refused, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_takes_back_the_devices_of_the_kernels_it_reattaches() {
    let dir = tempfile::tempdir().unwrap();
    let kept = spec("python", &[("cuda.device", "1")]);
    let before = {
        let old = agent(dir.path(), AcceleratorSetting::Mock(2));
        old.create_kernel(kept.clone()).await.unwrap();
        run(&old, kept.kernel_id, VISIBLE).await
    };
    // A new agent over the same directories (the kernel process lives on).
    let agent = agent(dir.path(), AcceleratorSetting::Mock(2));
    assert_eq!(agent.reattach().await.unwrap(), 1);
    assert_eq!(run(&agent, kept.kernel_id, VISIBLE).await, before);
    let held = agent.devices.held(kept.kernel_id).expect("the re-attached kernel holds its device again");
    assert_eq!(held.devices.len(), 1);
    // One device is left, not two.
    let next = spec("python", &[("cuda.device", "1")]);
    agent.create_kernel(next.clone()).await.unwrap();
    assert_ne!(run(&agent, next.kernel_id, VISIBLE).await, before);
    assert!(matches!(
        agent.create_kernel(spec("python", &[("cuda.device", "1")])).await,
        Err(Error::QuotaExceeded { .. })
    ));
    for k in [&kept, &next] {
        agent.destroy_kernel(k.kernel_id, true).await.unwrap();
    }
    let ledger = std::fs::read_to_string(dir.path().join("accelerator.json")).unwrap();
    assert_eq!(ledger.trim(), "{}", "nothing is held once every kernel is gone");
}
