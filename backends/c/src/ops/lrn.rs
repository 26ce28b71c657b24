//! Quantized local response normalization.
//!
//! The interpreter defines it as dequantize → f32 lrn → quantize. Every output
//! depends on its own code and on the f32 sum of squares over a channel window, which
//! takes far too many values for tables, and `pow` of that sum has no exact integer
//! form, so there is no integer-only kernel: the fixed contracts reject it, and the
//! float contract runs the f32 lrn of `float_ops` (qc's own `qc_powf`) on a
//! dequantization table, then the threshold quantizer of the quantize op.

use qc_ir::LrnAttrs;
use qc_qmath::Contract;

use super::{i32c, numel, q8, qmin, sfx, Cx};
use crate::cmath;
use crate::emit::{array, ctype, Em};
use crate::exact::{self, key_f32, KEY_NEG_INF, KEY_POS_INF};
use crate::runtime::Piece;
use crate::Result;

pub(super) fn lrn(em: &mut Em, cx: &Cx, a: &LrnAttrs) -> Result<String> {
    if em.opts.contract != Contract::Float {
        return Err(cx.err(
            "quantized lrn has no integer-only form (its f32 pow of a channel-window sum \
             of squares cannot be tabulated); use the float contract",
        ));
    }
    let (x, y) = (cx.input(0)?, cx.output()?);
    let (tx, ty) = (em.ty(x)?.clone(), em.ty(y)?.clone());
    let (Some((qx, sx, zx)), Some((qy, sy, zy))) = (q8(&tx), q8(&ty)) else {
        return Err(cx.err("lrn: f32, or 8-bit per-tensor quantized operand and result"));
    };
    let d = tx.shape.dims().to_vec();
    if d.len() < 2 || a.size == 0 || ty.shape.dims() != d.as_slice() {
        return Err(cx.err("lrn needs rank >= 2, size > 0 and a result of the operand's shape"));
    }
    i32c(cx, numel(&tx))?;
    let outer = i32c(cx, d[0])?;
    let c = i32c(cx, d[1])?;
    let inner = i32c(cx, d[2..].iter().product())?;
    let lo = i32c(cx, (a.size - 1) / 2)?;
    let hi = i32c(cx, (a.size - 1).div_ceil(2))?;
    // The interpreter's alpha / size, rounded once from f64.
    let coef = (f64::from(a.alpha) / a.size as f64) as f32;
    let lit = |v: f32| exact::c_float(v).ok_or_else(|| cx.err(format!("constant {v}")));
    let (coef, bias, beta) = (lit(coef)?, lit(a.bias)?, lit(a.beta)?);
    let deq: Vec<String> = exact::lut(qx, |q| qc_qmath::dequantize(q, sx, zx))
        .into_iter()
        .map(lit)
        .collect::<Result<_>>()?;
    let dn = cx.name("deq");
    em.data_once(&dn, || Ok(array("float", &dn, &deq)))?;
    // Quantization of the f32 result: monotone in its key; NaN gives the zero point.
    let f = |k: i64| qc_qmath::quantize(key_f32(k), sy, zy, qy);
    let (base, taus) = exact::thresholds(KEY_NEG_INF, KEY_POS_INF, 256, f)
        .ok_or_else(|| cx.err("quantize thresholds"))?;
    let nan = qy.saturate(i64::from(zy));
    let tn = cx.name("thr");
    em.data_once(&tn, || Ok(array("int32_t", &tn, &taus)))?;
    em.need(Piece::Thresh32);
    em.need(Piece::F32Key);
    cmath::require(em, cmath::Fn::Pow);
    let (xt, yt) = (ctype(tx.dtype), ctype(ty.dtype));
    let kname = format!("qc_qlrn_{}_{}", sfx(tx.dtype), sfx(ty.dtype));
    em.kernel(&kname, || {
        format!(
            r#"
/* Quantized lrn (float contract): the f32 lrn of qc_flrn on dequantized codes
 * (deq[], indexed by code - xmin), quantized by thresholds on the result's key. */
static void {kname}(const {xt} *x, {yt} *y, const float *deq, int32_t xmin,
                    int32_t outer, int32_t c, int32_t inner, int32_t lo, int32_t hi,
                    float coef, float bias, float beta,
                    const int32_t *t, int32_t nt, int32_t base, int32_t nanv)
{{
    int32_t o, ch, cc, i;
    for (o = 0; o < outer; o++) {{
        const {xt} *xo = x + (size_t)o * (size_t)c * (size_t)inner;
        {yt} *yo = y + (size_t)o * (size_t)c * (size_t)inner;
        for (ch = 0; ch < c; ch++) {{
            int32_t first = ch - lo < 0 ? 0 : ch - lo;
            int32_t last = ch + hi + 1 < c ? ch + hi + 1 : c;
            for (i = 0; i < inner; i++) {{
                float s = 0.0f, r;
                uint32_t b;
                for (cc = first; cc < last; cc++) {{
                    float v = deq[(int32_t)xo[(size_t)cc * (size_t)inner + (size_t)i] - xmin];
                    s = s + v * v;
                }}
                r = deq[(int32_t)xo[(size_t)ch * (size_t)inner + (size_t)i] - xmin] / qc_powf(bias + coef * s, beta);
                memcpy(&b, &r, sizeof b);
                if ((b & 0x7fffffffu) > 0x7f800000u) {{
                    yo[(size_t)ch * (size_t)inner + (size_t)i] = ({yt})nanv;
                }} else {{
                    yo[(size_t)ch * (size_t)inner + (size_t)i] = ({yt})(base + qc_thresh32(t, nt, qc_f32_key(b)));
                }}
            }}
        }}
    }}
}}
"#
        )
    });
    let (px, py) = (em.ptr(x)?, em.ptr(y)?);
    Ok(format!(
        "    {kname}({px}, {py}, {dn}, {}, {outer}, {c}, {inner}, {lo}, {hi}, {coef}, {bias}, {beta}, {tn}, {}, {base}, {nan});\n",
        qmin(qx),
        taus.len()
    ))
}
