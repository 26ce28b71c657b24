//! qc-quant: post-training quantization of float graphs.
//!
//! [`quantize()`] takes a float [`qc_ir::Graph`], calibration samples and
//! [`QuantizeOptions`], and returns a QDQ graph ([`Quantized::qdq`]): float in, float
//! out, with `quantize → dequantize` pairs after every float activation and quantized
//! constants behind `dequantize` for weights (symmetric i8, per tensor or per channel)
//! and biases (i32 with scale `s_x * s_w[c]`), which is onnxruntime's QDQ format.
//! `qc_passes`' default pipeline turns it into integer ops, and
//! `qc_onnx::export::to_onnx` writes it as a QDQ ONNX model.
//!
//! Modules:
//! - [`calib`]: calibration samples from `[N, ...]` batches;
//! - [`observer`]: range observers (min-max, moving average, percentile, entropy, MSE);
//! - [`exec`]: the [`Executor`] through which graphs run (interpreter or JIT);
//! - [`cle`]: cross-layer equalization;
//! - [`quantize`](mod@quantize): calibration, parameter choice, Q/DQ insertion, bias
//!   correction and the bias-overflow fix;
//! - [`diag`]: per-layer SQNR and cosine similarity of quantized vs float activations.
//!
//! **API boundary:** nothing here touches files or the terminal; graphs run only
//! through the caller's [`Executor`] (the interpreter by default).

pub mod calib;
pub mod cle;
pub mod diag;
pub mod exec;
pub mod observer;
pub mod quantize;

pub use calib::{split_samples, zip_inputs};
pub use cle::{equalize, CleReport};
pub use diag::{debug_accuracy, match_layers, LayerAccuracy};
pub use exec::{BoxError, Executor, FnExecutor, Interp, Prepared};
pub use observer::{Method, Observer, Scheme};
pub use quantize::{
    quantize, quantize_weights, BiasCorrection, BiasOverflow, Layer, QuantReport, QuantizeOptions,
    Quantized,
};

use qc_ir::NodeId;

/// Errors of quantization. Each names the sample, node or option it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("calibration needs at least one sample")]
    NoSamples,
    /// Calibration data that does not fit the model's inputs.
    #[error("calibration data: {0}")]
    Data(String),
    #[error("calibration sample {sample}: {msg}")]
    Sample { sample: usize, msg: String },
    #[error("running the {what} graph on sample {sample}: {source}")]
    Run {
        what: &'static str,
        sample: usize,
        #[source]
        source: BoxError,
    },
    #[error("preparing the {what} graph: {source}")]
    Prepare {
        what: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("node {node} ({op} '{name}'): {msg}")]
    Node {
        node: NodeId,
        op: &'static str,
        name: String,
        msg: String,
    },
    #[error("option: {0}")]
    Options(String),
    #[error(transparent)]
    Ir(#[from] qc_ir::Error),
    #[error(transparent)]
    Qmath(#[from] qc_qmath::Error),
    #[error(transparent)]
    Pass(#[from] qc_passes::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
