//! The [`AgentSelector`] suite: over many generated snapshots, a selector places every kernel of a session or none,
//! only on agents that serve the session (scaling group and image), and a pass of [`plan`] never over-commits an
//! agent.

use crate::ids::{KernelId, SessionId};
use crate::model::ImageInfo;
use crate::scheduler::{plan, AgentSelector, AgentSnapshot, Fifo, PendingSession};
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
                available: ResourceSlots::from([
                    ("cpu", (1 + rng.below(16)).into()),
                    ("mem", ((1 + rng.below(8)) << 30).into()),
                ]),
                occupied: ResourceSlots::from([("cpu", rng.below(2).into())]),
                images: if rng.below(6) == 0 { vec![image("ruby:3")] } else { vec![image("python:3.11")] },
            })
            .collect();
        let pending: Vec<PendingSession> = (0..rng.below(30))
            .map(|i| PendingSession {
                id: SessionId::new(),
                access_key: format!("AK{}", rng.below(4)).into(),
                image: "python".into(),
                scaling_group: "default".into(),
                priority: 0,
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
            })
            .collect();
        for session in &pending {
            if let Some(placements) = selector.select(session, &agents) {
                assert_eq!(placements.len(), session.kernels.len(), "round {round}: every kernel or none");
                for p in &placements {
                    let agent = agents.iter().find(|a| a.id == p.agent_id).expect("placed on a known agent");
                    assert!(agent.serves(session), "round {round}: placed on an agent that does not serve it");
                }
            }
        }
        let mut used: HashMap<_, ResourceSlots> = HashMap::new();
        for (sid, placements) in plan(&Fifo, selector, pending.clone(), agents.clone()) {
            let session = pending.iter().find(|p| p.id == sid).expect("planned a pending session");
            for (p, (_, want)) in placements.iter().zip(&session.kernels) {
                let e = used.entry(p.agent_id.clone()).or_default();
                *e = e.clone() + want.clone();
            }
        }
        for a in &agents {
            let total = a.occupied.clone() + used.get(&a.id).cloned().unwrap_or_default();
            assert!(total.fits_in(&a.available), "round {round}: {} over-committed: {total} > {}", a.id, a.available);
        }
    }
}
