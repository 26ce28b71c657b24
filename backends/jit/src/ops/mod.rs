//! Lowerings on raw (unquantized) numeric tensors: integer elementwise arithmetic,
//! `cast`, and the ONNX integer ops (`matmul_integer`, `conv_integer`).
//!
//! **Invariants.**
//! - Integer elements are widened to i64 on load (sign- or zero-extended by dtype)
//!   and narrowed by truncation on store, so `add`/`sub`/`mul` wrap exactly like the
//!   interpreter's i128 wrapping arithmetic narrowed to the result dtype.
//! - `cast` follows `qc_ir::cast`: float → integer truncates toward zero and
//!   saturates (NaN → 0), integer → integer wraps, to bool is "nonzero (NaN
//!   included)". f16/bf16 are not lowered (`Unsupported`).
//! - The integer ops accumulate `(x - zx) * (w - zw)` in wrapping i32, as
//!   `qc-interp`'s `qops` does; zero-point operands may be run-time values.

pub(crate) mod conv_transpose;
pub(crate) mod fused;
pub(crate) mod linear_rt;
pub(crate) mod reduce;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, Value};
use qc_ir::{ConvAttrs, DType, Op};

use crate::emit::{mf, E, F32, F64, I32, I64};
use crate::lower::{bcast_strides, collapse, nest, numel, strides, Cx, Ptrs};
use crate::Result;

/// Is `d` a raw integer dtype these lowerings handle (bool excluded)?
pub(crate) fn is_int(d: DType) -> bool {
    matches!(
        d,
        DType::I8
            | DType::U8
            | DType::I16
            | DType::U16
            | DType::I32
            | DType::U32
            | DType::I64
            | DType::U64
    )
}

/// Load element `idx` of an integer (or bool) dtype as i64.
pub(crate) fn load_int(e: &mut E, d: DType, base: Value, idx: Value) -> Value {
    let a = e.addr(base, idx, d.size() as i64, 0);
    let ins = e.b.ins();
    match d {
        DType::I8 => ins.sload8(I64, mf(), a, 0),
        DType::U8 | DType::Bool => ins.uload8(I64, mf(), a, 0),
        DType::I16 => ins.sload16(I64, mf(), a, 0),
        DType::U16 => ins.uload16(I64, mf(), a, 0),
        DType::I32 => ins.sload32(mf(), a, 0),
        DType::U32 => ins.uload32(mf(), a, 0),
        _ => ins.load(I64, mf(), a, 0),
    }
}

/// Store the low bits of an i64 as element `idx` of an integer (or bool) dtype.
pub(crate) fn store_int(e: &mut E, d: DType, v: Value, base: Value, idx: Value) {
    let a = e.addr(base, idx, d.size() as i64, 0);
    let ins = e.b.ins();
    match d.size() {
        1 => ins.istore8(mf(), v, a, 0),
        2 => ins.istore16(mf(), v, a, 0),
        4 => ins.istore32(mf(), v, a, 0),
        _ => ins.store(mf(), v, a, 0),
    };
}

/// Raw integer add / sub / mul / sum with broadcasting, wrapping in the result dtype.
pub(crate) fn int_nary(cx: &mut Cx, e: &mut E, p: &Ptrs) -> Result<usize> {
    let op = cx.node.op.clone();
    match &op {
        Op::Add {
            act: qc_ir::Activation::None,
        }
        | Op::Sub
        | Op::Mul
        | Op::Div => cx.arity(2, 2)?,
        Op::Sum => cx.arity(1, usize::MAX)?,
        _ => {
            return Err(cx.unsupported(format!(
                "{} on raw integer tensors is not lowered",
                op.name()
            )))
        }
    }
    let y = cx.out_ty(0)?.clone();
    let dt = y.dtype;
    let k = cx.node.inputs.len();
    let out = y.shape.dims().to_vec();
    let mut sts = Vec::with_capacity(k + 1);
    for i in 0..k {
        let t = cx.in_ty(i)?;
        if t.dtype != dt || t.is_quantized() {
            return Err(cx.unsupported("integer operands must share the result dtype"));
        }
        let st = bcast_strides(t.shape.dims(), &out)
            .ok_or_else(|| cx.unsupported("operand does not broadcast to the result"))?;
        sts.push(st);
    }
    sts.push(strides(&out));
    let (dims, sts) = collapse(&out, &sts);
    let zero = e.ic(0);
    let dst = p.outs[0];
    let srcs = p.ins.clone();
    nest(e, &dims, &sts, vec![zero; k + 1], &mut |e, idx| {
        let vals: Vec<Value> = srcs
            .iter()
            .zip(idx)
            .map(|(&ptr, &i)| load_int(e, dt, ptr, i))
            .collect();
        let v = match &op {
            Op::Sub => e.b.ins().isub(vals[0], vals[1]),
            Op::Mul => e.b.ins().imul(vals[0], vals[1]),
            Op::Div => int_div(e, dt, vals[0], vals[1]),
            _ => {
                let mut acc = vals[0];
                for &v in &vals[1..] {
                    acc = e.b.ins().iadd(acc, v);
                }
                acc
            }
        };
        store_int(e, dt, v, dst, idx[k]);
        Ok(())
    })?;
    Ok(0)
}

/// The inclusive i64 range of an integer dtype narrower than 64 bits.
fn int_range(d: DType) -> Option<(i64, i64)> {
    Some(match d {
        DType::I8 => (i64::from(i8::MIN), i64::from(i8::MAX)),
        DType::U8 => (0, i64::from(u8::MAX)),
        DType::I16 => (i64::from(i16::MIN), i64::from(i16::MAX)),
        DType::U16 => (0, i64::from(u16::MAX)),
        DType::I32 => (i64::from(i32::MIN), i64::from(i32::MAX)),
        DType::U32 => (0, i64::from(u32::MAX)),
        _ => return None,
    })
}

/// ONNX Cast between f32, f64, the integer dtypes and bool.
pub(crate) fn cast(cx: &mut Cx, e: &mut E, p: &Ptrs, to: DType) -> Result<usize> {
    cx.arity(1, 1)?;
    let x = cx.in_ty(0)?.clone();
    let y = cx.out_ty(0)?.clone();
    if x.is_quantized() || y.is_quantized() {
        return Err(cx.unsupported("cast is defined on raw tensors only"));
    }
    if y.dtype != to {
        return Err(cx.unsupported("result dtype differs from the cast target"));
    }
    let from = x.dtype;
    if matches!(
        (from, to),
        (DType::BF16, DType::F32 | DType::F64) | (DType::F32, DType::BF16)
    ) {
        return cast_bf16(e, p, from, to, numel(y.shape.dims()));
    }
    if matches!(
        (from, to),
        (DType::F16, DType::F32 | DType::F64) | (DType::F32 | DType::F64, DType::F16)
    ) {
        return cast_f16(e, p, from, to, numel(y.shape.dims()));
    }
    for d in [from, to] {
        if matches!(d, DType::F16 | DType::BF16) {
            return Err(cx.unsupported(format!("cast from or to {d} is not lowered")));
        }
    }
    let n = numel(y.shape.dims());
    if from == to {
        e.memcpy(p.outs[0], p.ins[0], n * from.size());
        return Ok(0);
    }
    let (src, dst) = (p.ins[0], p.outs[0]);
    e.for_n(n, |e, i| {
        // Read as f64 (floats) or i64 (integers, bool).
        let (fv, iv) = match from {
            DType::F32 => {
                let a = e.addr(src, i, 4, 0);
                let v = e.b.ins().load(F32, mf(), a, 0);
                (Some(e.b.ins().fpromote(F64, v)), None)
            }
            DType::F64 => {
                let a = e.addr(src, i, 8, 0);
                (Some(e.b.ins().load(F64, mf(), a, 0)), None)
            }
            d => (None, Some(load_int(e, d, src, i))),
        };
        match to {
            DType::F32 | DType::F64 => {
                let ty = if to == DType::F32 { F32 } else { F64 };
                let v = match (fv, iv) {
                    (Some(f), _) if to == DType::F32 => e.b.ins().fdemote(F32, f),
                    (Some(f), _) => f,
                    (None, Some(i)) if from == DType::U64 => e.b.ins().fcvt_from_uint(ty, i),
                    (None, Some(i)) => e.b.ins().fcvt_from_sint(ty, i),
                    (None, None) => e.b.ins().f64const(0.0),
                };
                let a = e.addr(dst, i, to.size() as i64, 0);
                e.b.ins().store(mf(), v, a, 0);
            }
            DType::Bool => {
                let nz = match (fv, iv) {
                    (Some(f), _) => {
                        let z = e.b.ins().f64const(0.0);
                        e.b.ins().fcmp(FloatCC::NotEqual, f, z)
                    }
                    (None, Some(v)) => e.b.ins().icmp_imm_s(IntCC::NotEqual, v, 0),
                    (None, None) => e.b.ins().iconst(types::I8, 0),
                };
                let v = e.b.ins().uextend(I64, nz);
                store_int(e, to, v, dst, i);
            }
            _ => {
                let v = match (fv, iv) {
                    (Some(f), _) => {
                        let w = if to == DType::U64 {
                            e.b.ins().fcvt_to_uint_sat(I64, f)
                        } else {
                            e.b.ins().fcvt_to_sint_sat(I64, f)
                        };
                        // Saturating to i64 then clamping equals saturating to `to`.
                        match int_range(to) {
                            Some((lo, hi)) => e.clamp_i64(w, lo, hi),
                            None => w,
                        }
                    }
                    (None, Some(v)) => v,
                    (None, None) => e.ic(0),
                };
                store_int(e, to, v, dst, i);
            }
        }
        Ok(())
    })?;
    Ok(0)
}

/// Read zero point `j` (or element 0 when the operand has one element) as i32.
fn zero_point(e: &mut E, ptr: Option<(Value, DType, usize)>, j: Value) -> Value {
    match ptr {
        None => e.i32c(0),
        Some((base, d, len)) => {
            let idx = if len == 1 { e.ic(0) } else { j };
            let v = load_int(e, d, base, idx);
            e.b.ins().ireduce(I32, v)
        }
    }
}

/// Optional zero-point operand `i`: (pointer, dtype, length), checked to hold 1 or `n`
/// elements.
fn zp_operand(cx: &Cx, p: &Ptrs, i: usize, n: usize) -> Result<Option<(Value, DType, usize)>> {
    let Some(&ptr) = p.ins.get(i) else {
        return Ok(None);
    };
    let t = cx.in_ty(i)?;
    let len = numel(t.shape.dims());
    if !is_int(t.dtype) || t.is_quantized() {
        return Err(cx.unsupported("zero points must be raw integers"));
    }
    if len != 1 && (len != n || t.shape.dims().len() != 1) {
        return Err(cx.unsupported(format!("zero point of {len} elements for {n}")));
    }
    Ok(Some((ptr, t.dtype, len)))
}

/// ONNX MatMulInteger: i32 result, `a_zp` scalar or per row, `b_zp` scalar or per
/// column. `b` 2-D (shared by every batch of `a`) or of `a`'s rank with the same batch.
pub(crate) fn matmul_integer(cx: &mut Cx, e: &mut E, p: &Ptrs) -> Result<usize> {
    cx.arity(2, 4)?;
    let a = cx.in_ty(0)?.clone();
    let b = cx.in_ty(1)?.clone();
    let y = cx.out_ty(0)?.clone();
    if !is_int(a.dtype) || !is_int(b.dtype) || a.is_quantized() || b.is_quantized() {
        return Err(cx.unsupported("matmul_integer takes raw integer operands"));
    }
    if y.dtype != DType::I32 {
        return Err(cx.unsupported("matmul_integer result must be i32"));
    }
    let (ad, bd) = (a.shape.dims(), b.shape.dims());
    if ad.len() < 2 || bd.len() < 2 {
        return Err(cx.unsupported("1-D matmul_integer operands"));
    }
    let (m, k) = (ad[ad.len() - 2], ad[ad.len() - 1]);
    let (kb, n) = (bd[bd.len() - 2], bd[bd.len() - 1]);
    if k != kb {
        return Err(cx.unsupported("inner dimensions differ"));
    }
    let batch = numel(&ad[..ad.len() - 2]);
    let b_batch = numel(&bd[..bd.len() - 2]);
    let b_shared = bd.len() == 2;
    if !b_shared && (bd.len() != ad.len() || ad[..ad.len() - 2] != bd[..bd.len() - 2]) {
        return Err(cx.unsupported("batched b must match a's batch dims"));
    }
    if numel(y.shape.dims()) != batch * m * n || (!b_shared && b_batch != batch) {
        return Err(cx.unsupported("result shape"));
    }
    let za = zp_operand(cx, p, 2, m)?;
    let zb = zp_operand(cx, p, 3, n)?;
    let (pa, pb, dst) = (p.ins[0], p.ins[1], p.outs[0]);
    let (adt, bdt) = (a.dtype, b.dtype);
    e.for_n(batch, |e, bi| {
        let a0 = e.muli(bi, (m * k) as i64);
        let b0 = if b_shared {
            e.ic(0)
        } else {
            e.muli(bi, (k * n) as i64)
        };
        let y0 = e.muli(bi, (m * n) as i64);
        e.for_n(m, |e, r| {
            let zr = zero_point(e, za, r);
            e.for_n(n, |e, c| {
                let zc = zero_point(e, zb, c);
                let z = e.i32c(0);
                let acc = e.var(I32, z);
                e.for_n(k, |e, t| {
                    let ai = e.muli(r, k as i64);
                    let ai = e.add(ai, a0);
                    let ai = e.add(ai, t);
                    let bi = e.muli(t, n as i64);
                    let bi = e.add(bi, b0);
                    let bi = e.add(bi, c);
                    let av = load_int(e, adt, pa, ai);
                    let av = e.b.ins().ireduce(I32, av);
                    let av = e.b.ins().isub(av, zr);
                    let bv = load_int(e, bdt, pb, bi);
                    let bv = e.b.ins().ireduce(I32, bv);
                    let bv = e.b.ins().isub(bv, zc);
                    let pr = e.b.ins().imul(av, bv);
                    let s = e.b.use_var(acc);
                    let s = e.b.ins().iadd(s, pr);
                    e.b.def_var(acc, s);
                    Ok(())
                })?;
                let s = e.b.use_var(acc);
                let yi = e.muli(r, n as i64);
                let yi = e.add(yi, y0);
                let yi = e.add(yi, c);
                let a = e.addr(dst, yi, 4, 0);
                e.b.ins().store(mf(), s, a, 0);
                Ok(())
            })
        })
    })?;
    Ok(0)
}

/// ONNX ConvInteger (2-D and 1-D, any group count): i32 result, `x_zp` scalar,
/// `w_zp` scalar or per output channel.
pub(crate) fn conv_integer(cx: &mut Cx, e: &mut E, p: &Ptrs, a: &ConvAttrs) -> Result<usize> {
    cx.arity(2, 4)?;
    let x = cx.in_ty(0)?.clone();
    let w = cx.in_ty(1)?.clone();
    let y = cx.out_ty(0)?.clone();
    if !is_int(x.dtype) || !is_int(w.dtype) || x.is_quantized() || w.is_quantized() {
        return Err(cx.unsupported("conv_integer takes raw integer operands"));
    }
    if y.dtype != DType::I32 {
        return Err(cx.unsupported("conv_integer result must be i32"));
    }
    let (xd, wd, yd) = (x.shape.dims(), w.shape.dims(), y.shape.dims());
    let rank = xd.len();
    if !(3..=4).contains(&rank) || wd.len() != rank || yd.len() != rank {
        return Err(cx.unsupported("conv_integer of 1 or 2 spatial dims only"));
    }
    // Right-align spatial dims into 2 (h, w).
    let sp = |v: &[usize]| -> [usize; 2] {
        if v.len() == 1 {
            [1, v[0]]
        } else {
            [v[0], v[1]]
        }
    };
    let srank = rank - 2;
    let attr = |v: &[usize], dflt: usize| -> Option<[usize; 2]> {
        if v.is_empty() {
            Some(if srank == 1 { [1, dflt] } else { [dflt, dflt] })
        } else if v.len() == srank {
            Some(sp(v))
        } else {
            None
        }
    };
    let bad = || cx.unsupported("conv_integer attributes");
    let stride = attr(&a.strides, 1).ok_or_else(bad)?;
    let dil = attr(&a.dilations, 1).ok_or_else(bad)?;
    let pad_b = if a.pads.is_empty() {
        [0, 0]
    } else if a.pads.len() == 2 * srank {
        // Missing leading spatial dim: no padding (not `sp`'s default of 1).
        if srank == 1 {
            [0, a.pads[0]]
        } else {
            [a.pads[0], a.pads[1]]
        }
    } else {
        return Err(bad());
    };
    let group = a.group.max(1);
    let (nb, cin) = (xd[0], xd[1]);
    let cout = wd[0];
    let cin_g = wd[1];
    if cin != cin_g * group || cout % group != 0 || yd[1] != cout || yd[0] != nb {
        return Err(cx.unsupported("conv_integer channel counts"));
    }
    let cout_g = cout / group;
    let [ih, iw] = sp(&xd[2..]);
    let [kh, kw] = sp(&wd[2..]);
    let [oh, ow] = sp(&yd[2..]);
    let zx = zp_operand(cx, p, 2, 1)?;
    let zw = zp_operand(cx, p, 3, cout)?;
    let (px, pw, dst) = (p.ins[0], p.ins[1], p.outs[0]);
    let (xdt, wdt) = (x.dtype, w.dtype);
    e.for_n(nb, |e, bn| {
        e.for_n(cout, |e, co| {
            let zwc = zero_point(e, zw, co);
            let z0 = e.ic(0);
            let zxv = zero_point(e, zx, z0);
            // Group of this output channel, first input channel of the group.
            let gi = e.b.ins().udiv_imm_s(co, cout_g as i64);
            let ci0 = e.muli(gi, cin_g as i64);
            e.for_n(oh, |e, oy| {
                e.for_n(ow, |e, ox| {
                    let z = e.i32c(0);
                    let acc = e.var(I32, z);
                    e.for_n(cin_g, |e, cg| {
                        let ci = e.add(ci0, cg);
                        let xc = e.muli(bn, cin as i64);
                        let xc = e.add(xc, ci);
                        let xc = e.muli(xc, (ih * iw) as i64);
                        let wc = e.muli(co, cin_g as i64);
                        let wc = e.add(wc, cg);
                        let wc = e.muli(wc, (kh * kw) as i64);
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let yy = e.muli(oy, stride[0] as i64);
                                let yy = e.addi(yy, (ky * dil[0]) as i64 - pad_b[0] as i64);
                                let xx = e.muli(ox, stride[1] as i64);
                                let xx = e.addi(xx, (kx * dil[1]) as i64 - pad_b[1] as i64);
                                let oky =
                                    e.b.ins().icmp_imm_s(IntCC::UnsignedLessThan, yy, ih as i64);
                                let okx =
                                    e.b.ins().icmp_imm_s(IntCC::UnsignedLessThan, xx, iw as i64);
                                let ok = e.b.ins().band(oky, okx);
                                let xi = e.muli(yy, iw as i64);
                                let xi = e.add(xi, xx);
                                let xi = e.add(xi, xc);
                                let zero = e.ic(0);
                                let xi = e.b.ins().select(ok, xi, zero);
                                let xv = load_int(e, xdt, px, xi);
                                let xv = e.b.ins().ireduce(I32, xv);
                                let xv = e.b.ins().isub(xv, zxv);
                                let z32 = e.i32c(0);
                                // Padding contributes (zx - zx) = 0.
                                let xv = e.b.ins().select(ok, xv, z32);
                                let wi = e.addi(wc, (ky * kw + kx) as i64);
                                let wv = load_int(e, wdt, pw, wi);
                                let wv = e.b.ins().ireduce(I32, wv);
                                let wv = e.b.ins().isub(wv, zwc);
                                let pr = e.b.ins().imul(xv, wv);
                                let s = e.b.use_var(acc);
                                let s = e.b.ins().iadd(s, pr);
                                e.b.def_var(acc, s);
                            }
                        }
                        Ok(())
                    })?;
                    let s = e.b.use_var(acc);
                    let yi = e.muli(bn, cout as i64);
                    let yi = e.add(yi, co);
                    let yi = e.muli(yi, (oh * ow) as i64);
                    let t = e.muli(oy, ow as i64);
                    let yi = e.add(yi, t);
                    let yi = e.add(yi, ox);
                    let a = e.addr(dst, yi, 4, 0);
                    e.b.ins().store(mf(), s, a, 0);
                    Ok(())
                })
            })
        })
    })?;
    Ok(0)
}

/// Quantize (f32 → quantized) or dequantize (quantized → f32) with per-axis
/// parameters: the channel loop is unrolled at compile time so every channel's scale
/// and zero point are immediates of `E::quantize` / `E::dequantize` (bit-exact with
/// `qc_qmath`).
pub(crate) fn per_axis_qdq(cx: &mut Cx, e: &mut E, p: &Ptrs) -> Result<usize> {
    cx.arity(1, 1)?;
    let x = cx.in_ty(0)?.clone();
    let y = cx.out_ty(0)?.clone();
    let (quantize, pq) = match (&cx.node.op, &x.quant, &y.quant) {
        (Op::Quantize, None, Some(py)) if x.dtype == DType::F32 => (true, py.clone()),
        (Op::Dequantize, Some(px), None) if y.dtype == DType::F32 => (false, px.clone()),
        _ => return Err(cx.unsupported("per-axis quantize/dequantize between f32 and quantized")),
    };
    let dims = x.shape.dims();
    let axis = pq
        .axis
        .ok_or_else(|| cx.unsupported("per-axis parameters without an axis"))?;
    if dims.get(axis) != Some(&pq.len()) || pq.len() > 4096 {
        return Err(cx.unsupported("per-axis parameters do not fit the operand"));
    }
    let (outer, dim, inner) = (numel(&dims[..axis]), dims[axis], numel(&dims[axis + 1..]));
    let (src, dst) = (p.ins[0], p.outs[0]);
    let q = pq.storage;
    let qs = crate::emit::qsize(q);
    for c in 0..dim {
        let (s, z) = (pq.scale(c), pq.zero_point(c));
        e.for_n(outer, |e, o| {
            let base = e.muli(o, (dim * inner) as i64);
            let base = e.addi(base, (c * inner) as i64);
            e.for_n(inner, |e, i| {
                let j = e.add(base, i);
                if quantize {
                    let a = e.addr(src, j, 4, 0);
                    let v = e.load_f32(a, 0);
                    let r = e.quantize(v, q, s, z);
                    let a = e.addr(dst, j, qs, 0);
                    e.store_q(q, r, a, 0);
                } else {
                    let a = e.addr(src, j, qs, 0);
                    let v = e.load_q(q, a, 0);
                    let r = e.dequantize(v, q, s, z);
                    let a = e.addr(dst, j, 4, 0);
                    e.store(r, a, 0);
                }
                Ok(())
            })
        })?;
    }
    Ok(0)
}

/// Truncating integer division of values widened to i64, as the interpreter's i128
/// `/` narrowed to `dt`. A zero divisor (an error in the interpreter) gives 0 here
/// rather than a trap; `i64::MIN / -1` wraps like the i128 quotient narrowed.
fn int_div(e: &mut E, dt: DType, a: Value, b: Value) -> Value {
    let one = e.ic(1);
    let zero = e.ic(0);
    let is0 = e.b.ins().icmp_imm_s(IntCC::Equal, b, 0);
    if dt == DType::U64 {
        let d = e.b.ins().select(is0, one, b);
        let q = e.b.ins().udiv(a, d);
        return e.b.ins().select(is0, zero, q);
    }
    let is_m1 = e.b.ins().icmp_imm_s(IntCC::Equal, b, -1);
    let special = e.b.ins().bor(is0, is_m1);
    let d = e.b.ins().select(special, one, b);
    let q = e.b.ins().sdiv(a, d);
    let neg = e.b.ins().ineg(a);
    let q = e.b.ins().select(is_m1, neg, q);
    e.b.ins().select(is0, zero, q)
}

/// Clip on a raw integer tensor: bounds `(bound as i128).clamp(dtype range)`, then
/// numpy order `min(max(x, lo), hi)`.
pub(crate) fn int_clip(
    cx: &mut Cx,
    e: &mut E,
    p: &Ptrs,
    min: Option<f64>,
    max: Option<f64>,
) -> Result<usize> {
    cx.arity(1, 1)?;
    let x = cx.in_ty(0)?.clone();
    let dt = x.dtype;
    let (lo_t, hi_t) = match int_range(dt) {
        Some(r) => r,
        None if dt == DType::I64 => (i64::MIN, i64::MAX),
        None => return Err(cx.unsupported(format!("clip on {dt} tensors"))),
    };
    let b = |v: f64| -> i64 {
        // `as i64` saturates like `as i128` then the clamp into the dtype range.
        (v as i64).clamp(lo_t, hi_t)
    };
    let lo = min.map_or(lo_t, b);
    let hi = max.map_or(hi_t, b);
    let (src, dst) = (p.ins[0], p.outs[0]);
    e.for_n(numel(x.shape.dims()), |e, i| {
        let v = load_int(e, dt, src, i);
        let l = e.ic(lo);
        let h = e.ic(hi);
        let v = e.b.ins().smax(v, l);
        let v = e.b.ins().smin(v, h);
        store_int(e, dt, v, dst, i);
        Ok(())
    })?;
    Ok(0)
}

/// `x` clamped to `[lo, hi]` like Rust's `f32::clamp` (NaN passes through).
fn fclamp(e: &mut E, x: Value, lo: f32, hi: f32) -> Value {
    let l = e.f32c(lo);
    let h = e.f32c(hi);
    let below = e.b.ins().fcmp(FloatCC::LessThan, x, l);
    let x = e.b.ins().select(below, l, x);
    let above = e.b.ins().fcmp(FloatCC::GreaterThan, x, h);
    e.b.ins().select(above, h, x)
}

/// ONNX DynamicQuantizeLinear exactly as `qc-interp` (the reference formula in f32):
/// range folded from 0 (NaN skipped), `scale = (max - min or 1) / 255`,
/// `zp = round(clamp(-min / scale, 0, 255))`, `y = clamp(round(x / scale) + zp)`.
pub(crate) fn dynamic_quantize(cx: &mut Cx, e: &mut E, p: &Ptrs) -> Result<usize> {
    cx.arity(1, 1)?;
    if cx.node.outputs.len() != 3 || p.outs.len() != 3 {
        return Err(cx.unsupported("dynamic_quantize needs its three results"));
    }
    let x = cx.in_ty(0)?.clone();
    if x.is_quantized() || x.dtype != DType::F32 {
        return Err(cx.unsupported("dynamic_quantize takes f32"));
    }
    let n = numel(x.shape.dims());
    let src = p.ins[0];
    let z = e.f32c(0.0);
    let mx = e.var(F32, z);
    let mn = e.var(F32, z);
    e.for_n(n, |e, i| {
        let a = e.addr(src, i, 4, 0);
        let v = e.load_f32(a, 0);
        let m = e.b.use_var(mx);
        let gt = e.b.ins().fcmp(FloatCC::GreaterThan, v, m);
        let m = e.b.ins().select(gt, v, m);
        e.b.def_var(mx, m);
        let m = e.b.use_var(mn);
        let lt = e.b.ins().fcmp(FloatCC::LessThan, v, m);
        let m = e.b.ins().select(lt, v, m);
        e.b.def_var(mn, m);
        Ok(())
    })?;
    let (hi, lo) = (e.b.use_var(mx), e.b.use_var(mn));
    let eq = e.b.ins().fcmp(FloatCC::Equal, hi, lo);
    let range = e.b.ins().fsub(hi, lo);
    let one = e.f32c(1.0);
    let range = e.b.ins().select(eq, one, range);
    let c255 = e.f32c(255.0);
    let scale = e.b.ins().fdiv(range, c255);
    let q = e.b.ins().fdiv(lo, scale);
    let q = e.b.ins().fsub(z, q);
    let q = fclamp(e, q, 0.0, 255.0);
    let zp = e.b.ins().nearest(q);
    let dst = p.outs[0];
    e.for_n(n, |e, i| {
        let a = e.addr(src, i, 4, 0);
        let v = e.load_f32(a, 0);
        let v = e.b.ins().fdiv(v, scale);
        let v = e.b.ins().nearest(v);
        let v = e.b.ins().fadd(v, zp);
        let v = fclamp(e, v, 0.0, 255.0);
        let v = e.b.ins().fcvt_to_uint_sat(I32, v);
        let a = e.add(dst, i);
        e.b.ins().istore8(mf(), v, a, 0);
        Ok(())
    })?;
    e.b.ins().store(mf(), scale, p.outs[1], 0);
    let zq = e.b.ins().fcvt_to_uint_sat(I32, zp);
    e.b.ins().istore8(mf(), zq, p.outs[2], 0);
    Ok(0)
}

/// bf16 ↔ f32 (and bf16 → f64) on the bits, as the `half` crate that `qc_ir::cast`
/// uses: widening appends 16 zero bits (exact); narrowing rounds to nearest even
/// (`bits + 0x7FFF + lsb`, which also carries into the exponent and overflows to
/// infinity correctly), and a NaN keeps its top bits with the quiet bit set. From f32
/// this equals `half`'s f64 path, since f32 → f64 is exact.
/// Flags of a scalar `bitcast` (Cranelift accepts only an endianness there).
fn le() -> cranelift_codegen::ir::MemFlagsData {
    cranelift_codegen::ir::MemFlagsData::new()
        .with_endianness(cranelift_codegen::ir::Endianness::Little)
}

fn cast_bf16(e: &mut E, p: &Ptrs, from: DType, to: DType, n: usize) -> Result<usize> {
    let (src, dst) = (p.ins[0], p.outs[0]);
    e.for_n(n, |e, i| {
        if from == DType::BF16 {
            let a = e.addr(src, i, 2, 0);
            let b = e.b.ins().uload16(I32, mf(), a, 0);
            let b = e.b.ins().ishl_imm_s(b, 16);
            let f = e.b.ins().bitcast(F32, le(), b);
            let (v, sz) = if to == DType::F64 {
                (e.b.ins().fpromote(F64, f), 8)
            } else {
                (f, 4)
            };
            let a = e.addr(dst, i, sz, 0);
            e.b.ins().store(mf(), v, a, 0);
        } else {
            let a = e.addr(src, i, 4, 0);
            let f = e.b.ins().load(F32, mf(), a, 0);
            let x = e.b.ins().bitcast(I32, le(), f);
            let hi = e.b.ins().ushr_imm_s(x, 16);
            let nan_bits = e.b.ins().bor_imm_s(hi, 0x0040);
            let lsb = e.b.ins().band_imm_s(hi, 1);
            let r = e.b.ins().iadd_imm_s(x, 0x7FFF);
            let r = e.b.ins().iadd(r, lsb);
            let r = e.b.ins().ushr_imm_s(r, 16);
            let is_nan = e.b.ins().fcmp(FloatCC::Unordered, f, f);
            let v = e.b.ins().select(is_nan, nan_bits, r);
            let a = e.addr(dst, i, 2, 0);
            e.b.ins().istore16(mf(), v, a, 0);
        }
        Ok(())
    })?;
    Ok(0)
}

/// f16 ↔ f32/f64 on the bits, bit-identical to the `half` crate (`qc_ir::cast`):
/// widening is exact (subnormals as `m * 2^-24`, NaN payload kept with the quiet
/// bit set); narrowing rounds to nearest even straight from the source width (no
/// double rounding through f32 for f64), subnormal results through the "magic
/// number" float addition, overflow to infinity, NaN to `0x7E00 | payload`.
fn cast_f16(e: &mut E, p: &Ptrs, from: DType, to: DType, n: usize) -> Result<usize> {
    let (src, dst) = (p.ins[0], p.outs[0]);
    e.for_n(n, |e, i| {
        if from == DType::F16 {
            let a = e.addr(src, i, 2, 0);
            let h = e.b.ins().uload16(I32, mf(), a, 0);
            let sign = e.b.ins().band_imm_s(h, 0x8000);
            let sign = e.b.ins().ishl_imm_s(sign, 16);
            let ex = e.b.ins().ushr_imm_s(h, 10);
            let ex = e.b.ins().band_imm_s(ex, 0x1F);
            let m = e.b.ins().band_imm_s(h, 0x3FF);
            let m13 = e.b.ins().ishl_imm_s(m, 13);
            // Normal: rebias the exponent.
            let ne = e.b.ins().iadd_imm_s(ex, 112);
            let ne = e.b.ins().ishl_imm_s(ne, 23);
            let normal = e.b.ins().bor(ne, m13);
            // Inf / NaN (quiet bit set on NaN, as `half`).
            let q = e.b.ins().icmp_imm_s(IntCC::NotEqual, m, 0);
            let qbit = e.b.ins().uextend(I32, q);
            let qbit = e.b.ins().ishl_imm_s(qbit, 22);
            let special = e.b.ins().bor_imm_s(m13, 0x7F80_0000);
            let special = e.b.ins().bor(special, qbit);
            // Subnormal / zero: m * 2^-24, exact in f32.
            let mf32 = e.b.ins().fcvt_from_uint(F32, m);
            let k = e.f32c(f32::from_bits(0x3380_0000)); // 2^-24
            let sub = e.b.ins().fmul(mf32, k);
            let sub = e.b.ins().bitcast(I32, le(), sub);
            let is_sub = e.b.ins().icmp_imm_s(IntCC::Equal, ex, 0);
            let is_spec = e.b.ins().icmp_imm_s(IntCC::Equal, ex, 0x1F);
            let v = e.b.ins().select(is_spec, special, normal);
            let v = e.b.ins().select(is_sub, sub, v);
            let v = e.b.ins().bor(v, sign);
            let f = e.b.ins().bitcast(F32, le(), v);
            let (v, sz) = if to == DType::F64 {
                (e.b.ins().fpromote(F64, f), 8)
            } else {
                (f, 4)
            };
            let a = e.addr(dst, i, sz, 0);
            e.b.ins().store(mf(), v, a, 0);
        } else {
            // Work on the source's bits: (int type, float type, mantissa bits, bias).
            let wide = from == DType::F64;
            let (it, ft, mb, bias) = if wide {
                (I64, F64, 52i64, 1023i64)
            } else {
                (I32, F32, 23i64, 127i64)
            };
            let a = e.addr(src, i, if wide { 8 } else { 4 }, 0);
            let f = e.b.ins().load(ft, mf(), a, 0);
            let x = e.b.ins().bitcast(it, le(), f);
            let top = if wide { 63 } else { 31 };
            let sign = e.b.ins().ushr_imm_s(x, top);
            let sign = e.b.ins().ishl_imm_s(sign, 15);
            let absmask = if wide { i64::MAX } else { i64::from(i32::MAX) };
            let ax = e.b.ins().band_imm_s(x, absmask);
            let infty = (2 * bias + 1) << mb;
            let f16max = (bias + 16) << mb;
            let shift = mb - 10;
            // NaN: quiet NaN keeping the payload's top bits.
            let man = e.b.ins().band_imm_s(ax, (1i64 << mb) - 1);
            let pay = e.b.ins().ushr_imm_s(man, shift);
            let nan = e.b.ins().bor_imm_s(pay, 0x7E00);
            let is_nan = e.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, ax, infty);
            let inf = e.b.ins().iconst(it, 0x7C00);
            let big = e.b.ins().select(is_nan, nan, inf);
            let is_big =
                e.b.ins()
                    .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, ax, f16max);
            // Subnormal results: add the magic number as floats, take the low bits.
            let magic_bits = ((bias - 15) + shift + 1) << mb;
            let magic = e.b.ins().iconst(it, magic_bits);
            let magic_f = e.b.ins().bitcast(ft, le(), magic);
            let af = e.b.ins().bitcast(ft, le(), ax);
            let sf = e.b.ins().fadd(af, magic_f);
            let sb = e.b.ins().bitcast(it, le(), sf);
            let sub = e.b.ins().isub(sb, magic);
            let is_sub =
                e.b.ins()
                    .icmp_imm_s(IntCC::SignedLessThan, ax, (bias - 14) << mb);
            // Normal results: rebias and round to nearest even on the bits.
            let odd = e.b.ins().ushr_imm_s(ax, shift);
            let odd = e.b.ins().band_imm_s(odd, 1);
            let r =
                e.b.ins()
                    .iadd_imm_s(ax, ((15 - bias) << mb) + (1i64 << (shift - 1)) - 1);
            let r = e.b.ins().iadd(r, odd);
            let norm = e.b.ins().ushr_imm_s(r, shift);
            let v = e.b.ins().select(is_sub, sub, norm);
            let v = e.b.ins().select(is_big, big, v);
            let v = e.b.ins().bor(v, sign);
            let v = if wide { e.b.ins().ireduce(I32, v) } else { v };
            let a = e.addr(dst, i, 2, 0);
            e.b.ins().istore16(mf(), v, a, 0);
        }
        Ok(())
    })?;
    Ok(0)
}
