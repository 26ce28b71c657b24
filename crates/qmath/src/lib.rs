//! qc-qmath: every number qc's quantized arithmetic produces is decided here.
//!
//! - [`QuantParams`]: scale(s), zero point(s) and storage type of a quantized tensor,
//!   per tensor or per axis.
//! - [`quantize`] / [`dequantize`]: ONNX `QuantizeLinear` / `DequantizeLinear` of one value,
//!   and [`quantize_bias`] for int32 biases.
//! - choosing parameters from an observed range: [`choose_asymmetric`],
//!   [`choose_symmetric`], [`choose_power_of_two`].
//! - the three rounding contracts ([`Contract`]: `float`, `fixed`, `fixed-single`) of
//!   requantization in [`Requantizer`], with the Q31 [`Multiplier`] computation
//!   ([`quantize_multiplier`]) and the gemmlowp primitives it rests on.
//! - the `float` contract's fused 8-bit add, softmax and global average ([`FusedAdd`],
//!   [`FusedSoftmax`], [`FusedMean`]),
//!   onnxruntime's `QLinearAdd` / `QLinearSoftmax` / `QLinearGlobalAveragePool`.
//!
//! **Invariant.** Interpreter, JIT and C emitter all call into this crate; no kernel
//! computes a multiplier or rounds a requantized value by itself. A backend that emits
//! the arithmetic as code (JIT, C) must reproduce, bit for bit, what
//! [`Requantizer::requantize`] returns for the same contract: the functions here are the
//! specification, the tests pin them to hand-computed values.
//!
//! Nothing here panics on values a model controls: out-of-range inputs saturate, and
//! parameters that cannot be represented are rejected with an [`Error`] when a
//! [`Requantizer`] or a [`Multiplier`] is built (at compile time, not per element).

mod choose;
mod fixed;
mod fused;
mod params;
mod requant;
mod round;

pub use choose::{choose_asymmetric, choose_power_of_two, choose_symmetric};
pub use fixed::{
    multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_single, quantize_multiplier,
    rounding_divide_by_pot, saturating_rounding_doubling_high_mul, Multiplier,
};
pub use fused::{AddForm, FusedAdd, FusedMean, FusedSoftmax};
pub use params::{QType, QuantParams};
pub use requant::{Contract, Requantizer};
pub use round::{dequantize, quantize, quantize_bias, round_half_even, round_half_even_f64};

/// Errors of quantization arithmetic (bad ranges, scales that cannot be represented).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("invalid quantization parameters: {0}")]
    InvalidParams(String),
    #[error("invalid range [{min}, {max}]: {why}")]
    InvalidRange {
        min: f32,
        max: f32,
        why: &'static str,
    },
    #[error("scale {0} cannot be represented as a fixed-point multiplier")]
    UnrepresentableScale(f64),
    #[error("unknown rounding contract `{0}` (expected one of: float, fixed, fixed-single)")]
    UnknownContract(String),
    #[error("bias {bias} with scale {scale} does not fit in int32")]
    BiasOverflow { bias: f32, scale: f32 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
