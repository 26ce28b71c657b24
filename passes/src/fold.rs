//! `fold-constants`: nodes whose operands are all constants become constants.
//!
//! Folded ops, each computed exactly as `qc-interp` defines it (the tests compare the
//! two on seeded data):
//! - data movement (`reshape`, `flatten`, `squeeze`, `unsqueeze`, `identity`,
//!   `transpose`, `concat`, `pad`) on any raw dtype moves the stored elements bit for
//!   bit; on quantized operands it dequantizes, moves and quantizes with the result's
//!   params, which is what the interpreter does for every op touching a quantized type;
//! - elementwise `add` (with its fused activation), `sub`, `mul`, `div`, `relu`, `clip`
//!   on raw integers (i128 arithmetic narrowed with wrap-around, truncating division;
//!   a zero divisor is not folded) and on f32 or quantized operands (computed in f32);
//! - `cast` between raw non-half dtypes (Rust `as`: float → int truncates and
//!   saturates, int → int wraps);
//! - `quantize` of a float constant, per tensor or per axis.
//!
//! **Invariants.** The result's dtype, shape and quantization come from the node's
//! stored result type, never from recomputation: a kernel whose output disagrees with
//! it leaves the node alone. Results above [`MAX_FOLD_ELEMS`] elements are not folded.
//! Nothing here panics on a malformed graph; an op or operand it cannot fold exactly
//! is left in place. The pass compacts the graph when it folded anything.
//!
//! [`quantize_tensor`] is shared with `canonicalize-qdq`, which evaluates the quantize
//! of fake-quant weights at compile time.

use std::sync::Arc;

use qc_ir::{
    Activation, DType, Graph, NodeId, Op, QuantParams, Tensor, TensorData, TensorType, ValueDef,
    ValueId,
};

use crate::{Changed, Pass, PassCx, Result};

/// The largest result (in elements) `fold-constants` materializes.
pub const MAX_FOLD_ELEMS: usize = 16 << 20;

/// The `fold-constants` pass.
pub struct FoldConstants;

impl Pass for FoldConstants {
    fn name(&self) -> &'static str {
        "fold-constants"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        let mut subst = Subst::new(g.values.len());
        let (mut folded, mut too_large) = (0usize, 0usize);
        for i in 0..g.nodes.len() {
            let n = NodeId::from_index(i);
            subst.apply_node(g, n);
            let node = g.node(n);
            let [out] = node.outputs[..] else { continue };
            if node.inputs.is_empty() {
                continue;
            }
            let operands: Option<Vec<(&Tensor, &TensorType)>> = node
                .inputs
                .iter()
                .map(|&v| Some((g.const_of(v)?.as_ref(), &g.values.get(v.index())?.ty)))
                .collect();
            let Some(operands) = operands else { continue };
            let out_ty = g.ty(out).clone();
            match out_ty.numel() {
                Ok(k) if k <= MAX_FOLD_ELEMS => {}
                _ => {
                    too_large += 1;
                    continue;
                }
            }
            let Some(t) = fold_op(&node.op, &operands, &out_ty) else {
                continue;
            };
            if t.dtype() != out_ty.dtype || t.shape() != &out_ty.shape {
                continue;
            }
            let c = g.add_const_tensor(Arc::new(t));
            let v = g.add_const_value(c, out_ty.quant.clone());
            subst.set(out, v);
            folded += 1;
        }
        subst.apply_outputs(g);
        if folded > 0 {
            g.compact();
        }
        cx.stat("folded", folded);
        if too_large > 0 {
            cx.stat("too-large", too_large);
        }
        Ok(Changed::from_bool(folded > 0))
    }
}

/// Value replacements applied while walking the nodes in order: a replaced value's
/// uses are redirected to its replacement. Replacements are always defined before
/// the node being visited, so the topological order survives.
pub(crate) struct Subst {
    to: Vec<Option<ValueId>>,
}

impl Subst {
    pub(crate) fn new(n: usize) -> Subst {
        Subst { to: vec![None; n] }
    }

    pub(crate) fn set(&mut self, from: ValueId, to: ValueId) {
        if self.to.len() <= from.index() {
            self.to.resize(from.index() + 1, None);
        }
        self.to[from.index()] = Some(to);
    }

    /// The final replacement of `v` (chains followed; a chain is at most as long as
    /// the number of replacements, so a bound on the walk keeps this total).
    pub(crate) fn resolve(&self, mut v: ValueId) -> ValueId {
        for _ in 0..=self.to.len() {
            match self.to.get(v.index()).copied().flatten() {
                Some(w) if w != v => v = w,
                _ => break,
            }
        }
        v
    }

    pub(crate) fn apply_node(&self, g: &mut Graph, n: NodeId) {
        let inputs: Vec<ValueId> = g.node(n).inputs.iter().map(|&v| self.resolve(v)).collect();
        g.node_mut(n).inputs = inputs;
    }

    pub(crate) fn apply_outputs(&self, g: &mut Graph) {
        for p in &mut g.outputs {
            p.value = self.resolve(p.value);
        }
    }
}

/// The constant result of `op` on constant operands, or `None` when it is not folded.
fn fold_op(op: &Op, xs: &[(&Tensor, &TensorType)], out: &TensorType) -> Option<Tensor> {
    let dims = out.shape.dims();
    let data = match op {
        Op::Quantize => {
            let [(x, xt)] = xs else { return None };
            if xt.is_quantized() || !x.dtype().is_float() {
                return None;
            }
            quantize_data(&x.to_f32_vec(), dims, out.quant.as_ref()?)?
        }
        Op::Reshape { .. }
        | Op::Flatten { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Identity
        | Op::Transpose { .. }
        | Op::Concat { .. }
        | Op::Pad { .. } => {
            let in_dims: Vec<&[usize]> = xs.iter().map(|(t, _)| t.dims()).collect();
            let map = MoveMap::new(op, &in_dims, dims)?;
            if xs.iter().any(|(_, t)| t.is_quantized()) || out.is_quantized() {
                let reals = xs
                    .iter()
                    .map(|(t, ty)| real_values(t, ty))
                    .collect::<Option<Vec<_>>>()?;
                let fill = match op {
                    Op::Pad { value, .. } => Some(*value as f32),
                    _ => None,
                };
                let v = gather(&reals, &map, numel(dims)?, fill)?;
                to_type(v, dims, out)?
            } else {
                let fill = match op {
                    Op::Pad { value, .. } => Some(raw_fill(*value, out.dtype)?),
                    _ => None,
                };
                let datas: Vec<&TensorData> = xs.iter().map(|(t, _)| t.data()).collect();
                gather_raw(&datas, &map, numel(dims)?, fill.as_ref())?
            }
        }
        Op::Add { .. } | Op::Sub | Op::Mul | Op::Div | Op::Relu | Op::Clip { .. } => {
            elementwise(op, xs, out)?
        }
        Op::Cast { to } => {
            let [(x, xt)] = xs else { return None };
            if xt.is_quantized() || out.is_quantized() || *to != out.dtype {
                return None;
            }
            x.data().cast(*to)
        }
        _ => return None,
    };
    Tensor::new(out.shape.clone(), data).ok()
}

fn numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// Channel of flat element `i` of a tensor of `dims` under `p` (0 per tensor); `None`
/// when the params do not fit the shape.
pub(crate) fn channel(i: usize, dims: &[usize], p: &QuantParams) -> Option<usize> {
    let Some(a) = p.axis else {
        return (p.len() == 1).then_some(0);
    };
    let d = *dims.get(a)?;
    if d != p.len() || d == 0 {
        return None;
    }
    let stride = numel(dims.get(a + 1..)?)?;
    Some((i / stride.max(1)) % d)
}

/// `quantize` of real values into a tensor of `dims` with params `p`, per element.
fn quantize_data(v: &[f32], dims: &[usize], p: &QuantParams) -> Option<TensorData> {
    let q = v
        .iter()
        .enumerate()
        .map(|(i, &x)| Some(p.quantize(x, channel(i, dims, p)?)))
        .collect::<Option<Vec<i64>>>()?;
    from_i64(DType::from_qtype(p.storage), q)
}

/// Evaluate `quantize` of a float constant at compile time, with the params of `ty`
/// (the quantize's result type). `None` when the tensor is not float or the params do
/// not fit its shape.
pub(crate) fn quantize_tensor(t: &Tensor, ty: &TensorType) -> Option<Tensor> {
    if !t.dtype().is_float() || t.shape() != &ty.shape {
        return None;
    }
    let p = ty.quant.as_ref()?;
    let d = quantize_data(&t.to_f32_vec(), t.dims(), p)?;
    Tensor::new(t.shape().clone(), d).ok()
}

/// The real values of a constant: dequantized when quantized, the elements of a raw
/// f32 tensor, `None` for other raw dtypes (the interpreter computes in f32).
pub(crate) fn real_values(t: &Tensor, ty: &TensorType) -> Option<Vec<f32>> {
    match (&ty.quant, t.data()) {
        (Some(p), d) => {
            let q = ints(d)?;
            q.iter()
                .enumerate()
                .map(|(i, &x)| Some(p.dequantize(x, channel(i, t.dims(), p)?)))
                .collect()
        }
        (None, TensorData::F32(v)) => Some(v.clone()),
        (None, _) => None,
    }
}

/// Stored integers of a quantized tensor (the storage types are at most 32 bits, so
/// i64 is exact).
fn ints(d: &TensorData) -> Option<Vec<i64>> {
    Some(match d {
        TensorData::I8(v) => v.iter().map(|&x| i64::from(x)).collect(),
        TensorData::U8(v) => v.iter().map(|&x| i64::from(x)).collect(),
        TensorData::I16(v) => v.iter().map(|&x| i64::from(x)).collect(),
        TensorData::U16(v) => v.iter().map(|&x| i64::from(x)).collect(),
        TensorData::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
        _ => return None,
    })
}

/// Integers (already in range of `dtype`) into storage.
pub(crate) fn from_i64(dtype: DType, q: Vec<i64>) -> Option<TensorData> {
    Some(match dtype {
        DType::I8 => TensorData::I8(q.into_iter().map(|x| x as i8).collect()),
        DType::U8 => TensorData::U8(q.into_iter().map(|x| x as u8).collect()),
        DType::I16 => TensorData::I16(q.into_iter().map(|x| x as i16).collect()),
        DType::U16 => TensorData::U16(q.into_iter().map(|x| x as u16).collect()),
        DType::I32 => TensorData::I32(q.into_iter().map(|x| x as i32).collect()),
        _ => return None,
    })
}

/// Real (f32) results into the result type: quantized with its params, or raw f32.
fn to_type(v: Vec<f32>, dims: &[usize], out: &TensorType) -> Option<TensorData> {
    match &out.quant {
        Some(p) => quantize_data(&v, dims, p),
        None if out.dtype == DType::F32 => Some(TensorData::F32(v)),
        None => None,
    }
}

/// Where element `o` of a movement result comes from.
enum Src {
    /// Operand `k`, flat index `i`.
    Elem(usize, usize),
    /// The pad value.
    Fill,
}

/// The index map of a data movement op, from operand shapes to the stored result shape.
enum MoveMap {
    /// Row-major order unchanged (reshape, flatten, squeeze, unsqueeze, identity).
    Same,
    Transpose {
        out: Vec<usize>,
        /// Operand stride of each result axis.
        strides: Vec<usize>,
    },
    Concat {
        /// Result extent of the axis, and elements per step of it.
        extent: usize,
        inner: usize,
        /// (offset along the axis, size along the axis) per operand.
        parts: Vec<(usize, usize)>,
    },
    Pad {
        out: Vec<usize>,
        in_dims: Vec<usize>,
        begins: Vec<i64>,
    },
}

impl MoveMap {
    /// The map, checking that the operand shapes lead to `out`.
    fn new(op: &Op, ins: &[&[usize]], out: &[usize]) -> Option<MoveMap> {
        match op {
            Op::Reshape { .. }
            | Op::Flatten { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Identity => {
                let [x] = ins else { return None };
                (numel(x)? == numel(out)?).then_some(MoveMap::Same)
            }
            Op::Transpose { perm } => {
                let [x] = ins else { return None };
                let perm: Vec<usize> = if perm.is_empty() {
                    (0..x.len()).rev().collect()
                } else {
                    perm.clone()
                };
                if perm.len() != x.len() || out.len() != x.len() {
                    return None;
                }
                let in_strides = strides(x);
                let mut seen = vec![false; x.len()];
                let mut s = Vec::with_capacity(perm.len());
                for (k, &p) in perm.iter().enumerate() {
                    let slot = seen.get_mut(p)?;
                    if *slot || x.get(p)? != out.get(k)? {
                        return None;
                    }
                    *slot = true;
                    s.push(*in_strides.get(p)?);
                }
                Some(MoveMap::Transpose {
                    out: out.to_vec(),
                    strides: s,
                })
            }
            Op::Concat { axis } => {
                let a = *axis;
                let extent = *out.get(a)?;
                let mut parts = Vec::with_capacity(ins.len());
                let mut off = 0usize;
                for x in ins {
                    if x.len() != out.len() {
                        return None;
                    }
                    for (d, (&xd, &od)) in x.iter().zip(out).enumerate() {
                        if d != a && xd != od {
                            return None;
                        }
                    }
                    let size = *x.get(a)?;
                    parts.push((off, size));
                    off = off.checked_add(size)?;
                }
                if off != extent || ins.is_empty() {
                    return None;
                }
                Some(MoveMap::Concat {
                    extent,
                    inner: numel(out.get(a + 1..)?)?,
                    parts,
                })
            }
            Op::Pad { pads, .. } => {
                let [x] = ins else { return None };
                let r = x.len();
                if pads.len() != 2 * r || out.len() != r {
                    return None;
                }
                for d in 0..r {
                    let want = i64::try_from(x[d])
                        .ok()?
                        .checked_add(pads[d])?
                        .checked_add(pads[r + d])?;
                    if i64::try_from(out[d]).ok()? != want {
                        return None;
                    }
                }
                Some(MoveMap::Pad {
                    out: out.to_vec(),
                    in_dims: x.to_vec(),
                    begins: pads[..r].to_vec(),
                })
            }
            _ => None,
        }
    }

    fn src(&self, o: usize) -> Src {
        match self {
            MoveMap::Same => Src::Elem(0, o),
            MoveMap::Transpose { out, strides } => {
                let (mut rest, mut i) = (o, 0usize);
                for (&d, &s) in out.iter().zip(strides).rev() {
                    i += (rest % d.max(1)) * s;
                    rest /= d.max(1);
                }
                Src::Elem(0, i)
            }
            MoveMap::Concat {
                extent,
                inner,
                parts,
            } => {
                let (inner, extent) = ((*inner).max(1), (*extent).max(1));
                let (r, a, outer) = (o % inner, (o / inner) % extent, o / inner / extent);
                for (k, &(off, size)) in parts.iter().enumerate() {
                    if a >= off && a < off + size {
                        return Src::Elem(k, (outer * size + (a - off)) * inner + r);
                    }
                }
                Src::Fill
            }
            MoveMap::Pad {
                out,
                in_dims,
                begins,
            } => {
                let (mut rest, mut i, mut stride) = (o, 0usize, 1usize);
                for ((&od, &xd), &b) in out.iter().zip(in_dims).zip(begins).rev() {
                    // i128: no pad value a model writes can overflow this.
                    let c = (rest % od.max(1)) as i128 - i128::from(b);
                    rest /= od.max(1);
                    if c < 0 || c >= xd as i128 {
                        return Src::Fill;
                    }
                    i += c as usize * stride;
                    stride *= xd;
                }
                Src::Elem(0, i)
            }
        }
    }
}

fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1].saturating_mul(dims[i + 1]);
    }
    s
}

/// Move f32 values; `None` if an index is out of range or a fill is needed but absent.
fn gather(xs: &[Vec<f32>], map: &MoveMap, n: usize, fill: Option<f32>) -> Option<Vec<f32>> {
    (0..n)
        .map(|o| match map.src(o) {
            Src::Elem(k, i) => xs.get(k)?.get(i).copied(),
            Src::Fill => fill,
        })
        .collect()
}

/// Move raw elements of any dtype (all operands and the fill of one variant).
fn gather_raw(
    xs: &[&TensorData],
    map: &MoveMap,
    n: usize,
    fill: Option<&TensorData>,
) -> Option<TensorData> {
    macro_rules! arms {
        ($($var:ident),*) => {
            match xs.first()? {
                $(TensorData::$var(_) => {
                    let vs = xs
                        .iter()
                        .map(|d| match d {
                            TensorData::$var(v) => Some(v),
                            _ => None,
                        })
                        .collect::<Option<Vec<_>>>()?;
                    let f = match fill {
                        Some(TensorData::$var(f)) => f.first().copied(),
                        Some(_) => return None,
                        None => None,
                    };
                    let out = (0..n)
                        .map(|o| match map.src(o) {
                            Src::Elem(k, i) => vs.get(k)?.get(i).copied(),
                            Src::Fill => f,
                        })
                        .collect::<Option<Vec<_>>>()?;
                    TensorData::$var(out)
                })*
            }
        };
    }
    Some(arms!(
        F32, F64, F16, BF16, I8, U8, I16, U16, I32, U32, I64, U64, Bool
    ))
}

/// A raw pad value as one element of `dtype` (the shared `TensorData::scalar`).
fn raw_fill(v: f64, dtype: DType) -> Option<TensorData> {
    Some(TensorData::scalar(v, dtype))
}

/// Flat index into an operand of `dims` broadcast (numpy rules) to the result `out`.
fn broadcast_index(o: usize, out: &[usize], dims: &[usize]) -> Option<usize> {
    let lead = out.len().checked_sub(dims.len())?;
    let (mut rest, mut i, mut stride) = (o, 0usize, 1usize);
    for k in (0..out.len()).rev() {
        let od = out[k].max(1);
        let c = rest % od;
        rest /= od;
        if k < lead {
            continue;
        }
        let d = dims[k - lead];
        if d != 1 {
            if d != out[k] {
                return None;
            }
            i += c * stride;
        }
        stride *= d;
    }
    Some(i)
}

/// The elements of an integer (or bool) tensor, exactly; `None` for floats.
fn int_values(d: &TensorData) -> Option<Vec<i128>> {
    match d {
        TensorData::U64(v) => Some(v.iter().map(|&x| i128::from(x)).collect()),
        d if d.dtype().is_int() || d.dtype() == DType::Bool => {
            Some((0..d.len()).map(|i| i128::from(d.get_i64(i))).collect())
        }
        _ => None,
    }
}

/// Elementwise arithmetic, broadcast to the result shape.
fn elementwise(op: &Op, xs: &[(&Tensor, &TensorType)], out: &TensorType) -> Option<TensorData> {
    let dims = out.shape.dims();
    let n = numel(dims)?;
    let arity = match op {
        Op::Relu | Op::Clip { .. } => 1,
        _ => 2,
    };
    if xs.len() != arity {
        return None;
    }
    let idx = |k: usize, o: usize| broadcast_index(o, dims, xs.get(k)?.0.dims());
    let raw_int = xs
        .iter()
        .all(|(t, ty)| !ty.is_quantized() && t.dtype() == out.dtype)
        && !out.is_quantized()
        && out.dtype.is_int();
    if raw_int {
        let vals: Vec<Vec<i128>> = xs
            .iter()
            .map(|(t, _)| int_values(t.data()))
            .collect::<Option<_>>()?;
        let (lo, hi) = int_range(out.dtype)?;
        let wrap = |x: i128| wrap_to(x, out.dtype);
        // A real bound as an integer of the dtype: truncated, saturated to the range.
        let bound = |v: f64| (v as i128).clamp(lo, hi);
        let mut r = Vec::with_capacity(n);
        for o in 0..n {
            let a = *vals.first()?.get(idx(0, o)?)?;
            let y = match op {
                Op::Add { act } => {
                    let b = *vals.get(1)?.get(idx(1, o)?)?;
                    // The activation sees the wrapped sum, as a kernel epilogue would.
                    let s = wrap(a.wrapping_add(b));
                    match act {
                        Activation::None => s,
                        Activation::Relu => s.max(0),
                        Activation::Clip { min, max } => {
                            s.max(bound(f64::from(*min))).min(bound(f64::from(*max)))
                        }
                    }
                }
                Op::Sub => a.wrapping_sub(*vals.get(1)?.get(idx(1, o)?)?),
                Op::Mul => a.wrapping_mul(*vals.get(1)?.get(idx(1, o)?)?),
                Op::Div => a.checked_div(*vals.get(1)?.get(idx(1, o)?)?)?,
                Op::Relu => a.max(0),
                Op::Clip { min, max } => {
                    let l = min.map_or(i128::MIN, bound);
                    let h = max.map_or(i128::MAX, bound);
                    a.max(l).min(h)
                }
                _ => return None,
            };
            r.push(wrap(y));
        }
        return narrow(out.dtype, r);
    }
    // The interpreter's generic form: real f32 operands, f32 arithmetic, then the
    // result type (quantized or raw f32).
    let reals = xs
        .iter()
        .map(|(t, ty)| real_values(t, ty))
        .collect::<Option<Vec<_>>>()?;
    let mut r = Vec::with_capacity(n);
    for o in 0..n {
        let a = *reals.first()?.get(idx(0, o)?)?;
        let b = || -> Option<f32> { reals.get(1)?.get(idx(1, o)?).copied() };
        let y = match op {
            Op::Add { act } => act_f32(*act, a + b()?),
            Op::Sub => a - b()?,
            Op::Mul => a * b()?,
            Op::Div => a / b()?,
            Op::Relu => relu_f32(a),
            Op::Clip { min, max } => clip_f32(
                a,
                min.map_or(f32::NEG_INFINITY, |v| v as f32),
                max.map_or(f32::INFINITY, |v| v as f32),
            ),
            _ => return None,
        };
        r.push(y);
    }
    to_type(r, dims, out)
}

fn relu_f32(x: f32) -> f32 {
    // -0.0 and NaN pass through, like the interpreter's kernel.
    if x < 0.0 {
        0.0
    } else {
        x
    }
}

/// numpy `clip`: `min(max(x, lo), hi)`, NaN passes through.
fn clip_f32(x: f32, lo: f32, hi: f32) -> f32 {
    let y = if x < lo { lo } else { x };
    if y > hi {
        hi
    } else {
        y
    }
}

fn act_f32(a: Activation, x: f32) -> f32 {
    match a {
        Activation::None => x,
        Activation::Relu => relu_f32(x),
        Activation::Clip { min, max } => clip_f32(x, min, max),
    }
}

fn int_range(dtype: DType) -> Option<(i128, i128)> {
    Some(match dtype {
        DType::I8 => (i128::from(i8::MIN), i128::from(i8::MAX)),
        DType::U8 => (0, i128::from(u8::MAX)),
        DType::I16 => (i128::from(i16::MIN), i128::from(i16::MAX)),
        DType::U16 => (0, i128::from(u16::MAX)),
        DType::I32 => (i128::from(i32::MIN), i128::from(i32::MAX)),
        DType::U32 => (0, i128::from(u32::MAX)),
        DType::I64 => (i128::from(i64::MIN), i128::from(i64::MAX)),
        DType::U64 => (0, i128::from(u64::MAX)),
        _ => return None,
    })
}

/// `x` wrapped into `dtype`'s range (two's complement), widened back.
fn wrap_to(x: i128, dtype: DType) -> i128 {
    match dtype {
        DType::I8 => i128::from(x as i8),
        DType::U8 => i128::from(x as u8),
        DType::I16 => i128::from(x as i16),
        DType::U16 => i128::from(x as u16),
        DType::I32 => i128::from(x as i32),
        DType::U32 => i128::from(x as u32),
        DType::I64 => i128::from(x as i64),
        DType::U64 => i128::from(x as u64),
        _ => x,
    }
}

fn narrow(dtype: DType, v: Vec<i128>) -> Option<TensorData> {
    Some(match dtype {
        DType::I8 => TensorData::I8(v.into_iter().map(|x| x as i8).collect()),
        DType::U8 => TensorData::U8(v.into_iter().map(|x| x as u8).collect()),
        DType::I16 => TensorData::I16(v.into_iter().map(|x| x as i16).collect()),
        DType::U16 => TensorData::U16(v.into_iter().map(|x| x as u16).collect()),
        DType::I32 => TensorData::I32(v.into_iter().map(|x| x as i32).collect()),
        DType::U32 => TensorData::U32(v.into_iter().map(|x| x as u32).collect()),
        DType::I64 => TensorData::I64(v.into_iter().map(|x| x as i64).collect()),
        DType::U64 => TensorData::U64(v.into_iter().map(|x| x as u64).collect()),
        _ => return None,
    })
}

/// The constant tensor and id behind a value, if it is a constant.
pub(crate) fn const_def(g: &Graph, v: ValueId) -> Option<(qc_ir::ConstId, &Arc<Tensor>)> {
    match g.values.get(v.index())?.def {
        ValueDef::Const(c) => Some((c, g.consts.get(c.index())?)),
        _ => None,
    }
}
