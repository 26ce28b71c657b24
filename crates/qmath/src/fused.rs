//! The `float` contract's fused 8-bit kernels: quantized add, softmax and global average.
//!
//! onnxruntime does not run a quantized `Add` or `Softmax` as dequantize → f32 op →
//! quantize: its QDQ fusion turns them into `QLinearAdd` and `QLinearSoftmax`, whose
//! arithmetic rounds differently (a fused multiply-add chain on the raw codes; an
//! exponential table and a `floor(1 / y_scale)` output factor). The `float` contract
//! promises bit-exactness with onnxruntime, so under it every backend computes these two
//! ops exactly as defined here. The other contracts keep the generic definition.
//!
//! Both definitions were pinned against onnxruntime 1.31 on x86-64 with AVX2/FMA
//! (`fixtures/gen/fused_ops.py` records its outputs for every pair of codes and
//! random scales; `tests/fused.rs` replays them).
//!
//! **Add** ([`FusedAdd`]). With `ra = sa / sc`, `rb = sb / sc` (f32 divisions) and
//! `fixed = zc - fma(ra, za, rb * zb)`, an element is
//! `t = fma(a, ra, fma(b, rb, fixed))`, except when `a` is constant along the innermost
//! broadcast span ([`AddForm::ScalarA`]): then the operands swap roles. `t` is rounded
//! half to even to i32 (NaN or out of range gives `i32::MIN`) and saturated to the
//! 8-bit type. `a`, `b` are the stored codes (not zero-point shifted).
//!
//! **Softmax** ([`FusedSoftmax`]), over a row of `d` codes: with
//! `shift = max(0, ln(f32::MAX / d) - 5) / sx` (the division in f32, the rest in f64),
//! `e[k] = f32(exp((255 - k - 255 + shift) * sx))` for `k = max - x` in `0..=255`,
//! `sum` the f32 sum of `e[max - x]` in row order, and `ys = floor(1 / sy)` (f32), an
//! element is `round_half_even((e[max - x] * ys) / sum) + zy` saturated as
//! [`FusedSoftmax::code`] says. The input zero point plays no part.
//!
//! **Global average** ([`FusedMean`]): an integer sum and one f32 scaling, see there.

use crate::{QType, Result};

/// Which operand stays constant along the innermost broadcast span of an add (only
/// [`AddForm::ScalarA`] changes the arithmetic: the operands swap roles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddForm {
    Both,
    ScalarA,
    ScalarB,
}

impl AddForm {
    /// The form onnxruntime's broadcasting picks for operand shapes `a`, `b` and result
    /// shape `out` (right-aligned, numpy rules): an operand of one element is scalar;
    /// otherwise the innermost result axis longer than 1 decides — the operand of
    /// extent 1 there is constant along each span.
    pub fn of(a: &[usize], b: &[usize], out: &[usize]) -> AddForm {
        let numel = |d: &[usize]| d.iter().product::<usize>();
        if numel(a) == 1 {
            return AddForm::ScalarA;
        }
        if numel(b) == 1 {
            return AddForm::ScalarB;
        }
        let dim = |d: &[usize], i: usize| {
            let off = out.len() - i;
            if off > d.len() {
                1
            } else {
                d[d.len() - off]
            }
        };
        for i in (0..out.len()).rev() {
            if out[i] > 1 {
                if dim(a, i) == 1 {
                    return AddForm::ScalarA;
                }
                if dim(b, i) == 1 {
                    return AddForm::ScalarB;
                }
                return AddForm::Both;
            }
        }
        AddForm::Both
    }
}

/// A quantized add under the `float` contract, for one node (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FusedAdd {
    /// Scale ratio of the operand applied last (`a`, or `b` when [`AddForm::ScalarA`]).
    pub x_ratio: f32,
    /// Scale ratio of the other operand.
    pub y_ratio: f32,
    /// `zc - fma(x_ratio, zx, y_ratio * zy)`.
    pub fixed: f32,
    /// The operands swap roles: `x` is `b` and `y` is `a`.
    pub swapped: bool,
    /// Result codes are clamped to `[lo, hi]` (the type's range, narrowed by a fused
    /// activation).
    pub lo: i32,
    pub hi: i32,
}

impl FusedAdd {
    /// `a`, `b`, `c`: (scale, zero point) of the operands and the result, all stored as
    /// `q` (8-bit).
    pub fn new(
        a: (f32, i32),
        b: (f32, i32),
        c: (f32, i32),
        q: QType,
        form: AddForm,
    ) -> Result<Self> {
        if !matches!(q, QType::U8 | QType::I8) {
            return Err(crate::Error::InvalidParams(format!(
                "the fused add is defined on 8-bit types, not {q:?}"
            )));
        }
        for (s, what) in [(a.0, "a"), (b.0, "b"), (c.0, "result")] {
            if !(s.is_finite() && s > 0.0) {
                return Err(crate::Error::InvalidParams(format!(
                    "add {what} scale {s} is not positive and finite"
                )));
            }
        }
        let swapped = form == AddForm::ScalarA;
        let (x, y) = if swapped { (b, a) } else { (a, b) };
        let x_ratio = x.0 / c.0;
        let y_ratio = y.0 / c.0;
        let fixed = c.1 as f32 - x_ratio.mul_add(x.1 as f32, y_ratio * y.1 as f32);
        Ok(FusedAdd {
            x_ratio,
            y_ratio,
            fixed,
            swapped,
            lo: q.min() as i32,
            hi: q.max() as i32,
        })
    }

    /// Narrow the result range to `[lo, hi]` (codes of a fused activation's bounds).
    pub fn clamp(mut self, lo: i32, hi: i32) -> Self {
        self.lo = self.lo.max(lo);
        self.hi = self.hi.min(hi);
        self
    }

    /// The value before rounding, for stored codes `a`, `b` in operand order.
    pub fn t(&self, a: i32, b: i32) -> f32 {
        let (x, y) = if self.swapped { (b, a) } else { (a, b) };
        let (x, y) = (x as f32, y as f32);
        x.mul_add(self.x_ratio, y.mul_add(self.y_ratio, self.fixed))
    }

    /// The result code for stored codes `a`, `b`.
    pub fn apply(&self, a: i32, b: i32) -> i32 {
        self.finish(self.t(a, b))
    }

    /// Round `t` to the result code: half to even into i32 (`i32::MIN` when NaN or out
    /// of range, as the x86 conversion), then the clamp.
    pub fn finish(&self, t: f32) -> i32 {
        let r = crate::round_half_even(t);
        let i = if (-2_147_483_648.0..2_147_483_648.0).contains(&r) {
            r as i32
        } else {
            i32::MIN
        };
        i.clamp(self.lo, self.hi)
    }
}

/// A quantized softmax under the `float` contract, for rows of `d` codes (see the
/// module doc).
#[derive(Clone, Debug, PartialEq)]
pub struct FusedSoftmax {
    /// `e[k]` for `k = row max - x`.
    pub exp: [f32; 256],
    /// `floor(1 / y_scale)`.
    pub y_factor: f32,
    pub y_zero_point: i32,
    pub q: QType,
}

impl FusedSoftmax {
    /// `x_scale`: the operand's scale; `y`: the result's (scale, zero point); `d`: the
    /// row length (the softmax axis); `q`: the storage of operand and result (8-bit).
    pub fn new(x_scale: f32, y: (f32, i32), d: usize, q: QType) -> Result<Self> {
        if !matches!(q, QType::U8 | QType::I8) {
            return Err(crate::Error::InvalidParams(format!(
                "the fused softmax is defined on 8-bit types, not {q:?}"
            )));
        }
        if !(x_scale.is_finite() && x_scale > 0.0 && y.0.is_finite() && y.0 > 0.0) || d == 0 {
            return Err(crate::Error::InvalidParams(format!(
                "softmax scales {x_scale}, {} or row length {d} out of range",
                y.0
            )));
        }
        let sx = x_scale as f64;
        let shift = ((f32::MAX / d as f32) as f64).ln();
        let shift = (shift - 5.0).max(0.0) / sx;
        let mut exp = [0f32; 256];
        for (k, e) in exp.iter_mut().enumerate() {
            let i = 255 - k as i32;
            *e = ((i as f64 - 255.0 + shift) * sx).exp() as f32;
        }
        Ok(FusedSoftmax {
            exp,
            y_factor: (1.0f32 / y.0).floor(),
            y_zero_point: y.1,
            q,
        })
    }

    /// The result code of an element whose table entry is `e`, in a row whose entries
    /// sum to `sum`: `v = (e * y_factor) / sum` rounded half to even; for u8,
    /// `min(u32(v) + zy, 255)` with a non-finite or huge `v` converting to 0 (the x86
    /// conversion through i64); for i8, `clamp(i32(v) + zy, -128, 127)` with a
    /// non-finite or out-of-range `v` converting to `i32::MIN`.
    pub fn code(&self, e: f32, sum: f32) -> i32 {
        let v = crate::round_half_even((e * self.y_factor) / sum);
        match self.q {
            QType::U8 => {
                let u = if (0.0..9.223_372e18).contains(&v) {
                    (v as u64) as u32
                } else if (-9.223_372e18..0.0).contains(&v) {
                    (v as i64) as u32
                } else {
                    0
                };
                u.wrapping_add(self.y_zero_point as u32).min(255) as i32
            }
            _ => {
                let i = if (-2_147_483_648.0..2_147_483_648.0).contains(&v) {
                    v as i32
                } else {
                    i32::MIN
                };
                i.wrapping_add(self.y_zero_point).clamp(-128, 127)
            }
        }
    }

    /// One row: `x` stored codes in, result codes out (`out.len() == x.len()`).
    pub fn row(&self, x: &[i32], out: &mut [i32]) {
        let Some(&mx) = x.iter().max() else {
            return;
        };
        let e = |v: i32| self.exp[(mx - v).clamp(0, 255) as usize];
        let mut sum = 0f32;
        for &v in x {
            sum += e(v);
        }
        for (o, &v) in out.iter_mut().zip(x) {
            *o = self.code(e(v), sum);
        }
    }
}

/// A quantized global average (`GlobalAveragePool`, or an `AveragePool` whose window
/// is the whole unpadded image) under the `float` contract: onnxruntime's
/// `QLinearGlobalAveragePool`. Over the `n` codes of a channel, `acc = sum - zx * n`
/// in i32, then `clamp(f32(acc) * scale, qmin - zy, qmax - zy)` rounded half to even,
/// plus `zy`, with `scale = sx / (sy * f32(n))` in f32.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FusedMean {
    /// `-zx * n`.
    pub bias: i32,
    pub scale: f32,
    pub lo: f32,
    pub hi: f32,
    pub y_zero_point: i32,
}

impl FusedMean {
    /// `None` where onnxruntime's kernel refuses the parameters (`n ≥ 2^24`, or
    /// `scale` outside `[2^-32, 256)`): the generic definition applies there.
    pub fn new(x: (f32, i32), y: (f32, i32), n: usize, q: QType) -> Option<Self> {
        if !matches!(q, QType::U8 | QType::I8) || n == 0 || n >= 1 << 24 {
            return None;
        }
        let scale = x.0 / (y.0 * n as f32);
        if !(2.328_306_4e-10..256.0).contains(&scale) {
            return None;
        }
        Some(FusedMean {
            bias: x.1.checked_mul(i32::try_from(n).ok()?)?.checked_neg()?,
            scale,
            lo: (q.min() as i32 - y.1) as f32,
            hi: (q.max() as i32 - y.1) as f32,
            y_zero_point: y.1,
        })
    }

    /// The result code of a channel whose codes sum to `sum`.
    pub fn apply(&self, sum: i32) -> i32 {
        let v = (sum.wrapping_add(self.bias) as f32 * self.scale)
            .max(self.lo)
            .min(self.hi);
        crate::round_half_even(v) as i32 + self.y_zero_point
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_follow_the_innermost_long_axis() {
        assert_eq!(AddForm::of(&[2, 3], &[2, 3], &[2, 3]), AddForm::Both);
        assert_eq!(AddForm::of(&[2, 3], &[3], &[2, 3]), AddForm::Both);
        assert_eq!(
            AddForm::of(&[1, 4, 5, 5], &[1, 4, 1, 1], &[1, 4, 5, 5]),
            AddForm::ScalarB
        );
        assert_eq!(AddForm::of(&[4, 1], &[4, 7], &[4, 7]), AddForm::ScalarA);
        assert_eq!(AddForm::of(&[1], &[9], &[9]), AddForm::ScalarA);
        assert_eq!(AddForm::of(&[9], &[], &[9]), AddForm::ScalarB);
        assert_eq!(AddForm::of(&[2, 1], &[2, 1], &[2, 1]), AddForm::Both);
    }

    #[test]
    fn add_is_exact_where_the_real_sum_is_a_code() -> crate::Result<()> {
        // a = 2 * (qa - 10), b = 2 * (qb - 20), c = 2 * (qc - 30): qc = qa + qb.
        let f = FusedAdd::new((2.0, 10), (2.0, 20), (2.0, 30), QType::U8, AddForm::Both)?;
        assert_eq!(f.apply(15, 25), 30 + 5 + 5);
        assert_eq!(f.apply(0, 0), 0);
        assert_eq!(f.apply(255, 255), 255);
        let f = f.clamp(30, 255);
        assert_eq!(f.apply(5, 20), 30);
        Ok(())
    }

    #[test]
    fn softmax_of_equal_codes_is_uniform() -> crate::Result<()> {
        let s = FusedSoftmax::new(0.1, (1.0 / 256.0, 0), 4, QType::U8)?;
        let mut out = [0; 4];
        s.row(&[7, 7, 7, 7], &mut out);
        assert_eq!(out, [64; 4]);
        let s = FusedSoftmax::new(0.1, (1.0 / 256.0, -128), 1, QType::I8)?;
        let mut one = [0];
        s.row(&[-3], &mut one);
        assert_eq!(one, [127]);
        Ok(())
    }
}
