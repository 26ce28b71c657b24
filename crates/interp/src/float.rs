//! The float kernels: every op's ONNX semantics computed in f32.
//!
//! Operands arrive as [`FT`] (f32 data and shape; quantized operands already
//! dequantized by the caller), results leave as [`Out`]. Each kernel validates the
//! shapes it indexes with before looping. Comparisons are written so NaN propagates
//! like numpy's `maximum`/`minimum`/`clip` (`relu(NaN) = NaN`). Transcendentals
//! (sigmoid, tanh, softmax's exp, lrn's power) are `qc_ir::real`'s own f32 functions,
//! never the host libm, so every backend can reproduce them bit for bit.

use std::borrow::Cow;

use qc_ir::real::{exp, hard_sigmoid, hard_swish, leaky_relu, pow, sigmoid, tanh};
use qc_ir::{Activation, Op, Tensor, TensorData};

pub(crate) use qc_ir::real::{activation as act, clip, relu};

use crate::util::{broadcast_map, broadcast_shapes, fmt_dims, numel, split_at_axis, KResult};
use crate::{conv, gemm, movement, pool};

/// One float operand.
pub(crate) struct FT<'a> {
    pub shape: &'a [usize],
    pub data: Cow<'a, [f32]>,
}

/// One result: f32 values of a shape (converted to the result type by the caller),
/// or a finished tensor (max-pool indices).
pub(crate) enum Out {
    F(Vec<usize>, Vec<f32>),
    T(Tensor),
}

fn apply_act(a: Activation, mut v: Vec<f32>) -> Vec<f32> {
    if a != Activation::None {
        for x in &mut v {
            *x = act(a, *x);
        }
    }
    v
}

fn arity(xs: &[FT], lo: usize, hi: usize) -> KResult<()> {
    if xs.len() < lo || xs.len() > hi {
        return Err(if lo == hi {
            format!("expects {lo} operands, got {}", xs.len())
        } else {
            format!("expects {lo}..={hi} operands, got {}", xs.len())
        });
    }
    Ok(())
}

fn unary(xs: &[FT], f: impl Fn(f32) -> f32) -> KResult<Vec<Out>> {
    arity(xs, 1, 1)?;
    let x = &xs[0];
    Ok(vec![Out::F(
        x.shape.to_vec(),
        x.data.iter().map(|&v| f(v)).collect(),
    )])
}

fn binary(xs: &[FT], f: impl Fn(f32, f32) -> f32) -> KResult<(Vec<usize>, Vec<f32>)> {
    arity(xs, 2, 2)?;
    let (a, b) = (&xs[0], &xs[1]);
    let out = broadcast_shapes(a.shape, b.shape)?;
    Ok((
        out.clone(),
        broadcast_map(&a.data, a.shape, &b.data, b.shape, &out, f),
    ))
}

/// A per-channel vector operand (bias, batch-norm params) of `c` elements.
fn channel_vec<'a>(x: &'a FT, c: usize, what: &str) -> KResult<&'a [f32]> {
    if x.data.len() != c || x.shape.len() > 1 {
        return Err(format!(
            "{what} of shape {} for {c} channels",
            fmt_dims(x.shape)
        ));
    }
    Ok(&x.data)
}

/// Run a float op. `n_out` is the node's number of results.
pub(crate) fn run(op: &Op, xs: &[FT], n_out: usize) -> KResult<Vec<Out>> {
    let one = |shape: Vec<usize>, v: Vec<f32>| Ok(vec![Out::F(shape, v)]);
    match op {
        Op::Conv(a) => {
            arity(xs, 2, 3)?;
            let g = conv::conv_geom(a, xs[0].shape, xs[1].shape)?;
            let init = match xs.get(2) {
                Some(b) => channel_vec(b, g.c_out, "bias")?.to_vec(),
                None => vec![0.0; g.c_out],
            };
            let y = conv::conv_core(&g, &xs[0].data, &xs[1].data, &init);
            one(g.out_shape(), apply_act(a.act, y))
        }
        Op::ConvTranspose(a) => {
            arity(xs, 2, 3)?;
            let g = conv::conv_transpose_geom(a, xs[0].shape, xs[1].shape)?;
            let init = match xs.get(2) {
                Some(b) => channel_vec(b, g.c_out, "bias")?.to_vec(),
                None => vec![0.0; g.c_out],
            };
            let y = conv::conv_transpose_core(&g, &xs[0].data, &xs[1].data, &init);
            one(g.out_shape(), apply_act(a.act, y))
        }
        Op::Gemm(a) => {
            arity(xs, 2, 3)?;
            let (m, k, n) = gemm::gemm_dims(xs[0].shape, xs[1].shape, a.trans_a, a.trans_b)?;
            let mut y = vec![0f32; m * n];
            gemm::gemm_any(
                m,
                k,
                n,
                &xs[0].data,
                &xs[1].data,
                a.trans_a,
                a.trans_b,
                &mut y,
            );
            // Reference order: dot * alpha, then + c * beta (c ignored when beta is 0).
            for v in &mut y {
                *v *= a.alpha;
            }
            if let Some(c) = xs.get(2) {
                let cb = gemm::broadcast_c(&c.data, c.shape, m, n)?;
                if a.beta != 0.0 {
                    for (v, c) in y.iter_mut().zip(cb) {
                        *v += c * a.beta;
                    }
                }
            }
            one(vec![m, n], apply_act(a.act, y))
        }
        Op::MatMul { act } => {
            arity(xs, 2, 2)?;
            let g = gemm::matmul_geom(xs[0].shape, xs[1].shape)?;
            let y = gemm::matmul_core(&g, &xs[0].data, &xs[1].data, 0.0f32);
            one(g.out_shape, apply_act(*act, y))
        }
        Op::BatchNorm { epsilon } => {
            arity(xs, 5, 5)?;
            let x = &xs[0];
            if x.shape.len() < 2 {
                return Err(format!(
                    "batch_norm needs rank >= 2, got {}",
                    fmt_dims(x.shape)
                ));
            }
            let (outer, c, inner) = split_at_axis(x.shape, 1);
            let s = channel_vec(&xs[1], c, "scale")?;
            let b = channel_vec(&xs[2], c, "bias")?;
            let mean = channel_vec(&xs[3], c, "mean")?;
            let var = channel_vec(&xs[4], c, "var")?;
            let mut y = Vec::with_capacity(x.data.len());
            for o in 0..outer {
                for ch in 0..c {
                    let den = (var[ch] + epsilon).sqrt();
                    let plane = &x.data[(o * c + ch) * inner..][..inner];
                    y.extend(plane.iter().map(|&v| s[ch] * (v - mean[ch]) / den + b[ch]));
                }
            }
            one(x.shape.to_vec(), y)
        }
        Op::Add { act } => {
            let (s, y) = binary(xs, |a, b| a + b)?;
            one(s, apply_act(*act, y))
        }
        Op::Sub => {
            let (s, y) = binary(xs, |a, b| a - b)?;
            one(s, y)
        }
        Op::Mul => {
            let (s, y) = binary(xs, |a, b| a * b)?;
            one(s, y)
        }
        Op::Div => {
            let (s, y) = binary(xs, |a, b| a / b)?;
            one(s, y)
        }
        Op::Sum => {
            let Some(first) = xs.first() else {
                return Err("sum of no operands".into());
            };
            let mut shape = first.shape.to_vec();
            let mut acc = first.data.to_vec();
            for x in &xs[1..] {
                let out = broadcast_shapes(&shape, x.shape)?;
                acc = broadcast_map(&acc, &shape, &x.data, x.shape, &out, |a, b| a + b);
                shape = out;
            }
            one(shape, acc)
        }
        Op::Relu => unary(xs, relu),
        Op::LeakyRelu { alpha } => unary(xs, |x| leaky_relu(x, *alpha)),
        Op::PRelu => {
            arity(xs, 2, 2)?;
            let (x, s) = (&xs[0], &xs[1]);
            if broadcast_shapes(x.shape, s.shape)? != x.shape {
                return Err(format!(
                    "slope of shape {} does not broadcast to {}",
                    fmt_dims(s.shape),
                    fmt_dims(x.shape)
                ));
            }
            let y = broadcast_map(&x.data, x.shape, &s.data, s.shape, x.shape, |v, a| {
                if v < 0.0 {
                    v * a
                } else {
                    v
                }
            });
            one(x.shape.to_vec(), y)
        }
        Op::Clip { min, max } => {
            let lo = min.map_or(f32::NEG_INFINITY, |v| v as f32);
            let hi = max.map_or(f32::INFINITY, |v| v as f32);
            unary(xs, |x| clip(x, lo, hi))
        }
        Op::Sigmoid => unary(xs, sigmoid),
        Op::HardSigmoid { alpha, beta } => unary(xs, |x| hard_sigmoid(x, *alpha, *beta)),
        Op::HardSwish => unary(xs, hard_swish),
        Op::Tanh => unary(xs, tanh),
        Op::MaxPool {
            pool,
            storage_order,
        } => {
            arity(xs, 1, 1)?;
            let g = pool::Geom::new(pool, xs[0].shape)?;
            let want_idx = n_out > 1;
            let (y, idx) = pool::max_pool(&g, &xs[0].data, 0.0f32, want_idx, *storage_order);
            let shape = g.out_shape();
            let mut outs = vec![Out::F(shape.clone(), y)];
            if want_idx {
                outs.push(Out::T(
                    Tensor::new(shape, TensorData::I64(idx)).map_err(|e| e.to_string())?,
                ));
            }
            Ok(outs)
        }
        Op::AveragePool {
            pool,
            count_include_pad,
        } => {
            arity(xs, 1, 1)?;
            let g = pool::Geom::new(pool, xs[0].shape)?;
            one(
                g.out_shape(),
                pool::avg_pool(&g, &xs[0].data, *count_include_pad),
            )
        }
        Op::GlobalAveragePool | Op::GlobalMaxPool => {
            arity(xs, 1, 1)?;
            let x = &xs[0];
            if x.shape.len() < 2 {
                return Err(format!(
                    "global pooling needs rank >= 2, got {}",
                    fmt_dims(x.shape)
                ));
            }
            let nc = x.shape[0] * x.shape[1];
            let inner = numel(&x.shape[2..]);
            let mut shape = x.shape.to_vec();
            shape[2..].iter_mut().for_each(|d| *d = 1);
            let y = (0..nc)
                .map(|i| {
                    let p = &x.data[i * inner..][..inner];
                    if matches!(op, Op::GlobalMaxPool) {
                        let mut it = p.iter().copied();
                        let first = it.next().unwrap_or(0.0);
                        it.fold(first, |b, v| if v > b { v } else { b })
                    } else {
                        (p.iter().map(|&v| f64::from(v)).sum::<f64>() / inner as f64) as f32
                    }
                })
                .collect();
            one(shape, y)
        }
        Op::Softmax { axis } => {
            arity(xs, 1, 1)?;
            let x = &xs[0];
            if *axis >= x.shape.len() {
                return Err(format!(
                    "axis {axis} out of range for rank {}",
                    x.shape.len()
                ));
            }
            let (outer, dim, inner) = split_at_axis(x.shape, *axis);
            let mut y = vec![0f32; x.data.len()];
            for o in 0..outer {
                for i in 0..inner {
                    let at = |d: usize| (o * dim + d) * inner + i;
                    let mut mx = f32::NEG_INFINITY;
                    for d in 0..dim {
                        let v = x.data[at(d)];
                        if v > mx || v.is_nan() {
                            mx = v;
                        }
                    }
                    let mut sum = 0f32;
                    for d in 0..dim {
                        let e = exp(x.data[at(d)] - mx);
                        y[at(d)] = e;
                        sum += e;
                    }
                    for d in 0..dim {
                        y[at(d)] /= sum;
                    }
                }
            }
            one(x.shape.to_vec(), y)
        }
        Op::ReduceMean { axes, keepdims } => {
            arity(xs, 1, 1)?;
            reduce_mean(&xs[0], axes, *keepdims)
        }
        Op::Lrn(a) => {
            arity(xs, 1, 1)?;
            let x = &xs[0];
            if x.shape.len() < 2 || a.size == 0 {
                return Err(format!(
                    "lrn needs rank >= 2 and size > 0, got {} size {}",
                    fmt_dims(x.shape),
                    a.size
                ));
            }
            let (outer, c, inner) = split_at_axis(x.shape, 1);
            let lo = (a.size - 1) / 2;
            let hi = (a.size - 1).div_ceil(2);
            let coef = (f64::from(a.alpha) / a.size as f64) as f32;
            let mut y = Vec::with_capacity(x.data.len());
            let mut sq = vec![0f32; inner];
            for o in 0..outer {
                for ch in 0..c {
                    sq.iter_mut().for_each(|s| *s = 0.0);
                    for cc in ch.saturating_sub(lo)..(ch + hi + 1).min(c) {
                        let p = &x.data[(o * c + cc) * inner..][..inner];
                        for (s, &v) in sq.iter_mut().zip(p) {
                            *s += v * v;
                        }
                    }
                    let p = &x.data[(o * c + ch) * inner..][..inner];
                    y.extend(
                        p.iter()
                            .zip(&sq)
                            .map(|(&v, &s)| v / pow(a.bias + coef * s, a.beta)),
                    );
                }
            }
            one(x.shape.to_vec(), y)
        }
        op if movement::is_movement(op) => {
            let shapes: Vec<&[usize]> = xs.iter().map(|x| x.shape).collect();
            let out = movement::shape(op, &shapes)?;
            let datas: Vec<&[f32]> = xs.iter().map(|x| &*x.data).collect();
            let fill = match op {
                Op::Pad { value, .. } => Some(*value as f32),
                _ => None,
            };
            one(out, movement::data(op, &datas, &shapes, fill))
        }
        other => Err(format!("{} has no float kernel", other.name())),
    }
}

fn reduce_mean(x: &FT, axes: &[usize], keepdims: bool) -> KResult<Vec<Out>> {
    let r = x.shape.len();
    let mut reduced = vec![axes.is_empty(); r];
    for &a in axes {
        match reduced.get_mut(a) {
            Some(f) if !*f => *f = true,
            _ => return Err(format!("axes {axes:?} invalid for rank {r}")),
        }
    }
    let out_full: Vec<usize> = x
        .shape
        .iter()
        .zip(&reduced)
        .map(|(&d, &red)| if red { 1 } else { d })
        .collect();
    let count: usize = x
        .shape
        .iter()
        .zip(&reduced)
        .filter(|(_, &red)| red)
        .map(|(&d, _)| d)
        .product();
    // Output stride of each input dim (0 on reduced dims).
    let mut ost = vec![0usize; r];
    let mut acc = 1;
    for i in (0..r).rev() {
        ost[i] = if reduced[i] { 0 } else { acc };
        acc *= out_full[i];
    }
    let mut sums = vec![0f64; numel(&out_full)];
    let mut idx = vec![0usize; r];
    for &v in x.data.iter() {
        let o: usize = idx.iter().zip(&ost).map(|(i, s)| i * s).sum();
        sums[o] += f64::from(v);
        for d in (0..r).rev() {
            idx[d] += 1;
            if idx[d] < x.shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    let y = sums
        .into_iter()
        .map(|s| (s / count as f64) as f32)
        .collect();
    let shape = if keepdims {
        out_full
    } else {
        x.shape
            .iter()
            .zip(&reduced)
            .filter(|(_, &red)| !red)
            .map(|(&d, _)| d)
            .collect()
    };
    Ok(vec![Out::F(shape, y)])
}
