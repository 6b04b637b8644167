//! Unit and property tests of the policies and the planner.

use super::*;
use crate::model::AgentStatus;
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::collections::HashMap;

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_000_000 + secs, 0).unwrap()
}

fn python() -> ImageInfo {
    ImageInfo { name: "python:3.11".into(), aliases: vec![], lang: "python".into(), min_slots: ResourceSlots::new() }
}

fn agent(id: &str, cpu: u32) -> AgentSnapshot {
    AgentSnapshot {
        id: id.into(),
        scaling_group: "default".into(),
        architecture: "x86_64".into(),
        status: AgentStatus::Alive,
        schedulable: true,
        available: ResourceSlots::from([("cpu", Decimal::from(cpu)), ("mem", Decimal::from(1u64 << 34))]),
        occupied: ResourceSlots::new(),
        images: vec![python()],
    }
}

fn cpu(n: u32) -> ResourceSlots {
    ResourceSlots::from([("cpu", Decimal::from(n))])
}

/// A session created `age` seconds before `t(0)`.
fn session(cpus: &[u32], age: i64, priority: i32) -> PendingSession {
    PendingSession {
        id: SessionId::new(),
        access_key: "AK".into(),
        domain: "default".into(),
        group: "default".into(),
        image: "python".into(),
        scaling_group: "default".into(),
        priority,
        created_at: t(-age),
        kernels: cpus.iter().map(|c| (KernelId::new(), cpu(*c))).collect(),
        architecture: None,
        designated_agent: None,
    }
}

fn owned(owner: &str, cpus: u32, age: i64) -> PendingSession {
    PendingSession { access_key: owner.into(), ..session(&[cpus], age, 0) }
}

fn run(seq: &str, sel: &dyn AgentSelector, pending: &[PendingSession], agents: &[AgentSnapshot]) -> Plan {
    let input = PlanInput::new(pending.to_vec(), agents.to_vec(), t(0));
    plan(sequencer_by_name(seq).unwrap().as_ref(), sel, input, &PlanOptions::default())
}

fn placed_ids(p: &Plan) -> Vec<SessionId> {
    p.placed.iter().map(|(id, _)| *id).collect()
}

fn agent_of(p: &Plan, id: SessionId) -> Option<AgentId> {
    p.placed.iter().find(|(s, _)| *s == id).map(|(_, pl)| pl[0].agent_id.clone())
}

fn reason(p: &Plan, id: SessionId) -> Option<Blocked> {
    p.blocked.iter().find(|(s, _)| *s == id).map(|(_, b)| b.clone())
}

#[test]
fn a_big_session_does_not_block_small_ones() {
    let big = session(&[16], 100, 0);
    let small = session(&[1], 50, 0);
    let p = run("fifo", &Dispersed, &[big.clone(), small.clone()], &[agent("a", 4)]);
    assert_eq!(placed_ids(&p), vec![small.id]);
    assert_eq!(reason(&p, big.id), Some(Blocked::NoCapacity));
    assert!(!could_ever_fit(&big, &[agent("a", 4)]));
}

#[test]
fn dispersed_spreads_and_fifo_respects_priority() {
    let s1 = session(&[1], 10, 0);
    let s2 = session(&[1], 5, 0);
    let p = run("fifo", &Dispersed, &[s2.clone(), s1.clone()], &[agent("a", 4), agent("b", 4)]);
    assert_eq!(placed_ids(&p), vec![s1.id, s2.id], "older first");
    assert_ne!(agent_of(&p, s1.id), agent_of(&p, s2.id), "spread over agents");
    let urgent = session(&[4], 1, 10);
    let p = run("fifo", &Dispersed, &[s1.clone(), urgent.clone()], &[agent("a", 4)]);
    assert_eq!(placed_ids(&p), vec![urgent.id]);
}

#[test]
fn lifo_tries_the_newest_first() {
    let old = session(&[3], 10, 0);
    let new = session(&[3], 5, 0);
    let p = run("lifo", &Dispersed, &[old.clone(), new.clone()], &[agent("a", 4)]);
    assert_eq!(placed_ids(&p), vec![new.id]);
    let urgent = session(&[3], 20, 1);
    let p = run("lifo", &Dispersed, &[old, new, urgent.clone()], &[agent("a", 4)]);
    assert_eq!(placed_ids(&p), vec![urgent.id], "priority before recency");
}

#[test]
fn concentrated_packs_onto_the_fullest_agent_that_fits() {
    let mut busy = agent("busy", 8);
    busy.occupied = cpu(6);
    let agents = [agent("idle", 8), busy, agent("small", 2)];
    let s = session(&[2], 1, 0);
    assert_eq!(agent_of(&run("fifo", &Concentrated, std::slice::from_ref(&s), &agents), s.id), Some("busy".into()));
    let s3 = session(&[3], 1, 0);
    assert_eq!(agent_of(&run("fifo", &Concentrated, std::slice::from_ref(&s3), &agents), s3.id), Some("idle".into()));
    assert_eq!(agent_of(&run("fifo", &Dispersed, std::slice::from_ref(&s), &agents), s.id), Some("idle".into()));
}

#[test]
fn roundrobin_rotates_and_remembers_across_passes() {
    let rr = RoundRobin::default();
    let agents = [agent("a", 8), agent("b", 8), agent("c", 8)];
    let batch: Vec<_> = (0..4).map(|i| session(&[1], 10 - i, 0)).collect();
    let p = run("fifo", &rr, &batch, &agents);
    let order: Vec<_> = batch.iter().map(|s| agent_of(&p, s.id).unwrap().0).collect();
    assert_eq!(order, ["a", "b", "c", "a"]);
    let next = session(&[1], 0, 0);
    assert_eq!(agent_of(&run("fifo", &rr, std::slice::from_ref(&next), &agents), next.id), Some("b".into()));
    let big = session(&[8], 0, 0);
    let mut partly = agents.clone();
    partly[2].occupied = cpu(1);
    assert_eq!(
        agent_of(&run("fifo", &rr, std::slice::from_ref(&big), &partly), big.id),
        Some("a".into()),
        "skips what is full"
    );
}

#[test]
fn policies_are_chosen_by_name() {
    for name in SEQUENCERS {
        assert_eq!(sequencer_by_name(name).unwrap().name(), name);
    }
    for name in SELECTORS {
        assert_eq!(selector_by_name(name).unwrap().name(), name);
    }
    assert_eq!(sequencer_by_name("DRF").unwrap().name(), "drf");
    assert!(sequencer_by_name("sjf").is_none());
    let err = sequencer_named("sjf").err().unwrap();
    assert!(err.to_string().contains("unknown scheduler \"sjf\""), "{err}");
    assert!(selector_named("random").is_err());
}

#[test]
fn filters_keep_sessions_off_agents_that_may_not_take_them() {
    let s = session(&[1], 1, 0);
    let mut lost = agent("lost", 8);
    lost.status = AgentStatus::Lost;
    let mut drained = agent("drained", 8);
    drained.schedulable = false;
    let mut other_group = agent("gpu", 8);
    other_group.scaling_group = "gpu".into();
    let mut arm = agent("arm", 8);
    arm.architecture = "aarch64".into();
    let mut ruby = agent("ruby", 8);
    ruby.images = vec![ImageInfo { name: "ruby:3".into(), ..python() }];
    let blocked = [lost, drained, other_group, arm.clone(), ruby];
    for sel in SELECTORS {
        let sel = selector_by_name(sel).unwrap();
        let arm_only = PendingSession { architecture: Some("x86_64".into()), ..s.clone() };
        let p = run("fifo", sel.as_ref(), std::slice::from_ref(&arm_only), &blocked);
        assert!(p.placed.is_empty(), "{}: {:?}", sel.name(), p.placed);
        assert_eq!(reason(&p, arm_only.id), Some(Blocked::NoServingAgent));
        let on_arm = PendingSession { architecture: Some("aarch64".into()), ..s.clone() };
        assert_eq!(
            agent_of(&run("fifo", sel.as_ref(), std::slice::from_ref(&on_arm), &blocked), on_arm.id),
            Some("arm".into())
        );
        let designated = PendingSession { designated_agent: Some("y".into()), ..s.clone() };
        let two = [agent("x", 8), agent("y", 8)];
        assert_eq!(
            agent_of(&run("fifo", sel.as_ref(), std::slice::from_ref(&designated), &two), designated.id),
            Some("y".into())
        );
        let missing = PendingSession { designated_agent: Some("zz".into()), ..s.clone() };
        assert_eq!(
            reason(&run("fifo", sel.as_ref(), std::slice::from_ref(&missing), &two), missing.id),
            Some(Blocked::NoServingAgent)
        );
    }
    let mut gone = s.clone();
    gone.image = "ruby:3".into();
    assert!(!could_ever_fit(&gone, &[agent("a", 4)]));
    let mut tpu = s.clone();
    tpu.kernels[0].1.set("tpu.device", Decimal::ONE);
    assert!(!could_ever_fit(&tpu, &[agent("a", 4)]), "a slot no agent has never fits");
}

#[test]
fn drf_serves_the_owner_with_the_lowest_dominant_share_first() {
    let heavy = owned("heavy", 1, 100);
    let light = owned("light", 1, 1);
    let mut input = PlanInput::new(vec![heavy.clone(), light.clone()], vec![agent("a", 4)], t(0));
    let mut a = input.agents[0].clone();
    a.occupied = cpu(3);
    input.agents = vec![a];
    input.owners.insert("heavy".into(), OwnerUsage { occupied: cpu(3), sessions: 3, ..Default::default() });
    let p = plan(&Drf, &Dispersed, input.clone(), &PlanOptions::default());
    assert_eq!(placed_ids(&p), vec![light.id], "the light owner goes first though it came later");
    let p = plan(&Fifo, &Dispersed, input, &PlanOptions::default());
    assert_eq!(placed_ids(&p), vec![heavy.id]);

    // Shares are re-evaluated after every placement: two owners alternate.
    let mut pending: Vec<_> = (0..4).map(|i| owned("x", 1, 100 - i)).collect();
    pending.extend((0..4).map(|i| owned("y", 1, 50 - i)));
    let p = run("drf", &Dispersed, &pending, &[agent("a", 4)]);
    let owners: Vec<_> =
        placed_ids(&p).iter().map(|id| pending.iter().find(|s| s.id == *id).unwrap().access_key.0.clone()).collect();
    assert_eq!(owners, ["x", "y", "x", "y"]);
}

#[test]
fn a_low_priority_session_does_not_take_what_a_waiting_high_priority_one_needs() {
    let mut busy = agent("a", 4);
    busy.occupied = cpu(2);
    let high = session(&[4], 1, 10);
    let low = session(&[1], 100, 0);
    let p = run("fifo", &Dispersed, &[high.clone(), low.clone()], std::slice::from_ref(&busy));
    assert!(p.placed.is_empty(), "{:?}", p.placed);
    assert_eq!(reason(&p, low.id), Some(Blocked::Reserved));
    assert_eq!(reason(&p, high.id), Some(Blocked::NoCapacity));
    assert_eq!(p.reservations, vec![(high.id, vec![AgentId::from("a")])]);
    // Capacity the high-priority session could never use stays open to others.
    let p = run("fifo", &Dispersed, &[high.clone(), low.clone()], &[busy, agent("b", 2)]);
    assert_eq!(agent_of(&p, low.id), Some("b".into()));
}

#[test]
fn owner_limits_block_with_a_reason() {
    let sessions = [owned("ak", 1, 3), owned("ak", 1, 2), owned("ak", 2, 1)];
    let mut input = PlanInput::new(sessions.to_vec(), vec![agent("a", 16)], t(0));
    let limits = OwnerLimits { max_concurrent_sessions: Some(2), total_resource_slots: None };
    input.owners.insert("ak".into(), OwnerUsage { occupied: cpu(1), sessions: 1, limits });
    let p = plan(&Fifo, &Dispersed, input.clone(), &PlanOptions::default());
    assert_eq!(placed_ids(&p), vec![sessions[0].id]);
    assert_eq!(reason(&p, sessions[1].id), Some(Blocked::ConcurrencyLimit { limit: 2 }));
    let limits = OwnerLimits { max_concurrent_sessions: None, total_resource_slots: Some(cpu(3)) };
    input.owners.insert("ak".into(), OwnerUsage { occupied: cpu(1), sessions: 1, limits });
    let p = plan(&Fifo, &Dispersed, input, &PlanOptions::default());
    assert_eq!(placed_ids(&p), vec![sessions[0].id, sessions[1].id]);
    let blocked = reason(&p, sessions[2].id).unwrap();
    assert_eq!(blocked, Blocked::SlotLimit { slot: "cpu".into(), limit: Decimal::from(3) });
    assert!(blocked.to_string().contains("total resource slots"), "{blocked}");
}

fn scoped(domain: &str, group: &str, cpus: u32, age: i64) -> PendingSession {
    PendingSession { domain: domain.into(), group: group.into(), ..session(&[cpus], age, 0) }
}

fn group_scope(domain: &str, name: &str) -> QuotaScope {
    QuotaScope::Group { domain: domain.into(), name: name.into() }
}

#[test]
fn group_and_domain_quotas_block_with_a_reason() {
    // g1 may hold 3 cpus and holds 1: its second session waits while g2's is placed after it.
    let sessions = [scoped("d", "g1", 2, 3), scoped("d", "g1", 2, 2), scoped("d", "g2", 2, 1)];
    let mut input = PlanInput::new(sessions.to_vec(), vec![agent("a", 16)], t(0));
    input.scopes.insert(group_scope("d", "g1"), ScopeUsage { occupied: cpu(1), total_resource_slots: cpu(3) });
    input.scopes.insert(group_scope("d", "g2"), ScopeUsage::default());
    let p = plan(&Fifo, &Dispersed, input, &PlanOptions::default());
    assert_eq!(placed_ids(&p), vec![sessions[0].id, sessions[2].id]);
    let blocked = reason(&p, sessions[1].id).unwrap();
    let want = Blocked::ScopeLimit {
        scope: group_scope("d", "g1"),
        slot: "cpu".into(),
        used: Decimal::from(3),
        limit: Decimal::from(3),
    };
    assert_eq!(blocked, want);
    assert_eq!(blocked.to_string(), "pending: group g1 total_resource_slots exceeded (cpu 3 of 3 used)");

    // The same group name in another domain is another group: not limited.
    let elsewhere = scoped("e", "g1", 2, 1);
    let mut input = PlanInput::new(vec![elsewhere.clone()], vec![agent("a", 16)], t(0));
    input.scopes.insert(group_scope("d", "g1"), ScopeUsage { occupied: cpu(3), total_resource_slots: cpu(3) });
    assert_eq!(placed_ids(&plan(&Fifo, &Dispersed, input, &PlanOptions::default())), vec![elsewhere.id]);

    // The domain's quota counts every group of the domain, with the sessions placed earlier in the pass.
    let mut input = PlanInput::new(sessions.to_vec(), vec![agent("a", 16)], t(0));
    input.scopes.insert(QuotaScope::Domain("d".into()), ScopeUsage { occupied: cpu(0), total_resource_slots: cpu(4) });
    let p = plan(&Fifo, &Concentrated, input, &PlanOptions::default());
    assert_eq!(placed_ids(&p), vec![sessions[0].id, sessions[1].id]);
    let blocked = reason(&p, sessions[2].id).unwrap();
    assert_eq!(blocked.to_string(), "pending: domain d total_resource_slots exceeded (cpu 4 of 4 used)");
}

#[test]
fn fractional_amounts_never_round_into_an_over_commit() {
    let mut a = agent("a", 1);
    a.available.set("cpu", Decimal::new(10_000_001, 7));
    let mut s = session(&[1], 1, 0);
    s.kernels[0].1.set("cpu", Decimal::new(10_000_002, 7));
    assert!(run("fifo", &Concentrated, std::slice::from_ref(&s), std::slice::from_ref(&a)).placed.is_empty());
    s.kernels[0].1.set("cpu", Decimal::new(10_000_001, 7));
    assert!(run("fifo", &Concentrated, &[s], &[a]).placed.is_empty(), "conservative rounding below 10^-6");
}

#[test]
fn every_selector_conforms() {
    for name in SELECTORS {
        crate::conformance::scheduler::run(selector_by_name(name).unwrap().as_ref());
    }
}

/// `agents` agents of `capacity` cpu, each busy with one small session until round 1; session 0 needs a whole
/// agent and comes first, then `arrivals[r]` one-cpu sessions
/// arrive in round `r`, each running `runtime[k]` rounds. Answers the round the big session was placed in.
fn simulate_big_among_small(
    sequencer: &dyn Sequencer,
    selector: &dyn AgentSelector,
    agents: u32,
    capacity: u32,
    arrivals: &[u32],
    runtimes: &[u32],
    threshold_rounds: i64,
) -> Option<usize> {
    let minute = |r: usize| t(60 * r as i64);
    let mut fleet: Vec<AgentSnapshot> = (0..agents).map(|i| agent(&format!("a{i}"), capacity)).collect();
    let big = PendingSession { created_at: minute(0), ..session(&[capacity], 0, 0) };
    let mut pending = vec![big.clone()];
    // Every agent starts with one small session that ends in round 1.
    let mut running: Vec<(AgentId, ResourceSlots, usize)> = Vec::new();
    for a in &mut fleet {
        a.occupied = cpu(1);
        running.push((a.id.clone(), cpu(1), 1));
    }
    let options = PlanOptions { starvation_threshold: chrono::Duration::minutes(threshold_rounds) };
    let mut k = 0;
    for (round, arriving) in arrivals.iter().enumerate() {
        running.retain(|(a, slots, end)| {
            if *end > round {
                return true;
            }
            let agent = fleet.iter_mut().find(|x| x.id == *a).unwrap();
            agent.occupied = agent.occupied.clone() - slots.clone();
            false
        });
        for _ in 0..*arriving {
            pending.push(PendingSession { created_at: minute(round), ..session(&[1], 0, 0) });
        }
        let input = PlanInput::new(pending.clone(), fleet.clone(), minute(round));
        let p = plan(sequencer, selector, input, &options);
        for (sid, placements) in &p.placed {
            if *sid == big.id {
                return Some(round);
            }
            let s = pending.iter().find(|s| s.id == *sid).unwrap();
            for (pl, (_, want)) in placements.iter().zip(&s.kernels) {
                let agent = fleet.iter_mut().find(|x| x.id == pl.agent_id).unwrap();
                agent.occupied = agent.occupied.clone() + want.clone();
                running.push((pl.agent_id.clone(), want.clone(), round + runtimes[k % runtimes.len()] as usize));
                k += 1;
            }
        }
        pending.retain(|s| !p.placed.iter().any(|(id, _)| *id == s.id));
    }
    None
}

#[test]
fn aging_ends_starvation_of_a_large_session() {
    // A steady stream of small sessions keeps the agent partly busy forever.
    let arrivals = vec![2u32; 60];
    let starved = simulate_big_among_small(&Fifo, &Dispersed, 1, 4, &arrivals, &[2], 1_000_000);
    assert_eq!(starved, None, "without aging the large session never starts");
    let placed = simulate_big_among_small(&Fifo, &Dispersed, 1, 4, &arrivals, &[2], 5).expect("placed with aging");
    assert!(placed <= 5 + 2, "placed in round {placed}");
}

type Used = std::collections::HashMap<AgentId, ResourceSlots>;

fn used_by(p: &Plan, pending: &[PendingSession]) -> Used {
    let mut used = Used::new();
    for (sid, placements) in &p.placed {
        let s = pending.iter().find(|s| s.id == *sid).unwrap();
        for (pl, (_, want)) in placements.iter().zip(&s.kernels) {
            let e = used.entry(pl.agent_id.clone()).or_default();
            *e = e.clone() + want.clone();
        }
    }
    used
}

fn arb_agents() -> impl Strategy<Value = Vec<AgentSnapshot>> {
    proptest::collection::vec((1u32..16, 0u32..4, 0u8..12, 0u32..3), 1..8).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (cap, used, flags, gpus))| {
                let mut a = agent(&format!("a{i}"), cap);
                a.occupied = cpu(used.min(cap));
                if gpus > 0 {
                    a.available.set("cuda.shares", Decimal::from(gpus));
                }
                match flags {
                    0 => a.status = AgentStatus::Lost,
                    1 => a.schedulable = false,
                    2 => a.scaling_group = "other".into(),
                    3 => a.architecture = "aarch64".into(),
                    4 => a.images = vec![],
                    _ => {}
                }
                a
            })
            .collect()
    })
}

fn arb_pending() -> impl Strategy<Value = Vec<PendingSession>> {
    proptest::collection::vec(
        (proptest::collection::vec((1u32..8, 0u32..3), 1..4), 0i32..3, 0u8..4, 0i64..1000, 0u8..10),
        0..40,
    )
    .prop_map(|specs| {
        specs
            .into_iter()
            .map(|(kernels, priority, owner, age, flags)| {
                let mut s = session(&[], age, priority);
                s.access_key = format!("AK{owner}").into();
                s.kernels = kernels
                    .into_iter()
                    .map(|(c, g)| {
                        let mut slots = cpu(c);
                        if g > 0 {
                            slots.set("cuda.shares", Decimal::new(g as i64 * 5, 1));
                        }
                        (KernelId::new(), slots)
                    })
                    .collect();
                match flags {
                    0 => s.architecture = Some("aarch64".into()),
                    1 => s.designated_agent = Some("a0".into()),
                    _ => {}
                }
                s
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn no_policy_over_commits_or_uses_a_filtered_agent(agents in arb_agents(), pending in arb_pending(),
                                                        threshold in 1i64..2000) {
        let options = PlanOptions { starvation_threshold: chrono::Duration::seconds(threshold) };
        for seq in SEQUENCERS {
            for sel in SELECTORS {
                let sequencer = sequencer_by_name(seq).unwrap();
                let selector = selector_by_name(sel).unwrap();
                let input = PlanInput::new(pending.clone(), agents.clone(), t(0));
                let p = plan(sequencer.as_ref(), selector.as_ref(), input, &options);
                prop_assert_eq!(p.placed.len() + p.blocked.len(), pending.len());
                for (sid, placements) in &p.placed {
                    let s = pending.iter().find(|s| s.id == *sid).unwrap();
                    prop_assert_eq!(placements.len(), s.kernels.len());
                    for pl in placements {
                        let a = agents.iter().find(|a| a.id == pl.agent_id).unwrap();
                        prop_assert!(a.takes_sessions() && a.serves(s), "{seq}/{sel}: filtered agent {}", a.id);
                    }
                }
                let used = used_by(&p, &pending);
                for a in &agents {
                    if let Some(u) = used.get(&a.id) {
                        let total = a.occupied.clone() + u.clone();
                        prop_assert!(total.fits_in(&a.available), "{seq}/{sel}: {} over-committed: {total}", a.id);
                    }
                }
            }
        }
    }

    #[test]
    fn drf_never_skips_a_lower_share_owner_that_fits(agents in arb_agents(), pending in arb_pending(),
                                                     held in proptest::collection::vec(0u32..8, 4)) {
        // One priority level, single-kernel sessions, no aging: the fairness bound holds at every placement.
        let pending: Vec<_> = pending.into_iter().map(|mut s| {
            s.priority = 0;
            s.kernels.truncate(1);
            s
        }).collect();
        let mut input = PlanInput::new(pending.clone(), agents.clone(), t(0));
        for (i, h) in held.iter().enumerate() {
            input.owners.insert(format!("AK{i}").into(), OwnerUsage { occupied: cpu(*h), ..Default::default() });
        }
        let owners = input.owners.clone();
        let options = PlanOptions { starvation_threshold: chrono::Duration::days(365) };
        for sel in SELECTORS {
            let selector = selector_by_name(sel).unwrap();
            let p = plan(&Drf, selector.as_ref(), input.clone(), &options);
            let mut fleet: Vec<_> = agents.iter().filter(|a| a.takes_sessions()).cloned().collect();
            let capacity = fleet.iter().fold(ResourceSlots::new(), |acc, a| acc + a.available.clone());
            let mut held: std::collections::HashMap<AccessKey, ResourceSlots> =
                owners.iter().map(|(k, u)| (k.clone(), u.occupied.clone())).collect();
            let share = |held: &std::collections::HashMap<AccessKey, ResourceSlots>, k: &AccessKey| {
                held.get(k).map(|o| o.dominant_share(&capacity)).unwrap_or_default()
            };
            let mut done: Vec<SessionId> = Vec::new();
            for (sid, placements) in &p.placed {
                let s = pending.iter().find(|x| x.id == *sid).unwrap();
                let mine = share(&held, &s.access_key);
                for u in pending.iter().filter(|u| u.access_key != s.access_key && !done.contains(&u.id)) {
                    if share(&held, &u.access_key) + Decimal::new(1, 9) < mine {
                        let fits_now = fleet.iter().any(|a| a.serves(u) && u.kernels[0].1.fits_in(&a.free()));
                        prop_assert!(!fits_now, "{sel}: {} (share {mine}) placed before lower-share {}",
                                     s.access_key, u.access_key);
                    }
                }
                let a = fleet.iter_mut().find(|a| a.id == placements[0].agent_id).unwrap();
                a.occupied = a.occupied.clone() + s.kernels[0].1.clone();
                let e = held.entry(s.access_key.clone()).or_default();
                *e = e.clone() + s.kernels[0].1.clone();
                done.push(*sid);
            }
        }
    }

    #[test]
    fn no_policy_lets_a_group_or_domain_exceed_its_quota(agents in arb_agents(), pending in arb_pending(),
                                                         scopes in proptest::collection::vec((0u32..4, 0u32..12), 5)) {
        // Three groups over two domains (g0 and g1 in d0, g0 in d1: one name, two groups), each scope with a random
        // cpu quota (0: unlimited) and what it already holds.
        let homes = [("d0", "g0"), ("d0", "g1"), ("d1", "g0")];
        let pending: Vec<_> = pending.into_iter().enumerate().map(|(i, mut s)| {
            let (d, g) = homes[i % homes.len()];
            s.domain = d.into();
            s.group = g.into();
            s
        }).collect();
        let keys = [group_scope("d0", "g0"), group_scope("d0", "g1"), group_scope("d1", "g0"),
                    QuotaScope::Domain("d0".into()), QuotaScope::Domain("d1".into())];
        let mut input = PlanInput::new(pending.clone(), agents.clone(), t(0));
        for (key, (held, quota)) in keys.iter().zip(&scopes) {
            let total = if *quota == 0 { ResourceSlots::new() } else { cpu(*quota) };
            input.scopes.insert(key.clone(), ScopeUsage { occupied: cpu(*held), total_resource_slots: total });
        }
        for seq in SEQUENCERS {
            for sel in SELECTORS {
                let sequencer = sequencer_by_name(seq).unwrap();
                let selector = selector_by_name(sel).unwrap();
                let p = plan(sequencer.as_ref(), selector.as_ref(), input.clone(), &PlanOptions::default());
                let mut used: HashMap<QuotaScope, Decimal> =
                    input.scopes.iter().map(|(k, u)| (k.clone(), u.occupied.get("cpu"))).collect();
                for (sid, _) in &p.placed {
                    let s = pending.iter().find(|s| s.id == *sid).unwrap();
                    for key in [QuotaScope::group_of(s), QuotaScope::domain_of(s)] {
                        let u = used.get_mut(&key).unwrap();
                        let before = *u;
                        *u += s.total_slots().get("cpu");
                        let quota = input.scopes[&key].total_resource_slots.get("cpu");
                        // A scope already over its quota admits nothing new; otherwise the placement must fit.
                        prop_assert!(quota.is_zero() || *u <= quota,
                                     "{seq}/{sel}: {key} went from {before} to {u} over its quota {quota}");
                    }
                }
                for (sid, why) in &p.blocked {
                    if let Blocked::ScopeLimit { scope, limit, .. } = why {
                        let s = pending.iter().find(|s| s.id == *sid).unwrap();
                        let after = used[scope] + s.total_slots().get("cpu");
                        // Quotas only shrink what fits: a session refused for one would exceed it at the end too.
                        prop_assert!(after > *limit, "{seq}/{sel}: {} refused by {scope} but fits", sid);
                    }
                }
            }
        }
    }

    #[test]
    fn aging_bounds_the_wait_of_a_large_session(seq in 0usize..3, sel in 0usize..3, agents in 1u32..3,
                                                capacity in 2u32..8,
                                                arrivals in proptest::collection::vec(0u32..4, 80),
                                                runtimes in proptest::collection::vec(1u32..4, 1..8)) {
        let sequencer = sequencer_by_name(SEQUENCERS[seq]).unwrap();
        let selector = selector_by_name(SELECTORS[sel]).unwrap();
        let threshold = 5;
        let max_runtime = *runtimes.iter().max().unwrap() as usize;
        let placed = simulate_big_among_small(sequencer.as_ref(), selector.as_ref(), agents, capacity, &arrivals,
                                              &runtimes, threshold);
        let bound = threshold as usize + max_runtime + 1;
        prop_assert!(placed.is_some_and(|r| r <= bound), "placed in {placed:?}, bound {bound}");
    }
}
