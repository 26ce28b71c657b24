//! Shapes and tensor types.

use crate::{DType, Error, Result};
use qc_qmath::QuantParams;

/// Largest element count qc accepts for one tensor (2^31). Checked before any
/// allocation so a model claiming absurd sizes is rejected, not allocated.
pub const MAX_NUMEL: usize = 1 << 31;

/// A static shape (row-major dims). Rank 0 is a scalar.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<usize>);

impl Shape {
    pub fn scalar() -> Shape {
        Shape(Vec::new())
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// Element count; errors when it overflows or exceeds [`MAX_NUMEL`].
    pub fn numel(&self) -> Result<usize> {
        let mut n: usize = 1;
        for &d in &self.0 {
            n = n
                .checked_mul(d)
                .filter(|&n| n <= MAX_NUMEL)
                .ok_or_else(|| Error::TooLarge {
                    shape: self.to_string(),
                    limit: MAX_NUMEL,
                })?;
        }
        Ok(n)
    }

    /// Row-major strides in elements.
    pub fn strides(&self) -> Vec<usize> {
        let mut s = vec![1usize; self.0.len()];
        for i in (0..self.0.len().saturating_sub(1)).rev() {
            s[i] = s[i + 1].saturating_mul(self.0[i + 1]);
        }
        s
    }
}

impl From<Vec<usize>> for Shape {
    fn from(v: Vec<usize>) -> Shape {
        Shape(v)
    }
}

impl From<&[usize]> for Shape {
    fn from(v: &[usize]) -> Shape {
        Shape(v.to_vec())
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(v: [usize; N]) -> Shape {
        Shape(v.to_vec())
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// The type of a value: element type, static shape, and quantization parameters when
/// the value is a quantized tensor (`real = scale * (q - zero_point)`).
///
/// A value with an integer dtype and `quant == None` is a plain integer tensor (raw
/// integers, e.g. the i32 output of `conv_integer`), not a quantized one.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Shape,
    pub quant: Option<QuantParams>,
}

impl TensorType {
    pub fn new(dtype: DType, shape: impl Into<Shape>) -> TensorType {
        TensorType {
            dtype,
            shape: shape.into(),
            quant: None,
        }
    }

    pub fn quantized(shape: impl Into<Shape>, quant: QuantParams) -> TensorType {
        TensorType {
            dtype: DType::from_qtype(quant.storage),
            shape: shape.into(),
            quant: Some(quant),
        }
    }

    pub fn f32(shape: impl Into<Shape>) -> TensorType {
        TensorType::new(DType::F32, shape)
    }

    pub fn is_quantized(&self) -> bool {
        self.quant.is_some()
    }

    pub fn rank(&self) -> usize {
        self.shape.rank()
    }

    /// Element count (errors like [`Shape::numel`]).
    pub fn numel(&self) -> Result<usize> {
        self.shape.numel()
    }

    /// Bytes of one tensor of this type.
    pub fn size_bytes(&self) -> Result<usize> {
        Ok(self.numel()? * self.dtype.size())
    }
}
