//! The `float` contract's fused 8-bit add and softmax (`qc_qmath::FusedAdd`,
//! `qc_qmath::FusedSoftmax`; which nodes they define is `qc_ir::fused`'s call).

use qc_ir::{Tensor, TensorType};

use crate::util::{broadcast_map, data_from_i64, ints_i32, split_at_axis, KResult};

fn codes(t: &Tensor) -> KResult<Vec<i32>> {
    ints_i32(t.data()).ok_or_else(|| format!("expected 8-bit codes, got {}", t.dtype()))
}

/// `Some(result)` when the fused add defines this node.
pub(crate) fn add(
    a: &Tensor,
    b: &Tensor,
    tys: (&TensorType, &TensorType, &TensorType),
    act: qc_ir::Activation,
) -> Option<KResult<Tensor>> {
    let f = qc_ir::fused::add(tys.0, tys.1, tys.2, act)?;
    Some((|| {
        let f = f.map_err(|e| e.to_string())?;
        let (ca, cb) = (codes(a)?, codes(b)?);
        let out = tys.2.shape.dims();
        let r = broadcast_map(&ca, a.dims(), &cb, b.dims(), out, |x, y| {
            i64::from(f.apply(x, y))
        });
        let d = data_from_i64(tys.2.dtype, r)?;
        Tensor::new(out.to_vec(), d).map_err(|e| e.to_string())
    })())
}

/// `Some(result)` when the fused softmax defines this node.
pub(crate) fn softmax(
    x: &Tensor,
    tys: (&TensorType, &TensorType),
    axis: usize,
) -> Option<KResult<Tensor>> {
    let dims = x.dims();
    let d = *dims.get(axis)?;
    let s = qc_ir::fused::softmax(tys.0, tys.1, d)?;
    Some((|| {
        let s = s.map_err(|e| e.to_string())?;
        let c = codes(x)?;
        let (outer, d, inner) = split_at_axis(dims, axis);
        let mut out = vec![0i64; c.len()];
        let (mut row, mut res) = (vec![0i32; d], vec![0i32; d]);
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| (o * d + k) * inner + i;
                for (k, r) in row.iter_mut().enumerate() {
                    *r = c[at(k)];
                }
                s.row(&row, &mut res);
                for (k, &r) in res.iter().enumerate() {
                    out[at(k)] = i64::from(r);
                }
            }
        }
        let d = data_from_i64(tys.1.dtype, out)?;
        Tensor::new(dims.to_vec(), d).map_err(|e| e.to_string())
    })())
}

/// `Some(result)` when the fused global average defines this node.
pub(crate) fn mean(
    op: &qc_ir::Op,
    x: &Tensor,
    tys: (&TensorType, &TensorType),
) -> Option<KResult<Tensor>> {
    let f = qc_ir::fused::mean(op, tys.0, tys.1)?;
    Some((|| {
        let c = codes(x)?;
        let dims = x.dims();
        let n: usize = dims.get(2..).map_or(1, |d| d.iter().product());
        let out: Vec<i64> = if n == 0 {
            Vec::new()
        } else {
            c.chunks(n)
                .map(|ch| i64::from(f.apply(ch.iter().fold(0i32, |a, &v| a.wrapping_add(v)))))
                .collect()
        };
        let d = data_from_i64(tys.1.dtype, out)?;
        Tensor::new(tys.1.shape.dims().to_vec(), d).map_err(|e| e.to_string())
    })())
}
