//! Requantization rules: chains of requantize, requantize folded into its producer's
//! result type, and relu/clip clamps that a quantized type makes redundant.
//!
//! **Folding a requantize into its producer — what qc does and why.** A producer
//! with quantized result params P followed by `requantize` to P' rounds twice (once
//! to P, once to P'); the same producer with result type P' rounds once. The two
//! differ by one step for some values whenever P' is not just P re-encoded, so the
//! fold would break the pipeline's promise of bit-identical quantized results. That
//! holds for every producer alike: for ops whose quantized semantics is "compute in
//! f32, quantize" the double rounding is visible, and for the integer-accumulating
//! ops (conv, gemm, matmul, conv_transpose) too. qc therefore folds only where the
//! results are provably identical: P' has P's scales and only moves the storage
//! (`storage_shift`: u8 with zero point z ↔ i8 with z - 128, u16 ↔ i16), where both
//! roundings and both saturations coincide code for code. Any other requantize stays
//! an explicit op (a cheap elementwise pass in the backends).

use egg::Id;
use qc_ir::{Op, TensorType};

use super::{
    add_op, attr, leaf_ty, lossless, node_is_valid, nodes_where, present_operands,
    result_params_are_a_choice, roundtrip_exact, rw, single_use, storage_shift, ty, type_leaf,
    Match, Rw,
};
use crate::egg::analysis::EGraph;
use crate::egg::lang::{enode, Qc};

pub fn rules() -> Vec<Rw> {
    vec![
        // requantize_P2(requantize_P1(x)) = requantize_P2(x) when requantize_P1 loses
        // nothing (`lossless`: P1 has x's scales and a zero-point shift that keeps x's
        // whole range inside P1's): then dequantize_P1(requantize_P1(x)) is
        // dequantize(x) bit for bit, and the outer requantize sees the same reals.
        rw(
            "requantize-requantize",
            "(requantize ?a2 ?t2 (requantize ?a1 ?t1 ?x))",
            requantize_chain,
        ),
        // requantize(x) to x's own type = x, exact under `roundtrip_exact`.
        rw(
            "requantize-identity",
            "(requantize ?a ?t ?x)",
            requantize_identity,
        ),
        // requantize_P'(p(..) : P) = p(..) : P' for a producer whose result params are
        // a free choice (any op but data movement, max-pool, relu, clip), with no other
        // user, when P' = P with the storage shifted (`storage_shift`, see the module
        // docs): every rounding and saturation, and the fused activation's clamp
        // bounds, move by the same zero-point shift. Exact.
        rw("fold-requantize", "(requantize ?a ?t ?p)", fold_requantize),
        // relu(x) = x for quantized x whose zero point is its storage minimum in every
        // channel: relu is dequantize, max(0, .), quantize, and no code is below the
        // zero point (exact under `roundtrip_exact`). Not fired when x's producer can
        // take the relu as its fused activation instead (keeps `act=relu` visible).
        rw("relu-quantized-identity", "(relu ?a ?t ?x)", relu_identity),
        // clip(x, lo, hi) = x for quantized x when quantize(lo) is the storage minimum
        // and quantize(hi) the maximum in every channel (the clamp is wider than the
        // type: a relu6 on a u8 tensor of range [0, 2.55]); clip on quantized values
        // clamps codes to those images (exact under `roundtrip_exact`). Same
        // preference for fusion as above.
        rw("clip-quantized-identity", "(clip ?a ?t ?x)", clip_identity),
    ]
}

fn requantize_chain(m: &mut Match) -> Option<Id> {
    let [a2, t2, t1, x] = m.vars(["?a2", "?t2", "?t1", "?x"])?;
    let px = ty(m.eg, x)?.quant?;
    let p1 = leaf_ty(m.eg, t1)?.quant?;
    if !lossless(&px, &p1) {
        return None;
    }
    let name = attr(m.eg, a2)?.name;
    add_op(m.eg, Op::Requantize, &name, &[x], leaf_ty(m.eg, t2)?)
}

fn requantize_identity(m: &mut Match) -> Option<Id> {
    let [t, x] = m.vars(["?t", "?x"])?;
    let want = leaf_ty(m.eg, t)?;
    (want == ty(m.eg, x)? && roundtrip_exact(want.quant.as_ref()?)).then_some(x)
}

fn fold_requantize(m: &mut Match) -> Option<Id> {
    let [t, p] = m.vars(["?t", "?p"])?;
    let want = leaf_ty(m.eg, t)?;
    let from = ty(m.eg, p)?;
    if !single_use(m.eg, p) || !storage_shift(from.quant.as_ref()?, want.quant.as_ref()?) {
        return None;
    }
    for n in nodes_where(m.eg, p, Qc::is_op) {
        let Some((a, _, operands)) = n.op_parts() else {
            continue;
        };
        let Some(pa) = attr(m.eg, a) else { continue };
        let present = present_operands(m.eg, operands);
        let Some(tys) = present
            .iter()
            .map(|&o| ty(m.eg, o))
            .collect::<Option<Vec<TensorType>>>()
        else {
            continue;
        };
        if !result_params_are_a_choice(&pa.op, &tys) || !node_is_valid(&pa.op, &tys, &want) {
            continue;
        }
        let new_t = type_leaf(m.eg, want.clone());
        let mut children = vec![a, new_t];
        children.extend_from_slice(operands);
        let Some(node) = enode(pa.op.name(), children) else {
            continue;
        };
        let id = m.eg.add(node);
        if m.eg.find(id) != m.eg.find(m.class) {
            return Some(id);
        }
    }
    None
}

/// x's class holds an op that could take the activation itself (fusion preferred).
fn fusable_producer(eg: &EGraph, x: Id) -> bool {
    single_use(eg, x)
        && eg[x].nodes.iter().any(|n| {
            n.op_parts()
                .and_then(|(a, _, _)| attr(eg, a))
                .is_some_and(|a| a.op.activation().is_some())
        })
}

fn relu_identity(m: &mut Match) -> Option<Id> {
    let [t, x] = m.vars(["?t", "?x"])?;
    let xt = ty(m.eg, x)?;
    let q = xt.quant.as_ref()?;
    let at_min = q
        .zero_points
        .iter()
        .all(|&z| i64::from(z) == q.storage.min());
    (leaf_ty(m.eg, t)? == xt && at_min && roundtrip_exact(q) && !fusable_producer(m.eg, x))
        .then_some(x)
}

fn clip_identity(m: &mut Match) -> Option<Id> {
    let [a, t, x] = m.vars(["?a", "?t", "?x"])?;
    let Op::Clip { min, max } = attr(m.eg, a)?.op else {
        return None;
    };
    let xt = ty(m.eg, x)?;
    let q = xt.quant.as_ref()?;
    let (lo, hi) = (
        min.map_or(f32::NEG_INFINITY, |v| v as f32),
        max.map_or(f32::INFINITY, |v| v as f32),
    );
    let wide = lo <= hi
        && (0..q.len())
            .all(|c| q.quantize(lo, c) <= q.storage.min() && q.quantize(hi, c) >= q.storage.max());
    (leaf_ty(m.eg, t)? == xt && wide && roundtrip_exact(q) && !fusable_producer(m.eg, x))
        .then_some(x)
}
