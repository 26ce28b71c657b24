//! The quantization arithmetic the interpreter uses, all from `qc-qmath` (the single
//! source of truth shared with the JIT and the C emitter). Kernels name it through
//! this module so that every number-deciding call is visible in one list.

pub use qc_qmath::{dequantize, quantize, round_half_even, Contract, Requantizer};
