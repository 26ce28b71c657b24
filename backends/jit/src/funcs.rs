//! The float formulas of the reference interpreter (`qc_ir::real`), as the JIT uses them.
//!
//! **Invariant:** each function here computes, bit for bit, what `qc-interp`'s float
//! kernel computes for the same op (same operations, same order, and `qc_ir::real`'s
//! own exp/ln/tanh rather than the host libm).
//! The JIT uses them two ways:
//! - transcendental ops on f32 tensors call the `extern "C"` wrappers, registered as
//!   JIT symbols ([`SYMBOLS`]), so float results are identical to the interpreter's;
//! - quantized unary ops on 8-bit tensors become 256-entry lookup tables computed at
//!   compile time by [`unary_real`], through `qc_qmath`'s quantize/dequantize.
//!
//! The tests in `tests/` compare every table entry with the interpreter.

use qc_ir::Op;

pub(crate) use qc_ir::real::{clip_bounds, sigmoid, HARD_SWISH_ALPHA};

/// The real-valued function of a unary elementwise op, if `op` is one: the shared
/// definition of `qc_ir::real`, plus the ops that carry values through unchanged.
pub(crate) fn unary_real(op: &Op) -> Option<Box<dyn Fn(f32) -> f32>> {
    if let Some(f) = qc_ir::real::unary(op) {
        return Some(f);
    }
    Some(match op {
        Op::Identity
        | Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Requantize => Box::new(|x| x),
        _ => return None,
    })
}

pub(crate) extern "C" fn qc_jit_sigmoid(x: f32) -> f32 {
    sigmoid(x)
}

pub(crate) extern "C" fn qc_jit_tanh(x: f32) -> f32 {
    qc_ir::real::tanh(x)
}

pub(crate) extern "C" fn qc_jit_expf(x: f32) -> f32 {
    qc_ir::real::exp(x)
}

pub(crate) extern "C" fn qc_jit_sqrtf(x: f32) -> f32 {
    x.sqrt()
}

pub(crate) extern "C" fn qc_jit_logf(x: f32) -> f32 {
    qc_ir::real::ln(x)
}

/// A callback the generated code may call: `f32 -> f32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Callback {
    Sigmoid,
    Tanh,
    Exp,
    Sqrt,
    Ln,
}

impl Callback {
    pub(crate) const ALL: [Callback; 5] = [
        Callback::Sigmoid,
        Callback::Tanh,
        Callback::Exp,
        Callback::Sqrt,
        Callback::Ln,
    ];

    pub(crate) fn symbol(self) -> &'static str {
        match self {
            Callback::Sigmoid => "qc_jit_sigmoid",
            Callback::Tanh => "qc_jit_tanh",
            Callback::Exp => "qc_jit_expf",
            Callback::Sqrt => "qc_jit_sqrtf",
            Callback::Ln => "qc_jit_logf",
        }
    }

    pub(crate) fn address(self) -> *const u8 {
        let f: extern "C" fn(f32) -> f32 = match self {
            Callback::Sigmoid => qc_jit_sigmoid,
            Callback::Tanh => qc_jit_tanh,
            Callback::Exp => qc_jit_expf,
            Callback::Sqrt => qc_jit_sqrtf,
            Callback::Ln => qc_jit_logf,
        };
        f as *const u8
    }
}

/// Every symbol the generated code may import, with its address.
pub(crate) fn symbols() -> Vec<(&'static str, *const u8)> {
    let mut v: Vec<(&'static str, *const u8)> = Callback::ALL
        .iter()
        .map(|c| (c.symbol(), c.address()))
        .collect();
    let mark: extern "C" fn(i64) = qc_jit_profile_mark;
    v.push((PROFILE_MARK, mark as *const u8));
    v
}

/// The symbol a profiling build calls before each kernel (with the node index) and
/// once after the last (with the node count).
pub(crate) const PROFILE_MARK: &str = "qc_jit_profile_mark";

thread_local! {
    /// Marks of the current thread's profiled run: (node index, time).
    pub(crate) static MARKS: std::cell::RefCell<Vec<(i64, std::time::Instant)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

pub(crate) extern "C" fn qc_jit_profile_mark(i: i64) {
    let now = std::time::Instant::now();
    MARKS.with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            m.push((i, now));
        }
    });
}

pub(crate) const SYMBOLS: usize = Callback::ALL.len();
