//! Shape arithmetic, broadcasting, and dtype dispatch shared by the kernels.
//!
//! Kernels return `KResult` (a message string); the executor adds the node context.
//! Every kernel validates the shapes it indexes with before its loops, so indexing
//! inside the loops is in bounds by construction.

use qc_ir::{DType, QuantParams, TensorData, TensorType};

pub(crate) type KResult<T> = Result<T, String>;

/// Product of dims (shapes here come from tensors or validated types, so this cannot
/// overflow past [`qc_ir::MAX_NUMEL`] checks done elsewhere).
pub(crate) fn numel(dims: &[usize]) -> usize {
    dims.iter().product()
}

/// Element count of a computed shape, rejecting overflow and oversized tensors.
pub(crate) fn checked_numel(dims: &[usize]) -> KResult<usize> {
    qc_ir::Shape(dims.to_vec())
        .numel()
        .map_err(|e| e.to_string())
}

pub(crate) fn fmt_dims(d: &[usize]) -> String {
    qc_ir::Shape(d.to_vec()).to_string()
}

/// numpy multidirectional broadcast of two shapes.
pub(crate) fn broadcast_shapes(a: &[usize], b: &[usize]) -> KResult<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(format!(
                "shapes {} and {} do not broadcast",
                fmt_dims(a),
                fmt_dims(b)
            ));
        };
    }
    Ok(out)
}

/// Strides of `sh` read through the broadcast shape `out` (0 on broadcast dims).
/// Requires `sh` to broadcast to `out`.
fn bcast_strides(sh: &[usize], out: &[usize]) -> Vec<usize> {
    let off = out.len() - sh.len();
    let mut st = vec![0; out.len()];
    let mut acc = 1;
    for i in (0..sh.len()).rev() {
        st[off + i] = if sh[i] == 1 { 0 } else { acc };
        acc *= sh[i];
    }
    st
}

/// `f` applied elementwise over the broadcast of `a` (shape `ash`) and `b` (shape
/// `bsh`) to `out`, which must be `broadcast_shapes(ash, bsh)` or a shape both
/// broadcast to.
pub(crate) fn broadcast_map<A: Copy, B: Copy, R>(
    a: &[A],
    ash: &[usize],
    b: &[B],
    bsh: &[usize],
    out: &[usize],
    f: impl Fn(A, B) -> R,
) -> Vec<R> {
    let n = numel(out);
    if ash == out && bsh == out {
        return a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect();
    }
    if out.is_empty() {
        return a.iter().zip(b).map(|(&x, &y)| f(x, y)).take(1).collect();
    }
    if n == 0 {
        return Vec::new();
    }
    if numel(bsh) == 1 {
        let y = b[0];
        if ash == out {
            return a.iter().map(|&x| f(x, y)).collect();
        }
    }
    let r = out.len();
    let sa = bcast_strides(ash, out);
    let sb = bcast_strides(bsh, out);
    let last = out[r - 1];
    let (la, lb) = (sa[r - 1], sb[r - 1]);
    let outer = n / last;
    let mut idx = vec![0usize; r - 1];
    let mut res = Vec::with_capacity(n);
    for _ in 0..outer {
        let ba: usize = idx.iter().zip(&sa).map(|(i, s)| i * s).sum();
        let bb: usize = idx.iter().zip(&sb).map(|(i, s)| i * s).sum();
        for j in 0..last {
            res.push(f(a[ba + j * la], b[bb + j * lb]));
        }
        for d in (0..r - 1).rev() {
            idx[d] += 1;
            if idx[d] < out[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    res
}

/// `(outer, dim, inner)` of `dims` around `axis` (`axis < dims.len()`).
pub(crate) fn split_at_axis(dims: &[usize], axis: usize) -> (usize, usize, usize) {
    (numel(&dims[..axis]), dims[axis], numel(&dims[axis + 1..]))
}

/// Check quantization parameters against the type they sit on, so that indexing
/// scales/zero points by channel cannot go out of range.
pub(crate) fn check_quant(ty: &TensorType) -> KResult<()> {
    let Some(p) = &ty.quant else { return Ok(()) };
    p.validate().map_err(|e| e.to_string())?;
    if DType::from_qtype(p.storage) != ty.dtype {
        return Err(format!(
            "quantized type stores {} but its parameters say {}",
            ty.dtype,
            p.storage.name()
        ));
    }
    if let Some(axis) = p.axis {
        let Some(&d) = ty.shape.dims().get(axis) else {
            return Err(format!(
                "quantization axis {axis} out of range for shape {}",
                ty.shape
            ));
        };
        if p.len() != d && p.len() != 1 {
            return Err(format!(
                "{} per-axis parameters for axis {axis} of size {d} (shape {})",
                p.len(),
                ty.shape
            ));
        }
    }
    Ok(())
}

/// Call `f(element_index, channel)` for every element of a tensor of shape `dims`,
/// where `channel` indexes `p`'s scales/zero points (0 for per-tensor params).
/// Errors (before calling `f`) unless `channel` always lies within `p`.
pub(crate) fn for_each_channel(
    dims: &[usize],
    p: &QuantParams,
    mut f: impl FnMut(usize, usize),
) -> KResult<()> {
    if p.len() <= 1 {
        for i in 0..numel(dims) {
            f(i, 0);
        }
        return Ok(());
    }
    let axis = p
        .axis
        .filter(|&a| dims.get(a) == Some(&p.len()))
        .ok_or_else(|| {
            format!(
                "{} per-axis parameters (axis {:?}) do not fit shape {}",
                p.len(),
                p.axis,
                fmt_dims(dims)
            )
        })?;
    let (outer, dim, inner) = split_at_axis(dims, axis);
    let mut i = 0;
    for _ in 0..outer {
        for c in 0..dim {
            for _ in 0..inner {
                f(i, c);
                i += 1;
            }
        }
    }
    Ok(())
}

/// Integer elements as i64 (`None` for float and bool data).
pub(crate) fn ints_i64(d: &TensorData) -> Option<Vec<i64>> {
    Some(match d {
        TensorData::I8(v) => v.iter().map(|&x| i64::from(x)).collect(),
        TensorData::U8(v) => v.iter().map(|&x| i64::from(x)).collect(),
        TensorData::I16(v) => v.iter().map(|&x| i64::from(x)).collect(),
        TensorData::U16(v) => v.iter().map(|&x| i64::from(x)).collect(),
        TensorData::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
        TensorData::U32(v) => v.iter().map(|&x| i64::from(x)).collect(),
        TensorData::I64(v) => v.clone(),
        TensorData::U64(v) => v.iter().map(|&x| x as i64).collect(),
        _ => return None,
    })
}

/// Integer elements as wrapping i32 minus a zero point: the operand form of integer
/// accumulation (`(x - zp)` wraps like the real i32 kernels).
pub(crate) fn ints_i32(d: &TensorData) -> Option<Vec<i32>> {
    Some(match d {
        TensorData::I8(v) => v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::U8(v) => v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::I16(v) => v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::U16(v) => v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::I32(v) => v.clone(),
        _ => return None,
    })
}

/// Build integer data of `dtype` from values already in its range (quantized storage
/// after saturation); values outside wrap.
pub(crate) fn data_from_i64(dtype: DType, v: Vec<i64>) -> KResult<TensorData> {
    Ok(match dtype {
        DType::I8 => TensorData::I8(v.into_iter().map(|x| x as i8).collect()),
        DType::U8 => TensorData::U8(v.into_iter().map(|x| x as u8).collect()),
        DType::I16 => TensorData::I16(v.into_iter().map(|x| x as i16).collect()),
        DType::U16 => TensorData::U16(v.into_iter().map(|x| x as u16).collect()),
        DType::I32 => TensorData::I32(v.into_iter().map(|x| x as i32).collect()),
        DType::U32 => TensorData::U32(v.into_iter().map(|x| x as u32).collect()),
        DType::I64 => TensorData::I64(v),
        DType::U64 => TensorData::U64(v.into_iter().map(|x| x as u64).collect()),
        other => return Err(format!("{other} is not an integer type")),
    })
}

/// Float data of `dtype` from f32 values (f16/bf16 round to nearest even).
pub(crate) fn data_from_f32(dtype: DType, v: Vec<f32>) -> KResult<TensorData> {
    Ok(match dtype {
        DType::F32 => TensorData::F32(v),
        DType::F64 => TensorData::F64(v.into_iter().map(f64::from).collect()),
        DType::F16 => TensorData::F16(
            v.into_iter()
                .map(|x| half::f16::from_f32(x).to_bits())
                .collect(),
        ),
        DType::BF16 => TensorData::BF16(
            v.into_iter()
                .map(|x| half::bf16::from_f32(x).to_bits())
                .collect(),
        ),
        other => return Err(format!("{other} is not a float type")),
    })
}

/// Apply a dtype-generic body to operands that all hold the same `TensorData`
/// variant; the body sees `$vs: Vec<&[T]>` and yields `Vec<T>`, re-wrapped in that
/// variant. The enclosing function must return `KResult<_>`.
///
/// The default variant list is every dtype (for data movement, where F16/BF16 move
/// as raw bits); pass `; I8 U8 ...` to restrict it.
macro_rules! same_variant {
    ($datas:expr, $vs:ident => $body:expr) => {
        same_variant!($datas, $vs => $body; F32 F64 F16 BF16 I8 U8 I16 U16 I32 U32 I64 U64 Bool)
    };
    ($datas:expr, $vs:ident => $body:expr; $($var:ident)*) => {{
        let datas: &[&qc_ir::TensorData] = $datas;
        #[allow(unreachable_patterns)]
        match datas.first().map(|d| d.dtype()) {
            $(Some(qc_ir::DType::$var) => {
                let mut $vs = Vec::with_capacity(datas.len());
                for d in datas {
                    match d {
                        qc_ir::TensorData::$var(v) => $vs.push(v.as_slice()),
                        other => {
                            return Err(format!(
                                "operands of different element types {} and {}",
                                qc_ir::DType::$var,
                                other.dtype()
                            ))
                        }
                    }
                }
                qc_ir::TensorData::$var($body)
            })*
            Some(other) => return Err(format!("not defined on element type {other}")),
            None => return Err("no operands".to_string()),
        }
    }};
}
pub(crate) use same_variant;
