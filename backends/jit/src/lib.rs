//! qc-jit: the Cranelift JIT backend. Filled by the JIT work; the crate exists so the
//! workspace has its final shape and the dependency direction is fixed.
