//! `cast` from or to f16 and bf16 (stored as their bits in `uint16_t`), as
//! `qc_ir`'s cast computes it with the `half` crate: the operand widened exactly to
//! f64 (integers by the C conversion, which rounds to nearest like Rust's `as f64`),
//! then
//! - to f16: through f32 (`(float)d`), then f32 → f16 rounded to nearest even, NaN
//!   quieted with the top payload bits — what `half` does on x86 CPUs with F16C,
//!   where it converts with `vcvtps2ph` (the interpreter's reference hosts);
//! - to bf16: `half`'s software conversion from the f64's upper 32 bits (the lower 32
//!   mantissa bits take no part in the rounding), NaN quieted;
//! - from f16/bf16: exact decoding (a NaN quieted, payload kept), then the ordinary
//!   conversion of that value.
//!
//! All of it is integer bit manipulation on `memcpy`'d float bits, plus the C
//! conversions between float, double and integers.

use qc_ir::DType;

use super::Cx;
use crate::emit::{ctype, Em};
use crate::Result;

const F16_TO_F32: &str = r#"
/* f16 bits to f32, exactly (subnormals normalized, NaN quieted with its payload). */
static float qc_f16_to_f32(uint16_t h)
{
    uint32_t s = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, b;
    float f;
    if (e == 0x1fu) {
        b = s | 0x7f800000u | (m != 0 ? 0x400000u | (m << 13) : 0u);
    } else if (e != 0) {
        b = s | ((e + 112u) << 23) | (m << 13);
    } else if (m == 0) {
        b = s;
    } else {
        e = 113u;
        while ((m & 0x400u) == 0) {
            m <<= 1;
            e--;
        }
        b = s | (e << 23) | ((m & 0x3ffu) << 13);
    }
    memcpy(&f, &b, 4);
    return f;
}
"#;

const BF16_TO_F32: &str = r#"
/* bf16 bits to f32, exactly (NaN quieted with its payload). */
static float qc_bf16_to_f32(uint16_t h)
{
    uint32_t b = (uint32_t)h << 16;
    float f;
    if ((h & 0x7fffu) > 0x7f80u) {
        b |= 0x400000u;
    }
    memcpy(&f, &b, 4);
    return f;
}
"#;

const F32_TO_F16: &str = r#"
/* f32 to f16 bits, rounded to nearest even (overflow to infinity, NaN quieted with
 * the top payload bits). */
static uint16_t qc_f32_to_f16(float f)
{
    uint32_t u, s, e, m, h, rem, half;
    int32_t x;
    memcpy(&u, &f, 4);
    s = (u >> 16) & 0x8000u;
    e = (u >> 23) & 0xffu;
    m = u & 0x7fffffu;
    if (e == 0xffu) {
        return (uint16_t)(s | 0x7c00u | (m != 0 ? 0x200u | (m >> 13) : 0u));
    }
    x = (int32_t)e - 112;
    if (x >= 31) {
        return (uint16_t)(s | 0x7c00u);
    }
    if (x <= 0) {
        uint32_t sh;
        if (x < -10) {
            return (uint16_t)s;
        }
        m |= 0x800000u;
        sh = (uint32_t)(14 - x);
        h = m >> sh;
        rem = m & ((1u << sh) - 1u);
        half = 1u << (sh - 1u);
    } else {
        h = ((uint32_t)x << 10) | (m >> 13);
        rem = m & 0x1fffu;
        half = 0x1000u;
    }
    if (rem > half || (rem == half && (h & 1u) != 0)) {
        h++;
    }
    return (uint16_t)(s | h);
}
"#;

const F64_TO_BF16: &str = r#"
/* f64 to bf16 bits from the upper 32 bits of the f64 alone: round to nearest even
 * on those bits, overflow to infinity, NaN quieted with the top payload bits. */
static uint16_t qc_f64_to_bf16(double d)
{
    uint64_t bits;
    uint32_t x, s, e, m, hs, hm, rb;
    int32_t he;
    memcpy(&bits, &d, 8);
    x = (uint32_t)(bits >> 32);
    s = x & 0x80000000u;
    e = x & 0x7ff00000u;
    m = x & 0x000fffffu;
    hs = s >> 16;
    if (e == 0x7ff00000u) {
        uint32_t nan = (m == 0 && (uint32_t)bits == 0) ? 0u : 0x40u;
        return (uint16_t)(hs | 0x7f80u | nan | (m >> 13));
    }
    he = (int32_t)(e >> 20) - 1023 + 127;
    if (he >= 0xff) {
        return (uint16_t)(hs | 0x7f80u);
    }
    if (he <= 0) {
        if (7 - he > 21) {
            return (uint16_t)hs;
        }
        m |= 0x00100000u;
        hm = m >> (14 - he);
        rb = 1u << (13 - he);
        if ((m & rb) != 0 && (m & (3u * rb - 1u)) != 0) {
            hm++;
        }
        return (uint16_t)(hs | hm);
    }
    hm = hs | ((uint32_t)he << 7) | (m >> 13);
    rb = 0x1000u;
    if ((m & rb) != 0 && (m & (3u * rb - 1u)) != 0) {
        hm++;
    }
    return (uint16_t)hm;
}
"#;

/// The statement of a cast from `from` to `to` (one of them f16 or bf16) of `n`
/// elements from `px` to `py`.
pub(super) fn cast(
    em: &mut Em,
    cx: &Cx,
    from: DType,
    to: DType,
    n: i32,
    px: &str,
    py: &str,
) -> Result<String> {
    if from == to {
        return Ok(format!(
            "    memcpy({py}, {px}, (size_t){n} * sizeof({py}[0]));\n"
        ));
    }
    let x = format!("{px}[i]");
    // The operand as a double, exactly as the interpreter widens it.
    let d = match from {
        DType::F16 => {
            em.kernel("qc_f16_to_f32", || F16_TO_F32.to_string());
            format!("(double)qc_f16_to_f32({x})")
        }
        DType::BF16 => {
            em.kernel("qc_bf16_to_f32", || BF16_TO_F32.to_string());
            format!("(double)qc_bf16_to_f32({x})")
        }
        DType::F64 => x.clone(),
        _ => format!("(double){x}"),
    };
    let yt = ctype(to);
    let body = match to {
        DType::F16 => {
            em.kernel("qc_f32_to_f16", || F32_TO_F16.to_string());
            if from == DType::F32 {
                format!("{py}[i] = qc_f32_to_f16({x});")
            } else {
                format!("{py}[i] = qc_f32_to_f16((float)({d}));")
            }
        }
        DType::BF16 => {
            em.kernel("qc_f64_to_bf16", || F64_TO_BF16.to_string());
            format!("{py}[i] = qc_f64_to_bf16({d});")
        }
        DType::F32 => format!("{py}[i] = (float)({d});"),
        DType::F64 => format!("{py}[i] = {d};"),
        DType::Bool => format!("{py}[i] = (uint8_t)(({d}) != 0.0);"),
        _ => {
            let (lo, hi, flo, fhi) = match to {
                DType::I8 => ("INT8_MIN", "INT8_MAX", -128.0, 127.0),
                DType::U8 => ("0", "UINT8_MAX", 0.0, 255.0),
                DType::I16 => ("INT16_MIN", "INT16_MAX", -32768.0, 32767.0),
                DType::U16 => ("0", "UINT16_MAX", 0.0, 65535.0),
                DType::I32 => ("INT32_MIN", "INT32_MAX", -2147483648.0, 2147483647.0),
                DType::U32 => ("0", "UINT32_MAX", 0.0, 4294967295.0),
                DType::I64 => ("INT64_MIN", "INT64_MAX", i64::MIN as f64, i64::MAX as f64),
                DType::U64 => ("0", "UINT64_MAX", 0.0, u64::MAX as f64),
                _ => return Err(cx.err(format!("cast to {to}"))),
            };
            // Saturating truncation, NaN to 0, compared in double as the other casts.
            format!("double v = {d};\n            {py}[i] = v != v ? ({yt})0 : v <= {flo:e} ? ({yt}){lo} : v >= {fhi:e} ? ({yt}){hi} : ({yt})v;")
        }
    };
    Ok(format!(
        "    {{\n        int32_t i;\n        for (i = 0; i < {n}; i++) {{\n            {body}\n        }}\n    }}\n"
    ))
}
