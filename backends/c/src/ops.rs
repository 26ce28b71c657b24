//! Per-node emission: one statement per node, calling a shared typed kernel with a
//! `static const` parameter block and tables made at compile time.
//!
//! [`node`] matches every [`Op`] exhaustively; an op or type combination without a
//! kernel returns [`Error::Unsupported`] naming the node. What each op's kernel must
//! reproduce is the interpreter's definition (`qc_interp`): integer accumulation and
//! `qc_qmath::Requantizer` for conv/gemm, and "dequantize → f32 op → quantize" for
//! everything else, which [`crate::exact`] turns into integer tables. Under the
//! `float` contract, the quantized add, softmax and global average `qc_ir::fused`
//! names take onnxruntime's fused arithmetic instead (module `fused`).
//!
//! Rare ops (n-ary sum, prelu, cast, reduce_mean, conv_transpose, conv_integer,
//! 3-D conv, batched matmul, matmul_integer, dynamic_quantize, max pool with
//! indices) are
//! inline statements with literal geometry rather than shared kernels; integer
//! accumulations there wrap in `uint32_t`, and f32 ones follow the interpreter's order.
//!
//! **Invariants.** Every table index the C code forms is in range by construction:
//! codes are offset by their type's minimum (tables have one entry per code of an
//! 8-bit type), and window/broadcast loops are bounded by the geometry validated here
//! against the node's result type.

use qc_ir::real;
use qc_ir::{
    Activation, DType, Graph, Node, NodeId, Op, PoolAttrs, QType, QuantParams, TensorType, ValueId,
};
use qc_qmath::{Contract, Requantizer};

use crate::emit::{array, c_i32, c_i64, ctype, Em};
use crate::exact::{self, key_f32, KEY_NEG_INF, KEY_POS_INF};
use crate::runtime::Piece;
use crate::{Error, Result};

mod conv3;
mod div;
mod fused;
mod half;
mod lrn;

struct Cx<'n> {
    id: NodeId,
    node: &'n Node,
}

impl Cx<'_> {
    fn err(&self, msg: impl Into<String>) -> Error {
        Error::Unsupported {
            node: self.id,
            op: self.node.op.name(),
            name: self.node.name.clone(),
            msg: msg.into(),
        }
    }

    fn input(&self, i: usize) -> Result<ValueId> {
        self.node
            .inputs
            .get(i)
            .copied()
            .ok_or_else(|| self.err(format!("missing operand {i}")))
    }

    fn output(&self) -> Result<ValueId> {
        match self.node.outputs.as_slice() {
            [y] => Ok(*y),
            _ => Err(self.err(format!(
                "{} results (the C backend handles one)",
                self.node.outputs.len()
            ))),
        }
    }

    /// Table / parameter name for this node.
    fn name(&self, what: &str) -> String {
        format!("qc_n{}_{what}", self.id.index())
    }
}

/// An 8-bit per-tensor quantized type: `(storage, scale, zero point)`.
fn q8(ty: &TensorType) -> Option<(QType, f32, i32)> {
    let p = ty.quant.as_ref()?;
    if p.len() != 1 || !matches!(p.storage, QType::U8 | QType::I8) {
        return None;
    }
    Some((p.storage, *p.scales.first()?, *p.zero_points.first()?))
}

fn sfx(d: DType) -> &'static str {
    d.name()
}

fn qmin(q: QType) -> i64 {
    q.min()
}

/// Emit the statement of one node.
pub(crate) fn node(em: &mut Em, id: NodeId, node: &Node) -> Result<String> {
    if crate::float_ops::applies(em.g, node) {
        return crate::float_ops::node(em, &crate::float_ops::FCx { id, node });
    }
    let cx = Cx { id, node };
    match &node.op {
        Op::Quantize => quantize(em, &cx),
        Op::Dequantize => unary_map(em, &cx, |x| x),
        Op::Requantize | Op::Identity => unary_map(em, &cx, |x| x),
        Op::Relu => unary_map(em, &cx, real::relu),
        Op::LeakyRelu { alpha } => {
            let a = *alpha;
            unary_map(em, &cx, move |x| real::leaky_relu(x, a))
        }
        Op::Clip { min, max } => {
            let (lo, hi) = real::clip_bounds(*min, *max);
            unary_map(em, &cx, move |x| real::clip(x, lo, hi))
        }
        Op::Sigmoid => unary_map(em, &cx, real::sigmoid),
        Op::HardSigmoid { alpha, beta } => {
            let (a, b) = (*alpha, *beta);
            unary_map(em, &cx, move |x| real::hard_sigmoid(x, a, b))
        }
        Op::HardSwish => unary_map(em, &cx, real::hard_swish),
        Op::Tanh => unary_map(em, &cx, real::tanh),
        Op::Flatten { .. } | Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } => {
            reshape(em, &cx)
        }
        Op::Conv(a) => conv(em, &cx, a),
        Op::Gemm(a) => gemm(em, &cx, a),
        Op::MatMul { act } => {
            // A 2-D matmul is a gemm without C (b's channel axis 1 in both).
            let two_d = |i: usize| {
                cx.input(i)
                    .and_then(|v| em.ty(v))
                    .is_ok_and(|t| t.shape.rank() == 2)
            };
            if node.inputs.len() != 2 {
                return Err(cx.err("matmul takes two operands"));
            }
            if !two_d(0) || !two_d(1) {
                return batched_matmul(em, &cx, *act, false);
            }
            let attrs = qc_ir::GemmAttrs {
                alpha: 1.0,
                beta: 1.0,
                trans_a: false,
                trans_b: false,
                act: *act,
            };
            gemm(em, &cx, &attrs)
        }
        Op::Add { act } => add_sub(em, &cx, *act, false),
        Op::Sub => add_sub(em, &cx, Activation::None, true),
        Op::Mul => binary_exact(em, &cx, Activation::None, Bin::Mul),
        Op::AveragePool {
            pool,
            count_include_pad,
        } => avg_pool(em, &cx, pool, *count_include_pad),
        Op::GlobalAveragePool => global_avg_pool(em, &cx),
        Op::MaxPool {
            pool,
            storage_order,
        } if node.outputs.len() == 2 => max_pool_indices(em, &cx, pool, *storage_order),
        Op::MaxPool { pool, .. } => max_pool(em, &cx, Some(pool)),
        Op::GlobalMaxPool => max_pool(em, &cx, None),
        Op::Softmax { axis } => softmax(em, &cx, *axis),
        Op::BatchNorm { epsilon } => batch_norm(em, &cx, *epsilon),
        Op::Transpose { perm } => transpose(em, &cx, perm),
        Op::Concat { axis } => concat(em, &cx, *axis),
        Op::Pad { pads, value } => pad(em, &cx, pads, *value),
        Op::Sum => sum(em, &cx),
        Op::PRelu => prelu(em, &cx),
        Op::Cast { to } => cast(em, &cx, *to),
        Op::ReduceMean { axes, .. } => reduce_mean(em, &cx, axes),
        Op::ConvTranspose(a) => conv_transpose(em, &cx, a),
        Op::ConvInteger(a) => conv_integer(em, &cx, a),
        Op::MatMulInteger => batched_matmul(em, &cx, Activation::None, true),
        Op::DynamicQuantize => dynamic_quantize(em, &cx),
        Op::Div => div::div(em, &cx),
        Op::Lrn(a) => lrn::lrn(em, &cx, a),
    }
}

/// The operands whose buffer the kernel of node `id` may overwrite with its result
/// (the callback of `qc_passes::memplan::plan_with`; the planner still checks the
/// lifetimes and sizes).
///
/// Only kernels that are elementwise over the result's flat index qualify: each reads
/// element `i` of that operand before writing element `i` of the result and never
/// reads an element it has written — the table maps (`unary_map`, typed reshapes),
/// the plain copies of reshape/identity (then no copy is emitted at all), the
/// quantized add/sub/mul (`binary_exact`, and the float contract's fused add), div
/// (raw integer and quantized; the integer kernel checks every divisor before writing
/// anything), the n-ary sum, prelu's x, and the f32
/// unary and binary loops. An operand qualifies only when it has the result's element
/// count and a compatible element type, so a broadcast operand (read many times)
/// never does.
pub(crate) fn in_place_operands(g: &Graph, id: NodeId) -> Vec<usize> {
    let Some(node) = g.nodes.get(id.index()) else {
        return Vec::new();
    };
    let [y] = node.outputs.as_slice() else {
        return Vec::new();
    };
    let Some(ty) = g.values.get(y.index()).map(|v| &v.ty) else {
        return Vec::new();
    };
    let elementwise = match &node.op {
        Op::Dequantize
        | Op::Requantize
        | Op::Identity
        | Op::Relu
        | Op::LeakyRelu { .. }
        | Op::Clip { .. }
        | Op::Sigmoid
        | Op::HardSigmoid { .. }
        | Op::HardSwish
        | Op::Tanh
        | Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. } => node.inputs.len() == 1,
        Op::Add { .. } | Op::Sub | Op::Mul => node.inputs.len() == 2,
        Op::Div => node.inputs.len() == 2,
        // The n-ary sum reads every operand at its broadcast position of element `o`
        // before writing element `o`.
        Op::Sum => !node.inputs.is_empty(),
        // PRelu reads x[o] (and the slope, a different or full-shape buffer) first.
        Op::PRelu => node.inputs.len() == 2,
        // Float quantize: 4-byte operand, 1-byte result, never equal sizes.
        Op::Quantize
        | Op::Conv(_)
        | Op::Gemm(_)
        | Op::MatMul { .. }
        | Op::AveragePool { .. }
        | Op::GlobalAveragePool
        | Op::MaxPool { .. }
        | Op::GlobalMaxPool
        | Op::Softmax { .. }
        | Op::BatchNorm { .. }
        | Op::Transpose { .. }
        | Op::Concat { .. }
        | Op::Pad { .. }
        | Op::DynamicQuantize
        | Op::Cast { .. }
        | Op::ConvInteger(_)
        | Op::ConvTranspose(_)
        | Op::MatMulInteger
        | Op::ReduceMean { .. }
        | Op::Lrn(_) => false,
    };
    if !elementwise {
        return Vec::new();
    }
    let n = numel(ty);
    // The same C element type, or two 8-bit ones (character types may alias each
    // other; other pairs such as int32_t/float would break strict aliasing).
    let compatible = |d: DType| d == ty.dtype || (d.size() == 1 && ty.dtype.size() == 1);
    let candidates = if matches!(node.op, Op::PRelu) {
        1
    } else {
        node.inputs.len()
    };
    node.inputs
        .iter()
        .take(candidates)
        .enumerate()
        .filter(|(_, &x)| {
            g.values
                .get(x.index())
                .is_some_and(|v| numel(&v.ty) == n && compatible(v.ty.dtype))
        })
        .map(|(i, _)| i)
        .collect()
}

/// Geometry (`[h, w]` view) of NC + 1 or 2 spatial dims.
fn spatial2(dims: &[usize]) -> Option<(usize, usize, usize, usize)> {
    match dims {
        [n, c, w] => Some((*n, *c, 1, *w)),
        [n, c, h, w] => Some((*n, *c, *h, *w)),
        _ => None,
    }
}

/// `[h, w]` view of a per-spatial-dim attribute (1-D: `[default, v]`).
fn attr2(v: &[usize], rank: usize, default: usize) -> Option<[usize; 2]> {
    match (v.len(), rank) {
        // A 1-D op's virtual leading dim has extent 1 whatever the default.
        (0, 1) => Some([1, default]),
        (0, _) => Some([default, default]),
        (1, 1) => Some([1, v[0]]),
        (2, 2) => Some([v[0], v[1]]),
        _ => None,
    }
}

/// `[ph, pw]` begin pads and `[eh, ew]` end pads.
fn pads2(p: &[usize], rank: usize) -> Option<([usize; 2], [usize; 2])> {
    match (p.len(), rank) {
        (0, _) => Some(([0, 0], [0, 0])),
        (2, 1) => Some(([0, p[0]], [0, p[1]])),
        (4, 2) => Some(([p[0], p[1]], [p[2], p[3]])),
        _ => None,
    }
}

fn i32c(cx: &Cx, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| cx.err(format!("dimension {v} does not fit in int32")))
}

// ---------------------------------------------------------------------------------
// Boundaries and elementwise maps

fn quantize(em: &mut Em, cx: &Cx) -> Result<String> {
    let (x, y) = (cx.input(0)?, cx.output()?);
    let (tx, ty) = (em.ty(x)?, em.ty(y)?);
    if tx.dtype != DType::F32 || tx.is_quantized() {
        return Err(cx.err(format!("quantize from {} (f32 only)", tx.dtype)));
    }
    let Some((q, s, zp)) = q8(ty) else {
        return Err(cx.err("quantize to a type other than 8-bit per-tensor"));
    };
    // quantize(x) is monotone in x; NaN (outside the key range) maps to the zero point.
    let f = |k: i64| qc_qmath::quantize(key_f32(k), s, zp, q);
    let (base, taus) = exact::thresholds(KEY_NEG_INF, KEY_POS_INF, 256, f)
        .ok_or_else(|| cx.err("quantize thresholds"))?;
    let nan = q.saturate(i64::from(zp));
    let tname = cx.name("thr");
    em.data_once(&tname, || Ok(array("int32_t", &tname, &taus)))?;
    em.need(Piece::Thresh32);
    em.need(Piece::F32Key);
    let yt = ctype(ty.dtype);
    let kname = format!("qc_quantize_{}", sfx(ty.dtype));
    em.kernel(&kname, || {
        format!(
            r#"
/* quantize: y = base + #(thresholds <= key(x)); NaN -> nanv. Integer-only. */
static void {kname}(const float *x, {yt} *y, int32_t n, const int32_t *t, int32_t nt, int32_t base, int32_t nanv)
{{
    int32_t i;
    for (i = 0; i < n; i++) {{
        uint32_t b;
        memcpy(&b, &x[i], sizeof b);
        if ((b & 0x7fffffffu) > 0x7f800000u) {{
            y[i] = ({yt})nanv;
        }} else {{
            y[i] = ({yt})(base + qc_thresh32(t, nt, qc_f32_key(b)));
        }}
    }}
}}
"#
        )
    });
    let n = i32c(cx, numel(ty))?;
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    Ok(format!(
        "    {kname}({px}, {py}, {n}, {tname}, {}, {base}, {nan});\n",
        taus.len()
    ))
}

fn numel(t: &TensorType) -> usize {
    t.shape.dims().iter().product()
}

/// A unary op (or a conversion) as a table over the 8-bit codes of its operand:
/// `y = quantize(f(dequantize(x)))`, or the f32 `f(dequantize(x))` for a float result.
fn unary_map(em: &mut Em, cx: &Cx, f: impl Fn(f32) -> f32) -> Result<String> {
    let (x, y) = (cx.input(0)?, cx.output()?);
    if cx.node.inputs.len() != 1 {
        return Err(cx.err("expects one operand"));
    }
    let (tx, ty) = (em.ty(x)?.clone(), em.ty(y)?.clone());
    if tx.shape != ty.shape {
        return Err(cx.err("operand and result shapes differ"));
    }
    if tx == ty && matches!(cx.node.op, Op::Identity) {
        return copy(em, x, y, &ty);
    }
    let Some((qx, sx, zx)) = q8(&tx) else {
        return Err(cx.err(format!(
            "operand of type {}{} (the C backend maps 8-bit per-tensor quantized operands)",
            tx.dtype,
            if tx.is_quantized() { " quantized" } else { "" }
        )));
    };
    let real = |q: i64| f(qc_qmath::dequantize(q, sx, zx));
    let tname = cx.name("map");
    let (kname, tabtype) = match (&ty.quant, ty.dtype) {
        (Some(_), _) => {
            let Some((qy, sy, zy)) = q8(&ty) else {
                return Err(cx.err("result quantized other than 8-bit per tensor"));
            };
            let tab = exact::lut(qx, |q| qc_qmath::quantize(real(q), sy, zy, qy));
            em.data_once(&tname, || Ok(array(ctype(ty.dtype), &tname, &tab)))?;
            (
                format!("qc_map_{}_{}", sfx(tx.dtype), sfx(ty.dtype)),
                ctype(ty.dtype),
            )
        }
        (None, DType::F32) => {
            let tab: Vec<String> = exact::lut(qx, real)
                .into_iter()
                .map(|v| exact::c_float(v).ok_or_else(|| cx.err(format!("table value {v}"))))
                .collect::<Result<_>>()?;
            em.data_once(&tname, || Ok(array("float", &tname, &tab)))?;
            (format!("qc_map_{}_f32", sfx(tx.dtype)), "float")
        }
        (None, d) => return Err(cx.err(format!("result of type {d}"))),
    };
    let xt = ctype(tx.dtype);
    let yt = ctype(ty.dtype);
    let xmin = qmin(qx);
    em.kernel(&kname, || {
        format!(
            r#"
/* y = tab[x - min(x)]: any function of one 8-bit code. */
static void {kname}(const {xt} *x, {yt} *y, int32_t n, const {tabtype} *tab)
{{
    int32_t i;
    for (i = 0; i < n; i++) {{
        y[i] = tab[(int32_t)x[i] - ({xmin})];
    }}
}}
"#
        )
    });
    let n = i32c(cx, numel(&ty))?;
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    Ok(format!("    {kname}({px}, {py}, {n}, {tname});\n"))
}

fn copy(em: &mut Em, x: ValueId, y: ValueId, ty: &TensorType) -> Result<String> {
    let bytes = ty.size_bytes().map_err(|e| Error::Graph(e.to_string()))?;
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    if px == py || bytes == 0 {
        return Ok(String::new());
    }
    Ok(format!("    memcpy({py}, {px}, {bytes});\n"))
}

fn reshape(em: &mut Em, cx: &Cx) -> Result<String> {
    let (x, y) = (cx.input(0)?, cx.output()?);
    let (tx, ty) = (em.ty(x)?.clone(), em.ty(y)?.clone());
    if numel(&tx) != numel(&ty) {
        return Err(cx.err("element counts differ"));
    }
    if tx.dtype == ty.dtype && tx.quant == ty.quant {
        return copy(em, x, y, &ty);
    }
    // Different quantization: the interpreter requantizes through f32.
    let same_shape = TensorType {
        shape: tx.shape.clone(),
        ..ty.clone()
    };
    if same_shape.quant.is_some() && q8(&tx).is_some() {
        return unary_map_typed(em, cx, x, y, &tx, &ty);
    }
    Err(cx.err("reshape changing the element type"))
}

fn unary_map_typed(
    em: &mut Em,
    cx: &Cx,
    x: ValueId,
    y: ValueId,
    tx: &TensorType,
    ty: &TensorType,
) -> Result<String> {
    let (Some((qx, sx, zx)), Some((qy, sy, zy))) = (q8(tx), q8(ty)) else {
        return Err(cx.err("8-bit per-tensor types expected"));
    };
    let tab = exact::lut(qx, |q| {
        qc_qmath::quantize(qc_qmath::dequantize(q, sx, zx), sy, zy, qy)
    });
    let tname = cx.name("map");
    em.data_once(&tname, || Ok(array(ctype(ty.dtype), &tname, &tab)))?;
    let (xt, yt, xmin) = (ctype(tx.dtype), ctype(ty.dtype), qmin(qx));
    let kname = format!("qc_map_{}_{}", sfx(tx.dtype), sfx(ty.dtype));
    em.kernel(&kname, || {
        format!(
            r#"
/* y = tab[x - min(x)]: any function of one 8-bit code. */
static void {kname}(const {xt} *x, {yt} *y, int32_t n, const {yt} *tab)
{{
    int32_t i;
    for (i = 0; i < n; i++) {{
        y[i] = tab[(int32_t)x[i] - ({xmin})];
    }}
}}
"#
        )
    });
    let n = i32c(cx, numel(ty))?;
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    Ok(format!("    {kname}({px}, {py}, {n}, {tname});\n"))
}

// ---------------------------------------------------------------------------------
// Conv and gemm: integer accumulation, per-channel requantization

/// Per-output-channel epilogue constants, as the interpreter's `Epilogue::Quant`.
struct Epi {
    mult: Vec<i32>,
    shift: Vec<i32>,
    fmult: Vec<String>,
    lo: Vec<i64>,
    hi: Vec<i64>,
    zy: i32,
    q: QType,
}

fn epilogue(
    cx: &Cx,
    contract: Contract,
    sx: f32,
    sw: &[f32],
    ty: &TensorType,
    act: Activation,
) -> Result<Epi> {
    let Some((q, sy, zy)) = q8(ty) else {
        return Err(cx.err("result must be 8-bit per-tensor quantized"));
    };
    let mut e = Epi {
        mult: Vec::new(),
        shift: Vec::new(),
        fmult: Vec::new(),
        lo: Vec::new(),
        hi: Vec::new(),
        zy,
        q,
    };
    for &s in sw {
        let rq = Requantizer::new(contract, sx, s, sy)?;
        let m = rq.fixed_multiplier();
        e.mult.push(m.m);
        e.shift.push(m.shift.clamp(-31, 30));
        e.fmult.push(
            exact::c_float(rq.float_multiplier()).ok_or_else(|| cx.err("multiplier not finite"))?,
        );
        let (l, h) = match act {
            Activation::None => (q.min(), q.max()),
            Activation::Relu => (qc_qmath::quantize(0.0, sy, zy, q), q.max()),
            Activation::Clip { min, max } => (
                qc_qmath::quantize(min, sy, zy, q),
                qc_qmath::quantize(max, sy, zy, q),
            ),
        };
        e.lo.push(l);
        e.hi.push(h);
    }
    Ok(e)
}

/// The epilogue tables; returns the initializer fields `mult, shift, fmult, lo, hi`.
fn epilogue_data(em: &mut Em, cx: &Cx, e: &Epi) -> Result<String> {
    let contract = em.opts.contract;
    let (mn, sn, fnm, ln, hn) = (
        cx.name("mult"),
        cx.name("shift"),
        cx.name("fmult"),
        cx.name("lo"),
        cx.name("hi"),
    );
    let lo: Vec<String> = e.lo.iter().map(|&v| c_i32(v as i32)).collect();
    let hi: Vec<String> = e.hi.iter().map(|&v| c_i32(v as i32)).collect();
    em.data_once(&ln, || Ok(array("int32_t", &ln, &lo)))?;
    em.data_once(&hn, || Ok(array("int32_t", &hn, &hi)))?;
    Ok(match contract {
        Contract::Float => {
            em.need(Piece::RqFloat);
            em.data_once(&fnm, || Ok(array("float", &fnm, &e.fmult)))?;
            format!("NULL, NULL, {fnm}, {ln}, {hn}")
        }
        Contract::Fixed | Contract::FixedSingle => {
            em.need(if contract == Contract::Fixed {
                Piece::RqFixed
            } else {
                Piece::RqSingle
            });
            let m: Vec<String> = e.mult.iter().map(|&v| c_i32(v)).collect();
            em.data_once(&mn, || Ok(array("int32_t", &mn, &m)))?;
            em.data_once(&sn, || Ok(array("int8_t", &sn, &e.shift)))?;
            format!("{mn}, {sn}, NULL, {ln}, {hn}")
        }
    })
}

/// The C epilogue statement: `acc` (uint32_t) of channel `c` into `v` (int64_t).
fn epilogue_code(contract: Contract, q: QType) -> String {
    let scale = match contract {
        Contract::Float => "qc_rq_float((int32_t)acc, p->fmult[c])",
        Contract::Fixed | Contract::FixedSingle => "qc_rq((int32_t)acc, p->mult[c], p->shift[c])",
    };
    // lo/hi lie inside the storage range (they are quantize() results), so clamping
    // to them is the interpreter's saturate-then-clamp (with lo > hi both give hi).
    let _ = q;
    format!(
        "v = {scale} + p->zy;\n                if (v < p->lo[c]) {{\n                    v = p->lo[c];\n                }}\n                if (v > p->hi[c]) {{\n                    v = p->hi[c];\n                }}"
    )
}

/// Weight scales and zero points per output channel (`axis` is the channel axis of w).
fn weight_params(cx: &Cx, p: &QuantParams, n: usize, axis: usize) -> Result<(Vec<f32>, Vec<i32>)> {
    if p.len() == 1 {
        let (Some(&s), Some(&z)) = (p.scales.first(), p.zero_points.first()) else {
            return Err(cx.err("empty weight quantization parameters"));
        };
        return Ok((vec![s; n], vec![z; n]));
    }
    if p.axis != Some(axis) || p.len() != n || p.zero_points.len() != n {
        return Err(cx.err(format!(
            "weights quantized per axis {:?} with {} params; expected per tensor or axis {axis} with {n}",
            p.axis,
            p.len()
        )));
    }
    Ok((p.scales.clone(), p.zero_points.clone()))
}

fn conv(em: &mut Em, cx: &Cx, a: &qc_ir::ConvAttrs) -> Result<String> {
    let (x, w, y) = (cx.input(0)?, cx.input(1)?, cx.output()?);
    if em.ty(x)?.shape.rank() == 5 {
        return conv3::conv3(em, cx, a);
    }
    let bias = cx.node.inputs.get(2).copied();
    let (tx, tw, ty) = (em.ty(x)?.clone(), em.ty(w)?.clone(), em.ty(y)?.clone());
    let Some((qx, sx, zx)) = q8(&tx) else {
        return Err(cx.err("conv on a float or non-8-bit operand (no float conv kernel yet)"));
    };
    let Some(pw_) = tw
        .quant
        .as_ref()
        .filter(|p| matches!(p.storage, QType::U8 | QType::I8))
    else {
        return Err(cx.err("conv weights must be 8-bit quantized"));
    };
    let rank = tx.shape.rank().saturating_sub(2);
    let (Some((n, cin, h, wd)), Some((_, cout, oh, ow))) =
        (spatial2(tx.shape.dims()), spatial2(ty.shape.dims()))
    else {
        return Err(cx.err("conv over other than 1 or 2 spatial dims"));
    };
    let wd_ = tw.shape.dims();
    let (kh, kw) = match wd_ {
        [_, _, k] => (1, *k),
        [_, _, a, b] => (*a, *b),
        _ => return Err(cx.err("weight rank")),
    };
    let (Some(s), Some(d), Some((pb, pe))) = (
        attr2(&a.strides, rank, 1),
        attr2(&a.dilations, rank, 1),
        pads2(&a.pads, rank),
    ) else {
        return Err(cx.err("conv attributes do not match the rank"));
    };
    let g = a.group;
    if kh == 0
        || kw == 0
        || g == 0
        || cin % g != 0
        || cout % g != 0
        || wd_.first() != Some(&cout)
        || wd_.get(1) != Some(&(cin / g))
    {
        return Err(cx.err("inconsistent channels / group"));
    }
    let out_dim = |i: usize, inp: usize, k: usize| -> Option<usize> {
        let span = d[i] * (k - 1) + 1;
        let padded = inp + pb[i] + pe[i];
        padded.checked_sub(span).map(|r| r / s[i] + 1)
    };
    if out_dim(0, h, kh) != Some(oh)
        || out_dim(1, wd, kw) != Some(ow)
        || s.contains(&0)
        || d.contains(&0)
    {
        return Err(cx.err("result shape disagrees with the conv geometry"));
    }
    let (sw, zw) = weight_params(cx, pw_, cout, 0)?;
    let epi = epilogue(cx, em.opts.contract, sx, &sw, &ty, a.act)?;
    let fields = epilogue_data(em, cx, &epi)?;
    let zwname = cx.name("zw");
    let zw_expr = if zw.iter().all(|&z| z == 0) {
        "NULL".to_string()
    } else {
        em.data_once(&zwname, || Ok(array("int32_t", &zwname, &zw)))?;
        zwname
    };
    let bias_expr = match bias {
        Some(b) => {
            let tb = em.ty(b)?;
            if tb.dtype != DType::I32 || tb.is_quantized() || numel(tb) != cout {
                return Err(cx.err("bias must be raw i32 with one value per output channel"));
            }
            em.ptr(b)?
        }
        None => "NULL".into(),
    };
    let pointwise =
        kh == 1 && kw == 1 && s == [1, 1] && pb == [0, 0] && pe == [0, 0] && oh == h && ow == wd;
    let dsp = em.opts.cpu != crate::Cpu::Generic
        && pointwise
        && g == 1
        && cin.is_multiple_of(2)
        && zw.iter().all(|&z| z == 0)
        && em.g.const_of(w).is_some()
        && bias.is_none_or(|b| em.g.const_of(b).is_some());
    let packed = if dsp {
        match (
            pack_pairs(em, cx, w, cin)?,
            fold_bias(em, cx, w, bias, cout, zx)?,
        ) {
            (Some(p), Some(f)) => Some((p, f)),
            _ => None,
        }
    } else {
        None
    };
    // Any other conv with unit horizontal dilation and zero weight zero points: rows
    // of weight pairs for the dual MAC.
    // Depthwise: interior windows with the zero point folded into the bias.
    let depthwise = em.opts.cpu != crate::Cpu::Generic
        && packed.is_none()
        && g == cin
        && g == cout
        && d[1] == 1
        && zw.iter().all(|&z| z == 0)
        && em.g.const_of(w).is_some()
        && bias.is_none_or(|b| em.g.const_of(b).is_some());
    let dw_pack = if depthwise {
        match (
            pack_rows(em, cx, w, kw)?,
            fold_bias(em, cx, w, bias, cout, zx)?,
        ) {
            (Some(r), Some(f)) => Some((r, f)),
            _ => None,
        }
    } else {
        None
    };
    // Other convs with an even number of input channels per group: pairs along the
    // input channels, one packed weight word per tap and channel pair.
    let chan = em.opts.cpu != crate::Cpu::Generic
        && packed.is_none()
        && dw_pack.is_none()
        && (cin / g).is_multiple_of(4)
        && tw.dtype == DType::I8
        && zw.iter().all(|&z| z == 0)
        && em.g.const_of(w).is_some();
    let ch_pack = if chan {
        pack_channels(em, cx, w, cout, cin / g, kh * kw, zx)?
    } else {
        None
    };
    // (Odd widths pay a tail per row and measured slower than the generic kernel.)
    let rows = em.opts.cpu != crate::Cpu::Generic
        && packed.is_none()
        && dw_pack.is_none()
        && ch_pack.is_none()
        && d[1] == 1
        && kw % 2 == 0
        && zw.iter().all(|&z| z == 0);
    let row_pack = if rows {
        pack_rows(em, cx, w, kw)?
    } else {
        None
    };
    em.need(Piece::ConvParams);
    let pname = cx.name("p");
    let dims: Vec<i32> = [
        n, cin, h, wd, cout, oh, ow, kh, kw, s[0], s[1], pb[0], pb[1], d[0], d[1], g,
    ]
    .iter()
    .map(|&v| i32c(cx, v))
    .collect::<Result<_>>()?;
    let dims_s: Vec<String> = dims.iter().map(|v| v.to_string()).collect();
    let p_init = format!(
        "static const qc_conv_t {pname} = {{{}, {zx}, {}, {bias_expr}, {zw_expr}, {fields}}};\n",
        dims_s.join(", "),
        epi.zy
    );
    // The bias pointer may be a constant array emitted by `ptr` above; the block
    // comes after it in the data section.
    em.data_once(&pname, || Ok(p_init))?;
    let (xt, wt, yt) = (ctype(tx.dtype), ctype(tw.dtype), ctype(ty.dtype));
    let kname = format!(
        "qc_conv_{}_{}_{}",
        sfx(tx.dtype),
        sfx(tw.dtype),
        sfx(ty.dtype)
    );
    let code = epilogue_code(em.opts.contract, epi.q);
    let _ = qx;
    let generic = packed.is_none() && row_pack.is_none() && dw_pack.is_none() && ch_pack.is_none();
    em.kernel_if(generic, &kname, || {
        format!(
            r#"
/* Quantized convolution (NCHW, groups, stride, dilation, zero-padded taps skipped):
 * acc = bias + sum (x - zx) * (w - zw[c]) in wrapping 32-bit, then requantize, clamp.
 * The tap range inside the input is computed once per output row/column, so the
 * inner loops carry no bounds checks; a 1x1 stride-1 unpadded conv is a plain
 * channel reduction. */
static void {kname}(const {xt} *x, const {wt} *w, {yt} *y, const qc_conv_t *p)
{{
    int32_t cig = p->cin / p->group, cog = p->cout / p->group, ksz = p->kh * p->kw;
    int32_t hw = p->h * p->w, ohw = p->oh * p->ow;
    int32_t b, c, oy, ox, ci, ky, kx;
    int32_t pointwise = ksz == 1 && p->sh == 1 && p->sw == 1 && p->ph == 0 && p->pw == 0 && p->oh == p->h && p->ow == p->w;
    for (b = 0; b < p->n; b++) {{
        for (c = 0; c < p->cout; c++) {{
            int32_t zw = p->zw != NULL ? p->zw[c] : 0, zx = p->zx;
            uint32_t bias = p->bias != NULL ? (uint32_t)p->bias[c] : 0u;
            const {wt} *wc = w + (size_t)c * (size_t)cig * (size_t)ksz;
            const {xt} *xg = x + ((size_t)b * (size_t)p->cin + (size_t)(c / cog) * (size_t)cig) * (size_t)hw;
            {yt} *yc = y + ((size_t)b * (size_t)p->cout + (size_t)c) * (size_t)ohw;
            if (pointwise) {{
                int32_t px;
                for (px = 0; px < ohw; px++) {{
                    uint32_t acc = bias;
                    int64_t v;
                    const {xt} *xp = xg + px;
                    for (ci = 0; ci < cig; ci++) {{
                        acc += (uint32_t)(((int32_t)xp[(size_t)ci * (size_t)hw] - zx) * ((int32_t)wc[ci] - zw));
                    }}
                {code}
                    yc[px] = ({yt})v;
                }}
                continue;
            }}
            for (oy = 0; oy < p->oh; oy++) {{
                int32_t iy0 = oy * p->sh - p->ph;
                int32_t ky0 = iy0 < 0 ? (-iy0 + p->dh - 1) / p->dh : 0;
                int32_t ky1 = p->h - iy0 <= 0 ? 0 : (p->h - iy0 + p->dh - 1) / p->dh;
                if (ky1 > p->kh) {{
                    ky1 = p->kh;
                }}
                for (ox = 0; ox < p->ow; ox++) {{
                    int32_t ix0 = ox * p->sw - p->pw;
                    int32_t kx0 = ix0 < 0 ? (-ix0 + p->dw - 1) / p->dw : 0;
                    int32_t kx1 = p->w - ix0 <= 0 ? 0 : (p->w - ix0 + p->dw - 1) / p->dw;
                    uint32_t acc = bias;
                    int64_t v;
                    if (kx1 > p->kw) {{
                        kx1 = p->kw;
                    }}
                    for (ci = 0; ci < cig; ci++) {{
                        const {xt} *xc = xg + (size_t)ci * (size_t)hw;
                        const {wt} *wk = wc + (size_t)ci * (size_t)ksz;
                        for (ky = ky0; ky < ky1; ky++) {{
                            int32_t row = (iy0 + ky * p->dh) * p->w + ix0;
                            const {wt} *wr = wk + ky * p->kw;
                            for (kx = kx0; kx < kx1; kx++) {{
                                acc += (uint32_t)(((int32_t)xc[row + kx * p->dw] - zx) * ((int32_t)wr[kx] - zw));
                            }}
                        }}
                    }}
                {code}
                    yc[oy * p->ow + ox] = ({yt})v;
                }}
            }}
        }}
    }}
}}
"#
        )
    });
    if let Some((wpn, fbn)) = packed {
        em.need(Piece::Smlad);
        let dname = format!("qc_pw_dsp_{}_{}", sfx(tx.dtype), sfx(ty.dtype));
        let code = epilogue_code(em.opts.contract, epi.q);
        em.kernel(&dname, || pointwise_dsp_kernel(&dname, xt, yt, &code));
        let (px, py) = (em.ptr(x)?, em.ptr(y)?);
        return Ok(format!(
            "    {dname}({px}, {wpn}, {fbn}, {py}, &{pname});\n"
        ));
    }
    if let Some((wcn, ztn)) = ch_pack {
        em.need(Piece::Smlad);
        let dname = format!("qc_convc_dsp_{}_{}", sfx(tx.dtype), sfx(ty.dtype));
        let code = epilogue_code(em.opts.contract, epi.q);
        em.kernel(&dname, || channel_pair_kernel(&dname, xt, yt, &code));
        let (px, py) = (em.ptr(x)?, em.ptr(y)?);
        return Ok(format!(
            "    {dname}({px}, {wcn}, {ztn}, {py}, &{pname});\n"
        ));
    }
    if let Some((wrn, fbn)) = dw_pack {
        em.need(Piece::Smlad);
        let dname = format!(
            "qc_dw_dsp_{}_{}_{}",
            sfx(tx.dtype),
            sfx(tw.dtype),
            sfx(ty.dtype)
        );
        let code = epilogue_code(em.opts.contract, epi.q);
        em.kernel(&dname, || depthwise_dsp_kernel(&dname, xt, wt, yt, &code));
        let (px, pwp, py) = (em.ptr(x)?, em.ptr(w)?, em.ptr(y)?);
        return Ok(format!(
            "    {dname}({px}, {pwp}, {wrn}, {fbn}, {py}, &{pname});\n"
        ));
    }
    if let Some(wrn) = row_pack {
        em.need(Piece::Smlad);
        let dname = format!(
            "qc_conv_dsp_{}_{}_{}",
            sfx(tx.dtype),
            sfx(tw.dtype),
            sfx(ty.dtype)
        );
        let code = epilogue_code(em.opts.contract, epi.q);
        em.kernel(&dname, || conv_dsp_kernel(&dname, xt, wt, yt, &code));
        let (px, pwp, py) = (em.ptr(x)?, em.ptr(w)?, em.ptr(y)?);
        return Ok(format!(
            "    {dname}({px}, {pwp}, {wrn}, {py}, &{pname});\n"
        ));
    }
    let (px, pwp, py) = (em.ptr(x)?, em.ptr(w)?, em.ptr(y)?);
    Ok(format!("    {kname}({px}, {pwp}, {py}, &{pname});\n"))
}

/// Weights reordered to `[c][tap][ci]` (still int8, input channels contiguous so four
/// of them are one word), and per (channel, tap) `zx * sum_ci w` to subtract for each
/// tap inside the input (`sum (x - zx) w = sum x w - zx sum w`, modulo 2^32, tap by
/// tap).
fn pack_channels(
    em: &mut Em,
    cx: &Cx,
    w: ValueId,
    cout: usize,
    cig: usize,
    ksz: usize,
    zx: i32,
) -> Result<Option<(String, String)>> {
    let Some(wt) = em.g.const_of(w) else {
        return Ok(None);
    };
    let wv = wt.to_i64_vec();
    if wv.len() != cout * cig * ksz {
        return Err(cx.err("weight size"));
    }
    let at = |c: usize, ci: usize, t: usize| wv[(c * cig + ci) * ksz + t];
    let mut packed = Vec::with_capacity(wv.len());
    let mut ztap = Vec::with_capacity(cout * ksz);
    for c in 0..cout {
        for t in 0..ksz {
            let mut sum = 0i64;
            for ci in 0..cig {
                sum += at(c, ci, t);
                packed.push(at(c, ci, t));
            }
            ztap.push(c_i32((sum as i32).wrapping_mul(zx)));
        }
    }
    let (wn, zn) = (cx.name("wchan"), cx.name("ztap"));
    em.data_once(&wn, || Ok(array("int8_t", &wn, &packed)))?;
    em.data_once(&zn, || Ok(array("int32_t", &zn, &ztap)))?;
    Ok(Some((wn, zn)))
}

/// Convolution on the dual 16-bit MAC with pairs along the input channels.
fn channel_pair_kernel(kname: &str, xt: &str, yt: &str, code: &str) -> String {
    format!(
        r#"
/* Quantized convolution (input channels per group a multiple of 4, int8 weights
 * with zero points 0, reordered [c][tap][ci]) with dual 16-bit MACs over
 * input-channel pairs (4k, 4k+2) and (4k+1, 4k+3); per tap inside the input, zx * sum w
 * of that tap is subtracted. Same wrapping 32-bit sums as the generic kernel. */
static void {kname}(const {xt} *x, const int8_t *wc, const int32_t *ztap, {yt} *y, const qc_conv_t *p)
{{
    int32_t cig = p->cin / p->group, cog = p->cout / p->group, ksz = p->kh * p->kw;
    int32_t hw = p->h * p->w, ohw = p->oh * p->ow, np = cig / 4;
    int32_t b, c, oy, ox, ky, kx, j;
    for (b = 0; b < p->n; b++) {{
        for (c = 0; c < p->cout; c++) {{
            const {xt} *xg = x + ((size_t)b * (size_t)p->cin + (size_t)(c / cog) * (size_t)cig) * (size_t)hw;
            const int8_t *wcc = wc + (size_t)c * (size_t)ksz * (size_t)cig;
            const int32_t *zt = ztap + (size_t)c * (size_t)ksz;
            {yt} *yc = y + ((size_t)b * (size_t)p->cout + (size_t)c) * (size_t)ohw;
            int32_t bias = p->bias != NULL ? p->bias[c] : 0;
            for (oy = 0; oy < p->oh; oy++) {{
                int32_t iy0 = oy * p->sh - p->ph;
                int32_t ky0 = iy0 < 0 ? (-iy0 + p->dh - 1) / p->dh : 0;
                int32_t ky1 = p->h - iy0 <= 0 ? 0 : (p->h - iy0 + p->dh - 1) / p->dh;
                if (ky1 > p->kh) {{
                    ky1 = p->kh;
                }}
                for (ox = 0; ox < p->ow; ox++) {{
                    int32_t ix0 = ox * p->sw - p->pw;
                    int32_t kx0 = ix0 < 0 ? (-ix0 + p->dw - 1) / p->dw : 0;
                    int32_t kx1 = p->w - ix0 <= 0 ? 0 : (p->w - ix0 + p->dw - 1) / p->dw;
                    int32_t acc = bias;
                    int64_t v;
                    if (kx1 > p->kw) {{
                        kx1 = p->kw;
                    }}
                    for (ky = ky0; ky < ky1; ky++) {{
                        for (kx = kx0; kx < kx1; kx++) {{
                            int32_t t = ky * p->kw + kx;
                            const {xt} *xp = xg + (iy0 + ky * p->dh) * p->w + ix0 + kx * p->dw;
                            const int8_t *wt = wcc + (size_t)t * (size_t)cig;
                            acc = (int32_t)((uint32_t)acc - (uint32_t)zt[t]);
                            for (j = 0; j < np; j++) {{
                                uint32_t ww = qc_ld32(wt + 4 * j);
                                uint32_t xa = (uint32_t)(uint16_t)(int16_t)xp[0] | ((uint32_t)(uint16_t)(int16_t)xp[2 * hw] << 16);
                                uint32_t xb = (uint32_t)(uint16_t)(int16_t)xp[hw] | ((uint32_t)(uint16_t)(int16_t)xp[3 * hw] << 16);
                                acc = qc_smlad(xa, qc_sxtb16(ww), acc);
                                acc = qc_smlad(xb, qc_sxtb16(qc_ror8(ww)), acc);
                                xp += 4 * hw;
                            }}
                        }}
                    }}
                    {{
                        uint32_t uacc = (uint32_t)acc;
                        {{
                            uint32_t acc = uacc;
                        {code}
                        }}
                    }}
                    yc[oy * p->ow + ox] = ({yt})v;
                }}
            }}
        }}
    }}
}}
"#
    )
}

/// `bias[c] - zx * sum(w[c, ..])` (wrapping), for kernels that fold the input zero
/// point when every tap is inside the input.
fn fold_bias(
    em: &mut Em,
    cx: &Cx,
    w: ValueId,
    bias: Option<ValueId>,
    cout: usize,
    zx: i32,
) -> Result<Option<String>> {
    let Some(wt) = em.g.const_of(w) else {
        return Ok(None);
    };
    let wv = wt.to_i64_vec();
    let bv: Vec<i64> = match bias.and_then(|b| em.g.const_of(b)) {
        Some(t) => t.to_i64_vec(),
        None => vec![0; cout],
    };
    if cout == 0 || wv.len() % cout != 0 || bv.len() != cout {
        return Err(cx.err("weight or bias size"));
    }
    let per = wv.len() / cout;
    let fb: Vec<String> = (0..cout)
        .map(|c| {
            let sum: i64 = wv[c * per..(c + 1) * per].iter().sum();
            c_i32((bv[c] as i32).wrapping_sub((sum as i32).wrapping_mul(zx)))
        })
        .collect();
    let n = cx.name("fbias");
    em.data_once(&n, || Ok(array("int32_t", &n, &fb)))?;
    Ok(Some(n))
}

/// Depthwise convolution on the dual 16-bit MAC: windows fully inside the input use
/// raw codes in pairs against packed weight rows from a bias with the zero point
/// folded in (`sum (x - zx) w = sum x w - zx sum w`, modulo 2^32); border windows
/// take the generic per-tap path.
fn depthwise_dsp_kernel(kname: &str, xt: &str, wt: &str, yt: &str, code: &str) -> String {
    format!(
        r#"
/* Quantized depthwise convolution (one channel per group, unit horizontal dilation,
 * weight zero points 0) with dual 16-bit MACs in the interior. */
static void {kname}(const {xt} *x, const {wt} *w, const uint32_t *wr, const int32_t *fbias, {yt} *y, const qc_conv_t *p)
{{
    int32_t hw = p->h * p->w, ohw = p->oh * p->ow, np = (p->kw + 1) / 2, ksz = p->kh * p->kw;
    int32_t spany = (p->kh - 1) * p->dh, oy0, oy1, ox0, ox1;
    int32_t b, c, oy, ox, ky, kx;
    oy0 = (p->ph + p->sh - 1) / p->sh;
    oy1 = p->h - 1 + p->ph - spany < 0 ? 0 : (p->h - 1 + p->ph - spany) / p->sh + 1;
    ox0 = (p->pw + p->sw - 1) / p->sw;
    ox1 = p->w - 1 + p->pw - (p->kw - 1) < 0 ? 0 : (p->w - 1 + p->pw - (p->kw - 1)) / p->sw + 1;
    for (b = 0; b < p->n; b++) {{
        for (c = 0; c < p->cout; c++) {{
            int32_t zx = p->zx;
            const {xt} *xc = x + ((size_t)b * (size_t)p->cin + (size_t)c) * (size_t)hw;
            const {wt} *wc = w + (size_t)c * (size_t)ksz;
            const uint32_t *wrc = wr + (size_t)c * (size_t)p->kh * (size_t)np;
            {yt} *yc = y + ((size_t)b * (size_t)p->cout + (size_t)c) * (size_t)ohw;
            for (oy = 0; oy < p->oh; oy++) {{
                int32_t iy0 = oy * p->sh - p->ph;
                for (ox = 0; ox < p->ow; ox++) {{
                    int32_t ix0 = ox * p->sw - p->pw;
                    int32_t acc;
                    int64_t v;
                    if (oy >= oy0 && oy < oy1 && ox >= ox0 && ox < ox1) {{
                        const {xt} *xr = xc + (size_t)(iy0 * p->w + ix0);
                        const uint32_t *wp = wrc;
                        acc = fbias[c];
                        for (ky = 0; ky < p->kh; ky++) {{
                            for (kx = 0; kx + 1 < p->kw; kx += 2) {{
                                uint32_t xa = (uint32_t)(uint16_t)(int16_t)xr[kx] | ((uint32_t)(uint16_t)(int16_t)xr[kx + 1] << 16);
                                acc = qc_smlad(xa, wp[kx >> 1], acc);
                            }}
                            if (kx < p->kw) {{
                                acc = qc_smlad((uint32_t)(uint16_t)(int16_t)xr[kx], wp[kx >> 1], acc);
                            }}
                            xr += p->dh * p->w;
                            wp += np;
                        }}
                    }} else {{
                        int32_t ky0 = iy0 < 0 ? (-iy0 + p->dh - 1) / p->dh : 0;
                        int32_t ky1 = p->h - iy0 <= 0 ? 0 : (p->h - iy0 + p->dh - 1) / p->dh;
                        int32_t kx0 = ix0 < 0 ? -ix0 : 0;
                        int32_t kx1 = p->w - ix0 < p->kw ? p->w - ix0 : p->kw;
                        uint32_t ua = p->bias != NULL ? (uint32_t)p->bias[c] : 0u;
                        if (ky1 > p->kh) {{
                            ky1 = p->kh;
                        }}
                        for (ky = ky0; ky < ky1; ky++) {{
                            int32_t row = (iy0 + ky * p->dh) * p->w + ix0;
                            for (kx = kx0; kx < kx1; kx++) {{
                                ua += (uint32_t)(((int32_t)xc[row + kx] - zx) * (int32_t)wc[ky * p->kw + kx]);
                            }}
                        }}
                        acc = (int32_t)ua;
                    }}
                    {{
                        uint32_t uacc = (uint32_t)acc;
                        {{
                            uint32_t acc = uacc;
                        {code}
                        }}
                    }}
                    yc[oy * p->ow + ox] = ({yt})v;
                }}
            }}
        }}
    }}
}}
"#
    )
}

/// Each kernel row (output channel, input channel, ky) of constant weights as
/// `ceil(kw / 2)` words of int16 pairs `(w[kx], w[kx + 1])`, the last one of an odd
/// row with a zero high half.
fn pack_rows(em: &mut Em, cx: &Cx, w: ValueId, kw: usize) -> Result<Option<String>> {
    let Some(wt) = em.g.const_of(w) else {
        return Ok(None);
    };
    let wv = wt.to_i64_vec();
    if kw == 0 || wv.len() % kw != 0 {
        return Err(cx.err("weight size"));
    }
    let mut packed = Vec::new();
    for row in wv.chunks(kw) {
        for pair in row.chunks(2) {
            let lo = (pair[0] as i16 as u16) as u32;
            let hi = (pair.get(1).copied().unwrap_or(0) as i16 as u16) as u32;
            packed.push(format!("0x{:08x}u", lo | (hi << 16)));
        }
    }
    let n = cx.name("wrows");
    em.data_once(&n, || Ok(array("uint32_t", &n, &packed)))?;
    Ok(Some(n))
}

/// Convolution on the dual 16-bit MAC: per valid kernel row, taps in pairs
/// `(x[kx] - zx, x[kx + 1] - zx)` against the packed weight pairs; a tap left over at
/// either end of the valid range (borders, odd widths) is one ordinary multiply.
fn conv_dsp_kernel(kname: &str, xt: &str, wt: &str, yt: &str, code: &str) -> String {
    format!(
        r#"
/* Quantized convolution with dual 16-bit MACs (unit horizontal dilation, weight
 * zero points 0): same taps, same wrapping 32-bit sums as the generic kernel. */
static void {kname}(const {xt} *x, const {wt} *w, const uint32_t *wr, {yt} *y, const qc_conv_t *p)
{{
    int32_t cig = p->cin / p->group, cog = p->cout / p->group, ksz = p->kh * p->kw;
    int32_t hw = p->h * p->w, ohw = p->oh * p->ow, np = (p->kw + 1) / 2;
    int32_t b, c, oy, ox, ci, ky, kx;
    for (b = 0; b < p->n; b++) {{
        for (c = 0; c < p->cout; c++) {{
            int32_t zx = p->zx;
            uint32_t bias = p->bias != NULL ? (uint32_t)p->bias[c] : 0u;
            const {wt} *wc = w + (size_t)c * (size_t)cig * (size_t)ksz;
            const uint32_t *wrc = wr + (size_t)c * (size_t)cig * (size_t)p->kh * (size_t)np;
            const {xt} *xg = x + ((size_t)b * (size_t)p->cin + (size_t)(c / cog) * (size_t)cig) * (size_t)hw;
            {yt} *yc = y + ((size_t)b * (size_t)p->cout + (size_t)c) * (size_t)ohw;
            for (oy = 0; oy < p->oh; oy++) {{
                int32_t iy0 = oy * p->sh - p->ph;
                int32_t ky0 = iy0 < 0 ? (-iy0 + p->dh - 1) / p->dh : 0;
                int32_t ky1 = p->h - iy0 <= 0 ? 0 : (p->h - iy0 + p->dh - 1) / p->dh;
                if (ky1 > p->kh) {{
                    ky1 = p->kh;
                }}
                for (ox = 0; ox < p->ow; ox++) {{
                    int32_t ix0 = ox * p->sw - p->pw;
                    int32_t kx0 = ix0 < 0 ? -ix0 : 0;
                    int32_t kx1 = p->w - ix0 < p->kw ? p->w - ix0 : p->kw;
                    int32_t acc = (int32_t)bias;
                    int64_t v;
                    for (ci = 0; ci < cig; ci++) {{
                        const {xt} *xc = xg + (size_t)ci * (size_t)hw;
                        for (ky = ky0; ky < ky1; ky++) {{
                            const {xt} *xr = xc + (size_t)((iy0 + ky * p->dh) * p->w + ix0);
                            const {wt} *wk = wc + ((size_t)ci * (size_t)p->kh + (size_t)ky) * (size_t)p->kw;
                            const uint32_t *wp = wrc + ((size_t)ci * (size_t)p->kh + (size_t)ky) * (size_t)np;
                            kx = kx0;
                            if (kx & 1) {{
                                acc = (int32_t)((uint32_t)acc + (uint32_t)(((int32_t)xr[kx] - zx) * (int32_t)wk[kx]));
                                kx++;
                            }}
                            for (; kx + 1 < kx1; kx += 2) {{
                                uint32_t xa = (uint32_t)(uint16_t)(int16_t)((int32_t)xr[kx] - zx) | ((uint32_t)(uint16_t)(int16_t)((int32_t)xr[kx + 1] - zx) << 16);
                                acc = qc_smlad(xa, wp[kx >> 1], acc);
                            }}
                            if (kx < kx1) {{
                                acc = (int32_t)((uint32_t)acc + (uint32_t)(((int32_t)xr[kx] - zx) * (int32_t)wk[kx]));
                            }}
                        }}
                    }}
                    {{
                        uint32_t uacc = (uint32_t)acc;
                        {{
                            uint32_t acc = uacc;
                        {code}
                        }}
                    }}
                    yc[oy * p->ow + ox] = ({yt})v;
                }}
            }}
        }}
    }}
}}
"#
    )
}

/// Constant weights `[rows, n]` as int16 pairs along `n` (`n` even): word `[r][j]` is
/// `(w[r, 2j], w[r, 2j + 1])`. The 1x1 convolution streams its weights once per
/// pixel pair, so the sign extension is done here rather than in the loop (twice
/// the flash of int8 for these weights, measured worth it on the Cortex-M4).
fn pack_pairs(em: &mut Em, cx: &Cx, w: ValueId, n: usize) -> Result<Option<String>> {
    let Some(wt) = em.g.const_of(w) else {
        return Ok(None);
    };
    let wv = wt.to_i64_vec();
    if n == 0 || !n.is_multiple_of(2) || !wv.len().is_multiple_of(n) {
        return Err(cx.err("weight size"));
    }
    let packed: Vec<String> = wv
        .chunks(2)
        .map(|p| {
            let lo = (p[0] as i16 as u16) as u32;
            let hi = (p.get(1).copied().unwrap_or(0) as i16 as u16) as u32;
            format!("0x{:08x}u", lo | (hi << 16))
        })
        .collect();
    let name = cx.name("wpairs");
    em.data_once(&name, || Ok(array("uint32_t", &name, &packed)))?;
    Ok(Some(name))
}

/// The 1x1-conv kernel on the dual 16-bit MAC: a 2-channel x 2-pixel register tile,
/// two input channels per MAC instruction.
fn pointwise_dsp_kernel(kname: &str, xt: &str, yt: &str, code: &str) -> String {
    format!(
        r#"
/* Quantized 1x1 convolution (stride 1, no padding, one group, even input channels,
 * weight zero points 0) with dual 16-bit MACs: weights pre-packed as int16 pairs
 * along the input channels, the input zero point folded into fbias, tiles of 2
 * output channels x 2 pixels. Same wrapping 32-bit sums as the generic kernel. */
static int32_t {kname}_dot(const {xt} *xp, int32_t hw, const uint32_t *wr, int32_t n2, int32_t acc)
{{
    int32_t k;
    for (k = 0; k < n2; k++) {{
        uint32_t xa = (uint32_t)(uint16_t)(int16_t)xp[0] | ((uint32_t)(uint16_t)(int16_t)xp[hw] << 16);
        acc = qc_smlad(xa, wr[k], acc);
        xp += 2 * hw;
    }}
    return acc;
}}

static void {kname}(const {xt} *x, const uint32_t *wp, const int32_t *fbias, {yt} *y, const qc_conv_t *p)
{{
    int32_t hw = p->h * p->w, n2 = p->cin / 2;
    int32_t b, c, px, k;
    for (b = 0; b < p->n; b++) {{
        const {xt} *xb = x + (size_t)b * (size_t)p->cin * (size_t)hw;
        {yt} *yb = y + (size_t)b * (size_t)p->cout * (size_t)hw;
        for (c = 0; c + 1 < p->cout; c += 2) {{
            const uint32_t *w0 = wp + (size_t)c * (size_t)n2, *w1 = w0 + n2;
            for (px = 0; px + 1 < hw; px += 2) {{
                int32_t a00 = fbias[c], a01 = fbias[c], a10 = fbias[c + 1], a11 = fbias[c + 1];
                const {xt} *xp = xb + px;
                int32_t i;
                for (k = 0; k < n2; k++) {{
                    uint32_t xa = (uint32_t)(uint16_t)(int16_t)xp[0] | ((uint32_t)(uint16_t)(int16_t)xp[hw] << 16);
                    uint32_t xc = (uint32_t)(uint16_t)(int16_t)xp[1] | ((uint32_t)(uint16_t)(int16_t)xp[hw + 1] << 16);
                    uint32_t wa = w0[k], wb = w1[k];
                    a00 = qc_smlad(xa, wa, a00);
                    a01 = qc_smlad(xc, wa, a01);
                    a10 = qc_smlad(xa, wb, a10);
                    a11 = qc_smlad(xc, wb, a11);
                    xp += 2 * hw;
                }}
                for (i = 0; i < 4; i++) {{
                    int32_t cc = c + (i >> 1), pp = px + (i & 1);
                    uint32_t acc = (uint32_t)(i == 0 ? a00 : i == 1 ? a01 : i == 2 ? a10 : a11);
                    int64_t v;
                    {{
                        int32_t c = cc;
                    {code}
                    }}
                    yb[(size_t)cc * (size_t)hw + (size_t)pp] = ({yt})v;
                }}
            }}
        }}
        /* the remaining output channel and pixel, one at a time */
        for (c = 0; c < p->cout; c++) {{
            for (px = c < p->cout - p->cout % 2 ? hw - hw % 2 : 0; px < hw; px++) {{
                uint32_t acc = (uint32_t){kname}_dot(xb + px, hw, wp + (size_t)c * (size_t)n2, n2, fbias[c]);
                int64_t v;
                {code}
                yb[(size_t)c * (size_t)hw + (size_t)px] = ({yt})v;
            }}
        }}
    }}
}}
"#
    )
}

fn gemm(em: &mut Em, cx: &Cx, a: &qc_ir::GemmAttrs) -> Result<String> {
    let (x, w, y) = (cx.input(0)?, cx.input(1)?, cx.output()?);
    let c_in = cx.node.inputs.get(2).copied();
    let (tx, tw, ty) = (em.ty(x)?.clone(), em.ty(w)?.clone(), em.ty(y)?.clone());
    let Some((_, sx, zx)) = q8(&tx) else {
        return Err(cx.err("gemm on a float or non-8-bit operand (no float gemm kernel yet)"));
    };
    let Some(pw_) = tw
        .quant
        .as_ref()
        .filter(|p| matches!(p.storage, QType::U8 | QType::I8))
    else {
        return Err(cx.err("gemm weights must be 8-bit quantized"));
    };
    let (ad, bd) = (tx.shape.dims(), tw.shape.dims());
    let ([a0, a1], [b0, b1]) = (ad, bd) else {
        return Err(cx.err("gemm operands must be 2-D"));
    };
    let (m, k) = if a.trans_a { (*a1, *a0) } else { (*a0, *a1) };
    let (kb, n) = if a.trans_b { (*b1, *b0) } else { (*b0, *b1) };
    if k != kb || ty.shape.dims() != [m, n] {
        return Err(cx.err("gemm shapes disagree"));
    }
    if a.alpha != 1.0 || (c_in.is_some() && a.beta != 1.0) {
        return Err(cx.err("quantized gemm needs alpha = beta = 1"));
    }
    let (sw, zw) = weight_params(cx, pw_, n, if a.trans_b { 0 } else { 1 })?;
    let epi = epilogue(cx, em.opts.contract, sx, &sw, &ty, a.act)?;
    let fields = epilogue_data(em, cx, &epi)?;
    let zwname = cx.name("zw");
    let zw_expr = if zw.iter().all(|&z| z == 0) {
        "NULL".to_string()
    } else {
        em.data_once(&zwname, || Ok(array("int32_t", &zwname, &zw)))?;
        zwname
    };
    let (c_expr, cn) = match c_in {
        Some(c) => {
            let tc = em.ty(c)?;
            let cn = numel(tc);
            let dims = tc.shape.dims();
            let ok = tc.dtype == DType::I32
                && !tc.is_quantized()
                && (cn == 1
                    || (cn == n && dims.last() == Some(&n))
                    || (cn == m * n && dims == [m, n]));
            if !ok {
                return Err(cx.err("gemm C must be raw i32 of 1, n or m*n elements"));
            }
            (em.ptr(c)?, cn)
        }
        None => ("NULL".into(), 0),
    };
    em.need(Piece::GemmParams);
    let pname = cx.name("p");
    let vals: Vec<i32> = [m, k, n, usize::from(a.trans_a), usize::from(a.trans_b), cn]
        .iter()
        .map(|&v| i32c(cx, v))
        .collect::<Result<_>>()?;
    let vals_s: Vec<String> = vals.iter().map(|v| v.to_string()).collect();
    let p_init = format!(
        "static const qc_gemm_t {pname} = {{{}, {zx}, {}, {c_expr}, {zw_expr}, {fields}}};\n",
        vals_s.join(", "),
        epi.zy
    );
    em.data_once(&pname, || Ok(p_init))?;
    let (xt, wt, yt) = (ctype(tx.dtype), ctype(tw.dtype), ctype(ty.dtype));
    let kname = format!(
        "qc_gemm_{}_{}_{}",
        sfx(tx.dtype),
        sfx(tw.dtype),
        sfx(ty.dtype)
    );
    let code = epilogue_code(em.opts.contract, epi.q);
    // Fully connected layers (B stored [n, k]) on the dual 16-bit MAC.
    let dsp = em.opts.cpu != crate::Cpu::Generic
        && a.trans_b
        && !a.trans_a
        && k.is_multiple_of(4)
        && tw.dtype == DType::I8
        && zw.iter().all(|&z| z == 0)
        && em.g.const_of(w).is_some();
    if dsp {
        if let Some(zsn) = fold_bias(em, cx, w, None, n, zx)? {
            // fold_bias gives -zx * sum: the kernel adds it.
            let ext = if tx.dtype == DType::I8 {
                "qc_sxtb16"
            } else {
                "qc_uxtb16"
            };
            em.need(Piece::Smlad);
            let dname = format!("qc_fc_dsp_{}_{}", sfx(tx.dtype), sfx(ty.dtype));
            em.kernel(&dname, || {
                format!(
                    r#"
/* Quantized fully connected layer (B is int8 [n, k], k a multiple of 4, weight zero
 * points 0) with dual 16-bit MACs on words of four bytes of both operands; the
 * term -za * sum_k b comes precomputed in zs (modulo 2^32). */
static void {dname}(const {xt} *a, const int8_t *bm, const int32_t *zs, {yt} *y, const qc_gemm_t *p)
{{
    int32_t i, c, j, k4 = p->k / 4;
    for (i = 0; i < p->m; i++) {{
        for (c = 0; c < p->n; c++) {{
            const {xt} *ar = a + (size_t)i * (size_t)p->k;
            const int8_t *br = bm + (size_t)c * (size_t)p->k;
            int32_t acc = 0;
            int64_t v;
            if (p->cn == 1) {{
                acc = p->c[0];
            }} else if (p->cn == p->n) {{
                acc = p->c[c];
            }} else if (p->cn != 0) {{
                acc = p->c[i * p->n + c];
            }}
            acc = (int32_t)((uint32_t)acc + (uint32_t)zs[c]);
            for (j = 0; j < k4; j++) {{
                uint32_t xw = qc_ld32(ar + 4 * j), ww = qc_ld32(br + 4 * j);
                acc = qc_smlad({ext}(xw), qc_sxtb16(ww), acc);
                acc = qc_smlad({ext}(qc_ror8(xw)), qc_sxtb16(qc_ror8(ww)), acc);
            }}
            {{
                uint32_t uacc = (uint32_t)acc;
                {{
                    uint32_t acc = uacc;
                {code}
                }}
            }}
            y[i * p->n + c] = ({yt})v;
        }}
    }}
}}
"#
                )
            });
            let (px, pw2, py) = (em.ptr(x)?, em.ptr(w)?, em.ptr(y)?);
            return Ok(format!(
                "    {dname}({px}, {pw2}, {zsn}, {py}, &{pname});\n"
            ));
        }
    }
    em.kernel(&kname, || {
        format!(
            r#"
/* Quantized gemm: acc = C + sum_k (a - za) * (b - zb[c]) in wrapping 32-bit, then
 * requantize per column c and clamp. */
static void {kname}(const {xt} *a, const {wt} *bm, {yt} *y, const qc_gemm_t *p)
{{
    int32_t i, c, kk;
    for (i = 0; i < p->m; i++) {{
        for (c = 0; c < p->n; c++) {{
            int32_t zb = p->zb != NULL ? p->zb[c] : 0;
            uint32_t acc = 0u;
            int64_t v;
            if (p->cn == 1) {{
                acc = (uint32_t)p->c[0];
            }} else if (p->cn == p->n) {{
                acc = (uint32_t)p->c[c];
            }} else if (p->cn != 0) {{
                acc = (uint32_t)p->c[i * p->n + c];
            }}
            for (kk = 0; kk < p->k; kk++) {{
                int32_t av = p->trans_a ? (int32_t)a[kk * p->m + i] : (int32_t)a[i * p->k + kk];
                int32_t bv = p->trans_b ? (int32_t)bm[c * p->k + kk] : (int32_t)bm[kk * p->n + c];
                acc += (uint32_t)((av - p->za) * (bv - zb));
            }}
                {code}
            y[i * p->n + c] = ({yt})v;
        }}
    }}
}}
"#
        )
    });
    let (px, pwp, py) = (em.ptr(x)?, em.ptr(w)?, em.ptr(y)?);
    Ok(format!("    {kname}({px}, {pwp}, {py}, &{pname});\n"))
}

// ---------------------------------------------------------------------------------
// Add / sub: exact fixed-point sum, thresholds

/// The loops of a broadcast of `operands` to `out`: output dims of size 1 dropped,
/// and neighbouring dims merged where every operand spans both or is broadcast
/// along both (the flat iteration order is unchanged), so any rank works as long as
/// at most 4 runs of distinct broadcast patterns remain. Returns the loop extents
/// and each operand's element strides (0 where broadcast), right-aligned into 4.
pub(crate) fn bcast_loops(
    operands: &[&[usize]],
    out: &[usize],
) -> std::result::Result<([usize; 4], Vec<[usize; 4]>), String> {
    let r = out.len();
    let mut full = vec![vec![false; r]; operands.len()];
    for (k, dims) in operands.iter().enumerate() {
        let Some(off) = r.checked_sub(dims.len()) else {
            return Err("operand of higher rank than the result".into());
        };
        for (j, &d) in dims.iter().enumerate() {
            if d == out[off + j] {
                full[k][off + j] = true;
            } else if d != 1 {
                return Err("operand does not broadcast to the result".into());
            }
        }
    }
    // (extent, per-operand "spans this dim") of each merged loop.
    let mut groups: Vec<(usize, Vec<bool>)> = Vec::new();
    for (j, &e) in out.iter().enumerate() {
        if e == 1 {
            continue;
        }
        let flags: Vec<bool> = full.iter().map(|f| f[j]).collect();
        match groups.last_mut() {
            Some((ext, f)) if *f == flags => *ext *= e,
            _ => groups.push((e, flags)),
        }
    }
    if groups.len() > 4 {
        return Err(format!(
            "broadcast needs {} loops after merging dims (at most 4)",
            groups.len()
        ));
    }
    let off = 4 - groups.len();
    let mut ext = [1usize; 4];
    for (i, (e, _)) in groups.iter().enumerate() {
        ext[off + i] = *e;
    }
    let strides = (0..operands.len())
        .map(|k| {
            let mut s4 = [0usize; 4];
            let mut st = 1usize;
            for (i, (e, f)) in groups.iter().enumerate().rev() {
                if f[k] {
                    s4[off + i] = st;
                    st *= e;
                }
            }
            s4
        })
        .collect();
    Ok((ext, strides))
}

/// [`bcast_loops`] as C int32 extents and strides.
fn bcast4(cx: &Cx, operands: &[&[usize]], out: &[usize]) -> Result<([i32; 4], Vec<[i32; 4]>)> {
    let (ext, strides) = bcast_loops(operands, out).map_err(|m| cx.err(m))?;
    let c4 = |v: [usize; 4]| -> Result<[i32; 4]> {
        Ok([
            i32c(cx, v[0])?,
            i32c(cx, v[1])?,
            i32c(cx, v[2])?,
            i32c(cx, v[3])?,
        ])
    };
    let strides = strides.into_iter().map(c4).collect::<Result<_>>()?;
    Ok((c4(ext)?, strides))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Bin {
    Add,
    Sub,
    Mul,
}

/// Operand tables, the exact-value range and the value → code function.
type ExactOperands = (Vec<i64>, Vec<i64>, i64, i64, Box<dyn Fn(i64) -> i64>);

fn add_sub(em: &mut Em, cx: &Cx, act: Activation, sub: bool) -> Result<String> {
    if !sub && em.opts.contract == Contract::Float {
        if let Some(s) = fused::add(em, cx, act)? {
            return Ok(s);
        }
    }
    binary_exact(em, cx, act, if sub { Bin::Sub } else { Bin::Add })
}

/// Quantized add, sub and mul. Both operands' real values are exact integers in a
/// fixed-point unit, so their sum (add/sub: one common unit, `< 2^53`) or product
/// (mul: each `< 2^31`, units multiply) is exact in `int64_t`; the interpreter's f32
/// result is that exact value rounded once, and everything after is monotone, so
/// the result code is a threshold lookup on the exact integer.
fn binary_exact(em: &mut Em, cx: &Cx, act: Activation, kind: Bin) -> Result<String> {
    let (a, b, y) = (cx.input(0)?, cx.input(1)?, cx.output()?);
    let (ta, tb, ty) = (em.ty(a)?.clone(), em.ty(b)?.clone(), em.ty(y)?.clone());
    let (Some((qa, sa, za)), Some((qb, sb, zb)), Some((qy, sy, zy))) = (q8(&ta), q8(&tb), q8(&ty))
    else {
        return Err(
            cx.err("add/sub/mul kernels need 8-bit per-tensor quantized operands and result")
        );
    };
    // Real operand values exactly as the interpreter dequantizes them.
    let da: Vec<f32> = exact::lut(qa, |q| qc_qmath::dequantize(q, sa, za));
    let db: Vec<f32> = exact::lut(qb, |q| {
        let v = qc_qmath::dequantize(q, sb, zb);
        if kind == Bin::Sub {
            -v
        } else {
            v
        }
    });
    let (ia, ib, lo, hi, f): ExactOperands = match kind {
        Bin::Add | Bin::Sub => {
            let all: Vec<f32> = da.iter().chain(&db).copied().collect();
            let (l, ints) = exact::fixed_point(&all, 52)
                .ok_or_else(|| cx.err("operand scales too far apart for an exact integer sum"))?;
            let (ia, ib) = ints.split_at(da.len());
            let lo = ia.iter().min().copied().unwrap_or(0) + ib.iter().min().copied().unwrap_or(0);
            let hi = ia.iter().max().copied().unwrap_or(0) + ib.iter().max().copied().unwrap_or(0);
            // fl32(da + db) is the exact sum rounded once (f64 holds it exactly).
            let f = move |x: i64| {
                let r = exact::scaled(x, l) as f32;
                qc_qmath::quantize(real::activation(act, r), sy, zy, qy)
            };
            (ia.to_vec(), ib.to_vec(), lo, hi, Box::new(f))
        }
        Bin::Mul => {
            let (la, ia) = exact::fixed_point(&da, 31).ok_or_else(|| cx.err("operand a range"))?;
            let (lb, ib) = exact::fixed_point(&db, 31).ok_or_else(|| cx.err("operand b range"))?;
            let l = la + lb;
            if !(-126..=127).contains(&l) {
                return Err(cx.err("product unit outside the normal f32 range"));
            }
            let products = || ia.iter().flat_map(|x| ib.iter().map(move |y| x * y));
            let (lo, hi) = (products().min().unwrap_or(0), products().max().unwrap_or(0));
            let unit = 2f32.powi(l);
            // i64 -> f32 rounds once (to nearest even); scaling by 2^l is exact.
            let f = move |x: i64| qc_qmath::quantize((x as f32) * unit, sy, zy, qy);
            (ia, ib, lo, hi, Box::new(f))
        }
    };
    let (base, taus) = exact::thresholds(lo, hi, 256, f).ok_or_else(|| cx.err("thresholds"))?;
    let (tan, tbn, thn) = (cx.name("ta"), cx.name("tb"), cx.name("thr"));
    let fa: Vec<String> = ia.iter().map(|&v| c_i64(v)).collect();
    let fb: Vec<String> = ib.iter().map(|&v| c_i64(v)).collect();
    let ft: Vec<String> = taus.iter().map(|&v| c_i64(v)).collect();
    em.data_once(&tan, || Ok(array("int64_t", &tan, &fa)))?;
    em.data_once(&tbn, || Ok(array("int64_t", &tbn, &fb)))?;
    em.data_once(&thn, || Ok(array("int64_t", &thn, &ft)))?;
    let out = ty.shape.dims();
    let (d4, st) = bcast4(cx, &[ta.shape.dims(), tb.shape.dims()], out)?;
    let (sa4, sb4) = (st[0], st[1]);
    em.need(Piece::EwParams);
    em.need(Piece::Thresh64);
    let pname = cx.name("p");
    let j = |v: [i32; 4]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let p_init = format!(
        "static const qc_ew_t {pname} = {{{{{}}}, {{{}}}, {{{}}}}};\n",
        j(d4),
        j(sa4),
        j(sb4)
    );
    em.data_once(&pname, || Ok(p_init))?;
    let (at, bt, yt) = (ctype(ta.dtype), ctype(tb.dtype), ctype(ty.dtype));
    let opname = if kind == Bin::Mul { "mulq" } else { "addq" };
    let opc = if kind == Bin::Mul { "*" } else { "+" };
    let kname = format!(
        "qc_{opname}_{}_{}_{}",
        sfx(ta.dtype),
        sfx(tb.dtype),
        sfx(ty.dtype)
    );
    let (amin, bmin) = (qmin(qa), qmin(qb));
    em.kernel(&kname, || {
        format!(
            r#"
/* Quantized add/sub/mul: the exact fixed-point sum or product of both operands'
 * real values (tables ta, tb), then the result code by thresholds (the f32 rounding,
 * activation and quantization of the interpreter folded in at compile time). */
static void {kname}(const {at} *a, const {bt} *b, {yt} *y, const qc_ew_t *p, const int64_t *ta, const int64_t *tb, const int64_t *t, int32_t nt, int32_t base)
{{
    int32_t i0, i1, i2, i3;
    size_t o = 0;
    for (i0 = 0; i0 < p->d[0]; i0++) {{
        for (i1 = 0; i1 < p->d[1]; i1++) {{
            for (i2 = 0; i2 < p->d[2]; i2++) {{
                size_t ia = (size_t)(i0 * p->sa[0] + i1 * p->sa[1] + i2 * p->sa[2]);
                size_t ib = (size_t)(i0 * p->sb[0] + i1 * p->sb[1] + i2 * p->sb[2]);
                for (i3 = 0; i3 < p->d[3]; i3++) {{
                    int64_t s = ta[(int32_t)a[ia + (size_t)(i3 * p->sa[3])] - ({amin})] {opc} tb[(int32_t)b[ib + (size_t)(i3 * p->sb[3])] - ({bmin})];
                    y[o++] = ({yt})(base + qc_thresh64(t, nt, s));
                }}
            }}
        }}
    }}
}}
"#
        )
    });
    let (pa, pb, py) = (em.ptr(a)?, em.ptr(b)?, em.ptr(y)?);
    Ok(format!(
        "    {kname}({pa}, {pb}, {py}, &{pname}, {tan}, {tbn}, {thn}, {}, {base});\n",
        taus.len()
    ))
}

// ---------------------------------------------------------------------------------
// Pooling

/// Pooling geometry: the `[h, w]` fields and the depth of a 3-D pool (`z`, 1 with a
/// window of 1 for 1-D and 2-D pools).
struct PoolGeom {
    nc: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    k: [usize; 2],
    s: [usize; 2],
    d: [usize; 2],
    pb: [usize; 2],
    pe: [usize; 2],
    z: PoolDim,
}

/// One spatial dim of a pool: input and output extents, window, stride, dilation,
/// begin and end pads.
#[derive(Clone, Copy)]
struct PoolDim {
    inp: usize,
    out: usize,
    k: usize,
    s: usize,
    d: usize,
    pb: usize,
    pe: usize,
}

/// A per-spatial-dim pool attribute right-aligned into 3 dims (leading dims 1).
fn attr3(v: &[usize], rank: usize, default: usize) -> Option<[usize; 3]> {
    let mut out = [1; 3];
    if v.is_empty() {
        out.iter_mut().skip(3 - rank).for_each(|o| *o = default);
    } else if v.len() == rank {
        out[3 - rank..].copy_from_slice(v);
    } else {
        return None;
    }
    Some(out)
}

fn pool_geom(cx: &Cx, p: &PoolAttrs, x: &[usize], y: &[usize]) -> Result<PoolGeom> {
    let rank = x.len().saturating_sub(2);
    if !(1..=3).contains(&rank) || y.len() != x.len() {
        return Err(cx.err("pooling over other than 1, 2 or 3 spatial dims"));
    }
    let (Some(k), Some(s), Some(d), Some(inp), Some(out)) = (
        attr3(&p.kernel, rank, 0),
        attr3(&p.strides, rank, 1),
        attr3(&p.dilations, rank, 1),
        attr3(&x[2..], rank, 1),
        attr3(&y[2..], rank, 1),
    ) else {
        return Err(cx.err("pool attributes do not match the rank"));
    };
    let (mut pb, mut pe) = ([0; 3], [0; 3]);
    if p.pads.len() == 2 * rank {
        pb[3 - rank..].copy_from_slice(&p.pads[..rank]);
        pe[3 - rank..].copy_from_slice(&p.pads[rank..]);
    } else if !p.pads.is_empty() {
        return Err(cx.err("pool pads do not match the rank"));
    }
    if k.contains(&0) || s.contains(&0) || d.contains(&0) || y[..2] != x[..2] {
        return Err(cx.err("pool geometry"));
    }
    // Output size as the interpreter computes it.
    for i in 0..3 {
        let span = d[i] * (k[i] - 1) + 1;
        let padded = inp[i] + pb[i] + pe[i];
        let Some(r) = padded.checked_sub(span) else {
            return Err(cx.err("window larger than the padded input"));
        };
        let mut want = if p.ceil_mode {
            r.div_ceil(s[i]) + 1
        } else {
            r / s[i] + 1
        };
        if p.ceil_mode && (want - 1) * s[i] >= inp[i] + pb[i] {
            want -= 1;
        }
        if want != out[i] {
            return Err(cx.err("result shape disagrees with the pool geometry"));
        }
    }
    Ok(PoolGeom {
        nc: x[0] * x[1],
        h: inp[1],
        w: inp[2],
        oh: out[1],
        ow: out[2],
        k: [k[1], k[2]],
        s: [s[1], s[2]],
        d: [d[1], d[2]],
        pb: [pb[1], pb[2]],
        pe: [pe[1], pe[2]],
        z: PoolDim {
            inp: inp[0],
            out: out[0],
            k: k[0],
            s: s[0],
            d: d[0],
            pb: pb[0],
            pe: pe[0],
        },
    })
}

impl PoolDim {
    /// The trivial depth of a 1-D or 2-D pool.
    const ONE: PoolDim = PoolDim {
        inp: 1,
        out: 1,
        k: 1,
        s: 1,
        d: 1,
        pb: 0,
        pe: 0,
    };
}

impl PoolGeom {
    /// Dim `i` of `[z, h, w]`.
    fn dim(&self, i: usize) -> PoolDim {
        match i {
            0 => self.z,
            _ => {
                let j = i - 1;
                PoolDim {
                    inp: [self.h, self.w][j],
                    out: [self.oh, self.ow][j],
                    k: self.k[j],
                    s: self.s[j],
                    d: self.d[j],
                    pb: self.pb[j],
                    pe: self.pe[j],
                }
            }
        }
    }
    /// Taps of output `o` along dim `i` (of `[z, h, w]`) inside the input.
    fn inside(&self, i: usize, o: usize) -> usize {
        let g = self.dim(i);
        (0..g.k)
            .filter(|&k| {
                (o * g.s + k * g.d)
                    .checked_sub(g.pb)
                    .is_some_and(|x| x < g.inp)
            })
            .count()
    }
    /// Taps inside the explicitly padded input.
    fn with_pad(&self, i: usize, o: usize) -> usize {
        let g = self.dim(i);
        let end = g.inp + g.pb + g.pe;
        (0..g.k).filter(|&k| o * g.s + k * g.d < end).count()
    }
    fn init(&self, cx: &Cx) -> Result<String> {
        let z = self.z;
        let v: Vec<String> = [
            self.nc, self.h, self.w, self.oh, self.ow, self.k[0], self.k[1], self.s[0], self.s[1],
            self.pb[0], self.pb[1], self.d[0], self.d[1], z.inp, z.out, z.k, z.s, z.pb, z.d,
        ]
        .iter()
        .map(|&x| i32c(cx, x).map(|v| v.to_string()))
        .collect::<Result<_>>()?;
        Ok(v.join(", "))
    }
}

/// The C loop header over pooling windows (then [`POOL_DEPTH_OPEN`] and the `ky`, `kx`
/// loops, which see `xp`, the plane at depth `iz`).
const POOL_LOOP_OPEN: &str = r#"    int32_t nc, oz, oy, ox, kz, ky, kx;
    for (nc = 0; nc < p->nc; nc++) {
        const XT *xv = x + (size_t)nc * (size_t)p->z * (size_t)p->h * (size_t)p->w;
        for (oz = 0; oz < p->oz; oz++)
        for (oy = 0; oy < p->oh; oy++) {
            for (ox = 0; ox < p->ow; ox++) {
"#;

/// The depth loop of a window (around the `ky`/`kx` loops): sets `xp` to the plane.
const POOL_DEPTH_OPEN: &str = r#"                for (kz = 0; kz < p->kz; kz++) {
                const XT *xp;
                int32_t iz = oz * p->sz - p->pz + kz * p->dz;
                if (iz < 0 || iz >= p->z) {
                    continue;
                }
                xp = xv + (size_t)iz * (size_t)p->h * (size_t)p->w;
"#;

fn avg_pool(em: &mut Em, cx: &Cx, pool: &PoolAttrs, include_pad: bool) -> Result<String> {
    if em.opts.contract == Contract::Float {
        if let Some(s) = fused::mean(em, cx)? {
            return Ok(s);
        }
    }
    let (x, y) = (cx.input(0)?, cx.output()?);
    let (tx, ty) = (em.ty(x)?.clone(), em.ty(y)?.clone());
    let (Some((qx, sx, zx)), Some((qy, sy, zy))) = (q8(&tx), q8(&ty)) else {
        return Err(cx.err("average pool kernels need 8-bit per-tensor quantized types"));
    };
    let g = pool_geom(cx, pool, tx.shape.dims(), ty.shape.dims())?;
    // The divisor: taps inside the input, or inside the explicitly padded input; both
    // factor into a depth count times a row count times a column count.
    let per_dim = |i: usize, n: usize| -> Vec<usize> {
        (0..n)
            .map(|o| {
                if include_pad {
                    g.with_pad(i, o)
                } else {
                    g.inside(i, o)
                }
            })
            .collect()
    };
    let (cz, cy, cxs) = (per_dim(0, g.z.out), per_dim(1, g.oh), per_dim(2, g.ow));
    let mut counts = std::collections::BTreeSet::new();
    for &c in &cz {
        for &a in &cy {
            for &b in &cxs {
                counts.insert(c * a * b);
            }
        }
    }
    let max_cnt = counts.iter().copied().max().unwrap_or(0);
    // The interpreter sums f32 values in window order: the C code repeats those f32
    // additions in integers (qc_f32_add) on the exact dequantized bits.
    let deq: Vec<f32> = exact::lut(qx, |q| qc_qmath::dequantize(q, sx, zx));
    let (l, _) = exact::fixed_point(&deq, 62).ok_or_else(|| cx.err("dequantized values"))?;
    let max_sum = deq.iter().fold(0f64, |m, v| m.max(f64::from(v.abs()))) * max_cnt as f64 * 2.0;
    if l < -126 || max_sum >= 1e38 {
        return Err(cx.err("partial sums would leave the normal f32 range"));
    }
    // One threshold table per divisor (an empty window is 0 / 0 = NaN: the zero point).
    let (mut offs, mut lens, mut bases) = (
        vec![0usize; max_cnt + 1],
        vec![0usize; max_cnt + 1],
        vec![0i64; max_cnt + 1],
    );
    let mut taus: Vec<i64> = Vec::new();
    for &cnt in &counts {
        let cnt_f = cnt as f32;
        let f = |k: i64| qc_qmath::quantize(key_f32(k) / cnt_f, sy, zy, qy);
        let (base, t) = if cnt == 0 {
            (qc_qmath::quantize(f32::NAN, sy, zy, qy), Vec::new())
        } else {
            exact::thresholds(KEY_NEG_INF, KEY_POS_INF, 256, f)
                .ok_or_else(|| cx.err("avg pool thresholds"))?
        };
        offs[cnt] = taus.len();
        lens[cnt] = t.len();
        bases[cnt] = base;
        taus.extend(t);
    }
    let (dn, tn, pname) = (cx.name("deq"), cx.name("thr"), cx.name("p"));
    let (on, ln, bn, czn, cyn, cxn) = (
        cx.name("toff"),
        cx.name("tlen"),
        cx.name("tbase"),
        cx.name("cz"),
        cx.name("cy"),
        cx.name("cx"),
    );
    let bits: Vec<String> = deq
        .iter()
        .map(|v| format!("0x{:08x}u", v.to_bits()))
        .collect();
    em.data_once(&dn, || Ok(array("uint32_t", &dn, &bits)))?;
    em.data_once(&tn, || Ok(array("int32_t", &tn, &taus)))?;
    em.data_once(&on, || Ok(array("int32_t", &on, &offs)))?;
    em.data_once(&ln, || Ok(array("int32_t", &ln, &lens)))?;
    em.data_once(&bn, || Ok(array("int32_t", &bn, &bases)))?;
    em.data_once(&czn, || Ok(array("int32_t", &czn, &cz)))?;
    em.data_once(&cyn, || Ok(array("int32_t", &cyn, &cy)))?;
    em.data_once(&cxn, || Ok(array("int32_t", &cxn, &cxs)))?;
    let init = g.init(cx)?;
    em.data_once(&pname, || {
        Ok(format!("static const qc_pool_t {pname} = {{{init}}};\n"))
    })?;
    em.need(Piece::PoolParams);
    em.need(Piece::F32Add);
    em.need(Piece::Thresh32);
    let (xt, yt, xmin) = (ctype(tx.dtype), ctype(ty.dtype), qmin(qx));
    let kname = format!("qc_avgpool_{}_{}", sfx(tx.dtype), sfx(ty.dtype));
    em.kernel(&kname, || {
        let open = POOL_LOOP_OPEN.replace("XT", xt);
        let depth = POOL_DEPTH_OPEN.replace("XT", xt);
        format!(
            r#"
/* Quantized average pool: the interpreter's f32 window sum (integer soft-float on
 * the dequantized bits deq[]), then the result code by the thresholds of the
 * window's divisor cz[oz] * cy[oy] * cx[ox] (tables at off[], lengths len[], base
 * codes). */
static void {kname}(const {xt} *x, {yt} *y, const qc_pool_t *p, const uint32_t *deq, const int32_t *t, const int32_t *off, const int32_t *len, const int32_t *base, const int32_t *cz, const int32_t *cy, const int32_t *cx)
{{
    size_t o = 0;
{open}                uint32_t s = 0;
                int32_t cnt = cz[oz] * cy[oy] * cx[ox];
{depth}                for (ky = 0; ky < p->kh; ky++) {{
                    int32_t iy = oy * p->sh - p->ph + ky * p->dh;
                    if (iy < 0 || iy >= p->h) {{
                        continue;
                    }}
                    for (kx = 0; kx < p->kw; kx++) {{
                        int32_t ix = ox * p->sw - p->pw + kx * p->dw;
                        if (ix < 0 || ix >= p->w) {{
                            continue;
                        }}
                        s = qc_f32_add(s, deq[(int32_t)xp[iy * p->w + ix] - ({xmin})]);
                    }}
                }}
                }}
                y[o++] = ({yt})(base[cnt] + qc_thresh32(t + off[cnt], len[cnt], qc_f32_key(s)));
            }}
        }}
    }}
}}
"#
        )
    });
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    Ok(format!(
        "    {kname}({px}, {py}, &{pname}, {dn}, {tn}, {on}, {ln}, {bn}, {czn}, {cyn}, {cxn});\n"
    ))
}

fn global_avg_pool(em: &mut Em, cx: &Cx) -> Result<String> {
    if em.opts.contract == Contract::Float {
        if let Some(s) = fused::mean(em, cx)? {
            return Ok(s);
        }
    }
    let (x, y) = (cx.input(0)?, cx.output()?);
    let (tx, ty) = (em.ty(x)?.clone(), em.ty(y)?.clone());
    let (Some((qx, sx, zx)), Some((qy, sy, zy))) = (q8(&tx), q8(&ty)) else {
        return Err(cx.err("global average pool kernels need 8-bit per-tensor quantized types"));
    };
    let dims = tx.shape.dims();
    if dims.len() < 2 {
        return Err(cx.err("rank < 2"));
    }
    let nc = dims[0] * dims[1];
    let inner: usize = dims[2..].iter().product();
    if inner == 0 {
        return Err(cx.err("empty planes"));
    }
    // The interpreter sums in f64, which is exact here (checked): the C code forms
    // the same exact sum in int64 fixed point.
    let deq: Vec<f32> = exact::lut(qx, |q| qc_qmath::dequantize(q, sx, zx));
    let (l, ints) = exact::fixed_point(&deq, 52).ok_or_else(|| cx.err("dequantized values"))?;
    let maxabs = ints.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
    if u128::from(maxabs) * inner as u128 >= 1u128 << 53 {
        return Err(cx.err("window sum would not be exact"));
    }
    let lo = ints.iter().min().copied().unwrap_or(0) * inner as i64;
    let hi = ints.iter().max().copied().unwrap_or(0) * inner as i64;
    let inner_f = inner as f64;
    let f = |s: i64| qc_qmath::quantize((exact::scaled(s, l) / inner_f) as f32, sy, zy, qy);
    let (base, taus) = exact::thresholds(lo, hi, 256, f).ok_or_else(|| cx.err("thresholds"))?;
    let (tn, thn) = (cx.name("tx"), cx.name("thr"));
    let ti: Vec<String> = ints.iter().map(|&v| c_i64(v)).collect();
    let th: Vec<String> = taus.iter().map(|&v| c_i64(v)).collect();
    em.data_once(&tn, || Ok(array("int64_t", &tn, &ti)))?;
    em.data_once(&thn, || Ok(array("int64_t", &thn, &th)))?;
    em.need(Piece::Thresh64);
    let (xt, yt, xmin) = (ctype(tx.dtype), ctype(ty.dtype), qmin(qx));
    let kname = format!("qc_gavgpool_{}_{}", sfx(tx.dtype), sfx(ty.dtype));
    em.kernel(&kname, || {
        format!(
            r#"
/* Quantized global average pool: exact fixed-point plane sum, thresholds. */
static void {kname}(const {xt} *x, {yt} *y, int32_t nc, int32_t inner, const int64_t *tx, const int64_t *t, int32_t nt, int32_t base)
{{
    int32_t c, i;
    for (c = 0; c < nc; c++) {{
        int64_t s = 0;
        for (i = 0; i < inner; i++) {{
            s += tx[(int32_t)x[(size_t)c * (size_t)inner + (size_t)i] - ({xmin})];
        }}
        y[c] = ({yt})(base + qc_thresh64(t, nt, s));
    }}
}}
"#
        )
    });
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    Ok(format!(
        "    {kname}({px}, {py}, {}, {}, {tn}, {thn}, {}, {base});\n",
        i32c(cx, nc)?,
        i32c(cx, inner)?,
        taus.len()
    ))
}

fn max_pool(em: &mut Em, cx: &Cx, pool: Option<&PoolAttrs>) -> Result<String> {
    let (x, y) = (cx.input(0)?, cx.output()?);
    let (tx, ty) = (em.ty(x)?.clone(), em.ty(y)?.clone());
    let (Some((qx, sx, zx)), Some((qy, sy, zy))) = (q8(&tx), q8(&ty)) else {
        return Err(
            cx.err("max pool kernels need 8-bit per-tensor quantized types (or one result)")
        );
    };
    let g = match pool {
        Some(p) => pool_geom(cx, p, tx.shape.dims(), ty.shape.dims())?,
        None => {
            // Every plane is one row: the maximum does not depend on the layout.
            let dims = tx.shape.dims();
            if dims.len() < 3 {
                return Err(cx.err("global max pool needs spatial dims"));
            }
            let (nc, w) = (dims[0] * dims[1], dims[2..].iter().product::<usize>());
            PoolGeom {
                nc,
                h: 1,
                w,
                oh: 1,
                ow: 1,
                k: [1, w],
                s: [1, 1],
                d: [1, 1],
                pb: [0, 0],
                pe: [0, 0],
                z: PoolDim::ONE,
            }
        }
    };
    // max commutes with the monotone dequantize → quantize map: take the max code,
    // then map it; an empty window is the interpreter's 0.0.
    let tab = exact::lut(qx, |q| {
        qc_qmath::quantize(qc_qmath::dequantize(q, sx, zx), sy, zy, qy)
    });
    let empty = qc_qmath::quantize(0.0, sy, zy, qy);
    let (tn, pname) = (cx.name("map"), cx.name("p"));
    em.data_once(&tn, || Ok(array(ctype(ty.dtype), &tn, &tab)))?;
    let init = g.init(cx)?;
    em.data_once(&pname, || {
        Ok(format!("static const qc_pool_t {pname} = {{{init}}};\n"))
    })?;
    em.need(Piece::PoolParams);
    let (xt, yt, xmin) = (ctype(tx.dtype), ctype(ty.dtype), qmin(qx));
    let kname = format!("qc_maxpool_{}_{}", sfx(tx.dtype), sfx(ty.dtype));
    em.kernel(&kname, || {
        let open = POOL_LOOP_OPEN.replace("XT", xt);
        let depth = POOL_DEPTH_OPEN.replace("XT", xt);
        format!(
            r#"
/* Quantized max pool: the largest code of the window, mapped to the result type. */
static void {kname}(const {xt} *x, {yt} *y, const qc_pool_t *p, const {yt} *map, int32_t empty)
{{
    size_t o = 0;
{open}                int32_t best = 0, any = 0;
{depth}                for (ky = 0; ky < p->kh; ky++) {{
                    int32_t iy = oy * p->sh - p->ph + ky * p->dh;
                    if (iy < 0 || iy >= p->h) {{
                        continue;
                    }}
                    for (kx = 0; kx < p->kw; kx++) {{
                        int32_t ix = ox * p->sw - p->pw + kx * p->dw;
                        int32_t v;
                        if (ix < 0 || ix >= p->w) {{
                            continue;
                        }}
                        v = (int32_t)xp[iy * p->w + ix];
                        if (!any || v > best) {{
                            best = v;
                            any = 1;
                        }}
                    }}
                }}
                }}
                y[o++] = any ? map[best - ({xmin})] : ({yt})empty;
            }}
        }}
    }}
}}
"#
        )
    });
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    Ok(format!(
        "    {kname}({px}, {py}, &{pname}, {tn}, {empty});\n"
    ))
}

// ---------------------------------------------------------------------------------
// Softmax

fn softmax(em: &mut Em, cx: &Cx, axis: usize) -> Result<String> {
    if em.opts.contract == Contract::Float {
        if let Some(s) = fused::softmax(em, cx, axis)? {
            return Ok(s);
        }
    }
    let (x, y) = (cx.input(0)?, cx.output()?);
    let (tx, ty) = (em.ty(x)?.clone(), em.ty(y)?.clone());
    let (Some((qx, sx, zx)), Some((qy, sy, zy))) = (q8(&tx), q8(&ty)) else {
        return Err(cx.err("softmax kernels need 8-bit per-tensor quantized types"));
    };
    let dims = tx.shape.dims();
    if axis >= dims.len() {
        return Err(cx.err("axis out of range"));
    }
    let outer: usize = dims[..axis].iter().product();
    let dim = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    // e = exp(fl(x_a - x_b)) for code a under the row-maximum code b, exactly as the
    // interpreter computes it (dequantize is monotone, so the largest real value is the
    // largest code's). The C code forms fl(x_a - x_b) with qc_f32_add; the exp of every
    // difference that can occur is tabled, grouped by b - a (a handful each).
    let deq: Vec<f32> = exact::lut(qx, |q| qc_qmath::dequantize(q, sx, zx));
    let (l, _) = exact::fixed_point(&deq, 62).ok_or_else(|| cx.err("dequantized values"))?;
    if l < -126 || deq.iter().any(|v| v.abs() >= 1e37) {
        return Err(cx.err("dequantized values outside the normal f32 range"));
    }
    let mut start: Vec<usize> = Vec::with_capacity(deq.len() + 1);
    let mut keys: Vec<i64> = Vec::new();
    let mut vals: Vec<u32> = Vec::new();
    let mut emin = f32::INFINITY;
    for d in 0..deq.len() {
        start.push(keys.len());
        let mut group: std::collections::BTreeMap<i64, u32> = std::collections::BTreeMap::new();
        for a in 0..deq.len() - d {
            let diff = deq[a] - deq[a + d];
            let e = qc_ir::real::exp(diff);
            emin = emin.min(e);
            group.insert(exact::f32_key(diff), e.to_bits());
        }
        for (k, v) in group {
            keys.push(k);
            vals.push(v);
        }
    }
    start.push(keys.len());
    let floor = f32::MIN_POSITIVE * (dim as f32) * 4.0;
    let too_small = !matches!(
        emin.partial_cmp(&floor),
        Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
    );
    if too_small || dim == 0 || keys.len() > 65535 {
        return Err(cx.err("exponentials would leave the normal f32 range"));
    }
    let f = |k: i64| qc_qmath::quantize(key_f32(k), sy, zy, qy);
    let (base, taus) = exact::thresholds(KEY_NEG_INF, KEY_POS_INF, 256, f)
        .ok_or_else(|| cx.err("softmax thresholds"))?;
    let (qn, sn, kn, vn, tn) = (
        cx.name("deq"),
        cx.name("start"),
        cx.name("keys"),
        cx.name("exp"),
        cx.name("thr"),
    );
    let qv: Vec<String> = deq
        .iter()
        .map(|v| format!("0x{:08x}u", v.to_bits()))
        .collect();
    let vv: Vec<String> = vals.iter().map(|v| format!("0x{v:08x}u")).collect();
    em.data_once(&qn, || Ok(array("uint32_t", &qn, &qv)))?;
    em.data_once(&sn, || Ok(array("uint16_t", &sn, &start)))?;
    em.data_once(&kn, || Ok(array("int32_t", &kn, &keys)))?;
    em.data_once(&vn, || Ok(array("uint32_t", &vn, &vv)))?;
    em.data_once(&tn, || Ok(array("int32_t", &tn, &taus)))?;
    em.need(Piece::F32Add);
    em.need(Piece::F32Div);
    em.need(Piece::Thresh32);
    let (xt, yt, xmin) = (ctype(tx.dtype), ctype(ty.dtype), qmin(qx));
    em.kernel("qc_softmax_exp", || {
        r#"
/* The interpreter's exp(x_a - x_b) as f32 bits, for codes a <= b (offset to 0..):
 * the difference in soft-float, its exp from the group of b - a. */
static uint32_t qc_softmax_exp(const qc_softmax_t *p, int32_t a, int32_t b)
{
    int32_t k = qc_f32_key(qc_f32_add(p->deq[a], p->deq[b] ^ 0x80000000u));
    int32_t i;
    for (i = p->start[b - a]; i < p->start[b - a + 1]; i++) {
        if (p->keys[i] == k) {
            return p->exp[i];
        }
    }
    return 0;
}
"#
        .to_string()
    });
    let pname = cx.name("p");
    let p_init = format!(
        "static const qc_softmax_t {pname} = {{{}, {}, {}, {qn}, {sn}, {kn}, {vn}, {tn}, {}, {base}}};\n",
        i32c(cx, outer)?,
        i32c(cx, dim)?,
        i32c(cx, inner)?,
        taus.len()
    );
    em.data_once(&pname, || Ok(p_init))?;
    em.need(Piece::SoftmaxParams);
    let kname = format!("qc_softmax_{}_{}", sfx(tx.dtype), sfx(ty.dtype));
    em.kernel(&kname, || {
        format!(
            r#"
/* Quantized softmax, bit-exact with the interpreter's f32 definition in integers:
 * e = exp table, f32 sum in order (qc_f32_add), e / sum (qc_f32_div), thresholds. */
static void {kname}(const {xt} *x, {yt} *y, const qc_softmax_t *p)
{{
    int32_t o, i, d, dim = p->dim, inner = p->inner;
    for (o = 0; o < p->outer; o++) {{
        for (i = 0; i < inner; i++) {{
            size_t at = (size_t)o * (size_t)dim * (size_t)inner + (size_t)i;
            int32_t mx = (int32_t)x[at] - ({xmin});
            uint32_t sum = 0;
            for (d = 1; d < dim; d++) {{
                int32_t v = (int32_t)x[at + (size_t)d * (size_t)inner] - ({xmin});
                if (v > mx) {{
                    mx = v;
                }}
            }}
            for (d = 0; d < dim; d++) {{
                int32_t v = (int32_t)x[at + (size_t)d * (size_t)inner] - ({xmin});
                sum = qc_f32_add(sum, qc_softmax_exp(p, v, mx));
            }}
            for (d = 0; d < dim; d++) {{
                int32_t v = (int32_t)x[at + (size_t)d * (size_t)inner] - ({xmin});
                uint32_t q = qc_f32_div(qc_softmax_exp(p, v, mx), sum);
                y[at + (size_t)d * (size_t)inner] = ({yt})(p->base + qc_thresh32(p->thr, p->nthr, qc_f32_key(q)));
            }}
        }}
    }}
}}
"#
        )
    });
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    Ok(format!("    {kname}({px}, {py}, &{pname});\n"))
}

// ---------------------------------------------------------------------------------
// Batch norm with compile-time parameters: one code table per channel

fn batch_norm(em: &mut Em, cx: &Cx, eps: f32) -> Result<String> {
    let (x, y) = (cx.input(0)?, cx.output()?);
    let (tx, ty) = (em.ty(x)?.clone(), em.ty(y)?.clone());
    let (Some((qx, sx, zx)), Some((qy, sy, zy))) = (q8(&tx), q8(&ty)) else {
        return Err(cx.err("batch norm kernels need 8-bit per-tensor quantized types"));
    };
    let dims = tx.shape.dims();
    if dims.len() < 2 || ty.shape != tx.shape {
        return Err(cx.err("batch norm shape"));
    }
    let (outer, c, inner) = (dims[0], dims[1], dims[2..].iter().product::<usize>());
    let mut params = Vec::new();
    for i in 1..5 {
        let v = em
            .real_values(cx.input(i)?)
            .filter(|v| v.len() == c)
            .ok_or_else(|| {
                cx.err("batch norm parameters must be known at compile time, one per channel")
            })?;
        params.push(v);
    }
    let (s, b, mean, var) = (&params[0], &params[1], &params[2], &params[3]);
    let mut tab = Vec::with_capacity(c * 256);
    for ch in 0..c {
        let den = (var[ch] + eps).sqrt();
        tab.extend(exact::lut(qx, |q| {
            let v = qc_qmath::dequantize(q, sx, zx);
            qc_qmath::quantize(s[ch] * (v - mean[ch]) / den + b[ch], sy, zy, qy)
        }));
    }
    let tn = cx.name("map");
    em.data_once(&tn, || Ok(array(ctype(ty.dtype), &tn, &tab)))?;
    let (xt, yt, xmin) = (ctype(tx.dtype), ctype(ty.dtype), qmin(qx));
    let kname = format!("qc_chmap_{}_{}", sfx(tx.dtype), sfx(ty.dtype));
    em.kernel(&kname, || {
        format!(
            r#"
/* A per-channel function of one 8-bit code: y = tab[c * 256 + x - min(x)]. */
static void {kname}(const {xt} *x, {yt} *y, int32_t outer, int32_t nc, int32_t inner, const {yt} *tab)
{{
    int32_t o, c, i;
    size_t at = 0;
    for (o = 0; o < outer; o++) {{
        for (c = 0; c < nc; c++) {{
            const {yt} *t = tab + (size_t)c * 256u;
            for (i = 0; i < inner; i++, at++) {{
                y[at] = t[(int32_t)x[at] - ({xmin})];
            }}
        }}
    }}
}}
"#
        )
    });
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    Ok(format!(
        "    {kname}({px}, {py}, {}, {}, {}, {tn});\n",
        i32c(cx, outer)?,
        i32c(cx, c)?,
        i32c(cx, inner)?
    ))
}

// ---------------------------------------------------------------------------------
// Data movement: raw elements move unchanged; quantized ones go through the
// interpreter's dequantize → quantize, a code table (omitted when it is the identity)

/// The code table from `tx` to `ty` for moved elements: `Ok(None)` when elements move
/// unchanged (same raw type, or a quantized table that is the identity).
fn move_map(
    em: &mut Em,
    cx: &Cx,
    tx: &TensorType,
    ty: &TensorType,
    what: &str,
) -> Result<Option<String>> {
    match (&tx.quant, &ty.quant) {
        (None, None) if tx.dtype == ty.dtype => Ok(None),
        (Some(_), Some(_)) => {
            let (Some((qx, sx, zx)), Some((qy, sy, zy))) = (q8(tx), q8(ty)) else {
                return Err(cx.err("quantized movement needs 8-bit per-tensor types"));
            };
            let tab = exact::lut(qx, |q| {
                qc_qmath::quantize(qc_qmath::dequantize(q, sx, zx), sy, zy, qy)
            });
            let identity = qx == qy && exact::codes(qx).zip(&tab).all(|(c, &t)| c == t);
            if identity {
                return Ok(None);
            }
            let tn = cx.name(what);
            em.data_once(&tn, || Ok(array(ctype(ty.dtype), &tn, &tab)))?;
            Ok(Some(tn))
        }
        _ => Err(cx.err(format!("moving {} into {}", tx.dtype, ty.dtype))),
    }
}

/// Kernel name and source of "y[j] = map(x[i])" element moves for the type pair.
fn move_elem(tx: &TensorType, ty: &TensorType, mapped: bool) -> (String, String) {
    let xmin = tx.quant.as_ref().map_or(0, |p| p.storage.min());
    if mapped {
        (
            format!("{}_{}_m", sfx(tx.dtype), sfx(ty.dtype)),
            format!("tab[(int32_t)x[IX] - ({xmin})]"),
        )
    } else {
        (sfx(ty.dtype).to_string(), "x[IX]".to_string())
    }
}

fn transpose(em: &mut Em, cx: &Cx, perm: &[usize]) -> Result<String> {
    let (x, y) = (cx.input(0)?, cx.output()?);
    let (tx, ty) = (em.ty(x)?.clone(), em.ty(y)?.clone());
    let dims = tx.shape.dims();
    if perm.len() != dims.len() || dims.len() > 6 {
        return Err(cx.err("transpose of rank above 6 or a bad permutation"));
    }
    let map = move_map(em, cx, &tx, &ty, "map")?;
    let mut istride = vec![1usize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        istride[i] = istride[i + 1] * dims[i + 1];
    }
    let mut d6 = [1i32; 6];
    let mut s6 = [0i32; 6];
    for (k, &p) in perm.iter().enumerate() {
        let (Some(&d), Some(&s)) = (dims.get(p), istride.get(p)) else {
            return Err(cx.err("bad permutation"));
        };
        d6[6 - perm.len() + k] = i32c(cx, d)?;
        s6[6 - perm.len() + k] = i32c(cx, s)?;
    }
    if ty.shape.dims().iter().product::<usize>() != dims.iter().product::<usize>() {
        return Err(cx.err("result size"));
    }
    let (suffix, elem) = move_elem(&tx, &ty, map.is_some());
    let (xt, yt) = (ctype(tx.dtype), ctype(ty.dtype));
    let kname = format!("qc_transpose_{suffix}");
    let tabparam = if map.is_some() {
        format!(", const {yt} *tab")
    } else {
        String::new()
    };
    let elem = elem.replace(
        "IX",
        "i0 * s[0] + i1 * s[1] + i2 * s[2] + i3 * s[3] + i4 * s[4] + i5 * s[5]",
    );
    em.kernel(&kname, || {
        format!(
            r#"
/* Transpose: output dims d[], input strides s[] in output dim order (rank <= 6). */
static void {kname}(const {xt} *x, {yt} *y, const int32_t *d, const int32_t *s{tabparam})
{{
    int32_t i0, i1, i2, i3, i4, i5;
    size_t o = 0;
    for (i0 = 0; i0 < d[0]; i0++)
    for (i1 = 0; i1 < d[1]; i1++)
    for (i2 = 0; i2 < d[2]; i2++)
    for (i3 = 0; i3 < d[3]; i3++)
    for (i4 = 0; i4 < d[4]; i4++)
    for (i5 = 0; i5 < d[5]; i5++) {{
        y[o++] = {elem};
    }}
}}
"#
        )
    });
    let (dn, sn) = (cx.name("dims"), cx.name("strides"));
    em.data_once(&dn, || Ok(array("int32_t", &dn, &d6)))?;
    em.data_once(&sn, || Ok(array("int32_t", &sn, &s6)))?;
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    let tabarg = map.map(|t| format!(", {t}")).unwrap_or_default();
    Ok(format!("    {kname}({px}, {py}, {dn}, {sn}{tabarg});\n"))
}

fn concat(em: &mut Em, cx: &Cx, axis: usize) -> Result<String> {
    let y = cx.output()?;
    let ty = em.ty(y)?.clone();
    let od = ty.shape.dims();
    if axis >= od.len() {
        return Err(cx.err("axis out of range"));
    }
    let outer: usize = od[..axis].iter().product();
    let inner: usize = od[axis + 1..].iter().product();
    let total = od[axis] * inner;
    let mut off = 0usize;
    let mut s = String::new();
    for (k, &x) in cx.node.inputs.iter().enumerate() {
        let tx = em.ty(x)?.clone();
        let xd = tx.shape.dims();
        if xd.len() != od.len() || xd[..axis] != od[..axis] || xd[axis + 1..] != od[axis + 1..] {
            return Err(cx.err("operand shapes do not concatenate to the result"));
        }
        let block = xd[axis] * inner;
        let map = move_map(em, cx, &tx, &ty, &format!("map{k}"))?;
        let (suffix, elem) = move_elem(&tx, &ty, map.is_some());
        let (xt, yt) = (ctype(tx.dtype), ctype(ty.dtype));
        let kname = format!("qc_concat_{suffix}");
        let tabparam = if map.is_some() {
            format!(", const {yt} *tab")
        } else {
            String::new()
        };
        let elem = elem.replace("IX", "(size_t)o * (size_t)block + (size_t)i");
        em.kernel(&kname, || {
            format!(
                r#"
/* One operand of a concat: outer blocks of `block` elements into rows of `ystride`
 * at offset `yoff`. */
static void {kname}(const {xt} *x, {yt} *y, int32_t outer, int32_t block, int32_t ystride, int32_t yoff{tabparam})
{{
    int32_t o, i;
    for (o = 0; o < outer; o++) {{
        {yt} *yr = y + (size_t)o * (size_t)ystride + (size_t)yoff;
        for (i = 0; i < block; i++) {{
            yr[i] = {elem};
        }}
    }}
}}
"#
            )
        });
        let (px, py) = (em.ptr(x)?, em.ptr(y)?);
        let tabarg = map.map(|t| format!(", {t}")).unwrap_or_default();
        s.push_str(&format!(
            "    {kname}({px}, {py}, {}, {}, {}, {}{tabarg});\n",
            i32c(cx, outer)?,
            i32c(cx, block)?,
            i32c(cx, total)?,
            i32c(cx, off)?
        ));
        off += block;
    }
    if off != total {
        return Err(cx.err("operands do not fill the result"));
    }
    Ok(s)
}

fn pad(em: &mut Em, cx: &Cx, pads: &[i64], value: f64) -> Result<String> {
    let (x, y) = (cx.input(0)?, cx.output()?);
    let (tx, ty) = (em.ty(x)?.clone(), em.ty(y)?.clone());
    let (xd, yd) = (tx.shape.dims(), ty.shape.dims());
    let r = xd.len();
    if pads.len() != 2 * r || yd.len() != r || r > 6 {
        return Err(cx.err("pad of rank above 6 or bad pads"));
    }
    let map = move_map(em, cx, &tx, &ty, "map")?;
    // The fill: the pad value in the result's meaning (the interpreter pads real
    // values for quantized types, then quantizes).
    let fill: String = match (&ty.quant, ty.dtype) {
        (Some(_), _) => {
            let (qy, sy, zy) = q8(&ty).ok_or_else(|| cx.err("8-bit per-tensor result expected"))?;
            qc_qmath::quantize(value as f32, sy, zy, qy).to_string()
        }
        (None, DType::F32) => exact::c_float(value as f32).ok_or_else(|| cx.err("pad value"))?,
        (None, d) if d.is_int() => format!("{}", value as i64),
        (None, d) => return Err(cx.err(format!("pad of {d}"))),
    };
    let mut d6 = [1i32; 6];
    let mut x6 = [1i32; 6];
    let mut b6 = [0i32; 6];
    for i in 0..r {
        let want = xd[i] as i64 + pads[i] + pads[r + i];
        if want != yd[i] as i64 {
            return Err(cx.err("result shape disagrees with the pads"));
        }
        d6[6 - r + i] = i32c(cx, yd[i])?;
        x6[6 - r + i] = i32c(cx, xd[i])?;
        b6[6 - r + i] = i32::try_from(pads[i]).map_err(|_| cx.err("pad too large"))?;
    }
    let (suffix, elem) = move_elem(&tx, &ty, map.is_some());
    let (xt, yt) = (ctype(tx.dtype), ctype(ty.dtype));
    let kname = format!("qc_pad_{suffix}");
    let tabparam = if map.is_some() {
        format!(", const {yt} *tab")
    } else {
        String::new()
    };
    let elem = elem.replace("IX", "ix");
    em.kernel(&kname, || {
        format!(
            r#"
/* Constant pad (negative pads crop): output dims d[], input dims xd[], begin pads
 * b[] (rank <= 6); positions outside the input get the fill. */
static void {kname}(const {xt} *x, {yt} *y, const int32_t *d, const int32_t *xd, const int32_t *b, {yt} fill{tabparam})
{{
    int32_t i[6], k;
    size_t o = 0, total = 1;
    for (k = 0; k < 6; k++) {{
        i[k] = 0;
        total *= (size_t)d[k];
    }}
    for (o = 0; o < total; o++) {{
        size_t ix = 0;
        int inside = 1;
        for (k = 0; k < 6; k++) {{
            int32_t c = i[k] - b[k];
            if (c < 0 || c >= xd[k]) {{
                inside = 0;
            }}
            ix = ix * (size_t)xd[k] + (size_t)(c < 0 ? 0 : c);
        }}
        y[o] = inside ? {elem} : fill;
        for (k = 5; k >= 0; k--) {{
            if (++i[k] < d[k]) {{
                break;
            }}
            i[k] = 0;
        }}
    }}
}}
"#
        )
    });
    let (dn, xn, bn) = (cx.name("dims"), cx.name("xdims"), cx.name("begin"));
    em.data_once(&dn, || Ok(array("int32_t", &dn, &d6)))?;
    em.data_once(&xn, || Ok(array("int32_t", &xn, &x6)))?;
    em.data_once(&bn, || Ok(array("int32_t", &bn, &b6)))?;
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    let tabarg = map.map(|t| format!(", {t}")).unwrap_or_default();
    Ok(format!(
        "    {kname}({px}, {py}, {dn}, {xn}, {bn}, ({yt}){fill}{tabarg});\n"
    ))
}

// ---------------------------------------------------------------------------------
// N-ary sum, PRelu, cast, reduce mean: statements inlined per node (rare ops, so
// no shared kernel), loops over a 4-D view with literal extents and strides.

/// Nested `for` headers over `vars` with extents `ext` (the body follows).
fn loops4(vars: [&str; 4], ext: [i32; 4]) -> String {
    vars.iter()
        .zip(ext)
        .map(|(v, e)| format!("        for ({v} = 0; {v} < {e}; {v}++)\n"))
        .collect()
}

/// `(size_t)(v0 * s0 + ...)`, dropping zero strides.
fn index4(vars: [&str; 4], st: [i32; 4]) -> String {
    let terms: Vec<String> = vars
        .iter()
        .zip(st)
        .filter(|(_, s)| *s != 0)
        .map(|(v, s)| format!("{v} * {s}"))
        .collect();
    if terms.is_empty() {
        "0".into()
    } else {
        format!("(size_t)({})", terms.join(" + "))
    }
}

const IV: [&str; 4] = ["i0", "i1", "i2", "i3"];

/// ONNX Sum: the interpreter adds the operands left to right in f32, broadcasting
/// (element `o` of the result is `((x0 + x1) + x2) + ..` at the broadcast positions).
/// f32: the same additions in the same order. Quantized: every operand's real values
/// are exact integers in one fixed-point unit; a partial sum is the f32 rounding of
/// the exact sum (`qc_round24`, exact for normal values), the last rounding and the
/// quantization are folded into thresholds as in `binary_exact`.
fn sum(em: &mut Em, cx: &Cx) -> Result<String> {
    let y = cx.output()?;
    let ty = em.ty(y)?.clone();
    let ins = cx.node.inputs.clone();
    if ins.is_empty() {
        return Err(cx.err("sum of no operands"));
    }
    let out = ty.shape.dims();
    let mut tys = Vec::new();
    for &v in &ins {
        tys.push(em.ty(v)?.clone());
    }
    let dims: Vec<&[usize]> = tys.iter().map(|t| t.shape.dims()).collect();
    let (d4, st) = bcast4(cx, &dims, out)?;
    i32c(cx, numel(&ty))?;
    let py = em.ptr(y)?;
    let mut body = String::new();
    if is_raw_f32(&ty) && tys.iter().all(is_raw_f32) {
        for (k, &v) in ins.iter().enumerate() {
            let p = em.ptr(v)?;
            let at = index4(IV, st[k]);
            if k == 0 {
                body.push_str(&format!("            float v = {p}[{at}];\n"));
            } else {
                body.push_str(&format!("            v = v + {p}[{at}];\n"));
            }
        }
        body.push_str(&format!("            {py}[o++] = v;\n"));
        return Ok(block4(d4, &body));
    }
    let Some((qy, sy, zy)) = q8(&ty) else {
        return Err(cx.err("sum: f32, or 8-bit per-tensor quantized operands and result"));
    };
    let mut qs = Vec::new();
    for t in &tys {
        qs.push(q8(t).ok_or_else(|| {
            cx.err("sum: f32, or 8-bit per-tensor quantized operands and result")
        })?);
    }
    if ins.len() > 512 {
        return Err(cx.err("more than 512 operands"));
    }
    let deq: Vec<Vec<f32>> = qs
        .iter()
        .map(|&(q, s, z)| exact::lut(q, |c| qc_qmath::dequantize(c, s, z)))
        .collect();
    let all: Vec<f32> = deq.iter().flatten().copied().collect();
    let (l, ints) = exact::fixed_point(&all, 52)
        .ok_or_else(|| cx.err("operand scales too far apart for an exact integer sum"))?;
    let tabs: Vec<&[i64]> = ints.chunks(256).collect();
    // f32 rounding of a partial sum, as C's qc_round24 (i64 -> f32 rounds once, to
    // nearest even; |s| < 2^62 converts back exactly).
    let r24 = |s: i64| (s as f32) as i64;
    let (mut lo, mut hi) = (0i64, 0i64);
    for (k, t) in tabs.iter().enumerate() {
        let (mn, mx) = (
            t.iter().min().copied().unwrap_or(0),
            t.iter().max().copied().unwrap_or(0),
        );
        if k == 0 {
            (lo, hi) = (mn, mx);
        } else if k == 1 {
            (lo, hi) = (lo + mn, hi + mx);
        } else {
            (lo, hi) = (r24(lo) + mn, r24(hi) + mx);
        }
    }
    if ins.len() >= 3 {
        // Partial sums must be normal f32 values for qc_round24 to be the f32 rounding.
        let top = lo.unsigned_abs().max(hi.unsigned_abs()) as f64 * 2f64.powi(l);
        if l < -126 || top >= f64::from(f32::MAX) / 2.0 {
            return Err(cx.err("partial sums outside the normal f32 range"));
        }
    }
    let f = move |x: i64| qc_qmath::quantize(exact::scaled(x, l) as f32, sy, zy, qy);
    let (base, taus) = exact::thresholds(lo, hi, 256, f).ok_or_else(|| cx.err("thresholds"))?;
    let thn = cx.name("thr");
    let th: Vec<String> = taus.iter().map(|&v| c_i64(v)).collect();
    em.data_once(&thn, || Ok(array("int64_t", &thn, &th)))?;
    em.need(Piece::Thresh64);
    if ins.len() >= 3 {
        em.need(Piece::Round24);
    }
    for (k, &v) in ins.iter().enumerate() {
        let tn = cx.name(&format!("t{k}"));
        let items: Vec<String> = tabs[k].iter().map(|&x| c_i64(x)).collect();
        em.data_once(&tn, || Ok(array("int64_t", &tn, &items)))?;
        let p = em.ptr(v)?;
        let at = index4(IV, st[k]);
        let term = format!("{tn}[(int32_t){p}[{at}] - ({})]", qmin(qs[k].0));
        body.push_str(&match k {
            0 => format!("            int64_t s = {term};\n"),
            1 => format!("            s = s + {term};\n"),
            _ => format!("            s = qc_round24(s) + {term};\n"),
        });
    }
    body.push_str(&format!(
        "            {py}[o++] = ({})({base} + qc_thresh64({thn}, {}, s));\n",
        ctype(ty.dtype),
        taus.len()
    ));
    Ok(block4(d4, &body))
}

fn is_raw_f32(t: &TensorType) -> bool {
    t.dtype == DType::F32 && t.quant.is_none()
}

/// A block looping `i0..i3` over `d4` with output counter `o`.
fn block4(d4: [i32; 4], body: &str) -> String {
    format!(
        "    {{\n        int32_t i0, i1, i2, i3;\n        size_t o = 0;\n{}        {{\n{body}        }}\n    }}\n",
        loops4(IV, d4)
    )
}

/// PRelu `y = x < 0 ? x * slope : x`, the slope broadcast to x. f32: the interpreter's
/// comparison and product. Quantized x (8-bit per tensor) with a constant slope: one
/// 256-entry table per slope element, each entry the interpreter's value.
fn prelu(em: &mut Em, cx: &Cx) -> Result<String> {
    let (x, a, y) = (cx.input(0)?, cx.input(1)?, cx.output()?);
    if cx.node.inputs.len() != 2 {
        return Err(cx.err("expects two operands"));
    }
    let (tx, ta, ty) = (em.ty(x)?.clone(), em.ty(a)?.clone(), em.ty(y)?.clone());
    if tx.shape != ty.shape {
        return Err(cx.err("operand and result shapes differ"));
    }
    let out = ty.shape.dims();
    let (d4, st) = bcast4(cx, &[out, ta.shape.dims()], out)?;
    let sa = st[1];
    i32c(cx, numel(&ty))?;
    let sidx = index4(IV, sa);
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    if is_raw_f32(&tx) && is_raw_f32(&ta) && is_raw_f32(&ty) {
        let pa = em.ptr(a)?;
        let body = format!(
            "            float v = {px}[o];\n            if (v < 0.0f) {{\n                v = v * {pa}[{sidx}];\n            }}\n            {py}[o++] = v;\n"
        );
        return Ok(block4(d4, &body));
    }
    let (Some((qx, sx, zx)), Some((qy, sy, zy))) = (q8(&tx), q8(&ty)) else {
        return Err(cx.err("prelu: f32, or 8-bit per-tensor quantized x and result"));
    };
    let Some(slopes) = em.real_values(a) else {
        return Err(cx.err("quantized prelu needs a constant slope"));
    };
    if slopes.len() != numel(&ta) || slopes.len() > 256 {
        return Err(cx.err("slope with more than 256 elements"));
    }
    let mut tab = Vec::with_capacity(slopes.len() * 256);
    for &s in &slopes {
        tab.extend(exact::lut(qx, |c| {
            let v = qc_qmath::dequantize(c, sx, zx);
            qc_qmath::quantize(if v < 0.0 { v * s } else { v }, sy, zy, qy)
        }));
    }
    let tn = cx.name("map");
    em.data_once(&tn, || Ok(array(ctype(ty.dtype), &tn, &tab)))?;
    let body = format!(
        "            {py}[o] = {tn}[{sidx} * 256u + (size_t)((int32_t){px}[o] - ({}))];\n            o++;\n",
        qmin(qx)
    );
    Ok(block4(d4, &body))
}

/// Cast between raw tensors, as `qc_ir`'s cast: integers wrap (GCC, Clang and Arm's
/// compilers define out-of-range signed conversion as reduction modulo 2^N), floats
/// truncate toward zero and saturate (NaN -> 0), integer -> float rounds to nearest
/// (C's conversion in the default rounding mode), nonzero -> bool true.
fn cast(em: &mut Em, cx: &Cx, to: DType) -> Result<String> {
    let (x, y) = (cx.input(0)?, cx.output()?);
    let (tx, ty) = (em.ty(x)?.clone(), em.ty(y)?.clone());
    if tx.is_quantized() || ty.is_quantized() {
        return Err(cx.err("cast of quantized values (use quantize/dequantize)"));
    }
    if ty.dtype != to || tx.shape != ty.shape {
        return Err(cx.err("result type disagrees with the cast"));
    }
    let n = i32c(cx, numel(&ty))?;
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    if [tx.dtype, to]
        .iter()
        .any(|d| matches!(d, DType::F16 | DType::BF16))
    {
        return half::cast(em, cx, tx.dtype, to, n, &px, &py);
    }
    let yt = ctype(to);
    let limits = |d: DType| -> Option<(&'static str, &'static str, f64, f64)> {
        Some(match d {
            DType::I8 => ("INT8_MIN", "INT8_MAX", -128.0, 127.0),
            DType::U8 => ("0", "UINT8_MAX", 0.0, 255.0),
            DType::I16 => ("INT16_MIN", "INT16_MAX", -32768.0, 32767.0),
            DType::U16 => ("0", "UINT16_MAX", 0.0, 65535.0),
            DType::I32 => ("INT32_MIN", "INT32_MAX", -2147483648.0, 2147483647.0),
            DType::U32 => ("0", "UINT32_MAX", 0.0, 4294967295.0),
            DType::I64 => ("INT64_MIN", "INT64_MAX", i64::MIN as f64, i64::MAX as f64),
            DType::U64 => ("0", "UINT64_MAX", 0.0, u64::MAX as f64),
            _ => return None,
        })
    };
    let expr = if to == DType::Bool {
        format!("(uint8_t)({px}[i] != 0)")
    } else if tx.dtype.is_float() && !to.is_float() {
        let (lo, hi, flo, fhi) = limits(to).ok_or_else(|| cx.err("cast target"))?;
        // Compared in double, where every bound is exact or rounds up past the
        // largest value that truncates into range.
        return Ok(format!(
            "    {{\n        int32_t i;\n        for (i = 0; i < {n}; i++) {{\n            double v = (double){px}[i];\n            {py}[i] = v != v ? ({yt})0 : v <= {flo:e} ? ({yt}){lo} : v >= {fhi:e} ? ({yt}){hi} : ({yt})v;\n        }}\n    }}\n"
        ));
    } else {
        format!("({yt}){px}[i]")
    };
    Ok(format!(
        "    {{\n        int32_t i;\n        for (i = 0; i < {n}; i++) {{\n            {py}[i] = {expr};\n        }}\n    }}\n"
    ))
}

/// ReduceMean over `axes` (all when empty). The interpreter sums in f64 in input order
/// and divides in f64: f32 operands do exactly that in C `double`; quantized ones sum
/// exact fixed-point integers (exact in f64 too, checked) and fold the division and
/// quantization into thresholds, as the global average pool.
fn reduce_mean(em: &mut Em, cx: &Cx, axes: &[usize]) -> Result<String> {
    let (x, y) = (cx.input(0)?, cx.output()?);
    let (tx, ty) = (em.ty(x)?.clone(), em.ty(y)?.clone());
    let dims = tx.shape.dims();
    let r = dims.len();
    if r > 4 {
        return Err(cx.err("rank above 4"));
    }
    let mut red = vec![axes.is_empty(); r];
    for &a in axes {
        match red.get_mut(a) {
            Some(f) if !*f => *f = true,
            _ => return Err(cx.err(format!("axes {axes:?} invalid for rank {r}"))),
        }
    }
    let count: usize = dims
        .iter()
        .zip(&red)
        .filter(|(_, &f)| f)
        .map(|(d, _)| d)
        .product();
    let kept: usize = dims
        .iter()
        .zip(&red)
        .filter(|(_, &f)| !f)
        .map(|(d, _)| d)
        .product();
    if count == 0 || kept != numel(&ty) {
        return Err(cx.err("empty reduction or result size disagrees"));
    }
    i32c(cx, numel(&tx))?;
    let (mut od, mut rd, mut st) = ([1i32; 4], [1i32; 4], [0i32; 4]);
    let mut acc = 1usize;
    for i in (0..r).rev() {
        let j = 4 - r + i;
        let d = i32c(cx, dims[i])?;
        if red[i] {
            rd[j] = d;
        } else {
            od[j] = d;
        }
        st[j] = i32c(cx, acc)?;
        acc *= dims[i];
    }
    let sum_vars = ["r0", "r1", "r2", "r3"];
    let terms: Vec<String> = (0..4)
        .filter(|&j| st[j] != 0 && (od[j] > 1 || rd[j] > 1))
        .map(|j| format!("({} + {}) * {}", IV[j], sum_vars[j], st[j]))
        .collect();
    let at = if terms.is_empty() {
        "0".to_string()
    } else {
        format!("(size_t)({})", terms.join(" + "))
    };
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    let inner_loops: String = loops4(sum_vars, rd)
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    let (init, add, store) = if is_raw_f32(&tx) && is_raw_f32(&ty) {
        (
            "double s = 0.0;".to_string(),
            format!("s += (double){px}[{at}];"),
            format!("{py}[o++] = (float)(s / {:e});", count as f64),
        )
    } else {
        let (Some((qx, sx, zx)), Some((qy, sy, zy))) = (q8(&tx), q8(&ty)) else {
            return Err(cx.err("reduce_mean: f32, or 8-bit per-tensor quantized types"));
        };
        let deq: Vec<f32> = exact::lut(qx, |q| qc_qmath::dequantize(q, sx, zx));
        let (l, ints) = exact::fixed_point(&deq, 52).ok_or_else(|| cx.err("dequantized values"))?;
        let maxabs = ints.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
        if u128::from(maxabs) * count as u128 >= 1u128 << 53 {
            return Err(cx.err("sum would not be exact"));
        }
        let lo = ints.iter().min().copied().unwrap_or(0) * count as i64;
        let hi = ints.iter().max().copied().unwrap_or(0) * count as i64;
        let cf = count as f64;
        let f = |s: i64| qc_qmath::quantize((exact::scaled(s, l) / cf) as f32, sy, zy, qy);
        let (base, taus) = exact::thresholds(lo, hi, 256, f).ok_or_else(|| cx.err("thresholds"))?;
        let (tn, thn) = (cx.name("tx"), cx.name("thr"));
        let ti: Vec<String> = ints.iter().map(|&v| c_i64(v)).collect();
        let th: Vec<String> = taus.iter().map(|&v| c_i64(v)).collect();
        em.data_once(&tn, || Ok(array("int64_t", &tn, &ti)))?;
        em.data_once(&thn, || Ok(array("int64_t", &thn, &th)))?;
        em.need(Piece::Thresh64);
        (
            "int64_t s = 0;".to_string(),
            format!("s += {tn}[(int32_t){px}[{at}] - ({})];", qmin(qx)),
            format!(
                "{py}[o++] = ({})({base} + qc_thresh64({thn}, {}, s));",
                ctype(ty.dtype),
                taus.len()
            ),
        )
    };
    Ok(format!(
        "    {{\n        int32_t i0, i1, i2, i3, r0, r1, r2, r3;\n        size_t o = 0;\n{}        {{\n            {init}\n{inner_loops}            {{\n                {add}\n            }}\n            {store}\n        }}\n    }}\n",
        loops4(IV, od)
    ))
}

/// What a direct (transposed) convolution does with its sums.
enum ConvMode {
    /// Quantized operands: wrapping i32 sums, the contract's requantization.
    Quant,
    /// f32: the interpreter's products and additions in its order, then the activation.
    Float,
    /// conv_integer: the wrapping i32 sums themselves.
    RawI32,
}

/// The depth (first of 3 spatial dims) of an inline direct conv: input and output
/// extents, kernel taps, stride, begin pad, dilation (1, 1, 1, 1, 0, 1 below 3-D).
#[derive(Clone, Copy)]
struct ConvDepth {
    i: usize,
    o: usize,
    k: usize,
    s: usize,
    p: usize,
    d: usize,
}

/// Conv geometry for the inline direct kernels: `[n, cin, h, w, cout, oh, ow, kh, kw,
/// sh, sw, ph, pw, dh, dw, group]` and the depth, validated against the result shape
/// (lower ranks have leading spatial dims 1).
#[allow(clippy::too_many_arguments)]
fn conv_geometry(
    cx: &Cx,
    x: &[usize],
    w: &[usize],
    y: &[usize],
    strides: &[usize],
    dilations: &[usize],
    pads: &[usize],
    group: usize,
    transpose: Option<&[usize]>,
) -> Result<([usize; 16], ConvDepth)> {
    let rank = x.len().saturating_sub(2);
    if !(1..=3).contains(&rank) || w.len() != x.len() || y.len() != x.len() {
        return Err(cx.err("over other than 1, 2 or 3 spatial dims"));
    }
    let (n, cin, yn, cout) = (x[0], x[1], y[0], y[1]);
    let (Some(inp), Some(out), Some(k), Some(s), Some(d)) = (
        attr3(&x[2..], rank, 1),
        attr3(&y[2..], rank, 1),
        attr3(&w[2..], rank, 1),
        attr3(strides, rank, 1),
        attr3(dilations, rank, 1),
    ) else {
        return Err(cx.err("attributes do not match the rank"));
    };
    let (mut pb, mut pe) = ([0; 3], [0; 3]);
    if pads.len() == 2 * rank {
        pb[3 - rank..].copy_from_slice(&pads[..rank]);
        pe[3 - rank..].copy_from_slice(&pads[rank..]);
    } else if !pads.is_empty() {
        return Err(cx.err("attributes do not match the rank"));
    }
    let g = group;
    if k.contains(&0)
        || g == 0
        || cin == 0
        || cout == 0
        || s.contains(&0)
        || d.contains(&0)
        || yn != n
    {
        return Err(cx.err("zero kernel, channels, group, stride or dilation"));
    }
    let ok = match transpose {
        None => {
            // Saturating: absurd attributes must give a mismatch, not an overflow.
            let size = |i: usize| {
                inp[i]
                    .saturating_add(pb[i])
                    .saturating_add(pe[i])
                    .checked_sub(d[i].saturating_mul(k[i] - 1).saturating_add(1))
                    .map(|r| r / s[i] + 1)
            };
            cin % g == 0
                && cout % g == 0
                && w.first() == Some(&cout)
                && w.get(1) == Some(&(cin / g))
                && (0..3).all(|i| size(i) == Some(out[i]))
        }
        Some(opad) => {
            let Some(op) = attr3(opad, rank, 0) else {
                return Err(cx.err("output_padding does not match the rank"));
            };
            // attr3 fills the leading dims with 1: no output padding there.
            let op = {
                let mut o = [0; 3];
                o[3 - rank..].copy_from_slice(&op[3 - rank..]);
                o
            };
            let size = |i: usize| {
                s[i].saturating_mul(inp[i].saturating_sub(1))
                    .saturating_add(op[i])
                    .saturating_add((k[i] - 1).saturating_mul(d[i]))
                    .saturating_add(1)
                    .checked_sub(pb[i].saturating_add(pe[i]))
            };
            cin % g == 0
                && inp.iter().all(|&v| v > 0)
                && w.first() == Some(&cin)
                && w.get(1).map(|c| c * g) == Some(cout)
                && (0..3).all(|i| size(i) == Some(out[i]))
        }
    };
    if !ok {
        return Err(cx.err("result shape disagrees with the geometry"));
    }
    Ok((
        [
            n, cin, inp[1], inp[2], cout, out[1], out[2], k[1], k[2], s[1], s[2], pb[1], pb[2],
            d[1], d[2], g,
        ],
        ConvDepth {
            i: inp[0],
            o: out[0],
            k: k[0],
            s: s[0],
            p: pb[0],
            d: d[0],
        },
    ))
}

/// A direct (transposed) convolution as one inline statement. Every output element
/// gathers its taps in the order (input channel, ky, kx) — the order in which the
/// interpreter's scatter (transposed) or its direct loop adds them, which only the f32
/// mode depends on. Integer sums wrap in `uint32_t`.
#[allow(clippy::too_many_arguments)]
fn direct_conv(
    em: &mut Em,
    cx: &Cx,
    (geo, z): ([usize; 16], ConvDepth),
    transpose: bool,
    mode: ConvMode,
    zx: i32,
    zw: &[i32],
    act: Activation,
    sw: &[f32],
) -> Result<String> {
    let (x, w, y) = (cx.input(0)?, cx.input(1)?, cx.output()?);
    let bias = if matches!(mode, ConvMode::RawI32) {
        None
    } else {
        cx.node.inputs.get(2).copied()
    };
    let (tx, tw, ty) = (em.ty(x)?.clone(), em.ty(w)?.clone(), em.ty(y)?.clone());
    let g: Vec<i32> = geo.iter().map(|&v| i32c(cx, v)).collect::<Result<_>>()?;
    for t in [&tx, &tw, &ty] {
        i32c(cx, numel(t))?;
    }
    let [n, cin, h, wd, cout, oh, ow, kh, kw, sh, sw_, ph, pw, dh, dw, grp] = [
        g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13],
        g[14], g[15],
    ];
    let (cig, cog) = (cin / grp, cout / grp);
    let zg: Vec<i32> = [z.i, z.o, z.k, z.s, z.p, z.d]
        .iter()
        .map(|&v| i32c(cx, v))
        .collect::<Result<_>>()?;
    let [id, od, kd, sd, pd, dd] = [zg[0], zg[1], zg[2], zg[3], zg[4], zg[5]];
    let (px, pwt, py) = (em.ptr(x)?, em.ptr(w)?, em.ptr(y)?);
    let pb = match bias {
        Some(b) => {
            let tb = em.ty(b)?;
            let want = if matches!(mode, ConvMode::Float) {
                is_raw_f32(tb)
            } else {
                tb.dtype == DType::I32 && !tb.is_quantized()
            };
            if !want || numel(tb) != geo[4] {
                return Err(cx.err("bias: one raw value per output channel"));
            }
            Some(em.ptr(b)?)
        }
        None => None,
    };
    let zwn = cx.name("zw");
    let zw_expr = if zw.iter().all(|&z| z == 0) {
        "0".to_string()
    } else {
        em.data_once(&zwn, || Ok(array("int32_t", &zwn, zw)))?;
        format!("{zwn}[c]")
    };
    let (ztap, ytap, xtap) = if transpose {
        (
            format!("int32_t tz = oz + {pd} - kz * {dd}, iz;\n                    if (tz < 0 || tz % {sd} != 0) {{\n                        continue;\n                    }}\n                    iz = tz / {sd};\n                    if (iz >= {id}) {{\n                        continue;\n                    }}"),
            format!("int32_t t = oy + {ph} - ky * {dh}, iy;\n                    if (t < 0 || t % {sh} != 0) {{\n                        continue;\n                    }}\n                    iy = t / {sh};\n                    if (iy >= {h}) {{\n                        continue;\n                    }}"),
            format!("int32_t u = ox + {pw} - kx * {dw}, ix;\n                        if (u < 0 || u % {sw_} != 0) {{\n                            continue;\n                        }}\n                        ix = u / {sw_};\n                        if (ix >= {wd}) {{\n                            continue;\n                        }}"),
        )
    } else {
        (
            format!("int32_t iz = oz * {sd} + kz * {dd} - {pd};\n                    if (iz < 0 || iz >= {id}) {{\n                        continue;\n                    }}"),
            format!("int32_t iy = oy * {sh} + ky * {dh} - {ph};\n                    if (iy < 0 || iy >= {h}) {{\n                        continue;\n                    }}"),
            format!("int32_t ix = ox * {sw_} + kx * {dw} - {pw};\n                        if (ix < 0 || ix >= {wd}) {{\n                            continue;\n                        }}"),
        )
    };
    let widx = if transpose {
        format!(
            "((size_t)ic * {cog} + (size_t)(c % {cog})) * {} + (size_t)((kz * {kh} + ky) * {kw} + kx)",
            kd * kh * kw
        )
    } else {
        format!(
            "((size_t)c * {cig} + (size_t)ci) * {} + (size_t)((kz * {kh} + ky) * {kw} + kx)",
            kd * kh * kw
        )
    };
    let xidx = format!("((((size_t)b * {cin} + (size_t)ic) * {id} + (size_t)iz) * {h} + (size_t)iy) * {wd} + (size_t)ix");
    let (acc_t, init, mac, fin) = match mode {
        ConvMode::Float => {
            let fcx = crate::float_ops::FCx {
                id: cx.id,
                node: cx.node,
            };
            let act = crate::float_ops::act_code(&fcx, act)?;
            (
                "float",
                pb.as_ref()
                    .map_or("0.0f".to_string(), |b| format!("{b}[c]")),
                format!("acc = acc + {px}[{xidx}] * {pwt}[{widx}];"),
                format!("float v = acc;\n                {act}\n                {py}[o] = v;"),
            )
        }
        ConvMode::RawI32 | ConvMode::Quant => {
            let init = pb
                .as_ref()
                .map_or("0u".to_string(), |b| format!("(uint32_t){b}[c]"));
            let mac = format!(
                "acc += ((uint32_t)(int32_t){px}[{xidx}] - (uint32_t)({zx})) * ((uint32_t)(int32_t){pwt}[{widx}] - (uint32_t)zw);"
            );
            let fin = if matches!(mode, ConvMode::RawI32) {
                // Two's complement reinterpretation of the wrapped sum, without the
                // implementation-defined out-of-range conversion.
                format!("{py}[o] = acc <= (uint32_t)INT32_MAX ? (int32_t)acc : (int32_t)(acc - (uint32_t)INT32_MAX - 1u) + INT32_MIN;")
            } else {
                let epi = epilogue(cx, em.opts.contract, sw_scale(cx, &tx)?, sw, &ty, act)?;
                let fields = epilogue_data(em, cx, &epi)?;
                em.need(Piece::ConvParams);
                let pname = cx.name("p");
                let dims: Vec<String> = g.iter().map(|v| v.to_string()).collect();
                let init = format!(
                    "static const qc_conv_t {pname} = {{{}, {zx}, {}, NULL, NULL, {fields}}};\n",
                    dims.join(", "),
                    epi.zy
                );
                em.data_once(&pname, || Ok(init))?;
                format!(
                    "{{\n                    const qc_conv_t *p = &{pname};\n                    int64_t v;\n                    {}\n                    {py}[o] = ({})v;\n                }}",
                    epilogue_code(em.opts.contract, epi.q),
                    ctype(ty.dtype)
                )
            };
            ("uint32_t", init, mac, fin)
        }
    };
    let wz = if matches!(mode, ConvMode::Float) {
        String::new()
    } else {
        format!("            int32_t zw = {zw_expr};\n")
    };
    Ok(format!(
        r#"    {{
        int32_t b, c, oz, oy, ox, ci, kz, ky, kx;
        size_t o = 0;
        for (b = 0; b < {n}; b++)
        for (c = 0; c < {cout}; c++) {{
{wz}            for (oz = 0; oz < {od}; oz++)
            for (oy = 0; oy < {oh}; oy++)
            for (ox = 0; ox < {ow}; ox++, o++) {{
                {acc_t} acc = {init};
                for (ci = 0; ci < {cig}; ci++) {{
                    int32_t ic = (c / {cog}) * {cig} + ci;
                    for (kz = 0; kz < {kd}; kz++) {{
                    {ztap}
                    for (ky = 0; ky < {kh}; ky++) {{
                    {ytap}
                    for (kx = 0; kx < {kw}; kx++) {{
                        {xtap}
                        {mac}
                    }}
                    }}
                    }}
                }}
                {fin}
            }}
        }}
    }}
"#
    ))
}

/// The per-tensor scale of a quantized x.
fn sw_scale(cx: &Cx, tx: &TensorType) -> Result<f32> {
    q8(tx)
        .map(|(_, s, _)| s)
        .ok_or_else(|| cx.err("x must be 8-bit per-tensor quantized"))
}

/// ConvTranspose: quantized (8-bit x per tensor, 8-bit weights per tensor or per
/// output channel along axis 1, raw i32 bias, requantized result) or f32.
fn conv_transpose(em: &mut Em, cx: &Cx, a: &qc_ir::ConvTransposeAttrs) -> Result<String> {
    let (x, w, y) = (cx.input(0)?, cx.input(1)?, cx.output()?);
    let (tx, tw, ty) = (em.ty(x)?.clone(), em.ty(w)?.clone(), em.ty(y)?.clone());
    let geo = conv_geometry(
        cx,
        tx.shape.dims(),
        tw.shape.dims(),
        ty.shape.dims(),
        &a.strides,
        &a.dilations,
        &a.pads,
        a.group,
        Some(&a.output_padding),
    )?;
    if !a.kernel.is_empty() && a.kernel.as_slice() != &tw.shape.dims()[2..] {
        return Err(cx.err("kernel attribute disagrees with the weights"));
    }
    let (cout, g) = (geo.0[4], geo.0[15]);
    let cog = cout / g;
    if is_raw_f32(&tx) && is_raw_f32(&tw) && is_raw_f32(&ty) {
        return direct_conv(em, cx, geo, true, ConvMode::Float, 0, &[], a.act, &[]);
    }
    let (Some((_, _, zx)), Some(pw_)) = (
        q8(&tx),
        tw.quant
            .as_ref()
            .filter(|p| matches!(p.storage, QType::U8 | QType::I8)),
    ) else {
        return Err(cx.err("conv_transpose: f32, or 8-bit quantized x and weights"));
    };
    let (swg, zwg) = weight_params(cx, pw_, cog, 1)?;
    let sw: Vec<f32> = (0..cout).map(|c| swg[c % cog]).collect();
    let zw: Vec<i32> = (0..cout).map(|c| zwg[c % cog]).collect();
    direct_conv(em, cx, geo, true, ConvMode::Quant, zx, &zw, a.act, &sw)
}

/// A constant zero-point operand of conv_integer/matmul_integer: one value, or
/// `n` along a 1-D tensor (the interpreter's `zero_points`).
fn const_zero_points(em: &Em, cx: &Cx, i: usize, n: usize) -> Result<Vec<i32>> {
    let Some(&v) = cx.node.inputs.get(i) else {
        return Ok(vec![0; n]);
    };
    let Some(t) = em.g.const_of(v) else {
        return Err(cx.err(format!("operand {i} (a zero point) must be a constant")));
    };
    if !t.dtype().is_int() {
        return Err(cx.err("zero point must be an integer tensor"));
    }
    let z: Vec<i32> = t.to_i64_vec().into_iter().map(|z| z as i32).collect();
    match z.len() {
        1 => Ok(vec![z[0]; n]),
        l if l == n && t.dims().len() == 1 => Ok(z),
        _ => Err(cx.err(format!("zero point of {} elements for {n}", z.len()))),
    }
}

/// ConvInteger: raw 8-bit x and w, constant zero points, raw i32 result.
fn conv_integer(em: &mut Em, cx: &Cx, a: &qc_ir::ConvAttrs) -> Result<String> {
    let (x, w, y) = (cx.input(0)?, cx.input(1)?, cx.output()?);
    let (tx, tw, ty) = (em.ty(x)?.clone(), em.ty(w)?.clone(), em.ty(y)?.clone());
    let raw8 = |t: &TensorType| !t.is_quantized() && matches!(t.dtype, DType::U8 | DType::I8);
    if !raw8(&tx) || !raw8(&tw) || ty.dtype != DType::I32 || ty.is_quantized() {
        return Err(cx.err("conv_integer: raw 8-bit x and w, raw i32 result"));
    }
    let geo = conv_geometry(
        cx,
        tx.shape.dims(),
        tw.shape.dims(),
        ty.shape.dims(),
        &a.strides,
        &a.dilations,
        &a.pads,
        a.group,
        None,
    )?;
    if a.act != Activation::None {
        return Err(cx.err("conv_integer with a fused activation"));
    }
    let zx = const_zero_points(em, cx, 2, 1)?[0];
    let zw = const_zero_points(em, cx, 3, geo.0[4])?;
    direct_conv(em, cx, geo, false, ConvMode::RawI32, zx, &zw, a.act, &[])
}

/// Numpy matmul geometry as the interpreter's `matmul_geom`: `(m, k, n, blocks)`,
/// `blocks` the (A, B) element offsets of each output batch, row-major over the
/// broadcast batch dims.
type MatMulBlocks = (usize, usize, usize, Vec<(usize, usize)>);

fn matmul_blocks(cx: &Cx, a: &[usize], b: &[usize], y: &[usize]) -> Result<MatMulBlocks> {
    if a.is_empty() || b.is_empty() {
        return Err(cx.err("matmul of a scalar"));
    }
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (ra, rb) = (a2.len(), b2.len());
    let (m, k, kb, n) = (a2[ra - 2], a2[ra - 1], b2[rb - 2], b2[rb - 1]);
    if k != kb {
        return Err(cx.err("inner dims differ"));
    }
    let (ab, bb) = (&a2[..ra - 2], &b2[..rb - 2]);
    let r = ab.len().max(bb.len());
    let pad = |d: &[usize]| -> Vec<usize> {
        let mut v = vec![1; r - d.len()];
        v.extend_from_slice(d);
        v
    };
    let (pa, pb) = (pad(ab), pad(bb));
    let mut batch = Vec::with_capacity(r);
    for (&x, &z) in pa.iter().zip(&pb) {
        batch.push(match (x, z) {
            (x, z) if x == z => x,
            (1, z) => z,
            (x, 1) => x,
            _ => return Err(cx.err("batch dims do not broadcast")),
        });
    }
    let mut out = batch.clone();
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    if out != y {
        return Err(cx.err("result shape disagrees with the matmul"));
    }
    let nb: usize = batch.iter().product();
    let mut blocks = Vec::with_capacity(nb);
    for flat in 0..nb {
        let (mut rem, mut ia, mut ib, mut sa, mut sb) = (flat, 0, 0, 1, 1);
        for d in (0..r).rev() {
            let i = rem % batch[d];
            rem /= batch[d];
            if pa[d] != 1 {
                ia += i * sa;
            }
            if pb[d] != 1 {
                ib += i * sb;
            }
            sa *= pa[d];
            sb *= pb[d];
        }
        blocks.push((ia * m * k, ib * k * n));
    }
    Ok((m, k, n, blocks))
}

/// Batched / broadcast matmul (f32 and 8-bit quantized) and matmul_integer, inline:
/// per output element the sum over k ascending from zero, the interpreter's order
/// (only f32 depends on it).
fn batched_matmul(em: &mut Em, cx: &Cx, act: Activation, integer: bool) -> Result<String> {
    let (a, b, y) = (cx.input(0)?, cx.input(1)?, cx.output()?);
    let (ta, tb, ty) = (em.ty(a)?.clone(), em.ty(b)?.clone(), em.ty(y)?.clone());
    let (m, k, n, blocks) = matmul_blocks(cx, ta.shape.dims(), tb.shape.dims(), ty.shape.dims())?;
    for t in [&ta, &tb, &ty] {
        i32c(cx, numel(t))?;
    }
    let (pa, pb, py) = (em.ptr(a)?, em.ptr(b)?, em.ptr(y)?);
    let (on, bn) = (cx.name("ba"), cx.name("bb"));
    let oa: Vec<String> = blocks.iter().map(|b| b.0.to_string()).collect();
    let ob: Vec<String> = blocks.iter().map(|b| b.1.to_string()).collect();
    em.data_once(&on, || Ok(array("int32_t", &on, &oa)))?;
    em.data_once(&bn, || Ok(array("int32_t", &bn, &ob)))?;
    let aidx = format!("(size_t){on}[t] + (size_t)i * {k} + (size_t)kk");
    let bidx = format!("(size_t){bn}[t] + (size_t)kk * {n} + (size_t)j");
    let raw8 = |t: &TensorType| !t.is_quantized() && matches!(t.dtype, DType::U8 | DType::I8);
    let (acc_t, init, mac, fin) = if integer {
        if !raw8(&ta) || !raw8(&tb) || ty.dtype != DType::I32 || ty.is_quantized() {
            return Err(cx.err("matmul_integer: raw 8-bit operands, raw i32 result"));
        }
        let za = zero_point_expr(em, cx, 2, m, "za", "i")?;
        let zb = zero_point_expr(em, cx, 3, n, "zb", "j")?;
        (
            "uint32_t",
            "0u".to_string(),
            format!("acc += ((uint32_t)(int32_t){pa}[{aidx}] - (uint32_t)(int32_t){za}) * ((uint32_t)(int32_t){pb}[{bidx}] - (uint32_t)(int32_t){zb});"),
            format!("{py}[o] = acc <= (uint32_t)INT32_MAX ? (int32_t)acc : (int32_t)(acc - (uint32_t)INT32_MAX - 1u) + INT32_MIN;"),
        )
    } else if is_raw_f32(&ta) && is_raw_f32(&tb) && is_raw_f32(&ty) {
        let fcx = crate::float_ops::FCx {
            id: cx.id,
            node: cx.node,
        };
        let act = crate::float_ops::act_code(&fcx, act)?;
        (
            "float",
            "0.0f".to_string(),
            format!("acc = acc + {pa}[{aidx}] * {pb}[{bidx}];"),
            format!("float v = acc;\n                    {act}\n                    {py}[o] = v;"),
        )
    } else {
        let (Some((_, sx, zx)), Some(pw_)) = (
            q8(&ta),
            tb.quant
                .as_ref()
                .filter(|p| matches!(p.storage, QType::U8 | QType::I8)),
        ) else {
            return Err(cx.err("matmul: f32, or 8-bit quantized operands"));
        };
        let rb = tb.shape.rank();
        let (sw, zw) = weight_params(cx, pw_, n, rb.saturating_sub(1))?;
        let epi = epilogue(cx, em.opts.contract, sx, &sw, &ty, act)?;
        let fields = epilogue_data(em, cx, &epi)?;
        let zbn = cx.name("zb");
        em.data_once(&zbn, || Ok(array("int32_t", &zbn, &zw)))?;
        em.need(Piece::ConvParams);
        let pname = cx.name("p");
        let p_init = format!(
            "static const qc_conv_t {pname} = {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, {zx}, {}, NULL, NULL, {fields}}};\n",
            epi.zy
        );
        em.data_once(&pname, || Ok(p_init))?;
        (
            "uint32_t",
            "0u".to_string(),
            format!("acc += ((uint32_t)(int32_t){pa}[{aidx}] - (uint32_t)({zx})) * ((uint32_t)(int32_t){pb}[{bidx}] - (uint32_t){zbn}[j]);"),
            format!(
                "{{\n                    const qc_conv_t *p = &{pname};\n                    int32_t c = j;\n                    int64_t v;\n                    {}\n                    {py}[o] = ({})v;\n                }}",
                epilogue_code(em.opts.contract, epi.q),
                ctype(ty.dtype)
            ),
        )
    };
    let nb = i32c(cx, blocks.len())?;
    Ok(format!(
        r#"    {{
        int32_t t, i, j, kk;
        size_t o = 0;
        for (t = 0; t < {nb}; t++)
        for (i = 0; i < {m}; i++)
        for (j = 0; j < {n}; j++, o++) {{
            {acc_t} acc = {init};
            for (kk = 0; kk < {k}; kk++) {{
                {mac}
            }}
            {{
                {fin}
            }}
        }}
    }}
"#
    ))
}

/// The C expression of a zero-point operand of matmul_integer, element `at` (the row
/// or column variable): a constant table, or a run-time value with one element (as
/// `dynamic_quantize` produces) or `n` along a 1-D tensor. Absent: 0.
fn zero_point_expr(
    em: &mut Em,
    cx: &Cx,
    i: usize,
    n: usize,
    what: &str,
    at: &str,
) -> Result<String> {
    let Some(&v) = cx.node.inputs.get(i) else {
        return Ok("0".into());
    };
    if em.g.const_of(v).is_some() {
        let z = const_zero_points(em, cx, i, n)?;
        let name = cx.name(what);
        em.data_once(&name, || Ok(array("int32_t", &name, &z)))?;
        return Ok(format!("{name}[{at}]"));
    }
    let t = em.ty(v)?.clone();
    if t.is_quantized() || !t.dtype.is_int() || t.dtype.size() > 4 {
        return Err(cx.err(format!("operand {i} (a zero point) must be a raw integer")));
    }
    let p = em.ptr(v)?;
    match numel(&t) {
        1 => Ok(format!("{p}[0]")),
        l if l == n && t.shape.rank() == 1 => Ok(format!("{p}[{at}]")),
        l => Err(cx.err(format!("zero point of {l} elements for {n}"))),
    }
}

/// ONNX DynamicQuantizeLinear in f32, the interpreter's operations in its order: the
/// range (NaN skipped) widened to contain 0, scale = (max - min) / 255 (1/255 for a
/// constant input), zero point and codes rounded half to even and clamped to
/// [0, 255] (NaN codes are 0). Float work, so only where the model computes in f32.
fn dynamic_quantize(em: &mut Em, cx: &Cx) -> Result<String> {
    let x = cx.input(0)?;
    let [y, s, z] = cx.node.outputs.as_slice() else {
        return Err(cx.err("expects three results"));
    };
    let (tx, ty, ts, tz) = (
        em.ty(x)?.clone(),
        em.ty(*y)?.clone(),
        em.ty(*s)?.clone(),
        em.ty(*z)?.clone(),
    );
    let ok = is_raw_f32(&tx)
        && ty.dtype == DType::U8
        && !ty.is_quantized()
        && ty.shape == tx.shape
        && is_raw_f32(&ts)
        && numel(&ts) == 1
        && tz.dtype == DType::U8
        && !tz.is_quantized()
        && numel(&tz) == 1;
    if !ok {
        return Err(cx.err("dynamic_quantize: f32 in; u8 codes, f32 scale, u8 zero point out"));
    }
    let n = i32c(cx, numel(&tx))?;
    let (px, py, ps, pz) = (em.ptr(x)?, em.ptr(*y)?, em.ptr(*s)?, em.ptr(*z)?);
    em.kernel("qc_rhe_f32", || {
        r#"
/* Round half to even in f32 (f32::round_ties_even): adding and subtracting 2^23 rounds
 * in the default rounding mode; NaN, infinities and |v| >= 2^23 are returned as is. */
static float qc_rhe_f32(float v)
{
    if (v != v || v >= 8388608.0f || v <= -8388608.0f) {
        return v;
    }
    return v >= 0.0f ? (v + 8388608.0f) - 8388608.0f : (v - 8388608.0f) + 8388608.0f;
}
"#
        .to_string()
    });
    Ok(format!(
        r#"    {{
        float mx = 0.0f, mn = 0.0f, scale, zp;
        int32_t i;
        for (i = 0; i < {n}; i++) {{
            float v = {px}[i];
            if (v > mx) {{
                mx = v;
            }}
            if (v < mn) {{
                mn = v;
            }}
        }}
        scale = (mx == mn ? 1.0f : mx - mn) / 255.0f;
        zp = 0.0f - mn / scale;
        zp = zp < 0.0f ? 0.0f : zp > 255.0f ? 255.0f : zp;
        zp = qc_rhe_f32(zp);
        for (i = 0; i < {n}; i++) {{
            float q = qc_rhe_f32({px}[i] / scale) + zp;
            {py}[i] = q != q ? 0u : q <= 0.0f ? 0u : q >= 255.0f ? 255u : (uint8_t)q;
        }}
        {ps}[0] = scale;
        {pz}[0] = (uint8_t)zp;
    }}
"#
    ))
}

/// MaxPool with its second result, the i64 flat input index of each maximum
/// (`storage_order` 1: spatial coordinates column-major), as the interpreter: the
/// first maximum in window order wins (strict `>`), an empty window gives the empty
/// value (0.0 quantized) and index -1. Quantized operands compare codes, which is
/// the interpreter's comparison of dequantized values because dequantization is
/// strictly increasing on the codes (checked).
fn max_pool_indices(em: &mut Em, cx: &Cx, pool: &PoolAttrs, order: u8) -> Result<String> {
    let x = cx.input(0)?;
    let [y, ix] = cx.node.outputs.as_slice() else {
        return Err(cx.err("max pool with other than one or two results"));
    };
    let (tx, ty, ti) = (em.ty(x)?.clone(), em.ty(*y)?.clone(), em.ty(*ix)?.clone());
    if ti.dtype != DType::I64 || ti.is_quantized() || ti.shape != ty.shape {
        return Err(cx.err("indices must be raw i64 of the result's shape"));
    }
    let g = pool_geom(cx, pool, tx.shape.dims(), ty.shape.dims())?;
    i32c(cx, numel(&tx))?;
    let (bt, load, store, empty) = if is_raw_f32(&tx) && is_raw_f32(&ty) {
        (
            "float",
            String::new(),
            "best".to_string(),
            "0.0f".to_string(),
        )
    } else {
        let (Some((qx, sx, zx)), Some((qy, sy, zy))) = (q8(&tx), q8(&ty)) else {
            return Err(cx.err("max pool: f32, or 8-bit per-tensor quantized types"));
        };
        let deq = exact::lut(qx, |q| qc_qmath::dequantize(q, sx, zx));
        if deq
            .windows(2)
            .any(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less))
        {
            return Err(cx.err("dequantization does not separate the codes"));
        }
        let tab = exact::lut(qx, |q| {
            qc_qmath::quantize(qc_qmath::dequantize(q, sx, zx), sy, zy, qy)
        });
        let tn = cx.name("map");
        em.data_once(&tn, || Ok(array(ctype(ty.dtype), &tn, &tab)))?;
        (
            "int32_t",
            "(int32_t)".to_string(),
            format!("{tn}[best - ({})]", qmin(qx)),
            format!(
                "({}){}",
                ctype(ty.dtype),
                qc_qmath::quantize(0.0, sy, zy, qy)
            ),
        )
    };
    let (h, w, dz) = (g.h, g.w, g.z.inp);
    let plane = dz * h * w;
    // ONNX flat index; storage order 1 takes the spatial coordinates column-major.
    let sp = if order == 1 {
        format!(
            "(int64_t)bz + (int64_t)by * {dz} + (int64_t)bx * {}",
            dz * h
        )
    } else {
        format!("((int64_t)bz * {h} + (int64_t)by) * {w} + (int64_t)bx")
    };
    let (px, py, pi) = (em.ptr(x)?, em.ptr(*y)?, em.ptr(*ix)?);
    let (nc, oh, ow) = (g.nc, g.oh, g.ow);
    let ([kh, kw], [sh, sw], [dh, dw], [ph, pw]) = (g.k, g.s, g.d, g.pb);
    let (od, kd, sd, dd, pd) = (g.z.out, g.z.k, g.z.s, g.z.d, g.z.pb);
    Ok(format!(
        r#"    {{
        int32_t nc, oz, oy, ox, kz, ky, kx;
        size_t o = 0;
        for (nc = 0; nc < {nc}; nc++)
        for (oz = 0; oz < {od}; oz++)
        for (oy = 0; oy < {oh}; oy++)
        for (ox = 0; ox < {ow}; ox++, o++) {{
            {bt} best = 0;
            int32_t any = 0, bz = 0, by = 0, bx = 0;
            for (kz = 0; kz < {kd}; kz++) {{
                int32_t iz = oz * {sd} - {pd} + kz * {dd};
                if (iz < 0 || iz >= {dz}) {{
                    continue;
                }}
                for (ky = 0; ky < {kh}; ky++) {{
                    int32_t iy = oy * {sh} - {ph} + ky * {dh};
                    if (iy < 0 || iy >= {h}) {{
                        continue;
                    }}
                    for (kx = 0; kx < {kw}; kx++) {{
                        int32_t ix = ox * {sw} - {pw} + kx * {dw};
                        {bt} v;
                        if (ix < 0 || ix >= {w}) {{
                            continue;
                        }}
                        v = {load}{px}[(size_t)nc * {plane} + (size_t)((iz * {h} + iy) * {w} + ix)];
                        if (!any || v > best) {{
                            best = v;
                            any = 1;
                            bz = iz;
                            by = iy;
                            bx = ix;
                        }}
                    }}
                }}
            }}
            if (any) {{
                {py}[o] = {store};
                {pi}[o] = (int64_t)nc * {plane} + {sp};
            }} else {{
                {py}[o] = {empty};
                {pi}[o] = -1;
            }}
        }}
    }}
"#
    ))
}
