//! Choosing a scale and zero point from an observed range `[min, max]` (per tensor;
//! callers loop over channels for per-axis parameters).
//!
//! Invariants of every result `(scale, zero_point)`: `scale` is a finite, normal,
//! positive f32; `zero_point` lies in the storage type's range; the real value 0 is
//! exactly representable (it quantizes to `zero_point`), because the range is always
//! widened to include 0 first. A degenerate range (all zeros, or one whose scale would
//! fall below the smallest normal f32) gets scale 1.0, as onnxruntime's
//! `compute_scale_zp` does: any scale represents zeros, and a subnormal scale would
//! make `x / scale` overflow for ordinary inputs.

use crate::round::round_half_even_f64;
use crate::{Error, QType, Result};

fn check_range(min: f32, max: f32) -> Result<()> {
    if !(min.is_finite() && max.is_finite()) {
        return Err(Error::InvalidRange {
            min,
            max,
            why: "bounds must be finite",
        });
    }
    if min > max {
        return Err(Error::InvalidRange {
            min,
            max,
            why: "min is greater than max",
        });
    }
    Ok(())
}

/// Asymmetric parameters covering `[min, max]` widened to include 0:
/// `scale = (max - min) / (qmax - qmin)` (in f32), `zero_point =
/// round_half_even(qmin - min / scale)` (in f64 from the f32 values) clamped into `q`'s
/// range.
///
/// `min == max == 0` (or any range whose scale is below the smallest normal f32) gives
/// `(1.0, 0)`; 0 is in every type's range and, with any scale, represents the zeros.
/// Errors for NaN/∞ bounds, `min > max`, or a range too wide for an f32 scale.
pub fn choose_asymmetric(min: f32, max: f32, q: QType) -> Result<(f32, i32)> {
    check_range(min, max)?;
    let (lo, hi) = (min.min(0.0), max.max(0.0));
    let steps = (q.max() - q.min()) as f32;
    let scale = (hi - lo) / steps;
    if !scale.is_finite() {
        return Err(Error::InvalidRange {
            min,
            max,
            why: "range too wide for an f32 scale",
        });
    }
    if scale < f32::MIN_POSITIVE {
        return Ok((1.0, 0));
    }
    let zp = round_half_even_f64(q.min() as f64 - f64::from(lo) / f64::from(scale));
    Ok((scale, saturate_zero_point(zp, q)))
}

/// Symmetric parameters: `scale = max(|min|, |max|) / q.symmetric_max()` (in f32; 127 for
/// 8-bit types, so i8 weights use the restricted range `[-127, 127]`), zero point 0 for
/// signed types and the midpoint for unsigned ones (128 for u8, 32768 for u16).
///
/// An all-zero range gives scale 1.0. Errors for NaN/∞ bounds or `min > max`.
pub fn choose_symmetric(min: f32, max: f32, q: QType) -> Result<(f32, i32)> {
    check_range(min, max)?;
    let absmax = min.abs().max(max.abs());
    let scale = absmax / q.symmetric_max() as f32;
    if scale < f32::MIN_POSITIVE {
        return Ok((1.0, q.symmetric_zero_point()));
    }
    Ok((scale, q.symmetric_zero_point()))
}

/// Power-of-two parameters: the smallest `2^k` (`k` an integer) with
/// `2^k * q.symmetric_max() >= max(|min|, |max|)`, zero point as in
/// [`choose_symmetric`]. Requantizing between such scales is a pure shift, which small
/// MCUs without a fast multiplier want.
///
/// `k` is kept within f32's normal exponents: an all-zero range gives `2^0 = 1.0`, and
/// ranges needing `k < -126` get `2^-126` (which still covers them). Errors for NaN/∞
/// bounds or `min > max`.
pub fn choose_power_of_two(min: f32, max: f32, q: QType) -> Result<(f32, i32)> {
    check_range(min, max)?;
    let zp = q.symmetric_zero_point();
    let absmax = f64::from(min.abs().max(max.abs()));
    if absmax == 0.0 {
        return Ok((1.0, zp));
    }
    let qmax = q.symmetric_max() as f64;
    // 2^k * qmax is exact in f64 (qmax < 2^32), so the comparison decides exactly; the
    // logarithm only gives a starting point to correct.
    let covers = |k: i32| 2f64.powi(k) * qmax >= absmax;
    let mut k = (absmax / qmax).log2().ceil() as i32;
    while covers(k - 1) {
        k -= 1;
    }
    while !covers(k) {
        k += 1;
    }
    let k = k.max(-126);
    if k > 127 {
        return Err(Error::InvalidRange {
            min,
            max,
            why: "range too wide for an f32 scale",
        });
    }
    // The f32 with biased exponent k + 127 and an empty mantissa is exactly 2^k.
    let scale = f32::from_bits(((k + 127) as u32) << 23);
    Ok((scale, zp))
}

fn saturate_zero_point(zp: f64, q: QType) -> i32 {
    // Every QType's range fits in i32, so the saturated value converts losslessly.
    q.saturate(zp as i64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::round::{dequantize, quantize};

    #[test]
    fn asymmetric_hand_cases() {
        // [-64, 191]: range 255 over 255 steps -> scale 1, zp = 0 - (-64) / 1 = 64.
        assert_eq!(choose_asymmetric(-64.0, 191.0, QType::U8), Ok((1.0, 64)));
        // [-0.25, 63.5]: 63.75 / 255 = 0.25, zp = 0.25 / 0.25 = 1.
        assert_eq!(choose_asymmetric(-0.25, 63.5, QType::U8), Ok((0.25, 1)));
        // [-0.375, 63.375]: 63.75 / 255 = 0.25, zp = 1.5 -> 2 (even);
        // [-0.625, 63.125]: zp = 2.5 -> 2 (even).
        assert_eq!(choose_asymmetric(-0.375, 63.375, QType::U8), Ok((0.25, 2)));
        assert_eq!(choose_asymmetric(-0.625, 63.125, QType::U8), Ok((0.25, 2)));
        // i8: [-10, 245], scale 1, zp = -128 + 10 = -118.
        assert_eq!(choose_asymmetric(-10.0, 245.0, QType::I8), Ok((1.0, -118)));
        // u16: [-1, 254.99609375]: 255.99609375 = 65535 / 256, scale 2^-8, zp = 256.
        assert_eq!(
            choose_asymmetric(-1.0, 65_279.0 / 256.0, QType::U16),
            Ok((0.003_906_25, 256))
        );
        // i32: [-1, 1]: 4294967295 as f32 = 2^32, scale 2 / 2^32 = 2^-31,
        // zp = -2^31 + 1 / 2^-31 = 0.
        assert_eq!(
            choose_asymmetric(-1.0, 1.0, QType::I32),
            Ok((2f32.powi(-31), 0))
        );
    }

    #[test]
    fn asymmetric_widens_to_include_zero() {
        // [2, 10] becomes [0, 10]: zp = qmin.
        let (s, zp) = choose_asymmetric(2.0, 10.0, QType::U8).unwrap_or_default();
        assert_eq!((s, zp), (10.0 / 255.0, 0));
        assert_eq!(
            choose_asymmetric(2.0, 10.0, QType::I8).map(|p| p.1),
            Ok(-128)
        );
        // [-10, -2] becomes [-10, 0]: zp = qmin + 255 = qmax.
        assert_eq!(
            choose_asymmetric(-10.0, -2.0, QType::U8).map(|p| p.1),
            Ok(255)
        );
        assert_eq!(
            choose_asymmetric(-10.0, -2.0, QType::I8).map(|p| p.1),
            Ok(127)
        );
    }

    #[test]
    fn degenerate_ranges_get_scale_one() {
        for q in [QType::U8, QType::I8, QType::U16, QType::I16, QType::I32] {
            assert_eq!(choose_asymmetric(0.0, 0.0, q), Ok((1.0, 0)), "{q:?}");
            // 1e-40 is subnormal: its scale would be too.
            assert_eq!(choose_asymmetric(0.0, 1e-40, q), Ok((1.0, 0)), "{q:?}");
            assert_eq!(choose_symmetric(0.0, 0.0, q).map(|p| p.0), Ok(1.0), "{q:?}");
            assert_eq!(
                choose_power_of_two(0.0, 0.0, q).map(|p| p.0),
                Ok(1.0),
                "{q:?}"
            );
        }
    }

    #[test]
    fn bad_ranges_are_errors() {
        type Chooser = fn(f32, f32, QType) -> Result<(f32, i32)>;
        let choosers: [Chooser; 3] = [choose_asymmetric, choose_symmetric, choose_power_of_two];
        for choose in choosers {
            for (min, max) in [
                (f32::NAN, 1.0),
                (0.0, f32::NAN),
                (f32::NEG_INFINITY, 0.0),
                (0.0, f32::INFINITY),
                (2.0, 1.0),
            ] {
                assert!(
                    matches!(choose(min, max, QType::U8), Err(Error::InvalidRange { .. })),
                    "{min} {max}"
                );
            }
        }
        // Finite bounds whose difference overflows f32.
        assert!(choose_asymmetric(-3e38, 3e38, QType::U8).is_err());
    }

    #[test]
    fn asymmetric_range_ends_round_trip_within_half_a_step() {
        let mut s = 0x1234_5678_9abc_def1_u64;
        for _ in 0..20_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let a = ((s & 0xffff) as f32 / 65535.0 - 0.7) * 40.0;
            let b = (((s >> 16) & 0xffff) as f32 / 65535.0 - 0.3) * 40.0;
            let (min, max) = if a <= b { (a, b) } else { (b, a) };
            for q in [QType::U8, QType::I8, QType::I16] {
                let Ok((scale, zp)) = choose_asymmetric(min, max, q) else {
                    unreachable!("finite ordered range {min} {max}")
                };
                assert!(i64::from(zp) >= q.min() && i64::from(zp) <= q.max());
                // Zero is exact.
                assert_eq!(dequantize(quantize(0.0, scale, zp, q), scale, zp), 0.0);
                // The ends of the (widened) range are representable to half a step
                // (the zero point's rounding moves the grid by at most that), plus the
                // f32 rounding of the scale, which the (q - zp) steps multiply.
                for x in [min.min(0.0), max.max(0.0)] {
                    let back = dequantize(quantize(x, scale, zp, q), scale, zp);
                    assert!(
                        (back - x).abs() <= scale * 0.5 + x.abs() * 1e-6,
                        "{q:?} [{min}, {max}] {x} -> {back}"
                    );
                }
            }
        }
    }

    #[test]
    fn symmetric_hand_cases() {
        // absmax 63.5 = 127 * 0.5.
        assert_eq!(choose_symmetric(-63.5, 1.0, QType::I8), Ok((0.5, 0)));
        assert_eq!(choose_symmetric(-10.0, 63.5, QType::U8), Ok((0.5, 128)));
        // absmax 8191.75 = 32767 * 0.25.
        assert_eq!(choose_symmetric(-8191.75, 0.0, QType::I16), Ok((0.25, 0)));
        assert_eq!(
            choose_symmetric(0.0, 8191.75, QType::U16),
            Ok((0.25, 32_768))
        );
        // i32: 2147483647 as f32 = 2^31.
        assert_eq!(
            choose_symmetric(-1.0, 0.5, QType::I32),
            Ok((2f32.powi(-31), 0))
        );
        // Restricted range: -absmax quantizes to -127, not -128.
        let (scale, zp) = choose_symmetric(-63.5, 63.5, QType::I8).unwrap_or_default();
        assert_eq!(quantize(-63.5, scale, zp, QType::I8), -127);
        assert_eq!(quantize(63.5, scale, zp, QType::I8), 127);
        let (scale, zp) = choose_symmetric(-63.5, 63.5, QType::U8).unwrap_or_default();
        assert_eq!(quantize(-63.5, scale, zp, QType::U8), 1);
        assert_eq!(quantize(63.5, scale, zp, QType::U8), 255);
    }

    #[test]
    fn power_of_two_hand_cases() {
        // 1 / 127 = 0.00787: 2^-7 = 0.0078125 is too small, 2^-6 covers.
        assert_eq!(
            choose_power_of_two(-1.0, 0.5, QType::I8),
            Ok((0.015_625, 0))
        );
        // 15.875 = 127 * 2^-3 exactly: 2^-3 covers, and just above needs 2^-2.
        assert_eq!(choose_power_of_two(0.0, 15.875, QType::I8), Ok((0.125, 0)));
        assert_eq!(choose_power_of_two(0.0, 15.876, QType::I8), Ok((0.25, 0)));
        // 100 <= 127 * 1, 100 > 127 / 2.
        assert_eq!(choose_power_of_two(0.0, 100.0, QType::U8), Ok((1.0, 128)));
        // i16: 32767 * 2^-15 < 1 <= 32767 * 2^-14.
        assert_eq!(
            choose_power_of_two(-1.0, 1.0, QType::I16),
            Ok((2f32.powi(-14), 0))
        );
        // f32::MAX = (2 - 2^-23) 2^127; / 127 is about 2^121.01 -> 2^122.
        assert_eq!(
            choose_power_of_two(-f32::MAX, 0.0, QType::I8),
            Ok((2f32.powi(122), 0))
        );
        // A subnormal range would need 2^-156: clamped to the smallest normal, 2^-126.
        assert_eq!(
            choose_power_of_two(0.0, 1e-44, QType::I8),
            Ok((f32::MIN_POSITIVE, 0))
        );
    }
}
