//! Requantization rules: chains of requantize, requantize folded into its producer's
//! result type, and relu/clip clamps that a quantized type makes redundant.
//!
//! **Folding a requantize into its producer — what qc does and why.** A producer
//! with quantized result params P followed by `requantize` to P' rounds twice (once
//! to P, once to P'); the same producer with result type P' rounds once. The two
//! differ by one step for some values whenever P' has another scale, so that fold
//! would break the pipeline's promise of bit-identical quantized results — for ops
//! whose quantized semantics is "compute in f32, quantize" and for the
//! integer-accumulating ops (conv, gemm, matmul, conv_transpose) alike. qc therefore
//! folds only where the results are provably identical: P' has P's scales and a
//! storage range that, relative to its zero point, lies inside P's (`narrowing`:
//! i16 → u8 at one scale and zero point, u8 zp z ↔ i8 zp z - 128). Then the
//! producer rounds to the same integer either way and only saturation differs, and
//! saturating to P's range first changes nothing that P' would keep. Any other
//! requantize stays an explicit op (a cheap elementwise pass in the backends).
//!
//! **Relu and clip on quantized values.** Where the clamp changes no code
//! (`clamp_is_noop`: a relu whose zero point is the storage minimum, a relu6 whose
//! bounds lie outside the quantized range) the op is the identity and disappears —
//! no node, and no `act` on the producer either (the fusion rules do not fire on
//! such clamps). Where it does clamp, the fusion rules make it the producer's `act`.

use egg::Id;
use qc_ir::{Op, TensorType};

use super::{
    add_op, attr, clamp_bounds, clamp_is_noop, leaf_ty, narrowing, node_is_valid, nodes_where,
    present_operands, reencodes_exactly, result_params_are_a_choice, roundtrip_exact, rw,
    single_use, ty, type_leaf, Match, Rw,
};
use crate::egg::lang::{enode, Qc};

pub fn rules() -> Vec<Rw> {
    vec![
        // requantize_P2(requantize_P1(x)) = requantize_P2(x) when requantize_P1 loses
        // nothing: dequantize_P1(requantize_P1(q)) = dequantize(q) bit for bit for
        // every code q of x (`reencodes_exactly`, checked on every code; it holds when
        // x's scale is an integer multiple k of P1's, the zero points map as
        // q' = z1 + k (q - z) and no code saturates, e.g. u8 q(0.5, 0) -> u16
        // q(0.25, 0)). The outer requantize is dequantize-then-quantize, so it sees
        // the same reals either way: exact.
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
        // user, when P' has P's scales and a storage range relative to its zero point
        // inside P's (`narrowing`, see the module docs): the producer rounds to the
        // same integer, and sat_P'(sat_P(v)) = sat_P'(v) when P' ⊆ P, fused
        // activation clamps included. Exact; not when P' is wider.
        rw("fold-requantize", "(requantize ?a ?t ?p)", fold_requantize),
        // relu(x) = x for quantized x whose zero point is its storage minimum in every
        // channel: relu is dequantize, max(0, .), quantize, and no code is below the
        // zero point (`clamp_is_noop`; exact under `roundtrip_exact`). The relu
        // disappears, also after a conv (whose `act` stays as it was).
        rw("relu-quantized-identity", "(relu ?a ?t ?x)", noop_clamp),
        // clip(x, lo, hi) = x for quantized x when quantize(lo) is the storage minimum
        // and quantize(hi) the maximum in every channel (the clamp is wider than the
        // type: a relu6 on a u8 tensor of range [0, 2.55]); clip on quantized values
        // clamps codes to those images (`clamp_is_noop`; exact under
        // `roundtrip_exact`). Disappears like the relu above.
        rw("clip-quantized-identity", "(clip ?a ?t ?x)", noop_clamp),
    ]
}

fn requantize_chain(m: &mut Match) -> Option<Id> {
    let [a2, t2, t1, x] = m.vars(["?a2", "?t2", "?t1", "?x"])?;
    let px = ty(m.eg, x)?.quant?;
    let p1 = leaf_ty(m.eg, t1)?.quant?;
    if !reencodes_exactly(&px, &p1) {
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
    if !single_use(m.eg, p) || !narrowing(from.quant.as_ref()?, want.quant.as_ref()?) {
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

/// `?x` when the relu/clip matched with attribute `?a` and type `?t` clamps no code
/// of x's quantized type.
fn noop_clamp(m: &mut Match) -> Option<Id> {
    let [a, t, x] = m.vars(["?a", "?t", "?x"])?;
    let (lo, hi) = clamp_bounds(&attr(m.eg, a)?.op)?;
    let xt = ty(m.eg, x)?;
    let q = xt.quant.as_ref()?;
    (leaf_ty(m.eg, t)? == xt && roundtrip_exact(q) && clamp_is_noop(lo, hi, q)).then_some(x)
}
