//! Scheduling policies as pure functions over a snapshot: a [`Sequencer`] orders pending sessions, an
//! [`AgentSelector`] chooses agents for each, and [`plan`] places as many sessions as fit without letting one that
//! does not fit block the others.

use crate::ids::{AccessKey, AgentId, KernelId, SessionId};
use crate::model::{AgentInfo, AgentStatus, ImageInfo, KernelRecord, SessionRecord};
use crate::runtime::resolve_image;
use crate::slots::ResourceSlots;
use crate::store::Placement;
use chrono::{DateTime, Utc};

/// A pending session as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct PendingSession {
    /// The session.
    pub id: SessionId,
    /// Its owner.
    pub access_key: AccessKey,
    /// Image reference.
    pub image: String,
    /// Scaling group asked for.
    pub scaling_group: String,
    /// Higher first.
    pub priority: i32,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// Its kernels and the slots each asks for.
    pub kernels: Vec<(KernelId, ResourceSlots)>,
}

impl PendingSession {
    /// Builds the scheduler's view of a stored session.
    pub fn from_records(session: &SessionRecord, kernels: &[KernelRecord]) -> Self {
        Self {
            id: session.id,
            access_key: session.access_key.clone(),
            image: session.image.clone(),
            scaling_group: session.scaling_group.clone(),
            priority: session.priority,
            created_at: session.created_at,
            kernels: kernels.iter().map(|k| (k.id, k.requested_slots.clone())).collect(),
        }
    }

    /// The slots of all its kernels.
    pub fn total_slots(&self) -> ResourceSlots {
        self.kernels.iter().fold(ResourceSlots::new(), |acc, (_, s)| acc + s.clone())
    }
}

/// An agent as the scheduler sees it, with what is still free.
#[derive(Debug, Clone)]
pub struct AgentSnapshot {
    /// The agent.
    pub id: AgentId,
    /// Scaling group.
    pub scaling_group: String,
    /// Capacity.
    pub available: ResourceSlots,
    /// In use.
    pub occupied: ResourceSlots,
    /// Images it can run.
    pub images: Vec<ImageInfo>,
}

impl AgentSnapshot {
    /// Snapshots the agents that can take new sessions (ALIVE and schedulable).
    pub fn schedulable(agents: &[AgentInfo]) -> Vec<Self> {
        agents
            .iter()
            .filter(|a| a.status == AgentStatus::Alive && a.schedulable)
            .map(|a| Self {
                id: a.id.clone(),
                scaling_group: a.scaling_group.clone(),
                available: a.available_slots.clone(),
                occupied: a.occupied_slots.clone(),
                images: a.images.clone(),
            })
            .collect()
    }

    /// Capacity minus use (slots in use beyond capacity count as zero free).
    pub fn free(&self) -> ResourceSlots {
        let mut free = ResourceSlots::new();
        for (k, v) in self.available.iter() {
            free.set(k, (v - self.occupied.get(k)).max(rust_decimal::Decimal::ZERO));
        }
        free
    }

    /// True when the agent could run the session's image in its scaling group.
    pub fn serves(&self, session: &PendingSession) -> bool {
        self.scaling_group == session.scaling_group && resolve_image(&self.images, &session.image).is_some()
    }
}

/// Orders pending sessions: the first is tried first.
pub trait Sequencer: Send + Sync {
    /// The policy's name (`fifo`).
    fn name(&self) -> &'static str;
    /// Reorders `pending` in place.
    fn sequence(&self, pending: &mut [PendingSession]);
}

/// Chooses an agent for each kernel of a session, or none when it does not fit now.
pub trait AgentSelector: Send + Sync {
    /// The policy's name (`dispersed`).
    fn name(&self) -> &'static str;
    /// Placements for every kernel of `session` on `agents`, or `None`.
    fn select(&self, session: &PendingSession, agents: &[AgentSnapshot]) -> Option<Vec<Placement>>;
}

/// First in, first out, with higher priority first.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fifo;

impl Sequencer for Fifo {
    fn name(&self) -> &'static str {
        "fifo"
    }
    fn sequence(&self, pending: &mut [PendingSession]) {
        pending.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.created_at.cmp(&b.created_at)));
    }
}

/// Spreads load: each kernel goes to the serving agent with the most free resources (by the free share of its
/// scarcest requested slot), so kernels of one session may land on different agents.
#[derive(Debug, Default, Clone, Copy)]
pub struct Dispersed;

impl AgentSelector for Dispersed {
    fn name(&self) -> &'static str {
        "dispersed"
    }

    fn select(&self, session: &PendingSession, agents: &[AgentSnapshot]) -> Option<Vec<Placement>> {
        let mut trial: Vec<AgentSnapshot> = agents.iter().filter(|a| a.serves(session)).cloned().collect();
        let mut placements = Vec::with_capacity(session.kernels.len());
        for (kernel_id, want) in &session.kernels {
            let best = trial.iter_mut().filter(|a| (a.occupied.clone() + want.clone()).fits_in(&a.available)).max_by(
                |a, b| {
                    let score = |s: &AgentSnapshot| {
                        let free = s.free();
                        want.names()
                            .map(|k| {
                                let cap = s.available.get(k);
                                if cap.is_zero() {
                                    rust_decimal::Decimal::ZERO
                                } else {
                                    free.get(k) / cap
                                }
                            })
                            .min()
                            .unwrap_or_else(|| free.iter().map(|(_, v)| v).sum())
                    };
                    score(a).cmp(&score(b)).then_with(|| b.id.cmp(&a.id))
                },
            )?;
            best.occupied = best.occupied.clone() + want.clone();
            placements.push(Placement { kernel_id: *kernel_id, agent_id: best.id.clone() });
        }
        Some(placements)
    }
}

/// One scheduling pass over a snapshot: sessions in the sequencer's order, each placed by the selector when it fits
/// given the placements made before it in the same pass. A session that does not fit is skipped, not waited for,
/// so it never blocks the ones behind it.
pub fn plan(
    sequencer: &dyn Sequencer,
    selector: &dyn AgentSelector,
    mut pending: Vec<PendingSession>,
    mut agents: Vec<AgentSnapshot>,
) -> Vec<(SessionId, Vec<Placement>)> {
    sequencer.sequence(&mut pending);
    let mut out = Vec::new();
    for session in &pending {
        let Some(placements) = selector.select(session, &agents) else { continue };
        for (p, (_, want)) in placements.iter().zip(&session.kernels) {
            if let Some(agent) = agents.iter_mut().find(|a| a.id == p.agent_id) {
                agent.occupied = agent.occupied.clone() + want.clone();
            }
        }
        out.push((session.id, placements));
    }
    out
}

/// True when some agent in the snapshot could ever hold each kernel of the session (by capacity alone), so a
/// session that can never run is refused instead of waiting forever.
pub fn could_ever_fit(session: &PendingSession, agents: &[AgentSnapshot]) -> bool {
    session.kernels.iter().all(|(_, want)| agents.iter().any(|a| a.serves(session) && want.fits_in(&a.available)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    fn agent(id: &str, cpu: u32) -> AgentSnapshot {
        AgentSnapshot {
            id: id.into(),
            scaling_group: "default".into(),
            available: ResourceSlots::from([("cpu", Decimal::from(cpu)), ("mem", Decimal::from(1u64 << 34))]),
            occupied: ResourceSlots::new(),
            images: vec![ImageInfo {
                name: "python:3.11".into(),
                aliases: vec![],
                lang: "python".into(),
                min_slots: ResourceSlots::new(),
            }],
        }
    }

    fn session(cpu: &[u32], age: i64, priority: i32) -> PendingSession {
        PendingSession {
            id: SessionId::new(),
            access_key: "AK".into(),
            image: "python".into(),
            scaling_group: "default".into(),
            priority,
            created_at: DateTime::<Utc>::from_timestamp(1_000_000 - age, 0).unwrap(),
            kernels: cpu.iter().map(|c| (KernelId::new(), ResourceSlots::from([("cpu", Decimal::from(*c))]))).collect(),
        }
    }

    #[test]
    fn a_big_session_does_not_block_small_ones() {
        let big = session(&[16], 100, 0);
        let small = session(&[1], 50, 0);
        let plans = plan(&Fifo, &Dispersed, vec![big.clone(), small.clone()], vec![agent("a", 4)]);
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].0, small.id);
        assert!(!could_ever_fit(&big, &[agent("a", 4)]));
    }

    #[test]
    fn dispersed_spreads_and_fifo_respects_priority() {
        let s1 = session(&[1], 10, 0);
        let s2 = session(&[1], 5, 0);
        let plans = plan(&Fifo, &Dispersed, vec![s2.clone(), s1.clone()], vec![agent("a", 4), agent("b", 4)]);
        assert_eq!(plans[0].0, s1.id, "older first");
        assert_ne!(plans[0].1[0].agent_id, plans[1].1[0].agent_id, "spread over agents");
        let urgent = session(&[4], 1, 10);
        let plans = plan(&Fifo, &Dispersed, vec![s1.clone(), urgent.clone()], vec![agent("a", 4)]);
        assert_eq!(plans[0].0, urgent.id);
        assert_eq!(plans.len(), 1);
    }

    #[test]
    fn unknown_image_is_never_placed() {
        let mut s = session(&[1], 1, 0);
        s.image = "ruby:3".into();
        assert!(plan(&Fifo, &Dispersed, vec![s.clone()], vec![agent("a", 4)]).is_empty());
        assert!(!could_ever_fit(&s, &[agent("a", 4)]));
    }

    #[test]
    fn dispersed_conforms() {
        crate::conformance::scheduler::run(&Dispersed);
    }

    proptest! {
        #[test]
        fn never_over_commits(caps in proptest::collection::vec(1u32..16, 1..6),
                              demands in proptest::collection::vec(proptest::collection::vec(1u32..8, 1..4), 0..40)) {
            let agents: Vec<_> = caps.iter().enumerate().map(|(i, c)| agent(&format!("a{i}"), *c)).collect();
            let pending: Vec<_> = demands.iter().enumerate().map(|(i, d)| session(d, i as i64, 0)).collect();
            let plans = plan(&Fifo, &Dispersed, pending.clone(), agents.clone());
            let mut used: std::collections::HashMap<AgentId, ResourceSlots> = Default::default();
            for (sid, placements) in &plans {
                let s = pending.iter().find(|p| p.id == *sid).unwrap();
                prop_assert_eq!(placements.len(), s.kernels.len());
                for (p, (_, want)) in placements.iter().zip(&s.kernels) {
                    let e = used.entry(p.agent_id.clone()).or_default();
                    *e = e.clone() + want.clone();
                }
            }
            for a in &agents {
                prop_assert!(used.get(&a.id).cloned().unwrap_or_default().fits_in(&a.available));
            }
        }
    }
}
