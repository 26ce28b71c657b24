//! The real-valued scalar semantics of qc's elementwise ops.
//!
//! **Invariant:** this is the one definition. The interpreter's float kernels, the
//! JIT's lookup tables for quantized unary ops and its f32 call-outs, and constant
//! folding all call these functions, so a table entry is the reference's own value.
//! NaN passes through `clip` and `relu` as numpy's `clip`/`maximum` would have it.
//!
//! **Invariant:** `exp`, `ln`, `tanh` and `pow` are qc's own, not the host libm's:
//! straight sequences of f32 add/sub/mul/div, comparisons and bit manipulation (no
//! fused multiply-add, no wider intermediate), so they give the same bits on every
//! host and the C emitter repeats them operation for operation (`qc-cgen`'s `cmath`,
//! which takes its constants from here). Measured against f64 over a dense sweep:
//! `exp`, `ln` and `tanh` within 1 ulp, `sigmoid` within 2 (tests below).

use crate::{Activation, Op};

/// numpy `clip`: `min(max(x, lo), hi)`, NaN passes through.
pub fn clip(x: f32, lo: f32, hi: f32) -> f32 {
    let y = if x < lo { lo } else { x };
    if y > hi {
        hi
    } else {
        y
    }
}

pub fn relu(x: f32) -> f32 {
    if x < 0.0 {
        0.0
    } else {
        x
    }
}

pub fn leaky_relu(x: f32, alpha: f32) -> f32 {
    if x < 0.0 {
        x * alpha
    } else {
        x
    }
}

/// Logistic function, evaluated on the side where `exp` cannot overflow.
pub fn sigmoid(x: f32) -> f32 {
    if x > 0.0 {
        1.0 / (1.0 + exp(-x))
    } else {
        let e = exp(x);
        e / (1.0 + e)
    }
}

/// `max(0, min(1, alpha * x + beta))`.
pub fn hard_sigmoid(x: f32, alpha: f32, beta: f32) -> f32 {
    let v = x * alpha + beta;
    let v = if v > 1.0 { 1.0 } else { v };
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

/// ONNX HardSwish is `x * HardSigmoid(x)` with these parameters.
pub const HARD_SWISH_ALPHA: f32 = 1.0 / 6.0;
pub const HARD_SWISH_BETA: f32 = 0.5;

pub fn hard_swish(x: f32) -> f32 {
    x * hard_sigmoid(x, HARD_SWISH_ALPHA, HARD_SWISH_BETA)
}

/// ln 2 split: `LN2_HI` has 15 significant bits, so `k * LN2_HI` is exact for
/// |k| < 512; `LN2_LO` is ln 2 - `LN2_HI` rounded.
pub const LN2_HI: f32 = f32::from_bits(0x3f31_7200);
pub const LN2_LO: f32 = f32::from_bits(0x35bf_be8e);
pub const LOG2_E: f32 = f32::from_bits(0x3fb8_aa3b);
/// The largest x with a finite `exp(x)` (ln of `f32::MAX` is 88.7228390...).
pub const EXP_MAX_ARG: f32 = f32::from_bits(0x42b1_7217);
/// Below this, `exp(x)` is less than half the smallest subnormal: 0.
pub const EXP_MIN_ARG: f32 = -104.0;
/// Taylor coefficients 1/7!, 1/6!, ..., 1/2! of e^r (|r| <= ln2/2), highest first.
pub const EXP_POLY: [f32; 6] = [
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
];
/// Bits of the largest mantissa `ln` keeps in [1, 2) (sqrt 2, rounded down).
pub const LN_SQRT2_BITS: u32 = 0x3fb5_04f3;
/// 2/9, 2/7, 2/5, 2/3: the series of 2 atanh(s) / s - 2 in s^2, highest first.
pub const LN_POLY: [f32; 4] = [2.0 / 9.0, 2.0 / 7.0, 2.0 / 5.0, 2.0 / 3.0];
/// Beyond this |x|, tanh(x) rounds to +-1.
pub const TANH_SAT: f32 = 9.125;
/// Below this |x|, tanh(x) rounds to x.
pub const TANH_TINY: f32 = f32::from_bits(0x3980_0000);
/// Below this |x| (tanh about 1/2) tanh uses its Taylor series, above it `exp`:
/// there 2 / (e^2|x| + 1) < 1/2, so its error costs less than an ulp of 1 - it.
pub const TANH_SERIES_MAX: f32 = 0.5625;
/// Taylor coefficients of (tanh(x) - x) / x^3 in x^2 (x^21 down to x^3), highest first.
pub const TANH_POLY: [f32; 10] = [
    18_888_466_084.0 / 194_896_477_400_625.0,
    -443_861_162.0 / 1_856_156_927_625.0,
    6_404_582.0 / 10_854_718_875.0,
    -929_569.0 / 638_512_875.0,
    21_844.0 / 6_081_075.0,
    -1382.0 / 155_925.0,
    62.0 / 2835.0,
    -17.0 / 315.0,
    2.0 / 15.0,
    -1.0 / 3.0,
];

/// `c[0] * z^(n-1) + ... + c[n-1]` in Horner's order.
fn horner(z: f32, c: &[f32]) -> f32 {
    let mut it = c.iter();
    let mut p = it.next().copied().unwrap_or(0.0);
    for &k in it {
        p = p * z + k;
    }
    p
}

/// 2^k for -126 <= k <= 127.
fn pow2(k: i32) -> f32 {
    f32::from_bits(((k + 127) as u32) << 23)
}

/// e^x. x = k ln2 + r with k = round(x log2 e), r by the split ln 2 (|r| <= ~0.35),
/// e^r = 1 + (r + r^2 P(r)) with P the Taylor series to r^7 (truncation < 0.2 ulp),
/// then scaled by 2^k in at most two exact steps and one rounding (subnormals
/// round once). NaN stays, +inf and overflow give +inf, -inf and underflow 0.
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x > EXP_MAX_ARG {
        return f32::INFINITY;
    }
    if x < EXP_MIN_ARG {
        return 0.0;
    }
    let t = x * LOG2_E;
    // |t| < 151: truncating t +- 1/2 rounds to nearest (ties away from zero).
    let k = (if t < 0.0 { t - 0.5 } else { t + 0.5 }) as i32;
    let kf = k as f32;
    let r = (x - kf * LN2_HI) - kf * LN2_LO;
    let p = horner(r, &EXP_POLY);
    let e = 1.0 + (r + r * r * p);
    if k > 127 {
        e * 2.0 * pow2(127)
    } else if k < -126 {
        e * pow2(k + 100) * pow2(-100)
    } else {
        e * pow2(k)
    }
}

/// Natural logarithm. x = 2^e m with m in [sqrt2/2, sqrt2) (subnormals scaled by
/// 2^23 first); with f = m - 1 and s = f / (2 + f), ln m = 2 atanh s =
/// f - s (f - T(s^2)), T the atanh series to s^8; the result e ln2_hi + (e ln2_lo +
/// ln m). NaN stays, ln(+inf) = +inf, ln(+-0) = -inf, ln(x < 0) = NaN.
pub fn ln(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        return x;
    }
    if x < 0.0 {
        return f32::NAN;
    }
    if x == 0.0 {
        return f32::NEG_INFINITY;
    }
    let mut b = x.to_bits();
    let mut e: i32 = -127;
    if b < 0x0080_0000 {
        b = (x * pow2(23)).to_bits();
        e -= 23;
    }
    e += (b >> 23) as i32;
    let mut mb = (b & 0x007f_ffff) | 0x3f80_0000;
    if mb > LN_SQRT2_BITS {
        mb -= 0x0080_0000;
        e += 1;
    }
    let f = f32::from_bits(mb) - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let t = z * horner(z, &LN_POLY);
    let lm = f - s * (f - t);
    if e == 0 {
        return lm;
    }
    let ef = e as f32;
    ef * LN2_HI + (ef * LN2_LO + lm)
}

/// Hyperbolic tangent, odd: |x| below `TANH_TINY` gives x (so -0 stays -0), below
/// `TANH_SERIES_MAX` the Taylor series to x^21, then 1 - 2 / (e^(2|x|) + 1), and
/// +-1 beyond `TANH_SAT`. NaN stays.
pub fn tanh(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let a = f32::from_bits(x.to_bits() & 0x7fff_ffff);
    if a < TANH_TINY {
        return x;
    }
    let y = if a > TANH_SAT {
        1.0
    } else if a < TANH_SERIES_MAX {
        let z = a * a;
        a + a * (z * horner(z, &TANH_POLY))
    } else {
        1.0 - 2.0 / (exp(a + a) + 1.0)
    };
    if x < 0.0 {
        -y
    } else {
        y
    }
}

/// x^y as e^(y ln x): for x > 0 within a few ulp of the true power while |y ln x|
/// stays small (lrn's use); x = 0 gives 0 for y > 0 and +inf for y < 0; x < 0 NaN.
/// A NaN y is returned as is, so `y * ln x` never multiplies two NaNs (whose result
/// payload would depend on the compiler's operand order).
pub fn pow(x: f32, y: f32) -> f32 {
    if y.is_nan() {
        return y;
    }
    exp(y * ln(x))
}

/// The bounds of a `clip` node as f32 (absent = unbounded).
pub fn clip_bounds(min: Option<f64>, max: Option<f64>) -> (f32, f32) {
    (
        min.map_or(f32::NEG_INFINITY, |v| v as f32),
        max.map_or(f32::INFINITY, |v| v as f32),
    )
}

/// A fused activation on a real value.
pub fn activation(a: Activation, x: f32) -> f32 {
    match a {
        Activation::None => x,
        Activation::Relu => relu(x),
        Activation::Clip { min, max } => clip(x, min, max),
    }
}

/// The real function of a unary elementwise op, if `op` is one.
pub fn unary(op: &Op) -> Option<Box<dyn Fn(f32) -> f32>> {
    Some(match op {
        Op::Relu => Box::new(relu),
        Op::LeakyRelu { alpha } => {
            let a = *alpha;
            Box::new(move |x| leaky_relu(x, a))
        }
        Op::Clip { min, max } => {
            let (lo, hi) = clip_bounds(*min, *max);
            Box::new(move |x| clip(x, lo, hi))
        }
        Op::Sigmoid => Box::new(sigmoid),
        Op::HardSigmoid { alpha, beta } => {
            let (a, b) = (*alpha, *beta);
            Box::new(move |x| hard_sigmoid(x, a, b))
        }
        Op::HardSwish => Box::new(hard_swish),
        Op::Tanh => Box::new(tanh),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_values() {
        assert_eq!(clip(7.0, 0.0, 6.0), 6.0);
        assert!(clip(f32::NAN, 0.0, 6.0).is_nan());
        assert!(relu(f32::NAN).is_nan());
        assert_eq!(relu(-0.5), 0.0);
        assert_eq!(leaky_relu(-2.0, 0.25), -0.5);
        assert_eq!(sigmoid(0.0), 0.5);
        // 1 / (1 + e^-2) = 0.880797...
        assert!((sigmoid(2.0) - 0.880_797_1).abs() < 1e-6);
        assert!((sigmoid(-2.0) - 0.119_202_92).abs() < 1e-6);
        assert_eq!(hard_sigmoid(1.0, 0.2, 0.5), 0.7);
        assert_eq!(hard_sigmoid(10.0, 0.2, 0.5), 1.0);
        // 3 * max(0, min(1, 3/6 + 0.5)) = 3
        assert_eq!(hard_swish(3.0), 3.0);
        assert_eq!(hard_swish(-3.0), -0.0);
        assert_eq!(clip_bounds(None, Some(6.0)), (f32::NEG_INFINITY, 6.0));
    }

    /// Distance in units in the last place (adjacent floats are 1 apart, +-0 are 0).
    fn ulps(a: f32, b: f32) -> u64 {
        let key = |x: f32| {
            let b = x.to_bits();
            if b >> 31 != 0 {
                -i64::from(b & 0x7fff_ffff)
            } else {
                i64::from(b)
            }
        };
        key(a).abs_diff(key(b))
    }

    /// Every 97th bit pattern whose value lies in [lo, hi], plus both bounds and
    /// the patterns next to them.
    fn sweep(lo: f32, hi: f32) -> impl Iterator<Item = f32> {
        let edges = [lo, hi, lo.next_up(), hi.next_down()];
        (0..=u32::MAX)
            .step_by(97)
            .map(f32::from_bits)
            .filter(move |x| *x >= lo && *x <= hi)
            .chain(edges)
    }

    /// The largest ulp error of `f` against the f64 function `r`, and where.
    fn max_ulps(f: fn(f32) -> f32, r: fn(f64) -> f64, lo: f32, hi: f32) -> (u64, f32) {
        let mut worst = (0, 0.0);
        for x in sweep(lo, hi) {
            let want = r(f64::from(x)) as f32;
            let d = ulps(f(x), want);
            if d > worst.0 {
                worst = (d, x);
            }
        }
        worst
    }

    #[test]
    fn exp_within_1_ulp() {
        let (d, at) = max_ulps(exp, f64::exp, -104.0, 89.0);
        assert!(d <= 1, "exp: {d} ulp at {at:e}");
    }

    #[test]
    fn ln_within_1_ulp() {
        let (d, at) = max_ulps(ln, f64::ln, 0.0, f32::MAX);
        assert!(d <= 1, "ln: {d} ulp at {at:e}");
    }

    #[test]
    fn tanh_within_1_ulp() {
        let (d, at) = max_ulps(tanh, f64::tanh, -12.0, 12.0);
        assert!(d <= 1, "tanh: {d} ulp at {at:e}");
        let (d, at) = max_ulps(sigmoid, |x| 1.0 / (1.0 + (-x).exp()), -120.0, 120.0);
        assert!(d <= 2, "sigmoid: {d} ulp at {at:e}");
    }

    #[test]
    fn special_values() {
        let same = |a: f32, b: f32| a.to_bits() == b.to_bits();
        assert!(exp(f32::NAN).is_nan() && ln(f32::NAN).is_nan() && tanh(f32::NAN).is_nan());
        assert!(same(exp(f32::INFINITY), f32::INFINITY));
        assert!(same(exp(f32::NEG_INFINITY), 0.0));
        assert!(same(exp(89.0), f32::INFINITY));
        assert!(exp(EXP_MAX_ARG).is_finite());
        assert!(same(exp(EXP_MAX_ARG.next_up()), f32::INFINITY));
        assert!(same(exp(-200.0), 0.0));
        // e^-100 = 3.72e-44: a subnormal (27 * 2^-149 = 3.78e-44 is its nearest).
        assert!(same(exp(-100.0), f32::from_bits(27)));
        assert!(same(exp(0.0), 1.0) && same(exp(-0.0), 1.0));
        assert!(same(ln(0.0), f32::NEG_INFINITY) && same(ln(-0.0), f32::NEG_INFINITY));
        assert!(ln(-1.0).is_nan() && ln(f32::NEG_INFINITY).is_nan());
        assert!(same(ln(f32::INFINITY), f32::INFINITY));
        assert!(same(ln(1.0), 0.0));
        // ln(2^-149) = -149 ln 2 = -103.2789...
        assert!((ln(f32::from_bits(1)) + 103.278_93).abs() < 1e-4);
        assert!(same(tanh(f32::INFINITY), 1.0) && same(tanh(f32::NEG_INFINITY), -1.0));
        assert!(same(tanh(-0.0), -0.0) && same(tanh(0.0), 0.0));
        assert!(same(tanh(1e-30), 1e-30));
        // lrn's power: 2^0.75 = 1.681792830...
        assert!((pow(2.0, 0.75) - 1.681_792_8).abs() < 3e-7);
        assert!(same(pow(0.0, 0.75), 0.0) && pow(-1.0, 0.75).is_nan());
    }
}
