//! Quantization parameters of a tensor.
//!
//! Invariant (checked by [`QuantParams::validate`]): `scales` and `zero_points` have
//! the same non-zero length; length 1 with `axis == None` is per-tensor, otherwise
//! `axis` is `Some` and the length equals the size of that axis (checked by the IR
//! verifier, which knows the shape). Scales are finite and > 0; zero points lie in
//! the storage type's range.

use crate::{Error, Result};

/// Integer storage type of a quantized tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QType {
    U8,
    I8,
    U16,
    I16,
    I32,
}

impl QType {
    /// Smallest representable value.
    pub const fn min(self) -> i64 {
        match self {
            QType::U8 | QType::U16 => 0,
            QType::I8 => i8::MIN as i64,
            QType::I16 => i16::MIN as i64,
            QType::I32 => i32::MIN as i64,
        }
    }

    /// Largest representable value.
    pub const fn max(self) -> i64 {
        match self {
            QType::U8 => u8::MAX as i64,
            QType::U16 => u16::MAX as i64,
            QType::I8 => i8::MAX as i64,
            QType::I16 => i16::MAX as i64,
            QType::I32 => i32::MAX as i64,
        }
    }

    pub const fn is_signed(self) -> bool {
        matches!(self, QType::I8 | QType::I16 | QType::I32)
    }

    pub const fn bits(self) -> u32 {
        match self {
            QType::U8 | QType::I8 => 8,
            QType::U16 | QType::I16 => 16,
            QType::I32 => 32,
        }
    }

    /// Lower-case name as the IR text form writes it (`u8`, `i8`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            QType::U8 => "u8",
            QType::I8 => "i8",
            QType::U16 => "u16",
            QType::I16 => "i16",
            QType::I32 => "i32",
        }
    }

    /// Saturate a wide integer into this type's range.
    pub fn saturate(self, v: i64) -> i64 {
        v.clamp(self.min(), self.max())
    }

    /// Largest distance from the zero point that symmetric quantization uses:
    /// `(max - min) / 2` rounded down, so 127 for 8-bit types (i8 weights live in the
    /// restricted range `[-127, 127]`), 32767 for 16-bit ones, `2^31 - 1` for i32.
    pub const fn symmetric_max(self) -> i64 {
        (self.max() - self.min()) / 2
    }

    /// Zero point of symmetric quantization: 0 for signed types, the midpoint for
    /// unsigned ones (128 for u8, 32768 for u16).
    pub const fn symmetric_zero_point(self) -> i32 {
        match self {
            QType::U8 => 128,
            QType::U16 => 32_768,
            QType::I8 | QType::I16 | QType::I32 => 0,
        }
    }
}

/// Scale(s) and zero point(s) of a quantized tensor: `real = scale * (q - zero_point)`.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantParams {
    pub storage: QType,
    /// `None`: per-tensor (one scale, one zero point). `Some(a)`: one per index of axis `a`.
    pub axis: Option<usize>,
    pub scales: Vec<f32>,
    pub zero_points: Vec<i32>,
}

impl QuantParams {
    /// Per-tensor parameters.
    pub fn per_tensor(storage: QType, scale: f32, zero_point: i32) -> Self {
        QuantParams {
            storage,
            axis: None,
            scales: vec![scale],
            zero_points: vec![zero_point],
        }
    }

    /// Per-axis parameters.
    pub fn per_axis(storage: QType, axis: usize, scales: Vec<f32>, zero_points: Vec<i32>) -> Self {
        QuantParams {
            storage,
            axis: Some(axis),
            scales,
            zero_points,
        }
    }

    pub fn is_per_tensor(&self) -> bool {
        self.axis.is_none()
    }

    /// Number of (scale, zero point) pairs.
    pub fn len(&self) -> usize {
        self.scales.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// Scale for channel `c` of the quantized axis (per-tensor: the one scale).
    pub fn scale(&self, c: usize) -> f32 {
        if self.scales.len() == 1 {
            self.scales[0]
        } else {
            self.scales[c]
        }
    }

    /// Zero point for channel `c` of the quantized axis (per-tensor: the one zero point).
    pub fn zero_point(&self, c: usize) -> i32 {
        if self.zero_points.len() == 1 {
            self.zero_points[0]
        } else {
            self.zero_points[c]
        }
    }

    /// ONNX `QuantizeLinear` of `x` with the parameters of channel `channel` (see
    /// [`crate::quantize`]). Like [`QuantParams::scale`], `channel` must be below
    /// [`QuantParams::len`] for per-axis parameters.
    #[inline]
    pub fn quantize(&self, x: f32, channel: usize) -> i64 {
        crate::quantize(
            x,
            self.scale(channel),
            self.zero_point(channel),
            self.storage,
        )
    }

    /// ONNX `DequantizeLinear` of `q` with the parameters of channel `channel` (see
    /// [`crate::dequantize`]). Like [`QuantParams::scale`], `channel` must be below
    /// [`QuantParams::len`] for per-axis parameters.
    #[inline]
    pub fn dequantize(&self, q: i64, channel: usize) -> f32 {
        crate::dequantize(q, self.scale(channel), self.zero_point(channel))
    }

    /// Check the invariants that do not need the tensor's shape.
    pub fn validate(&self) -> Result<()> {
        if self.scales.is_empty() || self.scales.len() != self.zero_points.len() {
            return Err(Error::InvalidParams(format!(
                "{} scales but {} zero points",
                self.scales.len(),
                self.zero_points.len()
            )));
        }
        if self.axis.is_none() && self.scales.len() != 1 {
            return Err(Error::InvalidParams(format!(
                "per-tensor parameters with {} scales",
                self.scales.len()
            )));
        }
        for &s in &self.scales {
            if !(s.is_finite() && s > 0.0) {
                return Err(Error::InvalidParams(format!(
                    "scale {s} is not finite and positive"
                )));
            }
        }
        for &z in &self.zero_points {
            let z = i64::from(z);
            if z < self.storage.min() || z > self.storage.max() {
                return Err(Error::InvalidParams(format!(
                    "zero point {z} outside the range of {}",
                    self.storage.name()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_constants() {
        let want: [(QType, i64, i32); 5] = [
            (QType::U8, 127, 128),
            (QType::I8, 127, 0),
            (QType::U16, 32_767, 32_768),
            (QType::I16, 32_767, 0),
            (QType::I32, 2_147_483_647, 0),
        ];
        for (q, max, zp) in want {
            assert_eq!(q.symmetric_max(), max, "{q:?}");
            assert_eq!(q.symmetric_zero_point(), zp, "{q:?}");
        }
    }

    #[test]
    fn per_channel_quantize_uses_the_channel_parameters() {
        let p = QuantParams::per_axis(QType::I8, 0, vec![0.5, 0.25], vec![0, 10]);
        // 1.25 / 0.5 = 2.5 -> 2 ; 1.25 / 0.25 = 5, + 10 = 15.
        assert_eq!(p.quantize(1.25, 0), 2);
        assert_eq!(p.quantize(1.25, 1), 15);
        // (15 - 10) * 0.25 = 1.25 ; (2 - 0) * 0.5 = 1.
        assert_eq!(p.dequantize(15, 1), 1.25);
        assert_eq!(p.dequantize(2, 0), 1.0);
        let t = QuantParams::per_tensor(QType::U8, 0.5, 128);
        assert_eq!(t.quantize(-1.0, 7), 126);
        assert_eq!(t.dequantize(126, 7), -1.0);
        assert_eq!(t.quantize(1000.0, 0), 255);
    }
}
