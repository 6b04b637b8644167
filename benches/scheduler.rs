//! Scheduler benchmark: every sequencer × selector through one `plan` pass over N agents with mixed capacities (a
//! quarter with GPUs) and M pending sessions with mixed demands, owners and priorities; then a multi-round
//! simulation with arrivals and departures for the enqueue→placement latency in rounds. Prints two tables.
//!
//! `cargo bench --bench scheduler` (release). `SCHEDULER_BENCH_QUICK=1` runs only the smallest size.

use backend_core::ids::{AccessKey, AgentId, KernelId, SessionId};
use backend_core::model::{AgentStatus, ImageInfo};
use backend_core::scheduler::{
    plan, selector_by_name, sequencer_by_name, AgentSnapshot, OwnerUsage, PendingSession, PlanInput, PlanOptions,
    SELECTORS, SEQUENCERS,
};
use backend_core::ResourceSlots;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::time::Instant;

const OWNERS: u64 = 200;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

fn slots(cpu: u64, mem_gib: u64, gpu_tenths: u64) -> ResourceSlots {
    let mut pairs = vec![("cpu", cpu.to_string()), ("mem", format!("{mem_gib}g"))];
    if gpu_tenths > 0 {
        pairs.push(("cuda.shares", format!("{}.{}", gpu_tenths / 10, gpu_tenths % 10)));
    }
    ResourceSlots::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str()))).expect("valid amounts")
}

fn agents(n: usize, rng: &mut Rng) -> Vec<AgentSnapshot> {
    let image = ImageInfo {
        name: "python:3.11".into(),
        aliases: vec![],
        lang: "python".into(),
        min_slots: ResourceSlots::new(),
    };
    (0..n)
        .map(|i| {
            let cpu = [16, 32, 64, 128][rng.below(4) as usize];
            let gpus = if i % 4 == 0 { [4, 8][rng.below(2) as usize] } else { 0 };
            AgentSnapshot {
                id: AgentId::from(format!("agent-{i:05}")),
                scaling_group: "default".into(),
                architecture: "x86_64".into(),
                status: AgentStatus::Alive,
                schedulable: true,
                available: slots(cpu, cpu * 4, gpus * 10),
                occupied: ResourceSlots::new(),
                images: vec![image.clone()],
            }
        })
        .collect()
}

fn session(rng: &mut Rng, created_at: DateTime<Utc>) -> PendingSession {
    let kernels = if rng.below(20) == 0 { 2 } else { 1 };
    let cpu = [1, 1, 2, 2, 4, 8][rng.below(6) as usize];
    let gpu = if rng.below(10) == 0 { [5, 10, 20][rng.below(3) as usize] } else { 0 };
    PendingSession {
        id: SessionId::new(),
        access_key: AccessKey::from(format!("AK{:03}", rng.below(OWNERS))),
        domain: "default".into(),
        group: "default".into(),
        image: "python".into(),
        scaling_group: "default".into(),
        priority: if rng.below(10) == 0 { 1 } else { 0 },
        created_at,
        kernels: (0..kernels).map(|_| (KernelId::new(), slots(cpu, cpu * 2, gpu))).collect(),
        architecture: None,
        designated_agent: None,
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

fn f(d: impl ToString) -> f64 {
    d.to_string().parse().unwrap_or(0.0)
}

struct Stats {
    secs: f64,
    placed: usize,
    cpu_util: f64,
    gpu_util: f64,
    share_spread: f64,
}

fn one_pass(seq: &str, sel: &str, agents: &[AgentSnapshot], pending: &[PendingSession]) -> Stats {
    let sequencer = sequencer_by_name(seq).unwrap();
    let selector = selector_by_name(sel).unwrap();
    let input = PlanInput::new(pending.to_vec(), agents.to_vec(), t0());
    let started = Instant::now();
    let result = plan(sequencer.as_ref(), selector.as_ref(), input, &PlanOptions::default());
    let secs = started.elapsed().as_secs_f64();
    let by_id: HashMap<SessionId, &PendingSession> = pending.iter().map(|s| (s.id, s)).collect();
    let (mut cpu_used, mut gpu_used) = (0.0, 0.0);
    let mut per_owner: HashMap<&AccessKey, ResourceSlots> = HashMap::new();
    for (sid, _) in &result.placed {
        let s = by_id[sid];
        let total = s.total_slots();
        cpu_used += f(total.get("cpu"));
        gpu_used += f(total.get("cuda.shares"));
        let e = per_owner.entry(&s.access_key).or_default();
        *e = std::mem::take(e) + total;
    }
    let capacity = agents.iter().fold(ResourceSlots::new(), |acc, a| acc + a.available.clone());
    let shares: Vec<f64> = pending
        .iter()
        .map(|s| &s.access_key)
        .collect::<std::collections::HashSet<_>>()
        .into_iter()
        .map(|o| per_owner.get(o).map(|u| f(u.dominant_share(&capacity))).unwrap_or(0.0))
        .collect();
    let max = shares.iter().cloned().fold(0.0, f64::max);
    let min = shares.iter().cloned().fold(f64::INFINITY, f64::min);
    Stats {
        secs,
        placed: result.placed.len(),
        cpu_util: cpu_used / f(capacity.get("cpu")),
        gpu_util: gpu_used / f(capacity.get("cuda.shares")).max(1e-9),
        share_spread: if shares.is_empty() { 0.0 } else { max - min },
    }
}

/// Rounds of arrivals and departures; answers the latency (rounds from enqueue to placement) of every placed
/// session, the sessions still pending at the end, and the mean time of a pass.
fn simulate(seq: &str, sel: &str, n_agents: usize, arrivals: usize, rounds: usize) -> (Vec<usize>, usize, f64) {
    let mut rng = Rng(42);
    let mut fleet = agents(n_agents, &mut rng);
    let index: HashMap<AgentId, usize> = fleet.iter().enumerate().map(|(i, a)| (a.id.clone(), i)).collect();
    let sequencer = sequencer_by_name(seq).unwrap();
    let selector = selector_by_name(sel).unwrap();
    let options = PlanOptions { starvation_threshold: Duration::minutes(5) };
    let mut pending: Vec<(PendingSession, usize)> = Vec::new();
    let mut running: Vec<(usize, usize, ResourceSlots)> = Vec::new();
    let mut owners: HashMap<AccessKey, OwnerUsage> = HashMap::new();
    let mut latencies = Vec::new();
    let mut pass_secs = 0.0;
    for round in 0..rounds {
        let now = t0() + Duration::minutes(round as i64);
        running.retain(|(end, agent, used)| {
            if *end > round {
                return true;
            }
            let a = &mut fleet[*agent];
            a.occupied = std::mem::take(&mut a.occupied) - used.clone();
            false
        });
        for _ in 0..arrivals {
            pending.push((session(&mut rng, now), round));
        }
        let input = PlanInput {
            pending: pending.iter().map(|(s, _)| s.clone()).collect(),
            agents: fleet.clone(),
            owners: owners.clone(),
            scopes: HashMap::new(),
            now,
        };
        let started = Instant::now();
        let result = plan(sequencer.as_ref(), selector.as_ref(), input, &options);
        pass_secs += started.elapsed().as_secs_f64();
        let placed: HashMap<SessionId, usize> = result.placed.iter().enumerate().map(|(i, (id, _))| (*id, i)).collect();
        for (s, arrived) in &pending {
            let Some(i) = placed.get(&s.id) else { continue };
            latencies.push(round - arrived);
            let runtime = 1 + rng.below(8) as usize;
            for (p, (_, want)) in result.placed[*i].1.iter().zip(&s.kernels) {
                let a = index[&p.agent_id];
                fleet[a].occupied = std::mem::take(&mut fleet[a].occupied) + want.clone();
                running.push((round + runtime, a, want.clone()));
            }
            let o = owners.entry(s.access_key.clone()).or_default();
            o.occupied = std::mem::take(&mut o.occupied) + s.total_slots();
        }
        pending.retain(|(s, _)| !placed.contains_key(&s.id));
    }
    latencies.sort_unstable();
    (latencies, pending.len(), pass_secs / rounds as f64)
}

fn pct(sorted: &[usize], p: f64) -> usize {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let quick = std::env::var_os("SCHEDULER_BENCH_QUICK").is_some();
    let sizes: &[(usize, usize)] =
        if quick { &[(100, 10_000)] } else { &[(100, 10_000), (1_000, 100_000), (10_000, 100_000)] };
    println!("One pass of `plan` (fresh cluster, 1/4 of agents with 4-8 GPUs; 200 owners; 10% priority 1)");
    println!(
        "| agents | sessions | sequencer | selector | pass ms | placed | placements/s | cpu util | gpu util | share spread |"
    );
    println!("|---:|---:|---|---|---:|---:|---:|---:|---:|---:|");
    for &(n, m) in sizes {
        let mut rng = Rng(7);
        let fleet = agents(n, &mut rng);
        let pending: Vec<_> = (0..m).map(|i| session(&mut rng, t0() - Duration::seconds(i as i64))).collect();
        for seq in SEQUENCERS {
            for sel in SELECTORS {
                let s = one_pass(seq, sel, &fleet, &pending);
                println!(
                    "| {n} | {m} | {seq} | {sel} | {:.1} | {} | {:.0} | {:.1}% | {:.1}% | {:.4} |",
                    s.secs * 1e3,
                    s.placed,
                    s.placed as f64 / s.secs,
                    s.cpu_util * 100.0,
                    s.gpu_util * 100.0,
                    s.share_spread
                );
            }
        }
    }
    let (n, arrivals, rounds) = if quick { (100, 300, 10) } else { (1_000, 4_000, 30) };
    println!();
    println!(
        "Simulation: {n} agents, {arrivals} arrivals per round, {rounds} rounds, runtimes 1-8 rounds, aging after 5 rounds"
    );
    println!(
        "| sequencer | selector | mean pass ms | placed | left pending | latency p50 | p90 | p99 | max (rounds) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for seq in SEQUENCERS {
        for sel in SELECTORS {
            let (lat, left, secs) = simulate(seq, sel, n, arrivals, rounds);
            println!(
                "| {seq} | {sel} | {:.1} | {} | {left} | {} | {} | {} | {} |",
                secs * 1e3,
                lat.len(),
                pct(&lat, 0.5),
                pct(&lat, 0.9),
                pct(&lat, 0.99),
                lat.last().copied().unwrap_or(0)
            );
        }
    }
}
