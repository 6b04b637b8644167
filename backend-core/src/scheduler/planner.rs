//! The planner behind [`super::plan`]: fixed-point slot vectors, agent partitions ordered by free capacity, owner
//! predicates, priority levels, DRF re-picking and reservations.

use super::{
    AgentSelector, Blocked, OwnerUsage, PendingSession, Plan, PlanInput, PlanOptions, Preference, QuotaScope,
    SequenceContext, Sequencer,
};
use crate::ids::AccessKey;
use crate::model::ImageInfo;
use crate::runtime::resolve_image;
use crate::slots::ResourceSlots;
use crate::store::Placement;
use rust_decimal::Decimal;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};

/// Fixed-point digits after the decimal point.
const DIGITS: u32 = 6;
/// Failed demands remembered per partition.
const MEMO: usize = 8;

/// `d` in 10⁻⁶ units, rounded up for demands and down for capacities.
fn fixed(d: Decimal, round_up: bool) -> i128 {
    let (m, s) = (d.mantissa(), d.scale());
    if s <= DIGITS {
        m * 10i128.pow(DIGITS - s)
    } else {
        let div = 10i128.pow(s - DIGITS);
        let q = m.div_euclid(div);
        if round_up && m.rem_euclid(div) != 0 {
            q + 1
        } else {
            q
        }
    }
}

/// Slot names seen in the pass, each with a dense index.
#[derive(Default)]
struct Dims(Vec<String>);

impl Dims {
    fn index(&mut self, name: &str) -> usize {
        match self.0.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.0.push(name.to_owned());
                self.0.len() - 1
            }
        }
    }
    fn find(&self, name: &str) -> Option<usize> {
        self.0.iter().position(|n| n == name)
    }
    fn dense(&self, slots: &ResourceSlots, round_up: bool) -> Vec<i128> {
        let mut v = vec![0; self.0.len()];
        for (k, amount) in slots.iter() {
            if let Some(i) = self.find(k) {
                v[i] = fixed(amount, round_up);
            }
        }
        v
    }
    /// Accelerators first, then `cpu`, then `mem`, then the rest, for the free-capacity order.
    fn rank(&self, i: usize) -> (u8, &str) {
        let name = self.0[i].as_str();
        let class = match name {
            "cpu" => 1,
            "mem" => 2,
            n if n.contains('.') => 0,
            _ => 3,
        };
        (class, name)
    }
}

fn bit(i: usize) -> u128 {
    1u128 << i.min(127)
}

fn mask_of(v: &[i128]) -> u128 {
    v.iter().enumerate().filter(|(_, x)| **x > 0).fold(0, |m, (i, _)| m | bit(i))
}

fn le(a: &[i128], b: &[i128]) -> bool {
    a.iter().zip(b).all(|(x, y)| x <= y)
}

type Key = [i128; 3];

/// Agents sharing a scaling group, architecture, image set and slot kinds, ordered by free capacity.
struct Partition {
    scaling_group: String,
    architecture: String,
    images: usize,
    mask: u128,
    key_dims: [Option<usize>; 3],
    tree: BTreeSet<(Key, u32)>,
    members: Vec<u32>,
    reserved: usize,
    failed: Vec<Vec<i128>>,
    failed_reserve: Vec<Vec<i128>>,
}

impl Partition {
    fn key(&self, free: &[i128]) -> Key {
        self.key_dims.map(|d| d.map_or(0, |d| free[d]))
    }
    fn known_failure(memo: &[Vec<i128>], want: &[i128]) -> bool {
        memo.iter().any(|f| le(f, want))
    }
    fn remember(memo: &mut Vec<Vec<i128>>, want: &[i128]) {
        if memo.len() >= MEMO {
            memo.remove(0);
        }
        memo.push(want.to_vec());
    }
}

struct Agents {
    d: usize,
    cap: Vec<i128>,
    free: Vec<i128>,
    part: Vec<u32>,
    reserved: Vec<bool>,
}

impl Agents {
    fn free(&self, a: u32) -> &[i128] {
        &self.free[a as usize * self.d..(a as usize + 1) * self.d]
    }
    fn cap(&self, a: u32) -> &[i128] {
        &self.cap[a as usize * self.d..(a as usize + 1) * self.d]
    }
    fn fits(&self, a: u32, want: &[i128]) -> bool {
        le(want, self.free(a))
    }
}

struct Owner {
    occupied: Vec<i128>,
    sessions: u32,
    max_sessions: Option<u32>,
    limits: Vec<(usize, i128, String, Decimal)>,
    share: f64,
}

/// A group or domain with a quota, as the pass tracks it.
struct Scope {
    key: QuotaScope,
    occupied: Vec<i128>,
    limits: Vec<(usize, i128, String, Decimal)>,
}

struct Session {
    kernels: Vec<Vec<i128>>,
    masks: Vec<u128>,
    total: Vec<i128>,
    owner: usize,
    /// Its group's and its domain's quota, when they have one.
    scopes: [Option<usize>; 2],
    compat: usize,
    designated: Option<Option<u32>>,
}

enum Outcome {
    Placed,
    Limited(Blocked),
    NoRoom,
}

struct Planner<'a> {
    selector: &'a dyn AgentSelector,
    agents: Agents,
    parts: Vec<Partition>,
    compat: Vec<Vec<usize>>,
    owners: Vec<Owner>,
    scopes: Vec<Scope>,
    cap_total: Vec<i128>,
    snapshots: Vec<super::AgentSnapshot>,
    plan: Plan,
}

impl Planner<'_> {
    fn share(&self, occupied: &[i128]) -> f64 {
        occupied
            .iter()
            .zip(&self.cap_total)
            .filter(|(_, c)| **c > 0)
            .map(|(o, c)| *o as f64 / *c as f64)
            .fold(0.0, f64::max)
    }

    fn take(&mut self, a: u32, want: &[i128]) {
        let p = self.agents.part[a as usize] as usize;
        let part = &mut self.parts[p];
        part.tree.remove(&(part.key(self.agents.free(a)), a));
        let d = self.agents.d;
        for (f, w) in self.agents.free[a as usize * d..(a as usize + 1) * d].iter_mut().zip(want) {
            *f -= w;
        }
        part.tree.insert((part.key(self.agents.free(a)), a));
    }

    fn give_back(&mut self, a: u32, want: &[i128]) {
        let p = self.agents.part[a as usize] as usize;
        let part = &mut self.parts[p];
        part.tree.remove(&(part.key(self.agents.free(a)), a));
        let d = self.agents.d;
        for (f, w) in self.agents.free[a as usize * d..(a as usize + 1) * d].iter_mut().zip(want) {
            *f += w;
        }
        part.tree.insert((part.key(self.agents.free(a)), a));
    }

    /// An agent of partition `p` for `want`, by the selector's preference.
    fn search(&mut self, p: usize, want: &[i128], remember: bool) -> Option<u32> {
        let part = &self.parts[p];
        if Partition::known_failure(&part.failed, want) {
            return None;
        }
        let w0 = part.key_dims[0].map_or(0, |d| want[d]);
        let found = match self.selector.preference() {
            Preference::LeastFree => {
                part.tree.range(([w0, i128::MIN, i128::MIN], 0)..).map(|(_, a)| *a).find(|a| self.agents.fits(*a, want))
            }
            Preference::MostFree => part
                .tree
                .iter()
                .rev()
                .take_while(|(k, _)| k[0] >= w0)
                .map(|(_, a)| *a)
                .find(|a| self.agents.fits(*a, want)),
            Preference::Rotating => {
                if part.tree.last().is_none_or(|(k, _)| k[0] < w0) {
                    None
                } else {
                    let n = part.members.len();
                    let start = self.selector.rotation_start(n);
                    (0..n).map(|i| (start + i) % n).find_map(|pos| {
                        let a = part.members[pos];
                        (!self.agents.reserved[a as usize] && self.agents.fits(a, want)).then(|| {
                            self.selector.rotated(pos);
                            a
                        })
                    })
                }
            }
        };
        if found.is_none() && remember {
            Partition::remember(&mut self.parts[p].failed, want);
        }
        found
    }

    /// Places every kernel of `s` or none.
    fn place(&mut self, s: &Session, session: &PendingSession) -> Outcome {
        let owner = &self.owners[s.owner];
        if let Some(limit) = owner.max_sessions {
            if owner.sessions >= limit {
                return Outcome::Limited(Blocked::ConcurrencyLimit { limit });
            }
        }
        for (d, limit, name, original) in &owner.limits {
            if owner.occupied[*d] + s.total[*d] > *limit {
                return Outcome::Limited(Blocked::SlotLimit { slot: name.clone(), limit: *original });
            }
        }
        for scope in s.scopes.iter().flatten() {
            let scope = &self.scopes[*scope];
            for (d, limit, name, original) in &scope.limits {
                if scope.occupied[*d] + s.total[*d] > *limit {
                    return Outcome::Limited(Blocked::ScopeLimit {
                        scope: scope.key.clone(),
                        slot: name.clone(),
                        used: Decimal::from_i128_with_scale(scope.occupied[*d], DIGITS),
                        limit: *original,
                    });
                }
            }
        }
        let mut chosen: Vec<u32> = Vec::with_capacity(s.kernels.len());
        for (i, want) in s.kernels.iter().enumerate() {
            let agent = match s.designated {
                Some(Some(a)) => {
                    let ok = !self.agents.reserved[a as usize]
                        && self.compat[s.compat].contains(&(self.agents.part[a as usize] as usize))
                        && self.agents.fits(a, want);
                    ok.then_some(a)
                }
                Some(None) => None,
                None => {
                    let mut found = None;
                    for j in 0..self.compat[s.compat].len() {
                        let p = self.compat[s.compat][j];
                        if self.parts[p].mask & s.masks[i] != s.masks[i] {
                            continue;
                        }
                        found = self.search(p, want, chosen.is_empty());
                        if found.is_some() {
                            break;
                        }
                    }
                    found
                }
            };
            match agent {
                Some(a) => {
                    self.take(a, want);
                    chosen.push(a);
                }
                None => {
                    for (a, want) in chosen.iter().zip(&s.kernels) {
                        self.give_back(*a, want);
                    }
                    return Outcome::NoRoom;
                }
            }
        }
        for scope in s.scopes.iter().flatten() {
            for (o, t) in self.scopes[*scope].occupied.iter_mut().zip(&s.total) {
                *o += t;
            }
        }
        let owner = &mut self.owners[s.owner];
        for (o, t) in owner.occupied.iter_mut().zip(&s.total) {
            *o += t;
        }
        owner.sessions += 1;
        let occupied = std::mem::take(&mut owner.occupied);
        let share = self.share(&occupied);
        let owner = &mut self.owners[s.owner];
        owner.occupied = occupied;
        owner.share = share;
        let placements = chosen
            .iter()
            .zip(&session.kernels)
            .map(|(a, (kernel_id, _))| Placement {
                kernel_id: *kernel_id,
                agent_id: self.snapshots[*a as usize].id.clone(),
            })
            .collect();
        self.plan.placed.push((session.id, placements));
        Outcome::Placed
    }

    fn unreserve(&mut self, a: u32) {
        let p = self.agents.part[a as usize] as usize;
        self.agents.reserved[a as usize] = false;
        let part = &mut self.parts[p];
        part.reserved -= 1;
        part.tree.insert((part.key(self.agents.free(a)), a));
    }

    /// Reserves, for each kernel, the serving agent with the most free capacity whose capacity could hold it.
    fn reserve(&mut self, s: &Session, session: &PendingSession) -> bool {
        let mut chosen: Vec<u32> = Vec::with_capacity(s.kernels.len());
        for (i, want) in s.kernels.iter().enumerate() {
            let mut found = None;
            if let Some(designated) = s.designated {
                found = designated.filter(|a| {
                    !self.agents.reserved[*a as usize]
                        && self.compat[s.compat].contains(&(self.agents.part[*a as usize] as usize))
                        && le(want, self.agents.cap(*a))
                });
            } else {
                for &p in &self.compat[s.compat] {
                    let part = &self.parts[p];
                    if part.mask & s.masks[i] != s.masks[i] || Partition::known_failure(&part.failed_reserve, want) {
                        continue;
                    }
                    found = part.tree.iter().rev().map(|(_, a)| *a).find(|a| le(want, self.agents.cap(*a)));
                    if found.is_some() {
                        break;
                    }
                    if chosen.is_empty() {
                        Partition::remember(&mut self.parts[p].failed_reserve, want);
                    }
                }
            }
            let Some(a) = found else {
                for a in chosen {
                    self.unreserve(a);
                }
                return false;
            };
            let p = self.agents.part[a as usize] as usize;
            let part = &mut self.parts[p];
            part.tree.remove(&(part.key(self.agents.free(a)), a));
            part.reserved += 1;
            self.agents.reserved[a as usize] = true;
            chosen.push(a);
        }
        let ids = chosen.iter().map(|a| self.snapshots[*a as usize].id.clone()).collect();
        self.plan.reservations.push((session.id, ids));
        true
    }

    fn no_room_reason(&self, s: &Session) -> Blocked {
        let parts = &self.compat[s.compat];
        if parts.is_empty() || matches!(s.designated, Some(None)) {
            Blocked::NoServingAgent
        } else if parts.iter().any(|p| self.parts[*p].reserved > 0) {
            Blocked::Reserved
        } else {
            Blocked::NoCapacity
        }
    }
}

pub(super) fn run(
    sequencer: &dyn Sequencer,
    selector: &dyn AgentSelector,
    input: PlanInput,
    options: &PlanOptions,
) -> Plan {
    let PlanInput { mut pending, agents: snapshots, owners: owner_input, scopes: scope_input, now } = input;
    let snapshots: Vec<_> = snapshots.into_iter().filter(|a| a.takes_sessions()).collect();

    // Order: the sequencer's, then priority levels and aged sessions first, kept stable.
    let mut capacity = ResourceSlots::new();
    for a in &snapshots {
        capacity = capacity + a.available.clone();
    }
    let occupied: HashMap<AccessKey, ResourceSlots> =
        owner_input.iter().map(|(k, u)| (k.clone(), u.occupied.clone())).collect();
    sequencer.sequence(&mut pending, &SequenceContext { capacity: &capacity, occupied: &occupied });
    let aged = |s: &PendingSession| now - s.created_at >= options.starvation_threshold;
    let mut order: Vec<u32> = (0..pending.len() as u32).collect();
    order.sort_by_key(|i| {
        let s = &pending[*i as usize];
        let is_aged = aged(s);
        (Reverse(s.priority), !is_aged, if is_aged { Some(s.created_at) } else { None })
    });

    // Slot names and fixed-point vectors.
    let mut dims = Dims::default();
    for a in &snapshots {
        for name in a.available.names().chain(a.occupied.names()) {
            dims.index(name);
        }
    }
    for s in &pending {
        for (_, want) in &s.kernels {
            for name in want.names() {
                dims.index(name);
            }
        }
    }
    for u in owner_input.values() {
        for name in u.occupied.names().chain(u.limits.total_resource_slots.iter().flat_map(|l| l.names())) {
            dims.index(name);
        }
    }
    for u in scope_input.values().filter(|u| u.total_resource_slots.names().next().is_some()) {
        for name in u.occupied.names().chain(u.total_resource_slots.names()) {
            dims.index(name);
        }
    }
    let d = dims.0.len();
    let mut ranked: Vec<usize> = (0..d).collect();
    ranked.sort_by(|a, b| dims.rank(*a).cmp(&dims.rank(*b)));

    // Agents and partitions.
    let mut agents = Agents {
        d,
        cap: Vec::with_capacity(snapshots.len() * d),
        free: Vec::with_capacity(snapshots.len() * d),
        part: Vec::with_capacity(snapshots.len()),
        reserved: vec![false; snapshots.len()],
    };
    let mut image_sets: HashMap<String, usize> = HashMap::new();
    let mut image_reps: Vec<&[ImageInfo]> = Vec::new();
    let mut part_index: HashMap<(&str, &str, usize, u128), usize> = HashMap::new();
    let mut parts: Vec<Partition> = Vec::new();
    let mut cap_total = vec![0i128; d];
    for (i, a) in snapshots.iter().enumerate() {
        let cap = dims.dense(&a.available, false);
        let used = dims.dense(&a.occupied, true);
        let free: Vec<i128> = cap.iter().zip(&used).map(|(c, u)| (c - u).max(0)).collect();
        for (t, c) in cap_total.iter_mut().zip(&cap) {
            *t += c;
        }
        let mut image_key = String::new();
        for img in &a.images {
            image_key.push_str(&img.name);
            for alias in &img.aliases {
                image_key.push('\u{1}');
                image_key.push_str(alias);
            }
            image_key.push('\0');
        }
        let next = image_sets.len();
        let images = *image_sets.entry(image_key).or_insert_with(|| {
            image_reps.push(&a.images);
            next
        });
        let mask = mask_of(&cap);
        let key = (a.scaling_group.as_str(), a.architecture.as_str(), images, mask);
        let p = *part_index.entry(key).or_insert_with(|| {
            let mut key_dims = [None; 3];
            for (slot, dim) in key_dims.iter_mut().zip(ranked.iter().filter(|i| mask & bit(**i) != 0)) {
                *slot = Some(*dim);
            }
            parts.push(Partition {
                scaling_group: a.scaling_group.clone(),
                architecture: a.architecture.clone(),
                images,
                mask,
                key_dims,
                tree: BTreeSet::new(),
                members: Vec::new(),
                reserved: 0,
                failed: Vec::new(),
                failed_reserve: Vec::new(),
            });
            parts.len() - 1
        });
        let part = &mut parts[p];
        part.tree.insert((part.key(&free), i as u32));
        part.members.push(i as u32);
        agents.cap.extend_from_slice(&cap);
        agents.free.extend_from_slice(&free);
        agents.part.push(p as u32);
    }
    for part in &mut parts {
        part.members.sort_by(|a, b| snapshots[*a as usize].id.cmp(&snapshots[*b as usize].id));
    }
    let by_id: HashMap<&str, u32> = if pending.iter().any(|s| s.designated_agent.is_some()) {
        snapshots.iter().enumerate().map(|(i, a)| (a.id.0.as_str(), i as u32)).collect()
    } else {
        HashMap::new()
    };

    // Owners.
    let mut owner_ids: HashMap<AccessKey, usize> = HashMap::new();
    let mut owners: Vec<Owner> = Vec::new();
    let empty = OwnerUsage::default();
    let mut owner_of = |key: &AccessKey, owners: &mut Vec<Owner>| -> usize {
        if let Some(i) = owner_ids.get(key) {
            return *i;
        }
        let usage = owner_input.get(key).unwrap_or(&empty);
        let limits = usage
            .limits
            .total_resource_slots
            .iter()
            .flat_map(|l| l.iter())
            .filter_map(|(name, v)| dims.find(name).map(|i| (i, fixed(v, false), name.to_owned(), v)))
            .collect();
        owners.push(Owner {
            occupied: dims.dense(&usage.occupied, true),
            sessions: usage.sessions,
            max_sessions: usage.limits.max_concurrent_sessions,
            limits,
            share: 0.0,
        });
        owner_ids.insert(key.clone(), owners.len() - 1);
        owners.len() - 1
    };

    // Groups and domains with a quota (the others need no tracking).
    let mut scope_ids: HashMap<QuotaScope, Option<usize>> = HashMap::new();
    let mut scopes: Vec<Scope> = Vec::new();
    let mut scope_of = |key: QuotaScope, scopes: &mut Vec<Scope>| -> Option<usize> {
        if let Some(i) = scope_ids.get(&key) {
            return *i;
        }
        let usage = scope_input.get(&key).filter(|u| u.total_resource_slots.names().next().is_some());
        let i = usage.map(|usage| {
            let limits = usage
                .total_resource_slots
                .iter()
                .filter_map(|(name, v)| dims.find(name).map(|i| (i, fixed(v, false), name.to_owned(), v)))
                .collect();
            scopes.push(Scope { key: key.clone(), occupied: dims.dense(&usage.occupied, true), limits });
            scopes.len() - 1
        });
        scope_ids.insert(key, i);
        i
    };

    // Sessions, with the partitions that serve them (same scaling group, architecture, image).
    let mut compat_index: HashMap<(&str, &str, Option<&str>), usize> = HashMap::new();
    let mut compat: Vec<Vec<usize>> = Vec::new();
    let mut sessions: Vec<Session> = Vec::with_capacity(pending.len());
    for s in &pending {
        let kernels: Vec<Vec<i128>> = s.kernels.iter().map(|(_, w)| dims.dense(w, true)).collect();
        let masks = kernels.iter().map(|k| mask_of(k)).collect();
        let mut total = vec![0i128; d];
        for k in &kernels {
            for (t, x) in total.iter_mut().zip(k) {
                *t += x;
            }
        }
        let key = (s.scaling_group.as_str(), s.image.as_str(), s.architecture.as_deref());
        let next = compat.len();
        let c = *compat_index.entry(key).or_insert_with(|| {
            let mut list: Vec<usize> = (0..parts.len())
                .filter(|p| {
                    let part = &parts[*p];
                    part.scaling_group == s.scaling_group
                        && s.architecture.as_deref().is_none_or(|a| a == part.architecture)
                        && resolve_image(image_reps[part.images], &s.image).is_some()
                })
                .collect();
            list.sort_by_key(|p| parts[*p].mask.count_ones());
            compat.push(list);
            next
        });
        let designated = s.designated_agent.as_ref().map(|id| by_id.get(id.0.as_str()).copied());
        let owner = owner_of(&s.access_key, &mut owners);
        let quota = if scope_input.is_empty() {
            [None, None]
        } else {
            [scope_of(QuotaScope::group_of(s), &mut scopes), scope_of(QuotaScope::domain_of(s), &mut scopes)]
        };
        sessions.push(Session { kernels, masks, total, owner, scopes: quota, compat: c, designated });
    }

    let mut planner = Planner {
        selector,
        agents,
        parts,
        compat,
        owners,
        scopes,
        cap_total,
        snapshots: Vec::new(),
        plan: Plan::default(),
    };
    for i in 0..planner.owners.len() {
        let occupied = std::mem::take(&mut planner.owners[i].occupied);
        planner.owners[i].share = planner.share(&occupied);
        planner.owners[i].occupied = occupied;
    }
    planner.snapshots = snapshots;

    // Priority levels.
    let mut start = 0;
    while start < order.len() {
        let priority = pending[order[start] as usize].priority;
        let end = start + order[start..].iter().take_while(|i| pending[**i as usize].priority == priority).count();
        let level = &order[start..end];
        let mut waiting: Vec<u32> = Vec::new();
        let try_one = |planner: &mut Planner<'_>, i: u32, waiting: &mut Vec<u32>| -> bool {
            let (s, p) = (&sessions[i as usize], &pending[i as usize]);
            match planner.place(s, p) {
                Outcome::Placed => true,
                Outcome::Limited(reason) => {
                    planner.plan.blocked.push((p.id, reason));
                    false
                }
                Outcome::NoRoom => {
                    let reason = planner.no_room_reason(s);
                    planner.plan.blocked.push((p.id, reason));
                    if aged(p) {
                        planner.reserve(s, p);
                    } else {
                        waiting.push(i);
                    }
                    false
                }
            }
        };
        let fresh = level.iter().position(|i| !aged(&pending[*i as usize])).unwrap_or(level.len());
        for &i in &level[..fresh] {
            try_one(&mut planner, i, &mut waiting);
        }
        let rest = &level[fresh..];
        if sequencer.rebalances_by_share() {
            // DRF: always serve the owner with the lowest dominant share next.
            let mut queues: HashMap<usize, VecDeque<u32>> = HashMap::new();
            for &i in rest {
                queues.entry(sessions[i as usize].owner).or_default().push_back(i);
            }
            let mut heap: BinaryHeap<Reverse<(u64, u32, usize)>> =
                queues.iter().map(|(o, q)| Reverse((planner.owners[*o].share.to_bits(), q[0], *o))).collect();
            while let Some(Reverse((_, _, o))) = heap.pop() {
                let queue = queues.get_mut(&o).expect("queued owner");
                while let Some(i) = queue.pop_front() {
                    if try_one(&mut planner, i, &mut waiting) {
                        if let Some(next) = queue.front() {
                            heap.push(Reverse((planner.owners[o].share.to_bits(), *next, o)));
                        }
                        break;
                    }
                }
            }
        } else {
            for &i in rest {
                try_one(&mut planner, i, &mut waiting);
            }
        }
        if end < order.len() {
            for i in waiting {
                planner.reserve(&sessions[i as usize], &pending[i as usize]);
            }
        }
        start = end;
    }
    planner.plan
}
