//! qc's own exp / ln / tanh / pow / sigmoid (`qc_ir::real`) as C functions.
//!
//! **Invariants.**
//! - Each C function performs `qc_ir::real`'s f32 operations in the same order, with
//!   the constants taken from `qc_ir::real` (written as exact hex literals), so with
//!   binary32 evaluation and no contraction (see `float_ops`) it returns the Rust
//!   function's bits for every input, NaN payloads included.
//! - Bit casts go through `memcpy`; float-to-int conversions truncate in range.
//! - A function is emitted once per model, only when some kernel asks for it, together
//!   with the helpers and functions it calls; the kernel keys sort before every other
//!   kernel's (`Em`'s kernels are emitted in key order), so definitions precede use.

use qc_ir::real;

use crate::emit::Em;
use crate::exact::c_float;

/// A function of this module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fn {
    /// `static float qc_expf(float)`.
    Exp,
    /// `static float qc_logf(float)`.
    Ln,
    /// `static float qc_tanhf(float)`.
    Tanh,
    /// `static float qc_powf(float, float)`.
    Pow,
    /// `static float qc_sigmoidf(float)`.
    Sigmoid,
}

/// Emit `f` (and what it calls) into the model's source.
pub(crate) fn require(em: &mut Em, f: Fn) {
    let deps: &[Fn] = match f {
        Fn::Exp => &[],
        Fn::Ln => &[],
        Fn::Tanh | Fn::Sigmoid => &[Fn::Exp],
        Fn::Pow => &[Fn::Exp, Fn::Ln],
    };
    for &d in deps {
        require(em, d);
    }
    em.kernel("0cmath_0float", || FLOAT_HELPERS.to_string());
    if matches!(f, Fn::Ln | Fn::Tanh) {
        em.kernel("0cmath_1bits", || BITS_HELPER.to_string());
    }
    let (key, make): (&str, fn() -> String) = match f {
        Fn::Exp => ("0cmath_2exp", exp_c),
        Fn::Ln => ("0cmath_3ln", ln_c),
        Fn::Tanh => ("0cmath_4tanh", tanh_c),
        Fn::Pow => ("0cmath_5pow", pow_c),
        Fn::Sigmoid => ("0cmath_6sigmoid", sigmoid_c),
    };
    em.kernel(key, make);
}

const FLOAT_HELPERS: &str = r#"
/* The f32 whose bits are b. */
static float qc_cm_float(uint32_t b)
{
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

/* 2^k for -126 <= k <= 127. */
static float qc_cm_pow2(int32_t k)
{
    return qc_cm_float((uint32_t)(k + 127) << 23);
}
"#;

const BITS_HELPER: &str = r#"
/* The bits of the f32 x. */
static uint32_t qc_cm_bits(float x)
{
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}
"#;

/// An exact C literal of a finite constant (an empty string, which fails to compile,
/// otherwise; the constants of `qc_ir::real` are all finite).
fn lit(x: f32) -> String {
    c_float(x).unwrap_or_default()
}

/// `p = c[0]; p = p * z + c[1]; ...`: `qc_ir::real`'s Horner order.
fn horner(p: &str, z: &str, c: &[f32]) -> String {
    let mut s = String::new();
    for (i, &k) in c.iter().enumerate() {
        if i == 0 {
            s.push_str(&format!("    {p} = {};\n", lit(k)));
        } else {
            s.push_str(&format!("    {p} = {p} * {z} + {};\n", lit(k)));
        }
    }
    s
}

fn exp_c() -> String {
    format!(
        r#"
/* qc's e^x: x = k ln2 + r, e^r by its Taylor series, scaled by 2^k. */
static float qc_expf(float x)
{{
    float t, kf, r, p, e;
    int32_t k;
    if (x != x) {{
        return x;
    }}
    if (x > {max}) {{
        return qc_cm_float(0x7f800000u);
    }}
    if (x < {min}) {{
        return 0.0f;
    }}
    t = x * {log2e};
    k = (int32_t)(t < 0.0f ? t - 0.5f : t + 0.5f);
    kf = (float)k;
    r = (x - kf * {hi}) - kf * {lo};
{poly}    e = 1.0f + (r + r * r * p);
    if (k > 127) {{
        return e * 2.0f * qc_cm_pow2(127);
    }}
    if (k < -126) {{
        return e * qc_cm_pow2(k + 100) * qc_cm_pow2(-100);
    }}
    return e * qc_cm_pow2(k);
}}
"#,
        max = lit(real::EXP_MAX_ARG),
        min = lit(real::EXP_MIN_ARG),
        log2e = lit(real::LOG2_E),
        hi = lit(real::LN2_HI),
        lo = lit(real::LN2_LO),
        poly = horner("p", "r", &real::EXP_POLY),
    )
}

fn ln_c() -> String {
    format!(
        r#"
/* qc's natural logarithm: x = 2^e m, ln m = f - s (f - T(s^2)), s = f / (2 + f). */
static float qc_logf(float x)
{{
    uint32_t b, mb;
    int32_t e = -127;
    float f, s, z, p, t, lm, ef;
    if (x != x || x == qc_cm_float(0x7f800000u)) {{
        return x;
    }}
    if (x < 0.0f) {{
        return qc_cm_float(0x7fc00000u);
    }}
    if (x == 0.0f) {{
        return qc_cm_float(0xff800000u);
    }}
    b = qc_cm_bits(x);
    if (b < 0x00800000u) {{
        b = qc_cm_bits(x * qc_cm_pow2(23));
        e -= 23;
    }}
    e += (int32_t)(b >> 23);
    mb = (b & 0x007fffffu) | 0x3f800000u;
    if (mb > 0x{sqrt2:08x}u) {{
        mb -= 0x00800000u;
        e += 1;
    }}
    f = qc_cm_float(mb) - 1.0f;
    s = f / (2.0f + f);
    z = s * s;
{poly}    t = z * p;
    lm = f - s * (f - t);
    if (e == 0) {{
        return lm;
    }}
    ef = (float)e;
    return ef * {hi} + (ef * {lo} + lm);
}}
"#,
        sqrt2 = real::LN_SQRT2_BITS,
        hi = lit(real::LN2_HI),
        lo = lit(real::LN2_LO),
        poly = horner("p", "z", &real::LN_POLY),
    )
}

fn tanh_c() -> String {
    format!(
        r#"
/* qc's hyperbolic tangent: x when tiny, a Taylor series while tanh < ~1/2, then
 * 1 - 2 / (e^(2|x|) + 1), saturated to +-1. */
static float qc_tanhf(float x)
{{
    float a, y, z, p;
    if (x != x) {{
        return x;
    }}
    a = qc_cm_float(qc_cm_bits(x) & 0x7fffffffu);
    if (a < {tiny}) {{
        return x;
    }}
    if (a > {sat}) {{
        y = 1.0f;
    }} else if (a < {series}) {{
        z = a * a;
{poly}        y = a + a * (z * p);
    }} else {{
        y = 1.0f - 2.0f / (qc_expf(a + a) + 1.0f);
    }}
    return x < 0.0f ? -y : y;
}}
"#,
        tiny = lit(real::TANH_TINY),
        sat = lit(real::TANH_SAT),
        series = lit(real::TANH_SERIES_MAX),
        poly = horner("p", "z", &real::TANH_POLY).replace("    ", "        "),
    )
}

fn pow_c() -> String {
    r#"
/* qc's x^y = e^(y ln x) (a NaN y returned as is). */
static float qc_powf(float x, float y)
{
    if (y != y) {
        return y;
    }
    return qc_expf(y * qc_logf(x));
}
"#
    .to_string()
}

fn sigmoid_c() -> String {
    r#"
/* The logistic function, on the side where e^x cannot overflow. */
static float qc_sigmoidf(float x)
{
    float e;
    if (x > 0.0f) {
        return 1.0f / (1.0f + qc_expf(-x));
    }
    e = qc_expf(x);
    return e / (1.0f + e);
}
"#
    .to_string()
}
