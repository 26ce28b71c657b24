//! Scalar matmul / gemm whose weight operand `b` is a run-time value (not a constant,
//! so it cannot be packed at compile time by `linear`).
//!
//! **Invariants.**
//! - f32: `Σ_k a*b` in k order from 0, then (gemm) `* alpha`, `+ c * beta`, then the
//!   activation, as `qc-interp`'s float kernels.
//! - Quantized (`a`, `b` quantized, `a` per tensor, `b` per tensor or per column):
//!   `Σ (a - za) * (b - zb[c])` in wrapping i32, then under the `float` contract
//!   `sat(round_half_even(acc as f32 * m[c]) + zy)` with `m = (sa * sb[c]) / sy`
//!   (exactly `qc_qmath::Requantizer::requantize`), then the activation's clamp.
//!   The fixed-point contracts are not lowered here (`Unsupported`).

use cranelift_codegen::ir::InstBuilder;
use qc_ir::{Activation, GemmAttrs, QType, QuantParams, TensorType};

use crate::emit::{mf, Real, E, F32, I32, I64};
use crate::lower::{bcast_strides, numel, Cx, Ptrs};
use crate::{Contract, Result};

/// Per result column: (requant multiplier or float scale, zero point of b).
pub(crate) struct QSide {
    pub a_q: QType,
    pub a_zp: i32,
    pub b_q: QType,
    /// Constant table: per column `[m or sa*sb (f32), zb (i32)]`.
    pub table: usize,
    pub out: QOut,
}

pub(crate) enum QOut {
    /// Quantized result: storage, zero point, clamp bounds.
    Quant { q: QType, zp: i32, lo: i64, hi: i64 },
    /// Float result: `acc * (sa*sb)`, then the activation.
    Float,
}

fn per_col(cx: &Cx, p: &QuantParams, n: usize) -> Result<(Vec<f32>, Vec<i32>)> {
    if p.len() == 1 {
        Ok((vec![p.scales[0]; n], vec![p.zero_points[0]; n]))
    } else if p.len() == n {
        Ok((p.scales.clone(), p.zero_points.clone()))
    } else if n.is_multiple_of(p.len()) {
        // conv_transpose: weights per output channel within a group (axis 1), so
        // result channel `c` uses parameter `c % len`.
        let l = p.len();
        Ok((
            (0..n).map(|c| p.scales[c % l]).collect(),
            (0..n).map(|c| p.zero_points[c % l]).collect(),
        ))
    } else {
        Err(cx.unsupported(format!(
            "{} quantization parameters for {n} columns",
            p.len()
        )))
    }
}

/// Set up the quantized path, or `None` for f32 operands.
pub(crate) fn q_side(
    cx: &mut Cx,
    a: &TensorType,
    b: &TensorType,
    y: &TensorType,
    n: usize,
    act: Activation,
) -> Result<Option<QSide>> {
    let (pa, pb) = match (&a.quant, &b.quant) {
        (None, None) => {
            if a.dtype != qc_ir::DType::F32 || b.dtype != qc_ir::DType::F32 || y.is_quantized() {
                return Err(cx.unsupported("f32 or quantized operands only"));
            }
            return Ok(None);
        }
        (Some(pa), Some(pb)) => (pa, pb),
        _ => return Err(cx.unsupported("mixed quantized and float operands")),
    };
    if pa.len() != 1 {
        return Err(cx.unsupported("a must be quantized per tensor"));
    }
    if cx.opts.contract != Contract::Float {
        return Err(cx.unsupported("run-time weights under a fixed-point requantization contract"));
    }
    let (sa, za) = (pa.scales[0], pa.zero_points[0]);
    let (sb, zb) = per_col(cx, pb, n)?;
    let mut rec: Vec<u8> = Vec::with_capacity(8 * n);
    let out = match &y.quant {
        Some(py) => {
            if py.len() != 1 {
                return Err(cx.unsupported("result must be quantized per tensor"));
            }
            let (sy, zy, q) = (py.scales[0], py.zero_points[0], py.storage);
            for c in 0..n {
                let rq = qc_qmath::Requantizer::new(Contract::Float, sa, sb[c], sy)
                    .map_err(|e| cx.unsupported(e.to_string()))?;
                rec.extend(rq.float_multiplier().to_le_bytes());
                rec.extend(zb[c].to_le_bytes());
            }
            let (lo, hi) = match act {
                Activation::None => (q.min(), q.max()),
                Activation::Relu => (qc_qmath::quantize(0.0, sy, zy, q), q.max()),
                Activation::Clip { min, max } => (
                    qc_qmath::quantize(min, sy, zy, q),
                    qc_qmath::quantize(max, sy, zy, q),
                ),
            };
            QOut::Quant { q, zp: zy, lo, hi }
        }
        None if y.dtype == qc_ir::DType::F32 => {
            for c in 0..n {
                rec.extend((sa * sb[c]).to_le_bytes());
                rec.extend(zb[c].to_le_bytes());
            }
            QOut::Float
        }
        None => return Err(cx.unsupported("result of quantized operands must be f32 or quantized")),
    };
    let table = cx.pool.add(&rec);
    Ok(Some(QSide {
        a_q: pa.storage,
        a_zp: za,
        b_q: pb.storage,
        table,
        out,
    }))
}

/// Element-index closures of one (row, column) dot product.
struct Dot {
    /// a index = a0 + r*ar + t*at; b index = b0 + t*bt + c*bc.
    ar: i64,
    at: i64,
    bt: i64,
    bc: i64,
    k: usize,
}

/// Emit the dot product of row `r`, column `c`; returns the f32 value before any
/// epilogue (f32 path) or the finished result value stored at `yi`.
#[allow(clippy::too_many_arguments)]
fn emit_cell(
    e: &mut E,
    qs: &Option<QSide>,
    d: &Dot,
    pa: cranelift_codegen::ir::Value,
    pb: cranelift_codegen::ir::Value,
    a0: cranelift_codegen::ir::Value,
    b0: cranelift_codegen::ir::Value,
    r: cranelift_codegen::ir::Value,
    c: cranelift_codegen::ir::Value,
    init: Option<cranelift_codegen::ir::Value>,
) -> Result<cranelift_codegen::ir::Value> {
    let ra = e.muli(r, d.ar);
    let ra = e.add(ra, a0);
    let cb = e.muli(c, d.bc);
    let cb = e.add(cb, b0);
    match qs {
        None => {
            let z = e.f32c(0.0);
            let acc = e.var(F32, z);
            e.for_n(d.k, |e, t| {
                let ta = e.muli(t, d.at);
                let ai = e.add(ra, ta);
                let tb = e.muli(t, d.bt);
                let bi = e.add(cb, tb);
                let av = e.load_real(Real::F32, pa, ai);
                let bv = e.load_real(Real::F32, pb, bi);
                let pr = e.b.ins().fmul(av, bv);
                let s = e.b.use_var(acc);
                let s = e.b.ins().fadd(s, pr);
                e.b.def_var(acc, s);
                Ok(())
            })?;
            Ok(e.b.use_var(acc))
        }
        Some(q) => {
            let tab = e.ic(q.table as i64);
            let rec = e.addr(tab, c, 8, 0);
            let zb = e.b.ins().load(I32, mf(), rec, 4);
            let z = match init {
                Some(v) => v,
                None => e.i32c(0),
            };
            let acc = e.var(I32, z);
            e.for_n(d.k, |e, t| {
                let ta = e.muli(t, d.at);
                let ai = e.add(ra, ta);
                let tb = e.muli(t, d.bt);
                let bi = e.add(cb, tb);
                let sa = crate::emit::qsize(q.a_q);
                let aa = e.addr(pa, ai, sa, 0);
                let av = e.load_q(q.a_q, aa, 0);
                let av = e.b.ins().iadd_imm_s(av, -i64::from(q.a_zp));
                let sb = crate::emit::qsize(q.b_q);
                let ba = e.addr(pb, bi, sb, 0);
                let bv = e.load_q(q.b_q, ba, 0);
                let bv = e.b.ins().isub(bv, zb);
                let pr = e.b.ins().imul(av, bv);
                let s = e.b.use_var(acc);
                let s = e.b.ins().iadd(s, pr);
                e.b.def_var(acc, s);
                Ok(())
            })?;
            let s = e.b.use_var(acc);
            let f = e.b.ins().fcvt_from_sint(F32, s);
            let m = e.b.ins().load(F32, mf(), rec, 0);
            Ok(e.b.ins().fmul(f, m))
        }
    }
}

/// Store one finished cell: quantized results round, add the zero point, saturate and
/// clamp; f32 results get the activation.
pub(crate) fn store_cell(
    e: &mut E,
    qs: &Option<QSide>,
    act: Activation,
    v: cranelift_codegen::ir::Value,
    dst: cranelift_codegen::ir::Value,
    yi: cranelift_codegen::ir::Value,
) {
    match qs.as_ref().map(|q| &q.out) {
        Some(QOut::Quant { q, zp, lo, hi }) => {
            let r = e.b.ins().nearest(v);
            let i = e.round_to_storage(r, *q, *zp);
            let i = e.b.ins().sextend(I64, i);
            let i = e.clamp_i64(i, *lo, *hi);
            let i = e.b.ins().ireduce(I32, i);
            let a = e.addr(dst, yi, crate::emit::qsize(*q), 0);
            e.store_q(*q, i, a, 0);
        }
        _ => {
            let v = e.act(act, v);
            e.store_real(Real::F32, dst, yi, v);
        }
    }
}

/// MatMul (numpy semantics, batch broadcasting) with a run-time `b`.
pub(crate) fn matmul(cx: &mut Cx, e: &mut E, p: &Ptrs, act: Activation) -> Result<usize> {
    cx.arity(2, 2)?;
    let a = cx.in_ty(0)?.clone();
    let b = cx.in_ty(1)?.clone();
    let y = cx.out_ty(0)?.clone();
    let (ad, bd) = (a.shape.dims().to_vec(), b.shape.dims().to_vec());
    if ad.is_empty() || bd.is_empty() {
        return Err(cx.unsupported("scalar matmul operands"));
    }
    // 1-D operands: a as [1, k], b as [k, 1].
    let (a2, b2) = (
        if ad.len() == 1 {
            vec![1, ad[0]]
        } else {
            ad.clone()
        },
        if bd.len() == 1 {
            vec![bd[0], 1]
        } else {
            bd.clone()
        },
    );
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (kb, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != kb {
        return Err(cx.unsupported("inner dimensions differ"));
    }
    let (abat, bbat) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let rank = abat.len().max(bbat.len());
    let mut obat = vec![1usize; rank];
    for i in 0..rank {
        let x = if i + abat.len() >= rank {
            abat[i + abat.len() - rank]
        } else {
            1
        };
        let z = if i + bbat.len() >= rank {
            bbat[i + bbat.len() - rank]
        } else {
            1
        };
        obat[i] = if x == 1 { z } else { x };
    }
    let batch = numel(&obat);
    if numel(y.shape.dims()) != batch * m * n {
        return Err(cx.unsupported("result shape"));
    }
    let sa = bcast_strides(abat, &obat).ok_or_else(|| cx.unsupported("batch broadcast"))?;
    let sb = bcast_strides(bbat, &obat).ok_or_else(|| cx.unsupported("batch broadcast"))?;
    if let Some(pb) = &b.quant {
        if pb.len() > 1 && (bd.len() < 2 || pb.axis != Some(bd.len() - 1)) {
            return Err(cx.unsupported("b must be quantized per tensor or per column"));
        }
    }
    let qs = q_side(cx, &a, &b, &y, n, act)?;
    let d = Dot {
        ar: k as i64,
        at: 1,
        bt: n as i64,
        bc: 1,
        k,
    };
    let (pa, pb, dst) = (p.ins[0], p.ins[1], p.outs[0]);
    let ostr = crate::lower::strides(&obat);
    e.for_n(batch, |e, bi| {
        // Decompose the flat batch index into the a / b batch offsets (in matrices).
        let mut aoff = e.ic(0);
        let mut boff = e.ic(0);
        for dd in 0..rank {
            let q = e.b.ins().udiv_imm_s(bi, ostr[dd].max(1));
            let q = e.b.ins().urem_imm_s(q, obat[dd].max(1) as i64);
            let ta = e.muli(q, sa[dd]);
            aoff = e.add(aoff, ta);
            let tb = e.muli(q, sb[dd]);
            boff = e.add(boff, tb);
        }
        let a0 = e.muli(aoff, (m * k) as i64);
        let b0 = e.muli(boff, (k * n) as i64);
        let y0 = e.muli(bi, (m * n) as i64);
        e.for_n(m, |e, r| {
            e.for_n(n, |e, c| {
                let v = emit_cell(e, &qs, &d, pa, pb, a0, b0, r, c, None)?;
                let yi = e.muli(r, n as i64);
                let yi = e.add(yi, c);
                let yi = e.add(yi, y0);
                store_cell(e, &qs, act, v, dst, yi);
                Ok(())
            })
        })
    })?;
    Ok(0)
}

/// Gemm with a run-time `b`. f32: `alpha * op(a) op(b) + beta * c`, then the
/// activation. Quantized: alpha = beta = 1, `c` an i32 accumulator start.
pub(crate) fn gemm(cx: &mut Cx, e: &mut E, p: &Ptrs, ga: &GemmAttrs) -> Result<usize> {
    cx.arity(2, 3)?;
    let a = cx.in_ty(0)?.clone();
    let b = cx.in_ty(1)?.clone();
    let y = cx.out_ty(0)?.clone();
    let (ad, bd) = (a.shape.dims(), b.shape.dims());
    if ad.len() != 2 || bd.len() != 2 {
        return Err(cx.unsupported("gemm operands must be 2-D"));
    }
    let (m, k) = if ga.trans_a {
        (ad[1], ad[0])
    } else {
        (ad[0], ad[1])
    };
    let (kb, n) = if ga.trans_b {
        (bd[1], bd[0])
    } else {
        (bd[0], bd[1])
    };
    if k != kb || y.shape.dims() != [m, n] {
        return Err(cx.unsupported("gemm shapes"));
    }
    if let Some(pb) = &b.quant {
        let axis = if ga.trans_b { 0 } else { 1 };
        if pb.len() > 1 && pb.axis != Some(axis) {
            return Err(cx.unsupported("b must be quantized per tensor or per column"));
        }
    }
    let qs = q_side(cx, &a, &b, &y, n, ga.act)?;
    let has_c = cx.node.inputs.len() == 3;
    if qs.is_some() && (ga.alpha != 1.0 || (has_c && ga.beta != 1.0)) {
        return Err(cx.unsupported("quantized gemm needs alpha = beta = 1"));
    }
    let c_st = match cx.node.inputs.len() {
        3 => {
            let ct = cx.in_ty(2)?.clone();
            let want = if qs.is_some() {
                qc_ir::DType::I32
            } else {
                qc_ir::DType::F32
            };
            if ct.is_quantized() || ct.dtype != want {
                return Err(cx.unsupported(format!("gemm c must be {want}")));
            }
            Some(
                bcast_strides(ct.shape.dims(), &[m, n])
                    .ok_or_else(|| cx.unsupported("c does not broadcast to [m, n]"))?,
            )
        }
        _ => None,
    };
    let d = Dot {
        ar: if ga.trans_a { 1 } else { k as i64 },
        at: if ga.trans_a { m as i64 } else { 1 },
        bt: if ga.trans_b { 1 } else { n as i64 },
        bc: if ga.trans_b { k as i64 } else { 1 },
        k,
    };
    let (pa, pb, dst) = (p.ins[0], p.ins[1], p.outs[0]);
    let pc = p.ins.get(2).copied();
    let (alpha, beta) = (ga.alpha, ga.beta);
    e.for_n(m, |e, r| {
        e.for_n(n, |e, c| {
            let z = e.ic(0);
            if qs.is_some() {
                // Quantized: the i32 `c` starts the accumulator (wrapping), as the
                // interpreter; alpha = beta = 1 was checked.
                let init = match (&c_st, pc) {
                    (Some(st), Some(pc)) => {
                        let ci = e.muli(r, st[0]);
                        let cj = e.muli(c, st[1]);
                        let ci = e.add(ci, cj);
                        let a = e.addr(pc, ci, 4, 0);
                        Some(e.b.ins().load(I32, mf(), a, 0))
                    }
                    _ => None,
                };
                let v = emit_cell(e, &qs, &d, pa, pb, z, z, r, c, init)?;
                let yi = e.muli(r, n as i64);
                let yi = e.add(yi, c);
                store_cell(e, &qs, ga.act, v, dst, yi);
                return Ok(());
            }
            let v = emit_cell(e, &qs, &d, pa, pb, z, z, r, c, None)?;
            let al = e.f32c(alpha);
            let mut v = e.b.ins().fmul(v, al);
            if let (Some(st), Some(pc)) = (&c_st, pc) {
                if beta != 0.0 {
                    let ci = e.muli(r, st[0]);
                    let cj = e.muli(c, st[1]);
                    let ci = e.add(ci, cj);
                    let cv = e.load_real(Real::F32, pc, ci);
                    let be = e.f32c(beta);
                    let cv = e.b.ins().fmul(cv, be);
                    v = e.b.ins().fadd(v, cv);
                }
            }
            let yi = e.muli(r, n as i64);
            let yi = e.add(yi, c);
            store_cell(e, &qs, ga.act, v, dst, yi);
            Ok(())
        })
    })?;
    Ok(0)
}

/// Conv (1 or 2 spatial dims, any group count) with run-time weights: f32, or
/// quantized `x`/`w` (weights per tensor or per output channel) with an i32 bias.
pub(crate) fn conv(cx: &mut Cx, e: &mut E, p: &Ptrs, a: &qc_ir::ConvAttrs) -> Result<usize> {
    cx.arity(2, 3)?;
    let x = cx.in_ty(0)?.clone();
    let w = cx.in_ty(1)?.clone();
    let y = cx.out_ty(0)?.clone();
    let (xd, wd, yd) = (x.shape.dims(), w.shape.dims(), y.shape.dims());
    let rank = xd.len();
    if !(3..=4).contains(&rank) || wd.len() != rank || yd.len() != rank {
        return Err(cx.unsupported("conv with run-time weights: 1 or 2 spatial dims only"));
    }
    let srank = rank - 2;
    let sp = |v: &[usize]| -> [usize; 2] {
        if v.len() == 1 {
            [1, v[0]]
        } else {
            [v[0], v[1]]
        }
    };
    let attr = |v: &[usize]| -> Option<[usize; 2]> {
        if v.is_empty() {
            Some([1, 1])
        } else if v.len() == srank {
            Some(sp(v))
        } else {
            None
        }
    };
    let bad = || cx.unsupported("conv attributes");
    let stride = attr(&a.strides).ok_or_else(bad)?;
    let dil = attr(&a.dilations).ok_or_else(bad)?;
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
    let (nb, cin, cout, cin_g) = (xd[0], xd[1], wd[0], wd[1]);
    if cin != cin_g * group || cout % group != 0 || yd[1] != cout || yd[0] != nb {
        return Err(cx.unsupported("conv channel counts"));
    }
    let cout_g = cout / group;
    let [ih, iw] = sp(&xd[2..]);
    let [kh, kw] = sp(&wd[2..]);
    let [oh, ow] = sp(&yd[2..]);
    if let Some(pw) = &w.quant {
        if pw.len() > 1 && pw.axis != Some(0) {
            return Err(cx.unsupported("weights must be per tensor or per output channel"));
        }
    }
    let qs = q_side(cx, &x, &w, &y, cout, a.act)?;
    let bias = match cx.node.inputs.len() {
        3 => {
            let bt = cx.in_ty(2)?.clone();
            let want = if qs.is_some() {
                qc_ir::DType::I32
            } else {
                qc_ir::DType::F32
            };
            if bt.is_quantized() || bt.dtype != want || numel(bt.shape.dims()) != cout {
                return Err(cx.unsupported("conv bias"));
            }
            Some(p.ins[2])
        }
        _ => None,
    };
    let (px, pw, dst) = (p.ins[0], p.ins[1], p.outs[0]);
    let act = a.act;
    e.for_n(nb, |e, bn| {
        e.for_n(cout, |e, co| {
            let gi = e.b.ins().udiv_imm_s(co, cout_g as i64);
            let ci0 = e.muli(gi, cin_g as i64);
            let (rec, zb) = match &qs {
                Some(q) => {
                    let tab = e.ic(q.table as i64);
                    let rec = e.addr(tab, co, 8, 0);
                    let zb = e.b.ins().load(I32, mf(), rec, 4);
                    (Some(rec), Some(zb))
                }
                None => (None, None),
            };
            e.for_n(oh, |e, oy| {
                e.for_n(ow, |e, ox| {
                    let (ty, init) = match (&qs, bias) {
                        (Some(_), Some(b)) => {
                            let a = e.addr(b, co, 4, 0);
                            (I32, e.b.ins().load(I32, mf(), a, 0))
                        }
                        (Some(_), None) => (I32, e.i32c(0)),
                        (None, Some(b)) => {
                            let a = e.addr(b, co, 4, 0);
                            (F32, e.load_f32(a, 0))
                        }
                        (None, None) => (F32, e.f32c(0.0)),
                    };
                    let acc = e.var(ty, init);
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
                                let oky = e.b.ins().icmp_imm_s(
                                    cranelift_codegen::ir::condcodes::IntCC::UnsignedLessThan,
                                    yy,
                                    ih as i64,
                                );
                                let okx = e.b.ins().icmp_imm_s(
                                    cranelift_codegen::ir::condcodes::IntCC::UnsignedLessThan,
                                    xx,
                                    iw as i64,
                                );
                                let ok = e.b.ins().band(oky, okx);
                                let xi = e.muli(yy, iw as i64);
                                let xi = e.add(xi, xx);
                                let xi = e.add(xi, xc);
                                let zero = e.ic(0);
                                let xi = e.b.ins().select(ok, xi, zero);
                                let wi = e.addi(wc, (ky * kw + kx) as i64);
                                let pr = match &qs {
                                    Some(q) => {
                                        let xa = e.addr(px, xi, crate::emit::qsize(q.a_q), 0);
                                        let xv = e.load_q(q.a_q, xa, 0);
                                        let xv = e.b.ins().iadd_imm_s(xv, -i64::from(q.a_zp));
                                        let z32 = e.i32c(0);
                                        // A padded tap contributes (zx - zx) = 0.
                                        let xv = e.b.ins().select(ok, xv, z32);
                                        let wa = e.addr(pw, wi, crate::emit::qsize(q.b_q), 0);
                                        let wv = e.load_q(q.b_q, wa, 0);
                                        let wv =
                                            e.b.ins()
                                                .isub(wv, zb.expect("invariant: quantized path"));
                                        e.b.ins().imul(xv, wv)
                                    }
                                    None => {
                                        let xv = e.load_real(Real::F32, px, xi);
                                        let zf = e.f32c(0.0);
                                        let xv = e.b.ins().select(ok, xv, zf);
                                        let wv = e.load_real(Real::F32, pw, wi);
                                        e.b.ins().fmul(xv, wv)
                                    }
                                };
                                let s = e.b.use_var(acc);
                                let s = if qs.is_some() {
                                    e.b.ins().iadd(s, pr)
                                } else {
                                    e.b.ins().fadd(s, pr)
                                };
                                e.b.def_var(acc, s);
                            }
                        }
                        Ok(())
                    })?;
                    let s = e.b.use_var(acc);
                    let v = match rec {
                        Some(rec) => {
                            let f = e.b.ins().fcvt_from_sint(F32, s);
                            let m = e.b.ins().load(F32, mf(), rec, 0);
                            e.b.ins().fmul(f, m)
                        }
                        None => s,
                    };
                    let yi = e.muli(bn, cout as i64);
                    let yi = e.add(yi, co);
                    let yi = e.muli(yi, (oh * ow) as i64);
                    let t = e.muli(oy, ow as i64);
                    let yi = e.add(yi, t);
                    let yi = e.add(yi, ox);
                    store_cell(e, &qs, act, v, dst, yi);
                    Ok(())
                })
            })
        })
    })?;
    Ok(0)
}
