//! Element type conversion between all dtypes: ONNX Cast as qc defines it. The one
//! implementation the importer's constant folding, the passes and the interpreter share.
//!
//! - to f16/bf16/f32/f64: round to nearest even (f16/bf16 via `half`; to f16 through
//!   f32, so an f64 source rounds twice), from integers directly (no double rounding
//!   through f64 for f32 targets);
//! - float → integer: truncate toward zero, **saturating** at the type's bounds,
//!   NaN → 0 (ONNX leaves out-of-range values undefined; this is Rust's `as`);
//! - integer → integer: wraps (numpy `astype`);
//! - to bool: nonzero (NaN included) is true; from bool: 0 / 1.

use crate::{DType, TensorData};

/// One element read exactly: floats widen to f64 losslessly, integers to i128.
#[derive(Clone, Copy)]
enum Elem {
    F(f64),
    I(i128),
}

fn read(d: &TensorData) -> Vec<Elem> {
    match d {
        TensorData::F32(v) => v.iter().map(|&x| Elem::F(f64::from(x))).collect(),
        TensorData::F64(v) => v.iter().map(|&x| Elem::F(x)).collect(),
        TensorData::F16(v) => v
            .iter()
            .map(|&x| Elem::F(half::f16::from_bits(x).to_f64()))
            .collect(),
        TensorData::BF16(v) => v
            .iter()
            .map(|&x| Elem::F(half::bf16::from_bits(x).to_f64()))
            .collect(),
        TensorData::I8(v) => v.iter().map(|&x| Elem::I(i128::from(x))).collect(),
        TensorData::U8(v) => v.iter().map(|&x| Elem::I(i128::from(x))).collect(),
        TensorData::I16(v) => v.iter().map(|&x| Elem::I(i128::from(x))).collect(),
        TensorData::U16(v) => v.iter().map(|&x| Elem::I(i128::from(x))).collect(),
        TensorData::I32(v) => v.iter().map(|&x| Elem::I(i128::from(x))).collect(),
        TensorData::U32(v) => v.iter().map(|&x| Elem::I(i128::from(x))).collect(),
        TensorData::I64(v) => v.iter().map(|&x| Elem::I(i128::from(x))).collect(),
        TensorData::U64(v) => v.iter().map(|&x| Elem::I(i128::from(x))).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| Elem::I(i128::from(x))).collect(),
    }
}

macro_rules! to_int {
    ($xs:expr, $t:ty) => {
        $xs.iter()
            .map(|e| match *e {
                Elem::F(f) => f as $t,
                Elem::I(i) => i as $t,
            })
            .collect()
    };
}

/// Convert every element of `d` to `to`.
fn cast(d: &TensorData, to: DType) -> TensorData {
    if d.dtype() == to {
        return d.clone();
    }
    let xs = read(d);
    let f64_of = |e: &Elem| match *e {
        Elem::F(f) => f,
        Elem::I(i) => i as f64,
    };
    match to {
        DType::F32 => TensorData::F32(
            xs.iter()
                .map(|e| match *e {
                    Elem::F(f) => f as f32,
                    Elem::I(i) => i as f32,
                })
                .collect(),
        ),
        DType::F64 => TensorData::F64(xs.iter().map(f64_of).collect()),
        DType::F16 => TensorData::F16(
            xs.iter()
                // Through f32: `half`'s f64 → f16 differs by host (with F16C it goes
                // through f32, without it truncates the f64 first); this is the same
                // on every host and what the C emitter reproduces.
                .map(|e| half::f16::from_f32(f64_of(e) as f32).to_bits())
                .collect(),
        ),
        DType::BF16 => TensorData::BF16(
            xs.iter()
                .map(|e| half::bf16::from_f64(f64_of(e)).to_bits())
                .collect(),
        ),
        DType::I8 => TensorData::I8(to_int!(xs, i8)),
        DType::U8 => TensorData::U8(to_int!(xs, u8)),
        DType::I16 => TensorData::I16(to_int!(xs, i16)),
        DType::U16 => TensorData::U16(to_int!(xs, u16)),
        DType::I32 => TensorData::I32(to_int!(xs, i32)),
        DType::U32 => TensorData::U32(to_int!(xs, u32)),
        DType::I64 => TensorData::I64(to_int!(xs, i64)),
        DType::U64 => TensorData::U64(to_int!(xs, u64)),
        DType::Bool => TensorData::Bool(
            xs.iter()
                .map(|e| match *e {
                    Elem::F(f) => f != 0.0,
                    Elem::I(i) => i != 0,
                })
                .collect(),
        ),
    }
}

impl TensorData {
    /// Every element converted to `to` (see the module docs for the rules).
    pub fn cast(&self, to: DType) -> TensorData {
        cast(self, to)
    }

    /// A real scalar as one element of `to` (pad values, clip bounds).
    pub fn scalar(v: f64, to: DType) -> TensorData {
        cast(&TensorData::F64(vec![v]), to)
    }
}
