//! Constant folding of the small tensor computations ONNX models do on shapes.
//!
//! These are plain functions on [`Tensor`]s, used by the importer where an op's
//! operands are all constant (see the crate docs for which ops). They are kept small
//! and obviously correct: data movement by flat index lists, integer arithmetic in
//! `i128` with the result checked against the dtype's range (a fold that would
//! overflow or divide by zero is declined, leaving the op in the graph), and no float
//! arithmetic beyond `Cast`.
//!
//! Invariant: every function checks the element count of its result with
//! [`Shape::numel`] and against [`MAX_FOLD_BYTES`] before allocating it (and the
//! index lists of gather/slice against the same budget), and never
//! indexes out of bounds (index lists are built from checked shapes; element reads go
//! through `get`).

use qc_ir::{DType, Shape, Tensor, TensorData};

/// The largest tensor (in bytes) a fold may create. Folds that could exceed it either
/// decline (the op stays in the graph) or, for ops that must fold, fail.
pub(crate) const MAX_FOLD_BYTES: usize = 1 << 30;

type R<T> = std::result::Result<T, String>;

/// Rebuild a `TensorData` of the same variant from the vector inside it.
macro_rules! map_same {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::F32($v) => TensorData::F32($body),
            TensorData::F64($v) => TensorData::F64($body),
            TensorData::F16($v) => TensorData::F16($body),
            TensorData::BF16($v) => TensorData::BF16($body),
            TensorData::I8($v) => TensorData::I8($body),
            TensorData::U8($v) => TensorData::U8($body),
            TensorData::I16($v) => TensorData::I16($body),
            TensorData::U16($v) => TensorData::U16($body),
            TensorData::I32($v) => TensorData::I32($body),
            TensorData::U32($v) => TensorData::U32($body),
            TensorData::I64($v) => TensorData::I64($body),
            TensorData::U64($v) => TensorData::U64($body),
            TensorData::Bool($v) => TensorData::Bool($body),
        }
    };
}

/// Checked element count and byte size of a fold result.
pub(crate) fn check_size(shape: &Shape, dtype: DType) -> R<usize> {
    let n = shape.numel().map_err(|e| e.to_string())?;
    if n.saturating_mul(dtype.size()) > MAX_FOLD_BYTES {
        return Err(format!(
            "the folded constant {dtype}{shape} would exceed {MAX_FOLD_BYTES} bytes"
        ));
    }
    Ok(n)
}

/// A fold result that is gathered through a flat index list (`usize` per element):
/// its size check also bounds that list.
fn check_indexed_size(shape: &Shape, dtype: DType) -> R<usize> {
    let n = check_size(shape, dtype)?;
    if n.saturating_mul(std::mem::size_of::<usize>()) > MAX_FOLD_BYTES {
        return Err(format!(
            "the folded constant {dtype}{shape} has too many elements"
        ));
    }
    Ok(n)
}

/// The elements of `data` at flat indices `idx`, in order.
fn take(data: &TensorData, idx: &[usize]) -> R<TensorData> {
    let oob = || "invariant: fold index out of bounds".to_string();
    Ok(map_same!(data, v => {
        idx.iter().map(|&i| v.get(i).copied()).collect::<Option<Vec<_>>>().ok_or_else(oob)?
    }))
}

/// Element `i` of `t`'s data repeated `n` times (ConstantOfShape).
pub(crate) fn fill(value: &Tensor, shape: Shape) -> R<Tensor> {
    let n = check_size(&shape, value.dtype())?;
    if value.len() != 1 {
        return Err(format!(
            "the fill value must have one element, got {}",
            value.len()
        ));
    }
    let data = map_same!(value.data(), v => vec![v[0]; n]);
    Tensor::new(shape, data).map_err(|e| e.to_string())
}

/// Same data under a new shape of the same element count.
pub(crate) fn reshape(t: &Tensor, dims: Vec<usize>) -> R<Tensor> {
    t.clone().reshaped(dims).map_err(|e| e.to_string())
}

/// Join `parts` along `axis` (all of one dtype and equal dims off the axis).
pub(crate) fn concat(parts: &[&Tensor], axis: usize) -> R<Tensor> {
    let first = parts.first().ok_or("concat of nothing")?;
    let dtype = first.dtype();
    let rank = first.dims().len();
    if axis >= rank {
        return Err(format!("axis {axis} out of range for rank {rank}"));
    }
    let mut dims = first.dims().to_vec();
    dims[axis] = 0;
    for p in parts {
        if p.dtype() != dtype {
            return Err(format!("operands have dtypes {dtype} and {}", p.dtype()));
        }
        let ok = p.dims().len() == rank
            && p.dims()
                .iter()
                .zip(first.dims())
                .enumerate()
                .all(|(i, (a, b))| i == axis || a == b);
        if !ok {
            return Err(format!(
                "shapes {} and {} differ off axis {axis}",
                first.shape(),
                p.shape()
            ));
        }
        dims[axis] = dims[axis].checked_add(p.dims()[axis]).ok_or("too large")?;
    }
    let shape = Shape(dims);
    check_size(&shape, dtype)?;
    // Each operand is `outer` blocks of `dims[axis..]` elements; the result interleaves them.
    let outer: usize = first.dims()[..axis].iter().product();
    let inner: usize = first.dims()[axis + 1..].iter().product();
    let mut data = TensorData::zeros(dtype, 0);
    for o in 0..outer {
        for p in parts {
            let block = p.dims()[axis] * inner;
            append(&mut data, p.data(), o * block, block)?;
        }
    }
    Tensor::new(shape, data).map_err(|e| e.to_string())
}

/// Append `src[start..start + len]` to `dst` (same variant).
fn append(dst: &mut TensorData, src: &TensorData, start: usize, len: usize) -> R<()> {
    macro_rules! arms {
        ($($var:ident),*) => {
            match (dst, src) {
                $((TensorData::$var(d), TensorData::$var(s)) => {
                    let chunk = start
                        .checked_add(len)
                        .and_then(|end| s.get(start..end))
                        .ok_or("invariant: concat range out of bounds")?;
                    d.extend_from_slice(chunk);
                    Ok(())
                })*
                _ => Err("concat operands differ in dtype".to_string()),
            }
        };
    }
    arms!(F32, F64, F16, BF16, I8, U8, I16, U16, I32, U32, I64, U64, Bool)
}

/// ONNX Gather along `axis` with (possibly negative) indices.
pub(crate) fn gather(data: &Tensor, indices: &Tensor, axis: usize) -> R<Tensor> {
    if !indices.dtype().is_int() {
        return Err(format!("indices must be integers, got {}", indices.dtype()));
    }
    let d = data.dims();
    let n_axis = *d
        .get(axis)
        .ok_or_else(|| format!("axis {axis} out of range for {}", data.shape()))?;
    let mut idx = Vec::with_capacity(indices.len());
    for k in indices.to_i64_vec() {
        let j = if k < 0 {
            i128::from(k) + n_axis as i128
        } else {
            i128::from(k)
        };
        if j < 0 || j >= n_axis as i128 {
            return Err(format!(
                "index {k} out of range for axis {axis} of size {n_axis}"
            ));
        }
        idx.push(j as usize);
    }
    let mut dims = d[..axis].to_vec();
    dims.extend_from_slice(indices.dims());
    dims.extend_from_slice(&d[axis + 1..]);
    let shape = Shape(dims);
    let n = check_indexed_size(&shape, data.dtype())?;
    let outer: usize = d[..axis].iter().product();
    let inner: usize = d[axis + 1..].iter().product();
    let mut flat = Vec::with_capacity(n);
    for o in 0..outer {
        for &j in &idx {
            let base = (o * n_axis + j) * inner;
            flat.extend(base..base + inner);
        }
    }
    Tensor::new(shape, take(data.data(), &flat)?).map_err(|e| e.to_string())
}

/// ONNX Slice: `axes` already normalized to `0..rank`; starts/ends clamped per the spec.
pub(crate) fn slice(
    data: &Tensor,
    starts: &[i64],
    ends: &[i64],
    axes: &[usize],
    steps: &[i64],
) -> R<Tensor> {
    let d = data.dims();
    if starts.len() != axes.len() || ends.len() != axes.len() || steps.len() != axes.len() {
        return Err(format!(
            "starts ({}), ends ({}), axes ({}) and steps ({}) differ in length",
            starts.len(),
            ends.len(),
            axes.len(),
            steps.len()
        ));
    }
    // Per axis, the list of source positions kept.
    let mut picks: Vec<Vec<usize>> = d.iter().map(|&n| (0..n).collect()).collect();
    let mut seen = vec![false; d.len()];
    for (i, &a) in axes.iter().enumerate() {
        let n = *d
            .get(a)
            .ok_or_else(|| format!("axis {a} out of range for {}", data.shape()))?
            as i128;
        if std::mem::replace(&mut seen[a], true) {
            return Err(format!("axis {a} is sliced twice"));
        }
        let step = i128::from(steps[i]);
        if step == 0 {
            return Err("step 0".into());
        }
        let norm = |v: i64| {
            if v < 0 {
                i128::from(v) + n
            } else {
                i128::from(v)
            }
        };
        let (mut s, mut e) = (norm(starts[i]), norm(ends[i]));
        let mut list = Vec::new();
        if n == 0 {
            // Nothing to pick (and the clamps below need n >= 1).
        } else if step > 0 {
            s = s.clamp(0, n);
            e = e.clamp(0, n);
            while s < e {
                list.push(s as usize);
                s += step;
            }
        } else {
            s = s.clamp(0, n - 1);
            e = e.clamp(-1, n - 1);
            while s > e {
                list.push(s as usize);
                s += step;
            }
        }
        picks[a] = list;
    }
    let shape = Shape(picks.iter().map(Vec::len).collect());
    let n = check_indexed_size(&shape, data.dtype())?;
    let strides = data.shape().strides();
    let mut flat = Vec::with_capacity(n);
    if n > 0 {
        let mut pos = vec![0usize; d.len()];
        'outer: loop {
            flat.push(
                pos.iter()
                    .zip(&picks)
                    .zip(&strides)
                    .map(|((&p, l), &s)| l[p] * s)
                    .sum(),
            );
            for ax in (0..d.len()).rev() {
                pos[ax] += 1;
                if pos[ax] < picks[ax].len() {
                    continue 'outer;
                }
                pos[ax] = 0;
            }
            break;
        }
    }
    Tensor::new(shape, take(data.data(), &flat)?).map_err(|e| e.to_string())
}

/// Element `i` of an integer tensor, widened without loss (0 past the end).
fn int_at(d: &TensorData, i: usize) -> i128 {
    match d {
        TensorData::U64(v) => v.get(i).copied().map_or(0, i128::from),
        d if i < d.len() => i128::from(d.get_i64(i)),
        _ => 0,
    }
}

/// ONNX Cast of a constant: the one cast qc has (`TensorData::cast`), so a Cast folded
/// here and one executed at run time agree.
pub(crate) fn cast(t: &Tensor, to: DType) -> R<Tensor> {
    check_size(t.shape(), to)?;
    Tensor::new(t.shape().clone(), t.data().cast(to)).map_err(|e| e.to_string())
}

/// Integer arithmetic of the shape computations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IntOp {
    Add,
    Sub,
    Mul,
    /// Truncating division.
    Div,
}

/// The largest integer tensor folded elementwise; bigger ones stay ops.
const MAX_INT_FOLD: usize = 1 << 16;

/// `a op b` with numpy broadcasting on integer tensors of one dtype. `None` when the
/// fold is declined: not integers, dtypes differ, shapes do not broadcast, too big,
/// a result outside the dtype, or division by zero.
pub(crate) fn int_binary(op: IntOp, a: &Tensor, b: &Tensor) -> Option<Tensor> {
    let dtype = a.dtype();
    if dtype != b.dtype() || !dtype.is_int() {
        return None;
    }
    let dims = broadcast(a.dims(), b.dims())?;
    let shape = Shape(dims);
    let n = shape.numel().ok()?;
    if n > MAX_INT_FOLD {
        return None;
    }
    let ia = broadcast_index(shape.dims(), a.dims());
    let ib = broadcast_index(shape.dims(), b.dims());
    let val = |t: &Tensor, i: usize| int_at(t.data(), i);
    let (lo, hi) = int_range(dtype)?;
    let mut out = Vec::with_capacity(n);
    for (&i, &j) in ia.iter().zip(&ib) {
        let (x, y) = (val(a, i), val(b, j));
        let r = match op {
            IntOp::Add => x.checked_add(y)?,
            IntOp::Sub => x.checked_sub(y)?,
            IntOp::Mul => x.checked_mul(y)?,
            IntOp::Div => x.checked_div(y)?,
        };
        if r < lo || r > hi {
            return None;
        }
        out.push(r);
    }
    // Every value is in the dtype's range, so the narrowing casts below are exact.
    let data = match dtype {
        DType::I8 => TensorData::I8(out.iter().map(|&r| r as i8).collect()),
        DType::U8 => TensorData::U8(out.iter().map(|&r| r as u8).collect()),
        DType::I16 => TensorData::I16(out.iter().map(|&r| r as i16).collect()),
        DType::U16 => TensorData::U16(out.iter().map(|&r| r as u16).collect()),
        DType::I32 => TensorData::I32(out.iter().map(|&r| r as i32).collect()),
        DType::U32 => TensorData::U32(out.iter().map(|&r| r as u32).collect()),
        DType::I64 => TensorData::I64(out.iter().map(|&r| r as i64).collect()),
        DType::U64 => TensorData::U64(out.iter().map(|&r| r as u64).collect()),
        _ => return None,
    };
    Tensor::new(shape, data).ok()
}

fn int_range(d: DType) -> Option<(i128, i128)> {
    Some(match d {
        DType::I8 => (i8::MIN.into(), i8::MAX.into()),
        DType::U8 => (0, u8::MAX.into()),
        DType::I16 => (i16::MIN.into(), i16::MAX.into()),
        DType::U16 => (0, u16::MAX.into()),
        DType::I32 => (i32::MIN.into(), i32::MAX.into()),
        DType::U32 => (0, u32::MAX.into()),
        DType::I64 => (i64::MIN.into(), i64::MAX.into()),
        DType::U64 => (0, u64::MAX.into()),
        _ => return None,
    })
}

/// Numpy broadcast of two shapes.
fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let at = |s: &[usize], k: usize| {
        if k + s.len() >= r {
            s[k + s.len() - r]
        } else {
            1
        }
    };
    (0..r)
        .map(|k| match (at(a, k), at(b, k)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// For every element of a tensor of shape `out`, the flat index of the element of a
/// tensor of shape `inp` (right-aligned, size-1 axes broadcast) that it reads.
fn broadcast_index(out: &[usize], inp: &[usize]) -> Vec<usize> {
    let r = out.len();
    let off = r - inp.len();
    let in_strides = Shape(inp.to_vec()).strides();
    let n: usize = out.iter().product();
    let mut res = Vec::with_capacity(n);
    let mut pos = vec![0usize; r];
    for _ in 0..n {
        let mut flat = 0;
        for (k, &p) in pos.iter().enumerate().skip(off) {
            let i = k - off;
            if inp[i] != 1 {
                flat += p * in_strides[i];
            }
        }
        res.push(flat);
        for k in (0..r).rev() {
            pos[k] += 1;
            if pos[k] < out[k] {
                break;
            }
            pos[k] = 0;
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i64s(dims: &[usize], v: &[i64]) -> Tensor {
        Tensor::new(dims.to_vec(), TensorData::I64(v.to_vec())).expect("test tensor")
    }

    #[test]
    fn concat_interleaves_blocks() {
        let a = Tensor::from_f32([2, 1], vec![1.0, 2.0]).expect("a");
        let b = Tensor::from_f32([2, 2], vec![3.0, 4.0, 5.0, 6.0]).expect("b");
        let c = concat(&[&a, &b], 1).expect("concat");
        assert_eq!(c.dims(), [2, 3]);
        assert_eq!(c.as_f32().expect("f32"), [1.0, 3.0, 4.0, 2.0, 5.0, 6.0]);
    }

    #[test]
    fn gather_negative_index_and_scalar_indices() {
        let d = i64s(&[2, 3], &[10, 11, 12, 20, 21, 22]);
        let g = gather(&d, &i64s(&[], &[-1]), 1).expect("gather");
        assert_eq!(g.dims(), [2]);
        assert_eq!(g.to_i64_vec(), [12, 22]);
        assert!(gather(&d, &i64s(&[1], &[3]), 1).is_err());
    }

    #[test]
    fn slice_clamps_and_steps_backwards() {
        let d = i64s(&[5], &[0, 1, 2, 3, 4]);
        let s = slice(&d, &[1], &[i64::MAX], &[0], &[2]).expect("slice");
        assert_eq!(s.to_i64_vec(), [1, 3]);
        let s = slice(&d, &[-1], &[i64::MIN], &[0], &[-1]).expect("reverse");
        assert_eq!(s.to_i64_vec(), [4, 3, 2, 1, 0]);
        let s = slice(&d, &[3], &[1], &[0], &[1]).expect("empty");
        assert_eq!(s.dims(), [0]);
    }

    #[test]
    fn int_binary_broadcasts_and_declines_overflow() {
        let a = i64s(&[2, 1], &[6, 9]);
        let b = i64s(&[2], &[-4, 3]);
        // 6 / -4 truncates to -1, 9 / -4 to -2.
        let r = int_binary(IntOp::Div, &a, &b).expect("div");
        assert_eq!(r.dims(), [2, 2]);
        assert_eq!(r.to_i64_vec(), [-1, 2, -2, 3]);
        let big = i64s(&[1], &[i64::MAX]);
        assert!(int_binary(IntOp::Add, &big, &i64s(&[1], &[1])).is_none());
        assert!(int_binary(IntOp::Div, &a, &i64s(&[1], &[0])).is_none());
    }

    #[test]
    fn cast_truncates_and_rounds_to_f16() {
        let t = Tensor::from_f32([3], vec![-2.7, 2.7, 65520.0]).expect("t");
        assert_eq!(
            cast(&t, DType::I64).expect("i64").to_i64_vec(),
            [-2, 2, 65520]
        );
        let h = cast(&t, DType::F16).expect("f16");
        // 65520 is exactly half-way between f16 max (65504) and 65536 and rounds to inf.
        assert_eq!(h.to_f64_vec(), [-2.69921875, 2.69921875, f64::INFINITY]);
    }

    #[test]
    fn fill_rejects_huge() {
        let v = Tensor::scalar_f32(1.0);
        assert!(fill(&v, Shape(vec![1 << 20, 1 << 20])).is_err());
        assert_eq!(
            fill(&v, Shape(vec![2]))
                .expect("fill")
                .as_f32()
                .expect("f32"),
            [1.0, 1.0]
        );
    }
}
