//! The least movement when at most two attributes are capped, exactly: a min-cost flow.
//!
//! Network: source → group of the first capped attribute (capacity: the group's cap) →
//! operator (two parallel edges: the stake it keeps, cost −1, up to min(stake, cap); and what
//! it may gain, cost 0, up to its cap, none for underperformers) → group of the second capped
//! attribute → sink (the group's cap). Operators without an attribute pass through an
//! uncapped group. A flow of the whole stake is an allocation within every cap; the cheapest
//! keeps the most stake in place, so moves the least. With three or more capped attributes
//! no such network exists (the problem is a covering problem), and the planner's greedy is
//! used instead.
//!
//! Primal-dual: Dijkstra on reduced costs sets the potentials, then a Dinic blocking flow on
//! the edges of reduced cost zero; a phase per distinct path cost, of which there are few.

use std::collections::{BinaryHeap, VecDeque};

#[derive(Clone, Copy)]
struct Edge {
    to: usize,
    rev: usize,
    cap: i128,
    cost: i64,
}

pub(crate) struct Network {
    g: Vec<Vec<Edge>>,
}

impl Network {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            g: vec![Vec::new(); n],
        }
    }

    /// Adds an edge; returns its (node, index) to read its flow back.
    pub(crate) fn edge(&mut self, from: usize, to: usize, cap: i128, cost: i64) -> (usize, usize) {
        let rf = self.g[to].len() + usize::from(from == to);
        let rt = self.g[from].len();
        self.g[from].push(Edge {
            to,
            rev: rf,
            cap,
            cost,
        });
        self.g[to].push(Edge {
            to: from,
            rev: rt,
            cap: 0,
            cost: -cost,
        });
        (from, rt)
    }

    /// Flow on an edge added with capacity `cap`.
    pub(crate) fn flow(&self, e: (usize, usize), cap: i128) -> i128 {
        cap - self.g[e.0][e.1].cap
    }

    /// Sends up to `want` from `s` to `t` at least cost; returns what was sent. `order` is a
    /// topological order of the (acyclic) initial network, for the first potentials.
    pub(crate) fn min_cost_flow(
        &mut self,
        s: usize,
        t: usize,
        want: i128,
        order: &[usize],
    ) -> i128 {
        let n = self.g.len();
        const INF: i64 = i64::MAX / 4;
        // Initial potentials: shortest distances in the acyclic network (negative costs).
        let mut h = vec![INF; n];
        h[s] = 0;
        for &u in order {
            if h[u] == INF {
                continue;
            }
            for e in &self.g[u] {
                if e.cap > 0 && h[u] + e.cost < h[e.to] {
                    h[e.to] = h[u] + e.cost;
                }
            }
        }
        for v in h.iter_mut() {
            if *v == INF {
                *v = 0;
            }
        }
        let mut sent: i128 = 0;
        while sent < want {
            // Dijkstra on reduced costs.
            let mut dist = vec![INF; n];
            dist[s] = 0;
            let mut heap = BinaryHeap::new();
            heap.push(std::cmp::Reverse((0i64, s)));
            while let Some(std::cmp::Reverse((d, u))) = heap.pop() {
                if d > dist[u] {
                    continue;
                }
                for e in &self.g[u] {
                    if e.cap <= 0 {
                        continue;
                    }
                    let nd = d + e.cost + h[u] - h[e.to];
                    if nd < dist[e.to] {
                        dist[e.to] = nd;
                        heap.push(std::cmp::Reverse((nd, e.to)));
                    }
                }
            }
            if dist[t] == INF {
                break;
            }
            for v in 0..n {
                h[v] += if dist[v] == INF { dist[t] } else { dist[v] };
            }
            // Blocking flows on the admissible edges (reduced cost 0) until none is left.
            loop {
                let level = self.levels(s, &h);
                if level[t] < 0 {
                    break;
                }
                let mut it = vec![0usize; n];
                let mut pushed_any = false;
                loop {
                    let f = self.dfs(s, t, want - sent, &level, &mut it, &h);
                    if f == 0 {
                        break;
                    }
                    sent += f;
                    pushed_any = true;
                    if sent >= want {
                        break;
                    }
                }
                if !pushed_any || sent >= want {
                    break;
                }
            }
        }
        sent
    }

    fn admissible(&self, u: usize, e: &Edge, h: &[i64]) -> bool {
        e.cap > 0 && e.cost + h[u] - h[e.to] == 0
    }

    fn levels(&self, s: usize, h: &[i64]) -> Vec<i64> {
        let mut level = vec![-1i64; self.g.len()];
        level[s] = 0;
        let mut q = VecDeque::from([s]);
        while let Some(u) = q.pop_front() {
            for e in &self.g[u] {
                if self.admissible(u, e, h) && level[e.to] < 0 {
                    level[e.to] = level[u] + 1;
                    q.push_back(e.to);
                }
            }
        }
        level
    }

    fn dfs(
        &mut self,
        u: usize,
        t: usize,
        f: i128,
        level: &[i64],
        it: &mut [usize],
        h: &[i64],
    ) -> i128 {
        if u == t {
            return f;
        }
        while it[u] < self.g[u].len() {
            let e = self.g[u][it[u]];
            if self.admissible(u, &e, h) && level[e.to] == level[u] + 1 {
                let d = self.dfs(e.to, t, f.min(e.cap), level, it, h);
                if d > 0 {
                    self.g[u][it[u]].cap -= d;
                    self.g[e.to][e.rev].cap += d;
                    return d;
                }
            }
            it[u] += 1;
        }
        0
    }
}
