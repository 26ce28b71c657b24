//! Memory planning: one arena for every value a node computes.
//!
//! The plan is made over the final node order (the schedule the backends run). Each
//! node-computed value lives from the node that defines it to the last node that
//! reads it, both inclusive ([`Lifetime`]); a value nobody reads still lives at its
//! defining node (the kernel writes it). Graph inputs, graph outputs and constants are
//! not in the arena: they live in caller buffers and static data.
//!
//! **In-place results** ([`plan_with`], opt-in). A backend may say, per node, which
//! operands its kernel can overwrite with the node's first result (an elementwise
//! kernel that reads element `i` before writing element `i` and never reads an
//! element after writing it). The planner grants it only when it is legal: the
//! operand and the result are both arena values of the same byte size, and this node
//! is the operand's last use. The result then shares the operand's buffer: the two
//! form one *alias group*, packed as one buffer whose lifetime runs from the first
//! member's definition to the last member's last use (a chain of in-place nodes is one
//! group). [`plan`] grants nothing.
//!
//! **Invariants of a [`MemPlan`]** (checked by the tests over random graphs):
//! - every offset is a multiple of [`ALIGN`], and `offset + size <= arena_bytes`;
//! - two values whose lifetimes share a node never share a byte, except a result and
//!   the operand it was granted to reuse ([`MemPlan::shares`]): those have the same
//!   offset and size, and the node defining the result is the operand's last use;
//! - `lower_bound <= arena_bytes`, where `lower_bound` is the largest sum, over one
//!   node, of the (aligned) sizes of the values live there, an aliased pair counted
//!   once — no plan with the same aliasing can do better. (With no aliasing, as from
//!   [`plan`], this is the plain largest sum of live bytes.)
//!
//! Packing ([`pack`]) is greedy: values are placed one at a time at the lowest
//! aligned offset that is free over their whole lifetime. Two orders are tried —
//! largest first, and by start of lifetime — and the smaller arena is kept.

use qc_ir::{Graph, NodeId, ValueDef, ValueId};

use crate::{Error, Result};

/// Alignment of every buffer in the arena, in bytes (a cache line; enough for any
/// SIMD load the backends emit).
pub const ALIGN: usize = 64;

/// When a buffer is live: the node indices of its definition and of its last use,
/// both inclusive (`first <= last`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime {
    pub first: usize,
    pub last: usize,
}

impl Lifetime {
    pub fn overlaps(&self, o: &Lifetime) -> bool {
        self.first <= o.last && o.first <= self.last
    }
}

/// A buffer to place: its lifetime and its size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub life: Lifetime,
    pub size: usize,
}

/// Where each request went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packing {
    /// `offsets[i]` is the byte offset of request `i` (a multiple of [`ALIGN`]).
    pub offsets: Vec<usize>,
    /// Bytes of arena the packing needs.
    pub arena_bytes: usize,
    /// The largest sum of aligned sizes live at one node.
    pub lower_bound: usize,
}

/// The arena plan of a graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemPlan {
    /// Per value (indexed by `ValueId`): its arena offset, or `None` for values not in
    /// the arena (graph inputs, graph outputs, constants).
    pub offsets: Vec<Option<usize>>,
    /// Per value: its lifetime, for the values in the arena.
    pub lifetimes: Vec<Option<Lifetime>>,
    /// Per value: its size in bytes (0 for values not in the arena).
    pub sizes: Vec<usize>,
    /// Per value: the operand whose buffer it reuses in place (see [`plan_with`]);
    /// `None` everywhere for [`plan`].
    pub shares: Vec<Option<ValueId>>,
    pub arena_bytes: usize,
    pub lower_bound: usize,
}

impl MemPlan {
    pub fn offset(&self, v: ValueId) -> Option<usize> {
        self.offsets.get(v.index()).copied().flatten()
    }
}

fn align_up(n: usize) -> Option<usize> {
    n.checked_add(ALIGN - 1).map(|x| x / ALIGN * ALIGN)
}

fn err(msg: String) -> Error {
    Error::Pass {
        pass: "memplan",
        msg,
    }
}

/// The lifetimes and sizes of the node-computed values of `g` that are not graph
/// outputs: `(value, request)` in value order.
pub fn requests(g: &Graph) -> Result<Vec<(ValueId, Request)>> {
    let n_values = g.values.len();
    let mut last_use: Vec<Option<usize>> = vec![None; n_values];
    for (i, node) in g.nodes.iter().enumerate() {
        for &v in &node.inputs {
            let slot = last_use
                .get_mut(v.index())
                .ok_or_else(|| err(format!("node n{i} uses unknown value {v}")))?;
            *slot = Some(slot.map_or(i, |l: usize| l.max(i)));
        }
    }
    let mut is_output = vec![false; n_values];
    for p in &g.outputs {
        if let Some(o) = is_output.get_mut(p.value.index()) {
            *o = true;
        }
    }
    let mut out = Vec::new();
    for (vi, val) in g.values.iter().enumerate() {
        let ValueDef::Node { node, .. } = val.def else {
            continue;
        };
        if is_output[vi] {
            continue;
        }
        let first = node.index();
        let last = last_use[vi].unwrap_or(first).max(first);
        let size = val
            .ty
            .size_bytes()
            .map_err(|e| err(format!("value %{vi}: {e}")))?;
        out.push((
            ValueId::from_index(vi),
            Request {
                life: Lifetime { first, last },
                size,
            },
        ));
    }
    Ok(out)
}

/// Plan the arena of `g` (see the module docs), with no in-place results.
pub fn plan(g: &Graph) -> Result<MemPlan> {
    plan_with(g, &|_, _| Vec::new())
}

/// Plan the arena of `g`, letting node results reuse operand buffers where
/// `in_place(g, node)` allows it and the planner finds it legal (module docs).
///
/// `in_place` returns the operand indices whose buffer the kernel of `node` may
/// overwrite with its first result, in order of preference; the first legal one is
/// taken. An index out of range, or an operand that is not legal, is skipped.
pub fn plan_with(g: &Graph, in_place: &dyn Fn(&Graph, NodeId) -> Vec<usize>) -> Result<MemPlan> {
    let reqs = requests(g)?;
    let n = g.values.len();
    // Request index of each arena value.
    let mut slot: Vec<Option<usize>> = vec![None; n];
    for (k, (v, _)) in reqs.iter().enumerate() {
        slot[v.index()] = Some(k);
    }
    let mut last_use: Vec<Option<usize>> = vec![None; n];
    for (i, node) in g.nodes.iter().enumerate() {
        for &v in &node.inputs {
            if let Some(l) = last_use.get_mut(v.index()) {
                *l = Some(i);
            }
        }
    }
    // Alias groups: `root[k]` is the request whose buffer request `k` ends up in.
    let mut root: Vec<usize> = (0..reqs.len()).collect();
    let mut shares: Vec<Option<ValueId>> = vec![None; n];
    let mut taken = vec![false; n];
    for (id, node) in g.iter_nodes() {
        let Some(&y) = node.outputs.first() else {
            continue;
        };
        let Some(ky) = slot.get(y.index()).copied().flatten() else {
            continue;
        };
        for i in in_place(g, id) {
            let Some(&x) = node.inputs.get(i) else {
                continue;
            };
            let Some(kx) = slot.get(x.index()).copied().flatten() else {
                continue;
            };
            let legal = !taken[x.index()]
                && x != y
                && last_use[x.index()] == Some(id.index())
                && reqs[kx].1.size == reqs[ky].1.size;
            if legal {
                taken[x.index()] = true;
                shares[y.index()] = Some(x);
                // `x` was defined earlier, so its root is final already.
                root[ky] = root[kx];
                break;
            }
        }
    }
    // One request per group: the root's size, the union of the members' lifetimes
    // (contiguous: each member starts where the previous one is last used).
    let mut group_of: Vec<usize> = vec![usize::MAX; reqs.len()];
    let mut groups: Vec<Request> = Vec::new();
    for k in 0..reqs.len() {
        if root[k] == k {
            group_of[k] = groups.len();
            groups.push(reqs[k].1);
        }
    }
    for k in 0..reqs.len() {
        let gi = group_of[root[k]];
        group_of[k] = gi;
        let life = reqs[k].1.life;
        let grp = &mut groups[gi];
        grp.life.first = grp.life.first.min(life.first);
        grp.life.last = grp.life.last.max(life.last);
    }
    let packing = pack(&groups)?;
    let mut offsets = vec![None; n];
    let mut lifetimes = vec![None; n];
    let mut sizes = vec![0; n];
    for (k, (v, r)) in reqs.iter().enumerate() {
        offsets[v.index()] = Some(packing.offsets[group_of[k]]);
        lifetimes[v.index()] = Some(r.life);
        sizes[v.index()] = r.size;
    }
    Ok(MemPlan {
        offsets,
        lifetimes,
        sizes,
        shares,
        arena_bytes: packing.arena_bytes,
        lower_bound: packing.lower_bound,
    })
}

/// Pack buffers into one arena: the better of largest-first and start-order greedy
/// placement. Errors only when sizes overflow `usize`.
pub fn pack(reqs: &[Request]) -> Result<Packing> {
    let sizes = reqs
        .iter()
        .map(|r| align_up(r.size).ok_or_else(|| err(format!("buffer of {} bytes", r.size))))
        .collect::<Result<Vec<_>>>()?;
    let lower_bound = lower_bound(reqs, &sizes)?;

    let mut by_size: Vec<usize> = (0..reqs.len()).collect();
    by_size.sort_by_key(|&i| (std::cmp::Reverse(sizes[i]), reqs[i].life.first, i));
    let mut by_start: Vec<usize> = (0..reqs.len()).collect();
    by_start.sort_by_key(|&i| (reqs[i].life.first, std::cmp::Reverse(sizes[i]), i));

    let a = greedy(reqs, &sizes, &by_size)?;
    let b = greedy(reqs, &sizes, &by_start)?;
    let (offsets, arena_bytes) = if b.1 < a.1 { b } else { a };
    Ok(Packing {
        offsets,
        arena_bytes,
        lower_bound,
    })
}

/// Place requests in `order`, each at the lowest offset free over its lifetime.
fn greedy(reqs: &[Request], sizes: &[usize], order: &[usize]) -> Result<(Vec<usize>, usize)> {
    let mut offsets = vec![0usize; reqs.len()];
    let mut placed: Vec<usize> = Vec::with_capacity(reqs.len());
    let mut arena = 0usize;
    for &i in order {
        let size = sizes[i];
        if size == 0 {
            continue;
        }
        // Busy byte ranges of already placed buffers live at the same time, by offset.
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| reqs[j].life.overlaps(&reqs[i].life))
            .map(|&j| (offsets[j], offsets[j] + sizes[j]))
            .collect();
        busy.sort_unstable();
        let mut at = 0usize;
        for (lo, hi) in busy {
            let end = at
                .checked_add(size)
                .ok_or_else(|| err("arena size overflows".into()))?;
            if end <= lo {
                break;
            }
            at = at.max(hi);
        }
        offsets[i] = at;
        let end = at
            .checked_add(size)
            .ok_or_else(|| err("arena size overflows".into()))?;
        arena = arena.max(end);
        placed.push(i);
    }
    Ok((offsets, arena))
}

/// The largest sum of aligned sizes live at one node.
fn lower_bound(reqs: &[Request], sizes: &[usize]) -> Result<usize> {
    // Sweep: +size at `first`, -size after `last`.
    let mut events: Vec<(usize, bool, usize)> = Vec::with_capacity(2 * reqs.len());
    for (r, &s) in reqs.iter().zip(sizes) {
        events.push((r.life.first, true, s));
        events.push((r.life.last.saturating_add(1), false, s));
    }
    // At equal times, releases (false) sort before allocations (true).
    events.sort_unstable();
    let (mut live, mut best) = (0usize, 0usize);
    for (_, alloc, s) in events {
        if alloc {
            live = live
                .checked_add(s)
                .ok_or_else(|| err("arena size overflows".into()))?;
            best = best.max(live);
        } else {
            live -= s;
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use qc_ir::{DType, Op, TensorType};

    fn req(first: usize, last: usize, size: usize) -> Request {
        Request {
            life: Lifetime { first, last },
            size,
        }
    }

    /// Every pair of simultaneously live buffers is disjoint, and alignment holds.
    fn check(reqs: &[Request], p: &Packing) {
        for (i, a) in reqs.iter().enumerate() {
            assert_eq!(p.offsets[i] % ALIGN, 0);
            assert!(p.offsets[i] + a.size <= p.arena_bytes || a.size == 0);
            for (j, b) in reqs.iter().enumerate().skip(i + 1) {
                if a.size == 0 || b.size == 0 || !a.life.overlaps(&b.life) {
                    continue;
                }
                let (oa, ob) = (p.offsets[i], p.offsets[j]);
                assert!(
                    oa + a.size <= ob || ob + b.size <= oa,
                    "buffers {i} {a:?} @{oa} and {j} {b:?} @{ob} overlap"
                );
            }
        }
        assert!(p.lower_bound <= p.arena_bytes);
    }

    fn out(g: &mut Graph, op: Op, ins: Vec<ValueId>, tys: Vec<TensorType>, name: &str) -> ValueId {
        let n = g.add_node(op, ins, tys, name);
        g.node(n).outputs[0]
    }

    fn f32s(n: usize) -> TensorType {
        TensorType::new(DType::F32, vec![n])
    }

    #[test]
    fn chain_reuses_two_buffers() {
        // x -> a(100 f32) -> b(10 f32) -> c(100 f32) -> d(output).
        // Lifetimes: a [0,1], b [1,2], c [2,3]. a and c never meet: they share offset 0;
        // b (40 B -> 64 B) sits above a (400 B -> 448 B).
        let mut g = Graph::new();
        let x = g.add_input("x", f32s(100));
        let na = g.add_node(Op::Relu, vec![x], vec![f32s(100)], "a");
        let a = g.node(na).outputs[0];
        let nb = g.add_node(Op::Relu, vec![a], vec![f32s(10)], "b");
        let b = g.node(nb).outputs[0];
        let nc = g.add_node(Op::Relu, vec![b], vec![f32s(100)], "c");
        let c = g.node(nc).outputs[0];
        let nd = g.add_node(Op::Relu, vec![c], vec![f32s(100)], "d");
        let d = g.node(nd).outputs[0];
        g.add_output("y", d);
        let p = plan(&g).expect("plan");
        assert_eq!(p.offset(x), None);
        assert_eq!(p.offset(d), None);
        assert_eq!(p.offset(a), Some(0));
        assert_eq!(p.offset(c), Some(0));
        assert_eq!(p.offset(b), Some(448));
        assert_eq!(p.arena_bytes, 512);
        assert_eq!(p.lower_bound, 512);
        assert_eq!(p.lifetimes[b.index()], Some(Lifetime { first: 1, last: 2 }));
    }

    #[test]
    fn diamond_keeps_both_branches_apart() {
        // a = relu(x) [0,3]; b = relu(a) [1,3]; c = relu(a) [2,3]; d = add(b, c)... a is
        // read by node 3 too, so a, b, c are all live at node 3: 3 * 64 B.
        let mut g = Graph::new();
        let x = g.add_input("x", f32s(16));
        let a = out(&mut g, Op::Relu, vec![x], vec![f32s(16)], "a");
        let b = out(&mut g, Op::Relu, vec![a], vec![f32s(16)], "b");
        let c = out(&mut g, Op::Relu, vec![a], vec![f32s(16)], "c");
        let n3 = g.add_node(Op::Sum, vec![a, b, c], vec![f32s(16)], "d");
        let d = g.node(n3).outputs[0];
        let e = out(&mut g, Op::Relu, vec![d], vec![f32s(16)], "e");
        g.add_output("y", e);
        let p = plan(&g).expect("plan");
        let mut offs = vec![
            p.offset(a).expect("a"),
            p.offset(b).expect("b"),
            p.offset(c).expect("c"),
        ];
        offs.sort();
        assert_eq!(offs, vec![0, 64, 128]);
        // d [3,4] overlaps a, b, c at node 3: it needs a fourth slot.
        assert_eq!(p.offset(d), Some(192));
        assert_eq!(p.arena_bytes, 256);
        assert_eq!(p.lower_bound, 256);
    }

    #[test]
    fn largest_first_beats_start_order_here() {
        // Largest first: D at 0, B at 0 (D and B never meet), A and C at 640.
        let reqs = [req(0, 1, 64), req(1, 2, 640), req(2, 3, 64), req(0, 0, 640)];
        let p = pack(&reqs).expect("pack");
        check(&reqs, &p);
        // Hand count: live at 0: 64 + 640; at 1: 64 + 640; at 2: 640 + 64; at 3: 64.
        assert_eq!(p.lower_bound, 704);
        assert_eq!(p.arena_bytes, 704);
    }

    #[test]
    fn unused_results_and_empty_tensors() {
        let reqs = [req(0, 0, 0), req(0, 0, 1), req(0, 0, 65)];
        let p = pack(&reqs).expect("pack");
        check(&reqs, &p);
        // 1 B -> 64, 65 B -> 128; the empty buffer takes nothing.
        assert_eq!(p.arena_bytes, 192);
        assert_eq!(p.lower_bound, 192);
    }

    #[test]
    fn random_graphs_never_overlap_live_values() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = |n: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((seed >> 33) as usize) % n.max(1)
        };
        for _ in 0..200 {
            let mut g = Graph::new();
            let mut vals = vec![g.add_input("x", f32s(1 + rnd(50)))];
            let n_nodes = 1 + rnd(25);
            for i in 0..n_nodes {
                let k = 1 + rnd(3);
                let ins: Vec<ValueId> = (0..k).map(|_| vals[rnd(vals.len())]).collect();
                let n_out = 1 + rnd(2);
                let tys = (0..n_out).map(|_| f32s(rnd(300))).collect();
                let node = g.add_node(Op::Sum, ins, tys, format!("n{i}"));
                vals.extend(g.node(node).outputs.clone());
            }
            for _ in 0..1 + rnd(3) {
                let v = vals[rnd(vals.len())];
                g.add_output("y", v);
            }
            let p = plan(&g).expect("plan");
            let reqs: Vec<(ValueId, Request)> = requests(&g).expect("requests");
            let only: Vec<Request> = reqs.iter().map(|(_, r)| *r).collect();
            let packing = Packing {
                offsets: reqs
                    .iter()
                    .map(|(v, _)| p.offset(*v).expect("planned"))
                    .collect(),
                arena_bytes: p.arena_bytes,
                lower_bound: p.lower_bound,
            };
            check(&only, &packing);
            // Brute-force lower bound, computed per node.
            let lb = (0..n_nodes)
                .map(|t| {
                    only.iter()
                        .filter(|r| r.life.first <= t && t <= r.life.last)
                        .map(|r| r.size.div_ceil(ALIGN) * ALIGN)
                        .sum::<usize>()
                })
                .max()
                .unwrap_or(0);
            assert_eq!(p.lower_bound, lb);
            // Outputs, inputs and constants are not in the arena.
            for o in &g.outputs {
                assert_eq!(p.offset(o.value), None);
            }
        }
    }

    #[test]
    fn in_place_chain_is_one_buffer() {
        // x -> a -> b -> c -> d(output), all 100 f32 and elementwise: a, b, c reuse one
        // buffer (each is its operand's last use); the plain plan needs two.
        let mut g = Graph::new();
        let x = g.add_input("x", f32s(100));
        let a = out(&mut g, Op::Relu, vec![x], vec![f32s(100)], "a");
        let b = out(&mut g, Op::Relu, vec![a], vec![f32s(100)], "b");
        let c = out(&mut g, Op::Relu, vec![b], vec![f32s(100)], "c");
        let d = out(&mut g, Op::Relu, vec![c], vec![f32s(100)], "d");
        g.add_output("y", d);
        let p = plan_with(&g, &|_, _| vec![0]).expect("plan");
        assert_eq!(
            (p.offset(a), p.offset(b), p.offset(c)),
            (Some(0), Some(0), Some(0))
        );
        // x is a graph input and d a graph output: neither is ever shared.
        assert_eq!(p.shares[a.index()], None);
        assert_eq!(p.shares[b.index()], Some(a));
        assert_eq!(p.shares[c.index()], Some(b));
        assert_eq!(p.shares[d.index()], None);
        assert_eq!((p.arena_bytes, p.lower_bound), (448, 448));
        let plain = plan(&g).expect("plan");
        assert_eq!((plain.arena_bytes, plain.lower_bound), (896, 896));
        assert!(plain.shares.iter().all(Option::is_none));
    }

    #[test]
    fn in_place_needs_last_use_and_equal_size() {
        // a is read again after b, so b cannot take a's buffer; c is smaller than b.
        let mut g = Graph::new();
        let x = g.add_input("x", f32s(16));
        let a = out(&mut g, Op::Relu, vec![x], vec![f32s(16)], "a");
        let b = out(&mut g, Op::Relu, vec![a], vec![f32s(16)], "b");
        let c = out(&mut g, Op::Relu, vec![b], vec![f32s(8)], "c");
        let d = out(&mut g, Op::Sum, vec![a, c], vec![f32s(8)], "d");
        let e = out(&mut g, Op::Relu, vec![d], vec![f32s(8)], "e");
        g.add_output("y", e);
        // Ask for every operand, out-of-range ones included.
        let p = plan_with(&g, &|_, _| vec![5, 0, 1]).expect("plan");
        assert_eq!(p.shares[b.index()], None);
        assert_eq!(p.shares[c.index()], None);
        // d: operand 0 (a) is last used here but is 64 B against d's 32 B (sizes must be
        // equal in bytes, not after alignment); operand 1 (c, 32 B) qualifies.
        assert_eq!(p.shares[d.index()], Some(c));
        assert_eq!(p.offset(d), p.offset(c));
    }

    #[test]
    fn random_graphs_in_place() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = |n: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((seed >> 33) as usize) % n.max(1)
        };
        // Which operands each node's "kernel" allows, a fixed function of the node.
        let allow = |_: &Graph, n: NodeId| -> Vec<usize> {
            let h = n.index().wrapping_mul(2_654_435_761) >> 3;
            match h % 4 {
                0 => vec![],
                1 => vec![0],
                2 => vec![1, 0],
                _ => vec![2, 1, 0],
            }
        };
        let mut granted = 0usize;
        for _ in 0..300 {
            let mut g = Graph::new();
            let mut vals = vec![g.add_input("x", f32s(16))];
            let n_nodes = 1 + rnd(25);
            for i in 0..n_nodes {
                let k = 1 + rnd(3);
                // Prefer recent values so that chains (and last uses) are common.
                let ins: Vec<ValueId> = (0..k)
                    .map(|_| vals[vals.len() - 1 - rnd(vals.len().min(3))])
                    .collect();
                let n_out = 1 + rnd(2);
                // Few distinct sizes, so equal sizes are common.
                let tys = (0..n_out)
                    .map(|_| f32s([0, 16, 16, 40, 100][rnd(5)]))
                    .collect();
                let node = g.add_node(Op::Sum, ins, tys, format!("n{i}"));
                vals.extend(g.node(node).outputs.clone());
            }
            for _ in 0..1 + rnd(2) {
                let v = vals[rnd(vals.len())];
                g.add_output("y", v);
            }
            let p = plan_with(&g, &allow).expect("plan");
            let mut last_use = vec![None; g.values.len()];
            for (i, node) in g.nodes.iter().enumerate() {
                for &v in &node.inputs {
                    last_use[v.index()] = Some(i);
                }
            }
            let def = |v: ValueId| match g.value(v).def {
                ValueDef::Node { node, .. } => Some(node),
                _ => None,
            };
            // Every granted pair is legal.
            for (yi, s) in p.shares.iter().enumerate() {
                let Some(x) = *s else { continue };
                let y = ValueId::from_index(yi);
                granted += 1;
                let n = def(y).expect("a node result");
                let node = g.node(n);
                assert_eq!(node.outputs[0], y);
                let asked = allow(&g, n);
                assert!(node
                    .inputs
                    .iter()
                    .enumerate()
                    .any(|(j, &v)| v == x && asked.contains(&j)));
                assert_eq!(last_use[x.index()], Some(n.index()));
                assert!(def(x).is_some());
                assert_eq!(p.sizes[x.index()], p.sizes[y.index()]);
                assert_eq!(p.offset(x), p.offset(y));
                for o in &g.outputs {
                    assert!(o.value != x && o.value != y);
                }
            }
            // Live values never share a byte unless one reuses the other.
            let arena: Vec<usize> = (0..g.values.len())
                .filter(|&v| p.offsets[v].is_some())
                .collect();
            for (ai, &a) in arena.iter().enumerate() {
                let (oa, sa) = (p.offsets[a].expect("placed"), p.sizes[a]);
                assert_eq!(oa % ALIGN, 0);
                assert!(oa + sa <= p.arena_bytes || sa == 0);
                for &b in &arena[ai + 1..] {
                    let (ob, sb) = (p.offsets[b].expect("placed"), p.sizes[b]);
                    let (la, lb) = (p.lifetimes[a].expect("life"), p.lifetimes[b].expect("life"));
                    if sa == 0 || sb == 0 || !la.overlaps(&lb) {
                        continue;
                    }
                    let (va, vb) = (ValueId::from_index(a), ValueId::from_index(b));
                    if p.shares[b] == Some(va) || p.shares[a] == Some(vb) {
                        continue;
                    }
                    assert!(oa + sa <= ob || ob + sb <= oa, "%{a} and %{b} overlap");
                }
            }
            // Brute-force lower bound: live bytes per node, an aliased pair once.
            let al = |s: usize| s.div_ceil(ALIGN) * ALIGN;
            let lb = (0..n_nodes)
                .map(|t| {
                    let live: usize = arena
                        .iter()
                        .filter(|&&v| {
                            let l = p.lifetimes[v].expect("life");
                            l.first <= t && t <= l.last
                        })
                        .map(|&v| al(p.sizes[v]))
                        .sum();
                    let twice: usize = arena
                        .iter()
                        .filter(|&&v| {
                            p.shares[v].is_some()
                                && def(ValueId::from_index(v)).map(|n| n.index()) == Some(t)
                        })
                        .map(|&v| al(p.sizes[v]))
                        .sum();
                    live - twice
                })
                .max()
                .unwrap_or(0);
            assert_eq!(p.lower_bound, lb);
            assert!(p.lower_bound <= p.arena_bytes);
            // Granting nothing is the plain plan.
            assert_eq!(
                plan_with(&g, &|_, _| Vec::new()).expect("plan"),
                plan(&g).expect("plan")
            );
        }
        assert!(granted > 100, "only {granted} in-place results granted");
    }
}
