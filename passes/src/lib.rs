//! qc-passes: graph-to-graph passes over `qc_ir::Graph` (canonicalization, e-graph
//! rewrites, cleanup, memory planning). Filled by the pass-pipeline work; the crate
//! exists so the workspace has its final shape.
