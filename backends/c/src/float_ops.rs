//! Kernels of ops on raw f32 tensors (float models and the float parts of
//! partially quantized ones).
//!
//! **Invariants.** Each kernel performs the interpreter's f32 operations in the
//! interpreter's order (`qc_interp`'s float kernels: the same accumulation order per
//! output, the same operand order, the same `qc_ir::real` formulas), so results are
//! bit-identical as long as the C compiler neither contracts `a * b + c` into a fused
//! multiply-add nor evaluates in wider precision: ISO C modes (`-std=c99`) keep
//! `-ffp-contract=off` on GCC, and every target qc emits for evaluates binary32 in
//! binary32 (SSE, the Cortex-M FPU, soft-float). Ops whose reference uses `exp`/`tanh`
//! (softmax, sigmoid, tanh in f32) are rejected: without libm the C code cannot
//! reproduce the host's `expf` bit for bit.

use qc_ir::{Activation, DType, Op, PoolAttrs, TensorType, ValueId};

use crate::emit::{array, Em};
use crate::exact::c_float;
use crate::{Error, Result};

pub(crate) struct FCx<'a> {
    pub id: qc_ir::NodeId,
    pub node: &'a qc_ir::Node,
}

impl FCx<'_> {
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
            _ => Err(self.err("the C backend handles one result")),
        }
    }
    fn name(&self, what: &str) -> String {
        format!("qc_n{}_{what}", self.id.index())
    }
}

fn is_f32(t: &TensorType) -> bool {
    t.dtype == DType::F32 && t.quant.is_none()
}

/// Whether the node is an f32-only node of an op this module handles.
pub(crate) fn applies(g: &qc_ir::Graph, node: &qc_ir::Node) -> bool {
    let ty = |v: ValueId| g.values.get(v.index()).map(|x| &x.ty);
    let op_ok = match &node.op {
        Op::MaxPool { .. } => node.outputs.len() == 1,
        Op::MatMul { .. } => {
            node.inputs.len() == 2
                && node
                    .inputs
                    .iter()
                    .all(|&v| ty(v).is_some_and(|t| t.shape.rank() == 2))
        }
        Op::Conv(_)
        | Op::Gemm(_)
        | Op::Add { .. }
        | Op::Sub
        | Op::Mul
        | Op::Div
        | Op::Relu
        | Op::LeakyRelu { .. }
        | Op::Clip { .. }
        | Op::HardSigmoid { .. }
        | Op::HardSwish
        | Op::AveragePool { .. }
        | Op::GlobalMaxPool
        | Op::GlobalAveragePool
        | Op::BatchNorm { .. } => true,
        _ => false,
    };
    op_ok
        && node
            .inputs
            .iter()
            .chain(&node.outputs)
            .all(|&v| ty(v).is_some_and(is_f32))
}

fn lit(cx: &FCx, x: f32) -> Result<String> {
    c_float(x).ok_or_else(|| cx.err(format!("constant {x} cannot be written in C99")))
}

fn i32c(cx: &FCx, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| cx.err(format!("dimension {v} does not fit in int32")))
}

/// C statements applying a fused activation to the float `v` (the `qc_ir::real`
/// formulas; an infinite clip bound is no comparison at all).
pub(crate) fn act_code(cx: &FCx, a: Activation) -> Result<String> {
    Ok(match a {
        Activation::None => String::new(),
        Activation::Relu => "if (v < 0.0f) { v = 0.0f; }".into(),
        Activation::Clip { min, max } => {
            let mut s = String::new();
            if min != f32::NEG_INFINITY {
                s.push_str(&format!("if (v < {0}) {{ v = {0}; }} ", lit(cx, min)?));
            }
            if max != f32::INFINITY {
                s.push_str(&format!("if (v > {0}) {{ v = {0}; }}", lit(cx, max)?));
            }
            s
        }
    })
}

pub(crate) fn node(em: &mut Em, cx: &FCx) -> Result<String> {
    match &cx.node.op {
        Op::Conv(a) => conv(em, cx, a),
        Op::Gemm(a) => gemm(em, cx, a, true),
        // The interpreter's 2-D matmul is its gemm core without alpha.
        Op::MatMul { act } => {
            let attrs = qc_ir::GemmAttrs {
                alpha: 1.0,
                beta: 1.0,
                trans_a: false,
                trans_b: false,
                act: *act,
            };
            gemm(em, cx, &attrs, false)
        }
        Op::Add { act } => binary(em, cx, "+", *act),
        Op::Sub => binary(em, cx, "-", Activation::None),
        Op::Mul => binary(em, cx, "*", Activation::None),
        Op::Div => binary(em, cx, "/", Activation::None),
        Op::Relu => unary(em, cx, "if (v < 0.0f) { v = 0.0f; }".into()),
        Op::LeakyRelu { alpha } => unary(em, cx, format!("if (v < 0.0f) {{ v = v * {}; }}", lit(cx, *alpha)?)),
        Op::Clip { min, max } => {
            let (lo, hi) = qc_ir::real::clip_bounds(*min, *max);
            unary(em, cx, act_code(cx, Activation::Clip { min: lo, max: hi })?)
        }
        Op::HardSigmoid { alpha, beta } => unary(
            em,
            cx,
            format!(
                "v = v * {} + {}; if (v > 1.0f) {{ v = 1.0f; }} if (v < 0.0f) {{ v = 0.0f; }}",
                lit(cx, *alpha)?,
                lit(cx, *beta)?
            ),
        ),
        Op::HardSwish => unary(
            em,
            cx,
            format!(
                "float h = v * {} + {}; if (h > 1.0f) {{ h = 1.0f; }} if (h < 0.0f) {{ h = 0.0f; }} v = v * h;",
                lit(cx, qc_ir::real::HARD_SWISH_ALPHA)?,
                lit(cx, qc_ir::real::HARD_SWISH_BETA)?
            ),
        ),
        Op::MaxPool { pool, .. } => pool_op(em, cx, Some(pool), PoolKind::Max),
        Op::AveragePool {
            pool,
            count_include_pad,
        } => pool_op(em, cx, Some(pool), PoolKind::Avg(*count_include_pad)),
        Op::GlobalMaxPool => pool_op(em, cx, None, PoolKind::Max),
        Op::GlobalAveragePool => global_avg(em, cx),
        Op::BatchNorm { epsilon } => batch_norm(em, cx, *epsilon),
        other => Err(cx.err(format!("no f32 kernel for {}", other.name()))),
    }
}

fn unary(em: &mut Em, cx: &FCx, body: String) -> Result<String> {
    let (x, y) = (cx.input(0)?, cx.output()?);
    let n: usize = em.ty(y)?.shape.dims().iter().product();
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    Ok(format!(
        "    {{\n        int32_t i;\n        for (i = 0; i < {}; i++) {{\n            float v = {px}[i];\n            {body}\n            {py}[i] = v;\n        }}\n    }}\n",
        i32c(cx, n)?
    ))
}

fn binary(em: &mut Em, cx: &FCx, op: &str, act: Activation) -> Result<String> {
    let (a, b, y) = (cx.input(0)?, cx.input(1)?, cx.output()?);
    let (ta, tb, ty) = (em.ty(a)?.clone(), em.ty(b)?.clone(), em.ty(y)?.clone());
    let out = ty.shape.dims();
    let strides = |dims: &[usize]| -> Result<[i32; 4]> {
        if dims.len() > out.len() || out.len() > 4 {
            return Err(cx.err("broadcast over more than 4 dims"));
        }
        let off = out.len() - dims.len();
        let mut s4 = [0i32; 4];
        let mut st = 1usize;
        for i in (0..dims.len()).rev() {
            if dims[i] == out[off + i] {
                s4[4 - out.len() + off + i] = i32c(cx, st)?;
            } else if dims[i] != 1 {
                return Err(cx.err("operand does not broadcast to the result"));
            }
            st *= dims[i];
        }
        Ok(s4)
    };
    let (sa, sb) = (strides(ta.shape.dims())?, strides(tb.shape.dims())?);
    let mut d4 = [1i32; 4];
    for (i, &d) in out.iter().enumerate() {
        d4[4 - out.len() + i] = i32c(cx, d)?;
    }
    let act = act_code(cx, act)?;
    let (pa, pb, py) = (em.ptr(a)?, em.ptr(b)?, em.ptr(y)?);
    Ok(format!(
        r#"    {{
        static const int32_t d[4] = {{{}, {}, {}, {}}}, sa[4] = {{{}, {}, {}, {}}}, sb[4] = {{{}, {}, {}, {}}};
        int32_t i0, i1, i2, i3;
        size_t o = 0;
        for (i0 = 0; i0 < d[0]; i0++)
        for (i1 = 0; i1 < d[1]; i1++)
        for (i2 = 0; i2 < d[2]; i2++)
        for (i3 = 0; i3 < d[3]; i3++) {{
            float v = {pa}[i0 * sa[0] + i1 * sa[1] + i2 * sa[2] + i3 * sa[3]] {op} {pb}[i0 * sb[0] + i1 * sb[1] + i2 * sb[2] + i3 * sb[3]];
            {act}
            {py}[o++] = v;
        }}
    }}
"#,
        d4[0], d4[1], d4[2], d4[3], sa[0], sa[1], sa[2], sa[3], sb[0], sb[1], sb[2], sb[3]
    ))
}

fn conv(em: &mut Em, cx: &FCx, a: &qc_ir::ConvAttrs) -> Result<String> {
    let (x, w, y) = (cx.input(0)?, cx.input(1)?, cx.output()?);
    let bias = cx.node.inputs.get(2).copied();
    let (tx, tw, ty) = (em.ty(x)?.clone(), em.ty(w)?.clone(), em.ty(y)?.clone());
    let geo = |d: &[usize]| match d {
        [n, c, w] => Some((*n, *c, 1, *w)),
        [n, c, h, w] => Some((*n, *c, *h, *w)),
        _ => None,
    };
    let (Some((n, cin, h, wd)), Some((_, cout, oh, ow))) =
        (geo(tx.shape.dims()), geo(ty.shape.dims()))
    else {
        return Err(cx.err("conv over other than 1 or 2 spatial dims"));
    };
    let rank = tx.shape.rank() - 2;
    let (kh, kw) = match tw.shape.dims() {
        [_, _, k] => (1, *k),
        [_, _, p, q] => (*p, *q),
        _ => return Err(cx.err("weight rank")),
    };
    let two = |v: &[usize], def: usize| -> Option<[usize; 2]> {
        match (v.len(), rank) {
            (0, 1) => Some([1, def]),
            (0, _) => Some([def, def]),
            (1, 1) => Some([1, v[0]]),
            (2, 2) => Some([v[0], v[1]]),
            _ => None,
        }
    };
    let (Some(s), Some(d)) = (two(&a.strides, 1), two(&a.dilations, 1)) else {
        return Err(cx.err("conv attributes"));
    };
    let (pb, pe) = match (a.pads.len(), rank) {
        (0, _) => ([0, 0], [0, 0]),
        (2, 1) => ([0, a.pads[0]], [0, a.pads[1]]),
        (4, 2) => ([a.pads[0], a.pads[1]], [a.pads[2], a.pads[3]]),
        _ => return Err(cx.err("pads")),
    };
    let g = a.group;
    if kh == 0
        || kw == 0
        || g == 0
        || cin % g != 0
        || cout % g != 0
        || s.contains(&0)
        || d.contains(&0)
    {
        return Err(cx.err("conv geometry"));
    }
    let od = |i: usize, inp: usize, k: usize| {
        (inp + pb[i] + pe[i])
            .checked_sub(d[i] * (k - 1) + 1)
            .map(|r| r / s[i] + 1)
    };
    if od(0, h, kh) != Some(oh) || od(1, wd, kw) != Some(ow) {
        return Err(cx.err("result shape disagrees with the conv geometry"));
    }
    let bias_expr = match bias {
        Some(b) => em.ptr(b)?,
        None => "NULL".into(),
    };
    let act = act_code(cx, a.act)?;
    let geom: Vec<String> = [
        n, cin, h, wd, cout, oh, ow, kh, kw, s[0], s[1], pb[0], pb[1], d[0], d[1], g,
    ]
    .iter()
    .map(|&v| i32c(cx, v).map(|v| v.to_string()))
    .collect::<Result<_>>()?;
    let gn = cx.name("geom");
    em.data_once(&gn, || Ok(array("int32_t", &gn, &geom)))?;
    em.kernel("qc_fconv", || {
        r#"
/* f32 convolution, the interpreter's order: per output, bias then + x * w over
 * input channels and taps (taps in the padding skipped). g[]: n, cin, h, w, cout,
 * oh, ow, kh, kw, sh, sw, ph, pw, dh, dw, group. Activation applied by the caller. */
static void qc_fconv(const float *x, const float *w, const float *bias, float *y, const int32_t *g)
{
    int32_t cig = g[1] / g[15], cog = g[4] / g[15], ksz = g[7] * g[8];
    int32_t b, c, oy, ox, ci, ky, kx;
    for (b = 0; b < g[0]; b++) {
        for (c = 0; c < g[4]; c++) {
            const float *xg = x + ((size_t)b * (size_t)g[1] + (size_t)(c / cog) * (size_t)cig) * (size_t)g[2] * (size_t)g[3];
            for (oy = 0; oy < g[5]; oy++) {
                for (ox = 0; ox < g[6]; ox++) {
                    float acc = bias != NULL ? bias[c] : 0.0f;
                    for (ci = 0; ci < cig; ci++) {
                        const float *xc = xg + (size_t)ci * (size_t)g[2] * (size_t)g[3];
                        const float *wk = w + ((size_t)c * (size_t)cig + (size_t)ci) * (size_t)ksz;
                        for (ky = 0; ky < g[7]; ky++) {
                            int32_t iy = oy * g[9] - g[11] + ky * g[13];
                            if (iy < 0 || iy >= g[2]) {
                                continue;
                            }
                            for (kx = 0; kx < g[8]; kx++) {
                                int32_t ix = ox * g[10] - g[12] + kx * g[14];
                                if (ix < 0 || ix >= g[3]) {
                                    continue;
                                }
                                acc = acc + xc[iy * g[3] + ix] * wk[ky * g[8] + kx];
                            }
                        }
                    }
                    y[(((size_t)b * (size_t)g[4] + (size_t)c) * (size_t)g[5] + (size_t)oy) * (size_t)g[6] + (size_t)ox] = acc;
                }
            }
        }
    }
}
"#
        .to_string()
    });
    let (px, pw_, py) = (em.ptr(x)?, em.ptr(w)?, em.ptr(y)?);
    let total: usize = ty.shape.dims().iter().product();
    let mut s = format!("    qc_fconv({px}, {pw_}, {bias_expr}, {py}, {gn});\n");
    if !act.is_empty() {
        s.push_str(&format!(
            "    {{\n        int32_t i;\n        for (i = 0; i < {}; i++) {{\n            float v = {py}[i];\n            {act}\n            {py}[i] = v;\n        }}\n    }}\n",
            i32c(cx, total)?
        ));
    }
    Ok(s)
}

fn gemm(em: &mut Em, cx: &FCx, a: &qc_ir::GemmAttrs, scale: bool) -> Result<String> {
    let (x, w, y) = (cx.input(0)?, cx.input(1)?, cx.output()?);
    let c_in = cx.node.inputs.get(2).copied();
    let (tx, tw) = (em.ty(x)?.clone(), em.ty(w)?.clone());
    let ([a0, a1], [b0, b1]) = (tx.shape.dims(), tw.shape.dims()) else {
        return Err(cx.err("gemm operands must be 2-D"));
    };
    let (m, k) = if a.trans_a { (*a1, *a0) } else { (*a0, *a1) };
    let (kb, n) = if a.trans_b { (*b1, *b0) } else { (*b0, *b1) };
    if k != kb || em.ty(y)?.shape.dims() != [m, n] {
        return Err(cx.err("gemm shapes disagree"));
    }
    // C broadcast to [m, n]: strides along rows and columns (0 where broadcast).
    let (c_expr, rs, cs) = match c_in {
        Some(c) => {
            let cd = em.ty(c)?.shape.dims().to_vec();
            let (r, cc) = match cd.as_slice() {
                [] => (1, 1),
                [q] => (1, *q),
                [p, q] => (*p, *q),
                _ => return Err(cx.err("C rank")),
            };
            if !(r == 1 || r == m) || !(cc == 1 || cc == n) {
                return Err(cx.err("C does not broadcast to the result"));
            }
            let rs = if r == m && m > 1 { cc } else { 0 };
            let cs = usize::from(cc == n && n > 1);
            (em.ptr(c)?, rs, cs)
        }
        None => ("NULL".into(), 0, 0),
    };
    let act = act_code(cx, a.act)?;
    let (alpha, beta) = (lit(cx, a.alpha)?, lit(cx, a.beta)?);
    let use_c = c_in.is_some() && a.beta != 0.0;
    // trans_b: each output is the interpreter's 8-lane interleaved dot product;
    // otherwise a sequential sum over k.
    let dot = if a.trans_b {
        format!(
            r#"float l[8] = {{0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}}, s = 0.0f;
                int32_t kk, q, k8 = {k} - {k} % 8;
                for (kk = 0; kk < k8; kk += 8) {{
                    for (q = 0; q < 8; q++) {{
                        l[q] = l[q] + A(i, kk + q) * B[(size_t)j * {k} + (size_t)(kk + q)];
                    }}
                }}
                for (kk = k8; kk < {k}; kk++) {{
                    s = s + A(i, kk) * B[(size_t)j * {k} + (size_t)kk];
                }}
                for (q = 0; q < 8; q++) {{
                    s = s + l[q];
                }}
                v = 0.0f + s;"#
        )
    } else {
        format!(
            r#"int32_t kk;
                v = 0.0f;
                for (kk = 0; kk < {k}; kk++) {{
                    v = v + A(i, kk) * B[(size_t)kk * {n} + (size_t)j];
                }}"#
        )
    };
    let aidx = if a.trans_a {
        format!("a_[(size_t)(kk_) * {m} + (size_t)(i_)]")
    } else {
        format!("a_[(size_t)(i_) * {k} + (size_t)(kk_)]")
    };
    let (pa, pb, py) = (em.ptr(x)?, em.ptr(w)?, em.ptr(y)?);
    let alpha_term = if scale {
        format!("v *= {alpha};")
    } else {
        String::new()
    };
    let cterm = if use_c {
        format!("v += {c_expr}[(size_t)i * {rs} + (size_t)j * {cs}] * {beta};")
    } else {
        String::new()
    };
    Ok(format!(
        r#"    {{
        const float *a_ = {pa};
        const float *B = {pb};
        int32_t i, j;
        for (i = 0; i < {m}; i++) {{
            for (j = 0; j < {n}; j++) {{
                float v;
#define A(i_, kk_) {aidx}
                {dot}
#undef A
                {alpha_term}
                {cterm}
                {act}
                {py}[(size_t)i * {n} + (size_t)j] = v;
            }}
        }}
    }}
"#
    ))
}

enum PoolKind {
    Max,
    Avg(bool),
}

fn pool_op(em: &mut Em, cx: &FCx, pool: Option<&PoolAttrs>, kind: PoolKind) -> Result<String> {
    let (x, y) = (cx.input(0)?, cx.output()?);
    let (tx, ty) = (em.ty(x)?.clone(), em.ty(y)?.clone());
    let geo = |d: &[usize]| match d {
        [n, c, w] => Some((*n, *c, 1, *w)),
        [n, c, h, w] => Some((*n, *c, *h, *w)),
        _ => None,
    };
    let (Some((n, c, h, w)), Some((_, _, oh, ow))) = (geo(tx.shape.dims()), geo(ty.shape.dims()))
    else {
        return Err(cx.err("pooling over other than 1 or 2 spatial dims"));
    };
    let rank = tx.shape.rank() - 2;
    let (k, s, d, pb, pe) = match pool {
        None => ([h, w], [1, 1], [1, 1], [0, 0], [0, 0]),
        Some(p) => {
            let two = |v: &[usize], def: usize| -> Option<[usize; 2]> {
                match (v.len(), rank) {
                    (0, 1) => Some([1, def]),
                    (0, _) => Some([def, def]),
                    (1, 1) => Some([1, v[0]]),
                    (2, 2) => Some([v[0], v[1]]),
                    _ => None,
                }
            };
            let (Some(k), Some(s), Some(d)) =
                (two(&p.kernel, 0), two(&p.strides, 1), two(&p.dilations, 1))
            else {
                return Err(cx.err("pool attributes"));
            };
            let (pb, pe) = match (p.pads.len(), rank) {
                (0, _) => ([0, 0], [0, 0]),
                (2, 1) => ([0, p.pads[0]], [0, p.pads[1]]),
                (4, 2) => ([p.pads[0], p.pads[1]], [p.pads[2], p.pads[3]]),
                _ => return Err(cx.err("pads")),
            };
            (k, s, d, pb, pe)
        }
    };
    let gv: Vec<String> = [
        n * c,
        h,
        w,
        oh,
        ow,
        k[0],
        k[1],
        s[0],
        s[1],
        pb[0],
        pb[1],
        d[0],
        d[1],
        pe[0],
        pe[1],
    ]
    .iter()
    .map(|&v| i32c(cx, v).map(|v| v.to_string()))
    .collect::<Result<_>>()?;
    let gn = cx.name("pool");
    em.data_once(&gn, || Ok(array("int32_t", &gn, &gv)))?;
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    match kind {
        PoolKind::Max => {
            em.kernel("qc_fmaxpool", || {
                r#"
/* f32 max pool (strict > keeps the first maximum; an empty window gives 0).
 * g[]: nc, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw, eh, ew. */
static void qc_fmaxpool(const float *x, float *y, const int32_t *g)
{
    int32_t nc, oy, ox, ky, kx;
    size_t o = 0;
    for (nc = 0; nc < g[0]; nc++) {
        const float *xp = x + (size_t)nc * (size_t)g[1] * (size_t)g[2];
        for (oy = 0; oy < g[3]; oy++) {
            for (ox = 0; ox < g[4]; ox++) {
                float best = 0.0f;
                int any = 0;
                for (ky = 0; ky < g[5]; ky++) {
                    int32_t iy = oy * g[7] - g[9] + ky * g[11];
                    if (iy < 0 || iy >= g[1]) {
                        continue;
                    }
                    for (kx = 0; kx < g[6]; kx++) {
                        int32_t ix = ox * g[8] - g[10] + kx * g[12];
                        float v;
                        if (ix < 0 || ix >= g[2]) {
                            continue;
                        }
                        v = xp[iy * g[2] + ix];
                        if (!any || v > best) {
                            best = v;
                            any = 1;
                        }
                    }
                }
                y[o++] = best;
            }
        }
    }
}
"#
                .to_string()
            });
            Ok(format!("    qc_fmaxpool({px}, {py}, {gn});\n"))
        }
        PoolKind::Avg(include_pad) => {
            em.kernel("qc_favgpool", || {
                r#"
/* f32 average pool: sum in window order from 0, divided by the number of taps
 * inside the input (or, with include_pad, inside the explicitly padded input).
 * g[] as qc_fmaxpool. */
static void qc_favgpool(const float *x, float *y, const int32_t *g, int include_pad)
{
    int32_t nc, oy, ox, ky, kx;
    size_t o = 0;
    for (nc = 0; nc < g[0]; nc++) {
        const float *xp = x + (size_t)nc * (size_t)g[1] * (size_t)g[2];
        for (oy = 0; oy < g[3]; oy++) {
            for (ox = 0; ox < g[4]; ox++) {
                float sum = 0.0f;
                int32_t inside = 0, ny = 0, nx = 0;
                for (ky = 0; ky < g[5]; ky++) {
                    int32_t iy = oy * g[7] - g[9] + ky * g[11];
                    if (oy * g[7] + ky * g[11] < g[1] + g[9] + g[13]) {
                        ny++;
                    }
                    if (iy < 0 || iy >= g[1]) {
                        continue;
                    }
                    for (kx = 0; kx < g[6]; kx++) {
                        int32_t ix = ox * g[8] - g[10] + kx * g[12];
                        if (ix < 0 || ix >= g[2]) {
                            continue;
                        }
                        sum = sum + xp[iy * g[2] + ix];
                        inside++;
                    }
                }
                for (kx = 0; kx < g[6]; kx++) {
                    if (ox * g[8] + kx * g[12] < g[2] + g[10] + g[14]) {
                        nx++;
                    }
                }
                y[o++] = sum / (float)(include_pad ? ny * nx : inside);
            }
        }
    }
}
"#
                .to_string()
            });
            Ok(format!(
                "    qc_favgpool({px}, {py}, {gn}, {});\n",
                i32::from(include_pad)
            ))
        }
    }
}

fn global_avg(em: &mut Em, cx: &FCx) -> Result<String> {
    let (x, y) = (cx.input(0)?, cx.output()?);
    let d = em.ty(x)?.shape.dims().to_vec();
    if d.len() < 2 {
        return Err(cx.err("rank < 2"));
    }
    let inner: usize = d[2..].iter().product();
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    // The interpreter sums in f64 and divides in f64.
    Ok(format!(
        r#"    {{
        int32_t c, i;
        for (c = 0; c < {}; c++) {{
            double s = -0.0; /* Rust's f64 sum starts at -0.0 */
            for (i = 0; i < {inner}; i++) {{
                s = s + (double){px}[(size_t)c * {inner} + (size_t)i];
            }}
            {py}[c] = (float)(s / {inner}.0);
        }}
    }}
"#,
        i32c(cx, d[0] * d[1])?
    ))
}

fn batch_norm(em: &mut Em, cx: &FCx, eps: f32) -> Result<String> {
    let (x, y) = (cx.input(0)?, cx.output()?);
    let d = em.ty(x)?.shape.dims().to_vec();
    if d.len() < 2 {
        return Err(cx.err("rank < 2"));
    }
    let (outer, c, inner) = (d[0], d[1], d[2..].iter().product::<usize>());
    let mut p = Vec::new();
    for i in 1..5 {
        let v = em
            .real_values(cx.input(i)?)
            .filter(|v| v.len() == c)
            .ok_or_else(|| cx.err("batch norm parameters must be known at compile time"))?;
        p.push(v);
    }
    let den: Vec<f32> = (0..c).map(|ch| (p[3][ch] + eps).sqrt()).collect();
    let names = ["s", "b", "mean", "den"];
    let vals = [&p[0], &p[1], &p[2], &den];
    let mut tn = Vec::new();
    for (nm, v) in names.iter().zip(vals) {
        let n = cx.name(&format!("bn_{nm}"));
        let items: Vec<String> = v.iter().map(|&x| lit(cx, x)).collect::<Result<_>>()?;
        em.data_once(&n, || Ok(array("float", &n, &items)))?;
        tn.push(n);
    }
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    Ok(format!(
        r#"    {{
        int32_t o, c, i;
        size_t at = 0;
        for (o = 0; o < {outer}; o++)
        for (c = 0; c < {c}; c++)
        for (i = 0; i < {inner}; i++, at++) {{
            {py}[at] = {s}[c] * ({px}[at] - {mean}[c]) / {den}[c] + {b}[c];
        }}
    }}
"#,
        s = tn[0],
        b = tn[1],
        mean = tn[2],
        den = tn[3]
    ))
}
