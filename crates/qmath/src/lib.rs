//! qc-qmath: every number qc's quantized arithmetic produces is decided here.
//!
//! - [`QuantParams`]: scale(s), zero point(s) and storage type of a quantized tensor,
//!   per tensor or per axis.
//! - choosing parameters from an observed range (asymmetric, symmetric, power-of-two).
//! - the three rounding contracts (`float`, `fixed`, `fixed-single`) of requantization,
//!   with Q31 multiplier/shift computation.
//!
//! Interpreter, JIT and C emitter all call into this crate; no kernel computes a
//! multiplier or rounds a requantized value by itself.

mod params;

pub use params::{QType, QuantParams};

/// Errors of quantization arithmetic (bad ranges, scales that cannot be represented).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("invalid quantization parameters: {0}")]
    InvalidParams(String),
    #[error("invalid range [{min}, {max}]: {why}")]
    InvalidRange { min: f32, max: f32, why: &'static str },
    #[error("scale {0} cannot be represented as a fixed-point multiplier")]
    UnrepresentableScale(f64),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
