//! When the `float` contract's fused 8-bit kernels ([`qc_qmath::FusedAdd`],
//! [`qc_qmath::FusedSoftmax`]) define a node, and their parameters for it.
//!
//! Every backend asks here, so the interpreter, the JIT and the C emitter agree on
//! which nodes take the fused definition: a whole-image average pool, an `add` of two
//! operands and a `softmax`
//! whose operands and result are all quantized per tensor with one 8-bit storage type
//! (the combinations onnxruntime fuses into `QLinearGlobalAveragePool`, `QLinearAdd`,
//! `QLinearSoftmax`). Callers
//! check the contract themselves: the other contracts keep the generic definition.

use qc_qmath::{AddForm, FusedAdd, FusedMean, FusedSoftmax, QType, QuantParams};

use crate::{Activation, Op, TensorType};

/// The per-tensor 8-bit parameters of `t`, if it has them.
fn q8(t: &TensorType) -> Option<(f32, i32, QType)> {
    let p: &QuantParams = t.quant.as_ref()?;
    if !p.is_per_tensor() || !matches!(p.storage, QType::U8 | QType::I8) {
        return None;
    }
    Some((*p.scales.first()?, *p.zero_points.first()?, p.storage))
}

/// The fused add for operands `a`, `b` and result `y` with fused activation `act`;
/// `None` when the node is not one the fused add defines.
pub fn add(
    a: &TensorType,
    b: &TensorType,
    y: &TensorType,
    act: Activation,
) -> Option<Result<FusedAdd, qc_qmath::Error>> {
    let (sa, za, qa) = q8(a)?;
    let (sb, zb, qb) = q8(b)?;
    let (sy, zy, q) = q8(y)?;
    if qa != q || qb != q {
        return None;
    }
    let form = AddForm::of(a.shape.dims(), b.shape.dims(), y.shape.dims());
    let f = match FusedAdd::new((sa, za), (sb, zb), (sy, zy), q, form) {
        Ok(f) => f,
        Err(e) => return Some(Err(e)),
    };
    // A fused activation clamps real values; quantization is monotone, so it clamps
    // the codes to the images of its bounds.
    let code = |x: f32| qc_qmath::quantize(x, sy, zy, q) as i32;
    Some(Ok(match act {
        Activation::None => f,
        Activation::Relu => f.clamp(code(0.0), i32::MAX),
        Activation::Clip { min, max } => f.clamp(code(min), code(max)),
    }))
}

/// The fused softmax for operand `x` and result `y` along an axis of length `d`;
/// `None` when the node is not one the fused softmax defines.
pub fn softmax(
    x: &TensorType,
    y: &TensorType,
    d: usize,
) -> Option<Result<FusedSoftmax, qc_qmath::Error>> {
    let (sx, _, qx) = q8(x)?;
    let (sy, zy, q) = q8(y)?;
    if qx != q {
        return None;
    }
    Some(FusedSoftmax::new(sx, (sy, zy), d, q))
}

/// The fused global average for `op` (`global_average_pool`, or an `average_pool`
/// whose window is the whole unpadded image) from `x` to `y`; `None` when the node is
/// not one it defines (the generic definition applies).
pub fn mean(op: &Op, x: &TensorType, y: &TensorType) -> Option<FusedMean> {
    let dims = x.shape.dims();
    let spatial = dims.get(2..)?;
    match op {
        Op::GlobalAveragePool => {}
        Op::AveragePool { pool, .. } => {
            let whole = pool.kernel.as_slice() == spatial
                && pool.pads.iter().all(|&p| p == 0)
                && pool.dilations.iter().all(|&d| d == 1);
            if !whole {
                return None;
            }
        }
        _ => return None,
    }
    let (sx, zx, qx) = q8(x)?;
    let (sy, zy, q) = q8(y)?;
    if qx != q {
        return None;
    }
    FusedMean::new((sx, zx), (sy, zy), spatial.iter().product(), q)
}
