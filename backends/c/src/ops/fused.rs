//! The `float` contract's fused 8-bit add, softmax and global average
//! (`qc_qmath::FusedAdd`, `FusedSoftmax`, `FusedMean`; `qc_ir::fused` says which nodes
//! take them).
//!
//! **Add.** C99 without libm has no `fmaf`, so each `fma(x, r, c)` is computed as
//! `(float)((double)x * (double)r + (double)c)`: the product of an 8-bit code and an
//! f32 is exact in double, the double sum may round before the conversion to f32. At
//! emit time every pair of codes is evaluated with exactly that arithmetic
//! ([`c_t`]) and compared with `FusedAdd`; where some pair would give another code,
//! the kernel rounds the double sum to odd instead (TwoSum), which makes the
//! conversion to f32 the one correct rounding, checked the same way (a node failing
//! both is rejected). Which operand is applied last (`FusedAdd::swapped`) is a matter
//! of which pointer and strides the call passes as `x`.
//!
//! **Global average.** `qc_qmath::FusedMean` in f32 on the wrapping i32 code sum.
//!
//! **Softmax.** The 256-entry exponential table as exact f32 literals, the row sum in
//! f32 in row order, and `FusedSoftmax::code`'s conversion written out with integer
//! range checks (u8: through 64 bits, wrapping to 32; i8: `INT32_MIN` out of range,
//! wrapping add of the zero point).

use qc_ir::{Activation, QType};
use qc_qmath::{FusedAdd, FusedSoftmax};

use super::{bcast4, i32c, q8, sfx, Cx};
use crate::emit::{array, ctype, Em};
use crate::exact::c_float;
use crate::runtime::Piece;
use crate::Result;

/// `fma(x, r, c)` as the emitted C computes it from the exact double product
/// `p = x * r`: plainly (`exact == false`: the double sum, then to f32, two
/// roundings), or with the double sum rounded to odd (its error by TwoSum), after
/// which the conversion to f32 is the one correct rounding of the exact value
/// (53 >= 2 * 24 + 2 bits).
fn c_fma(p: f64, c: f32, exact: bool) -> f32 {
    let c = f64::from(c);
    let mut s = p + c;
    if exact {
        let bv = s - p;
        let err = (p - (s - bv)) + (c - bv);
        if err != 0.0 {
            let mut u = s.to_bits();
            if u & 1 == 0 {
                if (err > 0.0) == (s > 0.0) {
                    u = u.wrapping_add(1);
                } else {
                    u = u.wrapping_sub(1);
                }
            }
            s = f64::from_bits(u);
        }
    }
    s as f32
}

/// The value before rounding as the emitted C computes it, for codes `x`, `y` in the
/// kernel's order (`x` is `b` when the operands are swapped).
fn c_t(f: &FusedAdd, x: i32, y: i32, exact: bool) -> f32 {
    let inner = c_fma(f64::from(y) * f64::from(f.y_ratio), f.fixed, exact);
    c_fma(f64::from(x) * f64::from(f.x_ratio), inner, exact)
}

/// The first pair of codes `(a, b)` of storage `q` (operand order) whose result code
/// the C's arithmetic ([`c_t`]) would get wrong, if any.
fn disagrees(f: &FusedAdd, q: QType, exact: bool) -> Option<(i32, i32)> {
    let (lo, hi) = (q.min() as i32, q.max() as i32);
    (lo..=hi)
        .flat_map(|x| (lo..=hi).map(move |y| (x, y)))
        .find_map(|(x, y)| {
            let (a, b) = if f.swapped { (y, x) } else { (x, y) };
            (f.finish(c_t(f, x, y, exact)) != f.apply(a, b)).then_some((a, b))
        })
}

fn lit(cx: &Cx, v: f32, what: &str) -> Result<String> {
    c_float(v).ok_or_else(|| cx.err(format!("{what} {v} is not finite")))
}

/// The fused add of node `cx` under the `float` contract, or `None` when
/// `qc_ir::fused` does not define it.
pub(super) fn add(em: &mut Em, cx: &Cx, act: Activation) -> Result<Option<String>> {
    let (a, b, y) = (cx.input(0)?, cx.input(1)?, cx.output()?);
    let (ta, tb, ty) = (em.ty(a)?.clone(), em.ty(b)?.clone(), em.ty(y)?.clone());
    let f = match qc_ir::fused::add(&ta, &tb, &ty, act) {
        None => return Ok(None),
        Some(f) => f.map_err(|e| cx.err(format!("fused add: {e}")))?,
    };
    let Some((q, _, _)) = q8(&ty) else {
        return Err(cx.err("fused add without an 8-bit result"));
    };
    // The plain double form where it rounds as the fused multiply-add for every pair
    // of codes (the usual case), else the round-to-odd form (checked the same way).
    let exact = disagrees(&f, q, false).is_some();
    if let Some((ca, cb)) = exact.then(|| disagrees(&f, q, true)).flatten() {
        return Err(cx.err(format!(
            "scale ratios need a fused multiply-add (codes {ca}, {cb} round differently \
             in double), which C99 without libm lacks"
        )));
    }
    // The kernel reads x (applied last) and y; swapping passes b as x.
    let (px_v, py_v, tx, tyv) = if f.swapped {
        (b, a, &tb, &ta)
    } else {
        (a, b, &ta, &tb)
    };
    let out = ty.shape.dims();
    let (d4, st) = bcast4(cx, &[tx.shape.dims(), tyv.shape.dims()], out)?;
    let (sx4, sy4) = (st[0], st[1]);
    if ta.dtype != ty.dtype || tb.dtype != ty.dtype {
        return Err(cx.err("fused add operands and result of different C types"));
    }
    let j = |v: [i32; 4]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (pname, fname) = (cx.name("p"), cx.name("fadd"));
    let p_init = format!(
        "static const qc_ew_t {pname} = {{{{{}}}, {{{}}}, {{{}}}}};\n",
        j(d4),
        j(sx4),
        j(sy4)
    );
    let f_init = format!(
        "static const qc_fadd_t {fname} = {{{}, {}, {}, {}, {}}};\n",
        lit(cx, f.x_ratio, "scale ratio")?,
        lit(cx, f.y_ratio, "scale ratio")?,
        lit(cx, f.fixed, "offset")?,
        f.lo,
        f.hi
    );
    em.need(Piece::FusedAdd);
    em.data_once(&pname, || Ok(p_init))?;
    em.data_once(&fname, || Ok(f_init))?;
    let t = ctype(ty.dtype);
    let kname = format!("qc_fadd{}_{}", if exact { "x" } else { "" }, sfx(ty.dtype));
    let fma = if exact {
        "qc_fadd_fma_odd"
    } else {
        "qc_fadd_fma_dbl"
    };
    // Named to sort before the kernels calling them (kernels are emitted by name).
    em.kernel(fma, || {
        if exact {
            r#"
/* fmaf(x, r, c) given the exact double product p = x * r: the double sum rounded to
 * odd (its rounding error by TwoSum), then to f32 in one correct rounding. */
static float qc_fadd_fma_odd(double p, float c)
{
    double s = p + (double)c, bv = s - p;
    double err = (p - (s - bv)) + ((double)c - bv);
    if (err != 0.0) {
        uint64_t u;
        memcpy(&u, &s, 8);
        if ((u & 1u) == 0) {
            if ((err > 0.0) == (s > 0.0)) {
                u += 1u;
            } else {
                u -= 1u;
            }
        }
        memcpy(&s, &u, 8);
    }
    return (float)s;
}
"#
        } else {
            r#"
/* fmaf(x, r, c) given the exact double product p = x * r, where the double sum
 * rounds the same (checked at compile time for every pair of codes). */
static float qc_fadd_fma_dbl(double p, float c)
{
    return (float)(p + (double)c);
}
"#
        }
        .to_string()
    });
    em.kernel(&kname, || {
        format!(
            r#"
/* Fused quantized add (float contract): t = fma(x, xr, fma(y, yr, fixed)), each
 * fma in double on the exact product. */
static void {kname}(const {t} *x, const {t} *y, {t} *out, const qc_ew_t *p, const qc_fadd_t *f)
{{
    int32_t i0, i1, i2, i3;
    size_t o = 0;
    for (i0 = 0; i0 < p->d[0]; i0++) {{
        for (i1 = 0; i1 < p->d[1]; i1++) {{
            for (i2 = 0; i2 < p->d[2]; i2++) {{
                size_t ix = (size_t)(i0 * p->sa[0] + i1 * p->sa[1] + i2 * p->sa[2]);
                size_t iy = (size_t)(i0 * p->sb[0] + i1 * p->sb[1] + i2 * p->sb[2]);
                for (i3 = 0; i3 < p->d[3]; i3++) {{
                    int32_t cx = (int32_t)x[ix + (size_t)(i3 * p->sa[3])];
                    int32_t cy = (int32_t)y[iy + (size_t)(i3 * p->sb[3])];
                    float inner = {fma}((double)cy * (double)f->yr, f->fixed);
                    float t = {fma}((double)cx * (double)f->xr, inner);
                    out[o++] = ({t})qc_fadd_code(f, t);
                }}
            }}
        }}
    }}
}}
"#
        )
    });
    let (px, py, po) = (em.ptr(px_v)?, em.ptr(py_v)?, em.ptr(y)?);
    Ok(Some(format!(
        "    {kname}({px}, {py}, {po}, &{pname}, &{fname});\n"
    )))
}

/// The fused softmax of node `cx` along `axis` under the `float` contract, or `None`
/// when `qc_ir::fused` does not define it.
pub(super) fn softmax(em: &mut Em, cx: &Cx, axis: usize) -> Result<Option<String>> {
    let (x, y) = (cx.input(0)?, cx.output()?);
    let (tx, ty) = (em.ty(x)?.clone(), em.ty(y)?.clone());
    let dims = tx.shape.dims();
    let Some(&dim) = dims.get(axis) else {
        return Err(cx.err("axis out of range"));
    };
    let s: FusedSoftmax = match qc_ir::fused::softmax(&tx, &ty, dim) {
        None => return Ok(None),
        Some(s) => s.map_err(|e| cx.err(format!("fused softmax: {e}")))?,
    };
    if tx.dtype != ty.dtype {
        return Err(cx.err("fused softmax operand and result of different C types"));
    }
    let outer: usize = dims[..axis].iter().product();
    let inner: usize = dims[axis + 1..].iter().product();
    let en = cx.name("fexp");
    let table: Vec<String> = s
        .exp
        .iter()
        .map(|&e| lit(cx, e, "exponential"))
        .collect::<Result<_>>()?;
    em.data_once(&en, || Ok(array("float", &en, &table)))?;
    let pname = cx.name("p");
    let p_init = format!(
        "static const qc_fsoftmax_t {pname} = {{{}, {}, {}, {en}, {}, {}}};\n",
        i32c(cx, outer)?,
        i32c(cx, dim)?,
        i32c(cx, inner)?,
        lit(cx, s.y_factor, "output factor floor(1 / scale)")?,
        s.y_zero_point
    );
    em.need(Piece::FusedSoftmax);
    em.data_once(&pname, || Ok(p_init))?;
    let conv = match s.q {
        QType::U8 => {
            r#"uint32_t u;
                if (v >= 0.0f && v < 0x1p63f) {
                    u = (uint32_t)(uint64_t)v;
                } else if (v >= -0x1p63f && v < 0.0f) {
                    u = (uint32_t)(int64_t)v;
                } else {
                    u = 0;
                }
                u += (uint32_t)p->zy;
                y[at + (size_t)d * (size_t)inner] = (uint8_t)(u > 255u ? 255u : u);"#
        }
        _ => {
            r#"uint32_t w = (uint32_t)((v >= -2147483648.0f && v < 2147483648.0f) ? (int32_t)v : INT32_MIN) + (uint32_t)p->zy;
                int64_t r = w >= 0x80000000u ? (int64_t)w - INT64_C(4294967296) : (int64_t)w;
                y[at + (size_t)d * (size_t)inner] = (int8_t)(r < -128 ? -128 : (r > 127 ? 127 : r));"#
        }
    };
    let t = ctype(ty.dtype);
    let kname = format!("qc_fsoftmax_{}", sfx(ty.dtype));
    em.kernel(&kname, || {
        format!(
            r#"
/* Fused quantized softmax (float contract): f32 sum of exp[max - x] in row order,
 * then round_half_even(exp * yf / sum) converted and offset by the zero point. */
static void {kname}(const {t} *x, {t} *y, const qc_fsoftmax_t *p)
{{
    int32_t o, i, d, dim = p->dim, inner = p->inner;
    for (o = 0; o < p->outer; o++) {{
        for (i = 0; i < inner; i++) {{
            size_t at = (size_t)o * (size_t)dim * (size_t)inner + (size_t)i;
            int32_t mx = (int32_t)x[at];
            float sum = 0.0f;
            for (d = 1; d < dim; d++) {{
                int32_t c = (int32_t)x[at + (size_t)d * (size_t)inner];
                if (c > mx) {{
                    mx = c;
                }}
            }}
            for (d = 0; d < dim; d++) {{
                sum += p->exp[mx - (int32_t)x[at + (size_t)d * (size_t)inner]];
            }}
            for (d = 0; d < dim; d++) {{
                float v = qc_rne_f32((p->exp[mx - (int32_t)x[at + (size_t)d * (size_t)inner]] * p->yf) / sum);
                {conv}
            }}
        }}
    }}
}}
"#
        )
    });
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    Ok(Some(format!("    {kname}({px}, {py}, &{pname});\n")))
}

/// The fused global average (`qc_qmath::FusedMean`) of node `cx` under the `float`
/// contract, or `None` when `qc_ir::fused` does not define it: per channel the
/// wrapping i32 sum of the codes plus `bias`, times `scale` in f32, clamped, rounded
/// half to even, plus the zero point.
pub(super) fn mean(em: &mut Em, cx: &Cx) -> Result<Option<String>> {
    let (x, y) = (cx.input(0)?, cx.output()?);
    let (tx, ty) = (em.ty(x)?.clone(), em.ty(y)?.clone());
    let Some(f) = qc_ir::fused::mean(&cx.node.op, &tx, &ty) else {
        return Ok(None);
    };
    let dims = tx.shape.dims();
    let nc: usize = dims.iter().take(2).product();
    let n: usize = dims.get(2..).map_or(1, |d| d.iter().product());
    if ty.shape.dims().iter().product::<usize>() != nc || tx.dtype != ty.dtype {
        return Err(cx.err("fused mean: one result per channel of the operand's type"));
    }
    let pname = cx.name("p");
    let init = format!(
        "static const qc_fmean_t {pname} = {{{}, {}, {}, {}, {}, {}, {}}};\n",
        i32c(cx, nc)?,
        i32c(cx, n)?,
        crate::emit::c_i32(f.bias),
        lit(cx, f.scale, "scale")?,
        lit(cx, f.lo, "bound")?,
        lit(cx, f.hi, "bound")?,
        f.y_zero_point
    );
    em.need(Piece::FusedMean);
    em.data_once(&pname, || Ok(init))?;
    let t = ctype(ty.dtype);
    let kname = format!("qc_fmean_{}", sfx(ty.dtype));
    em.kernel(&kname, || {
        format!(
            r#"
/* Fused quantized global average (float contract). */
static void {kname}(const {t} *x, {t} *y, const qc_fmean_t *p)
{{
    int32_t c, i;
    for (c = 0; c < p->nc; c++) {{
        uint32_t s = (uint32_t)p->bias;
        int32_t acc;
        float v;
        for (i = 0; i < p->n; i++) {{
            s += (uint32_t)(int32_t)x[(size_t)c * (size_t)p->n + (size_t)i];
        }}
        acc = s <= (uint32_t)INT32_MAX ? (int32_t)s : (int32_t)(s - (uint32_t)INT32_MAX - 1u) + INT32_MIN;
        v = (float)acc * p->scale;
        v = v < p->lo ? p->lo : v;
        v = v > p->hi ? p->hi : v;
        y[c] = ({t})(qc_rne(v) + p->zy);
    }}
}}
"#
        )
    });
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    Ok(Some(format!("    {kname}({px}, {py}, &{pname});\n")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use qc_qmath::AddForm;

    #[test]
    fn double_fma_agrees_for_ordinary_scales() {
        let f = FusedAdd::new(
            (0.037, 131),
            (0.11, -7),
            (0.021, 40),
            QType::U8,
            AddForm::Both,
        )
        .expect("valid parameters");
        assert_eq!(disagrees(&f, QType::U8, false), None);
    }

    #[test]
    fn double_rounding_is_caught() {
        // 65 * r = 2^-23 + 2^-53 exactly: 2.5 + that is 2.5 + 2^-23 in double (a tie
        // in f32, to even: 2.5, code 2) but above the tie for a fused multiply-add
        // (code 3).
        let f = FusedAdd {
            x_ratio: 0.0,
            y_ratio: 16_519_105.0 * 2f32.powi(-53),
            fixed: 2.5,
            swapped: false,
            lo: 0,
            hi: 255,
        };
        assert_eq!(f.apply(0, 65), 3);
        assert_eq!(f.finish(c_t(&f, 0, 65, false)), 2);
        assert_eq!(disagrees(&f, QType::U8, false), Some((0, 65)));
        assert_eq!(f.finish(c_t(&f, 0, 65, true)), 3);
        assert_eq!(disagrees(&f, QType::U8, true), None);
    }
}
