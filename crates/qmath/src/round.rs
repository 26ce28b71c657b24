//! Rounding and the float ↔ quantized conversions of ONNX `QuantizeLinear` /
//! `DequantizeLinear`.
//!
//! Invariants: rounding to integer is always ties-to-even here (numpy `rint`, C
//! `nearbyint` in the default rounding mode, the `cvtps2dq` that onnxruntime's MLAS uses);
//! every result is saturated into the storage type, never wrapped; a NaN input
//! quantizes to the zero point (the real value 0's code) instead of an arbitrary code.

use crate::{Error, QType, Result};

/// Rounds to the nearest integer, ties to even (`0.5 → 0`, `1.5 → 2`, `-2.5 → -2`).
///
/// The sign of zero is kept (`-0.4 → -0.0`); NaN and infinities come back unchanged.
#[inline]
pub fn round_half_even(x: f32) -> f32 {
    x.round_ties_even()
}

/// [`round_half_even`] for `f64`.
#[inline]
pub fn round_half_even_f64(x: f64) -> f64 {
    x.round_ties_even()
}

/// ONNX `QuantizeLinear` of one value: `sat(round_half_even(x / scale) + zero_point)`.
///
/// The division is one f32 division, as onnxruntime computes it (not a multiply by a
/// reciprocal, which rounds differently). `scale` is expected finite and > 0 (what
/// [`crate::QuantParams::validate`] checks); for other scales the result is still a
/// saturated value, never a panic. NaN quantizes to `zero_point` (saturated into `q`);
/// ±∞ and quotients beyond the range saturate to `q`'s bounds.
#[inline]
pub fn quantize(x: f32, scale: f32, zero_point: i32, q: QType) -> i64 {
    if x.is_nan() {
        return q.saturate(i64::from(zero_point));
    }
    // `as` saturates at the i64 bounds (and maps a NaN quotient, e.g. 0/0, to 0), so
    // the sum below cannot overflow once it is a saturating add.
    let r = round_half_even(x / scale) as i64;
    q.saturate(r.saturating_add(i64::from(zero_point)))
}

/// ONNX `DequantizeLinear` of one value: `(q - zero_point) as f32 * scale`.
///
/// The subtraction is exact (in i64); the difference is rounded to f32 once and then
/// multiplied once, the order onnxruntime uses.
#[inline]
pub fn dequantize(q: i64, scale: f32, zero_point: i32) -> f32 {
    (q.saturating_sub(i64::from(zero_point)) as f32) * scale
}

/// Quantizes a float bias to int32 with scale `s_in * s_w` (computed in f32):
/// `round_half_even(bias / (s_in * s_w))`, as onnxruntime's quantizer does.
///
/// Unlike activations the bias is never saturated: a bias that does not fit in int32
/// (or a NaN/∞ bias, or a non-positive scale) is an error, so that it is reported
/// instead of silently changing the model.
pub fn quantize_bias(bias: f32, s_in: f32, s_w: f32) -> Result<i32> {
    let scale = s_in * s_w;
    let overflow = Error::BiasOverflow { bias, scale };
    if !(scale.is_finite() && scale > 0.0) {
        return Err(overflow);
    }
    let r = round_half_even(bias / scale);
    // i32::MIN = -2^31 and 2^31 are exact f32 values, so these bounds are exact.
    if r.is_finite() && (-2_147_483_648.0..2_147_483_648.0).contains(&r) {
        Ok(r as i32)
    } else {
        Err(overflow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_go_to_even_for_both_signs() {
        let cases: [(f32, f32); 8] = [
            (0.5, 0.0),
            (1.5, 2.0),
            (2.5, 2.0),
            (3.5, 4.0),
            (-0.5, -0.0),
            (-1.5, -2.0),
            (-2.5, -2.0),
            (-3.5, -4.0),
        ];
        for (x, want) in cases {
            let got = round_half_even(x);
            assert_eq!(got, want, "round_half_even({x})");
            assert_eq!(
                got.is_sign_negative(),
                want.is_sign_negative(),
                "sign of round({x})"
            );
            let got64 = round_half_even_f64(f64::from(x));
            assert_eq!(got64, f64::from(want), "round_half_even_f64({x})");
            assert_eq!(got64.is_sign_negative(), want.is_sign_negative());
        }
    }

    #[test]
    fn non_ties_round_to_nearest() {
        assert_eq!(round_half_even(0.49999997), 0.0);
        assert_eq!(round_half_even(0.50000006), 1.0);
        assert_eq!(round_half_even(-1.4), -1.0);
        assert_eq!(round_half_even(-1.6), -2.0);
        // 2^23 + 1 is already an integer: f32 has no fraction bits left there.
        assert_eq!(round_half_even(8_388_609.0), 8_388_609.0);
        assert!(round_half_even(f32::NAN).is_nan());
        assert_eq!(round_half_even(f32::NEG_INFINITY), f32::NEG_INFINITY);
        // 2^52 + 0.5 is not representable; 2^51 + 0.5 is, and is a tie between two
        // integers of which 2^51 is even.
        let big = 2f64.powi(51);
        assert_eq!(round_half_even_f64(big + 0.5), big);
        assert_eq!(round_half_even_f64(big + 1.5), big + 2.0);
    }

    #[test]
    fn quantize_rounds_ties_to_even_then_adds_zero_point() {
        // 0.1f32 = 0.100000001490116..., so the exact quotient 0.25 / 0.1f32 is
        // 2.4999999627..., within half an f32 ulp (1.19e-7) of 2.5: the f32 division
        // gives exactly 2.5, a tie -> 2; + 10 = 12.
        assert_eq!(quantize(0.25, 0.1, 10, QType::U8), 12);
        // scale 0.5 is exact: 1.25 / 0.5 = 2.5 -> 2 ; 1.75 / 0.5 = 3.5 -> 4.
        assert_eq!(quantize(1.25, 0.5, 0, QType::I8), 2);
        assert_eq!(quantize(1.75, 0.5, 0, QType::I8), 4);
        assert_eq!(quantize(-1.25, 0.5, 0, QType::I8), -2);
        assert_eq!(quantize(-1.75, 0.5, 0, QType::I8), -4);
        assert_eq!(quantize(-1.25, 0.5, 128, QType::U8), 126);
        assert_eq!(quantize(0.0, 0.5, -7, QType::I8), -7);
        assert_eq!(quantize(-0.0, 0.5, 3, QType::U8), 3);
    }

    #[test]
    fn quantize_saturates_at_both_ends_of_every_type() {
        let bounds: [(QType, i64, i64); 5] = [
            (QType::U8, 0, 255),
            (QType::I8, -128, 127),
            (QType::U16, 0, 65_535),
            (QType::I16, -32_768, 32_767),
            (QType::I32, -2_147_483_648, 2_147_483_647),
        ];
        for (q, lo, hi) in bounds {
            assert_eq!(quantize(1e30, 1.0, 0, q), hi, "{q:?} high");
            assert_eq!(quantize(-1e30, 1.0, 0, q), lo, "{q:?} low");
            assert_eq!(quantize(f32::INFINITY, 1.0, 0, q), hi, "{q:?} +inf");
            assert_eq!(quantize(f32::NEG_INFINITY, 1.0, 0, q), lo, "{q:?} -inf");
        }
        // Just past the edge: 255.6 -> 256 -> 255 ; -0.6 -> -1 -> 0.
        assert_eq!(quantize(255.6, 1.0, 0, QType::U8), 255);
        assert_eq!(quantize(255.4, 1.0, 0, QType::U8), 255);
        assert_eq!(quantize(254.4, 1.0, 0, QType::U8), 254);
        assert_eq!(quantize(-0.6, 1.0, 0, QType::U8), 0);
        // The zero point pushes past the edge: 100 + 100 = 200 -> 127 for i8.
        assert_eq!(quantize(100.0, 1.0, 100, QType::I8), 127);
        assert_eq!(quantize(-100.0, 1.0, -100, QType::I8), -128);
        // 3e9 is beyond i32 (2147483647).
        assert_eq!(quantize(3e9, 1.0, 0, QType::I32), 2_147_483_647);
        assert_eq!(quantize(-3e9, 1.0, 5, QType::I32), -2_147_483_648);
    }

    #[test]
    fn nan_quantizes_to_the_zero_point() {
        assert_eq!(quantize(f32::NAN, 0.1, 128, QType::U8), 128);
        assert_eq!(quantize(f32::NAN, 0.1, -3, QType::I8), -3);
        // A zero point outside the type (invalid params) still saturates.
        assert_eq!(quantize(f32::NAN, 0.1, 300, QType::U8), 255);
    }

    #[test]
    fn degenerate_scales_never_panic() {
        // 1 / 0 = +inf -> saturates; 0 / 0 = NaN -> 0 + zp.
        assert_eq!(quantize(1.0, 0.0, 0, QType::I8), 127);
        assert_eq!(quantize(0.0, 0.0, 4, QType::I8), 4);
        assert_eq!(quantize(1.0, f32::NAN, 4, QType::I8), 4);
    }

    #[test]
    fn tiny_and_huge_scales() {
        let tiny = 1e-10_f32;
        // Multiplying by a power of two is exact, so x / tiny is exactly the factor.
        assert_eq!(quantize(2.0 * tiny, tiny, 0, QType::I8), 2);
        assert_eq!(quantize(0.5 * tiny, tiny, 0, QType::I8), 0); // tie -> even 0
        assert_eq!(quantize(-0.5 * tiny, tiny, 0, QType::I8), 0);
        assert_eq!(quantize(128.0 * tiny, tiny, 0, QType::I8), 127); // 128 saturates
        assert_eq!(quantize(1.0, tiny, 0, QType::I32), 2_147_483_647); // 1e10 saturates
        assert_eq!(dequantize(3, tiny, 1), 2.0 * tiny);

        // 1e10 = 2^10 * 9765625 and 9765625 < 2^24: exact in f32, as are 2e10 and 5e9.
        let huge = 1e10_f32;
        assert_eq!(quantize(2e10, huge, 0, QType::I8), 2);
        assert_eq!(quantize(5e9, huge, 0, QType::I8), 0); // 0.5 -> 0
        assert_eq!(quantize(-5e9, huge, 1, QType::I8), 1); // -0.5 -> -0, + 1
        assert_eq!(quantize(1.0, huge, 0, QType::I8), 0);
        // 3 * 1e10 = 3e10 exactly, rounded once to f32: the literal 3e10_f32.
        assert_eq!(dequantize(3, huge, 0), 3e10_f32);
        assert_eq!(dequantize(-128, huge, 127), -2.55e12_f32);
    }

    #[test]
    fn dequantize_subtracts_in_integers() {
        assert_eq!(dequantize(130, 0.5, 128), 1.0);
        assert_eq!(dequantize(0, 0.5, 128), -64.0);
        assert_eq!(dequantize(-128, 0.25, 127), -63.75);
        // i32 extremes: the difference 2^32 - 1 needs i64; rounded to f32 it is 2^32.
        assert_eq!(
            dequantize(i64::from(i32::MAX), 1.0, i32::MIN),
            4_294_967_296.0
        );
    }

    #[test]
    fn bias_quantization_rounds_and_reports_overflow() {
        // scale 0.5 * 0.25 = 0.125: 1.0 / 0.125 = 8 ; 0.0625 / 0.125 = 0.5 -> 0 ;
        // 0.1875 / 0.125 = 1.5 -> 2 ; -0.1875 -> -2.
        assert_eq!(quantize_bias(1.0, 0.5, 0.25), Ok(8));
        assert_eq!(quantize_bias(0.0625, 0.5, 0.25), Ok(0));
        assert_eq!(quantize_bias(0.1875, 0.5, 0.25), Ok(2));
        assert_eq!(quantize_bias(-0.1875, 0.5, 0.25), Ok(-2));
        // -2^31 * 0.125 fits exactly; 2^31 * 0.125 does not.
        assert_eq!(quantize_bias(-268_435_456.0, 0.5, 0.25), Ok(i32::MIN));
        assert!(matches!(
            quantize_bias(268_435_456.0, 0.5, 0.25),
            Err(Error::BiasOverflow { .. })
        ));
        assert!(matches!(
            quantize_bias(1.0, 1e-30, 1e-30),
            Err(Error::BiasOverflow { .. })
        ));
        assert!(matches!(
            quantize_bias(f32::NAN, 1.0, 1.0),
            Err(Error::BiasOverflow { .. })
        ));
        assert!(matches!(
            quantize_bias(1.0, 0.0, 1.0),
            Err(Error::BiasOverflow { .. })
        ));
    }
}
