//! The allocation planner's properties, on random instances small enough to check against a
//! brute-force search of every allocation.

use std::collections::BTreeMap;

use proptest::prelude::*;
use steward_rebalancer::plan::{plan, Operator, Plan, Policy, BPS};

/// Every allocation of the total over the operators (underperformers may not gain), checked
/// against the caps; returns the least movement, or None when no allocation satisfies them.
fn brute_force(ops: &[Operator], policy: &Policy) -> Option<u128> {
    let total: u128 = ops.iter().map(|o| o.stake).sum();
    let share = |bps: u32| total * u128::from(bps) / BPS;
    let caps: Vec<u128> = ops
        .iter()
        .map(|o| {
            let mut c = share(policy.operator_cap_bps).min(o.cap.unwrap_or(u128::MAX));
            if let (Some(min), Some(p)) = (policy.min_performance, o.performance) {
                if p < min {
                    c = c.min(share(policy.underperformer_cap_bps)).min(o.stake);
                }
            }
            c
        })
        .collect();
    struct Search<'a> {
        ops: &'a [Operator],
        caps: Vec<u128>,
        policy: &'a Policy,
        total: u128,
        best: Option<u128>,
        x: Vec<u128>,
    }
    impl Search<'_> {
        fn rec(&mut self, i: usize, left: u128) {
            if i == self.ops.len() - 1 {
                if left > self.caps[i] {
                    return;
                }
                self.x[i] = left;
                // Group caps.
                let mut loads: BTreeMap<(&str, &str), u128> = BTreeMap::new();
                for (k, o) in self.ops.iter().enumerate() {
                    for attr in self.policy.attribute_caps_bps.keys() {
                        if let Some(v) = o.attributes.get(attr) {
                            *loads.entry((attr.as_str(), v.as_str())).or_default() += self.x[k];
                        }
                    }
                }
                for ((attr, _), load) in loads {
                    if load > self.total * u128::from(self.policy.attribute_caps_bps[attr]) / BPS {
                        return;
                    }
                }
                let moved: u128 = self
                    .ops
                    .iter()
                    .zip(self.x.iter())
                    .map(|(o, &t)| o.stake.saturating_sub(t))
                    .sum();
                if self.best.is_none_or(|b| moved < b) {
                    self.best = Some(moved);
                }
                return;
            }
            for v in 0..=left.min(self.caps[i]) {
                self.x[i] = v;
                self.rec(i + 1, left - v);
            }
        }
    }
    if ops.is_empty() {
        return Some(0);
    }
    let mut search = Search {
        ops,
        caps,
        policy,
        total,
        best: None,
        x: vec![0; ops.len()],
    };
    search.rec(0, total);
    search.best
}

fn satisfies(ops: &[Operator], policy: &Policy, p: &Plan) -> bool {
    let total: u128 = ops.iter().map(|o| o.stake).sum();
    let share = |bps: u32| total * u128::from(bps) / BPS;
    let mut loads: BTreeMap<(String, String), u128> = BTreeMap::new();
    for (o, (_, t)) in ops.iter().zip(&p.target) {
        let mut cap = share(policy.operator_cap_bps).min(o.cap.unwrap_or(u128::MAX));
        if let (Some(min), Some(perf)) = (policy.min_performance, o.performance) {
            if perf < min {
                cap = cap.min(share(policy.underperformer_cap_bps));
            }
        }
        if *t > cap {
            return false;
        }
        for attr in policy.attribute_caps_bps.keys() {
            if let Some(v) = o.attributes.get(attr) {
                *loads.entry((attr.clone(), v.clone())).or_default() += t;
            }
        }
    }
    loads
        .iter()
        .all(|((a, _), l)| *l <= share(policy.attribute_caps_bps[a]))
}

fn instance() -> impl Strategy<Value = (Vec<Operator>, Policy)> {
    let op = (
        0u128..=8,
        prop::option::of(prop::sample::select(vec!["A", "B", "C"])),
        prop::option::of(prop::sample::select(vec!["X", "Y"])),
        prop::option::of(prop::sample::select(vec![0.2, 0.9])),
    );
    (
        prop::collection::vec(op, 2..=5),
        2000u32..=7000,
        prop::option::of(3000u32..=8000),
        prop::option::of(4000u32..=9000),
        any::<bool>(),
    )
        .prop_map(|(raw, cap, jur, cloud, perf_policy)| {
            let ops = raw
                .into_iter()
                .enumerate()
                .map(|(i, (stake, j, c, perf))| {
                    let mut o = Operator::new(format!("op{i}"), stake);
                    if let Some(j) = j {
                        o = o.with_attribute("jurisdiction", j);
                    }
                    if let Some(c) = c {
                        o = o.with_attribute("cloud", c);
                    }
                    if let Some(p) = perf {
                        o = o.with_performance(p);
                    }
                    o
                })
                .collect();
            let mut attribute_caps_bps = BTreeMap::new();
            if let Some(j) = jur {
                attribute_caps_bps.insert("jurisdiction".to_owned(), j);
            }
            if let Some(c) = cloud {
                attribute_caps_bps.insert("cloud".to_owned(), c);
            }
            let policy = Policy {
                operator_cap_bps: cap,
                attribute_caps_bps,
                min_performance: perf_policy.then_some(0.5),
                underperformer_cap_bps: 0,
                max_move: None,
            };
            (ops, policy)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn stake_is_conserved_and_plans_are_deterministic((ops, policy) in instance()) {
        let p = plan(&ops, &policy);
        let before: u128 = ops.iter().map(|o| o.stake).sum();
        let after: u128 = p.target.iter().map(|(_, t)| t).sum();
        prop_assert_eq!(before, after);
        prop_assert_eq!(&p, &plan(&ops, &policy));
        // Input order does not matter either.
        let mut reversed = ops.clone();
        reversed.reverse();
        let r = plan(&reversed, &policy);
        let mut a = p.target.clone();
        let mut b = r.target.clone();
        a.sort();
        b.sort();
        prop_assert_eq!(a, b);
        let taken: u128 = p.moves.iter().filter(|m| m.to < m.from).map(|m| m.from - m.to).sum();
        let given: u128 = p.moves.iter().filter(|m| m.to > m.from).map(|m| m.to - m.from).sum();
        prop_assert_eq!(taken, p.moved);
        prop_assert_eq!(given, p.moved);
    }

    #[test]
    fn caps_hold_whenever_they_can_and_the_movement_is_the_least_possible((ops, policy) in instance()) {
        let p = plan(&ops, &policy);
        match brute_force(&ops, &policy) {
            Some(optimum) => {
                prop_assert!(p.unmet.is_empty(), "feasible, yet: {:?}", p.unmet);
                prop_assert!(satisfies(&ops, &policy, &p), "{:?}", p.target);
                prop_assert_eq!(p.moved, optimum, "moves {:?}", p.moves);
            }
            None => {
                prop_assert!(!p.unmet.is_empty(), "infeasible, but the plan says nothing: {:?}", p.target);
            }
        }
    }

    #[test]
    fn a_run_never_moves_more_than_its_limit((ops, mut policy) in instance(), limit in 0u128..=6) {
        policy.max_move = Some(limit);
        let p = plan(&ops, &policy);
        prop_assert!(p.moved <= limit);
        let unlimited = plan(&ops, &Policy { max_move: None, ..policy.clone() });
        if unlimited.moved > limit {
            prop_assert!(p.unmet.iter().any(|u| u.contains("later run")), "{:?}", p.unmet);
        }
    }
}

#[test]
fn lido_reference_example_allocates_new_stake_min_first() {
    // MinFirstAllocationStrategy's documented case: buckets [9998, 70, 0] with capacities
    // [10000, 101, 100] and 101 to allocate end as [9998, 86, 85].
    let (alloc, given) =
        steward_rebalancer::plan::min_first(&[9998, 70, 0], &[10000, 101, 100], 101);
    let after: Vec<u128> = [9998u128, 70, 0]
        .iter()
        .zip(&alloc)
        .map(|(v, a)| v + a)
        .collect();
    assert_eq!(given, 101);
    assert_eq!(after, vec![9998, 86, 85]);
}

#[test]
fn groups_over_their_cap_lose_stake_to_other_groups() {
    // Two operators in DE hold 60% of the stake; jurisdictions are capped at 40%.
    let ops = vec![
        Operator::new("a", 30).with_attribute("jurisdiction", "DE"),
        Operator::new("b", 30).with_attribute("jurisdiction", "DE"),
        Operator::new("c", 25).with_attribute("jurisdiction", "FR"),
        Operator::new("d", 15).with_attribute("jurisdiction", "US"),
    ];
    let policy = Policy {
        operator_cap_bps: 5000,
        attribute_caps_bps: BTreeMap::from([("jurisdiction".to_owned(), 4000)]),
        ..Policy::default()
    };
    let p = plan(&ops, &policy);
    assert_eq!(p.moved, 20);
    assert!(p.unmet.is_empty(), "{:?}", p.unmet);
    let t: BTreeMap<_, _> = p.target.iter().cloned().collect();
    assert_eq!(t["a"] + t["b"], 40);
    assert_eq!(t["c"] + t["d"], 60);
    assert!(t["c"] <= 40 && t["d"] <= 40);
    let donor = p.moves.iter().find(|m| m.to < m.from).unwrap();
    assert!(
        donor
            .reason
            .contains("jurisdiction=DE above its cap of 40.00%"),
        "{}",
        donor.reason
    );
    // The smallest (d) grows first.
    assert_eq!(t["d"], 30);
}

#[test]
fn underperformers_are_emptied_and_never_receive() {
    let ops = vec![
        Operator::new("good", 40).with_performance(0.99),
        Operator::new("slow", 40).with_performance(0.2),
        Operator::new("new", 0).with_performance(0.95),
        Operator::new("small", 20),
    ];
    let policy = Policy {
        operator_cap_bps: 5000,
        min_performance: Some(0.9),
        underperformer_cap_bps: 0,
        ..Policy::default()
    };
    let p = plan(&ops, &policy);
    let t: BTreeMap<_, _> = p.target.iter().cloned().collect();
    assert_eq!(t["slow"], 0);
    assert_eq!(p.moved, 40);
    // New and small operators grow first: new to 20, then new and small together.
    assert_eq!(t["new"], 30);
    assert_eq!(t["small"], 30);
    assert_eq!(t["good"], 40);
    let slow = p.moves.iter().find(|m| m.operator == "slow").unwrap();
    assert!(slow.reason.contains("underperforming"), "{}", slow.reason);
}

#[test]
fn infeasible_sets_say_what_stays_unmet() {
    // Two operators, a 30% cap each: 100 cannot fit in 60.
    let ops = vec![Operator::new("a", 70), Operator::new("b", 30)];
    let policy = Policy {
        operator_cap_bps: 3000,
        ..Policy::default()
    };
    let p = plan(&ops, &policy);
    assert_eq!(p.target, vec![("a".into(), 70), ("b".into(), 30)]);
    assert_eq!(p.moved, 0);
    assert!(
        p.unmet.iter().any(|u| u.starts_with("no room for 40 more")),
        "{:?}",
        p.unmet
    );
    assert!(
        p.unmet
            .iter()
            .any(|u| u.contains("operator a stays at 70 (70.00%), above its cap of 30 (30.00%)")),
        "{:?}",
        p.unmet
    );
}
