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
//! - **A clamp or a per-channel scale before the quantize.** `dequantize → op →
//!   [mul c] → [relu | clip] → quantize` is the same form with a tail, each step
//!   the only user of the one before (and no graph output):
//!   - *relu / clip* after an op with a fused activation (conv, conv_transpose, gemm,
//!     matmul, add) becomes that activation (composed with one already there). On the
//!     quantized result the activation clamps codes to the quantized images of its
//!     bounds, and `quantize(clamp(r, lo, hi)) = clamp(quantize(r), quantize(lo),
//!     quantize(hi))` because quantize is monotone: exact beyond what the op's own
//!     rewrite is. Where that clamp changes no code (the result's zero point is its
//!     storage minimum for a relu, or a relu6 wider than the quantized range:
//!     `clamp_is_noop`) the activation is dropped: it is the identity.
//!     *Why here, not by re-running this pass after `egg` (which would fuse the
//!     float relu into the float conv first):* this is one more QDQ encoding of the
//!     same quantized op, which is this pass's job; looking one node further costs
//!     nothing, while a second `canonicalize-qdq` + `egg` round would double the
//!     pipeline's most expensive pass for every model.
//!   - *mul by a per-channel constant `c`* (one value per output channel, shape
//!     `[1,M,1,1]`, `[M,1,1]` or a scalar) after a `conv` whose weights are a
//!     dequantized constant with zero points 0: folded into the weights and bias
//!     *on their real values*, before the rewrite: channel `m`'s weight scale becomes
//!     `s_w[m] * |c[m]|` and its codes are negated where `c[m] < 0`; a dequantized
//!     bias likewise (codes negated, scale `s_b[m] * |c[m]|`), a float bias becomes
//!     `b[m] * c[m]`. **Exact condition:** every new scale and every new float bias
//!     value is the exact product (an f32 with no rounding), no `c[m]` is 0, and every
//!     negated code is still in its storage range. Then the new weights and bias are
//!     exactly `c[m]` times the old ones as real numbers, and `conv(x, w', b')` is
//!     `c * conv(x, w, b)` up to the float summation order; its integer form is the
//!     canonical meaning of that conv as for every linear op (see above). Otherwise
//!     the chain is left float, with a remark.
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
//! defined before their new uses; absorbed tail nodes and new constants are never
//! read by a node before them); the pass ends with `Graph::compact`, so the
//! quantizes, dequantizes and tail nodes it made dead are gone.

use std::sync::Arc;

use qc_ir::{
    Activation, DType, Graph, Node, NodeId, Op, QType, QuantParams, Tensor, TensorData, TensorType,
    ValueDef, ValueId,
};

use crate::egg::rules::fusion::{compose, with_activation};
use crate::egg::rules::{clamp_bounds, clamp_is_noop};
use crate::fold::{channel, const_def, from_i64, quantize_tensor, real_values, Subst};
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
        cx.stat("clamp-fused", s.clamp_fused);
        cx.stat("clamp-dropped", s.clamp_dropped);
        cx.stat("channel-mul-folded", s.mul_folded);
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
    clamp_fused: usize,
    clamp_dropped: usize,
    mul_folded: usize,
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

/// What a rewritten node absorbs between its result and its quantizes (see the
/// module docs): each step is the only user of the one before.
struct Tail {
    /// A `mul` by a per-channel constant after a conv, and its factors (one per
    /// output channel).
    scale: Option<(NodeId, Vec<f64>)>,
    /// A `relu` / `clip` after an op with a fused activation, and its bounds.
    clamp: Option<(NodeId, f32, f32)>,
    /// The float value the quantizes read (the node's own result without a tail).
    value: ValueId,
}

/// What a successful rewrite replaced.
struct Rewritten {
    quantizes: Vec<(NodeId, ValueId)>,
    bias: Bias,
    /// The clamp became an `act` (`true`) or was the identity (`false`).
    clamp: Option<bool>,
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

    /// The only user of `v`, when `v` has exactly one and is no graph output.
    fn only_user(&self, v: ValueId) -> Option<NodeId> {
        if self.graph_output.get(v.index()).copied().unwrap_or(true) {
            return None;
        }
        match self.users.get(v.index())?.as_slice() {
            [u] => Some(*u),
            _ => None,
        }
    }

    /// The tail after node `n`'s result `out` (see [`Tail`]).
    fn tail(&self, g: &Graph, n: NodeId, out: ValueId) -> Tail {
        let op = &g.node(n).op;
        let mut t = Tail {
            scale: None,
            clamp: None,
            value: out,
        };
        if matches!(op, Op::Conv(_)) {
            if let Some((m, k, v)) = self.channel_mul(g, t.value) {
                t.scale = Some((m, k));
                t.value = v;
            }
        }
        if op.activation().is_some() {
            if let Some(r) = self.only_user(t.value) {
                let rn = g.node(r);
                if let (Some((lo, hi)), [x], [y]) =
                    (clamp_bounds(&rn.op), &rn.inputs[..], &rn.outputs[..])
                {
                    if *x == t.value && g.ty(*y) == g.ty(t.value) {
                        t.clamp = Some((r, lo, hi));
                        t.value = *y;
                    }
                }
            }
        }
        t
    }

    /// `(mul node, factors, its result)` when the only user of the conv result `v` is
    /// a `mul` of `v` by a raw f32 constant with one value per channel (axis 1) that
    /// keeps `v`'s type.
    fn channel_mul(&self, g: &Graph, v: ValueId) -> Option<(NodeId, Vec<f64>, ValueId)> {
        let m = self.only_user(v)?;
        let node = g.node(m);
        let (Op::Mul, [a, b], [y]) = (&node.op, &node.inputs[..], &node.outputs[..]) else {
            return None;
        };
        let c = match (*a == v, *b == v) {
            (true, false) => *b,
            (false, true) => *a,
            _ => return None,
        };
        let (_, t) = const_def(g, c)?;
        let vt = g.ty(v);
        if g.ty(c).is_quantized() || g.ty(*y) != vt {
            return None;
        }
        let channels = *vt.shape.dims().get(1)?;
        let k = crate::egg::fold::channel_vector(t, vt.rank(), channels)?;
        Some((m, k, *y))
    }

    /// Any other op: rewrite it when it sits between dequantize and quantize.
    fn op(&mut self, g: &mut Graph, n: NodeId) {
        let node = g.node(n);
        let Some(&out) = node.outputs.first() else {
            return;
        };
        let reads_dequantize = node.inputs.iter().any(|&v| dq_source(g, v).is_some());
        if !reads_dequantize {
            return;
        }
        let tail = self.tail(g, n, out);
        let users = self
            .users
            .get(tail.value.index())
            .map_or(&[][..], Vec::as_slice);
        if !users.iter().any(|&u| matches!(g.node(u).op, Op::Quantize)) {
            return;
        }
        match self.rewrite(g, n, &tail) {
            Ok(done) => {
                for (q, qo) in done.quantizes {
                    self.kill(q, qo, out);
                }
                // The tail's nodes only fed the quantizes just replaced.
                for t in tail
                    .scale
                    .iter()
                    .map(|s| s.0)
                    .chain(tail.clamp.map(|c| c.0))
                {
                    if let Some(d) = self.dead.get_mut(t.index()) {
                        *d = true;
                    }
                }
                self.stats.rewritten += 1;
                self.stats.mul_folded += usize::from(tail.scale.is_some());
                match done.clamp {
                    Some(true) => self.stats.clamp_fused += 1,
                    Some(false) => self.stats.clamp_dropped += 1,
                    None => {}
                }
                match done.bias {
                    Bias::None => {}
                    Bias::Reused => self.stats.bias_reused += 1,
                    Bias::Rescaled => self.stats.bias_rescaled += 1,
                    Bias::Quantized => self.stats.bias_quantized += 1,
                }
            }
            Err(why) => {
                let node = g.node(n);
                let what = match (&tail.scale, &tail.clamp) {
                    (None, None) => String::new(),
                    (s, c) => format!(
                        " (with the {}{}{} after it)",
                        s.as_ref().map_or("", |_| "per-channel mul"),
                        if s.is_some() && c.is_some() {
                            " and the "
                        } else {
                            ""
                        },
                        c.map_or("", |(r, _, _)| g.node(r).op.name())
                    ),
                };
                self.left.push(format!(
                    "canonicalize-qdq: float {} '{}' ({n}){what} left between dequantize and quantize: {why}",
                    node.op.name(),
                    node.name
                ));
            }
        }
    }

    /// Rewrite `n` (with its tail) in place into the op on quantized types; on
    /// success, what it replaced. On failure the graph is as it was, apart from
    /// unused constants (dropped by the final compaction).
    fn rewrite(
        &self,
        g: &mut Graph,
        n: NodeId,
        tail: &Tail,
    ) -> std::result::Result<Rewritten, String> {
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
        if self
            .graph_output
            .get(tail.value.index())
            .copied()
            .unwrap_or(false)
        {
            return Err("the float result after it is a graph output".into());
        }
        let mut quantizes = Vec::new();
        let mut q_ty: Option<TensorType> = None;
        for &u in self
            .users
            .get(tail.value.index())
            .map_or(&[][..], Vec::as_slice)
        {
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

        // The clamp of the tail as the op's activation; dropped where it clamps nothing.
        let (op, clamp) = match tail.clamp {
            None => (node.op.clone(), None),
            Some((_, lo, hi)) => {
                let inner = node.op.activation().ok_or("it has no fused activation")?;
                let act = compose(inner, lo, hi)
                    .ok_or("the clamp after it does not compose with its activation")?;
                let p = q_ty
                    .quant
                    .as_ref()
                    .ok_or("its quantize users are not quantized")?;
                let (l, h) = crate::egg::rules::act_bounds(act);
                let (act, fused) = if clamp_is_noop(l, h, p) {
                    (Activation::None, false)
                } else {
                    (act, true)
                };
                let op =
                    with_activation(node.op.clone(), act).ok_or("it has no fused activation")?;
                (op, Some(fused))
            }
        };

        let scale = tail.scale.as_ref().map(|(_, k)| k.as_slice());
        let (inputs, bias) = match &node.op {
            Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm(_) | Op::MatMul { .. } => {
                linear_operands(g, &node, &q_ty, scale)?
            }
            _ if scale.is_some() => return Err("only a conv folds a per-channel mul".into()),
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
        g.node_mut(n).op = op;
        if let Err(e) = qc_ir::verify::verify_node(g, n) {
            g.value_mut(out).ty = old_ty;
            g.node_mut(n).inputs = node.inputs;
            g.node_mut(n).op = node.op;
            return Err(format!("its quantized form is not valid: {e}"));
        }
        Ok(Rewritten {
            quantizes,
            bias,
            clamp,
        })
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
    scale: Option<&[f64]>,
) -> std::result::Result<(Vec<ValueId>, Bias), String> {
    let ins = &node.inputs;
    if ins.len() > 3 {
        return Err(format!("it has {} operands", ins.len()));
    }
    let x = ins
        .first()
        .and_then(|&v| dq_source(g, v))
        .ok_or("operand 0 (x) is not dequantized")?;
    let mut w = ins
        .get(1)
        .and_then(|&v| dq_source(g, v))
        .ok_or("operand 1 (w) is not dequantized")?;
    if let Some(k) = scale {
        w = scaled_weights(g, w, k)?;
    }
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
        let (mut src, dequantized) = match dq_source(g, b) {
            Some(s) => (s, true),
            None => (b, false),
        };
        if let Some(k) = scale {
            src = scaled_bias(g, src, k)?;
        }
        let (v, k) = bias(g, &node.op, src, dequantized, sx, &pw, &w_dims, q_ty)?;
        out.push(v);
        kind = k;
    }
    Ok((out, kind))
}

/// The raw i32 bias of a quantized linear op, with implied scale `s_x * s_w[c]`, from
/// the bias constant `src` (the quantized constant a dequantize read when
/// `dequantized`, else a raw f32 constant).
#[allow(clippy::too_many_arguments)]
fn bias(
    g: &mut Graph,
    op: &Op,
    src: ValueId,
    dequantized: bool,
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

/// `s * a` as an f32 when the product needs no rounding and is a normal positive
/// number (`a` is the f64 of an f32, so the f64 product of the two is exact).
fn exact_scale(s: f32, a: f64) -> Option<f32> {
    let p = f64::from(s) * a;
    let f = p as f32;
    (f.is_normal() && f > 0.0 && f64::from(f) == p).then_some(f)
}

/// The codes of `t` (`m` channels along axis 0) negated where `k[c] < 0`, when every
/// negated code stays in `storage`'s range.
fn negated_codes(t: &Tensor, k: &[f64], storage: QType) -> std::result::Result<TensorData, String> {
    let m = k.len();
    let per = t
        .len()
        .checked_div(m)
        .filter(|&p| p * m == t.len() && p > 0);
    let per = per.ok_or("its shape does not follow the output channels")?;
    let mut codes = t.to_i64_vec();
    for (i, q) in codes.iter_mut().enumerate() {
        if k.get(i / per).is_some_and(|&c| c < 0.0) {
            *q = -*q;
            if *q < storage.min() || *q > storage.max() {
                return Err(format!(
                    "a negated code ({q}) is outside the range of {}",
                    storage.name()
                ));
            }
        }
    }
    from_i64(t.dtype(), codes).ok_or_else(|| format!("codes stored as {}", t.dtype()))
}

/// The quantized weight constant `w` of a conv with output channel `m` multiplied by
/// `k[m]` (see the module docs for the exact condition): scales `s_w[m] * |k[m]|`,
/// codes negated where `k[m] < 0`.
fn scaled_weights(g: &mut Graph, w: ValueId, k: &[f64]) -> std::result::Result<ValueId, String> {
    let (_, t) = const_def(g, w).ok_or("the weights are not a constant")?;
    let t = Arc::clone(t);
    let p = g
        .ty(w)
        .quant
        .clone()
        .ok_or("the weights are not quantized")?;
    if p.axis.is_some_and(|a| a != 0) || t.dims().first() != Some(&k.len()) {
        return Err("the weights' channels are not the mul's".into());
    }
    if p.zero_points.iter().any(|&z| z != 0) {
        return Err("the weights' zero points are not 0 (their codes cannot be negated)".into());
    }
    let scales = (0..k.len())
        .map(|c| exact_scale(p.scale(c), k[c].abs()))
        .collect::<Option<Vec<f32>>>()
        .ok_or("a weight scale times the mul's factor is not exact in f32 (or the factor is 0)")?;
    let data = negated_codes(&t, k, p.storage)?;
    let q = Tensor::new(t.shape().clone(), data).map_err(|e| e.to_string())?;
    let cid = g.add_const_tensor(Arc::new(q));
    let params = QuantParams::per_axis(p.storage, 0, scales, vec![0; k.len()]);
    Ok(g.add_const_value(cid, Some(params)))
}

/// The bias constant `src` (shape `[M]`) of a conv multiplied by `k[m]` per output
/// channel: a quantized one with zero points 0 gets codes negated where `k[m] < 0`
/// and scales `s_b[m] * |k[m]|`; a raw f32 one the values `b[m] * k[m]`. Each only
/// when exact (see the module docs).
fn scaled_bias(g: &mut Graph, src: ValueId, k: &[f64]) -> std::result::Result<ValueId, String> {
    let (_, t) = const_def(g, src).ok_or("the bias is not a (dequantized) constant")?;
    let t = Arc::clone(t);
    if t.dims() != [k.len()] {
        return Err(format!(
            "a bias of shape {:?} does not follow the output channels",
            t.dims()
        ));
    }
    match g.ty(src).quant.clone() {
        Some(p) => {
            if p.axis.is_some_and(|a| a != 0) || p.zero_points.iter().any(|&z| z != 0) {
                return Err("the bias params are not per channel with zero points 0".into());
            }
            let scales = (0..k.len())
                .map(|c| exact_scale(p.scale(c), k[c].abs()))
                .collect::<Option<Vec<f32>>>()
                .ok_or("a bias scale times the mul's factor is not exact in f32")?;
            let data = negated_codes(&t, k, p.storage)?;
            let q = Tensor::new(t.shape().clone(), data).map_err(|e| e.to_string())?;
            let cid = g.add_const_tensor(Arc::new(q));
            let params = QuantParams::per_axis(p.storage, 0, scales, vec![0; k.len()]);
            Ok(g.add_const_value(cid, Some(params)))
        }
        None => {
            let b = t.as_f32().ok_or("the bias is not f32")?;
            let v = b
                .iter()
                .zip(k)
                .map(|(&b, &c)| {
                    let p = f64::from(b) * c;
                    let f = p as f32;
                    (f.is_finite() && f64::from(f) == p).then_some(f)
                })
                .collect::<Option<Vec<f32>>>()
                .ok_or("a bias value times the mul's factor is not exact in f32")?;
            let t = Tensor::from_f32(vec![k.len()], v).map_err(|e| e.to_string())?;
            Ok(g.add_const(t))
        }
    }
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
