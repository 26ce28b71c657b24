//! Compile-time reformulation of the interpreter's f32 arithmetic as integer tables.
//!
//! The interpreter defines every quantized op except conv/gemm/matmul as
//! "dequantize → f32 op → quantize". For an integer-only C build each such op is
//! rewritten here into tables that reproduce those f32 results exactly:
//!
//! - a function of one 8-bit code is a 256-entry lookup table evaluated with the
//!   interpreter's own formula ([`lut`]);
//! - a result that is a monotone function of one exactly known quantity (an exact
//!   fixed-point sum, or an f32 whose bits the C code computes with the integer
//!   soft-float of `runtime`) is a sorted list of thresholds ([`thresholds`]): the
//!   result is the smallest level plus the number of thresholds at or below the key.
//!
//! **Invariants.** Every function here evaluates the very expression the interpreter
//! evaluates (same `qc_qmath`/`qc_ir::real` calls, same f32 operation order), so a table
//! entry is the reference value; monotonicity of each thresholded function follows
//! from IEEE rounding being monotone and the ops (sum, positive division, relu/clip,
//! quantize) being non-decreasing. Fixed-point units are chosen so that every sum the
//! C code forms is exact in `int64_t` (checked, else the op is rejected).

use qc_ir::QType;

/// Order-preserving integer key of f32 bits (both zeros map to 0), as the C `qc_f32_key`.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn f32_key(x: f32) -> i64 {
    let b = x.to_bits();
    if b & 0x8000_0000 != 0 {
        -i64::from(b & 0x7fff_ffff)
    } else {
        i64::from(b)
    }
}

/// The f32 of a key in `[-0x7f80_0000, 0x7f80_0000]`.
pub(crate) fn key_f32(k: i64) -> f32 {
    if k >= 0 {
        f32::from_bits(k as u32)
    } else {
        f32::from_bits(((-k) as u32) | 0x8000_0000)
    }
}

pub(crate) const KEY_NEG_INF: i64 = -0x7f80_0000;
pub(crate) const KEY_POS_INF: i64 = 0x7f80_0000;

/// Thresholds of a monotone non-decreasing `f` on keys `[lo, hi]`:
/// `f(k) == base + #{t in taus : t <= k}` for every `k` in range. `None` when `f`
/// takes more than `max_levels` distinct values (the table would be too large).
pub(crate) fn thresholds(
    lo: i64,
    hi: i64,
    max_levels: i64,
    f: impl Fn(i64) -> i64,
) -> Option<(i64, Vec<i64>)> {
    let base = f(lo);
    let top = f(hi);
    if top < base || top - base > max_levels {
        return None;
    }
    let mut taus = Vec::new();
    let mut from = lo;
    for level in base + 1..=top {
        // Smallest k in [from, hi] with f(k) >= level (exists since f(hi) = top).
        let (mut a, mut b) = (from, hi);
        while a < b {
            let mid = a + (b - a) / 2;
            if f(mid) >= level {
                b = mid;
            } else {
                a = mid + 1;
            }
        }
        taus.push(a);
        from = a;
    }
    Some((base, taus))
}

/// An f32 as `m * 2^e` with odd integer `m` (or `(0, 0)` for zero); `None` for
/// infinities and NaN.
pub(crate) fn f32_parts(x: f32) -> Option<(i64, i32)> {
    if !x.is_finite() {
        return None;
    }
    if x == 0.0 {
        return Some((0, 0));
    }
    let b = x.to_bits();
    let biased = ((b >> 23) & 0xff) as i32;
    let (mut m, mut e) = if biased == 0 {
        (i64::from(b & 0x7f_ffff), -149)
    } else {
        (i64::from((b & 0x7f_ffff) | 0x80_0000), biased - 150)
    };
    while m & 1 == 0 {
        m >>= 1;
        e += 1;
    }
    Some((if b >> 31 != 0 { -m } else { m }, e))
}

/// Express f32 values as exact integers in a common unit `2^l`: returns `(l, ints)`.
/// `None` if some value is not finite or an integer would reach `2^limit_bits`.
pub(crate) fn fixed_point(vals: &[f32], limit_bits: u32) -> Option<(i32, Vec<i64>)> {
    let parts: Vec<(i64, i32)> = vals.iter().map(|&v| f32_parts(v)).collect::<Option<_>>()?;
    let l = parts
        .iter()
        .filter(|(m, _)| *m != 0)
        .map(|(_, e)| *e)
        .min()
        .unwrap_or(0);
    let mut out = Vec::with_capacity(vals.len());
    for (m, e) in parts {
        let sh = u32::try_from(e - l).ok()?;
        if sh >= 62 {
            return None;
        }
        let v = m.checked_mul(1i64 << sh)?;
        if v.unsigned_abs() >= 1u64 << limit_bits {
            return None;
        }
        out.push(v);
    }
    Some((l, out))
}

/// `x * 2^l` exactly in f64 (`|x| < 2^53` and `l` within the f64 exponent range).
pub(crate) fn scaled(x: i64, l: i32) -> f64 {
    (x as f64) * 2f64.powi(l)
}

/// The codes of an 8-bit storage type, in order.
pub(crate) fn codes(q: QType) -> std::ops::RangeInclusive<i64> {
    q.min()..=q.max()
}

/// A function of every code of an 8-bit type: `lut(q, f)[i] = f(q.min() + i)`.
pub(crate) fn lut<T>(q: QType, f: impl Fn(i64) -> T) -> Vec<T> {
    codes(q).map(f).collect()
}

/// C99 hexadecimal literal of an f32 (exact); `None` for infinities and NaN.
pub(crate) fn c_float(x: f32) -> Option<String> {
    if !x.is_finite() {
        return None;
    }
    let b = x.to_bits();
    let sign = if b >> 31 != 0 { "-" } else { "" };
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    Some(if exp == 0 && man == 0 {
        format!("{sign}0.0f")
    } else if exp == 0 {
        format!("{sign}0x0.{:06x}p-126f", man << 1)
    } else {
        format!("{sign}0x1.{:06x}p{}f", man << 1, exp - 127)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_like_floats() {
        let xs = [-3.5f32, -1e-30, -0.0, 0.0, 1e-38, 0.5, 7.0, f32::INFINITY];
        for w in xs.windows(2) {
            assert!(f32_key(w[0]) <= f32_key(w[1]), "{w:?}");
            if w[1] != 0.0 {
                assert_eq!(key_f32(f32_key(w[1])).to_bits(), w[1].to_bits());
            }
        }
        assert_eq!(f32_key(-0.0), f32_key(0.0));
    }

    #[test]
    fn thresholds_reproduce_a_step_function() {
        // f(k) = floor(k / 3) on [-7, 8]: levels -3..=2.
        let f = |k: i64| k.div_euclid(3);
        let (base, taus) = thresholds(-7, 8, 100, f).expect("levels");
        assert_eq!(base, -3);
        assert_eq!(taus, vec![-6, -3, 0, 3, 6]);
        for k in -7..=8 {
            let got = base + taus.iter().filter(|&&t| t <= k).count() as i64;
            assert_eq!(got, f(k), "{k}");
        }
        assert!(thresholds(0, 100, 5, |k| k).is_none());
    }

    #[test]
    fn fixed_point_is_exact() {
        // 0.75 = 3 * 2^-2, 0.1f32 = 13421773 * 2^-27, -2 = -1 * 2^1.
        let (l, v) = fixed_point(&[0.75, 0.1, -2.0, 0.0], 62).expect("fits");
        assert_eq!(l, -27);
        assert_eq!(v, vec![3 << 25, 13_421_773, -(1 << 28), 0]);
        assert!(fixed_point(&[1e30, 1e-30], 62).is_none());
    }

    #[test]
    fn hex_floats() {
        assert_eq!(c_float(1.0).as_deref(), Some("0x1.000000p0f"));
        assert_eq!(c_float(-0.75).as_deref(), Some("-0x1.800000p-1f"));
        assert_eq!(c_float(-0.0).as_deref(), Some("-0.0f"));
        assert_eq!(c_float(f32::NAN), None);
    }
}
