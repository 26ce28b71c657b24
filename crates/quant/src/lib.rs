//! qc-quant: post-training quantization (observers, calibration, Q/DQ insertion).
//! Filled by the PTQ work; the crate exists so the workspace has its final shape.
