//! `reduce_mean` and `lrn`, on f32 or per-tensor quantized operands (dequantized on
//! load, the result quantized on store, as the interpreter's generic form).
//!
//! **Invariants.**
//! - `reduce_mean` sums each output's inputs in f64 in increasing flat input order
//!   (the interpreter's order), then divides by the count in f64 and rounds to f32:
//!   bit-identical to `qc-interp`.
//! - `lrn` computes the window's sum of squares in f32 in channel order like the
//!   interpreter, and `d^beta` as `qc_ir::real::pow` defines it, `exp(beta * ln d)`
//!   through the `Ln` and `Exp` callbacks: bit-identical to `qc-interp`.

use cranelift_codegen::ir::InstBuilder;
use qc_ir::LrnAttrs;

use crate::emit::{E, F32, F64};
use crate::funcs::Callback;
use crate::lower::{nest, numel, strides, Cx, Ptrs};
use crate::Result;

pub(crate) fn reduce_mean(
    cx: &mut Cx,
    e: &mut E,
    p: &Ptrs,
    axes: &[usize],
    _keepdims: bool,
) -> Result<usize> {
    cx.arity(1, 1)?;
    let x = cx.in_ty(0)?.clone();
    let y = cx.out_ty(0)?.clone();
    let (rx, ry) = (cx.real(&x)?, cx.real(&y)?);
    let d = x.shape.dims().to_vec();
    let r = d.len();
    let mut reduced = vec![axes.is_empty(); r];
    for &a in axes {
        match reduced.get_mut(a) {
            Some(f) if !*f => *f = true,
            _ => return Err(cx.unsupported(format!("axes {axes:?} invalid for rank {r}"))),
        }
    }
    let xs = strides(&d);
    let (mut kd, mut ks, mut rd, mut rs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..r {
        if reduced[i] {
            rd.push(d[i]);
            rs.push(xs[i]);
        } else {
            kd.push(d[i]);
            ks.push(xs[i]);
        }
    }
    let count: usize = numel(&rd);
    if numel(y.shape.dims()) != numel(&kd) {
        return Err(cx.unsupported("result size"));
    }
    let ys = strides(&kd);
    let (src, dst) = (p.ins[0], p.outs[0]);
    let zero = e.ic(0);
    nest(e, &kd, &[ks, ys], vec![zero, zero], &mut |e, idx| {
        let (xb, yi) = (idx[0], idx[1]);
        let z = e.b.ins().f64const(0.0);
        let acc = e.var(F64, z);
        nest(e, &rd, std::slice::from_ref(&rs), vec![xb], &mut |e, j| {
            let v = e.load_real(rx, src, j[0]);
            let w = e.b.ins().fpromote(F64, v);
            let s = e.b.use_var(acc);
            let s = e.b.ins().fadd(s, w);
            e.b.def_var(acc, s);
            Ok(())
        })?;
        let s = e.b.use_var(acc);
        let n = e.b.ins().f64const(count as f64);
        let m = e.b.ins().fdiv(s, n);
        let m = e.b.ins().fdemote(F32, m);
        e.store_real(ry, dst, yi, m);
        Ok(())
    })?;
    Ok(0)
}

pub(crate) fn lrn(cx: &mut Cx, e: &mut E, p: &Ptrs, a: &LrnAttrs) -> Result<usize> {
    cx.arity(1, 1)?;
    let x = cx.in_ty(0)?.clone();
    let y = cx.out_ty(0)?.clone();
    let (rx, ry) = (cx.real(&x)?, cx.real(&y)?);
    let d = x.shape.dims();
    if d.len() < 2 || a.size == 0 {
        return Err(cx.unsupported("lrn needs rank >= 2 and size > 0"));
    }
    let (outer, c, inner) = (d[0], d[1], numel(&d[2..]));
    let lo = (a.size - 1) / 2;
    let hi = (a.size - 1).div_ceil(2);
    let coef = (f64::from(a.alpha) / a.size as f64) as f32;
    let (bias, beta) = (a.bias, a.beta);
    let (src, dst) = (p.ins[0], p.outs[0]);
    e.for_n(outer, |e, o| {
        for ch in 0..c {
            let first = ch.saturating_sub(lo);
            let last = (ch + hi + 1).min(c);
            e.for_n(inner, |e, i| {
                let base = e.muli(o, (c * inner) as i64);
                let base = e.add(base, i);
                let mut s = e.f32c(0.0);
                for cc in first..last {
                    let j = e.addi(base, (cc * inner) as i64);
                    let v = e.load_real(rx, src, j);
                    let sq = e.b.ins().fmul(v, v);
                    s = e.b.ins().fadd(s, sq);
                }
                let j = e.addi(base, (ch * inner) as i64);
                let v = e.load_real(rx, src, j);
                let k = e.f32c(coef);
                let t = e.b.ins().fmul(k, s);
                let b = e.f32c(bias);
                let den = e.b.ins().fadd(b, t);
                let l = e.call(Callback::Ln, den);
                let bt = e.f32c(beta);
                let l = e.b.ins().fmul(bt, l);
                let pw = e.call(Callback::Exp, l);
                let q = e.b.ins().fdiv(v, pw);
                e.store_real(ry, dst, j, q);
                Ok(())
            })?;
        }
        Ok(())
    })?;
    Ok(0)
}
