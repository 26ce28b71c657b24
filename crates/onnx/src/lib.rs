//! qc-onnx: ONNX import into the qc IR.
//!
//! This crate is the only place that knows the ONNX encoding. [`import`] decodes a
//! serialized `ModelProto` and builds a [`qc_ir::Graph`] in which
//!
//! - every value has a static type: graph input dims come from the model or from
//!   [`ImportOptions::input_shapes`], and an unbound dim is an error naming the input;
//! - everything that ONNX passes at run time but qc needs statically (reshape targets,
//!   squeeze axes, pads, clip bounds, quantization scales and zero points) is a
//!   constant at import, or the import fails with [`Error::InputMustBeConstant`];
//! - shape arithmetic on constants (`Shape`, `Gather`, `Slice`, and `Cast`, `Concat`,
//!   `Unsqueeze`, `Squeeze`, `Reshape`, `Identity`, integer `Add`/`Sub`/`Mul`/`Div` with
//!   constant operands) is folded, so PyTorch-style `Shape → Gather → Unsqueeze →
//!   Concat → Reshape` chains become constant shapes;
//! - quantization is carried by types: `QuantizeLinear`/`DequantizeLinear` become
//!   `quantize`/`dequantize` with quantized result/operand types, `QLinearConv` and
//!   `QLinearMatMul` become `conv`/`matmul` on quantized types, and so do the
//!   QOperator ops of onnxruntime's `com.microsoft` domain (opset 1: `QLinearAdd`,
//!   `QLinearMul`, `QLinearGlobalAveragePool`, `QLinearAveragePool`, `QLinearConcat`,
//!   `QLinearLeakyRelu`, `QLinearSigmoid`, `QGemm`, NCHW `QLinearConv`), each the
//!   ordinary op on quantized types; every other domain is unsupported;
//! - nodes are in topological order (bad files are sorted; cycles are an error) and
//!   the result passes [`qc_ir::verify::verify`].
//!
//! The crate touches no files: the caller passes the model bytes and an
//! [`ExternalData`] resolver for tensors stored outside the model. Sizes claimed by
//! the model are checked before anything is allocated for them.

use std::collections::HashMap;

pub mod export;
mod fold;
mod import;
mod node;
mod ops;
mod tensor;

pub use tensor::{tensor_from_pb, tensor_from_proto};

/// Options of [`import`].
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Binds graph input dims: every dim that is symbolic, 0/absent, or not given must be bound here.
    pub input_shapes: HashMap<String, Vec<usize>>,
    /// Graph inputs frozen to constant values (e.g. a scale or a shape that the model takes as an input).
    pub const_inputs: HashMap<String, qc_ir::Tensor>,
}

/// Resolves tensors stored outside the model (`data_location = EXTERNAL`).
pub trait ExternalData {
    /// The bytes of `location` (a path relative to the model, as written in the
    /// model) from `offset`, `length` bytes long, or to the end when `length` is `None`.
    fn load(&self, location: &str, offset: u64, length: Option<u64>) -> std::io::Result<Vec<u8>>;
}

/// An [`ExternalData`] for models that have none: every load is an error.
pub struct NoExternalData;

impl ExternalData for NoExternalData {
    fn load(&self, location: &str, _offset: u64, _length: Option<u64>) -> std::io::Result<Vec<u8>> {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no external data resolver was given (wanted '{location}')"),
        ))
    }
}

/// Import a serialized ONNX `ModelProto`.
pub fn import(bytes: &[u8], opts: &ImportOptions, ext: &dyn ExternalData) -> Result<qc_ir::Graph> {
    import::import(bytes, opts, ext)
}

/// Errors of the importer. Each is one line naming what is wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a valid ONNX protobuf: {0}")]
    Decode(String),
    #[error("the model has no graph")]
    NoGraph,
    #[error("the model imports no ai.onnx opset")]
    NoOpset,
    #[error("the model imports ai.onnx opset {0}; qc supports opsets 7 through 28")]
    UnsupportedOpset(i64),
    #[error(
        "unsupported op '{op}' (domain '{}', opset {opset}) at node '{node}'",
        if .domain.is_empty() { "ai.onnx" } else { .domain.as_str() }
    )]
    UnsupportedOp {
        op: String,
        domain: String,
        node: String,
        opset: i64,
    },
    #[error(
        "node '{node}' ({op}): input '{input}' must be a constant; if it is a graph input \
         (or computed from one), bind that input to a constant with ImportOptions::const_inputs"
    )]
    InputMustBeConstant {
        node: String,
        op: String,
        input: String,
    },
    #[error(
        "graph input '{input}': dim {dim} is symbolic, 0 or absent; bind it with \
         ImportOptions::input_shapes"
    )]
    UnboundDim { input: String, dim: usize },
    /// An element type qc has no dtype for (float8, float4, int4, int2, string, complex, ...).
    #[error("{what}: element type {dtype} is not supported")]
    UnsupportedType { what: String, dtype: String },
    /// A node that cannot be imported: bad or unsupported attributes or operands.
    #[error("node '{node}' ({op}, opset {opset}): {msg}")]
    Node {
        node: String,
        op: String,
        opset: i64,
        msg: String,
    },
    #[error("tensor '{name}': {msg}")]
    Tensor { name: String, msg: String },
    #[error("tensor '{name}': external data '{location}': {source}")]
    ExternalData {
        name: String,
        location: String,
        #[source]
        source: std::io::Error,
    },
    #[error("graph input '{input}': {msg}")]
    Input { input: String, msg: String },
    /// Structural errors of the graph: undefined or doubly defined names, cycles, options
    /// naming unknown inputs.
    #[error("graph: {0}")]
    Graph(String),
    /// The imported graph failed verification: a bug in the importer.
    #[error("the imported graph failed verification (an importer bug): {0}")]
    Verify(qc_ir::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
