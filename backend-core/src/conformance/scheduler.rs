//! The [`AgentSelector`] suite: over many generated snapshots, a selector places every kernel of a session or none,
//! only on agents that take sessions and serve the session (scaling group, architecture, image, designated agent),
//! and a pass of [`plan`] with every sequencer never over-commits an agent.

use crate::ids::{AgentId, KernelId, SessionId};
use crate::model::{AgentStatus, ImageInfo};
use crate::scheduler::{
    plan, select_with, sequencer_by_name, AgentSelector, AgentSnapshot, PendingSession, PlanInput, PlanOptions,
    SEQUENCERS,
};
use crate::slots::ResourceSlots;
use std::collections::HashMap;

/// A small deterministic generator, so a failure reproduces.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

fn image(name: &str) -> ImageInfo {
    ImageInfo { name: name.into(), aliases: vec![], lang: "python".into(), min_slots: ResourceSlots::new() }
}

/// Runs 200 generated scenarios.
pub fn run(selector: &dyn AgentSelector) {
    let mut rng = Lcg(0x5eed);
    for round in 0..200 {
        let agents: Vec<AgentSnapshot> = (0..1 + rng.below(6))
            .map(|i| AgentSnapshot {
                id: format!("agent-{i}").into(),
                scaling_group: if rng.below(5) == 0 { "gpu".into() } else { "default".into() },
                architecture: if rng.below(6) == 0 { "aarch64".into() } else { "x86_64".into() },
                status: if rng.below(8) == 0 { AgentStatus::Lost } else { AgentStatus::Alive },
                schedulable: rng.below(8) != 0,
                available: ResourceSlots::from([
                    ("cpu", (1 + rng.below(16)).into()),
                    ("mem", ((1 + rng.below(8)) << 30).into()),
                ]),
                occupied: ResourceSlots::from([("cpu", rng.below(2).into())]),
                images: if rng.below(6) == 0 { vec![image("ruby:3")] } else { vec![image("python:3.11")] },
            })
            .collect();
        let n_agents = agents.len() as u64;
        let pending: Vec<PendingSession> = (0..rng.below(30))
            .map(|i| PendingSession {
                id: SessionId::new(),
                access_key: format!("AK{}", rng.below(4)).into(),
                domain: "default".into(),
                group: "default".into(),
                image: "python".into(),
                scaling_group: "default".into(),
                priority: rng.below(3) as i32,
                created_at: chrono::DateTime::from_timestamp(1_000_000 + i as i64, 0).expect("valid"),
                kernels: (0..1 + rng.below(3))
                    .map(|_| {
                        let slots = ResourceSlots::from([
                            ("cpu", (1 + rng.below(4)).into()),
                            ("mem", ((1 + rng.below(2)) << 30).into()),
                        ]);
                        (KernelId::new(), slots)
                    })
                    .collect(),
                architecture: (rng.below(4) == 0).then(|| "x86_64".into()),
                designated_agent: (rng.below(6) == 0).then(|| AgentId::from(format!("agent-{}", rng.below(n_agents)))),
            })
            .collect();
        let eligible = |a: &AgentSnapshot, s: &PendingSession| a.takes_sessions() && a.serves(s);
        for session in &pending {
            if let Some(placements) = select_with(selector, session, &agents) {
                assert_eq!(placements.len(), session.kernels.len(), "round {round}: every kernel or none");
                for p in &placements {
                    let agent = agents.iter().find(|a| a.id == p.agent_id).expect("placed on a known agent");
                    assert!(eligible(agent, session), "round {round}: placed on an agent that may not take it");
                }
            }
        }
        for name in SEQUENCERS {
            let sequencer = sequencer_by_name(name).expect("known sequencer");
            let now = chrono::DateTime::from_timestamp(1_000_100, 0).expect("valid");
            let input = PlanInput::new(pending.clone(), agents.clone(), now);
            let result = plan(sequencer.as_ref(), selector, input, &PlanOptions::default());
            let mut used: HashMap<_, ResourceSlots> = HashMap::new();
            for (sid, placements) in &result.placed {
                let session = pending.iter().find(|p| p.id == *sid).expect("planned a pending session");
                assert_eq!(placements.len(), session.kernels.len(), "round {round} {name}: every kernel or none");
                for (p, (kernel, want)) in placements.iter().zip(&session.kernels) {
                    assert_eq!(p.kernel_id, *kernel, "round {round} {name}: placements in kernel order");
                    let agent = agents.iter().find(|a| a.id == p.agent_id).expect("placed on a known agent");
                    assert!(eligible(agent, session), "round {round} {name}: placed on an agent that may not take it");
                    let e = used.entry(p.agent_id.clone()).or_default();
                    *e = e.clone() + want.clone();
                }
            }
            assert_eq!(
                result.placed.len() + result.blocked.len(),
                pending.len(),
                "round {round} {name}: every session is placed or blocked"
            );
            for a in &agents {
                let total = a.occupied.clone() + used.get(&a.id).cloned().unwrap_or_default();
                if used.contains_key(&a.id) {
                    assert!(
                        total.fits_in(&a.available),
                        "round {round} {name}: {} over-committed: {total} > {}",
                        a.id,
                        a.available
                    );
                }
            }
        }
    }
}
