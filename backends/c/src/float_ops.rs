//! Kernels of ops on raw f32 tensors (float models and the float parts of
//! partially quantized ones).
//!
//! **Invariants.** Each kernel performs the interpreter's f32 operations in the
//! interpreter's order (`qc_interp`'s float kernels: the same accumulation order per
//! output, the same operand order, the same `qc_ir::real` formulas), so results are
//! bit-identical as long as the C compiler neither contracts `a * b + c` into a fused
//! multiply-add nor evaluates in wider precision: ISO C modes (`-std=c99`) keep
//! `-ffp-contract=off` on GCC, and every target qc emits for evaluates binary32 in
//! binary32 (SSE, the Cortex-M FPU, soft-float). Sigmoid, tanh, softmax and lrn call
//! `cmath`'s C versions of `qc_ir::real::{sigmoid, tanh, exp, pow}`, which the
//! interpreter uses too: no libm, the same bits on every target. Batch norm with
//! run-time parameters takes its square root from `qc_fsqrt`, an integer correctly
//! rounded `sqrt` (as IEEE and the interpreter's `f32::sqrt`).

use qc_ir::{Activation, DType, Op, PoolAttrs, TensorType, ValueId};

use crate::cmath;
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
        | Op::Sigmoid
        | Op::Tanh
        | Op::Softmax { .. }
        | Op::Lrn(_)
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
        Op::Sigmoid => {
            cmath::require(em, cmath::Fn::Sigmoid);
            unary(em, cx, "v = qc_sigmoidf(v);".into())
        }
        Op::Tanh => {
            cmath::require(em, cmath::Fn::Tanh);
            unary(em, cx, "v = qc_tanhf(v);".into())
        }
        Op::Softmax { axis } => softmax(em, cx, *axis),
        Op::Lrn(a) => lrn(em, cx, a),
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
    let (ext, st) = crate::ops::bcast_loops(&[ta.shape.dims(), tb.shape.dims()], ty.shape.dims())
        .map_err(|m| cx.err(m))?;
    let c4 = |v: [usize; 4]| -> Result<[i32; 4]> {
        Ok([
            i32c(cx, v[0])?,
            i32c(cx, v[1])?,
            i32c(cx, v[2])?,
            i32c(cx, v[3])?,
        ])
    };
    let (d4, sa, sb) = (c4(ext)?, c4(st[0])?, c4(st[1])?);
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

/// A per-spatial-dim attribute right-aligned into 3 slots (leading slots 1), or
/// `default` in every spatial slot when empty; `None` when its length is not `rank`.
fn sp3(v: &[usize], rank: usize, default: usize) -> Option<[usize; 3]> {
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

/// Begin and end pads right-aligned into 3 slots (`pads` empty or `2 * rank` long).
fn pads3(p: &[usize], rank: usize) -> Option<([usize; 3], [usize; 3])> {
    let (mut pb, mut pe) = ([0; 3], [0; 3]);
    if p.len() == 2 * rank {
        pb[3 - rank..].copy_from_slice(&p[..rank]);
        pe[3 - rank..].copy_from_slice(&p[rank..]);
    } else if !p.is_empty() {
        return None;
    }
    Some((pb, pe))
}

fn conv(em: &mut Em, cx: &FCx, a: &qc_ir::ConvAttrs) -> Result<String> {
    let (x, w, y) = (cx.input(0)?, cx.input(1)?, cx.output()?);
    let bias = cx.node.inputs.get(2).copied();
    let (tx, tw, ty) = (em.ty(x)?.clone(), em.ty(w)?.clone(), em.ty(y)?.clone());
    let (xd, wd, yd) = (tx.shape.dims(), tw.shape.dims(), ty.shape.dims());
    let rank = xd.len().saturating_sub(2);
    if !(1..=3).contains(&rank) || wd.len() != xd.len() || yd.len() != xd.len() {
        return Err(cx.err("conv over other than 1, 2 or 3 spatial dims"));
    }
    let (n, cin, cout) = (xd[0], xd[1], wd[0]);
    let (Some(inp), Some(out), Some(k), Some(s), Some(d), Some((pb, pe))) = (
        sp3(&xd[2..], rank, 1),
        sp3(&yd[2..], rank, 1),
        sp3(&wd[2..], rank, 1),
        sp3(&a.strides, rank, 1),
        sp3(&a.dilations, rank, 1),
        pads3(&a.pads, rank),
    ) else {
        return Err(cx.err("conv attributes do not match the rank"));
    };
    let g = a.group;
    if k.contains(&0)
        || g == 0
        || cin % g != 0
        || cout % g != 0
        || wd[1] * g != cin
        || yd[..2] != [n, cout]
        || s.contains(&0)
        || d.contains(&0)
    {
        return Err(cx.err("conv geometry"));
    }
    for i in 0..3 {
        let o = (inp[i] + pb[i] + pe[i])
            .checked_sub(d[i] * (k[i] - 1) + 1)
            .map(|r| r / s[i] + 1);
        if o != Some(out[i]) {
            return Err(cx.err("result shape disagrees with the conv geometry"));
        }
    }
    let bias_expr = match bias {
        Some(b) => em.ptr(b)?,
        None => "NULL".into(),
    };
    let act = act_code(cx, a.act)?;
    let mut gv = vec![n, cin];
    gv.extend(inp);
    gv.push(cout);
    for v in [out, k, s, pb, d] {
        gv.extend(v);
    }
    gv.push(g);
    let geom: Vec<String> = gv
        .iter()
        .map(|&v| i32c(cx, v).map(|v| v.to_string()))
        .collect::<Result<_>>()?;
    let gn = cx.name("geom");
    em.data_once(&gn, || Ok(array("int32_t", &gn, &geom)))?;
    em.kernel("qc_fconv", || {
        r#"
/* f32 convolution over 3 spatial dims (1-D and 2-D have leading dims 1), the
 * interpreter's order: per output, bias then + x * w over input channels and taps
 * (taps in the padding skipped). g[]: n, cin, id, ih, iw, cout, od, oh, ow, kd, kh,
 * kw, sd, sh, sw, pd, ph, pw, dd, dh, dw, group. Activation applied by the caller. */
static void qc_fconv(const float *x, const float *w, const float *bias, float *y, const int32_t *g)
{
    int32_t cig = g[1] / g[21], cog = g[5] / g[21], ksz = g[9] * g[10] * g[11];
    size_t isz = (size_t)g[2] * (size_t)g[3] * (size_t)g[4], o = 0;
    int32_t b, c, oz, oy, ox, ci, kz, ky, kx;
    for (b = 0; b < g[0]; b++) {
        for (c = 0; c < g[5]; c++) {
            const float *xg = x + ((size_t)b * (size_t)g[1] + (size_t)(c / cog) * (size_t)cig) * isz;
            for (oz = 0; oz < g[6]; oz++) {
                for (oy = 0; oy < g[7]; oy++) {
                    for (ox = 0; ox < g[8]; ox++) {
                        float acc = bias != NULL ? bias[c] : 0.0f;
                        for (ci = 0; ci < cig; ci++) {
                            const float *xc = xg + (size_t)ci * isz;
                            const float *wk = w + ((size_t)c * (size_t)cig + (size_t)ci) * (size_t)ksz;
                            for (kz = 0; kz < g[9]; kz++) {
                                int32_t iz = oz * g[12] - g[15] + kz * g[18];
                                if (iz < 0 || iz >= g[2]) {
                                    continue;
                                }
                                for (ky = 0; ky < g[10]; ky++) {
                                    int32_t iy = oy * g[13] - g[16] + ky * g[19];
                                    if (iy < 0 || iy >= g[3]) {
                                        continue;
                                    }
                                    for (kx = 0; kx < g[11]; kx++) {
                                        int32_t ix = ox * g[14] - g[17] + kx * g[20];
                                        if (ix < 0 || ix >= g[4]) {
                                            continue;
                                        }
                                        acc = acc + xc[((size_t)iz * (size_t)g[3] + (size_t)iy) * (size_t)g[4] + (size_t)ix]
                                                  * wk[(kz * g[10] + ky) * g[11] + kx];
                                    }
                                }
                            }
                        }
                        y[o++] = acc;
                    }
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
    let (xd, yd) = (tx.shape.dims(), ty.shape.dims());
    let rank = xd.len().saturating_sub(2);
    if !(1..=3).contains(&rank) || yd.len() != xd.len() || yd[..2] != xd[..2] {
        return Err(cx.err("pooling over other than 1, 2 or 3 spatial dims"));
    }
    let (Some(inp), Some(out)) = (sp3(&xd[2..], rank, 1), sp3(&yd[2..], rank, 1)) else {
        return Err(cx.err("pool shapes"));
    };
    let (k, s, d, pb, pe, ceil) = match pool {
        None => (inp, [1; 3], [1; 3], [0; 3], [0; 3], false),
        Some(p) => {
            let (Some(k), Some(s), Some(d), Some((pb, pe))) = (
                sp3(&p.kernel, rank, 0),
                sp3(&p.strides, rank, 1),
                sp3(&p.dilations, rank, 1),
                pads3(&p.pads, rank),
            ) else {
                return Err(cx.err("pool attributes do not match the rank"));
            };
            (k, s, d, pb, pe, p.ceil_mode)
        }
    };
    if k.contains(&0) || s.contains(&0) || d.contains(&0) {
        return Err(cx.err("pool geometry"));
    }
    // Output size as the interpreter computes it.
    for i in 0..3 {
        let Some(r) = (inp[i] + pb[i] + pe[i]).checked_sub(d[i] * (k[i] - 1) + 1) else {
            return Err(cx.err("window larger than the padded input"));
        };
        let mut want = if ceil {
            r.div_ceil(s[i]) + 1
        } else {
            r / s[i] + 1
        };
        if ceil && (want - 1) * s[i] >= inp[i] + pb[i] {
            want -= 1;
        }
        if want != out[i] {
            return Err(cx.err("result shape disagrees with the pool geometry"));
        }
    }
    let mut gv = vec![xd[0] * xd[1]];
    for v in [inp, out, k, s, pb, d, pe] {
        gv.extend(v);
    }
    let gv: Vec<String> = gv
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
/* f32 max pool over 3 spatial dims (strict > keeps the first maximum; an empty
 * window gives 0). g[]: nc, id, ih, iw, od, oh, ow, kd, kh, kw, sd, sh, sw, pd, ph,
 * pw, dd, dh, dw, ed, eh, ew. */
static void qc_fmaxpool(const float *x, float *y, const int32_t *g)
{
    size_t isz = (size_t)g[1] * (size_t)g[2] * (size_t)g[3], o = 0;
    int32_t nc, oz, oy, ox, kz, ky, kx;
    for (nc = 0; nc < g[0]; nc++) {
        const float *xp = x + (size_t)nc * isz;
        for (oz = 0; oz < g[4]; oz++)
        for (oy = 0; oy < g[5]; oy++)
        for (ox = 0; ox < g[6]; ox++) {
            float best = 0.0f;
            int any = 0;
            for (kz = 0; kz < g[7]; kz++) {
                int32_t iz = oz * g[10] - g[13] + kz * g[16];
                if (iz < 0 || iz >= g[1]) {
                    continue;
                }
                for (ky = 0; ky < g[8]; ky++) {
                    int32_t iy = oy * g[11] - g[14] + ky * g[17];
                    if (iy < 0 || iy >= g[2]) {
                        continue;
                    }
                    for (kx = 0; kx < g[9]; kx++) {
                        int32_t ix = ox * g[12] - g[15] + kx * g[18];
                        float v;
                        if (ix < 0 || ix >= g[3]) {
                            continue;
                        }
                        v = xp[((size_t)iz * (size_t)g[2] + (size_t)iy) * (size_t)g[3] + (size_t)ix];
                        if (!any || v > best) {
                            best = v;
                            any = 1;
                        }
                    }
                }
            }
            y[o++] = best;
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
/* Number of window taps of output o along one dim inside the padded input
 * (k taps, stride s, dilation d; in + pb + pe positions). */
static int32_t qc_fpool_padded(int32_t o, int32_t k, int32_t s, int32_t d, int32_t end)
{
    int32_t i, c = 0;
    for (i = 0; i < k; i++) {
        if (o * s + i * d < end) {
            c++;
        }
    }
    return c;
}

/* f32 average pool over 3 spatial dims: sum in window order from 0, divided by the
 * number of taps inside the input (or, with include_pad, inside the explicitly
 * padded input). g[] as qc_fmaxpool. */
static void qc_favgpool(const float *x, float *y, const int32_t *g, int include_pad)
{
    size_t isz = (size_t)g[1] * (size_t)g[2] * (size_t)g[3], o = 0;
    int32_t nc, oz, oy, ox, kz, ky, kx;
    for (nc = 0; nc < g[0]; nc++) {
        const float *xp = x + (size_t)nc * isz;
        for (oz = 0; oz < g[4]; oz++)
        for (oy = 0; oy < g[5]; oy++)
        for (ox = 0; ox < g[6]; ox++) {
            float sum = 0.0f;
            int32_t inside = 0;
            for (kz = 0; kz < g[7]; kz++) {
                int32_t iz = oz * g[10] - g[13] + kz * g[16];
                if (iz < 0 || iz >= g[1]) {
                    continue;
                }
                for (ky = 0; ky < g[8]; ky++) {
                    int32_t iy = oy * g[11] - g[14] + ky * g[17];
                    if (iy < 0 || iy >= g[2]) {
                        continue;
                    }
                    for (kx = 0; kx < g[9]; kx++) {
                        int32_t ix = ox * g[12] - g[15] + kx * g[18];
                        if (ix < 0 || ix >= g[3]) {
                            continue;
                        }
                        sum = sum + xp[((size_t)iz * (size_t)g[2] + (size_t)iy) * (size_t)g[3] + (size_t)ix];
                        inside++;
                    }
                }
            }
            if (include_pad) {
                inside = qc_fpool_padded(oz, g[7], g[10], g[16], g[1] + g[13] + g[19])
                       * qc_fpool_padded(oy, g[8], g[11], g[17], g[2] + g[14] + g[20])
                       * qc_fpool_padded(ox, g[9], g[12], g[18], g[3] + g[15] + g[21]);
            }
            y[o++] = sum / (float)inside;
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
        match em.real_values(cx.input(i)?) {
            Some(v) if v.len() == c => p.push(v),
            _ => return batch_norm_rt(em, cx, eps, [outer, c, inner]),
        }
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

/// Batch norm with parameters computed at run time: `den = sqrt(var + eps)` per
/// channel with a correctly rounded integer square root (IEEE `sqrt`, as the
/// interpreter's `f32::sqrt`), then the constant-parameter formula.
fn batch_norm_rt(em: &mut Em, cx: &FCx, eps: f32, [outer, c, inner]: [usize; 3]) -> Result<String> {
    let mut ptrs = Vec::new();
    for i in 1..5 {
        let v = cx.input(i)?;
        if em.ty(v)?.shape.dims().iter().product::<usize>() != c {
            return Err(cx.err("batch norm parameters must hold one value per channel"));
        }
        ptrs.push(em.ptr(v)?);
    }
    let (outer, c, inner) = (i32c(cx, outer)?, i32c(cx, c)?, i32c(cx, inner)?);
    em.kernel("qc_fsqrt", || {
        r#"
/* Correctly rounded binary32 square root from integers: sqrt(-0) = -0, sqrt(+inf)
 * = +inf, a NaN operand is returned quieted, a negative one gives the default NaN
 * of x86's sqrtss (0xffc00000). */
static float qc_fsqrt(float x)
{
    uint32_t b, m, out;
    int32_t e, sh = 0;
    uint64_t mm, r = 0, bit = (uint64_t)1 << 62;
    float y;
    memcpy(&b, &x, sizeof b);
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        out = b | 0x00400000u;
    } else if ((b & 0x7fffffffu) == 0u || b == 0x7f800000u) {
        out = b;
    } else if (b >> 31) {
        out = 0xffc00000u;
    } else {
        uint64_t q;
        int rnd, sticky;
        e = (int32_t)(b >> 23);
        m = b & 0x7fffffu;
        if (e == 0) {
            e = 1;
            while (m < 0x800000u) {
                m <<= 1;
                e--;
            }
        } else {
            m |= 0x800000u;
        }
        /* x = m * 2^(e - 150), made an even power of two. */
        e -= 150;
        if (e % 2 != 0) {
            m <<= 1;
            e--;
        }
        mm = (uint64_t)m << 26;
        while (bit > mm) {
            bit >>= 2;
        }
        while (bit != 0) {
            if (mm >= r + bit) {
                mm -= r + bit;
                r = (r >> 1) + bit;
            } else {
                r >>= 1;
            }
            bit >>= 2;
        }
        /* sqrt(x) = (r + frac) * 2^((e - 26) / 2), r >= 2^24; round to 24 bits. */
        while ((r >> sh) >= ((uint64_t)1 << 24)) {
            sh++;
        }
        rnd = (int)((r >> (sh - 1)) & 1u);
        sticky = (r & (((uint64_t)1 << (sh - 1)) - 1u)) != 0 || mm != 0;
        q = r >> sh;
        if (rnd && (sticky || (q & 1u))) {
            q++;
        }
        e = (e - 26) / 2 + sh;
        if (q == ((uint64_t)1 << 24)) {
            q >>= 1;
            e++;
        }
        out = ((uint32_t)(e + 150) << 23) | ((uint32_t)q & 0x7fffffu);
    }
    memcpy(&y, &out, sizeof y);
    return y;
}
"#
        .to_string()
    });
    let (px, py) = (em.ptr(cx.input(0)?)?, em.ptr(cx.output()?)?);
    let eps = lit(cx, eps)?;
    Ok(format!(
        r#"    {{
        int32_t o, c, i;
        size_t at = 0;
        for (o = 0; o < {outer}; o++)
        for (c = 0; c < {c}; c++) {{
            float den = qc_fsqrt({var}[c] + {eps});
            for (i = 0; i < {inner}; i++, at++) {{
                {py}[at] = {s}[c] * ({px}[at] - {mean}[c]) / den + {b}[c];
            }}
        }}
    }}
"#,
        s = ptrs[0],
        b = ptrs[1],
        mean = ptrs[2],
        var = ptrs[3]
    ))
}

/// `outer`, `dim`, `inner` of a shape split around `axis`, as C ints.
fn split3(cx: &FCx, d: &[usize], axis: usize) -> Result<[i32; 3]> {
    if axis >= d.len() {
        return Err(cx.err(format!("axis {axis} out of range for rank {}", d.len())));
    }
    Ok([
        i32c(cx, d[..axis].iter().product())?,
        i32c(cx, d[axis])?,
        i32c(cx, d[axis + 1..].iter().product())?,
    ])
}

fn softmax(em: &mut Em, cx: &FCx, axis: usize) -> Result<String> {
    let (x, y) = (cx.input(0)?, cx.output()?);
    let d = em.ty(x)?.shape.dims().to_vec();
    if em.ty(y)?.shape.dims() != d.as_slice() {
        return Err(cx.err("result shape differs from the operand's"));
    }
    let [outer, dim, inner] = split3(cx, &d, axis)?;
    cmath::require(em, cmath::Fn::Exp);
    em.kernel("qc_fsoftmax", || {
        r#"
/* f32 softmax over the middle axis of [outer, dim, inner], the interpreter's order:
 * the maximum (NaN wins), e = exp(x - max) summed in axis order from 0, e / sum. */
static void qc_fsoftmax(const float *x, float *y, int32_t outer, int32_t dim, int32_t inner)
{
    int32_t o, i, d;
    for (o = 0; o < outer; o++) {
        for (i = 0; i < inner; i++) {
            size_t base = (size_t)o * (size_t)dim * (size_t)inner + (size_t)i;
            float mx = -qc_cm_float(0x7f800000u), sum = 0.0f;
            for (d = 0; d < dim; d++) {
                float v = x[base + (size_t)d * (size_t)inner];
                if (v > mx || v != v) {
                    mx = v;
                }
            }
            for (d = 0; d < dim; d++) {
                float e = qc_expf(x[base + (size_t)d * (size_t)inner] - mx);
                y[base + (size_t)d * (size_t)inner] = e;
                sum = sum + e;
            }
            for (d = 0; d < dim; d++) {
                y[base + (size_t)d * (size_t)inner] = y[base + (size_t)d * (size_t)inner] / sum;
            }
        }
    }
}
"#
        .to_string()
    });
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    Ok(format!(
        "    qc_fsoftmax({px}, {py}, {outer}, {dim}, {inner});\n"
    ))
}

fn lrn(em: &mut Em, cx: &FCx, a: &qc_ir::LrnAttrs) -> Result<String> {
    let (x, y) = (cx.input(0)?, cx.output()?);
    let d = em.ty(x)?.shape.dims().to_vec();
    if d.len() < 2 || a.size == 0 || em.ty(y)?.shape.dims() != d.as_slice() {
        return Err(cx.err("lrn needs rank >= 2, size > 0 and a result of the operand's shape"));
    }
    let [outer, c, inner] = split3(cx, &d, 1)?;
    let lo = i32c(cx, (a.size - 1) / 2)?;
    let hi = i32c(cx, (a.size - 1).div_ceil(2))?;
    // The interpreter's alpha / size, rounded once from f64.
    let coef = (f64::from(a.alpha) / a.size as f64) as f32;
    let (coef, bias, beta) = (lit(cx, coef)?, lit(cx, a.bias)?, lit(cx, a.beta)?);
    cmath::require(em, cmath::Fn::Pow);
    em.kernel("qc_flrn", || {
        r#"
/* f32 local response normalization across the channels of [outer, c, inner], the
 * interpreter's order: s = the sum of squares over channels ch - lo ..= ch + hi
 * (clamped) in channel order from 0, y = x / pow(bias + coef * s, beta). */
static void qc_flrn(const float *x, float *y, int32_t outer, int32_t c, int32_t inner,
                    int32_t lo, int32_t hi, float coef, float bias, float beta)
{
    int32_t o, ch, cc, i;
    for (o = 0; o < outer; o++) {
        const float *xo = x + (size_t)o * (size_t)c * (size_t)inner;
        float *yo = y + (size_t)o * (size_t)c * (size_t)inner;
        for (ch = 0; ch < c; ch++) {
            int32_t first = ch - lo < 0 ? 0 : ch - lo;
            int32_t last = ch + hi + 1 < c ? ch + hi + 1 : c;
            for (i = 0; i < inner; i++) {
                float s = 0.0f;
                for (cc = first; cc < last; cc++) {
                    float v = xo[(size_t)cc * (size_t)inner + (size_t)i];
                    s = s + v * v;
                }
                yo[(size_t)ch * (size_t)inner + (size_t)i] =
                    xo[(size_t)ch * (size_t)inner + (size_t)i] / qc_powf(bias + coef * s, beta);
            }
        }
    }
}
"#
        .to_string()
    });
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    Ok(format!(
        "    qc_flrn({px}, {py}, {outer}, {c}, {inner}, {lo}, {hi}, {coef}, {bias}, {beta});\n"
    ))
}
