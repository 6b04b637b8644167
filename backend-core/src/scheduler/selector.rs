//! The agent selectors: [`Concentrated`], [`Dispersed`] and [`RoundRobin`].

use super::AgentSelector;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Where a selector's search starts in a partition of agents ordered by free capacity (accelerator slots first,
/// then `cpu`, then `mem`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preference {
    /// The agent with the least free capacity that still fits (best fit: packs agents, leaves others empty).
    LeastFree,
    /// The agent with the most free capacity (spreads load).
    MostFree,
    /// The next agent that fits after the one chosen last, in agent-id order.
    Rotating,
}

/// Packs: each kernel goes to the serving agent with the least free resources that still holds it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Concentrated;

impl AgentSelector for Concentrated {
    fn name(&self) -> &'static str {
        "concentrated"
    }
    fn preference(&self) -> Preference {
        Preference::LeastFree
    }
}

/// Spreads load: each kernel goes to the serving agent with the most free resources, so kernels of one session may
/// land on different agents.
#[derive(Debug, Default, Clone, Copy)]
pub struct Dispersed;

impl AgentSelector for Dispersed {
    fn name(&self) -> &'static str {
        "dispersed"
    }
    fn preference(&self) -> Preference {
        Preference::MostFree
    }
}

/// Rotates: each kernel goes to the first agent that holds it after the one chosen last. The position is kept in
/// the selector, so it carries over from one pass to the next.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl AgentSelector for RoundRobin {
    fn name(&self) -> &'static str {
        "roundrobin"
    }
    fn preference(&self) -> Preference {
        Preference::Rotating
    }
    fn rotation_start(&self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.next.load(Ordering::Relaxed) % n
        }
    }
    fn rotated(&self, position: usize) {
        self.next.store(position.wrapping_add(1), Ordering::Relaxed);
    }
}
