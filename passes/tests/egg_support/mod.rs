//! Helpers of the `egg_*` tests: text IR in, the pass, canonical text or op counts
//! out, and interpreter equality before/after on seeded inputs.
//!
//! The canonical text of a graph is its text form after re-ordering the nodes by a
//! depth-first walk from the outputs (operands in order), then compaction; so a
//! hand-written expected graph compares equal to the pass's result whatever order
//! either lists independent nodes in. Written independently of the pass.

#![allow(dead_code)] // each test binary uses a different subset
#![allow(clippy::panic, clippy::unwrap_used)] // test code: a panic is how a test fails

use std::collections::{BTreeMap, HashMap};

use qc_ir::{DType, Graph, NodeId, Tensor, TensorData, TensorType, ValueDef, ValueId};
use qc_passes::egg::{optimize_with, rules, EggOutcome};
use qc_passes::EggLimits;

pub fn parse(text: &str) -> Graph {
    let g = qc_ir::text::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    qc_ir::verify::verify(&g).unwrap_or_else(|e| panic!("test graph does not verify: {e}\n{text}"));
    g
}

/// `g` with nodes in depth-first post-order from the outputs, compacted, printed.
pub fn canon(g: &Graph) -> String {
    let mut order: Vec<NodeId> = Vec::new();
    let mut seen: HashMap<NodeId, bool> = HashMap::new();
    fn visit(g: &Graph, n: NodeId, seen: &mut HashMap<NodeId, bool>, order: &mut Vec<NodeId>) {
        if seen.contains_key(&n) {
            return;
        }
        seen.insert(n, true);
        for &v in &g.node(n).inputs {
            if let ValueDef::Node { node, .. } = g.value(v).def {
                visit(g, node, seen, order);
            }
        }
        order.push(n);
    }
    for p in &g.outputs {
        if let ValueDef::Node { node, .. } = g.value(p.value).def {
            visit(g, node, &mut seen, &mut order);
        }
    }
    let mut out = Graph::new();
    let mut map: HashMap<ValueId, ValueId> = HashMap::new();
    for p in &g.inputs {
        let v = out.add_input(p.name.clone(), g.ty(p.value).clone());
        map.insert(p.value, v);
    }
    let get = |out: &mut Graph, v: ValueId, map: &mut HashMap<ValueId, ValueId>| -> ValueId {
        if let Some(&m) = map.get(&v) {
            return m;
        }
        let ValueDef::Const(c) = g.value(v).def else {
            panic!("value {v} used before definition")
        };
        let t = g.consts[c.index()].clone();
        let c2 = out.add_const_tensor(t);
        let nv = out.add_const_value(c2, g.ty(v).quant.clone());
        map.insert(v, nv);
        nv
    };
    for n in order {
        let node = g.node(n);
        let ins: Vec<ValueId> = node
            .inputs
            .iter()
            .map(|&v| get(&mut out, v, &mut map))
            .collect();
        let tys = node.outputs.iter().map(|&v| g.ty(v).clone()).collect();
        let id = out.add_node(node.op.clone(), ins, tys, node.name.clone());
        for (&old, &new) in node.outputs.iter().zip(&out.node(id).outputs.clone()) {
            map.insert(old, new);
        }
    }
    for p in &g.outputs {
        let v = get(&mut out, p.value, &mut map);
        out.add_output(p.name.clone(), v);
    }
    out.compact();
    qc_ir::text::print(&out)
}

/// Run the named rules (all rules when `names` is empty) with default limits.
pub fn run(g: &Graph, names: &[&str]) -> EggOutcome {
    let rs = if names.is_empty() {
        rules::all()
    } else {
        let rs = rules::by_name(names);
        assert_eq!(rs.len(), names.len(), "unknown rule in {names:?}");
        rs
    };
    optimize_with(g, &EggLimits::default(), &rs).unwrap_or_else(|e| panic!("egg: {e}"))
}

/// Before ⇒ after: `before` through the rules must print like `after` (both
/// canonicalized), every rule in `must_fire` must have fired, and the interpreter
/// must agree on seeded inputs (float outputs within `rtol`, quantized ones exactly).
pub fn check(before: &str, names: &[&str], after: &str, rtol: f32) -> EggOutcome {
    let g = parse(before);
    let out = run(&g, names);
    let want = parse(after);
    let (got_text, want_text) = (canon(&out.graph), canon(&want));
    assert_eq!(
        got_text, want_text,
        "\n--- got ---\n{got_text}\n--- want ---\n{want_text}\n--- report ---\n{:?}",
        out.report
    );
    same_outputs(&g, &out.graph, rtol);
    out
}

/// The pass must leave `before` unchanged (up to node order).
pub fn unchanged(before: &str, names: &[&str]) -> EggOutcome {
    let g = parse(before);
    let out = run(&g, names);
    assert_eq!(canon(&out.graph), canon(&g), "report: {:?}", out.report);
    out
}

/// Op name → number of nodes.
pub fn op_counts(g: &Graph) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for n in &g.nodes {
        *m.entry(n.op.name()).or_insert(0) += 1;
    }
    m
}

/// A counter-based generator (splitmix64), so inputs are reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
}

/// A seeded tensor of type `ty`: floats in [-3, 3), integers over their whole range.
pub fn seeded(ty: &TensorType, rng: &mut Rng) -> Tensor {
    let n = ty.numel().unwrap();
    let ints = |rng: &mut Rng, lo: i64, hi: i64| -> Vec<i64> {
        (0..n)
            .map(|_| lo + (rng.next_u64() % (hi - lo + 1) as u64) as i64)
            .collect()
    };
    let data = match ty.dtype {
        DType::F32 => TensorData::F32((0..n).map(|_| rng.uniform(-3.0, 3.0)).collect()),
        DType::U8 => TensorData::U8(ints(rng, 0, 255).into_iter().map(|x| x as u8).collect()),
        DType::I8 => TensorData::I8(ints(rng, -128, 127).into_iter().map(|x| x as i8).collect()),
        d => panic!("no seeded data for {d}"),
    };
    Tensor::new(ty.shape.clone(), data).unwrap()
}

pub fn seeded_inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut rng = Rng::new(seed);
    g.inputs
        .iter()
        .map(|p| seeded(g.ty(p.value), &mut rng))
        .collect()
}

/// Run both graphs on the same seeded inputs (three seeds) and compare outputs:
/// integer outputs equal, float ones within `rtol` of the larger magnitude (plus a
/// tiny absolute slack for values near 0).
pub fn same_outputs(a: &Graph, b: &Graph, rtol: f32) {
    for seed in [1u64, 2, 3] {
        let ins = seeded_inputs(a, seed);
        let opts = qc_interp::Options::default();
        let ya = qc_interp::run(a, &ins, &opts).unwrap_or_else(|e| panic!("before: {e}"));
        let yb = qc_interp::run(b, &ins, &opts).unwrap_or_else(|e| panic!("after: {e}"));
        assert_eq!(ya.len(), yb.len());
        for (i, (x, y)) in ya.iter().zip(&yb).enumerate() {
            assert_outputs_close(x, y, rtol, &format!("output {i} (seed {seed})"));
        }
    }
}

pub fn assert_outputs_close(x: &Tensor, y: &Tensor, rtol: f32, what: &str) {
    assert_eq!(x.dims(), y.dims(), "{what}: shapes");
    assert_eq!(x.dtype(), y.dtype(), "{what}: dtypes");
    if x.dtype().is_float() {
        let (xs, ys) = (x.to_f32_vec(), y.to_f32_vec());
        let scale = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (j, (p, q)) in xs.iter().zip(&ys).enumerate() {
            let ok = (p - q).abs() <= rtol * p.abs().max(q.abs()) + 1e-6 * scale.max(1.0)
                || (p.is_nan() && q.is_nan());
            assert!(ok, "{what}: element {j}: {p} vs {q}");
        }
    } else {
        assert_eq!(x, y, "{what}: quantized/integer results must be identical");
    }
}
