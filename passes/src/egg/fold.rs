//! Constant arithmetic of the folding rules: BatchNorm and per-channel scale/shift
//! folded into weights and biases, and constants re-shaped by data movement.
//!
//! Everything here works on raw f32 tensors, computes in f64 and rounds once to f32,
//! and returns `None` (the rule then does not fire) for anything it cannot fold
//! exactly as specified: a non-f32 tensor, a length that does not match, a
//! normalization whose `var + epsilon` is not positive, a non-finite result.

use qc_ir::{Shape, Tensor};

/// `scale[c] / sqrt(var[c] + epsilon)`, the per-channel factor of an inference
/// BatchNorm. `None` if `var + epsilon <= 0` for some channel (the BatchNorm itself
/// would divide by zero or take the root of a negative: nothing to fold into) or a
/// factor is not finite.
pub fn bn_factors(scale: &Tensor, var: &Tensor, epsilon: f32) -> Option<Vec<f64>> {
    let (s, v) = (scale.as_f32()?, var.as_f32()?);
    if s.len() != v.len() {
        return None;
    }
    s.iter()
        .zip(v)
        .map(|(&s, &v)| {
            let d = f64::from(v) + f64::from(epsilon);
            let k = f64::from(s) / d.sqrt();
            (d > 0.0 && k.is_finite()).then_some(k)
        })
        .collect()
}

/// `w` with every slice along `axis` multiplied by `k[index along axis]`.
pub fn scale_axis(w: &Tensor, axis: usize, k: &[f64]) -> Option<Tensor> {
    let data = w.as_f32()?;
    let dims = w.dims();
    if dims.get(axis) != Some(&k.len()) {
        return None;
    }
    // Row-major: consecutive runs of `inner` elements share an index along `axis`,
    // which cycles through 0..k.len() (once per index of the outer axes).
    let inner: usize = dims[axis + 1..].iter().product();
    let mut out = Vec::with_capacity(data.len());
    if inner > 0 {
        for (run, &kc) in data.chunks_exact(inner).zip(k.iter().cycle()) {
            out.extend(run.iter().map(|&x| (f64::from(x) * kc) as f32));
        }
    }
    finite(Tensor::from_f32(dims.to_vec(), out).ok()?)
}

/// The bias of a conv followed by a BatchNorm: `(b - mean) * k + bias` per channel
/// (`b` absent: zero), shape `[M]`.
pub fn bn_bias(b: Option<&Tensor>, k: &[f64], bias: &Tensor, mean: &Tensor) -> Option<Tensor> {
    let (bias, mean) = (bias.as_f32()?, mean.as_f32()?);
    let m = k.len();
    if bias.len() != m || mean.len() != m {
        return None;
    }
    let b = match b {
        Some(b) => Some(b.as_f32()?).filter(|b| b.len() == m)?.to_vec(),
        None => vec![0.0; m],
    };
    let out: Vec<f32> = (0..m)
        .map(|c| ((f64::from(b[c]) - f64::from(mean[c])) * k[c] + f64::from(bias[c])) as f32)
        .collect();
    finite(Tensor::from_f32(vec![m], out).ok()?)
}

/// The `C` of a gemm `alpha * A op(B) + beta * C` followed by a BatchNorm over its
/// `N` columns: `(beta * C - mean) * k + bias`, broadcast to `broadcast(C, [N])`
/// (`C` absent: shape `[N]`). The new gemm has `beta = 1`.
pub fn gemm_bn_bias(
    c: Option<&Tensor>,
    beta: f32,
    k: &[f64],
    bias: &Tensor,
    mean: &Tensor,
) -> Option<Tensor> {
    let (bias, mean) = (bias.as_f32()?, mean.as_f32()?);
    let n = k.len();
    if bias.len() != n || mean.len() != n || n == 0 {
        return None;
    }
    let col =
        |j: usize, cv: f64| (f64::from(beta) * cv - f64::from(mean[j])) * k[j] + f64::from(bias[j]);
    match c {
        None => {
            finite(Tensor::from_f32(vec![n], (0..n).map(|j| col(j, 0.0) as f32).collect()).ok()?)
        }
        Some(c) => {
            let cd = c.as_f32()?;
            let n_shape = Shape(vec![n]);
            let out = qc_ir::infer::broadcast(&[c.shape(), &n_shape]).ok()?;
            let dims = out.dims().to_vec();
            if dims.last() != Some(&n) {
                return None;
            }
            let total = out.numel().ok()?;
            let mut v = Vec::with_capacity(total);
            for i in 0..total {
                v.push(col(i % n, f64::from(cd[broadcast_index(c.dims(), &dims, i)?])) as f32);
            }
            finite(Tensor::from_f32(dims, v).ok()?)
        }
    }
}

/// The flat index into a tensor of shape `from` that numpy broadcasting reads for
/// flat index `i` of shape `to` (`from` right-aligned, size-1 axes repeated).
fn broadcast_index(from: &[usize], to: &[usize], i: usize) -> Option<usize> {
    let off = to.len().checked_sub(from.len())?;
    let mut rem = i;
    let mut idx = 0usize;
    let mut stride = 1usize;
    for (t, &d) in to.iter().enumerate().rev() {
        let coord = rem % d.max(1);
        rem /= d.max(1);
        if let Some(fi) = t.checked_sub(off) {
            let fd = from[fi];
            if fd != 1 {
                idx += coord * stride;
            }
            stride *= fd;
        }
    }
    Some(idx)
}

/// A constant that multiplies or shifts the result of an op whose result has rank
/// `out_rank` and `m` channels on axis 1, read as one value per channel: its shape
/// (right-aligned against the result's) has size 1 everywhere except possibly `m` on
/// the channel axis, and it does not add axes. `None` for any other shape or dtype.
pub fn channel_vector(c: &Tensor, out_rank: usize, m: usize) -> Option<Vec<f64>> {
    let data = c.as_f32()?;
    let dims = c.dims();
    if dims.len() > out_rank || out_rank < 2 {
        return None;
    }
    let off = out_rank - dims.len();
    for (i, &d) in dims.iter().enumerate() {
        let axis = i + off;
        if d != 1 && !(axis == 1 && d == m) {
            return None;
        }
    }
    match data.len() {
        1 => Some(vec![f64::from(data[0]); m]),
        l if l == m => Some(data.iter().map(|&x| f64::from(x)).collect()),
        _ => None,
    }
}

/// `b[c] * k[c]` (shape `[M]`).
pub fn scale_vec(b: &Tensor, k: &[f64]) -> Option<Tensor> {
    let b = b.as_f32()?;
    if b.len() != k.len() {
        return None;
    }
    let v = b
        .iter()
        .zip(k)
        .map(|(&b, &k)| (f64::from(b) * k) as f32)
        .collect();
    finite(Tensor::from_f32(vec![k.len()], v).ok()?)
}

/// `b[c] + t[c]` (`b` absent: zero), shape `[M]`.
pub fn shift_vec(b: Option<&Tensor>, t: &[f64]) -> Option<Tensor> {
    let m = t.len();
    let b = match b {
        Some(b) => Some(b.as_f32()?).filter(|b| b.len() == m)?.to_vec(),
        None => vec![0.0; m],
    };
    let v = b
        .iter()
        .zip(t)
        .map(|(&b, &t)| (f64::from(b) + t) as f32)
        .collect();
    finite(Tensor::from_f32(vec![m], v).ok()?)
}

/// The same elements under a new shape (data movement that keeps row-major order).
pub fn reshaped(t: &Tensor, shape: &Shape) -> Option<Tensor> {
    Tensor::new(shape.clone(), t.data().clone()).ok()
}

fn finite(t: Tensor) -> Option<Tensor> {
    t.as_f32()?.iter().all(|x| x.is_finite()).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_f32(shape.to_vec(), v.to_vec()).expect("test tensor")
    }

    #[test]
    fn bn_factor_with_zero_variance_uses_epsilon() {
        // scale 3, var 0, eps 0.25: 3 / sqrt(0.25) = 6; var 3.75: 3 / 2 = 1.5.
        let k = bn_factors(&t(&[2], &[3.0, 3.0]), &t(&[2], &[0.0, 3.75]), 0.25);
        assert_eq!(k, Some(vec![6.0, 1.5]));
        // var + eps = 0: no factor.
        assert_eq!(bn_factors(&t(&[1], &[1.0]), &t(&[1], &[0.0]), 0.0), None);
    }

    #[test]
    fn scale_axis_scales_slices() {
        let w = t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let r = scale_axis(&w, 0, &[2.0, -1.0]).expect("folds");
        assert_eq!(r.as_f32(), Some(&[2.0, 4.0, 6.0, -4.0, -5.0, -6.0][..]));
        let r = scale_axis(&w, 1, &[1.0, 0.5, 2.0]).expect("folds");
        assert_eq!(r.as_f32(), Some(&[1.0, 1.0, 6.0, 4.0, 2.5, 12.0][..]));
        assert!(scale_axis(&w, 1, &[1.0, 2.0]).is_none());
    }

    #[test]
    fn gemm_bias_broadcasts_c() {
        // C [2,1] = [[1],[2]], beta 2, N = 2, k = [1, 2], mean [1, 0], bias [0, 1]:
        // row 0: (2*1 - 1)*1 + 0 = 1, (2*1 - 0)*2 + 1 = 5; row 1: 3, 9.
        let c = t(&[2, 1], &[1.0, 2.0]);
        let r = gemm_bn_bias(
            Some(&c),
            2.0,
            &[1.0, 2.0],
            &t(&[2], &[0.0, 1.0]),
            &t(&[2], &[1.0, 0.0]),
        )
        .expect("folds");
        assert_eq!(r.dims(), &[2, 2]);
        assert_eq!(r.as_f32(), Some(&[1.0, 5.0, 3.0, 9.0][..]));
    }

    #[test]
    fn channel_vectors() {
        let c = t(&[3, 1, 1], &[1.0, 2.0, 3.0]);
        assert_eq!(channel_vector(&c, 4, 3), Some(vec![1.0, 2.0, 3.0]));
        let c4 = t(&[1, 3, 1, 1], &[1.0, 2.0, 3.0]);
        assert_eq!(channel_vector(&c4, 4, 3), Some(vec![1.0, 2.0, 3.0]));
        // Along the last axis it is not per channel.
        let w = t(&[3], &[1.0, 2.0, 3.0]);
        assert_eq!(channel_vector(&w, 4, 3), None);
        // A rank-5 constant would add an axis to a rank-4 result.
        let r5 = t(&[1, 1, 3, 1, 1], &[1.0, 2.0, 3.0]);
        assert_eq!(channel_vector(&r5, 4, 3), None);
        assert_eq!(channel_vector(&t(&[1], &[2.0]), 4, 3), Some(vec![2.0; 3]));
    }
}
