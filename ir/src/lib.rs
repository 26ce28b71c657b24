//! qc-ir: the typed graph IR every stage of qc works on.
//!
//! A [`Graph`] owns arenas of nodes, values and constants addressed by typed ids
//! ([`NodeId`], [`ValueId`], [`ConstId`]). Nodes are kept in topological order. Every
//! value has a static [`TensorType`]: element type, shape, and — for quantized
//! tensors — [`QuantParams`]. An op on quantized types is an ordinary [`Op`] whose
//! requantization is implied by its operand and result types.
//!
//! - [`text`]: the deterministic, round-trippable text form (`print`, `parse`).
//! - [`verify`]: the verifier (order, definitions, types, shapes, quant params).
//! - [`infer`]: shape and type inference for every op.

pub mod cast;
pub mod dtype;
pub mod fused;
pub mod graph;
pub mod infer;
pub mod op;
pub mod real;
pub mod stats;
pub mod tensor;
pub mod text;
pub mod types;
pub mod verify;

pub use dtype::DType;
pub use graph::{ConstId, Graph, Node, NodeId, Port, Value, ValueDef, ValueId};
pub use op::{Activation, ConvAttrs, ConvTransposeAttrs, GemmAttrs, LrnAttrs, Op, PoolAttrs};
pub use qc_qmath::{QType, QuantParams};
pub use tensor::{Tensor, TensorData};
pub use types::{Shape, TensorType, MAX_NUMEL};

/// Errors of the IR layer. Verifier and inference errors name the node (id, op and
/// source name) they concern.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("tensor: {0}")]
    Tensor(String),
    #[error("tensor of shape {shape} exceeds the limit of {limit} elements")]
    TooLarge { shape: String, limit: usize },
    #[error("node {node} ({op} '{name}'): {msg}")]
    Node {
        node: NodeId,
        op: &'static str,
        name: String,
        msg: String,
    },
    /// Shape/type inference failure for one op (the caller adds node context).
    #[error("{op}: {msg}")]
    Infer { op: &'static str, msg: String },
    #[error("verifier: {0}")]
    Verify(String),
    #[error("parse error at line {line}, column {col}: {msg}")]
    Parse {
        line: usize,
        col: usize,
        msg: String,
    },
    #[error(transparent)]
    Quant(#[from] qc_qmath::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
