//! The real-valued scalar semantics of qc's elementwise ops.
//!
//! **Invariant:** this is the one definition. The interpreter's float kernels, the
//! JIT's lookup tables for quantized unary ops and its f32 call-outs, and constant
//! folding all call these functions, so a table entry is the reference's own value.
//! NaN passes through `clip` and `relu` as numpy's `clip`/`maximum` would have it.

use crate::{Activation, Op};

/// numpy `clip`: `min(max(x, lo), hi)`, NaN passes through.
pub fn clip(x: f32, lo: f32, hi: f32) -> f32 {
    let y = if x < lo { lo } else { x };
    if y > hi {
        hi
    } else {
        y
    }
}

pub fn relu(x: f32) -> f32 {
    if x < 0.0 {
        0.0
    } else {
        x
    }
}

pub fn leaky_relu(x: f32, alpha: f32) -> f32 {
    if x < 0.0 {
        x * alpha
    } else {
        x
    }
}

/// Logistic function, evaluated on the side where `exp` cannot overflow.
pub fn sigmoid(x: f32) -> f32 {
    if x > 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `max(0, min(1, alpha * x + beta))`.
pub fn hard_sigmoid(x: f32, alpha: f32, beta: f32) -> f32 {
    let v = x * alpha + beta;
    let v = if v > 1.0 { 1.0 } else { v };
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

/// ONNX HardSwish is `x * HardSigmoid(x)` with these parameters.
pub const HARD_SWISH_ALPHA: f32 = 1.0 / 6.0;
pub const HARD_SWISH_BETA: f32 = 0.5;

pub fn hard_swish(x: f32) -> f32 {
    x * hard_sigmoid(x, HARD_SWISH_ALPHA, HARD_SWISH_BETA)
}

pub fn tanh(x: f32) -> f32 {
    x.tanh()
}

/// The bounds of a `clip` node as f32 (absent = unbounded).
pub fn clip_bounds(min: Option<f64>, max: Option<f64>) -> (f32, f32) {
    (
        min.map_or(f32::NEG_INFINITY, |v| v as f32),
        max.map_or(f32::INFINITY, |v| v as f32),
    )
}

/// A fused activation on a real value.
pub fn activation(a: Activation, x: f32) -> f32 {
    match a {
        Activation::None => x,
        Activation::Relu => relu(x),
        Activation::Clip { min, max } => clip(x, min, max),
    }
}

/// The real function of a unary elementwise op, if `op` is one.
pub fn unary(op: &Op) -> Option<Box<dyn Fn(f32) -> f32>> {
    Some(match op {
        Op::Relu => Box::new(relu),
        Op::LeakyRelu { alpha } => {
            let a = *alpha;
            Box::new(move |x| leaky_relu(x, a))
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
        Op::HardSwish => Box::new(hard_swish),
        Op::Tanh => Box::new(tanh),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_values() {
        assert_eq!(clip(7.0, 0.0, 6.0), 6.0);
        assert!(clip(f32::NAN, 0.0, 6.0).is_nan());
        assert!(relu(f32::NAN).is_nan());
        assert_eq!(relu(-0.5), 0.0);
        assert_eq!(leaky_relu(-2.0, 0.25), -0.5);
        assert_eq!(sigmoid(0.0), 0.5);
        // 1 / (1 + e^-2) = 0.880797...
        assert!((sigmoid(2.0) - 0.880_797_1).abs() < 1e-6);
        assert!((sigmoid(-2.0) - 0.119_202_92).abs() < 1e-6);
        assert_eq!(hard_sigmoid(1.0, 0.2, 0.5), 0.7);
        assert_eq!(hard_sigmoid(10.0, 0.2, 0.5), 1.0);
        // 3 * max(0, min(1, 3/6 + 0.5)) = 3
        assert_eq!(hard_swish(3.0), 3.0);
        assert_eq!(hard_swish(-3.0), -0.0);
        assert_eq!(clip_bounds(None, Some(6.0)), (f32::NEG_INFINITY, 6.0));
    }
}
