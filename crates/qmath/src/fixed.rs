//! Q31 fixed-point multipliers and the gemmlowp / TFLite integer primitives.
//!
//! Invariants:
//! - A [`Multiplier`] made by [`quantize_multiplier`] has `m` in `[2^30, 2^31)` and
//!   `shift` in `[-31, 30]`, or is `{ m: 0, shift: 0 }` for the real value 0; it stands
//!   for `m * 2^(shift - 31)` and is the nearest such value to the real multiplier
//!   (error at most half a unit of `2^(shift - 31)`).
//! - Everything is computed in integers wide enough not to overflow (i64); the only
//!   wrapping is the one TFLite's reference kernels have (the left shift of the
//!   accumulator in [`multiply_by_quantized_multiplier`]), kept on purpose so that
//!   results match bit for bit.
//! - Functions taking a `Multiplier` clamp `shift` into `[-31, 30]` rather than panic,
//!   since the fields are public; multipliers from [`quantize_multiplier`] are never
//!   changed by that clamp.

use crate::{Error, Result};

/// A Q31 fixed-point multiplier: real ≈ `m * 2^(shift - 31)`, `m` in `[2^30, 2^31)`
/// (or 0 for real == 0), `shift` in `[-31, 30]` (positive: a left shift).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Multiplier {
    pub m: i32,
    pub shift: i32,
}

impl Multiplier {
    /// The multiplier of the real value 0.
    pub const ZERO: Multiplier = Multiplier { m: 0, shift: 0 };

    /// The real value this multiplier stands for, `m * 2^(shift - 31)` (exact in f64).
    pub fn to_f64(self) -> f64 {
        f64::from(self.m) * 2f64.powi(self.shift - 31)
    }
}

/// `x = q * 2^e` with `q` in `[0.5, 1)`, for finite `x > 0` (C's `frexp`, which Rust's std
/// lacks). Subnormals are normalized first by an exact power-of-two scaling.
fn frexp(x: f64) -> (f64, i32) {
    const EXP_MASK: u64 = 0x7ff << 52;
    let (x, bias) = if x < f64::MIN_POSITIVE {
        (x * 2f64.powi(54), -54)
    } else {
        (x, 0)
    };
    let bits = x.to_bits();
    let biased = ((bits & EXP_MASK) >> 52) as i32;
    // Giving the mantissa the biased exponent 1022 puts it in [0.5, 1).
    let q = f64::from_bits((bits & !EXP_MASK) | (1022 << 52));
    (q, biased - 1022 + bias)
}

/// TFLite's `QuantizeMultiplier`: the Q31 multiplier nearest to `real`.
///
/// `real = q * 2^shift` with `q` in `[0.5, 1)`; `m = round(q * 2^31)` (half away from
/// zero, as `TfLiteRound`). When that rounding reaches `2^31` the multiplier is halved
/// and the shift incremented, so `m` always fits in i32.
///
/// Errors ([`Error::UnrepresentableScale`]) for a negative, NaN or infinite `real`, and
/// when the shift leaves `[-31, 30]`: `real < 2^-32` (roughly; TFLite would flush it to
/// zero — [`crate::Requantizer`] does that itself where it is exact) or `real >= 2^30`
/// (TFLite would saturate it, which is wrong for every non-zero accumulator).
pub fn quantize_multiplier(real: f64) -> Result<Multiplier> {
    if !(real.is_finite() && real >= 0.0) {
        return Err(Error::UnrepresentableScale(real));
    }
    if real == 0.0 {
        return Ok(Multiplier::ZERO);
    }
    let (q, mut shift) = frexp(real);
    // q * 2^31 is exact (a power-of-two scaling) and lies in [2^30, 2^31).
    let mut m = (q * 2_147_483_648.0).round() as i64;
    if m == 1 << 31 {
        m /= 2;
        shift += 1;
    }
    if !(-31..=30).contains(&shift) {
        return Err(Error::UnrepresentableScale(real));
    }
    let m = i32::try_from(m).map_err(|_| Error::UnrepresentableScale(real))?;
    Ok(Multiplier { m, shift })
}

/// gemmlowp's `SaturatingRoundingDoublingHighMul`: `round(a * b / 2^31)` with ties
/// rounded up (towards +∞, like ARM's `VQRDMULH`), saturating the one overflowing case
/// `(i32::MIN, i32::MIN)` to `i32::MAX`.
///
/// (gemmlowp writes it with a sign-dependent nudge and a truncating division; adding
/// `2^30` and flooring is the same function.)
#[inline]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = i64::from(a) * i64::from(b);
    // |ab| <= 2^62 - 2^31 here, so the result lies in [-2^31 + 1, 2^31 - 1].
    ((ab + (1 << 30)) >> 31) as i32
}

/// gemmlowp's `RoundingDivideByPOT`: `x / 2^exponent` rounded to nearest, ties away
/// from zero (`-5 / 2 → -3`, `5 / 2 → 3`).
///
/// `exponent` is meant to be in `[0, 31]`; a negative one is treated as 0 (identity)
/// and larger ones are computed exactly (they round every value to 0 or ±1).
#[inline]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    if exponent <= 0 {
        return x;
    }
    // Beyond 62 the i64 shifts below stop being meaningful; |x| <= 2^31 makes every
    // exponent >= 33 give 0 anyway.
    let e = exponent.min(62);
    let x = i64::from(x);
    let floor = x >> e;
    let rem = x - (floor << e); // in [0, 2^e)
    let half = 1i64 << (e - 1);
    let up = rem > half || (rem == half && x > 0);
    // |result| <= 2^30 for e >= 1.
    (floor + i64::from(up)) as i32
}

/// TFLite's (double-rounding) `MultiplyByQuantizedMultiplier`: the `fixed` contract.
///
/// `rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x * 2^left, m), right)`
/// with `left = max(shift, 0)`, `right = max(-shift, 0)`. The left shift wraps in i32 as
/// in TFLite (its reference code has the same, undefined-in-C, overflow); callers keep
/// `|x| * 2^left < 2^31`, which holds whenever the result fits the output type.
#[inline]
pub fn multiply_by_quantized_multiplier(x: i32, mult: Multiplier) -> i32 {
    let shift = mult.shift.clamp(-31, 30);
    let left = shift.max(0) as u32;
    let right = (-shift).max(0);
    let shifted = x.wrapping_mul(1i32 << left);
    rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(shifted, mult.m),
        right,
    )
}

/// Single-rounding `MultiplyByQuantizedMultiplier` (`CMSIS_NN_USE_SINGLE_ROUNDING`,
/// `TFLITE_SINGLE_ROUNDING`): the `fixed-single` contract.
///
/// With total right shift `s = 31 - shift` (in `[1, 62]` once `shift` is clamped to
/// `[-31, 30]`): `(x * m + 2^(s-1)) >> s`, one round-half-up, computed in i64. The
/// result is returned in i64: TFLite and CMSIS-NN narrow it to i32 (wrapping), but a
/// result that does not fit i32 saturates any output type anyway, so keeping it wide
/// only avoids a meaningless wrap. `|x * m| <= 2^62` and the rounding term is at most
/// `2^61`, so nothing overflows.
#[inline]
pub fn multiply_by_quantized_multiplier_single(x: i32, mult: Multiplier) -> i64 {
    let s = 31 - mult.shift.clamp(-31, 30);
    let prod = i64::from(x) * i64::from(mult.m);
    (prod + (1i64 << (s - 1))) >> s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frexp_matches_c() {
        assert_eq!(frexp(1.0), (0.5, 1));
        assert_eq!(frexp(0.75), (0.75, 0));
        assert_eq!(frexp(3.0), (0.75, 2));
        assert_eq!(frexp(0.1), (0.8, -3)); // 0.1 = 0.8 * 2^-3, exact power-of-two scaling
                                           // The smallest subnormal 2^-1074 = 0.5 * 2^-1073.
        assert_eq!(frexp(f64::from_bits(1)), (0.5, -1073));
    }

    #[test]
    fn quantize_multiplier_hand_cases() {
        // 1.0 = 0.5 * 2^1 -> m = 0.5 * 2^31 = 2^30, shift 1.
        assert_eq!(
            quantize_multiplier(1.0),
            Ok(Multiplier {
                m: 1 << 30,
                shift: 1
            })
        );
        // 0.5 = 0.5 * 2^0.
        assert_eq!(
            quantize_multiplier(0.5),
            Ok(Multiplier {
                m: 1 << 30,
                shift: 0
            })
        );
        // 0.75 = 0.75 * 2^0 -> m = 0.75 * 2^31 = 1610612736.
        assert_eq!(
            quantize_multiplier(0.75),
            Ok(Multiplier {
                m: 1_610_612_736,
                shift: 0
            })
        );
        // 0.3 = 0.6 * 2^-1 -> 0.6 * 2^31 = 1288490188.8 -> 1288490189.
        assert_eq!(
            quantize_multiplier(0.3),
            Ok(Multiplier {
                m: 1_288_490_189,
                shift: -1
            })
        );
        // 2^-32 = 0.5 * 2^-31: the smallest shift.
        assert_eq!(
            quantize_multiplier(2f64.powi(-32)),
            Ok(Multiplier {
                m: 1 << 30,
                shift: -31
            })
        );
        // 2^30 - 1 = (1 - 2^-30) * 2^30 -> (1 - 2^-30) * 2^31 = 2^31 - 2.
        assert_eq!(
            quantize_multiplier(1_073_741_823.0),
            Ok(Multiplier {
                m: 2_147_483_646,
                shift: 30
            })
        );
        assert_eq!(quantize_multiplier(0.0), Ok(Multiplier::ZERO));
        assert_eq!(quantize_multiplier(-0.0), Ok(Multiplier::ZERO));
    }

    #[test]
    fn quantize_multiplier_carry_when_rounding_reaches_2_pow_31() {
        // 1 - 2^-33 = q * 2^0 with q = 1 - 2^-33; q * 2^31 = 2^31 - 0.25 rounds to 2^31,
        // which does not fit: m = 2^30 and the shift goes up by one. 2^30 * 2^(1-31) = 1.
        assert_eq!(
            quantize_multiplier(1.0 - 2f64.powi(-33)),
            Ok(Multiplier {
                m: 1 << 30,
                shift: 1
            })
        );
        // Exact tie: q * 2^31 = 2^31 - 0.5 rounds (away from zero) to 2^31 as well.
        assert_eq!(
            quantize_multiplier(1.0 - 2f64.powi(-32)),
            Ok(Multiplier {
                m: 1 << 30,
                shift: 1
            })
        );
        // Just below the tie: 2^31 - 0.5 - 2^-22 rounds down to 2^31 - 1, no carry.
        assert_eq!(
            quantize_multiplier(1.0 - 2f64.powi(-32) - 2f64.powi(-53)),
            Ok(Multiplier {
                m: i32::MAX,
                shift: 0
            })
        );
        // Just below 2^-32 the carry brings the shift from -32 back into range.
        assert_eq!(
            quantize_multiplier(2f64.powi(-32) * (1.0 - 2f64.powi(-40))),
            Ok(Multiplier {
                m: 1 << 30,
                shift: -31
            })
        );
        // Just below 2^30 the carry pushes the shift to 31: out of range.
        assert!(quantize_multiplier(2f64.powi(30) - 2f64.powi(-23)).is_err());
    }

    #[test]
    fn quantize_multiplier_rejects_what_it_cannot_represent() {
        for bad in [
            -1.0,
            -1e-30,
            f64::NAN,
            f64::INFINITY,
            2f64.powi(30),
            1e20,
            2f64.powi(-33),
            1e-20,
        ] {
            assert!(
                matches!(
                    quantize_multiplier(bad),
                    Err(Error::UnrepresentableScale(_))
                ),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn quantize_multiplier_error_is_at_most_half_a_unit() {
        // Logarithmic sweep over the whole representable range, 2^-32 .. 2^30, with
        // a step that is not a power of two so the mantissas vary.
        let mut real = 2f64.powi(-32);
        let step = 1.000_123_7_f64;
        let mut n = 0;
        while real < 2f64.powi(30) {
            let r = quantize_multiplier(real);
            assert!(r.is_ok(), "{real}: {r:?}");
            let Ok(mult) = r else { return };
            assert!(
                (1 << 30..=i32::MAX).contains(&mult.m),
                "{real}: m {}",
                mult.m
            );
            assert!(
                (-31..=30).contains(&mult.shift),
                "{real}: shift {}",
                mult.shift
            );
            let unit = 2f64.powi(mult.shift - 31);
            let approx = f64::from(mult.m) * unit;
            // approx and real are within a factor 2, so the subtraction is exact.
            let err = (approx - real).abs();
            assert!(
                err <= unit / 2.0,
                "{real}: error {err} > half unit {}",
                unit / 2.0
            );
            real *= step;
            n += 1;
        }
        assert!(n > 100_000, "sweep too short: {n}");
    }

    /// gemmlowp's formulation, written independently of the implementation's
    /// add-and-floor: sign-dependent nudge, truncating (C) division.
    fn srdhm_reference(a: i32, b: i32) -> i32 {
        if a == i32::MIN && b == i32::MIN {
            return i32::MAX;
        }
        let ab = i128::from(a) * i128::from(b);
        let nudge: i128 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
        let r = (ab + nudge) / (1i128 << 31); // Rust's `/` truncates, like C
        i32::try_from(r).expect("invariant: reference fits i32")
    }

    #[test]
    fn srdhm_hand_cases() {
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        // 2^30 * 2^30 / 2^31 = 2^29.
        assert_eq!(
            saturating_rounding_doubling_high_mul(1 << 30, 1 << 30),
            1 << 29
        );
        // (2^31-1)^2 / 2^31 = 2^31 - 2 + 2^-31 -> 2^31 - 2.
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MAX, i32::MAX),
            2_147_483_646
        );
        // -2^31 (2^31-1) / 2^31 = -(2^31 - 1), exact.
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MAX),
            -2_147_483_647
        );
        assert_eq!(saturating_rounding_doubling_high_mul(i32::MIN, 1), -1);
        // Ties round up: +0.5 -> 1, -0.5 -> 0, +1.5 -> 2, -1.5 -> -1.
        assert_eq!(saturating_rounding_doubling_high_mul(1, 1 << 30), 1);
        assert_eq!(saturating_rounding_doubling_high_mul(-1, 1 << 30), 0);
        assert_eq!(saturating_rounding_doubling_high_mul(3, 1 << 30), 2);
        assert_eq!(saturating_rounding_doubling_high_mul(-3, 1 << 30), -1);
        // Just past -0.5: -(2^30 + 1) / 2^31 -> -1.
        assert_eq!(saturating_rounding_doubling_high_mul(-1, (1 << 30) + 1), -1);
        assert_eq!(saturating_rounding_doubling_high_mul(-1, 1), 0);
        assert_eq!(saturating_rounding_doubling_high_mul(0, i32::MIN), 0);
    }

    #[test]
    fn srdhm_matches_gemmlowp_formulation() {
        let specials = [
            i32::MIN,
            i32::MIN + 1,
            -(1 << 30) - 1,
            -(1 << 30),
            -3,
            -1,
            0,
            1,
            3,
            1 << 30,
            i32::MAX,
        ];
        for &a in &specials {
            for &b in &specials {
                assert_eq!(
                    saturating_rounding_doubling_high_mul(a, b),
                    srdhm_reference(a, b),
                    "{a} {b}"
                );
            }
        }
        let mut s = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let (a, b) = (s as i32, (s >> 32) as i32);
            assert_eq!(
                saturating_rounding_doubling_high_mul(a, b),
                srdhm_reference(a, b),
                "{a} {b}"
            );
        }
    }

    #[test]
    fn rounding_divide_by_pot_ties_away_from_zero() {
        // 5/2 = 2.5 -> 3 ; -5/2 -> -3 ; 3/2 -> 2 ; -3/2 -> -2 ; -1/2 -> -1 ; 1/2 -> 1.
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(3, 1), 2);
        assert_eq!(rounding_divide_by_pot(-3, 1), -2);
        assert_eq!(rounding_divide_by_pot(-1, 1), -1);
        assert_eq!(rounding_divide_by_pot(1, 1), 1);
        // -6/4 = -1.5 -> -2 ; -7/4 = -1.75 -> -2 ; -5/4 = -1.25 -> -1 ; 6/4 -> 2.
        assert_eq!(rounding_divide_by_pot(-6, 2), -2);
        assert_eq!(rounding_divide_by_pot(-7, 2), -2);
        assert_eq!(rounding_divide_by_pot(-5, 2), -1);
        assert_eq!(rounding_divide_by_pot(6, 2), 2);
        assert_eq!(rounding_divide_by_pot(7, 0), 7);
        assert_eq!(rounding_divide_by_pot(-7, -3), -7);
        // -2^31 / 2^31 = -1 ; (2^31-1) / 2^31 -> 1 ; -2^30 / 2^31 = -0.5 -> -1.
        assert_eq!(rounding_divide_by_pot(i32::MIN, 31), -1);
        assert_eq!(rounding_divide_by_pot(i32::MAX, 31), 1);
        assert_eq!(rounding_divide_by_pot(-(1 << 30), 31), -1);
        assert_eq!(rounding_divide_by_pot(1 << 30, 31), 1);
        // Beyond 31: -2^31 / 2^32 = -0.5 -> -1 ; everything else -> 0.
        assert_eq!(rounding_divide_by_pot(i32::MIN, 32), -1);
        assert_eq!(rounding_divide_by_pot(i32::MAX, 32), 0);
        assert_eq!(rounding_divide_by_pot(i32::MIN, 40), 0);
        assert_eq!(rounding_divide_by_pot(i32::MIN, 1000), 0);
    }

    #[test]
    fn rounding_divide_by_pot_matches_f64_round() {
        // Division by 2^e is exact in f64 and f64::round rounds half away from zero.
        let mut s = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..100_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let x = s as i32;
            let e = ((s >> 40) % 32) as i32;
            let want = (f64::from(x) / 2f64.powi(e)).round();
            assert_eq!(f64::from(rounding_divide_by_pot(x, e)), want, "{x} >> {e}");
        }
    }

    #[test]
    fn out_of_range_shifts_are_clamped() {
        let m = Multiplier {
            m: 1 << 30,
            shift: 100,
        };
        assert_eq!(
            multiply_by_quantized_multiplier(1, m),
            multiply_by_quantized_multiplier(
                1,
                Multiplier {
                    m: 1 << 30,
                    shift: 30
                }
            )
        );
        // Clamped to shift -31 (real 2^-32): (2^31 - 1) * 2^-32 is just below 0.5.
        // Single rounding: (2^61 - 2^30 + 2^61) >> 62 = 0. Double rounding:
        // srdhm(2^31 - 1, 2^30) = 2^30 - 0.5 -> 2^30 (half up), then 2^30 / 2^31 = 0.5
        // -> 1 (away from zero): TFLite's double-rounding artifact, kept.
        let m = Multiplier {
            m: 1 << 30,
            shift: -100,
        };
        assert_eq!(multiply_by_quantized_multiplier_single(i32::MAX, m), 0);
        assert_eq!(multiply_by_quantized_multiplier(i32::MAX, m), 1);
    }
}
