//! qc-cgen: the C99 emitter for bare-metal targets. Filled by the C backend work; the
//! crate exists so the workspace has its final shape.
