//! Dense tensors (weights, constants, interpreter values).
//!
//! Invariant: `data.len() == shape.numel()`; enforced by every constructor.

use crate::{DType, Error, Result, Shape};

/// Typed element storage. `F16` and `BF16` hold raw IEEE bits.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<u16>),
    BF16(Vec<u16>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    I16(Vec<i16>),
    U16(Vec<u16>),
    I32(Vec<i32>),
    U32(Vec<u32>),
    I64(Vec<i64>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
}

/// Apply `$body` to the vector inside any `TensorData` variant, bound as `$v`.
#[macro_export]
macro_rules! with_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::TensorData::F32($v) => $body,
            $crate::TensorData::F64($v) => $body,
            $crate::TensorData::F16($v) => $body,
            $crate::TensorData::BF16($v) => $body,
            $crate::TensorData::I8($v) => $body,
            $crate::TensorData::U8($v) => $body,
            $crate::TensorData::I16($v) => $body,
            $crate::TensorData::U16($v) => $body,
            $crate::TensorData::I32($v) => $body,
            $crate::TensorData::U32($v) => $body,
            $crate::TensorData::I64($v) => $body,
            $crate::TensorData::U64($v) => $body,
            $crate::TensorData::Bool($v) => $body,
        }
    };
}

impl TensorData {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
            TensorData::F16(_) => DType::F16,
            TensorData::BF16(_) => DType::BF16,
            TensorData::I8(_) => DType::I8,
            TensorData::U8(_) => DType::U8,
            TensorData::I16(_) => DType::I16,
            TensorData::U16(_) => DType::U16,
            TensorData::I32(_) => DType::I32,
            TensorData::U32(_) => DType::U32,
            TensorData::I64(_) => DType::I64,
            TensorData::U64(_) => DType::U64,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        with_data!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `n` zero elements of `dtype`.
    pub fn zeros(dtype: DType, n: usize) -> TensorData {
        match dtype {
            DType::F32 => TensorData::F32(vec![0.0; n]),
            DType::F64 => TensorData::F64(vec![0.0; n]),
            DType::F16 => TensorData::F16(vec![0; n]),
            DType::BF16 => TensorData::BF16(vec![0; n]),
            DType::I8 => TensorData::I8(vec![0; n]),
            DType::U8 => TensorData::U8(vec![0; n]),
            DType::I16 => TensorData::I16(vec![0; n]),
            DType::U16 => TensorData::U16(vec![0; n]),
            DType::I32 => TensorData::I32(vec![0; n]),
            DType::U32 => TensorData::U32(vec![0; n]),
            DType::I64 => TensorData::I64(vec![0; n]),
            DType::U64 => TensorData::U64(vec![0; n]),
            DType::Bool => TensorData::Bool(vec![false; n]),
        }
    }

    /// Element `i` as f64 (f16/bf16 decoded; bool as 0/1). Exact for every integer
    /// type except i64/u64 beyond 2^53.
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            TensorData::F32(v) => f64::from(v[i]),
            TensorData::F64(v) => v[i],
            TensorData::F16(v) => f64::from(half::f16::from_bits(v[i]).to_f32()),
            TensorData::BF16(v) => f64::from(half::bf16::from_bits(v[i]).to_f32()),
            TensorData::I8(v) => f64::from(v[i]),
            TensorData::U8(v) => f64::from(v[i]),
            TensorData::I16(v) => f64::from(v[i]),
            TensorData::U16(v) => f64::from(v[i]),
            TensorData::I32(v) => f64::from(v[i]),
            TensorData::U32(v) => f64::from(v[i]),
            TensorData::I64(v) => v[i] as f64,
            TensorData::U64(v) => v[i] as f64,
            TensorData::Bool(v) => f64::from(u8::from(v[i])),
        }
    }

    /// Element `i` as i64 (floats truncated toward zero, saturating; bool as 0/1).
    pub fn get_i64(&self, i: usize) -> i64 {
        match self {
            TensorData::I8(v) => i64::from(v[i]),
            TensorData::U8(v) => i64::from(v[i]),
            TensorData::I16(v) => i64::from(v[i]),
            TensorData::U16(v) => i64::from(v[i]),
            TensorData::I32(v) => i64::from(v[i]),
            TensorData::U32(v) => i64::from(v[i]),
            TensorData::I64(v) => v[i],
            TensorData::U64(v) => v[i] as i64,
            TensorData::Bool(v) => i64::from(v[i]),
            _ => self.get_f64(i) as i64,
        }
    }

    /// Little-endian bytes of the elements (bool as 0/1 bytes).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            TensorData::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::F16(v) | TensorData::BF16(v) | TensorData::U16(v) => {
                v.iter().flat_map(|x| x.to_le_bytes()).collect()
            }
            TensorData::I8(v) => v.iter().map(|&x| x as u8).collect(),
            TensorData::U8(v) => v.clone(),
            TensorData::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::U64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    /// Decode little-endian bytes; errors if the length is not a multiple of the size.
    pub fn from_le_bytes(dtype: DType, bytes: &[u8]) -> Result<TensorData> {
        let size = dtype.size();
        if !bytes.len().is_multiple_of(size) {
            return Err(Error::Tensor(format!(
                "{} bytes is not a whole number of {} elements",
                bytes.len(),
                dtype
            )));
        }
        macro_rules! chunks {
            ($t:ty, $n:expr) => {
                bytes
                    .chunks_exact($n)
                    .map(|c| {
                        let mut a = [0u8; $n];
                        a.copy_from_slice(c);
                        <$t>::from_le_bytes(a)
                    })
                    .collect()
            };
        }
        Ok(match dtype {
            DType::F32 => TensorData::F32(chunks!(f32, 4)),
            DType::F64 => TensorData::F64(chunks!(f64, 8)),
            DType::F16 => TensorData::F16(chunks!(u16, 2)),
            DType::BF16 => TensorData::BF16(chunks!(u16, 2)),
            DType::I8 => TensorData::I8(bytes.iter().map(|&b| b as i8).collect()),
            DType::U8 => TensorData::U8(bytes.to_vec()),
            DType::I16 => TensorData::I16(chunks!(i16, 2)),
            DType::U16 => TensorData::U16(chunks!(u16, 2)),
            DType::I32 => TensorData::I32(chunks!(i32, 4)),
            DType::U32 => TensorData::U32(chunks!(u32, 4)),
            DType::I64 => TensorData::I64(chunks!(i64, 8)),
            DType::U64 => TensorData::U64(chunks!(u64, 8)),
            DType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        })
    }
}

/// A dense row-major tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Shape,
    data: TensorData,
}

impl Tensor {
    /// Build a tensor; errors if the element count does not match the shape.
    pub fn new(shape: impl Into<Shape>, data: TensorData) -> Result<Tensor> {
        let shape = shape.into();
        let n = shape.numel()?;
        if n != data.len() {
            return Err(Error::Tensor(format!(
                "shape {shape} needs {n} elements, data has {}",
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }

    /// A zero-filled tensor; errors if the shape is too large (see [`Shape::numel`]).
    pub fn zeros(dtype: DType, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        let n = shape.numel()?;
        Ok(Tensor {
            shape,
            data: TensorData::zeros(dtype, n),
        })
    }

    pub fn scalar_f32(v: f32) -> Tensor {
        Tensor {
            shape: Shape::scalar(),
            data: TensorData::F32(vec![v]),
        }
    }

    pub fn from_f32(shape: impl Into<Shape>, v: Vec<f32>) -> Result<Tensor> {
        Tensor::new(shape, TensorData::F32(v))
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    pub fn dims(&self) -> &[usize] {
        &self.shape.0
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn data(&self) -> &TensorData {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut TensorData {
        &mut self.data
    }

    pub fn into_data(self) -> TensorData {
        self.data
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Same data, new shape with the same element count.
    pub fn reshaped(self, shape: impl Into<Shape>) -> Result<Tensor> {
        Tensor::new(shape, self.data)
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// All elements converted to f64 (see [`TensorData::get_f64`]).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        (0..self.len()).map(|i| self.data.get_f64(i)).collect()
    }

    /// All elements converted to f32 through f64.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            _ => (0..self.len())
                .map(|i| self.data.get_f64(i) as f32)
                .collect(),
        }
    }

    /// All elements converted to i64 (see [`TensorData::get_i64`]).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        (0..self.len()).map(|i| self.data.get_i64(i)).collect()
    }

    /// A short content digest (FNV-1a 64 over dtype, shape and little-endian bytes),
    /// shown by the text form instead of the data.
    pub fn digest(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |b: u8| {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        };
        for b in self.dtype().name().bytes() {
            eat(b);
        }
        for &d in self.dims() {
            for b in (d as u64).to_le_bytes() {
                eat(b);
            }
        }
        for b in self.data.to_le_bytes() {
            eat(b);
        }
        h
    }
}
