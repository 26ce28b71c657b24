//! Requantization of i32 accumulators under one of three rounding contracts.
//!
//! An accumulator `acc` of a quantized conv/gemm stands for the real value
//! `acc * s_in * s_w`; requantizing it to the output scale `s_out` means computing
//! `round(acc * s_in * s_w / s_out)` and adding the output zero point. The contracts
//! differ only in how the multiplier is represented and how it rounds:
//!
//! | contract | `scale(acc)` |
//! |---|---|
//! | `float` | `round_half_even(acc as f32 * m)`, `m = (s_in * s_w) / s_out` in f32, that order |
//! | `fixed` | [`multiply_by_quantized_multiplier`]: SRDHM (half up) then RDBP (half away from 0) |
//! | `fixed-single` | [`multiply_by_quantized_multiplier_single`]: `(acc * m + 2^(s-1)) >> s` |
//!
//! Invariants: a [`Requantizer`] is built once per output channel at compile time and
//! holds already-validated parameters, so [`Requantizer::scale`] and
//! [`Requantizer::requantize`] are total (they saturate, never fail or panic); all
//! backends must reproduce [`Requantizer::requantize`] bit for bit.

use std::fmt;
use std::str::FromStr;

use crate::fixed::{
    multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_single, quantize_multiplier,
    Multiplier,
};
use crate::round::round_half_even;
use crate::{Error, QType, Result};

/// Rounding contract of requantization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Contract {
    /// onnxruntime's (MLAS) fused QLinearConv/QLinearMatMul arithmetic: an f32 multiply
    /// rounded half to even.
    #[default]
    Float,
    /// gemmlowp / TFLite Micro reference kernels / CMSIS-NN: Q31 multiplier, double
    /// rounding.
    Fixed,
    /// CMSIS-NN `CMSIS_NN_USE_SINGLE_ROUNDING` / TFLite single rounding: Q31 multiplier,
    /// one round-half-up in 64 bits.
    FixedSingle,
}

impl Contract {
    /// Every contract, in declaration order.
    pub const ALL: [Contract; 3] = [Contract::Float, Contract::Fixed, Contract::FixedSingle];

    /// The name used on the command line and in the IR text (`float`, `fixed`,
    /// `fixed-single`).
    pub fn name(self) -> &'static str {
        match self {
            Contract::Float => "float",
            Contract::Fixed => "fixed",
            Contract::FixedSingle => "fixed-single",
        }
    }

    /// Whether the contract needs no floating point at run time.
    pub fn is_integer_only(self) -> bool {
        match self {
            Contract::Float => false,
            Contract::Fixed | Contract::FixedSingle => true,
        }
    }
}

impl fmt::Display for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Contract {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Contract::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| Error::UnknownContract(s.to_string()))
    }
}

/// Requantizes an i32 accumulator whose real value is `acc * s_in * s_w` into the output
/// scale `s_out`, under one contract. Constructed once per output channel at compile
/// time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Requantizer {
    contract: Contract,
    /// `(s_in * s_w) / s_out` in f32, in that order.
    float_m: f32,
    /// `(s_in * s_w) / s_out` in f64 (the product of two f32 is exact in f64).
    real: f64,
    fixed: Multiplier,
}

impl Requantizer {
    /// Builds the requantizer of one output channel.
    ///
    /// Errors: a scale that is not finite and > 0 ([`Error::InvalidParams`]); an f32
    /// multiplier that overflows ([`Error::UnrepresentableScale`]); for the fixed
    /// contracts, a real multiplier `>= 2^30` that no Q31 multiplier represents
    /// ([`Error::UnrepresentableScale`]).
    ///
    /// A real multiplier below `2^-32` gets the zero [`Multiplier`] (as TFLite does):
    /// then `|acc * real| < 2^31 * 2^-32 = 0.5` for every i32 accumulator, so 0 is the
    /// exactly rounded result and nothing is lost.
    ///
    /// For the `float` contract the fixed multiplier is still computed (for
    /// [`Requantizer::fixed_multiplier`]); where it is not representable it holds
    /// TFLite's saturated value `{ m: i32::MAX, shift: 30 }`, which the `float`
    /// contract never uses.
    pub fn new(contract: Contract, s_in: f32, s_w: f32, s_out: f32) -> Result<Requantizer> {
        for (what, s) in [("input", s_in), ("weight", s_w), ("output", s_out)] {
            if !(s.is_finite() && s > 0.0) {
                return Err(Error::InvalidParams(format!(
                    "{what} scale {s} of a requantization is not finite and positive"
                )));
            }
        }
        let float_m = (s_in * s_w) / s_out;
        if !float_m.is_finite() {
            return Err(Error::UnrepresentableScale(
                f64::from(s_in) * f64::from(s_w) / f64::from(s_out),
            ));
        }
        let real = f64::from(s_in) * f64::from(s_w) / f64::from(s_out);
        let fixed = match quantize_multiplier(real) {
            Ok(m) => m,
            Err(_) if real < 2f64.powi(-32) => Multiplier::ZERO,
            Err(_) if contract == Contract::Float => Multiplier {
                m: i32::MAX,
                shift: 30,
            },
            Err(e) => return Err(e),
        };
        Ok(Requantizer {
            contract,
            float_m,
            real,
            fixed,
        })
    }

    /// The rounded scaled accumulator before adding the zero point (i64 so nothing
    /// wraps).
    ///
    /// `float`: an f32 product beyond the i64 range saturates to it. `fixed`: the
    /// TFLite left-shift wrap applies when `|acc| * 2^shift >= 2^31` (multipliers
    /// `>= 1` only); such accumulators saturate every 8/16-bit output anyway in the
    /// float and single-rounding contracts, and TFLite produces the same wrapped value.
    #[inline]
    pub fn scale(&self, acc: i32) -> i64 {
        match self.contract {
            // `as i64` saturates (an f32 product is never NaN here: m is finite).
            Contract::Float => round_half_even(acc as f32 * self.float_m) as i64,
            Contract::Fixed => i64::from(multiply_by_quantized_multiplier(acc, self.fixed)),
            Contract::FixedSingle => multiply_by_quantized_multiplier_single(acc, self.fixed),
        }
    }

    /// `sat(scale(acc) + zero_point)` into `q`'s range.
    #[inline]
    pub fn requantize(&self, acc: i32, zero_point: i32, q: QType) -> i64 {
        q.saturate(self.scale(acc).saturating_add(i64::from(zero_point)))
    }

    pub fn contract(&self) -> Contract {
        self.contract
    }

    /// `(s_in * s_w) / s_out` computed in f32 in that order, for backends that embed it.
    pub fn float_multiplier(&self) -> f32 {
        self.float_m
    }

    /// The Q31 multiplier of the fixed contracts, for backends that embed it.
    pub fn fixed_multiplier(&self) -> Multiplier {
        self.fixed
    }

    /// The real multiplier `(s_in * s_w) / s_out` in f64.
    pub fn real_multiplier(&self) -> f64 {
        self.real
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rq(contract: Contract, s_in: f32, s_w: f32, s_out: f32) -> Requantizer {
        let r = Requantizer::new(contract, s_in, s_w, s_out);
        assert!(r.is_ok(), "{contract} {s_in} {s_w} {s_out}: {r:?}");
        let Ok(r) = r else { unreachable!() };
        r
    }

    #[test]
    fn contract_names_round_trip_and_errors_list_all_three() {
        for c in Contract::ALL {
            assert_eq!(c.name().parse::<Contract>(), Ok(c));
            assert_eq!(c.to_string(), c.name());
        }
        assert_eq!(
            "fixed-single".parse::<Contract>(),
            Ok(Contract::FixedSingle)
        );
        assert_eq!(Contract::default(), Contract::Float);
        let err = "Fixed"
            .parse::<Contract>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        for name in ["float", "fixed", "fixed-single", "`Fixed`"] {
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn half_multiplier_ties_differ_per_contract() {
        // s_in = 0.5, s_w = 1, s_out = 1: real = 0.5 exactly, m_f32 = 0.5,
        // Q31: 0.5 = 0.5 * 2^0 -> m = 2^30, shift 0 (no left, no right shift).
        //  acc | exact | float (even) | fixed: srdhm half up | single: (acc 2^30 + 2^30) >> 31
        //    3 |  1.5  |  2           |  2                   |  (4 * 2^30) >> 31 = 2
        //    5 |  2.5  |  2           |  3                   |  (6 * 2^30) >> 31 = 3
        //   -1 | -0.5  |  0           |  0                   |  0 >> 31 = 0
        //   -3 | -1.5  | -2           | -1                   |  (-2 * 2^30) >> 31 = -1
        //   -5 | -2.5  | -2           | -2                   |  (-4 * 2^30) >> 31 = -2
        let cases: [(i32, i64, i64, i64); 5] = [
            (3, 2, 2, 2),
            (5, 2, 3, 3),
            (-1, 0, 0, 0),
            (-3, -2, -1, -1),
            (-5, -2, -2, -2),
        ];
        let f = rq(Contract::Float, 0.5, 1.0, 1.0);
        let x = rq(Contract::Fixed, 0.5, 1.0, 1.0);
        let s = rq(Contract::FixedSingle, 0.5, 1.0, 1.0);
        assert_eq!(
            x.fixed_multiplier(),
            Multiplier {
                m: 1 << 30,
                shift: 0
            }
        );
        for (acc, want_f, want_x, want_s) in cases {
            assert_eq!(f.scale(acc), want_f, "float {acc}");
            assert_eq!(x.scale(acc), want_x, "fixed {acc}");
            assert_eq!(s.scale(acc), want_s, "fixed-single {acc}");
        }
    }

    #[test]
    fn eighth_multiplier_exercises_the_right_shift() {
        // s_in = 0.25, s_w = 0.5, s_out = 1: real = 0.125 = 0.5 * 2^-2 -> m = 2^30,
        // shift -2: fixed = rdbp(srdhm(acc, 2^30), 2), single: s = 33,
        // (acc * 2^30 + 2^32) >> 33.
        //  acc | exact  | float | fixed                        | single
        //  -12 | -1.5   |  -2   | srdhm -6, -6/4 = -1.5 -> -2  | (-3*2^32 + 2^32) >> 33 = -1
        //   20 |  2.5   |   2   | srdhm 10, 10/4 = 2.5 -> 3    | (5*2^32 + 2^32) >> 33 = 3
        //   -4 | -0.5   |   0   | srdhm -2, -2/4 = -0.5 -> -1  | (-2^32 + 2^32) >> 33 = 0
        //    3 |  0.375 |   0   | srdhm 1.5 -> 2, 2/4 -> 1 (!) | (3*2^30 + 2^32) >> 33 = 0
        //   -6 | -0.75  |  -1   | srdhm -3, -3/4 -> -1         | (-6*2^30 + 2^32) >> 33 = -1
        //    0 |  0     |   0   | 0                            | 2^32 >> 33 = 0
        // acc = 3 shows the double rounding of the fixed contract (TFLite's, kept).
        let cases: [(i32, i64, i64, i64); 6] = [
            (-12, -2, -2, -1),
            (20, 2, 3, 3),
            (-4, 0, -1, 0),
            (3, 0, 1, 0),
            (-6, -1, -1, -1),
            (0, 0, 0, 0),
        ];
        let f = rq(Contract::Float, 0.25, 0.5, 1.0);
        let x = rq(Contract::Fixed, 0.25, 0.5, 1.0);
        let s = rq(Contract::FixedSingle, 0.25, 0.5, 1.0);
        assert_eq!(f.float_multiplier(), 0.125);
        assert_eq!(
            x.fixed_multiplier(),
            Multiplier {
                m: 1 << 30,
                shift: -2
            }
        );
        assert_eq!(
            s.fixed_multiplier(),
            Multiplier {
                m: 1 << 30,
                shift: -2
            }
        );
        for (acc, want_f, want_x, want_s) in cases {
            assert_eq!(f.scale(acc), want_f, "float {acc}");
            assert_eq!(x.scale(acc), want_x, "fixed {acc}");
            assert_eq!(s.scale(acc), want_s, "fixed-single {acc}");
        }
    }

    #[test]
    fn multiplier_above_one_uses_the_left_shift() {
        // s_in = 1, s_w = 3, s_out = 2: real = 1.5 = 0.75 * 2^1 -> m = 0.75 * 2^31 =
        // 1610612736 = 3 * 2^29, shift 1.
        // fixed: acc = 7: 7 * 2 = 14; srdhm(14, 3 * 2^29) = 14 * 3 * 2^29 / 2^31 = 10.5
        //   -> 11 (half up); no right shift: 11. Exact 10.5, float: 10 (even).
        // single: s = 30: (7 * 3 * 2^29 + 2^29) >> 30 = (22 * 2^29) >> 30 = 11.
        // acc = -7: fixed srdhm(-14, ..) = -10.5 -> -10; float -10; single
        //   (-21 * 2^29 + 2^29) >> 30 = (-20 * 2^29) >> 30 = -10.
        for (contract, want_pos, want_neg) in [
            (Contract::Float, 10, -10),
            (Contract::Fixed, 11, -10),
            (Contract::FixedSingle, 11, -10),
        ] {
            let r = rq(contract, 1.0, 3.0, 2.0);
            assert_eq!(
                r.fixed_multiplier(),
                Multiplier {
                    m: 1_610_612_736,
                    shift: 1
                }
            );
            assert_eq!(r.float_multiplier(), 1.5);
            assert_eq!(r.scale(7), want_pos, "{contract} 7");
            assert_eq!(r.scale(-7), want_neg, "{contract} -7");
        }
    }

    #[test]
    fn float_multiplier_is_f32_in_the_stated_order() {
        // Independent formula: each f32 operation is the f64 operation on the same
        // inputs rounded once to f32 (exact for the product; for the quotient, f64
        // has more than 2 * 24 + 2 bits, so double rounding cannot differ).
        let triples = [
            (0.1f32, 0.2f32, 0.3f32),
            (0.0235294, 0.0031, 0.0413),
            (3e-3, 7e-4, 1.1e-2),
        ];
        for (a, b, c) in triples {
            let want = ((f64::from((f64::from(a) * f64::from(b)) as f32)) / f64::from(c)) as f32;
            let r = rq(Contract::Float, a, b, c);
            assert_eq!(
                r.float_multiplier().to_bits(),
                want.to_bits(),
                "{a} {b} {c}"
            );
            assert_eq!(
                r.real_multiplier(),
                f64::from(a) * f64::from(b) / f64::from(c)
            );
        }
    }

    #[test]
    fn zero_and_extreme_accumulators() {
        for c in Contract::ALL {
            let r = rq(c, 0.02, 0.005, 0.1); // real 1e-3
            assert_eq!(r.scale(0), 0, "{c}");
            assert_eq!(r.requantize(0, 7, QType::U8), 7, "{c}");
            // 2^31 * 1e-3 ≈ 2147483.6 -> saturates 8-bit outputs at both ends.
            assert_eq!(r.requantize(i32::MAX, 0, QType::I8), 127, "{c}");
            assert_eq!(r.requantize(i32::MIN, 0, QType::I8), -128, "{c}");
            assert_eq!(r.requantize(i32::MIN, 0, QType::U8), 0, "{c}");
            // ... and fits in i32: about ±2147483.6 -> ±2147484 (no exact tie here).
            assert!(
                (r.requantize(i32::MAX, 0, QType::I32) - 2_147_484).abs() <= 1,
                "{c}"
            );
            assert!(
                (r.requantize(i32::MIN, 0, QType::I32) + 2_147_484).abs() <= 1,
                "{c}"
            );
        }
    }

    #[test]
    fn requantize_adds_the_zero_point_then_saturates() {
        // real 0.5 (see above): 500 -> 250, + 10 = 260 -> 255 (u8);
        // -300 -> -150, + 10 = -140 -> -128 (i8); 100 -> 50 - 60 = -10 (i8);
        // 1000 -> 500 + 32767 -> 32767 (i16); 131071 -> 65535.5 -> 65536 (float: tie, even)
        //   + 0 -> 65535 (u16).
        for c in Contract::ALL {
            let r = rq(c, 0.5, 1.0, 1.0);
            assert_eq!(r.requantize(500, 10, QType::U8), 255, "{c}");
            assert_eq!(r.requantize(-300, 10, QType::I8), -128, "{c}");
            assert_eq!(r.requantize(100, -60, QType::I8), -10, "{c}");
            assert_eq!(r.requantize(1000, 32_767, QType::I16), 32_767, "{c}");
            assert_eq!(r.requantize(-1000, -32_768, QType::I16), -32_768, "{c}");
            assert_eq!(r.requantize(131_071, 0, QType::U16), 65_535, "{c}");
            assert_eq!(r.requantize(-2, 0, QType::U16), 0, "{c}");
            assert_eq!(
                r.requantize(i32::MAX, i32::MAX, QType::I32),
                i64::from(i32::MAX),
                "{c}"
            );
            assert_eq!(
                r.requantize(i32::MIN, i32::MIN, QType::I32),
                i64::from(i32::MIN),
                "{c}"
            );
        }
    }

    #[test]
    fn tiny_multipliers_flush_to_zero_exactly() {
        // 1e-10 * 1e-10 / 1 = 1e-20 < 2^-32: every accumulator scales to 0.
        for c in Contract::ALL {
            let r = rq(c, 1e-10, 1e-10, 1.0);
            for acc in [i32::MIN, -1, 0, 1, i32::MAX] {
                assert_eq!(r.scale(acc), 0, "{c} {acc}");
            }
        }
        assert_eq!(
            rq(Contract::Fixed, 1e-10, 1e-10, 1.0).fixed_multiplier(),
            Multiplier::ZERO
        );
    }

    #[test]
    fn huge_multipliers() {
        // 1e10 * 1 / 1e-10 = 1e20: fine as an f32 multiply (saturating), not as Q31.
        let f = rq(Contract::Float, 1e10, 1.0, 1e-10);
        assert_eq!(f.scale(1), i64::MAX);
        assert_eq!(f.scale(-1), i64::MIN);
        assert_eq!(f.requantize(1, 0, QType::I8), 127);
        assert_eq!(f.requantize(-1, 0, QType::U8), 0);
        assert_eq!(f.requantize(0, 3, QType::U8), 3);
        assert_eq!(
            f.fixed_multiplier(),
            Multiplier {
                m: i32::MAX,
                shift: 30
            }
        );
        for c in [Contract::Fixed, Contract::FixedSingle] {
            assert!(
                matches!(
                    Requantizer::new(c, 1e10, 1.0, 1e-10),
                    Err(Error::UnrepresentableScale(_))
                ),
                "{c}"
            );
        }
        // An f32 multiplier that overflows is rejected for every contract.
        for c in Contract::ALL {
            assert!(matches!(
                Requantizer::new(c, 1e30, 1e30, 1e-30),
                Err(Error::UnrepresentableScale(_))
            ));
        }
    }

    #[test]
    fn invalid_scales_are_rejected() {
        for (a, b, c) in [
            (0.0, 1.0, 1.0),
            (1.0, -1.0, 1.0),
            (1.0, 1.0, f32::NAN),
            (f32::INFINITY, 1.0, 1.0),
        ] {
            assert!(matches!(
                Requantizer::new(Contract::Fixed, a, b, c),
                Err(Error::InvalidParams(_))
            ));
        }
    }
}
