//! The float formulas of the reference interpreter, as Rust functions.
//!
//! **Invariant:** each function here computes, bit for bit, what `qc-interp`'s float
//! kernel computes for the same op (same operations, same order, same libm calls).
//! The JIT uses them two ways:
//! - transcendental ops on f32 tensors call the `extern "C"` wrappers, registered as
//!   JIT symbols ([`SYMBOLS`]), so float results are identical to the interpreter's;
//! - quantized unary ops on 8-bit tensors become 256-entry lookup tables computed at
//!   compile time by [`unary_real`], through `qc_qmath`'s quantize/dequantize.
//!
//! The tests in `tests/` compare every table entry with the interpreter.

use qc_ir::Op;

/// numpy `clip`: `min(max(x, lo), hi)`, NaN passes through.
pub(crate) fn clip(x: f32, lo: f32, hi: f32) -> f32 {
    let y = if x < lo { lo } else { x };
    if y > hi {
        hi
    } else {
        y
    }
}

pub(crate) fn relu(x: f32) -> f32 {
    if x < 0.0 {
        0.0
    } else {
        x
    }
}

pub(crate) fn sigmoid(x: f32) -> f32 {
    if x > 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

pub(crate) fn hard_sigmoid(x: f32, alpha: f32, beta: f32) -> f32 {
    let v = x * alpha + beta;
    let v = if v > 1.0 { 1.0 } else { v };
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

/// ONNX HardSwish: `x * HardSigmoid(x)` with alpha = 1/6, beta = 0.5.
pub(crate) const HARD_SWISH_ALPHA: f32 = 1.0 / 6.0;

/// The bounds of `clip` as the interpreter reads them.
pub(crate) fn clip_bounds(min: Option<f64>, max: Option<f64>) -> (f32, f32) {
    (
        min.map_or(f32::NEG_INFINITY, |v| v as f32),
        max.map_or(f32::INFINITY, |v| v as f32),
    )
}

/// The real-valued function of a unary elementwise op, if `op` is one.
pub(crate) fn unary_real(op: &Op) -> Option<Box<dyn Fn(f32) -> f32>> {
    Some(match op {
        Op::Relu => Box::new(relu),
        Op::LeakyRelu { alpha } => {
            let a = *alpha;
            Box::new(move |x| if x < 0.0 { x * a } else { x })
        }
        Op::Clip { min, max } => {
            let (lo, hi) = clip_bounds(*min, *max);
            Box::new(move |x| clip(x, lo, hi))
        }
        Op::Sigmoid => Box::new(sigmoid),
        Op::HardSigmoid { alpha, beta } => {
            let (a, b) = (*alpha, *beta);
            Box::new(move |x| hard_sigmoid(x, a, b))
        }
        Op::HardSwish => Box::new(|x| x * hard_sigmoid(x, HARD_SWISH_ALPHA, 0.5)),
        Op::Tanh => Box::new(f32::tanh),
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
    x.tanh()
}

pub(crate) extern "C" fn qc_jit_expf(x: f32) -> f32 {
    x.exp()
}

pub(crate) extern "C" fn qc_jit_sqrtf(x: f32) -> f32 {
    x.sqrt()
}

pub(crate) extern "C" fn qc_jit_logf(x: f32) -> f32 {
    x.ln()
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
    Callback::ALL
        .iter()
        .map(|c| (c.symbol(), c.address()))
        .collect()
}

pub(crate) const SYMBOLS: usize = Callback::ALL.len();
