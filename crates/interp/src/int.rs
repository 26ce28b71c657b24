//! Ops on raw (unquantized) integer tensors.
//!
//! Elements are widened to i128, where every integer dtype's values are exact and
//! ordered correctly; `add`/`sub`/`mul` wrap (i128 wrapping arithmetic is exact
//! modulo 2^128, so narrowing back with `as` gives numpy's wrap-around for every
//! width), `div` truncates toward zero and rejects division by zero.

use qc_ir::{Activation, DType, Op, Tensor, TensorData};

use crate::pool;
use crate::util::{broadcast_map, broadcast_shapes, fmt_dims, numel, KResult};

fn widen(d: &TensorData) -> KResult<Vec<i128>> {
    Ok(match d {
        TensorData::I8(v) => v.iter().map(|&x| i128::from(x)).collect(),
        TensorData::U8(v) => v.iter().map(|&x| i128::from(x)).collect(),
        TensorData::I16(v) => v.iter().map(|&x| i128::from(x)).collect(),
        TensorData::U16(v) => v.iter().map(|&x| i128::from(x)).collect(),
        TensorData::I32(v) => v.iter().map(|&x| i128::from(x)).collect(),
        TensorData::U32(v) => v.iter().map(|&x| i128::from(x)).collect(),
        TensorData::I64(v) => v.iter().map(|&x| i128::from(x)).collect(),
        TensorData::U64(v) => v.iter().map(|&x| i128::from(x)).collect(),
        other => return Err(format!("not defined on raw {}", other.dtype())),
    })
}

/// Narrow to `dtype`, wrapping.
fn narrow(dtype: DType, v: Vec<i128>) -> KResult<TensorData> {
    Ok(match dtype {
        DType::I8 => TensorData::I8(v.into_iter().map(|x| x as i8).collect()),
        DType::U8 => TensorData::U8(v.into_iter().map(|x| x as u8).collect()),
        DType::I16 => TensorData::I16(v.into_iter().map(|x| x as i16).collect()),
        DType::U16 => TensorData::U16(v.into_iter().map(|x| x as u16).collect()),
        DType::I32 => TensorData::I32(v.into_iter().map(|x| x as i32).collect()),
        DType::U32 => TensorData::U32(v.into_iter().map(|x| x as u32).collect()),
        DType::I64 => TensorData::I64(v.into_iter().map(|x| x as i64).collect()),
        DType::U64 => TensorData::U64(v.into_iter().map(|x| x as u64).collect()),
        other => return Err(format!("not defined on raw {other}")),
    })
}

/// The range of an integer dtype.
fn range(dtype: DType) -> (i128, i128) {
    match dtype {
        DType::I8 => (i128::from(i8::MIN), i128::from(i8::MAX)),
        DType::U8 => (0, i128::from(u8::MAX)),
        DType::I16 => (i128::from(i16::MIN), i128::from(i16::MAX)),
        DType::U16 => (0, i128::from(u16::MAX)),
        DType::I32 => (i128::from(i32::MIN), i128::from(i32::MAX)),
        DType::U32 => (0, i128::from(u32::MAX)),
        DType::I64 => (i128::from(i64::MIN), i128::from(i64::MAX)),
        _ => (0, i128::from(u64::MAX)),
    }
}

/// A real bound as an integer of `dtype`: truncated toward zero, saturated to the
/// type's range (so a bound outside the range does not bind).
fn bound(v: f64, dtype: DType) -> i128 {
    let (lo, hi) = range(dtype);
    (v as i128).clamp(lo, hi)
}

fn clamp(x: i128, lo: i128, hi: i128) -> i128 {
    // numpy clip: min(max(x, lo), hi), also when lo > hi.
    x.max(lo).min(hi)
}

fn tensor(shape: Vec<usize>, d: TensorData) -> KResult<Tensor> {
    Tensor::new(shape, d).map_err(|e| e.to_string())
}

/// Run `op` on raw integer operands of one dtype.
pub(crate) fn run(op: &Op, xs: &[&Tensor], n_out: usize) -> KResult<Vec<Tensor>> {
    let Some(first) = xs.first() else {
        return Err("no operands".into());
    };
    let dtype = first.dtype();
    if let Some(o) = xs.iter().find(|t| t.dtype() != dtype) {
        return Err(format!(
            "operands of different element types {dtype} and {}",
            o.dtype()
        ));
    }
    let arity = |n: usize| {
        if xs.len() == n {
            Ok(())
        } else {
            Err(format!("expects {n} operands, got {}", xs.len()))
        }
    };
    let binary = |f: &dyn Fn(i128, i128) -> i128| -> KResult<(Vec<usize>, Vec<i128>)> {
        arity(2)?;
        let (a, b) = (xs[0], xs[1]);
        let out = broadcast_shapes(a.dims(), b.dims())?;
        let (av, bv) = (widen(a.data())?, widen(b.data())?);
        Ok((
            out.clone(),
            broadcast_map(&av, a.dims(), &bv, b.dims(), &out, f),
        ))
    };
    let (shape, v) = match op {
        Op::Add { act } => {
            let (s, v) = binary(&|a, b| a.wrapping_add(b))?;
            let v = match act {
                Activation::None => v,
                // The activation sees the wrapped sum, as a kernel's epilogue would.
                Activation::Relu => widen(&narrow(dtype, v)?)?
                    .into_iter()
                    .map(|x| x.max(0))
                    .collect(),
                Activation::Clip { min, max } => {
                    let (lo, hi) = (bound(f64::from(*min), dtype), bound(f64::from(*max), dtype));
                    widen(&narrow(dtype, v)?)?
                        .into_iter()
                        .map(|x| clamp(x, lo, hi))
                        .collect()
                }
            };
            (s, v)
        }
        Op::Sub => binary(&|a, b| a.wrapping_sub(b))?,
        Op::Mul => binary(&|a, b| a.wrapping_mul(b))?,
        Op::Div => {
            arity(2)?;
            if widen(xs[1].data())?.contains(&0) {
                return Err("integer division by zero".into());
            }
            // i128 `/` truncates toward zero; the zero divisor was excluded above.
            binary(&|a, b| if b == 0 { 0 } else { a / b })?
        }
        Op::Sum => {
            let mut shape = first.dims().to_vec();
            let mut acc = widen(first.data())?;
            for x in &xs[1..] {
                let out = broadcast_shapes(&shape, x.dims())?;
                acc = broadcast_map(&acc, &shape, &widen(x.data())?, x.dims(), &out, |a, b| {
                    a.wrapping_add(b)
                });
                shape = out;
            }
            (shape, acc)
        }
        Op::Relu => {
            arity(1)?;
            (
                first.dims().to_vec(),
                widen(first.data())?.into_iter().map(|x| x.max(0)).collect(),
            )
        }
        Op::Clip { min, max } => {
            arity(1)?;
            let lo = min.map_or(i128::MIN, |m| bound(m, dtype));
            let hi = max.map_or(i128::MAX, |m| bound(m, dtype));
            (
                first.dims().to_vec(),
                widen(first.data())?
                    .into_iter()
                    .map(|x| clamp(x, lo, hi))
                    .collect(),
            )
        }
        Op::MaxPool {
            pool,
            storage_order,
        } => {
            arity(1)?;
            let g = pool::Geom::new(pool, first.dims())?;
            let want_idx = n_out > 1;
            let (y, idx) =
                pool::max_pool(&g, &widen(first.data())?, 0i128, want_idx, *storage_order);
            let shape = g.out_shape();
            let mut outs = vec![tensor(shape.clone(), narrow(dtype, y)?)?];
            if want_idx {
                outs.push(tensor(shape, TensorData::I64(idx))?);
            }
            return Ok(outs);
        }
        Op::GlobalMaxPool => {
            arity(1)?;
            let d = first.dims();
            if d.len() < 2 {
                return Err(format!(
                    "global pooling needs rank >= 2, got {}",
                    fmt_dims(d)
                ));
            }
            let inner = numel(&d[2..]);
            let x = widen(first.data())?;
            let mut shape = d.to_vec();
            shape[2..].iter_mut().for_each(|s| *s = 1);
            let y = if inner == 0 {
                vec![0; d[0] * d[1]]
            } else {
                x.chunks_exact(inner)
                    .map(|p| p.iter().copied().max().unwrap_or(0))
                    .collect()
            };
            (shape, y)
        }
        other => return Err(format!("{} is not defined on raw {dtype}", other.name())),
    };
    Ok(vec![tensor(shape, narrow(dtype, v)?)?])
}
