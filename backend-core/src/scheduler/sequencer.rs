//! The sequencers: [`Fifo`], [`Lifo`] and [`Drf`], each putting higher priority first.

use super::{PendingSession, SequenceContext, Sequencer};
use std::cmp::Reverse;

/// First in, first out, with higher priority first.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fifo;

impl Sequencer for Fifo {
    fn name(&self) -> &'static str {
        "fifo"
    }
    fn sequence(&self, pending: &mut [PendingSession], _ctx: &SequenceContext<'_>) {
        pending.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.created_at.cmp(&b.created_at)));
    }
}

/// Last in, first out, with higher priority first: the newest session is tried first.
#[derive(Debug, Default, Clone, Copy)]
pub struct Lifo;

impl Sequencer for Lifo {
    fn name(&self) -> &'static str {
        "lifo"
    }
    fn sequence(&self, pending: &mut [PendingSession], _ctx: &SequenceContext<'_>) {
        pending.sort_by(|a, b| b.priority.cmp(&a.priority).then(b.created_at.cmp(&a.created_at)));
    }
}

/// Dominant resource fairness across owners (access keys), with higher priority first: the owner whose dominant
/// share of the capacity (its largest share over slot kinds of what it occupies) is lowest goes first, and the
/// planner re-evaluates the shares after every placement; one owner's sessions go oldest first.
#[derive(Debug, Default, Clone, Copy)]
pub struct Drf;

impl Sequencer for Drf {
    fn name(&self) -> &'static str {
        "drf"
    }
    fn sequence(&self, pending: &mut [PendingSession], ctx: &SequenceContext<'_>) {
        pending.sort_by_cached_key(|s| (Reverse(s.priority), ctx.dominant_share(&s.access_key), s.created_at));
    }
    fn rebalances_by_share(&self) -> bool {
        true
    }
}
