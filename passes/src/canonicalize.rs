//! `canonicalize-qdq`: the one pass that knows the QDQ encodings.
//!
//! After it, quantized arithmetic is ordinary ops on quantized types (see the crate
//! docs of `qc-ir` and the interpreter for their meaning). It walks the nodes once, in
//! order, and rewrites:
//!
//! - **`dequantize → op → quantize`.** A node `N` whose float operands are each
//!   `dequantize(v)` of a quantized `v` (or, see below, a constant with an exact or a
//!   compile-time quantized form), whose single f32 result is used only by `quantize`
//!   nodes that all produce the same type, becomes the same op on the quantized
//!   operands with that type; the quantizes' users use `N` directly. The verifier
//!   (`verify_node`) has the last word on whether the quantized form is valid for the
//!   op; where it is not, `N` stays float.
//!   - *Linear ops* (`conv`, `conv_transpose`, `gemm`, `matmul`): `x` must be per
//!     tensor, `w` per tensor or per axis along its output channels, the result per
//!     tensor, a gemm's `alpha` and `beta` 1. The bias becomes a raw i32 constant whose
//!     implied scale is `s_x * s_w[c]`: a `dequantize(i32 const, zero point 0)` whose
//!     scales are already `s_x * s_w[c]` (as f32, what onnxruntime writes) is reused as
//!     it is; any other constant bias (a mismatched scale, a float bias) is quantized
//!     from its real values with `qc_qmath::quantize_bias`, whose overflow check is
//!     exact; an overflow leaves the node float with a remark. **Not exact:** integer
//!     accumulation with one requantization differs from `dequantize → float op →
//!     quantize` by float rounding (usually not at all, at most one step where the
//!     float result lies near a rounding boundary), and a rescaled bias by its own
//!     rounding. This is the meaning of a QDQ model that every integer runtime uses.
//!   - *Every other op*: exact, since the interpreter defines an op on quantized types
//!     as "dequantize the operands, compute in f32, quantize the result" — which is the
//!     float chain itself. A float constant operand is allowed when all its elements
//!     are one finite value `c` (a scalar, typically): it becomes the i8 constant
//!     `sign(c)` with scale `|c|`, whose dequantized value is exactly `c`.
//!     `batch_norm` keeps its float parameters (they stay raw).
//! - **Fake-quant weights** (QAT): `quantize` of a float constant is evaluated at
//!   compile time into a quantized constant, so `dequantize(quantize(w))` is a
//!   dequantized constant and the rule above applies.
//! - **`quantize(dequantize(x))`**: `x` itself when the types are equal and the round
//!   trip is the identity on every code of the storage type (checked exhaustively, for
//!   storage of at most 16 bits); otherwise a `requantize` of `x`, which the
//!   interpreter defines as exactly this pair.
//!
//! Left alone, and reported with `PassCx::remark`:
//! - float ops between dequantize and quantize that cannot be rewritten, with the
//!   reason;
//! - `conv_integer` / `matmul_integer` fed by `dynamic_quantize` followed by a float
//!   rescale (`Cast → Mul(scale) → Add(bias)`, what onnxruntime's `quantize_dynamic`
//!   writes): their scale is computed at run time, so no static quantized type can
//!   express them. (QLinearConv / QLinearMatMul need nothing here: the importer
//!   already makes them `conv` / `matmul` on quantized types.)
//!
//! `dequantize → quantize` pairs with other ops between them in the other order
//! (`quantize → dequantize`) are the e-graph pass's business.
//!
//! **Invariants.** Every rewrite keeps the topological order (replacements are always
//! defined before their new uses); the pass ends with `Graph::compact`, so the
//! quantizes and dequantizes it made dead are gone.

use std::sync::Arc;

use qc_ir::{
    DType, Graph, Node, NodeId, Op, QType, QuantParams, Tensor, TensorData, TensorType, ValueDef,
    ValueId,
};

use crate::fold::{channel, const_def, quantize_tensor, real_values, Subst};
use crate::{Changed, Pass, PassCx, Result};

/// The `canonicalize-qdq` pass.
pub struct CanonicalizeQdq;

/// At most this many "float op left" remarks, then one summary line.
const MAX_REMARKS: usize = 20;

impl Pass for CanonicalizeQdq {
    fn name(&self) -> &'static str {
        "canonicalize-qdq"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        let values_before = g.values.len();
        let mut w = Walk::new(g);
        for i in 0..g.nodes.len() {
            if w.dead.get(i).copied().unwrap_or(true) {
                continue;
            }
            let n = NodeId::from_index(i);
            w.subst.apply_node(g, n);
            match g.node(n).op {
                Op::Quantize => w.quantize(g, n),
                Op::Dequantize
                | Op::Requantize
                | Op::DynamicQuantize
                | Op::Cast { .. }
                | Op::ConvInteger(_)
                | Op::MatMulInteger => {}
                _ => w.op(g, n),
            }
        }
        w.subst.apply_outputs(g);

        let dynamic = dynamic_quant_nodes(g);
        let s = &w.stats;
        let changed = s.rewritten + s.fake_quant + s.qdq_identity + s.qdq_requantize > 0;
        if changed || g.values.len() != values_before {
            g.compact();
        }

        cx.stat("rewritten", s.rewritten);
        cx.stat("bias-reused", s.bias_reused);
        cx.stat("bias-rescaled", s.bias_rescaled);
        cx.stat("bias-quantized", s.bias_quantized);
        cx.stat("fake-quant-folded", s.fake_quant);
        cx.stat("q-dq-removed", s.qdq_identity);
        cx.stat("q-dq-requantize", s.qdq_requantize);
        cx.stat("float-left", w.left.len());
        cx.stat("dynamic-quant-left", dynamic);
        let extra = w.left.len().saturating_sub(MAX_REMARKS);
        for r in w.left.into_iter().take(MAX_REMARKS) {
            cx.remark(r);
        }
        if extra > 0 {
            cx.remark(format!(
                "canonicalize-qdq: ... and {extra} more float ops left between dequantize and quantize"
            ));
        }
        if dynamic > 0 {
            cx.remark(format!(
                "canonicalize-qdq: {dynamic} conv_integer/matmul_integer node(s) fed by dynamic_quantize \
                 (onnxruntime quantize_dynamic) left as they are: their scale is computed at run time, \
                 so no static quantized type expresses them"
            ));
        }
        Ok(Changed::from_bool(changed))
    }
}

#[derive(Default)]
struct Stats {
    rewritten: usize,
    bias_reused: usize,
    bias_rescaled: usize,
    bias_quantized: usize,
    fake_quant: usize,
    qdq_identity: usize,
    qdq_requantize: usize,
}

/// How a linear op's bias became a raw i32 constant.
#[derive(Clone, Copy)]
enum Bias {
    None,
    Reused,
    Rescaled,
    Quantized,
}

/// The state of the one walk over the nodes.
struct Walk {
    subst: Subst,
    /// Quantize nodes whose result was replaced (removed by the final compaction).
    dead: Vec<bool>,
    /// Users of each value in the original graph. A value's users change only when
    /// the value is replaced, and replaced values are never looked up again.
    users: Vec<Vec<NodeId>>,
    graph_output: Vec<bool>,
    stats: Stats,
    /// Remarks about float ops left between dequantize and quantize.
    left: Vec<String>,
}

impl Walk {
    fn new(g: &Graph) -> Walk {
        let mut users = vec![Vec::new(); g.values.len()];
        for (n, node) in g.iter_nodes() {
            for &v in &node.inputs {
                if let Some(u) = users.get_mut(v.index()) {
                    if u.last() != Some(&n) {
                        u.push(n);
                    }
                }
            }
        }
        let mut graph_output = vec![false; g.values.len()];
        for p in &g.outputs {
            if let Some(o) = graph_output.get_mut(p.value.index()) {
                *o = true;
            }
        }
        Walk {
            subst: Subst::new(g.values.len()),
            dead: vec![false; g.nodes.len()],
            users,
            graph_output,
            stats: Stats::default(),
            left: Vec::new(),
        }
    }

    fn kill(&mut self, n: NodeId, result: ValueId, replacement: ValueId) {
        self.subst.set(result, replacement);
        if let Some(d) = self.dead.get_mut(n.index()) {
            *d = true;
        }
    }

    /// A `quantize` node: fake-quant folding, or `quantize(dequantize(x))`.
    fn quantize(&mut self, g: &mut Graph, n: NodeId) {
        let node = g.node(n);
        let (&[x], &[y]) = (&node.inputs[..], &node.outputs[..]) else {
            return;
        };
        let y_ty = g.ty(y).clone();
        if let Some((_, t)) = const_def(g, x) {
            if g.ty(x).is_quantized() {
                return;
            }
            // Evaluating the quantize now is the same computation, done once.
            if let Some(q) = quantize_tensor(t, &y_ty) {
                let c = g.add_const_tensor(Arc::new(q));
                let v = g.add_const_value(c, y_ty.quant.clone());
                self.kill(n, y, v);
                self.stats.fake_quant += 1;
            }
            return;
        }
        let Some(src) = dq_source(g, x) else { return };
        if *g.ty(src) == y_ty && roundtrip_is_identity(&y_ty) {
            self.kill(n, y, src);
            self.stats.qdq_identity += 1;
            return;
        }
        // The interpreter defines requantize as dequantize-then-quantize: exact.
        let old = std::mem::replace(&mut g.node_mut(n).op, Op::Requantize);
        g.node_mut(n).inputs = vec![src];
        if qc_ir::verify::verify_node(g, n).is_ok() {
            self.stats.qdq_requantize += 1;
        } else {
            g.node_mut(n).op = old;
            g.node_mut(n).inputs = vec![x];
        }
    }

    /// Any other op: rewrite it when it sits between dequantize and quantize.
    fn op(&mut self, g: &mut Graph, n: NodeId) {
        let node = g.node(n);
        let Some(&out) = node.outputs.first() else {
            return;
        };
        let users = self.users.get(out.index()).map_or(&[][..], Vec::as_slice);
        let feeds_quantize = users.iter().any(|&u| matches!(g.node(u).op, Op::Quantize));
        let reads_dequantize = node.inputs.iter().any(|&v| dq_source(g, v).is_some());
        if !(feeds_quantize && reads_dequantize) {
            return;
        }
        match self.rewrite(g, n) {
            Ok((quantizes, bias)) => {
                for (q, qo) in quantizes {
                    self.kill(q, qo, out);
                }
                self.stats.rewritten += 1;
                match bias {
                    Bias::None => {}
                    Bias::Reused => self.stats.bias_reused += 1,
                    Bias::Rescaled => self.stats.bias_rescaled += 1,
                    Bias::Quantized => self.stats.bias_quantized += 1,
                }
            }
            Err(why) => {
                let node = g.node(n);
                self.left.push(format!(
                    "canonicalize-qdq: float {} '{}' ({n}) left between dequantize and quantize: {why}",
                    node.op.name(),
                    node.name
                ));
            }
        }
    }

    /// Rewrite `n` in place into the op on quantized types; on success, the quantize
    /// nodes (and their results) it replaces.
    fn rewrite(
        &self,
        g: &mut Graph,
        n: NodeId,
    ) -> std::result::Result<(Vec<(NodeId, ValueId)>, Bias), String> {
        let node = g.node(n).clone();
        let [out] = node.outputs[..] else {
            return Err("it has more than one result".into());
        };
        if g.ty(out).dtype != DType::F32 {
            return Err(format!("its result is {}, not f32", g.ty(out).dtype));
        }
        if self.graph_output.get(out.index()).copied().unwrap_or(false) {
            return Err("its float result is a graph output".into());
        }
        let mut quantizes = Vec::new();
        let mut q_ty: Option<TensorType> = None;
        for &u in self.users.get(out.index()).map_or(&[][..], Vec::as_slice) {
            let un = g.node(u);
            let (Op::Quantize, [qo]) = (&un.op, &un.outputs[..]) else {
                return Err(format!(
                    "its float result is also used by {} '{}'",
                    un.op.name(),
                    un.name
                ));
            };
            let t = g.ty(*qo);
            match &q_ty {
                Some(q) if q != t => {
                    return Err("its quantize users produce different types".into());
                }
                Some(_) => {}
                None => q_ty = Some(t.clone()),
            }
            quantizes.push((u, *qo));
        }
        let q_ty = q_ty.ok_or("it has no quantize user")?;

        let (inputs, bias) = match &node.op {
            Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm(_) | Op::MatMul { .. } => {
                linear_operands(g, &node, &q_ty)?
            }
            Op::BatchNorm { .. } => {
                let mut ins = node.inputs.clone();
                let x = ins.first_mut().ok_or("it has no operands")?;
                *x = dq_source(g, *x).ok_or("operand 0 (x) is not dequantized")?;
                (ins, Bias::None)
            }
            _ => {
                let mut ins = Vec::with_capacity(node.inputs.len());
                for (k, &v) in node.inputs.iter().enumerate() {
                    let q = match dq_source(g, v) {
                        Some(x) => x,
                        None => exact_const(g, v).ok_or_else(|| {
                            format!(
                                "operand {k} is neither dequantized nor a constant with an exact quantized form"
                            )
                        })?,
                    };
                    ins.push(q);
                }
                (ins, Bias::None)
            }
        };

        // Applied tentatively: the verifier knows each op's rules for quantized types.
        let old_ty = std::mem::replace(&mut g.value_mut(out).ty, q_ty);
        g.node_mut(n).inputs = inputs;
        if let Err(e) = qc_ir::verify::verify_node(g, n) {
            g.value_mut(out).ty = old_ty;
            g.node_mut(n).inputs = node.inputs;
            return Err(format!("its quantized form is not valid: {e}"));
        }
        Ok((quantizes, bias))
    }
}

/// The quantized value `x` when `v` is `dequantize(x)` with an f32 result.
fn dq_source(g: &Graph, v: ValueId) -> Option<ValueId> {
    let val = g.values.get(v.index())?;
    if val.ty.dtype != DType::F32 || val.ty.is_quantized() {
        return None;
    }
    let ValueDef::Node { node, slot: 0 } = val.def else {
        return None;
    };
    let d = g.nodes.get(node.index())?;
    if !matches!(d.op, Op::Dequantize) {
        return None;
    }
    let &x = d.inputs.first()?;
    g.values.get(x.index())?.ty.is_quantized().then_some(x)
}

/// Whether `quantize(dequantize(q)) == q` for every code `q` of every channel of
/// `ty`'s params, checked exhaustively (storage of at most 16 bits and at most 64
/// channels; beyond that it is not claimed and the pair becomes a `requantize`).
fn roundtrip_is_identity(ty: &TensorType) -> bool {
    let Some(p) = &ty.quant else { return false };
    // Bounded work: 16-bit storage with up to 64 channels (4 Mi round trips).
    if p.storage.bits() > 16 || p.len() > 64 {
        return false;
    }
    (0..p.len()).all(|c| {
        (p.storage.min()..=p.storage.max()).all(|q| p.quantize(p.dequantize(q, c), c) == q)
    })
}

/// A raw f32 constant whose elements are all one finite value `c` as a quantized i8
/// constant of the same shape with the exact real value `c`: codes `sign(c)`, scale
/// `|c|` (scale 1 and code 0 for `+0.0`). `None` for anything else (`-0.0` included,
/// whose sign a quantized zero would lose).
fn exact_const(g: &mut Graph, v: ValueId) -> Option<ValueId> {
    let (_, t) = const_def(g, v)?;
    if g.ty(v).is_quantized() {
        return None;
    }
    let vals = t.as_f32()?;
    let &c = vals.first()?;
    if !c.is_finite() || vals.iter().any(|&x| x.to_bits() != c.to_bits()) {
        return None;
    }
    if c == 0.0 && c.is_sign_negative() {
        return None;
    }
    let (code, scale) = if c == 0.0 {
        (0i8, 1.0f32)
    } else {
        (if c > 0.0 { 1 } else { -1 }, c.abs())
    };
    let p = QuantParams::per_tensor(QType::I8, scale, 0);
    // (code - 0) as f32 * |c| is exactly c: multiplying by ±1 or 0 never rounds.
    if p.dequantize(i64::from(code), 0).to_bits() != c.to_bits() {
        return None;
    }
    let q = Tensor::new(t.shape().clone(), TensorData::I8(vec![code; vals.len()])).ok()?;
    let cid = g.add_const_tensor(Arc::new(q));
    Some(g.add_const_value(cid, Some(p)))
}

/// The quantized operands of a linear op (`x`, `w`, and the bias as a raw i32 constant).
fn linear_operands(
    g: &mut Graph,
    node: &Node,
    q_ty: &TensorType,
) -> std::result::Result<(Vec<ValueId>, Bias), String> {
    let ins = &node.inputs;
    if ins.len() > 3 {
        return Err(format!("it has {} operands", ins.len()));
    }
    let x = ins
        .first()
        .and_then(|&v| dq_source(g, v))
        .ok_or("operand 0 (x) is not dequantized")?;
    let w = ins
        .get(1)
        .and_then(|&v| dq_source(g, v))
        .ok_or("operand 1 (w) is not dequantized")?;
    let (px, pw) = match (&g.ty(x).quant, &g.ty(w).quant) {
        (Some(px), Some(pw)) => (px.clone(), pw.clone()),
        _ => return Err("operands are not quantized".into()),
    };
    let w_dims = g.ty(w).shape.dims().to_vec();
    if px.axis.is_some() {
        return Err("x is quantized per axis; the quantized form needs it per tensor".into());
    }
    if q_ty.quant.as_ref().is_some_and(|p| p.axis.is_some()) {
        return Err(
            "its result is quantized per axis; the quantized form needs it per tensor".into(),
        );
    }
    let w_axis = match &node.op {
        Op::Conv(_) => Some(0),
        Op::ConvTranspose(_) => Some(1),
        Op::Gemm(a) => Some(if a.trans_b { 0 } else { 1 }),
        _ => w_dims.len().checked_sub(1).filter(|_| w_dims.len() >= 2),
    };
    if let Some(a) = pw.axis {
        if Some(a) != w_axis {
            return Err(format!(
                "w is quantized per axis {a}, not along its output channels (axis {})",
                w_axis.map_or_else(|| "none".to_string(), |a| a.to_string())
            ));
        }
    }
    if let Op::Gemm(a) = &node.op {
        if a.alpha != 1.0 || a.beta != 1.0 {
            return Err(format!(
                "gemm with alpha {} and beta {} (the quantized form needs 1 and 1)",
                a.alpha, a.beta
            ));
        }
    }
    let sx = *px.scales.first().ok_or("x has no scale")?;
    let mut out = vec![x, w];
    let mut kind = Bias::None;
    if let Some(&b) = ins.get(2) {
        let (v, k) = bias(g, &node.op, b, sx, &pw, &w_dims, q_ty)?;
        out.push(v);
        kind = k;
    }
    Ok((out, kind))
}

/// The raw i32 bias of a quantized linear op, with implied scale `s_x * s_w[c]`.
fn bias(
    g: &mut Graph,
    op: &Op,
    b: ValueId,
    sx: f32,
    pw: &QuantParams,
    w_dims: &[usize],
    q_ty: &TensorType,
) -> std::result::Result<(ValueId, Bias), String> {
    // conv, conv_transpose (NC..) and gemm ([m, n]) all have their channels on axis 1.
    let n_out = *q_ty
        .shape
        .dims()
        .get(1)
        .ok_or("result has no channel axis")?;
    let w_scale = |c: usize| -> Option<f32> {
        match (pw.axis, op) {
            (None, _) => pw.scales.first().copied(),
            // conv_transpose's w is [C_in, C_out/group, ..]: channel c uses c mod C_out/group.
            (Some(_), Op::ConvTranspose(_)) => pw.scales.get(c % w_dims.get(1)?.max(&1)).copied(),
            (Some(_), _) => pw.scales.get(c).copied(),
        }
    };

    let (src, dequantized) = match dq_source(g, b) {
        Some(s) => (s, true),
        None => (b, false),
    };
    let (cid, t) = const_def(g, src).ok_or("the bias is not a (dequantized) constant")?;
    let t = t.clone();
    let src_ty = g.ty(src).clone();
    if !dequantized && (src_ty.is_quantized() || t.dtype() != DType::F32) {
        return Err(format!("the bias is a raw {} constant, not f32", t.dtype()));
    }
    let b_dims = t.dims().to_vec();
    // Output channel of each bias element (irrelevant for per-tensor weights).
    let chan = |i: usize| -> Option<usize> {
        if pw.axis.is_none() {
            return Some(0);
        }
        let last = *b_dims.last()?;
        (last == n_out && last > 0).then(|| i % last)
    };
    // The weight scale of bias element `i`'s output channel.
    let w_scale_of = |i: usize| -> std::result::Result<f32, String> {
        let c = chan(i).ok_or_else(|| {
            format!(
                "a bias of shape {:?} does not follow the output channels of per-channel weights",
                b_dims
            )
        })?;
        w_scale(c).ok_or_else(|| "the weight params do not cover the output channels".into())
    };

    if let (true, Some(pb)) = (dequantized, &src_ty.quant) {
        if pb.storage == QType::I32
            && t.dtype() == DType::I32
            && pb.zero_points.iter().all(|&z| z == 0)
        {
            let mut same = true;
            for i in 0..t.len() {
                let cb = channel(i, &b_dims, pb).ok_or("bias params do not fit its shape")?;
                if pb.scale(cb) != sx * w_scale_of(i)? {
                    same = false;
                    break;
                }
            }
            if same {
                return Ok((g.add_const_value(cid, None), Bias::Reused));
            }
        }
    }

    let reals = real_values(&t, &src_ty).ok_or("the bias values cannot be read")?;
    let mut q = Vec::with_capacity(reals.len());
    for (i, &r) in reals.iter().enumerate() {
        let sw = w_scale_of(i)?;
        // quantize_bias rounds r / (s_x * s_w) half to even and rejects, exactly,
        // anything outside i32.
        let v = qc_qmath::quantize_bias(r, sx, sw).map_err(|_| {
            format!(
                "bias element {i} ({r}) does not fit in int32 at scale {}",
                sx * sw
            )
        })?;
        q.push(v);
    }
    let tq = Tensor::new(t.shape().clone(), TensorData::I32(q)).map_err(|e| e.to_string())?;
    let kind = if dequantized {
        Bias::Rescaled
    } else {
        Bias::Quantized
    };
    Ok((g.add_const(tq), kind))
}

/// `conv_integer` / `matmul_integer` nodes fed by `dynamic_quantize`.
fn dynamic_quant_nodes(g: &Graph) -> usize {
    g.nodes
        .iter()
        .filter(|nd| matches!(nd.op, Op::ConvInteger(_) | Op::MatMulInteger))
        .filter(|nd| {
            nd.inputs.first().is_some_and(|&v| {
                let def = g.values.get(v.index()).map(|x| x.def);
                matches!(def, Some(ValueDef::Node { node, .. })
                    if g.nodes.get(node.index()).is_some_and(|d| matches!(d.op, Op::DynamicQuantize)))
            })
        })
        .count()
}
