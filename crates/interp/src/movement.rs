//! Data movement ops (flatten, reshape, squeeze, unsqueeze, transpose, concat, pad,
//! identity), generic over the element type so that the same code moves f32, raw
//! integers, bools and f16/bf16 bits.
//!
//! [`shape`] validates the operands and computes the result shape; [`data`] must
//! only be called after it succeeded for the same operands (it relies on that
//! validation for in-bounds indexing).

use qc_ir::Op;

use crate::util::{fmt_dims, numel, KResult};

pub(crate) fn is_movement(op: &Op) -> bool {
    matches!(
        op,
        Op::Flatten { .. }
            | Op::Reshape { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Transpose { .. }
            | Op::Concat { .. }
            | Op::Pad { .. }
            | Op::Identity
    )
}

fn one<'a>(shapes: &[&'a [usize]]) -> KResult<&'a [usize]> {
    match shapes {
        [s] => Ok(s),
        _ => Err(format!("expects 1 operand, got {}", shapes.len())),
    }
}

/// The transpose permutation (ONNX default: reversed axes when empty).
fn perm_of(perm: &[usize], rank: usize) -> KResult<Vec<usize>> {
    if perm.is_empty() {
        return Ok((0..rank).rev().collect());
    }
    let mut seen = vec![false; rank];
    if perm.len() != rank {
        return Err(format!("perm {perm:?} for rank {rank}"));
    }
    for &p in perm {
        match seen.get_mut(p) {
            Some(s) if !*s => *s = true,
            _ => return Err(format!("perm {perm:?} is not a permutation of 0..{rank}")),
        }
    }
    Ok(perm.to_vec())
}

/// Result shape of a movement op, validating its operands.
pub(crate) fn shape(op: &Op, shapes: &[&[usize]]) -> KResult<Vec<usize>> {
    match op {
        Op::Identity => Ok(one(shapes)?.to_vec()),
        Op::Flatten { axis } => {
            let s = one(shapes)?;
            if *axis > s.len() {
                return Err(format!("axis {axis} out of range for rank {}", s.len()));
            }
            Ok(vec![numel(&s[..*axis]), numel(&s[*axis..])])
        }
        Op::Reshape { shape } => {
            let s = one(shapes)?;
            if crate::util::checked_numel(shape)? != numel(s) {
                return Err(format!(
                    "cannot reshape {} to {}",
                    fmt_dims(s),
                    fmt_dims(shape)
                ));
            }
            Ok(shape.clone())
        }
        Op::Squeeze { axes } => {
            let s = one(shapes)?;
            if axes.is_empty() {
                // ONNX: no axes squeezes every size-1 dim.
                return Ok(s.iter().copied().filter(|&d| d != 1).collect());
            }
            for &a in axes {
                if s.get(a) != Some(&1) {
                    return Err(format!("cannot squeeze axis {a} of shape {}", fmt_dims(s)));
                }
            }
            Ok(s.iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect())
        }
        Op::Unsqueeze { axes } => {
            let s = one(shapes)?;
            let r = s.len() + axes.len();
            let mut out = Vec::with_capacity(r);
            let mut src = s.iter();
            for i in 0..r {
                if axes.contains(&i) {
                    out.push(1);
                } else {
                    match src.next() {
                        Some(&d) => out.push(d),
                        None => return Err(format!("unsqueeze axes {axes:?} out of range")),
                    }
                }
            }
            if src.next().is_some() || axes.iter().any(|&a| a >= r) {
                return Err(format!(
                    "unsqueeze axes {axes:?} invalid for rank {}",
                    s.len()
                ));
            }
            Ok(out)
        }
        Op::Transpose { perm } => {
            let s = one(shapes)?;
            let p = perm_of(perm, s.len())?;
            Ok(p.iter().map(|&i| s[i]).collect())
        }
        Op::Concat { axis } => {
            let Some(first) = shapes.first() else {
                return Err("concat of no operands".into());
            };
            if *axis >= first.len() {
                return Err(format!("axis {axis} out of range for rank {}", first.len()));
            }
            let mut out = first.to_vec();
            out[*axis] = 0;
            for s in shapes {
                let same_rest = s.len() == first.len()
                    && s.iter()
                        .zip(first.iter())
                        .enumerate()
                        .all(|(i, (a, b))| i == *axis || a == b);
                if !same_rest {
                    return Err(format!(
                        "cannot concat {} and {} on axis {axis}",
                        fmt_dims(first),
                        fmt_dims(s)
                    ));
                }
                out[*axis] += s[*axis];
            }
            crate::util::checked_numel(&out)?;
            Ok(out)
        }
        Op::Pad { pads, .. } => {
            let s = one(shapes)?;
            if pads.len() != 2 * s.len() {
                return Err(format!("{} pads for rank {}", pads.len(), s.len()));
            }
            let r = s.len();
            let mut out = Vec::with_capacity(r);
            for (i, &d) in s.iter().enumerate() {
                let n = d as i64 + pads[i] + pads[r + i];
                if n < 0 {
                    return Err(format!(
                        "pads {pads:?} crop more than shape {}",
                        fmt_dims(s)
                    ));
                }
                out.push(n as usize);
            }
            crate::util::checked_numel(&out)?;
            Ok(out)
        }
        other => Err(format!("{} is not a data movement op", other.name())),
    }
}

/// The moved data. `fill` is the pad value (only read by `pad`). Requires
/// [`shape`] to have accepted `shapes`, and `xs[i].len() == numel(shapes[i])`.
pub(crate) fn data<T: Copy>(op: &Op, xs: &[&[T]], shapes: &[&[usize]], fill: Option<T>) -> Vec<T> {
    match (op, xs.first(), shapes.first()) {
        (Op::Transpose { perm }, Some(x), Some(s)) => match perm_of(perm, s.len()) {
            Ok(p) => transpose(x, s, &p),
            Err(_) => Vec::new(),
        },
        (Op::Concat { axis }, _, _) => concat(xs, shapes, *axis),
        (Op::Pad { pads, .. }, Some(x), Some(s)) => match fill.or_else(|| x.first().copied()) {
            Some(f) => pad(x, s, pads, f),
            // Nothing to fill with means x is empty; the result then has no elements
            // unless pads grow it, which needs a fill: callers always pass one.
            None => Vec::new(),
        },
        (_, Some(x), _) => x.to_vec(),
        _ => Vec::new(),
    }
}

fn transpose<T: Copy>(x: &[T], s: &[usize], perm: &[usize]) -> Vec<T> {
    let r = s.len();
    let n = numel(s);
    if r == 0 || n == 0 {
        return x.to_vec();
    }
    let out: Vec<usize> = perm.iter().map(|&i| s[i]).collect();
    let mut in_strides = vec![1usize; r];
    for i in (0..r.saturating_sub(1)).rev() {
        in_strides[i] = in_strides[i + 1] * s[i + 1];
    }
    // Input stride of each output dim.
    let st: Vec<usize> = perm.iter().map(|&i| in_strides[i]).collect();
    let last = out[r - 1];
    let ls = st[r - 1];
    let mut idx = vec![0usize; r - 1];
    let mut res = Vec::with_capacity(n);
    for _ in 0..n / last {
        let base: usize = idx.iter().zip(&st).map(|(i, s)| i * s).sum();
        res.extend((0..last).map(|j| x[base + j * ls]));
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

fn concat<T: Copy>(xs: &[&[T]], shapes: &[&[usize]], axis: usize) -> Vec<T> {
    let Some(first) = shapes.first() else {
        return Vec::new();
    };
    let outer = numel(&first[..axis]);
    let chunks: Vec<usize> = shapes.iter().map(|s| numel(&s[axis..])).collect();
    let mut res = Vec::with_capacity(outer * chunks.iter().sum::<usize>());
    for o in 0..outer {
        for (x, &c) in xs.iter().zip(&chunks) {
            res.extend_from_slice(&x[o * c..(o + 1) * c]);
        }
    }
    res
}

fn pad<T: Copy>(x: &[T], s: &[usize], pads: &[i64], fill: T) -> Vec<T> {
    let r = s.len();
    if r == 0 {
        return x.to_vec();
    }
    let out: Vec<usize> = (0..r)
        .map(|i| (s[i] as i64 + pads[i] + pads[r + i]) as usize)
        .collect();
    let n = numel(&out);
    let mut res = Vec::with_capacity(n);
    let last = out[r - 1];
    if n == 0 {
        return res;
    }
    let mut in_strides = vec![1usize; r];
    for i in (0..r - 1).rev() {
        in_strides[i] = in_strides[i + 1] * s[i + 1];
    }
    let mut idx = vec![0usize; r - 1];
    for _ in 0..n / last {
        // Input offset of this output row, or None if it lies in the padding.
        let mut base = Some(0usize);
        for d in 0..r - 1 {
            let i = idx[d] as i64 - pads[d];
            base = match base {
                Some(b) if i >= 0 && (i as usize) < s[d] => Some(b + i as usize * in_strides[d]),
                _ => None,
            };
        }
        match base {
            None => res.extend(std::iter::repeat_n(fill, last)),
            Some(b) => {
                let begin = pads[r - 1];
                for j in 0..last {
                    let i = j as i64 - begin;
                    res.push(if i >= 0 && (i as usize) < s[r - 1] {
                        x[b + i as usize]
                    } else {
                        fill
                    });
                }
            }
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
