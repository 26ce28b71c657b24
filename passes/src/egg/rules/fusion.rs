//! Fusion rules: BatchNorm and per-channel scale/shift folded into float conv and gemm
//! weights (and per-channel scale/shift into a BatchNorm), activations fused into
//! their producer's epilogue, matmul + bias as gemm.
//!
//! New weights and biases are computed by the analysis (helper e-nodes such as
//! `bn-fold-weight`, see `analysis`); a rule whose folding fails (non-f32 data, a
//! `var + eps <= 0`, a non-finite result) does not fire. Float folding is exact up
//! to float reassociation (the tolerance for BatchNorm folding); activation
//! fusion and `sum` → `add` are bit-exact, float or quantized.

use egg::Id;
use qc_ir::{Activation, DType, GemmAttrs, Op, TensorType};

use super::{
    act_bounds, add_op, attr, attr_leaf, clamp_bounds, clamp_is_noop, class_of, is_absent, leaf_ty,
    roundtrip_exact, rw, rw_arg, single_use, ty, Match, Rw,
};
use crate::egg::analysis::f32_const;
use crate::egg::fold;
use crate::egg::lang::{enode, Qc};

/// `(rule name, activation op, producer op)` of the activation fusions.
const ACT_RULES: [(&str, &str, &str); 10] = [
    ("fuse-conv-relu", "relu", "conv"),
    ("fuse-conv-clip", "clip", "conv"),
    ("fuse-conv-transpose-relu", "relu", "conv_transpose"),
    ("fuse-conv-transpose-clip", "clip", "conv_transpose"),
    ("fuse-gemm-relu", "relu", "gemm"),
    ("fuse-gemm-clip", "clip", "gemm"),
    ("fuse-matmul-relu", "relu", "matmul"),
    ("fuse-matmul-clip", "clip", "matmul"),
    ("fuse-add-relu", "relu", "add"),
    ("fuse-add-clip", "clip", "add"),
];

pub fn rules() -> Vec<Rw> {
    let mut r = vec![
        // batch_norm(conv(x, w, b), s, beta, mean, var)
        //   = conv(x, w * k, (b - mean) * k + beta),  k[c] = s[c] / sqrt(var[c] + eps),
        // per output channel c (axis 0 of w, axis 1 of the result). Float conv with
        // constant w, b and BatchNorm params, no fused activation, and no other user
        // of the conv. Exact up to float reassociation; a zero variance is fine as
        // long as var + eps > 0.
        rw_arg(
            "fold-conv-batch-norm",
            "(batch_norm ?na ?nt (conv ?a ?t ?x ?w ?b) ?s ?bi ?m ?v)",
            "conv",
            fold_batch_norm,
        ),
        // batch_norm(gemm(A, B, C; alpha, beta_g), s, beta, mean, var) over the N
        // columns = gemm(A, B * k per column of op(B), (beta_g * C - mean) * k + beta;
        // alpha, beta_g = 1), k as above (C broadcast to [N] when needed, absent C
        // taken as 0). Same conditions as for conv.
        rw_arg(
            "fold-gemm-batch-norm",
            "(batch_norm ?na ?nt (gemm ?a ?t ?x ?w ?b) ?s ?bi ?m ?v)",
            "gemm",
            fold_batch_norm,
        ),
        // conv(x, w, b) * c = conv(x, w * c[m], b * c[m]) for a constant c with one
        // value per output channel m (shape [M,1,1], [1,M,1,1], or a single value).
        // Float conv, no activation, no other user. Exact up to reassociation.
        rw_arg(
            "fold-conv-mul-channel",
            "(mul ?oa ?ot (conv ?a ?t ?x ?w ?b) ?c)",
            "mul",
            fold_channel,
        ),
        // c * conv(x, w, b): the same (float multiplication commutes exactly).
        rw_arg(
            "fold-channel-mul-conv",
            "(mul ?oa ?ot ?c (conv ?a ?t ?x ?w ?b))",
            "mul",
            fold_channel,
        ),
        // conv(x, w, b) + c = conv(x, w, b + c[m]) (the add's activation moves to the
        // conv), same conditions. Exact up to reassociation.
        rw_arg(
            "fold-conv-add-channel",
            "(add ?oa ?ot (conv ?a ?t ?x ?w ?b) ?c)",
            "add",
            fold_channel,
        ),
        // c + conv(x, w, b): the same.
        rw_arg(
            "fold-channel-add-conv",
            "(add ?oa ?ot ?c (conv ?a ?t ?x ?w ?b))",
            "add",
            fold_channel,
        ),
        // batch_norm(x, s, beta, mean, var) * c = batch_norm(x, s * c, beta * c, mean, var)
        // for a constant c with one value per channel (axis 1): the BatchNorm is
        // s * (x - mean) / sqrt(var + eps) + beta, affine per channel. Float, no other
        // user of the BatchNorm. Exact up to reassociation. (DenseNet's pre-activation
        // BatchNorm followed by mul/add by unsqueezed constants.)
        rw_arg(
            "fold-batch-norm-mul-channel",
            "(mul ?oa ?ot (batch_norm ?na ?nt ?x ?s ?bi ?m ?v) ?c)",
            "mul",
            fold_bn_channel,
        ),
        // c * batch_norm(..): the same.
        rw_arg(
            "fold-channel-mul-batch-norm",
            "(mul ?oa ?ot ?c (batch_norm ?na ?nt ?x ?s ?bi ?m ?v))",
            "mul",
            fold_bn_channel,
        ),
        // batch_norm(x, s, beta, mean, var) + c = batch_norm(x, s, beta + c, mean, var),
        // same conditions, and the add has no activation (a BatchNorm has none).
        rw_arg(
            "fold-batch-norm-add-channel",
            "(add ?oa ?ot (batch_norm ?na ?nt ?x ?s ?bi ?m ?v) ?c)",
            "add",
            fold_bn_channel,
        ),
        // c + batch_norm(..): the same.
        rw_arg(
            "fold-channel-add-batch-norm",
            "(add ?oa ?ot ?c (batch_norm ?na ?nt ?x ?s ?bi ?m ?v))",
            "add",
            fold_bn_channel,
        ),
        // matmul(a, b) + c = gemm(a, b, c) (alpha = beta = 1, the add's activation) for
        // float 2-D a, b, no activation on the matmul, no other user of it, and a
        // constant c that broadcasts to the result without changing its shape (a
        // bias [N] or [1, N]). Exact up to the kernels' summation order
        // (gemm computes dot * 1 + c * 1).
        rw(
            "matmul-add-to-gemm",
            "(add ?oa ?ot (matmul ?ma ?mt ?x ?w) ?c)",
            matmul_add,
        ),
        // c + matmul(a, b): the same.
        rw(
            "add-matmul-to-gemm",
            "(add ?oa ?ot ?c (matmul ?ma ?mt ?x ?w))",
            matmul_add,
        ),
        // sum(x, y) = add(x, y): the interpreter's sum starts from its first operand
        // and adds the next with the same broadcast, so this is bit-exact (quantized
        // too: both dequantize, add in f32 and quantize to the result's params).
        rw("sum-to-add", "(sum ?a ?t ?x ?y)", sum_to_add),
    ];
    // act(p(..)) = p{act}(..) for a producer p with a fused activation and
    // act = relu or clip (relu6 is clip(0, 6)), when p has no other user.
    // Float: the epilogue applies the same function to the same value, bit-exact.
    // Quantized (result params P): relu/clip on P is "dequantize, clamp, quantize",
    // and the epilogue clamps the result to the quantized images of the bounds; the
    // two agree code for code because quantize is monotone and
    // quantize(dequantize(q)) = q on P (`roundtrip_exact`, checked).
    // An activation already fused composes when the result is one clamp
    // ([max(lo1, lo2), min(hi1, hi2)] non-empty), else the rule does not fire.
    // Not fired on a quantized result where the clamp changes no code
    // (`clamp_is_noop`): there the relu/clip is the identity (`requant` rules), and
    // an `act` that does nothing would only be noise for the backends.
    for (name, act, prod) in ACT_RULES {
        let operands = producer_vars(prod).join(" ");
        r.push(rw_arg(
            name,
            &format!("({act} ?ra ?rt ({prod} ?a ?t {operands}))"),
            prod,
            fuse_activation,
        ));
    }
    r
}

/// The producer's operand variables, by op name.
fn producer_vars(prod: &str) -> &'static [&'static str] {
    match prod {
        "conv" | "conv_transpose" | "gemm" => &["?x", "?w", "?b"],
        _ => &["?x", "?w"],
    }
}

/// The class of the producer matched by the inner pattern `(prod ?a ?t operands..)`.
fn producer_class(m: &Match, prod: &str) -> Option<Id> {
    let mut children = vec![m.var("?a")?, m.var("?t")?];
    for v in producer_vars(prod) {
        children.push(m.var(v)?);
    }
    class_of(m.eg, prod, children)
}

/// A raw f32 type (float producer).
fn is_raw_f32(t: &TensorType) -> bool {
    t.dtype == DType::F32 && t.quant.is_none()
}

fn fold_batch_norm(m: &mut Match) -> Option<Id> {
    let [na, a, t, x, w, b, s, bi, mean, v] =
        m.vars(["?na", "?a", "?t", "?x", "?w", "?b", "?s", "?bi", "?m", "?v"])?;
    let p = producer_class(m, m.arg)?;
    let pa = attr(m.eg, a)?;
    let pty = leaf_ty(m.eg, t)?;
    if !single_use(m.eg, p) || !is_raw_f32(&pty) || pa.op.activation() != Some(Activation::None) {
        return None;
    }
    let w0 = f32_const(m.eg, w)?;
    for c in [s, bi, mean, v] {
        f32_const(m.eg, c)?;
    }
    if !is_absent(m.eg, b) {
        f32_const(m.eg, b)?;
    }
    let kw = m.eg.add(Qc::BnFoldWeight([na, a, w, s, v]));
    let kb = m.eg.add(Qc::BnFoldBias([na, a, b, s, bi, mean, v]));
    let w1 = m.eg[kw].data.konst.clone()?;
    m.eg[kb].data.konst.as_ref()?;
    if w1.dims() != w0.dims() {
        return None;
    }
    let op = match pa.op {
        Op::Gemm(g) => Op::Gemm(GemmAttrs { beta: 1.0, ..g }),
        op => op,
    };
    add_op(m.eg, op, &pa.name, &[x, kw, kb], pty)
}

fn fold_channel(m: &mut Match) -> Option<Id> {
    let [oa, ot, a, t, x, w, b, c] = m.vars(["?oa", "?ot", "?a", "?t", "?x", "?w", "?b", "?c"])?;
    let p = producer_class(m, "conv")?;
    let pa = attr(m.eg, a)?;
    let pty = leaf_ty(m.eg, t)?;
    let outer = attr(m.eg, oa)?;
    if !single_use(m.eg, p)
        || !is_raw_f32(&pty)
        || leaf_ty(m.eg, ot)? != pty
        || pa.op.activation() != Some(Activation::None)
    {
        return None;
    }
    let w0 = f32_const(m.eg, w)?;
    let m_out = *w0.dims().first()?;
    fold::channel_vector(&*f32_const(m.eg, c)?, pty.rank(), m_out)?;
    let absent_b = is_absent(m.eg, b);
    if !absent_b {
        f32_const(m.eg, b)?;
    }
    let (op, w1, b1) = match (m.arg, outer.op) {
        ("mul", Op::Mul) => {
            let kw = m.eg.add(Qc::MulFoldWeight([a, w, c]));
            m.eg[kw].data.konst.as_ref()?;
            let kb = if absent_b {
                b
            } else {
                let kb = m.eg.add(Qc::MulFoldBias([t, b, c]));
                m.eg[kb].data.konst.as_ref()?;
                kb
            };
            (pa.op, kw, kb)
        }
        ("add", Op::Add { act }) => {
            let kb = m.eg.add(Qc::AddFoldBias([t, b, c]));
            m.eg[kb].data.konst.as_ref()?;
            (with_activation(pa.op, act)?, w, kb)
        }
        _ => return None,
    };
    let operands: Vec<Id> = if is_absent(m.eg, b1) {
        vec![x, w1]
    } else {
        vec![x, w1, b1]
    };
    add_op(m.eg, op, &pa.name, &operands, pty)
}

fn fold_bn_channel(m: &mut Match) -> Option<Id> {
    let [oa, ot, na, nt, x, s, bi, mean, v, c] = m.vars([
        "?oa", "?ot", "?na", "?nt", "?x", "?s", "?bi", "?m", "?v", "?c",
    ])?;
    let bn = class_of(m.eg, "batch_norm", vec![na, nt, x, s, bi, mean, v])?;
    let nty = leaf_ty(m.eg, nt)?;
    let (outer, norm) = (attr(m.eg, oa)?, attr(m.eg, na)?);
    if !single_use(m.eg, bn) || !is_raw_f32(&nty) || leaf_ty(m.eg, ot)? != nty {
        return None;
    }
    let channels = *nty.shape.dims().get(1)?;
    fold::channel_vector(&*f32_const(m.eg, c)?, nty.rank(), channels)?;
    f32_const(m.eg, s)?;
    f32_const(m.eg, bi)?;
    let (s1, bi1) = match (m.arg, outer.op) {
        ("mul", Op::Mul) => {
            let ks = m.eg.add(Qc::MulFoldBias([nt, s, c]));
            let kb = m.eg.add(Qc::MulFoldBias([nt, bi, c]));
            (ks, kb)
        }
        (
            "add",
            Op::Add {
                act: Activation::None,
            },
        ) => (s, m.eg.add(Qc::AddFoldBias([nt, bi, c]))),
        _ => return None,
    };
    m.eg[s1].data.konst.as_ref()?;
    m.eg[bi1].data.konst.as_ref()?;
    add_op(m.eg, norm.op, &norm.name, &[x, s1, bi1, mean, v], nty)
}

fn matmul_add(m: &mut Match) -> Option<Id> {
    let [oa, ot, ma, mt, x, w, c] = m.vars(["?oa", "?ot", "?ma", "?mt", "?x", "?w", "?c"])?;
    let mm = class_of(m.eg, "matmul", vec![ma, mt, x, w])?;
    let (outer, inner) = (attr(m.eg, oa)?, attr(m.eg, ma)?);
    let mty = leaf_ty(m.eg, mt)?;
    let Op::Add { act } = outer.op else {
        return None;
    };
    if !single_use(m.eg, mm)
        || !is_raw_f32(&mty)
        || leaf_ty(m.eg, ot)? != mty
        || inner.op.activation() != Some(Activation::None)
        || ty(m.eg, x)?.rank() != 2
        || ty(m.eg, w)?.rank() != 2
    {
        return None;
    }
    f32_const(m.eg, c)?;
    let op = Op::Gemm(GemmAttrs {
        alpha: 1.0,
        beta: 1.0,
        trans_a: false,
        trans_b: false,
        act,
    });
    add_op(m.eg, op, &inner.name, &[x, w, c], mty)
}

fn sum_to_add(m: &mut Match) -> Option<Id> {
    let [a, t, x, y] = m.vars(["?a", "?t", "?x", "?y"])?;
    let sa = attr(m.eg, a)?;
    let op = Op::Add {
        act: Activation::None,
    };
    add_op(m.eg, op, &sa.name, &[x, y], leaf_ty(m.eg, t)?)
}

fn fuse_activation(m: &mut Match) -> Option<Id> {
    let [ra, rt, a, t] = m.vars(["?ra", "?rt", "?a", "?t"])?;
    let prod = m.arg;
    let p = producer_class(m, prod)?;
    if !single_use(m.eg, p) || m.eg[rt].data.ty_leaf != m.eg[t].data.ty_leaf {
        return None;
    }
    let pty = leaf_ty(m.eg, t)?;
    let (lo, hi) = clamp_bounds(&attr(m.eg, ra)?.op)?;
    if let Some(q) = &pty.quant {
        if !roundtrip_exact(q) || clamp_is_noop(lo, hi, q) {
            return None;
        }
    }
    let pa = attr(m.eg, a)?;
    let act = compose(pa.op.activation()?, lo, hi)?;
    let op = with_activation(pa.op, act)?;
    let new_attr = attr_leaf(m.eg, op, &pa.name);
    let mut children = vec![new_attr, t];
    for v in producer_vars(prod) {
        children.push(m.var(v)?);
    }
    let n = enode(prod, children)?;
    Some(m.eg.add(n))
}

/// The activation equal to clamping with `inner`, then to `[lo, hi]`: one clamp to
/// the intersection, when both intervals are ordered and the intersection is not
/// empty (otherwise the composition is a constant, not an activation). Bounds are
/// taken as they are (no arithmetic), and a `+0.0` lower bound with no upper bound is
/// `relu` (the interpreter's relu and clip(0, inf) are the same function; `-0.0`
/// stays a clip, since clip returns its bound).
pub fn compose(inner: Activation, lo: f32, hi: f32) -> Option<Activation> {
    let (a, b) = act_bounds(inner);
    if !(a <= b && lo <= hi) {
        return None;
    }
    let l = if lo > a { lo } else { a };
    let h = if hi < b { hi } else { b };
    if l.partial_cmp(&h)
        .is_none_or(|o| o == std::cmp::Ordering::Greater)
    {
        return None;
    }
    Some(if l == f32::NEG_INFINITY && h == f32::INFINITY {
        Activation::None
    } else if l.to_bits() == 0 && h == f32::INFINITY {
        Activation::Relu
    } else {
        Activation::Clip { min: l, max: h }
    })
}

/// `op` with its fused activation replaced.
pub(crate) fn with_activation(op: Op, act: Activation) -> Option<Op> {
    Some(match op {
        Op::Conv(a) => Op::Conv(qc_ir::ConvAttrs { act, ..a }),
        Op::ConvTranspose(a) => Op::ConvTranspose(qc_ir::ConvTransposeAttrs { act, ..a }),
        Op::Gemm(a) => Op::Gemm(GemmAttrs { act, ..a }),
        Op::MatMul { .. } => Op::MatMul { act },
        Op::Add { .. } => Op::Add { act },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interpreter's clamp (`qc-interp` float kernels), written out independently.
    fn clamp(x: f32, lo: f32, hi: f32) -> f32 {
        let y = if x < lo { lo } else { x };
        if y > hi {
            hi
        } else {
            y
        }
    }

    fn apply(a: Activation, x: f32) -> f32 {
        match a {
            Activation::None => x,
            Activation::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
            Activation::Clip { min, max } => clamp(x, min, max),
        }
    }

    #[test]
    fn composed_activations_are_bit_exact_on_special_values() {
        let xs = [
            f32::NEG_INFINITY,
            -7.5,
            -1.0,
            -0.0,
            0.0,
            0.25,
            3.0,
            6.0,
            6.5,
            f32::INFINITY,
            f32::NAN,
        ];
        let inners = [
            Activation::None,
            Activation::Relu,
            Activation::Clip { min: 0.0, max: 6.0 },
            Activation::Clip {
                min: -1.0,
                max: 3.0,
            },
            Activation::Clip {
                min: -0.0,
                max: 1.0,
            },
        ];
        let outers = [
            (0.0, f32::INFINITY),
            (0.0, 6.0),
            (-0.0, 6.0),
            (1.0, 2.0),
            (-3.0, 0.5),
            (f32::NEG_INFINITY, 2.0),
        ];
        let mut composed = 0;
        for inner in inners {
            for (lo, hi) in outers {
                let Some(c) = compose(inner, lo, hi) else {
                    continue;
                };
                composed += 1;
                for x in xs {
                    let want = clamp(apply(inner, x), lo, hi);
                    let got = apply(c, x);
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{inner:?} then [{lo}, {hi}] as {c:?} at {x}"
                    );
                }
            }
        }
        assert!(composed >= 25, "{composed}");
        // Disjoint clamps do not compose.
        assert_eq!(
            compose(
                Activation::Clip {
                    min: -1.0,
                    max: -0.5
                },
                0.0,
                6.0
            ),
            None
        );
        assert_eq!(
            compose(Activation::None, 0.0, 6.0),
            Some(Activation::Clip { min: 0.0, max: 6.0 })
        );
        assert_eq!(
            compose(Activation::None, 0.0, f32::INFINITY),
            Some(Activation::Relu)
        );
    }
}
