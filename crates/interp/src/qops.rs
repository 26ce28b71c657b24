//! Quantized arithmetic: conversions (quantize, dequantize, requantize, dynamic
//! quantize) and the integer-accumulating ops (conv, conv_transpose, gemm and matmul
//! on quantized operands; conv_integer, matmul_integer).
//!
//! Integer accumulation is `Σ (x - zx) * (w - zw[c]) (+ bias[c])` in wrapping i32,
//! like the real kernels. A quantized result goes through one `Requantizer` per
//! output channel (built once per node), then the fused activation clamps the
//! integer to the quantized images of its bounds. A float result of quantized
//! operands is `acc * (s_x * s_w[c])`, then the activation. Every number here comes
//! from [`crate::qm`] (the `qc-qmath` API).

use std::num::Wrapping;

use qc_ir::{Activation, DType, Op, QType, QuantParams, Tensor, TensorData, TensorType};

use crate::qm::{self, Contract, Requantizer};
use crate::util::{
    checked_numel, data_from_f32, data_from_i64, fmt_dims, for_each_channel, ints_i32, ints_i64,
    numel, KResult,
};
use crate::{conv, float, gemm};

type W = Wrapping<i32>;

/// Real values of a quantized tensor.
pub(crate) fn dequant(t: &Tensor, p: &QuantParams) -> KResult<Vec<f32>> {
    let q = ints_i64(t.data()).ok_or_else(|| format!("quantized value stored as {}", t.dtype()))?;
    let mut out = vec![0f32; q.len()];
    for_each_channel(t.dims(), p, |i, c| {
        out[i] = qm::dequantize(q[i], p.scale(c), p.zero_point(c))
    })?;
    Ok(out)
}

/// Quantize real values of shape `dims` with the params of `ty`.
pub(crate) fn quant(dims: &[usize], v: &[f32], p: &QuantParams) -> KResult<TensorData> {
    let mut q = vec![0i64; v.len()];
    for_each_channel(dims, p, |i, c| {
        q[i] = qm::quantize(v[i], p.scale(c), p.zero_point(c), p.storage)
    })?;
    data_from_i64(DType::from_qtype(p.storage), q)
}

fn params<'a>(ty: &'a TensorType, what: &str) -> KResult<&'a QuantParams> {
    ty.quant
        .as_ref()
        .ok_or_else(|| format!("{what} must be quantized, is {}", ty.dtype))
}

/// Scales and zero points of `p` for `n` channels (per-tensor params repeat).
fn per_channel(p: &QuantParams, n: usize) -> KResult<(Vec<f32>, Vec<i32>)> {
    if p.len() == 1 {
        Ok((vec![p.scales[0]; n], vec![p.zero_points[0]; n]))
    } else if p.len() == n {
        Ok((p.scales.clone(), p.zero_points.clone()))
    } else {
        Err(format!(
            "{} quantization parameters for {n} channels",
            p.len()
        ))
    }
}

/// Require per-tensor params, or per-axis ones on `axis`.
fn require_axis(p: &QuantParams, axis: usize, what: &str) -> KResult<()> {
    match p.axis {
        Some(a) if p.len() > 1 && a != axis => Err(format!(
            "{what} is quantized per axis {a}; only per-tensor or axis {axis} is supported"
        )),
        _ => Ok(()),
    }
}

fn per_tensor(p: &QuantParams, what: &str) -> KResult<(f32, i32)> {
    if p.len() != 1 {
        return Err(format!("{what} must be quantized per tensor"));
    }
    Ok((p.scales[0], p.zero_points[0]))
}

/// `(x - zp)` in wrapping i32.
fn shifted(t: &Tensor, zp: i32) -> KResult<Vec<W>> {
    let v = ints_i32(t.data())
        .ok_or_else(|| format!("integer operand of type {} not supported", t.dtype()))?;
    Ok(v.into_iter().map(|x| Wrapping(x) - Wrapping(zp)).collect())
}

/// `(w - zw[c])` with the zero point of `w`'s channel.
fn shifted_per_channel(t: &Tensor, p: &QuantParams) -> KResult<Vec<W>> {
    let mut v: Vec<W> = ints_i32(t.data())
        .ok_or_else(|| format!("integer operand of type {} not supported", t.dtype()))?
        .into_iter()
        .map(Wrapping)
        .collect();
    for_each_channel(t.dims(), p, |i, c| v[i] -= Wrapping(p.zero_point(c)))?;
    Ok(v)
}

/// A raw i32 bias/`C` operand.
fn raw_i32(t: &Tensor, ty: &TensorType, what: &str) -> KResult<Vec<W>> {
    match t.data() {
        TensorData::I32(v) => Ok(v.iter().map(|&x| Wrapping(x)).collect()),
        _ => Err(format!(
            "{what} must be i32 for quantized operands, is {}",
            ty.dtype
        )),
    }
}

/// What happens to the i32 accumulators of one node.
enum Epilogue {
    Quant {
        rq: Vec<Requantizer>,
        zp: Vec<i32>,
        lo: Vec<i64>,
        hi: Vec<i64>,
        storage: QType,
    },
    Float {
        m: Vec<f32>,
        act: Activation,
        dtype: DType,
    },
}

impl Epilogue {
    /// `sw[c]` is the weight scale of output channel `c`; `axis` the result's channel axis.
    fn new(
        contract: Contract,
        sx: f32,
        sw: &[f32],
        y: &TensorType,
        axis: usize,
        act: Activation,
    ) -> KResult<Self> {
        let n = sw.len();
        match &y.quant {
            Some(p) => {
                require_axis(p, axis, "the result")?;
                let (sy, zy) = per_channel(p, n)?;
                let q = p.storage;
                let mut rq = Vec::with_capacity(n);
                let (mut lo, mut hi) = (Vec::with_capacity(n), Vec::with_capacity(n));
                for c in 0..n {
                    rq.push(
                        Requantizer::new(contract, sx, sw[c], sy[c]).map_err(|e| e.to_string())?,
                    );
                    let (l, h) = match act {
                        Activation::None => (q.min(), q.max()),
                        Activation::Relu => (qm::quantize(0.0, sy[c], zy[c], q), q.max()),
                        Activation::Clip { min, max } => (
                            qm::quantize(min, sy[c], zy[c], q),
                            qm::quantize(max, sy[c], zy[c], q),
                        ),
                    };
                    lo.push(l);
                    hi.push(h);
                }
                Ok(Epilogue::Quant {
                    rq,
                    zp: zy,
                    lo,
                    hi,
                    storage: q,
                })
            }
            None if y.dtype.is_float() => Ok(Epilogue::Float {
                m: sw.iter().map(|&s| sx * s).collect(),
                act,
                dtype: y.dtype,
            }),
            None => Err(format!(
                "a result of quantized operands must be quantized or float, is {}",
                y.dtype
            )),
        }
    }

    /// Finish accumulators; `chan(i)` is the output channel of element `i`.
    fn apply(&self, acc: &[W], chan: impl Fn(usize) -> usize) -> KResult<TensorData> {
        match self {
            Epilogue::Quant {
                rq,
                zp,
                lo,
                hi,
                storage,
            } => {
                let q = acc
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        let c = chan(i);
                        // numpy clip order (max then min) so lo > hi cannot panic.
                        rq[c].requantize(a.0, zp[c], *storage).max(lo[c]).min(hi[c])
                    })
                    .collect();
                data_from_i64(DType::from_qtype(*storage), q)
            }
            Epilogue::Float { m, act, dtype } => {
                let v = acc
                    .iter()
                    .enumerate()
                    .map(|(i, a)| float::act(*act, a.0 as f32 * m[chan(i)]))
                    .collect();
                data_from_f32(*dtype, v)
            }
        }
    }
}

fn tensor(shape: Vec<usize>, d: TensorData) -> KResult<Tensor> {
    Tensor::new(shape, d).map_err(|e| e.to_string())
}

fn arity(xs: &[&Tensor], lo: usize, hi: usize) -> KResult<()> {
    if xs.len() < lo || xs.len() > hi {
        return Err(format!("expects {lo}..={hi} operands, got {}", xs.len()));
    }
    Ok(())
}

/// Conv / conv_transpose / gemm / matmul with quantized `x` and `w`.
pub(crate) fn linear(
    op: &Op,
    xs: &[&Tensor],
    tys: &[&TensorType],
    y: &TensorType,
    contract: Contract,
) -> KResult<Tensor> {
    arity(xs, 2, 3)?;
    let (px, pw) = (params(tys[0], "x")?, params(tys[1], "w")?);
    let (sx, zx) = per_tensor(px, "x")?;
    let xv = shifted(xs[0], zx)?;
    let bias = match (xs.get(2), tys.get(2)) {
        (Some(b), Some(bt)) => Some(raw_i32(b, bt, "bias")?),
        _ => None,
    };
    match op {
        Op::Conv(a) => {
            let g = conv::conv_geom(a, xs[0].dims(), xs[1].dims())?;
            require_axis(pw, 0, "w")?;
            let (sw, _) = per_channel(pw, g.c_out)?;
            let wv = shifted_per_channel(xs[1], pw)?;
            let init = init_of(bias, g.c_out)?;
            let acc = conv::conv_core(&g, &xv, &wv, &init);
            let epi = Epilogue::new(contract, sx, &sw, y, 1, a.act)?;
            let (osz, c_out) = (g.out_plane(), g.c_out);
            tensor(g.out_shape(), epi.apply(&acc, |i| (i / osz) % c_out)?)
        }
        Op::ConvTranspose(a) => {
            let g = conv::conv_transpose_geom(a, xs[0].dims(), xs[1].dims())?;
            require_axis(pw, 1, "w")?;
            let cout_g = g.c_out / g.group;
            let (sw_g, _) = per_channel(pw, cout_g)?;
            let sw: Vec<f32> = (0..g.c_out).map(|c| sw_g[c % cout_g]).collect();
            let wv = shifted_per_channel(xs[1], pw)?;
            let init = init_of(bias, g.c_out)?;
            let acc = conv::conv_transpose_core(&g, &xv, &wv, &init);
            let epi = Epilogue::new(contract, sx, &sw, y, 1, a.act)?;
            let (osz, c_out) = (g.out_plane(), g.c_out);
            tensor(g.out_shape(), epi.apply(&acc, |i| (i / osz) % c_out)?)
        }
        Op::Gemm(a) => {
            let (m, k, n) = gemm::gemm_dims(xs[0].dims(), xs[1].dims(), a.trans_a, a.trans_b)?;
            if a.alpha != 1.0 || (bias.is_some() && a.beta != 1.0) {
                return Err(format!(
                    "quantized gemm needs alpha = beta = 1, got {} and {}",
                    a.alpha, a.beta
                ));
            }
            require_axis(pw, if a.trans_b { 0 } else { 1 }, "b")?;
            let (sw, _) = per_channel(pw, n)?;
            let wv = shifted_per_channel(xs[1], pw)?;
            let mut acc = match (bias, xs.get(2)) {
                (Some(c), Some(ct)) => gemm::broadcast_c(&c, ct.dims(), m, n)?,
                _ => vec![Wrapping(0); m * n],
            };
            gemm::gemm_any(m, k, n, &xv, &wv, a.trans_a, a.trans_b, &mut acc);
            let epi = Epilogue::new(contract, sx, &sw, y, 1, a.act)?;
            tensor(vec![m, n], epi.apply(&acc, |i| i % n)?)
        }
        Op::MatMul { act } => {
            if bias.is_some() {
                return Err("matmul takes 2 operands".into());
            }
            let g = gemm::matmul_geom(xs[0].dims(), xs[1].dims())?;
            let rb = xs[1].dims().len();
            require_axis(pw, rb.saturating_sub(1), "b")?;
            if rb < 2 && pw.len() > 1 {
                return Err("a 1-D b must be quantized per tensor".into());
            }
            let (sw, _) = per_channel(pw, g.n)?;
            let wv = shifted_per_channel(xs[1], pw)?;
            let acc = gemm::matmul_core(&g, &xv, &wv, Wrapping(0));
            let ry = g.out_shape.len();
            let epi = Epilogue::new(contract, sx, &sw, y, ry.saturating_sub(1), *act)?;
            let n = g.n;
            tensor(g.out_shape, epi.apply(&acc, |i| i % n)?)
        }
        other => Err(format!(
            "{} has no integer-accumulating kernel",
            other.name()
        )),
    }
}

fn init_of(bias: Option<Vec<W>>, c_out: usize) -> KResult<Vec<W>> {
    match bias {
        Some(b) if b.len() == c_out => Ok(b),
        Some(b) => Err(format!("bias of {} elements for {c_out} channels", b.len())),
        None => Ok(vec![Wrapping(0); c_out]),
    }
}

/// A raw zero-point operand: its values (1 = scalar, or one per channel) as i32.
fn zero_points(t: Option<&&Tensor>, n: usize, what: &str) -> KResult<Vec<i32>> {
    let Some(t) = t else { return Ok(vec![0; n]) };
    let v = ints_i64(t.data())
        .ok_or_else(|| format!("{what} must be an integer tensor, is {}", t.dtype()))?;
    let v: Vec<i32> = v.into_iter().map(|z| z as i32).collect();
    match v.len() {
        1 => Ok(vec![v[0]; n]),
        l if l == n && t.dims().len() == 1 => Ok(v),
        _ => Err(format!(
            "{what} of shape {} for {n} channels",
            fmt_dims(t.dims())
        )),
    }
}

/// ONNX ConvInteger: raw i32 result.
pub(crate) fn conv_integer(a: &qc_ir::ConvAttrs, xs: &[&Tensor]) -> KResult<Tensor> {
    arity(xs, 2, 4)?;
    let g = conv::conv_geom(a, xs[0].dims(), xs[1].dims())?;
    let zx = zero_points(xs.get(2), 1, "x_zero_point")?;
    let zw = zero_points(xs.get(3), g.c_out, "w_zero_point")?;
    let xv = shifted(xs[0], zx[0])?;
    let ksz = numel(&xs[1].dims()[1..]);
    let mut wv = shifted(xs[1], 0)?;
    for (i, w) in wv.iter_mut().enumerate() {
        *w -= Wrapping(zw[i / ksz.max(1)]);
    }
    let acc = conv::conv_core(&g, &xv, &wv, &vec![Wrapping(0); g.c_out]);
    tensor(
        g.out_shape(),
        TensorData::I32(acc.into_iter().map(|w| w.0).collect()),
    )
}

/// ONNX MatMulInteger: `a_zp` scalar or per row, `b_zp` scalar or per column.
pub(crate) fn matmul_integer(xs: &[&Tensor]) -> KResult<Tensor> {
    arity(xs, 2, 4)?;
    let g = gemm::matmul_geom(xs[0].dims(), xs[1].dims())?;
    let (m, k, n) = (g.m, g.k, g.n);
    let za = zero_points(xs.get(2), m, "a_zero_point")?;
    let zb = zero_points(xs.get(3), n, "b_zero_point")?;
    let mut av = shifted(xs[0], 0)?;
    for (i, x) in av.iter_mut().enumerate() {
        *x -= Wrapping(za[(i / k.max(1)) % m.max(1)]);
    }
    let mut bv = shifted(xs[1], 0)?;
    for (i, x) in bv.iter_mut().enumerate() {
        *x -= Wrapping(zb[i % n.max(1)]);
    }
    let acc = gemm::matmul_core(&g, &av, &bv, Wrapping(0));
    tensor(
        g.out_shape,
        TensorData::I32(acc.into_iter().map(|w| w.0).collect()),
    )
}

/// ONNX DynamicQuantizeLinear, following the reference implementation in f32:
/// an all-zero (or empty) input gets scale 1/255.
pub(crate) fn dynamic_quantize(x: &[f32], dims: &[usize]) -> KResult<Vec<Tensor>> {
    let mx = x
        .iter()
        .copied()
        .fold(0f32, |a, b| if b > a { b } else { a });
    let mn = x
        .iter()
        .copied()
        .fold(0f32, |a, b| if b < a { b } else { a });
    let scale = (if mx == mn { 1.0 } else { mx - mn }) / 255.0;
    let zp = qm::round_half_even((0.0 - mn / scale).clamp(0.0, 255.0));
    let y: Vec<u8> = x
        .iter()
        .map(|&v| (qm::round_half_even(v / scale) + zp).clamp(0.0, 255.0) as u8)
        .collect();
    checked_numel(dims)?;
    Ok(vec![
        tensor(dims.to_vec(), TensorData::U8(y))?,
        tensor(vec![], TensorData::F32(vec![scale]))?,
        tensor(vec![], TensorData::U8(vec![zp as u8]))?,
    ])
}
