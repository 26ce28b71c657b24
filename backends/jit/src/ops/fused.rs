//! The `float` contract's fused 8-bit add, softmax and global average
//! (`qc_qmath::FusedAdd`, `FusedSoftmax`, `FusedMean`; `qc_ir::fused` decides which
//! nodes).
//!
//! **Exactness.** The generated code performs `FusedAdd::apply` / `FusedSoftmax::row`
//! operation for operation: codes convert to f32 exactly; `fma` is Cranelift's fused
//! multiply-add (one rounding, as `f32::mul_add`); `nearest` rounds half to even; the
//! out-of-range conversions are selected explicitly where Rust's `as` would saturate.
//! The softmax sum runs in row order, as `FusedSoftmax::row`.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, Value};
use qc_qmath::{FusedAdd, FusedMean, FusedSoftmax, QType};

use crate::emit::{mf, qsize, E, F32, I32, I64};
use crate::lower::{bcast_strides, collapse, nest, numel, strides, Cx, Ptrs};
use crate::Result;

fn q8(cx: &Cx, i: Option<usize>) -> Result<QType> {
    let ty = match i {
        Some(i) => cx.in_ty(i)?,
        None => cx.out_ty(0)?,
    };
    match ty.quant.as_ref().map(|p| p.storage) {
        Some(q @ (QType::U8 | QType::I8)) => Ok(q),
        _ => Err(cx.unsupported("the fused add/softmax needs 8-bit quantized types")),
    }
}

/// Operand `i`'s codes: the run-time buffer, or a constant's codes in the pool.
fn codes(cx: &mut Cx, e: &mut E, p: &Ptrs, i: usize) -> Result<Value> {
    match cx.const_in(i).cloned() {
        Some(t) => {
            let bytes = t.data().to_le_bytes();
            let addr = cx.pool.add_slice(&bytes);
            Ok(e.ic(addr as i64))
        }
        None => p
            .ins
            .get(i)
            .copied()
            .ok_or_else(|| cx.unsupported(format!("missing operand {i}"))),
    }
}

/// `FusedAdd::finish` on an f32 `t`: half to even, `i32::MIN` when NaN or out of
/// range, then the clamp.
fn finish_add(e: &mut E, f: &FusedAdd, t: Value) -> Value {
    let r = e.b.ins().nearest(t);
    let i = i32_or_min(e, r);
    let lo = e.i32c(f.lo);
    let hi = e.i32c(f.hi);
    let i = e.b.ins().smax(i, lo);
    e.b.ins().smin(i, hi)
}

/// A rounded f32 to i32 as the x86 conversion: `i32::MIN` when NaN or out of range.
fn i32_or_min(e: &mut E, r: Value) -> Value {
    let lo = e.f32c(-2_147_483_648.0);
    let hi = e.f32c(2_147_483_648.0);
    let ge = e.b.ins().fcmp(FloatCC::GreaterThanOrEqual, r, lo);
    let lt = e.b.ins().fcmp(FloatCC::LessThan, r, hi);
    let ok = e.b.ins().band(ge, lt);
    let i = e.b.ins().fcvt_to_sint_sat(I32, r);
    let min = e.i32c(i32::MIN);
    e.b.ins().select(ok, i, min)
}

/// An 8-bit quantized add under the `float` contract.
pub(crate) fn add(cx: &mut Cx, e: &mut E, p: &Ptrs, f: &FusedAdd) -> Result<usize> {
    cx.arity(2, 2)?;
    let (qa, qb, qy) = (q8(cx, Some(0))?, q8(cx, Some(1))?, q8(cx, None)?);
    let out = cx.out_ty(0)?.shape.dims().to_vec();
    let (da, db) = (
        cx.in_ty(0)?.shape.dims().to_vec(),
        cx.in_ty(1)?.shape.dims().to_vec(),
    );
    let (a, b) = (codes(cx, e, p, 0)?, codes(cx, e, p, 1)?);
    let dst = p.outs[0];
    let n = numel(&out);
    if da == out && db == out && !f.swapped {
        if let Some(k) = crate::kernels::qbinary(cx.opts.kernels) {
            let signed = qy == QType::I8;
            let prm = crate::kernels::qbinary::fused_add_params(f, signed);
            let ptab = cx.pool.add_slice(&prm);
            let args = [e.ic(ptab as i64), a, b, dst, e.ic(n as i64)];
            e.call_addr(k, &args);
            return Ok(0);
        }
        add_vec(e, f, (a, b, dst), qy, n / 16)?;
        let done = (n / 16) * 16;
        if done == n {
            return Ok(0);
        }
        let start = e.ic(done as i64);
        return add_nest(
            e,
            f,
            (a, b, dst),
            (qa, qb, qy),
            &[n - done],
            &vec![vec![1]; 3],
            start,
        );
    }
    let sa = bcast_strides(&da, &out)
        .ok_or_else(|| cx.unsupported("operand does not broadcast to the result"))?;
    let sb = bcast_strides(&db, &out)
        .ok_or_else(|| cx.unsupported("operand does not broadcast to the result"))?;
    let (dims, sts) = collapse(&out, &[sa, sb, strides(&out)]);
    let start = e.ic(0);
    add_nest(e, f, (a, b, dst), (qa, qb, qy), &dims, &sts, start)
}

fn add_nest(
    e: &mut E,
    f: &FusedAdd,
    (a, b, dst): (Value, Value, Value),
    (qa, qb, qy): (QType, QType, QType),
    dims: &[usize],
    sts: &[Vec<i64>],
    start: Value,
) -> Result<usize> {
    nest(e, dims, sts, vec![start; 3], &mut |e, idx| {
        let pa = e.addr(a, idx[0], qsize(qa), 0);
        let pb = e.addr(b, idx[1], qsize(qb), 0);
        let ca = e.load_q(qa, pa, 0);
        let cb = e.load_q(qb, pb, 0);
        let (x, y) = if f.swapped { (cb, ca) } else { (ca, cb) };
        let x = e.b.ins().fcvt_from_sint(F32, x);
        let y = e.b.ins().fcvt_from_sint(F32, y);
        let (xr, yr, fixed) = (e.f32c(f.x_ratio), e.f32c(f.y_ratio), e.f32c(f.fixed));
        let inner = e.b.ins().fma(y, yr, fixed);
        let t = e.b.ins().fma(x, xr, inner);
        let c = finish_add(e, f, t);
        let py = e.addr(dst, idx[2], qsize(qy), 0);
        e.store_q(qy, c, py, 0);
        Ok(())
    })?;
    Ok(0)
}

/// `steps` vector steps of 16 same-shape elements (operand order, not swapped).
fn add_vec(
    e: &mut E,
    f: &FusedAdd,
    (a, b, dst): (Value, Value, Value),
    q: QType,
    steps: usize,
) -> Result<()> {
    use types::{F32X4, I32X4, I8X16};
    e.for_n(steps, |e, ci| {
        let off = e.muli(ci, 16);
        let mut lanes: Vec<[Value; 4]> = Vec::with_capacity(2);
        for ptr in [a, b] {
            let at = e.add(ptr, off);
            let v = e.b.ins().load(I8X16, mf(), at, 0);
            let (lo, hi) = if q == QType::U8 {
                (e.b.ins().uwiden_low(v), e.b.ins().uwiden_high(v))
            } else {
                (e.b.ins().swiden_low(v), e.b.ins().swiden_high(v))
            };
            let mut l = [v; 4];
            for (j, h) in [lo, hi].into_iter().enumerate() {
                let w0 = e.b.ins().swiden_low(h);
                let w1 = e.b.ins().swiden_high(h);
                l[2 * j] = e.b.ins().fcvt_from_sint(F32X4, w0);
                l[2 * j + 1] = e.b.ins().fcvt_from_sint(F32X4, w1);
            }
            lanes.push(l);
        }
        let splat = |e: &mut E, x: f32| {
            let c = e.f32c(x);
            e.b.ins().splat(F32X4, c)
        };
        let (xr, yr, fixed) = (splat(e, f.x_ratio), splat(e, f.y_ratio), splat(e, f.fixed));
        let (flo, fhi) = (splat(e, -2_147_483_648.0), splat(e, 2_147_483_648.0));
        let min = e.i32c(i32::MIN);
        let minv = e.b.ins().splat(I32X4, min);
        let lo = e.i32c(f.lo);
        let lov = e.b.ins().splat(I32X4, lo);
        let hi = e.i32c(f.hi);
        let hiv = e.b.ins().splat(I32X4, hi);
        let mut r = [minv; 4];
        for (j, o) in r.iter_mut().enumerate() {
            let inner = e.b.ins().fma(lanes[1][j], yr, fixed);
            let t = e.b.ins().fma(lanes[0][j], xr, inner);
            let t = e.b.ins().nearest(t);
            let ge = e.b.ins().fcmp(FloatCC::GreaterThanOrEqual, t, flo);
            let lt = e.b.ins().fcmp(FloatCC::LessThan, t, fhi);
            let ok = e.b.ins().band(ge, lt);
            let i = e.b.ins().fcvt_to_sint_sat(I32X4, t);
            let i = e.b.ins().bitselect(ok, i, minv);
            let i = e.b.ins().smax(i, lov);
            *o = e.b.ins().smin(i, hiv);
        }
        let h0 = e.b.ins().snarrow(r[0], r[1]);
        let h1 = e.b.ins().snarrow(r[2], r[3]);
        let v = if q == QType::U8 {
            e.b.ins().unarrow(h0, h1)
        } else {
            e.b.ins().snarrow(h0, h1)
        };
        let at = e.add(dst, off);
        e.b.ins().store(mf(), v, at, 0);
        Ok(())
    })
}

/// An 8-bit quantized softmax under the `float` contract.
pub(crate) fn softmax(
    cx: &mut Cx,
    e: &mut E,
    p: &Ptrs,
    axis: usize,
    s: &FusedSoftmax,
) -> Result<usize> {
    cx.arity(1, 1)?;
    let q = q8(cx, Some(0))?;
    let d = cx.in_ty(0)?.shape.dims().to_vec();
    if axis >= d.len() {
        return Err(cx.unsupported("axis out of range"));
    }
    let (outer, dim, inner) = (numel(&d[..axis]), d[axis], numel(&d[axis + 1..]));
    let table = cx.pool.add_slice(&s.exp);
    let (src, dst) = (codes(cx, e, p, 0)?, p.outs[0]);
    let tab = e.ic(table as i64);
    let qs = qsize(q);
    e.for_n(outer, |e, o| {
        e.for_n(inner, |e, i| {
            let b = e.muli(o, (dim * inner) as i64);
            let b = e.add(b, i);
            let at = |e: &mut E, k: Value| {
                let j = e.muli(k, inner as i64);
                e.add(j, b)
            };
            let m0 = e.i32c(i32::MIN);
            let mx = e.var(I32, m0);
            e.for_n(dim, |e, k| {
                let j = at(e, k);
                let a = e.addr(src, j, qs, 0);
                let v = e.load_q(q, a, 0);
                let m = e.b.use_var(mx);
                let n = e.b.ins().smax(m, v);
                e.b.def_var(mx, n);
                Ok(())
            })?;
            let m = e.b.use_var(mx);
            // The table entry of a code: exp[m - x] (0 ≤ m - x ≤ 255 for 8-bit codes).
            let entry = |e: &mut E, k: Value| {
                let j = at(e, k);
                let a = e.addr(src, j, qs, 0);
                let v = e.load_q(q, a, 0);
                let dlt = e.b.ins().isub(m, v);
                let dlt = e.b.ins().uextend(I64, dlt);
                let ta = e.addr(tab, dlt, 4, 0);
                e.load_f32(ta, 0)
            };
            let z = e.f32c(0.0);
            let sum = e.var(F32, z);
            e.for_n(dim, |e, k| {
                let t = entry(e, k);
                let s0 = e.b.use_var(sum);
                let s1 = e.b.ins().fadd(s0, t);
                e.b.def_var(sum, s1);
                Ok(())
            })?;
            let total = e.b.use_var(sum);
            e.for_n(dim, |e, k| {
                let t = entry(e, k);
                let yf = e.f32c(s.y_factor);
                let v = e.b.ins().fmul(t, yf);
                let v = e.b.ins().fdiv(v, total);
                let r = e.b.ins().nearest(v);
                let c = softmax_code(e, s, r);
                let j = at(e, k);
                let a = e.addr(dst, j, qs, 0);
                e.store_q(q, c, a, 0);
                Ok(())
            })
        })
    })?;
    Ok(0)
}

/// `FusedSoftmax::code` on a rounded `r`.
fn softmax_code(e: &mut E, s: &FusedSoftmax, r: Value) -> Value {
    let zy = e.i32c(s.y_zero_point);
    if s.q == QType::U8 {
        // Through i64: in [-2^63, 2^63) the low 32 bits, else (NaN, ±inf, huge) 0.
        let lo = e.f32c(-9_223_372_036_854_775_808.0);
        let hi = e.f32c(9_223_372_036_854_775_808.0);
        let ge = e.b.ins().fcmp(FloatCC::GreaterThanOrEqual, r, lo);
        let lt = e.b.ins().fcmp(FloatCC::LessThan, r, hi);
        let ok = e.b.ins().band(ge, lt);
        let w = e.b.ins().fcvt_to_sint_sat(I64, r);
        let w = e.b.ins().ireduce(I32, w);
        let zero = e.i32c(0);
        let u = e.b.ins().select(ok, w, zero);
        let u = e.b.ins().iadd(u, zy);
        let cap = e.i32c(255);
        let over = e.b.ins().icmp(IntCC::UnsignedGreaterThan, u, cap);
        e.b.ins().select(over, cap, u)
    } else {
        let i = i32_or_min(e, r);
        let i = e.b.ins().iadd(i, zy);
        let lo = e.i32c(-128);
        let hi = e.i32c(127);
        let i = e.b.ins().smax(i, lo);
        e.b.ins().smin(i, hi)
    }
}

/// A whole-image 8-bit average under the `float` contract: per channel the i32 sum of
/// the codes, then `FusedMean::apply` (`fmax`/`fmin` see no NaN: the product of a
/// finite sum and a finite scale).
pub(crate) fn mean(cx: &mut Cx, e: &mut E, p: &Ptrs, f: &FusedMean) -> Result<usize> {
    cx.arity(1, 1)?;
    let q = q8(cx, Some(0))?;
    let d = cx.in_ty(0)?.shape.dims().to_vec();
    if d.len() < 2 {
        return Err(cx.unsupported("rank < 2"));
    }
    let (nc, n) = (d[0] * d[1], numel(&d[2..]));
    let (src, dst) = (codes(cx, e, p, 0)?, p.outs[0]);
    let qs = qsize(q);
    let (blocks, tail) = (n / 16, n % 16);
    e.for_n(nc, |e, c| {
        let base = e.muli(c, n as i64);
        // 16 codes per step into four i32 lanes (|lane| ≤ 2 · 255 · n / 16 + 255: no
        // overflow for n < 2^24), then the lanes and the tail added to the bias.
        let z = e.i32c(0);
        let zv = e.b.ins().splat(types::I32X4, z);
        let lanes = e.var(types::I32X4, zv);
        e.for_n(blocks, |e, k| {
            let off = e.muli(k, 16);
            let j = e.add(base, off);
            let a = e.add(src, j);
            let v = e.b.ins().load(types::I8X16, mf(), a, 0);
            let (lo, hi) = if q == QType::U8 {
                (e.b.ins().uwiden_low(v), e.b.ins().uwiden_high(v))
            } else {
                (e.b.ins().swiden_low(v), e.b.ins().swiden_high(v))
            };
            let s16 = e.b.ins().iadd(lo, hi);
            let w0 = e.b.ins().swiden_low(s16);
            let w1 = e.b.ins().swiden_high(s16);
            let l0 = e.b.use_var(lanes);
            let l1 = e.b.ins().iadd(l0, w0);
            let l2 = e.b.ins().iadd(l1, w1);
            e.b.def_var(lanes, l2);
            Ok(())
        })?;
        let l = e.b.use_var(lanes);
        let mut total = e.i32c(f.bias);
        for lane in 0..4u8 {
            let x = e.b.ins().extractlane(l, lane);
            total = e.b.ins().iadd(total, x);
        }
        let acc = e.var(I32, total);
        let tail_base = e.addi(base, (blocks * 16) as i64);
        e.for_n(tail, |e, i| {
            let j = e.add(tail_base, i);
            let a = e.addr(src, j, qs, 0);
            let v = e.load_q(q, a, 0);
            let s0 = e.b.use_var(acc);
            let s1 = e.b.ins().iadd(s0, v);
            e.b.def_var(acc, s1);
            Ok(())
        })?;
        let s = e.b.use_var(acc);
        let v = e.b.ins().fcvt_from_sint(F32, s);
        let sc = e.f32c(f.scale);
        let v = e.b.ins().fmul(v, sc);
        let lo = e.f32c(f.lo);
        let hi = e.f32c(f.hi);
        let v = e.b.ins().fmax(v, lo);
        let v = e.b.ins().fmin(v, hi);
        let r = e.b.ins().nearest(v);
        let r = e.b.ins().fcvt_to_sint_sat(I32, r);
        let r = e.b.ins().iadd_imm_s(r, i64::from(f.y_zero_point));
        let a = e.addr(dst, c, qs, 0);
        e.store_q(q, r, a, 0);
        Ok(())
    })?;
    Ok(0)
}
