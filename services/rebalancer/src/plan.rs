//! Stake allocation plans: from an operator set's current stake, caps, attribute caps and
//! performance, the moves that bring it within policy, explained, minimal and bounded.
//!
//! The policy follows Lido's operator set strategy:
//! - no operator above its cap (a share of the set's total, or its own lower cap);
//! - no attribute group (a jurisdiction, a cloud provider, a client…) above its cap;
//! - stake moves away from operators over their cap and from underperformers (whose cap is
//!   lowered to `underperformer_cap_bps`), towards operators in good standing with room, the
//!   smallest first (Lido's `MinFirstAllocationStrategy`), so new and small operators grow;
//! - only what the caps require moves, and never more than the run's limit;
//! - the same input always gives the same plan (ties broken by operator id).
//!
//! When the constraints cannot all be met (not enough room anywhere, or the run's limit), the
//! plan says which are left unmet and by how much.
//!
//! Amounts are integers in the set's unit (validators for Lido, magnitude for EigenLayer).

use std::collections::{BTreeMap, BTreeSet};

/// Basis points in one whole.
pub const BPS: u128 = 10_000;

/// One operator of the set.
#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    pub id: String,
    pub stake: u128,
    /// A cap of its own, below the set's, if any.
    pub cap: Option<u128>,
    /// Attribute name → value (`jurisdiction` → `DE`).
    pub attributes: BTreeMap<String, String>,
    /// Performance score, 0..1 (higher is better), if supplied.
    pub performance: Option<f64>,
}

impl Operator {
    pub fn new(id: impl Into<String>, stake: u128) -> Self {
        Self {
            id: id.into(),
            stake,
            cap: None,
            attributes: BTreeMap::new(),
            performance: None,
        }
    }

    pub fn with_attribute(mut self, name: &str, value: &str) -> Self {
        self.attributes.insert(name.to_owned(), value.to_owned());
        self
    }

    pub fn with_performance(mut self, score: f64) -> Self {
        self.performance = Some(score);
        self
    }

    pub fn with_cap(mut self, cap: u128) -> Self {
        self.cap = Some(cap);
        self
    }
}

/// The rules a plan must satisfy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Largest share of the total one operator may hold, in basis points.
    pub operator_cap_bps: u32,
    /// Largest share one group of an attribute may hold, by attribute, in basis points.
    pub attribute_caps_bps: BTreeMap<String, u32>,
    /// Operators scoring below this are underperformers.
    pub min_performance: Option<f64>,
    /// An underperformer's cap, in basis points of the total (0: move all its stake away).
    pub underperformer_cap_bps: u32,
    /// Most stake one run may move.
    pub max_move: Option<u128>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            operator_cap_bps: 100,
            attribute_caps_bps: BTreeMap::new(),
            min_performance: None,
            underperformer_cap_bps: 0,
            max_move: None,
        }
    }
}

/// One operator's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub operator: String,
    pub from: u128,
    pub to: u128,
    pub reason: String,
}

/// A plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Target stake per operator, in input order.
    pub target: Vec<(String, u128)>,
    /// Operators whose stake changes, donors first, then receivers, by id.
    pub moves: Vec<Move>,
    /// Stake moved (taken from donors = given to receivers).
    pub moved: u128,
    /// Constraints left unmet, with how far off they stay.
    pub unmet: Vec<String>,
    /// Whether the removals are the proven least (at most two capped attributes).
    pub exact: bool,
}

/// Why stake is taken from an operator; the order is the priority under a movement limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cause {
    OperatorCap,
    Underperformer,
    Group,
}

struct Work<'a> {
    ops: &'a [Operator],
    total: u128,
    /// Effective cap per operator.
    caps: Vec<u128>,
    /// Group indexes of each operator.
    member_of: Vec<Vec<usize>>,
    group_keys: Vec<(String, String)>,
    group_caps: Vec<u128>,
    group_members: Vec<Vec<usize>>,
    underperformer: Vec<bool>,
}

fn share(total: u128, bps: u32) -> u128 {
    total.saturating_mul(u128::from(bps)) / BPS
}

impl<'a> Work<'a> {
    fn new(ops: &'a [Operator], policy: &Policy) -> Self {
        let total: u128 = ops.iter().map(|o| o.stake).sum();
        let operator_cap = share(total, policy.operator_cap_bps);
        let underperformer: Vec<bool> = ops
            .iter()
            .map(|o| match (policy.min_performance, o.performance) {
                (Some(min), Some(p)) => p < min,
                _ => false,
            })
            .collect();
        let caps = ops
            .iter()
            .zip(&underperformer)
            .map(|(o, &under)| {
                let mut c = operator_cap.min(o.cap.unwrap_or(u128::MAX));
                if under {
                    c = c.min(share(total, policy.underperformer_cap_bps));
                }
                c
            })
            .collect();
        let mut groups: BTreeMap<(String, String), (u128, Vec<usize>)> = BTreeMap::new();
        for (i, o) in ops.iter().enumerate() {
            for (attr, bps) in &policy.attribute_caps_bps {
                if let Some(value) = o.attributes.get(attr) {
                    groups
                        .entry((attr.clone(), value.clone()))
                        .or_insert_with(|| (share(total, *bps), Vec::new()))
                        .1
                        .push(i);
                }
            }
        }
        let group_keys: Vec<(String, String)> = groups.keys().cloned().collect();
        let group_caps: Vec<u128> = groups.values().map(|(c, _)| *c).collect();
        let group_members: Vec<Vec<usize>> = groups.values().map(|(_, m)| m.clone()).collect();
        let mut member_of = vec![Vec::new(); ops.len()];
        for (g, members) in group_members.iter().enumerate() {
            for &i in members {
                member_of[i].push(g);
            }
        }
        Self {
            ops,
            total,
            caps,
            member_of,
            group_keys,
            group_caps,
            group_members,
            underperformer,
        }
    }

    fn group_load(&self, x: &[u128], g: usize) -> u128 {
        self.group_members[g].iter().map(|&i| x[i]).sum()
    }

    fn pct(&self, amount: u128) -> String {
        if self.total == 0 {
            return "0%".to_owned();
        }
        format!("{:.2}%", amount as f64 * 100.0 / self.total as f64)
    }

    fn group_name(&self, g: usize) -> String {
        let (a, v) = &self.group_keys[g];
        format!("{a}={v}")
    }
}

/// Plans the moves that bring `operators` within `policy`. See the module docs.
pub fn plan(operators: &[Operator], policy: &Policy) -> Plan {
    let w = Work::new(operators, policy);
    let n = operators.len();
    let mut x: Vec<u128> = operators.iter().map(|o| o.stake).collect();
    // Removals, each with its cause, in the order they were decided.
    let mut taken: Vec<(usize, u128, Cause)> = Vec::new();

    // With at most two capped attributes the least movement is found exactly (a min-cost
    // flow); with more, by the greedy below, which respects every cap it can but may move
    // more than the least.
    let exact = if policy.attribute_caps_bps.len() <= 2 {
        exact_targets(&w, policy)
    } else {
        None
    };
    match &exact {
        Some(fx) => {
            for i in 0..n {
                if fx[i] < x[i] {
                    let removed = x[i] - fx[i];
                    let forced = x[i].saturating_sub(w.caps[i]).min(removed);
                    if forced > 0 {
                        let cause = if w.underperformer[i]
                            && w.caps[i] < share(w.total, policy.operator_cap_bps)
                        {
                            Cause::Underperformer
                        } else {
                            Cause::OperatorCap
                        };
                        taken.push((i, forced, cause));
                    }
                    if removed > forced {
                        taken.push((i, removed - forced, Cause::Group));
                    }
                    x[i] = fx[i];
                }
            }
        }
        None => greedy_removals(&w, policy, &mut x, &mut taken),
    }

    let mut unmet = Vec::new();

    // 3. The run's limit: keep the removals by priority (operator caps, then underperformers,
    //    then groups; larger first), give the rest back.
    let wanted: u128 = taken.iter().map(|t| t.1).sum();
    let mut trimmed = false;
    if let Some(limit) = policy.max_move {
        if wanted > limit {
            trimmed = true;
            let mut order: Vec<usize> = (0..taken.len()).collect();
            order.sort_by(|&a, &b| {
                let (ia, ra, ca) = taken[a];
                let (ib, rb, cb) = taken[b];
                ca.cmp(&cb)
                    .then(rb.cmp(&ra))
                    .then(operators[ia].id.cmp(&operators[ib].id))
            });
            let mut budget = limit;
            let mut kept = vec![0u128; taken.len()];
            for k in order {
                let take = taken[k].1.min(budget);
                kept[k] = take;
                budget -= take;
            }
            for (k, (i, r, _)) in taken.iter_mut().enumerate() {
                x[*i] += *r - kept[k];
                *r = kept[k];
            }
            unmet.push(format!(
                "the run may move {limit} but the caps require {wanted}: {} stays to move in a later run",
                wanted - limit
            ));
        }
    }

    // 4. Place what was taken: operators in good standing with room under their cap and their
    //    groups' caps, not donors of this run, smallest first.
    let donors: BTreeSet<usize> = taken.iter().filter(|t| t.1 > 0).map(|t| t.0).collect();
    let to_place: u128 = taken.iter().map(|t| t.1).sum();
    let mut placed = place(&w, &mut x, &donors, to_place);
    if let (true, false, Some(fx)) = (placed < to_place, trimmed, &exact) {
        // MinFirst within the group caps found no room the exact solution has (it frees group
        // room by the choice of donors): take the exact solution's receivers as they are.
        for i in 0..n {
            if !donors.contains(&i) {
                x[i] = fx[i];
            }
        }
        placed = to_place;
    }
    if placed < to_place {
        // Not enough room anywhere: give the rest back to the donors, the least pressing
        // removals first (groups, then underperformers, then operator caps), by id.
        let mut back = to_place - placed;
        let mut order: Vec<usize> = (0..taken.len()).collect();
        order.sort_by(|&a, &b| {
            taken[b]
                .2
                .cmp(&taken[a].2)
                .then(operators[taken[a].0].id.cmp(&operators[taken[b].0].id))
        });
        for k in order {
            if back == 0 {
                break;
            }
            let (i, r, _) = &mut taken[k];
            let give = (*r).min(back);
            x[*i] += give;
            *r -= give;
            back -= give;
        }
        unmet.push(format!(
            "no room for {} more: every operator in good standing is at its cap or in a group at its cap",
            to_place - placed
        ));
    }

    // What is still over a cap after all this.
    for i in 0..n {
        if x[i] > w.caps[i] {
            unmet.push(format!(
                "operator {} stays at {} ({}), above its cap of {} ({})",
                operators[i].id,
                x[i],
                w.pct(x[i]),
                w.caps[i],
                w.pct(w.caps[i])
            ));
        }
    }
    for g in 0..w.group_caps.len() {
        let load = w.group_load(&x, g);
        if load > w.group_caps[g] {
            unmet.push(format!(
                "group {} stays at {} ({}), above its cap of {} ({})",
                w.group_name(g),
                load,
                w.pct(load),
                w.group_caps[g],
                w.pct(w.group_caps[g])
            ));
        }
    }

    // The moves, explained.
    let mut reasons: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for (i, r, cause) in &taken {
        if *r == 0 {
            continue;
        }
        let why = match cause {
            Cause::OperatorCap => format!(
                "above the operator cap: {} of {} ({} > {})",
                operators[*i].stake,
                w.total,
                w.pct(operators[*i].stake),
                w.pct(w.caps[*i])
            ),
            Cause::Underperformer => format!(
                "underperforming (score {:.3} below {:.3}): capped at {}",
                operators[*i].performance.unwrap_or(0.0),
                policy.min_performance.unwrap_or(0.0),
                w.pct(w.caps[*i])
            ),
            Cause::Group => {
                let groups: Vec<String> = w.member_of[*i]
                    .iter()
                    .filter(|&&g| {
                        let before: u128 =
                            w.group_members[g].iter().map(|&m| operators[m].stake).sum();
                        before > w.group_caps[g]
                    })
                    .map(|&g| {
                        format!(
                            "{} above its cap of {}",
                            w.group_name(g),
                            w.pct(w.group_caps[g])
                        )
                    })
                    .collect();
                format!("in {}", groups.join(" and "))
            }
        };
        reasons.entry(*i).or_default().insert(why);
    }
    let mut moves: Vec<Move> = Vec::new();
    let mut receivers: Vec<Move> = Vec::new();
    for i in 0..n {
        let from = operators[i].stake;
        if x[i] == from {
            continue;
        }
        if x[i] < from {
            let why = reasons
                .get(&i)
                .map(|r| r.iter().cloned().collect::<Vec<_>>().join("; "))
                .unwrap_or_default();
            moves.push(Move {
                operator: operators[i].id.clone(),
                from,
                to: x[i],
                reason: why,
            });
        } else {
            receivers.push(Move {
                operator: operators[i].id.clone(),
                from,
                to: x[i],
                reason: format!(
                    "room under its cap ({} of {}); smallest operators are filled first",
                    w.pct(x[i]),
                    w.pct(w.caps[i])
                ),
            });
        }
    }
    moves.sort_by(|a, b| a.operator.cmp(&b.operator));
    receivers.sort_by(|a, b| a.operator.cmp(&b.operator));
    let moved = moves.iter().map(|m| m.from - m.to).sum();
    moves.extend(receivers);
    Plan {
        target: operators
            .iter()
            .zip(&x)
            .map(|(o, &t)| (o.id.clone(), t))
            .collect(),
        moves,
        moved,
        unmet,
        exact: exact.is_some(),
    }
}

/// Removals without the exact solver: operators above their own cap give the excess, then
/// groups above their cap lose stake from the members that relieve the most over-cap groups at
/// once, then the weakest performers, then the largest, then by id.
fn greedy_removals(
    w: &Work<'_>,
    policy: &Policy,
    x: &mut [u128],
    taken: &mut Vec<(usize, u128, Cause)>,
) {
    let operators = w.ops;
    for (i, xi) in x.iter_mut().enumerate() {
        if *xi > w.caps[i] {
            let cause =
                if w.underperformer[i] && w.caps[i] < share(w.total, policy.operator_cap_bps) {
                    Cause::Underperformer
                } else {
                    Cause::OperatorCap
                };
            taken.push((i, *xi - w.caps[i], cause));
            *xi = w.caps[i];
        }
    }

    loop {
        let over: Vec<usize> = (0..w.group_caps.len())
            .filter(|&g| w.group_load(x, g) > w.group_caps[g])
            .collect();
        if over.is_empty() {
            break;
        }
        let over_set: BTreeSet<usize> = over.iter().copied().collect();
        let mut best: Option<(usize, usize)> = None; // (operator, coverage)
        for &g in &over {
            for &i in &w.group_members[g] {
                if x[i] == 0 {
                    continue;
                }
                let coverage = w.member_of[i]
                    .iter()
                    .filter(|g| over_set.contains(g))
                    .count();
                let better = match best {
                    None => true,
                    Some((j, cov)) => {
                        let pi = operators[i].performance.unwrap_or(f64::INFINITY);
                        let pj = operators[j].performance.unwrap_or(f64::INFINITY);
                        (
                            coverage,
                            std::cmp::Reverse(OrdF64(pi)),
                            x[i],
                            std::cmp::Reverse(&operators[i].id),
                        ) > (
                            cov,
                            std::cmp::Reverse(OrdF64(pj)),
                            x[j],
                            std::cmp::Reverse(&operators[j].id),
                        )
                    }
                };
                if better {
                    best = Some((i, coverage));
                }
            }
        }
        let Some((i, _)) = best else { break };
        let relief = w.member_of[i]
            .iter()
            .filter(|g| over_set.contains(g))
            .map(|&g| w.group_load(x, g) - w.group_caps[g])
            .min()
            .unwrap_or(0)
            .min(x[i]);
        if relief == 0 {
            break;
        }
        x[i] -= relief;
        taken.push((i, relief, Cause::Group));
    }
}

/// Gives up to `amount` to eligible operators, smallest first (Lido's MinFirst), within each
/// operator's cap and each group's cap. Returns what was placed.
fn place(w: &Work<'_>, x: &mut [u128], donors: &BTreeSet<usize>, amount: u128) -> u128 {
    let n = x.len();
    let mut left = amount;
    let mut full_groups: BTreeSet<usize> = BTreeSet::new();
    // Each round either places everything or fills at least one group.
    for _ in 0..=w.group_caps.len() {
        if left == 0 {
            break;
        }
        let slack: Vec<u128> = (0..w.group_caps.len())
            .map(|g| w.group_caps[g].saturating_sub(w.group_load(x, g)))
            .collect();
        // In id order, so that ties (which MinFirst breaks by position) do not depend on the
        // order the operators came in.
        let mut eligible: Vec<usize> = (0..n)
            .filter(|&i| !donors.contains(&i) && !w.underperformer[i])
            .filter(|&i| w.member_of[i].iter().all(|g| !full_groups.contains(g)))
            .collect();
        eligible.sort_by(|&a, &b| w.ops[a].id.cmp(&w.ops[b].id));
        let capacity: Vec<u128> = eligible
            .iter()
            .map(|&i| {
                let group_room = w.member_of[i]
                    .iter()
                    .map(|&g| slack[g])
                    .min()
                    .unwrap_or(u128::MAX);
                w.caps[i].min(x[i].saturating_add(group_room))
            })
            .collect();
        let values: Vec<u128> = eligible.iter().map(|&i| x[i]).collect();
        let (alloc, given) = min_first(&values, &capacity, left);
        // A group that this would overfill takes only its slack, shared the same way; the
        // others' allocations stand.
        let over: Option<usize> = slack.iter().enumerate().find_map(|(g, &room)| {
            let add: u128 = eligible
                .iter()
                .zip(&alloc)
                .filter(|(i, _)| w.member_of[**i].contains(&g))
                .map(|(_, a)| *a)
                .sum();
            (add > room).then_some(g)
        });
        match over {
            None => {
                for (k, &i) in eligible.iter().enumerate() {
                    x[i] += alloc[k];
                }
                left -= given;
                break;
            }
            Some(g) => {
                let members: Vec<usize> = eligible
                    .iter()
                    .copied()
                    .filter(|i| w.member_of[*i].contains(&g))
                    .collect();
                let values: Vec<u128> = members.iter().map(|&i| x[i]).collect();
                let caps: Vec<u128> = members
                    .iter()
                    .map(|&i| {
                        let room = w.member_of[i]
                            .iter()
                            .map(|&h| slack[h])
                            .min()
                            .unwrap_or(u128::MAX);
                        w.caps[i].min(x[i].saturating_add(room))
                    })
                    .collect();
                let (a, given) = min_first(&values, &caps, slack[g].min(left));
                for (k, &i) in members.iter().enumerate() {
                    x[i] += a[k];
                }
                left -= given;
                full_groups.insert(g);
            }
        }
    }
    amount - left
}

/// The allocation with the least movement within every cap, if any: see [`crate::flow`].
fn exact_targets(w: &Work<'_>, policy: &Policy) -> Option<Vec<u128>> {
    use crate::flow::Network;
    let n = w.ops.len();
    let attrs: Vec<&String> = policy.attribute_caps_bps.keys().collect();
    let total = i128::try_from(w.total).ok()?;
    let group_of = |i: usize, layer: usize| -> Option<usize> {
        let attr = attrs.get(layer)?;
        let value = w.ops[i].attributes.get(*attr)?;
        w.group_keys
            .iter()
            .position(|(a, v)| a == *attr && v == value)
    };
    // Nodes: source, sink, one per group of each layer plus an uncapped one per layer, operators.
    let layer_nodes = |layer: usize| -> Vec<usize> {
        match attrs.get(layer) {
            Some(a) => (0..w.group_keys.len())
                .filter(|&g| &w.group_keys[g].0 == *a)
                .collect(),
            None => Vec::new(),
        }
    };
    let (first, second) = (layer_nodes(0), layer_nodes(1));
    let (s, t) = (0usize, 1usize);
    let a_base = 2;
    let a_free = a_base + first.len();
    let op_base = a_free + 1;
    let b_base = op_base + n;
    let b_free = b_base + second.len();
    let mut net = Network::new(b_free + 1);
    for (k, &g) in first.iter().enumerate() {
        net.edge(s, a_base + k, i128::try_from(w.group_caps[g]).ok()?, 0);
    }
    net.edge(s, a_free, total, 0);
    for (k, &g) in second.iter().enumerate() {
        net.edge(b_base + k, t, i128::try_from(w.group_caps[g]).ok()?, 0);
    }
    net.edge(b_free, t, total, 0);
    // Operators in id order, so that among equally good allocations the one found does not
    // depend on the order the operators came in.
    let mut by_id: Vec<usize> = (0..n).collect();
    by_id.sort_by(|&a, &b| w.ops[a].id.cmp(&w.ops[b].id));
    let mut edges = vec![((0, 0), 0, (0, 0), 0); n];
    for (slot, &i) in by_id.iter().enumerate() {
        let node = op_base + slot;
        let from = match group_of(i, 0) {
            Some(g) => a_base + first.iter().position(|&x| x == g)?,
            None => a_free,
        };
        let to = match group_of(i, 1) {
            Some(g) => b_base + second.iter().position(|&x| x == g)?,
            None => b_free,
        };
        let cap = w.caps[i].min(w.total);
        let keep = w.ops[i].stake.min(cap);
        let gain = if w.underperformer[i] { 0 } else { cap - keep };
        let (keep, gain) = (i128::try_from(keep).ok()?, i128::try_from(gain).ok()?);
        let ke = net.edge(from, node, keep, -1);
        let ge = net.edge(from, node, gain, 0);
        net.edge(node, to, total, 0);
        edges[i] = (ke, keep, ge, gain);
    }
    let order: Vec<usize> = std::iter::once(s)
        .chain(a_base..=a_free)
        .chain(op_base..b_base)
        .chain(b_base..=b_free)
        .chain(std::iter::once(t))
        .collect();
    if net.min_cost_flow(s, t, total, &order) < total {
        return None;
    }
    edges
        .iter()
        .map(|&(ke, keep, ge, gain)| u128::try_from(net.flow(ke, keep) + net.flow(ge, gain)).ok())
        .collect()
}

/// Lido's MinFirstAllocationStrategy: allocates `amount` to the buckets with the least,
/// raising the lowest to the next level first, never past a bucket's capacity; among equal
/// buckets the split is even, the remainder going to the first ones. Returns each bucket's
/// allocation and the total allocated (less than `amount` when every bucket is full).
/// O(n log n).
pub fn min_first(values: &[u128], capacities: &[u128], amount: u128) -> (Vec<u128>, u128) {
    let n = values.len();
    let mut alloc = vec![0u128; n];
    let mut order: Vec<usize> = (0..n).filter(|&i| capacities[i] > values[i]).collect();
    order.sort_by(|&a, &b| values[a].cmp(&values[b]).then(a.cmp(&b)));
    let mut left = amount;
    // The tied set at the current level, in index order, and the next not yet in it.
    let mut tied: Vec<usize> = Vec::new();
    let mut next = 0;
    let mut level = match order.first() {
        Some(&i) => values[i],
        None => return (alloc, 0),
    };
    while left > 0 {
        while next < order.len() && values[order[next]] == level {
            tied.push(order[next]);
            next += 1;
        }
        tied.sort_unstable();
        if tied.is_empty() {
            match order.get(next) {
                Some(&i) => {
                    level = values[i];
                    continue;
                }
                None => break,
            }
        }
        let next_value = order.get(next).map(|&i| values[i]).unwrap_or(u128::MAX);
        let cap = tied
            .iter()
            .map(|&i| capacities[i])
            .min()
            .unwrap_or(u128::MAX);
        let upper = next_value.min(cap);
        let k = tied.len() as u128;
        let step = upper - level;
        if left >= step.saturating_mul(k) && upper != u128::MAX {
            for &i in &tied {
                alloc[i] += step;
            }
            left -= step * k;
            level = upper;
            tied.retain(|&i| capacities[i] > upper);
        } else {
            let q = left / k;
            let r = (left % k) as usize;
            for (j, &i) in tied.iter().enumerate() {
                alloc[i] += q + u128::from(j < r);
            }
            left = 0;
        }
    }
    (alloc, amount - left)
}

/// f64 ordered, NaN last.
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrdF64(f64);

impl Eq for OrdF64 {}

impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_first_matches_lidos_reference_example() {
        // Lido's MinFirstAllocationStrategy: buckets [9998, 70, 0], capacities
        // [10000, 101, 100], 101 to allocate -> [9998, 86, 85].
        let (alloc, given) = min_first(&[9998, 70, 0], &[10000, 101, 100], 101);
        assert_eq!(given, 101);
        assert_eq!(alloc, vec![0, 16, 85]);
    }

    #[test]
    fn min_first_respects_capacities_and_splits_remainders_to_the_first() {
        assert_eq!(min_first(&[0, 0], &[5, 100], 20), (vec![5, 15], 20));
        assert_eq!(min_first(&[0, 0], &[5, 100], 7), (vec![4, 3], 7));
        assert_eq!(
            min_first(&[3, 3, 3], &[100, 100, 100], 10),
            (vec![4, 3, 3], 10)
        );
        assert_eq!(min_first(&[0, 0], &[2, 3], 10), (vec![2, 3], 5));
        assert_eq!(min_first(&[], &[], 10), (vec![], 0));
    }

    #[test]
    fn an_operator_over_its_cap_gives_the_excess_to_the_smallest() {
        let ops = vec![
            Operator::new("a", 50),
            Operator::new("b", 30),
            Operator::new("c", 15),
            Operator::new("d", 5),
        ];
        let policy = Policy {
            operator_cap_bps: 4000,
            ..Policy::default()
        };
        let p = plan(&ops, &policy);
        assert_eq!(p.moved, 10);
        assert!(p.unmet.is_empty(), "{:?}", p.unmet);
        assert_eq!(
            p.target,
            vec![
                ("a".into(), 40),
                ("b".into(), 30),
                ("c".into(), 15),
                ("d".into(), 15)
            ]
        );
        assert!(
            p.moves[0].reason.contains("above the operator cap"),
            "{:?}",
            p.moves
        );
    }
}
