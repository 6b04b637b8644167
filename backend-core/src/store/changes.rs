//! The checks and record changes of allocations and kernel moves, shared by the stores: each loads the rows (under
//! its locks), applies the change to them in memory ([`allocate`], [`change_kernel`]) and writes back what changed.
//! Everything is checked before anything changes, so a refused change leaves the records as they were and a store
//! can refuse one change of a batch and go on with the next.

use super::{KernelChange, KernelTransition, Placement, SessionChange};
use crate::error::{Error, Result};
use crate::ids::{AgentId, KernelId};
use crate::model::{AgentInfo, AgentStatus, KernelRecord, SessionRecord};
use crate::slots::ResourceSlots;
use crate::status::{KernelStatus, SessionStatus};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};

/// The agents the placements of `placements` name, in id order (the order stores lock them in).
pub(crate) fn agents_named<'a>(placements: impl IntoIterator<Item = &'a Placement>) -> Vec<AgentId> {
    let mut ids: Vec<AgentId> = placements.into_iter().map(|p| p.agent_id.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Checks that `placements` put every kernel of the PENDING `session` on an ALIVE, schedulable agent of `agents`
/// with room for it, then places them: the kernels record their agent and occupy their requested slots, the agents'
/// occupied slots grow by the same amounts, and session and kernels become SCHEDULED at `now`. On an error nothing
/// is changed (see [`super::MetadataStore::allocate`] for which error means what).
pub(crate) fn allocate(
    session: &mut SessionRecord,
    kernels: &mut [KernelRecord],
    agents: &mut HashMap<AgentId, AgentInfo>,
    placements: &[Placement],
    now: DateTime<Utc>,
) -> Result<()> {
    let id = session.id;
    if session.status != SessionStatus::Pending {
        return Err(Error::Conflict {
            msg: format!("session {id} is {}, not PENDING, and cannot be allocated", session.status),
        });
    }

    // The placements must name every kernel of the session exactly once.
    let mut target: HashMap<KernelId, &AgentId> = HashMap::new();
    for p in placements {
        if !kernels.iter().any(|k| k.id == p.kernel_id) {
            return Err(Error::InvalidParams { msg: format!("kernel {} is not part of session {id}", p.kernel_id) });
        }
        if target.insert(p.kernel_id, &p.agent_id).is_some() {
            return Err(Error::InvalidParams { msg: format!("kernel {} is placed twice", p.kernel_id) });
        }
    }
    if let Some(k) = kernels.iter().find(|k| !target.contains_key(&k.id)) {
        return Err(Error::InvalidParams { msg: format!("kernel {} of session {id} is not placed", k.id) });
    }
    for k in kernels.iter() {
        k.status.transition(KernelStatus::Scheduled)?;
    }

    // What each agent receives, then whether it is there and has room.
    let mut demand: BTreeMap<&AgentId, ResourceSlots> = BTreeMap::new();
    for k in kernels.iter() {
        let slot = demand.entry(target[&k.id]).or_default();
        *slot = std::mem::take(slot) + k.requested_slots.clone();
    }
    let mut occupied: Vec<(&AgentId, ResourceSlots)> = Vec::with_capacity(demand.len());
    for (agent_id, wanted) in &demand {
        let agent = agents
            .get(*agent_id)
            .filter(|a| a.status == AgentStatus::Alive && a.schedulable)
            .ok_or_else(|| Error::AgentNotFound { id: agent_id.to_string() })?;
        let after = agent.occupied_slots.clone() + wanted.clone();
        if !after.fits_in(&agent.available_slots) {
            return Err(Error::QuotaExceeded {
                msg: format!(
                    "agent {agent_id} cannot take {wanted}: {} of {} occupied",
                    agent.occupied_slots, agent.available_slots
                ),
            });
        }
        occupied.push((agent_id, after));
    }

    // Every check passed: change the records.
    for (agent_id, after) in occupied {
        if let Some(agent) = agents.get_mut(agent_id) {
            agent.occupied_slots = after;
        }
    }
    for k in kernels.iter_mut() {
        let agent = &agents[target[&k.id]];
        k.agent_id = Some(agent.id.clone());
        k.agent_addr = Some(agent.addr.clone());
        k.occupied_slots = k.requested_slots.clone();
        k.status = KernelStatus::Scheduled;
        k.status_history.push(KernelStatus::Scheduled, now);
    }
    session.status = SessionStatus::Scheduled;
    session.status_history.push(SessionStatus::Scheduled, now);
    Ok(())
}

/// `from - what` per slot, without the slots that reach zero; a slot that would go negative (which only a broken
/// invariant allows) stops at zero.
pub(crate) fn without(from: &ResourceSlots, what: &ResourceSlots) -> ResourceSlots {
    let mut left = ResourceSlots::new();
    for (slot, amount) in (from.clone() - what.clone()).iter() {
        if amount > Decimal::ZERO {
            left.set(slot, amount);
        } else if amount < Decimal::ZERO {
            tracing::warn!(slot, %amount, "releasing more slots than the agent had occupied");
        }
    }
    left
}

/// The agent a kernel gives its slots back to when `change` kills it, if it holds any.
pub(crate) fn releases_to<'a>(kernel: &'a KernelRecord, change: &KernelChange) -> Option<&'a AgentId> {
    let dies = change.status != kernel.status && change.status.is_dead();
    dies.then_some(()).and(kernel.agent_id.as_ref()).filter(|_| !kernel.occupied_slots.is_zero())
}

/// Applies `change` to kernel `id` of `session`, whose kernels are all of `kernels`, as
/// [`super::MetadataStore::update_kernel`] describes: the move must be in the transition table; a kernel entering a
/// dead status gives its occupied slots back to its agent in `agents` (the stores load the agents of
/// [`releases_to`]); the session's status is then derived from all its kernels. On an error nothing is changed.
pub(crate) fn change_kernel(
    session: &mut SessionRecord,
    kernels: &mut [KernelRecord],
    agents: &mut HashMap<AgentId, AgentInfo>,
    id: KernelId,
    change: KernelChange,
    now: DateTime<Utc>,
) -> Result<KernelTransition> {
    let kernel = kernels.iter_mut().find(|k| k.id == id).ok_or_else(|| Error::KernelNotFound { id: id.to_string() })?;
    if change.status != kernel.status {
        kernel.status.transition(change.status)?;
        if let Some(agent_id) = releases_to(kernel, &change) {
            match agents.get_mut(agent_id) {
                Some(agent) => agent.occupied_slots = without(&agent.occupied_slots, &kernel.occupied_slots),
                None => tracing::warn!(kernel = %kernel.id, agent = %agent_id, "the kernel's agent is unknown"),
            }
        }
        if change.status.is_dead() {
            kernel.occupied_slots = ResourceSlots::new();
        }
        kernel.status = change.status;
        kernel.status_history.push(change.status, now);
        if change.status.is_final() {
            kernel.terminated_at = Some(now);
        }
    }
    if change.status_info.is_some() {
        kernel.status_info = change.status_info;
    }
    if change.container_id.is_some() {
        kernel.container_id = change.container_id;
    }
    if change.exit_code.is_some() {
        kernel.exit_code = change.exit_code;
    }
    let kernel = kernel.clone();

    let statuses: Vec<KernelStatus> = kernels.iter().map(|k| k.status).collect();
    let moved = match SessionStatus::derive(&statuses) {
        Some(to) if to != session.status && session.status.can_transition_to(to) => {
            let from = session.status;
            enter_session(session, to, now);
            session.status_info = kernel.status_info.clone();
            Some((from, to))
        }
        _ => None,
    };
    Ok(KernelTransition { kernel, session: moved })
}

/// The agents that kernels of `kernels` hold slots on, in id order (the order stores lock them in): those a move of
/// the whole session to a dead status gives slots back to.
pub(crate) fn holders(kernels: &[KernelRecord]) -> Vec<AgentId> {
    let mut ids: Vec<AgentId> =
        kernels.iter().filter(|k| !k.occupied_slots.is_zero()).filter_map(|k| k.agent_id.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Moves `session` to `status` at `now`: history, and the end time for final statuses.
pub(crate) fn enter_session(session: &mut SessionRecord, status: SessionStatus, now: DateTime<Utc>) {
    session.status = status;
    session.status_history.push(status, now);
    if status.is_final() {
        session.terminated_at = Some(now);
    }
}

/// A session's status change, if any: `(from, to)`.
pub(crate) type SessionMove = Option<(SessionStatus, SessionStatus)>;

/// Applies `change` to `session` and all its `kernels` as [`super::SessionStore::update_session`] describes: each
/// kernel that is not dead and may make the move follows, and one entering a dead status gives its occupied slots
/// back to its agent in `agents` (the stores load the agents of [`holders`]). Answers the session's move, if any, and
/// the indexes in `kernels` of the kernels that moved. On an error nothing is changed.
pub(crate) fn change_session(
    session: &mut SessionRecord,
    kernels: &mut [KernelRecord],
    agents: &mut HashMap<AgentId, AgentInfo>,
    change: SessionChange,
    now: DateTime<Utc>,
) -> Result<(SessionMove, Vec<usize>)> {
    let from = session.status;
    if change.status != from {
        from.transition(change.status)?;
    }
    let kernel_status = KernelStatus::from(change.status);
    let mut moved = Vec::new();
    for (i, kernel) in kernels.iter_mut().enumerate() {
        if kernel.status.is_dead() || kernel.status == kernel_status || !kernel.status.can_transition_to(kernel_status)
        {
            continue;
        }
        kernel.status = kernel_status;
        kernel.status_history.push(kernel_status, now);
        if kernel_status.is_final() {
            kernel.terminated_at = Some(now);
        }
        if kernel_status.is_dead() {
            release(kernel, agents);
        }
        if change.status_info.is_some() {
            kernel.status_info = change.status_info.clone();
        }
        moved.push(i);
    }
    if change.status != from {
        enter_session(session, change.status, now);
    }
    if change.status_info.is_some() {
        session.status_info = change.status_info;
    }
    if let Some(result) = change.result {
        session.result = result;
    }
    Ok(((change.status != from).then_some((from, change.status)), moved))
}

/// Gives a kernel's occupied slots back to its agent in `agents` (once: the kernel holds nothing afterwards).
fn release(kernel: &mut KernelRecord, agents: &mut HashMap<AgentId, AgentInfo>) {
    let held = std::mem::take(&mut kernel.occupied_slots);
    if held.is_zero() {
        return;
    }
    let Some(agent_id) = &kernel.agent_id else {
        tracing::warn!(kernel = %kernel.id, "a kernel without an agent held slots");
        return;
    };
    match agents.get_mut(agent_id) {
        Some(agent) => agent.occupied_slots = without(&agent.occupied_slots, &held),
        None => tracing::warn!(kernel = %kernel.id, agent = %agent_id, "the kernel's agent is unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_slots_never_go_negative_and_drop_zeros() {
        let occupied = ResourceSlots::from_pairs([("cpu", "2"), ("mem", "1g")]).unwrap();
        let held = ResourceSlots::from_pairs([("cpu", "3"), ("mem", "1g")]).unwrap();
        assert_eq!(without(&occupied, &held), ResourceSlots::new());
        let part = ResourceSlots::from_pairs([("cpu", "1")]).unwrap();
        assert_eq!(without(&occupied, &part), ResourceSlots::from_pairs([("cpu", "1"), ("mem", "1g")]).unwrap());
    }
}
