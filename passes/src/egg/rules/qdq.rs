//! Q/DQ rules: move `dequantize` down and `quantize` up through data movement until
//! they meet, cancel `quantize(dequantize(x))`, and turn `dequantize → op → quantize`
//! into the op on quantized types.
//!
//! What "exact" rests on: in the interpreter, a quantized data-movement op (and
//! max-pool, relu, clip, pad) dequantizes its operand, moves or clamps real values and
//! quantizes them with its result params, which inference makes the operand's. So
//! `m(dequantize(x)) = dequantize(m(x))` holds value for value when
//! `quantize(dequantize(q)) = q` on x's params (`roundtrip_exact`), plus, for ops that
//! create or clamp values, that those values are representable.
//!
//! `dequantize → op → quantize` for conv / conv_transpose / gemm / matmul is *not*
//! rewritten here: their quantized form accumulates in integers and rounds once, which
//! is not what the float op followed by quantize computes; recognizing that encoding
//! is `canonicalize-qdq`'s job. Float ops that stay between a dequantize and a
//! quantize are reported by the pass.

use egg::Id;
use qc_ir::{Op, PoolAttrs, TensorType};

use super::{
    add_inferred, add_op, attr, dequantized, leaf_ty, nodes_where, representable, roundtrip_exact,
    rw, rw_arg, rw_kind, single_use, ty, Match, Rw,
};
use crate::egg::lang::Qc;

/// Ops a dequantize moves through: `(rule name, op)`.
const SINKS: [(&str, &str); 10] = [
    ("dequantize-reshape", "reshape"),
    ("dequantize-flatten", "flatten"),
    ("dequantize-squeeze", "squeeze"),
    ("dequantize-unsqueeze", "unsqueeze"),
    ("dequantize-transpose", "transpose"),
    ("dequantize-max-pool", "max_pool"),
    ("dequantize-global-max-pool", "global_max_pool"),
    ("dequantize-pad", "pad"),
    ("dequantize-relu", "relu"),
    ("dequantize-clip", "clip"),
];

pub fn rules() -> Vec<Rw> {
    let mut r = vec![
        // quantize(dequantize(x)) = x when the quantize's result type is x's type:
        // exact when quantize(dequantize(q)) = q on those params (`roundtrip_exact`:
        // storage of at most 16 bits and no overflow of scale * range).
        rw(
            "quantize-dequantize-identity",
            "(quantize ?qa ?qt (dequantize ?da ?dt ?x))",
            qdq_identity,
        ),
        // quantize(dequantize(x)) with other params = requantize(x): the interpreter
        // defines requantize as exactly dequantize-then-quantize. Always exact.
        rw(
            "quantize-dequantize-requantize",
            "(quantize ?qa ?qt (dequantize ?da ?dt ?x))",
            qdq_requantize,
        ),
        // concat(dequantize(x1), .., dequantize(xn)) = dequantize(concat(x1, .., xn))
        // when the x's have equal params (or per-axis params along the concat axis),
        // which the quantized concat then carries; exact under `roundtrip_exact`.
        rw_kind(
            "dequantize-concat",
            |n| matches!(n, Qc::Concat(_)),
            sink_concat,
        ),
        // quantize_P(concat(y1, .., yn)) = concat(quantize_P(y1), .., quantize_P(yn)):
        // quantize is elementwise, and the quantized concat re-quantizes with P, exact
        // under `roundtrip_exact(P)`. Fired when every y is a dequantize (then each
        // quantize(dequantize(..)) becomes the x itself or a requantize: the concat of
        // operands with unequal params, by requantizing them) and P is per tensor.
        rw("quantize-concat", "(quantize ?qa ?qt ?y)", hoist_concat),
        // quantize_P(op(dequantize(x1), ..)) = op(x1, ..) : P for an op whose quantized
        // semantics is, by definition, "dequantize the operands, compute in f32,
        // quantize to the result's params" (elementwise arithmetic, activations,
        // average pools, softmax, reduce_mean, lrn, batch_norm with raw parameters).
        // Identical by definition; fired when the float op has no other user.
        rw("quantize-op", "(quantize ?qa ?qt ?y)", quantize_op),
    ];
    // m(dequantize(x)) = dequantize(m(x)) for data movement m, with x's params carried
    // through m by inference (`qc_ir::infer`; a per-axis axis that cannot survive m
    // makes the rule not fire). Exact under `roundtrip_exact` of x's params, and:
    // - max_pool: every window holds at least one element of x (no pads, or unit
    //   dilations and pads smaller than the kernel), so no -inf reaches quantize;
    //   quantize and dequantize are monotone, so max commutes with them;
    // - global_max_pool: x is not empty;
    // - pad: the pad value is representable (dequantize(quantize(v)) = v; 0 always is);
    // - relu: 0 is representable (the zero point, always in range);
    // - clip: each bound is representable or never reached (below/above every code).
    for (name, op) in SINKS {
        r.push(rw_arg(
            name,
            &format!("({op} ?a ?t (dequantize ?da ?dt ?x))"),
            op,
            sink_dequantize,
        ));
    }
    r
}

fn qdq_identity(m: &mut Match) -> Option<Id> {
    let [qt, x] = m.vars(["?qt", "?x"])?;
    let want = leaf_ty(m.eg, qt)?;
    let have = ty(m.eg, x)?;
    (want == have && roundtrip_exact(want.quant.as_ref()?)).then_some(x)
}

fn qdq_requantize(m: &mut Match) -> Option<Id> {
    let [qa, qt, x] = m.vars(["?qa", "?qt", "?x"])?;
    let want = leaf_ty(m.eg, qt)?;
    if want == ty(m.eg, x)? {
        return None;
    }
    let name = attr(m.eg, qa)?.name;
    add_op(m.eg, Op::Requantize, &name, &[x], want)
}

/// Whether every window of a max-pool over `x` holds at least one element of x.
fn windows_hit_data(p: &PoolAttrs) -> bool {
    let no_pads = p.pads.iter().all(|&q| q == 0);
    let small_pads = p.dilations.iter().all(|&d| d == 1)
        && p.kernel.len() * 2 == p.pads.len()
        && p.pads.iter().enumerate().all(|(i, &q)| {
            p.kernel
                .get(i % p.kernel.len().max(1))
                .is_some_and(|&k| q < k)
        });
    no_pads || small_pads
}

/// The condition (beyond `roundtrip_exact`) under which `op` commutes with
/// dequantize on an operand of type `x`.
fn commutes_with_dequantize(op: &Op, x: &TensorType) -> bool {
    let Some(q) = &x.quant else { return false };
    match op {
        Op::Reshape { .. }
        | Op::Flatten { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Transpose { .. }
        | Op::Relu => true,
        Op::MaxPool { pool, .. } => windows_hit_data(pool),
        Op::GlobalMaxPool => x.numel().is_ok_and(|n| n > 0),
        Op::Pad { value, .. } => representable(*value as f32, q),
        Op::Clip { min, max } => {
            let lo_ok = min.is_none_or(|v| {
                let v = v as f32;
                representable(v, q) || (0..q.len()).all(|c| v <= q.dequantize(q.storage.min(), c))
            });
            let hi_ok = max.is_none_or(|v| {
                let v = v as f32;
                representable(v, q) || (0..q.len()).all(|c| v >= q.dequantize(q.storage.max(), c))
            });
            lo_ok && hi_ok
        }
        _ => false,
    }
}

fn sink_dequantize(m: &mut Match) -> Option<Id> {
    let [a, t, da, x] = m.vars(["?a", "?t", "?da", "?x"])?;
    let op_attr = attr(m.eg, a)?;
    let xt = ty(m.eg, x)?;
    let out = leaf_ty(m.eg, t)?;
    if !roundtrip_exact(xt.quant.as_ref()?) || !commutes_with_dequantize(&op_attr.op, &xt) {
        return None;
    }
    let moved = add_inferred(m.eg, op_attr.op, &op_attr.name, &[x])?;
    let dq_name = attr(m.eg, da)?.name;
    add_op(m.eg, Op::Dequantize, &dq_name, &[moved], out)
}

fn sink_concat(m: &mut Match) -> Option<Id> {
    let class = m.class;
    for n in nodes_where(m.eg, class, |n| matches!(n, Qc::Concat(_))) {
        let Some((a, t, operands)) = n.op_parts() else {
            continue;
        };
        let Some(id) = sink_concat_node(m, a, t, operands) else {
            continue;
        };
        if m.eg.find(id) != m.eg.find(class) {
            return Some(id);
        }
    }
    None
}

fn sink_concat_node(m: &mut Match, a: Id, t: Id, operands: &[Id]) -> Option<Id> {
    let mut xs = Vec::with_capacity(operands.len());
    let mut dq_name = None;
    for &o in operands {
        let (da, x) = dequantized(m.eg, o)?;
        if !roundtrip_exact(ty(m.eg, x)?.quant.as_ref()?) {
            return None;
        }
        dq_name.get_or_insert(da);
        xs.push(x);
    }
    let ca = attr(m.eg, a)?;
    let out = leaf_ty(m.eg, t)?;
    let moved = add_inferred(m.eg, ca.op, &ca.name, &xs)?;
    // add_inferred left the params implied by the operands (equal params): the
    // quantized concat needs no choice of its own.
    ty(m.eg, moved)?.quant.as_ref()?;
    let name = attr(m.eg, dq_name?)?.name;
    add_op(m.eg, Op::Dequantize, &name, &[moved], out)
}

fn hoist_concat(m: &mut Match) -> Option<Id> {
    let [qa, qt, y] = m.vars(["?qa", "?qt", "?y"])?;
    let want = leaf_ty(m.eg, qt)?;
    let p = want.quant.clone()?;
    if !p.is_per_tensor() || !roundtrip_exact(&p) || !single_use(m.eg, y) {
        return None;
    }
    let q_name = attr(m.eg, qa)?.name;
    for n in nodes_where(m.eg, y, |n| matches!(n, Qc::Concat(_))) {
        let Some((a, _, operands)) = n.op_parts() else {
            continue;
        };
        if !operands.iter().all(|&o| dequantized(m.eg, o).is_some()) {
            continue;
        }
        let ca = match attr(m.eg, a) {
            Some(ca) => ca,
            None => continue,
        };
        let mut qs = Vec::with_capacity(operands.len());
        for &o in operands {
            let Some(ot) = ty(m.eg, o) else { break };
            let qty = TensorType::quantized(ot.shape.clone(), p.clone());
            let Some(q) = add_op(m.eg, Op::Quantize, &q_name, &[o], qty) else {
                break;
            };
            qs.push(q);
        }
        if qs.len() != operands.len() {
            continue;
        }
        if let Some(id) = add_op(m.eg, ca.op, &ca.name, &qs, want.clone()) {
            if m.eg.find(id) != m.eg.find(m.class) {
                return Some(id);
            }
        }
    }
    None
}

/// Ops whose quantized form is defined as dequantize → f32 op → quantize, with the
/// result params a free choice.
fn defined_by_float(op: &Op) -> bool {
    matches!(
        op,
        Op::Add { .. }
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Sum
            | Op::PRelu
            | Op::LeakyRelu { .. }
            | Op::Sigmoid
            | Op::HardSigmoid { .. }
            | Op::HardSwish
            | Op::Tanh
            | Op::AveragePool { .. }
            | Op::GlobalAveragePool
            | Op::BatchNorm { .. }
            | Op::Softmax { .. }
            | Op::ReduceMean { .. }
            | Op::Lrn(_)
    )
}

fn quantize_op(m: &mut Match) -> Option<Id> {
    let [qt, y] = m.vars(["?qt", "?y"])?;
    let want = leaf_ty(m.eg, qt)?;
    want.quant.as_ref()?;
    if !single_use(m.eg, y) {
        return None;
    }
    for n in nodes_where(m.eg, y, Qc::is_op) {
        let Some((a, t, operands)) = n.op_parts() else {
            continue;
        };
        let Some(oa) = attr(m.eg, a) else { continue };
        let f32_result =
            leaf_ty(m.eg, t).is_some_and(|r| r.dtype == qc_ir::DType::F32 && r.quant.is_none());
        if !defined_by_float(&oa.op) || !f32_result {
            continue;
        }
        // Dequantized operands are replaced by their quantized source; raw f32
        // operands (batch_norm's parameters) stay; the verifier rejects the rest
        // (e.g. a float constant next to a quantized operand).
        let mut new_ops = Vec::with_capacity(operands.len());
        let mut any_dq = false;
        for &o in operands {
            match dequantized(m.eg, o) {
                Some((_, x)) => {
                    any_dq = true;
                    new_ops.push(x);
                }
                None => new_ops.push(o),
            }
        }
        if !any_dq {
            continue;
        }
        if let Some(id) = add_op(m.eg, oa.op, &oa.name, &new_ops, want.clone()) {
            if m.eg.find(id) != m.eg.find(m.class) {
                return Some(id);
            }
        }
    }
    None
}
