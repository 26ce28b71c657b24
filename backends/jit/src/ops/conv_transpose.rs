//! ConvTranspose (1-3 spatial dims, any group count), f32 or quantized, as a gather:
//! output element `o` sums `x[i] * w[k]` over the taps with `o = i*s + k*d - pad`.
//!
//! **Invariants.**
//! - For one output element the contributions are added in the interpreter's order
//!   (bias first, then input channel, then kernel position; each (channel, tap) hits
//!   at most one input element), so f32 results are bit-identical to `qc-interp`'s
//!   scatter loop and quantized ones are exact.
//! - Quantized: `x` per tensor, `w` per tensor or per axis 1 (channel within the
//!   group), i32 bias; requantization under the `float` contract (see `linear_rt`).

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Value};
use qc_ir::{ConvTransposeAttrs, DType};

use super::linear_rt::{q_side, store_cell};
use crate::emit::{mf, qsize, Real, E, F32, I32};
use crate::lower::{numel, Cx, Ptrs};
use crate::Result;

fn sp3(v: &[usize], rank: usize, default: usize) -> Option<[usize; 3]> {
    let mut out = [default; 3];
    if v.is_empty() {
        return Some(out);
    }
    if v.len() != rank {
        return None;
    }
    for o in out.iter_mut().take(3 - rank) {
        *o = if default == 0 { 0 } else { 1 };
    }
    out[3 - rank..].copy_from_slice(v);
    Some(out)
}

pub(crate) fn conv_transpose(
    cx: &mut Cx,
    e: &mut E,
    p: &Ptrs,
    a: &ConvTransposeAttrs,
) -> Result<usize> {
    cx.arity(2, 3)?;
    let x = cx.in_ty(0)?.clone();
    let w = cx.in_ty(1)?.clone();
    let y = cx.out_ty(0)?.clone();
    let (xd, wd, yd) = (x.shape.dims(), w.shape.dims(), y.shape.dims());
    let r = xd.len();
    if !(3..=5).contains(&r) || wd.len() != r || yd.len() != r {
        return Err(cx.unsupported("conv_transpose of 1 to 3 spatial dims only"));
    }
    let rank = r - 2;
    let bad = || cx.unsupported("conv_transpose attributes");
    let stride = sp3(&a.strides, rank, 1).ok_or_else(bad)?;
    let dil = sp3(&a.dilations, rank, 1).ok_or_else(bad)?;
    if stride.contains(&0) || dil.contains(&0) {
        return Err(bad());
    }
    let mut pad = [0usize; 3];
    if a.pads.len() == 2 * rank {
        pad[3 - rank..].copy_from_slice(&a.pads[..rank]);
    } else if !a.pads.is_empty() {
        return Err(bad());
    }
    let group = a.group.max(1);
    let (nb, cin) = (xd[0], xd[1]);
    let cout_g = wd[1];
    let cout = cout_g * group;
    if wd[0] != cin || cin % group != 0 || yd[1] != cout || yd[0] != nb {
        return Err(cx.unsupported("conv_transpose channel counts"));
    }
    let cin_g = cin / group;
    let in_sp = sp3(&xd[2..], rank, 1).ok_or_else(bad)?;
    let k = sp3(&wd[2..], rank, 1).ok_or_else(bad)?;
    let out_sp = sp3(&yd[2..], rank, 1).ok_or_else(bad)?;
    if let Some(pw) = &w.quant {
        if pw.len() > 1 && pw.axis != Some(1) {
            return Err(cx.unsupported("weights must be per tensor or per axis 1"));
        }
    }
    let qs = q_side(cx, &x, &w, &y, cout, a.act)?;
    let bias = match cx.node.inputs.len() {
        3 => {
            let bt = cx.in_ty(2)?.clone();
            let want = if qs.is_some() { DType::I32 } else { DType::F32 };
            if bt.is_quantized() || bt.dtype != want || numel(bt.shape.dims()) != cout {
                return Err(cx.unsupported("conv_transpose bias"));
            }
            Some(p.ins[2])
        }
        _ => None,
    };
    let isz = numel(&in_sp);
    let osz = numel(&out_sp);
    let ksz = numel(&k);
    let (px, pw, dst) = (p.ins[0], p.ins[1], p.outs[0]);
    let act = a.act;
    e.for_n(nb, |e, bn| {
        e.for_n(cout, |e, oc| {
            let grp = e.b.ins().udiv_imm_s(oc, cout_g as i64);
            let gm = e.muli(grp, cout_g as i64);
            let ocg = e.b.ins().isub(oc, gm);
            let (rec, zb) = match &qs {
                Some(q) => {
                    let tab = e.ic(q.table as i64);
                    let rec = e.addr(tab, oc, 8, 0);
                    let zb = e.b.ins().load(I32, mf(), rec, 4);
                    (Some(rec), Some(zb))
                }
                None => (None, None),
            };
            e.for_n(out_sp[0], |e, od| {
                e.for_n(out_sp[1], |e, oh| {
                    e.for_n(out_sp[2], |e, ow| {
                        let o = [od, oh, ow];
                        // Per dim and kernel position: (valid, input coordinate).
                        let mut taps: [Vec<(Value, Value)>; 3] = Default::default();
                        for dim in 0..3 {
                            for kk in 0..k[dim] {
                                let t = e.addi(o[dim], pad[dim] as i64 - (kk * dil[dim]) as i64);
                                let nonneg =
                                    e.b.ins().icmp_imm_s(IntCC::SignedGreaterThanOrEqual, t, 0);
                                let zero = e.ic(0);
                                let tt = e.b.ins().select(nonneg, t, zero);
                                let (i, ok) = if stride[dim] == 1 {
                                    (tt, nonneg)
                                } else {
                                    let q = e.b.ins().udiv_imm_s(tt, stride[dim] as i64);
                                    let back = e.muli(q, stride[dim] as i64);
                                    let exact = e.b.ins().icmp(IntCC::Equal, back, tt);
                                    (q, e.b.ins().band(nonneg, exact))
                                };
                                let inside = e.b.ins().icmp_imm_s(
                                    IntCC::SignedLessThan,
                                    i,
                                    in_sp[dim] as i64,
                                );
                                let ok = e.b.ins().band(ok, inside);
                                let i = e.b.ins().select(ok, i, zero);
                                taps[dim].push((ok, i));
                            }
                        }
                        let (ty, init) = match (&qs, bias) {
                            (Some(_), Some(b)) => {
                                let a = e.addr(b, oc, 4, 0);
                                (I32, e.b.ins().load(I32, mf(), a, 0))
                            }
                            (Some(_), None) => (I32, e.i32c(0)),
                            (None, Some(b)) => {
                                let a = e.addr(b, oc, 4, 0);
                                (F32, e.load_f32(a, 0))
                            }
                            (None, None) => (F32, e.f32c(0.0)),
                        };
                        let acc = e.var(ty, init);
                        e.for_n(cin_g, |e, icg| {
                            let ic = e.muli(grp, cin_g as i64);
                            let ic = e.add(ic, icg);
                            let xb = e.muli(bn, cin as i64);
                            let xb = e.add(xb, ic);
                            let xb = e.muli(xb, isz as i64);
                            let wb = e.muli(ic, cout_g as i64);
                            let wb = e.add(wb, ocg);
                            let wb = e.muli(wb, ksz as i64);
                            for (kd, &(okd, id)) in taps[0].iter().enumerate() {
                                for (kh, &(okh, ih)) in taps[1].iter().enumerate() {
                                    for (kw, &(okw, iw)) in taps[2].iter().enumerate() {
                                        let ok = e.b.ins().band(okd, okh);
                                        let ok = e.b.ins().band(ok, okw);
                                        let xi = e.muli(id, in_sp[1] as i64);
                                        let xi = e.add(xi, ih);
                                        let xi = e.muli(xi, in_sp[2] as i64);
                                        let xi = e.add(xi, iw);
                                        let xi = e.add(xi, xb);
                                        let wi = e.addi(wb, ((kd * k[1] + kh) * k[2] + kw) as i64);
                                        let s = e.b.use_var(acc);
                                        let s = match &qs {
                                            Some(q) => {
                                                let xa = e.addr(px, xi, qsize(q.a_q), 0);
                                                let xv = e.load_q(q.a_q, xa, 0);
                                                let xv =
                                                    e.b.ins().iadd_imm_s(xv, -i64::from(q.a_zp));
                                                let wa = e.addr(pw, wi, qsize(q.b_q), 0);
                                                let wv = e.load_q(q.b_q, wa, 0);
                                                let wv = e.b.ins().isub(
                                                    wv,
                                                    zb.expect("invariant: quantized path"),
                                                );
                                                let pr = e.b.ins().imul(xv, wv);
                                                let z = e.i32c(0);
                                                let pr = e.b.ins().select(ok, pr, z);
                                                e.b.ins().iadd(s, pr)
                                            }
                                            None => {
                                                let xv = e.load_real(Real::F32, px, xi);
                                                let wv = e.load_real(Real::F32, pw, wi);
                                                let pr = e.b.ins().fmul(xv, wv);
                                                let n = e.b.ins().fadd(s, pr);
                                                // Skipped taps leave the sum untouched
                                                // (adding 0.0 would turn -0.0 into 0.0).
                                                e.b.ins().select(ok, n, s)
                                            }
                                        };
                                        e.b.def_var(acc, s);
                                    }
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
                        let yi = e.add(yi, oc);
                        let yi = e.muli(yi, osz as i64);
                        let t = e.muli(od, (out_sp[1] * out_sp[2]) as i64);
                        let yi = e.add(yi, t);
                        let t = e.muli(oh, out_sp[2] as i64);
                        let yi = e.add(yi, t);
                        let yi = e.add(yi, ow);
                        store_cell(e, &qs, act, v, dst, yi);
                        Ok(())
                    })
                })
            })
        })
    })?;
    Ok(0)
}
