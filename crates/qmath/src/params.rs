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
        QuantParams { storage, axis: None, scales: vec![scale], zero_points: vec![zero_point] }
    }

    /// Per-axis parameters.
    pub fn per_axis(storage: QType, axis: usize, scales: Vec<f32>, zero_points: Vec<i32>) -> Self {
        QuantParams { storage, axis: Some(axis), scales, zero_points }
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
        if self.scales.len() == 1 { self.scales[0] } else { self.scales[c] }
    }

    /// Zero point for channel `c` of the quantized axis (per-tensor: the one zero point).
    pub fn zero_point(&self, c: usize) -> i32 {
        if self.zero_points.len() == 1 { self.zero_points[0] } else { self.zero_points[c] }
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
                return Err(Error::InvalidParams(format!("scale {s} is not finite and positive")));
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
