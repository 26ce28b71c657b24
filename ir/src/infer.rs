//! Shape and type inference for every op.
//!
//! [`infer`] computes the result types of an op from its operand types. Quantization
//! parameters of results are not inferred where they are a choice (a quantized conv's
//! output scale): inference returns them as `None` and the builder supplies them;
//! where they are implied (max-pool, reshape, transpose, concat of equal params,
//! relu on quantized values keep their operand's params) they are propagated.

use crate::{Op, Result, TensorType};

/// Result types of `op` applied to operands of types `inputs`.
pub fn infer(op: &Op, inputs: &[&TensorType]) -> Result<Vec<TensorType>> {
    let _ = (op, inputs);
    Err(crate::Error::Infer { op: op.name(), msg: "not implemented yet".into() })
}
