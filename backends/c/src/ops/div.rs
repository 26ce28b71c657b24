//! `div` on raw integer tensors and on 8-bit quantized ones (f32 division is
//! `float_ops`').
//!
//! - Raw integers (the interpreter's `int` module): every divisor element is checked
//!   first and a zero makes the entry point return 3 (the interpreter rejects the
//!   run); quotients truncate toward zero, and the one overflowing quotient
//!   (`MIN / -1`) wraps to `MIN`, as the interpreter's i128 quotient narrowed back.
//! - Quantized: dequantize → f32 division → quantize. Both dequantized operands are
//!   tabled as f32 bits; the quotient of two nonzero values is the integer
//!   soft-float `qc_f32_div` (checked at compile time to see only normal operands
//!   and results), a zero divisor gives ±∞ or NaN as in IEEE, and the result code is
//!   a threshold lookup on the quotient's key, as the softmax's.

use qc_ir::DType;

use super::{bcast4, i32c, numel, q8, qmin, sfx, Cx};
use crate::emit::{array, ctype, Em};
use crate::exact::{self, key_f32, KEY_NEG_INF, KEY_POS_INF};
use crate::runtime::Piece;
use crate::Result;

/// `qc_ew_t` initializer of a broadcasting binary op (at most 4 loops after merging dims).
fn ew_params(em: &mut Em, cx: &Cx, a: &[usize], b: &[usize], out: &[usize]) -> Result<String> {
    let (d4, st) = bcast4(cx, &[a, b], out)?;
    let (sa4, sb4) = (st[0], st[1]);
    let j = |v: [i32; 4]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let pname = cx.name("p");
    let init = format!(
        "static const qc_ew_t {pname} = {{{{{}}}, {{{}}}, {{{}}}}};\n",
        j(d4),
        j(sa4),
        j(sb4)
    );
    em.need(Piece::EwParams);
    em.data_once(&pname, || Ok(init))?;
    Ok(pname)
}

/// The loops of a broadcasting binary kernel around `body`, which sees `ia`, `ib`
/// (operand indices) and `o` (result index, to increment).
fn ew_loops(body: &str) -> String {
    format!(
        r#"    int32_t i0, i1, i2, i3;
    size_t o = 0;
    for (i0 = 0; i0 < p->d[0]; i0++) {{
        for (i1 = 0; i1 < p->d[1]; i1++) {{
            for (i2 = 0; i2 < p->d[2]; i2++) {{
                size_t ja = (size_t)(i0 * p->sa[0] + i1 * p->sa[1] + i2 * p->sa[2]);
                size_t jb = (size_t)(i0 * p->sb[0] + i1 * p->sb[1] + i2 * p->sb[2]);
                for (i3 = 0; i3 < p->d[3]; i3++) {{
                    size_t ia = ja + (size_t)(i3 * p->sa[3]);
                    size_t ib = jb + (size_t)(i3 * p->sb[3]);
{body}
                }}
            }}
        }}
    }}
"#
    )
}

pub(super) fn div(em: &mut Em, cx: &Cx) -> Result<String> {
    let (a, b, y) = (cx.input(0)?, cx.input(1)?, cx.output()?);
    let (ta, tb, ty) = (em.ty(a)?.clone(), em.ty(b)?.clone(), em.ty(y)?.clone());
    if ta.is_quantized() || tb.is_quantized() || ty.is_quantized() {
        return quantized(em, cx);
    }
    let t = ty.dtype;
    if ta.dtype != t || tb.dtype != t {
        return Err(cx.err("integer div of operands and result of different types"));
    }
    let ct = ctype(t);
    let quotient = match t {
        DType::I8 | DType::I16 => {
            let (max, min) = if t == DType::I8 {
                ("INT8_MAX", "INT8_MIN")
            } else {
                ("INT16_MAX", "INT16_MIN")
            };
            format!(
                "int32_t q = (int32_t)u / (int32_t)v;\n                    y[o++] = q > {max} ? {min} : ({ct})q;"
            )
        }
        DType::I32 | DType::I64 => {
            let min = if t == DType::I32 {
                "INT32_MIN"
            } else {
                "INT64_MIN"
            };
            format!("y[o++] = v == -1 ? (u == {min} ? {min} : ({ct})-u) : ({ct})(u / v);")
        }
        DType::U8 | DType::U16 | DType::U32 | DType::U64 => format!("y[o++] = ({ct})(u / v);"),
        _ => return Err(cx.err(format!("div of raw {t} (integer or f32 only)"))),
    };
    let pname = ew_params(em, cx, ta.shape.dims(), tb.shape.dims(), ty.shape.dims())?;
    let nb = i32c(cx, numel(&tb))?;
    let kname = format!("qc_divi_{}", sfx(t));
    em.kernel(&kname, || {
        let body = format!(
            "                    {ct} u = a[ia], v = b[ib];\n                    {quotient}"
        );
        let loops = ew_loops(&body);
        format!(
            r#"
/* Integer division truncating toward zero, MIN / -1 wrapping to MIN; 3 when some
 * divisor element is zero (nothing is written then). */
static int {kname}(const {ct} *a, const {ct} *b, {ct} *y, const qc_ew_t *p, int32_t nb)
{{
    int32_t k;
    for (k = 0; k < nb; k++) {{
        if (b[k] == 0) {{
            return 3;
        }}
    }}
    {{
{loops}    }}
    return 0;
}}
"#
        )
    });
    let (pa, pb, py) = (em.ptr(a)?, em.ptr(b)?, em.ptr(y)?);
    Ok(format!(
        "    if ({kname}({pa}, {pb}, {py}, &{pname}, {nb}) != 0) {{\n        return 3;\n    }}\n"
    ))
}

fn quantized(em: &mut Em, cx: &Cx) -> Result<String> {
    let (a, b, y) = (cx.input(0)?, cx.input(1)?, cx.output()?);
    let (ta, tb, ty) = (em.ty(a)?.clone(), em.ty(b)?.clone(), em.ty(y)?.clone());
    let (Some((qa, sa, za)), Some((qb, sb, zb)), Some((qy, sy, zy))) = (q8(&ta), q8(&tb), q8(&ty))
    else {
        return Err(cx.err("div kernels need 8-bit per-tensor quantized operands and result"));
    };
    let da: Vec<f32> = exact::lut(qa, |q| qc_qmath::dequantize(q, sa, za));
    let db: Vec<f32> = exact::lut(qb, |q| qc_qmath::dequantize(q, sb, zb));
    // Every nonzero operand normal, every quotient of two of them normal.
    let mags = |v: &[f32]| -> Option<(f64, f64)> {
        let nz: Vec<f64> = v
            .iter()
            .filter(|x| **x != 0.0)
            .map(|x| f64::from(x.abs()))
            .collect();
        let lo = nz.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = nz.iter().copied().fold(0.0, f64::max);
        (v.iter()
            .all(|x| x.is_finite() && (*x == 0.0 || x.is_normal()))
            && !nz.is_empty())
        .then_some((lo, hi))
    };
    let (Some((alo, ahi)), Some((blo, bhi))) = (mags(&da), mags(&db)) else {
        return Err(cx.err("dequantized operands outside the normal f32 range"));
    };
    let min_normal = f64::from(f32::MIN_POSITIVE) * 2.0;
    if alo / bhi < min_normal || ahi / blo > f64::from(f32::MAX) / 2.0 {
        return Err(cx.err("quotients would leave the normal f32 range"));
    }
    let f = |k: i64| qc_qmath::quantize(key_f32(k), sy, zy, qy);
    let (base, taus) = exact::thresholds(KEY_NEG_INF, KEY_POS_INF, 256, f)
        .ok_or_else(|| cx.err("div thresholds"))?;
    let nan = qc_qmath::quantize(f32::NAN, sy, zy, qy);
    let (an, bn, tn) = (cx.name("da"), cx.name("db"), cx.name("thr"));
    let bits = |v: &[f32]| -> Vec<String> {
        v.iter()
            .map(|x| format!("0x{:08x}u", x.to_bits()))
            .collect()
    };
    let (ab, bb) = (bits(&da), bits(&db));
    em.data_once(&an, || Ok(array("uint32_t", &an, &ab)))?;
    em.data_once(&bn, || Ok(array("uint32_t", &bn, &bb)))?;
    em.data_once(&tn, || Ok(array("int32_t", &tn, &taus)))?;
    let pname = ew_params(em, cx, ta.shape.dims(), tb.shape.dims(), ty.shape.dims())?;
    em.need(Piece::F32Div);
    em.need(Piece::Thresh32);
    let (at, bt, yt) = (ctype(ta.dtype), ctype(tb.dtype), ctype(ty.dtype));
    let (amin, bmin) = (qmin(qa), qmin(qb));
    let kname = format!(
        "qc_divq_{}_{}_{}",
        sfx(ta.dtype),
        sfx(tb.dtype),
        sfx(ty.dtype)
    );
    em.kernel(&kname, || {
        let body = format!(
            r#"                    uint32_t u = da[(int32_t)a[ia] - ({amin})], v = db[(int32_t)b[ib] - ({bmin})];
                    int32_t k;
                    if ((v & 0x7fffffffu) == 0) {{
                        if ((u & 0x7fffffffu) == 0) {{
                            y[o++] = ({yt})nan;
                            continue;
                        }}
                        k = ((u ^ v) >> 31) ? -0x7f800000 : 0x7f800000;
                    }} else if ((u & 0x7fffffffu) == 0) {{
                        k = 0;
                    }} else {{
                        k = qc_f32_key(qc_f32_div(u & 0x7fffffffu, v & 0x7fffffffu) | ((u ^ v) & 0x80000000u));
                    }}
                    y[o++] = ({yt})(base + qc_thresh32(t, nt, k));"#
        );
        let loops = ew_loops(&body);
        format!(
            r#"
/* Quantized div: the f32 quotient of the dequantized operands (bits da, db) in
 * integer soft-float, ±inf for a zero divisor, the NaN of 0 / 0 to the code nan;
 * the result code by thresholds on the quotient's key. */
static void {kname}(const {at} *a, const {bt} *b, {yt} *y, const qc_ew_t *p, const uint32_t *da, const uint32_t *db, const int32_t *t, int32_t nt, int32_t base, int32_t nan)
{{
{loops}}}
"#
        )
    });
    let (pa, pb, py) = (em.ptr(a)?, em.ptr(b)?, em.ptr(y)?);
    Ok(format!(
        "    {kname}({pa}, {pb}, {py}, &{pname}, {an}, {bn}, {tn}, {}, {base}, {nan});\n",
        taus.len()
    ))
}
