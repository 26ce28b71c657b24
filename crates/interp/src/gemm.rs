//! Matrix products: the i-k-j core shared by gemm and (batched, broadcast) matmul.
//!
//! Geometry functions validate shapes; cores index only within what they validated.
//! Like the convolution cores, the element type is `f32` or `Wrapping<i32>`.

use std::borrow::Cow;
use std::ops::{Add, Mul};

use crate::util::{broadcast_map, broadcast_shapes, checked_numel, fmt_dims, numel, KResult};

/// `out[m×n] += a[m×k] · b[k×n]`, all row-major, i-k-j order so the inner loop is
/// a contiguous axpy over a row of `b`.
pub(crate) fn gemm_core<T>(m: usize, k: usize, n: usize, a: &[T], b: &[T], out: &mut [T])
where
    T: Copy + Add<Output = T> + Mul<Output = T>,
{
    if n == 0 {
        return;
    }
    for (i, row) in out.chunks_exact_mut(n).take(m).enumerate() {
        let arow = &a[i * k..][..k];
        for (kk, &av) in arow.iter().enumerate() {
            let brow = &b[kk * n..][..n];
            for (o, &bv) in row.iter_mut().zip(brow) {
                *o = *o + av * bv;
            }
        }
    }
}

/// `out[m×n] += a[m×k] · btᵀ` where `bt` is `n×k` row-major (gemm with `trans_b`,
/// the usual layout of fully connected weights): each output is a dot product of two
/// contiguous rows, so the weight matrix is streamed once and never transposed.
pub(crate) fn gemm_core_bt<T>(m: usize, k: usize, n: usize, a: &[T], bt: &[T], out: &mut [T])
where
    T: Copy + Default + Add<Output = T> + Mul<Output = T>,
{
    if n == 0 {
        return;
    }
    for (i, row) in out.chunks_exact_mut(n).take(m).enumerate() {
        let arow = &a[i * k..][..k];
        for (j, o) in row.iter_mut().enumerate() {
            *o = *o + dot(arow, &bt[j * k..][..k]);
        }
    }
}

/// Dot product with 8 interleaved partial sums (so it vectorizes); for floats this
/// sums in a different order than a sequential loop, within rounding.
fn dot<T>(a: &[T], b: &[T]) -> T
where
    T: Copy + Default + Add<Output = T> + Mul<Output = T>,
{
    let mut acc = [T::default(); 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] = acc[l] + x[l] * y[l];
        }
    }
    let mut s = T::default();
    for (&x, &y) in ra.iter().zip(rb) {
        s = s + x * y;
    }
    acc.iter().fold(s, |s, &v| s + v)
}

/// Row-major transpose of a `rows × cols` matrix.
pub(crate) fn transpose2<T: Copy>(x: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut y = Vec::with_capacity(rows * cols);
    for c in 0..cols {
        y.extend((0..rows).map(|r| x[r * cols + c]));
    }
    y
}

/// Gemm geometry: `(m, k, n)` of `op(A)·op(B)`.
pub(crate) fn gemm_dims(
    a: &[usize],
    b: &[usize],
    trans_a: bool,
    trans_b: bool,
) -> KResult<(usize, usize, usize)> {
    let (&[a0, a1], &[b0, b1]) = (a, b) else {
        return Err(format!(
            "gemm needs 2-D operands, got {} and {}",
            fmt_dims(a),
            fmt_dims(b)
        ));
    };
    let (m, ka) = if trans_a { (a1, a0) } else { (a0, a1) };
    let (kb, n) = if trans_b { (b1, b0) } else { (b0, b1) };
    if ka != kb {
        return Err(format!(
            "inner dims differ: {} x {} (trans_a {trans_a}, trans_b {trans_b})",
            fmt_dims(a),
            fmt_dims(b)
        ));
    }
    checked_numel(&[m, n])?;
    Ok((m, ka, n))
}

/// `a` as an `m×k` row-major matrix (transposing a stored `k×m` one).
fn op_a<T: Copy>(a: &[T], m: usize, k: usize, trans: bool) -> Cow<'_, [T]> {
    if trans {
        Cow::Owned(transpose2(a, k, m))
    } else {
        Cow::Borrowed(a)
    }
}

/// `out += op(A) · op(B)` for a validated `(m, k, n)`; `a` and `b` as stored.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_any<T>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    b: &[T],
    trans_a: bool,
    trans_b: bool,
    out: &mut [T],
) where
    T: Copy + Default + Add<Output = T> + Mul<Output = T>,
{
    let a = op_a(a, m, k, trans_a);
    if trans_b {
        gemm_core_bt(m, k, n, &a, b, out);
    } else {
        gemm_core(m, k, n, &a, b, out);
    }
}

/// Gemm's `C` broadcast to `[m, n]` (unidirectional).
pub(crate) fn broadcast_c<T: Copy>(c: &[T], cs: &[usize], m: usize, n: usize) -> KResult<Vec<T>> {
    let out = [m, n];
    if cs.len() > 2 || broadcast_shapes(cs, &out)? != out {
        return Err(format!(
            "C of shape {} does not broadcast to [{m},{n}]",
            fmt_dims(cs)
        ));
    }
    let zeros = vec![(); m * n];
    Ok(broadcast_map(c, cs, &zeros, &out, &out, |c, ()| c))
}

/// Numpy matmul geometry.
#[derive(Debug)]
pub(crate) struct MatMulGeom {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// Per output batch: (offset of the A block, offset of the B block), in elements.
    pub blocks: Vec<(usize, usize)>,
    pub out_shape: Vec<usize>,
}

pub(crate) fn matmul_geom(a: &[usize], b: &[usize]) -> KResult<MatMulGeom> {
    if a.is_empty() || b.is_empty() {
        return Err("matmul of a scalar".into());
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
    let (m, k) = (a2[ra - 2], a2[ra - 1]);
    let (kb, n) = (b2[rb - 2], b2[rb - 1]);
    if k != kb {
        return Err(format!(
            "inner dims differ: {} x {}",
            fmt_dims(a),
            fmt_dims(b)
        ));
    }
    let (ab, bb) = (&a2[..ra - 2], &b2[..rb - 2]);
    let batch = broadcast_shapes(ab, bb)?;
    let mut out_shape = batch.clone();
    if a.len() > 1 {
        out_shape.push(m);
    }
    if b.len() > 1 {
        out_shape.push(n);
    }
    checked_numel(&out_shape)?;
    let ia: Vec<usize> = (0..numel(ab)).map(|i| i * m * k).collect();
    let ib: Vec<usize> = (0..numel(bb)).map(|i| i * k * n).collect();
    let blocks = broadcast_map(&ia, ab, &ib, bb, &batch, |x, y| (x, y));
    Ok(MatMulGeom {
        m,
        k,
        n,
        blocks,
        out_shape,
    })
}

/// Batched matmul over a validated geometry, output initialised to `zero`.
pub(crate) fn matmul_core<T>(g: &MatMulGeom, a: &[T], b: &[T], zero: T) -> Vec<T>
where
    T: Copy + Add<Output = T> + Mul<Output = T>,
{
    let (m, k, n) = (g.m, g.k, g.n);
    let mut y = vec![zero; g.blocks.len() * m * n];
    if m * n == 0 {
        return y;
    }
    for (out, &(oa, ob)) in y.chunks_exact_mut(m * n).zip(&g.blocks) {
        gemm_core(m, k, n, &a[oa..oa + m * k], &b[ob..ob + k * n], out);
    }
    y
}
