//! The operation set.
//!
//! An op is ordinary (`Conv`, `Add`, `MaxPool`, ...) whatever its operand types: a
//! `Conv` whose operands and result carry `QuantParams` is a quantized convolution,
//! its requantization implied by the types. Operand lists are positional; each
//! variant's doc lists them (`[..]` marks an optional trailing operand).
//!
//! Structural parameters (shapes, axes, pads, clip bounds) are attributes resolved at
//! import: every value has a static shape, so no op takes a shape at run time.

use crate::DType;

/// An activation fused into the op's epilogue (conv, conv_transpose, gemm, matmul, add).
/// On a quantized result it is applied in the real domain before rounding, which is
/// the same as clamping the quantized result to the bounds' quantized images.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Activation {
    #[default]
    None,
    Relu,
    /// Clamp to `[min, max]` (relu6 is `Clip { min: 0, max: 6 }`).
    Clip {
        min: f32,
        max: f32,
    },
}

impl Activation {
    /// Apply to a real value (`qc_ir::real::activation`; NaN passes through).
    pub fn apply(self, x: f32) -> f32 {
        crate::real::activation(self, x)
    }
}

/// Convolution geometry over `k` spatial dims (NC + k spatial layout).
///
/// `pads` is `[begin_0, .., begin_{k-1}, end_0, .., end_{k-1}]` (ONNX order); ONNX
/// `auto_pad` is resolved into explicit pads at import.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvAttrs {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads: Vec<usize>,
    pub group: usize,
    pub act: Activation,
}

/// Transposed convolution geometry. `pads` as in [`ConvAttrs`]; ONNX `output_shape`
/// and `auto_pad` are resolved into `pads` and `output_padding` at import.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvTransposeAttrs {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads: Vec<usize>,
    pub output_padding: Vec<usize>,
    pub group: usize,
    pub act: Activation,
}

/// Pooling window geometry. `pads` as in [`ConvAttrs`].
#[derive(Clone, Debug, PartialEq)]
pub struct PoolAttrs {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads: Vec<usize>,
    /// Output size rounds up (ONNX `ceil_mode`); a window starting in the end padding is dropped.
    pub ceil_mode: bool,
}

/// `Y = alpha * op(A) * op(B) + beta * C`, `op` transposing when asked.
#[derive(Clone, Debug, PartialEq)]
pub struct GemmAttrs {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
    pub act: Activation,
}

/// Local response normalization across channels.
#[derive(Clone, Debug, PartialEq)]
pub struct LrnAttrs {
    pub size: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: f32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    // ---- conversions between float and integer domains ----
    /// `x: float` → result quantized (params in the result type): round half to even, saturate.
    Quantize,
    /// `x: quantized` → result float: `scale * (q - zero_point)`.
    Dequantize,
    /// `x: quantized` → result quantized with other params.
    Requantize,
    /// `x: f32` → (`y: u8` raw, `scale: f32[]`, `zero_point: u8[]`), ONNX DynamicQuantizeLinear.
    DynamicQuantize,
    /// Element type conversion (ONNX Cast semantics; float → int truncates toward zero).
    Cast {
        to: DType,
    },

    // ---- linear algebra ----
    /// `x, w, [b]`. Float, or quantized (`b` raw i32 with implied scale `s_x * s_w`).
    Conv(ConvAttrs),
    /// `x, w, x_zero_point, w_zero_point` raw integers → raw i32 (ONNX ConvInteger).
    ConvInteger(ConvAttrs),
    /// `x, w, [b]`; `w` is `[C_in, C_out/group, k..]`.
    ConvTranspose(ConvTransposeAttrs),
    /// `a, b, [c]` (c broadcast to the result). Quantized: `c` raw i32 with implied scale.
    Gemm(GemmAttrs),
    /// `a, b`: numpy matmul (batched, broadcast; 1-D operands promoted and squeezed).
    MatMul {
        act: Activation,
    },
    /// `a, b, a_zero_point, b_zero_point` raw integers → raw i32 (ONNX MatMulInteger).
    MatMulInteger,
    /// `x, scale, bias, mean, var` (inference form).
    BatchNorm {
        epsilon: f32,
    },

    // ---- elementwise (multidirectional broadcast) ----
    /// `a, b`.
    Add {
        act: Activation,
    },
    /// `a, b`.
    Sub,
    /// `a, b`.
    Mul,
    /// `a, b` (integers: truncating division).
    Div,
    /// `x0, x1, ..` (at least one).
    Sum,
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    /// `x, slope` (slope broadcast to x).
    PRelu,
    /// Clamp to bounds (absent = unbounded). The bounds are values of the tensor's
    /// meaning: element values for plain tensors, real values for quantized ones.
    Clip {
        min: Option<f64>,
        max: Option<f64>,
    },
    Sigmoid,
    /// `max(0, min(1, alpha * x + beta))`.
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `x * max(0, min(1, x / 6 + 1/2))`.
    HardSwish,
    Tanh,

    // ---- pooling ----
    /// Results: `y` and, when the node has two results, the i64 flat indices (`storage_order` 0 = row major).
    MaxPool {
        pool: PoolAttrs,
        storage_order: u8,
    },
    AveragePool {
        pool: PoolAttrs,
        count_include_pad: bool,
    },
    GlobalAveragePool,
    GlobalMaxPool,

    // ---- data movement (all shapes static) ----
    /// Result shape `[prod(dims[..axis]), prod(dims[axis..])]`.
    Flatten {
        axis: usize,
    },
    /// Fully resolved target shape.
    Reshape {
        shape: Vec<usize>,
    },
    /// Sorted, distinct axes of size 1 to remove.
    Squeeze {
        axes: Vec<usize>,
    },
    /// Sorted, distinct axes of the result that are new size-1 dims.
    Unsqueeze {
        axes: Vec<usize>,
    },
    Transpose {
        perm: Vec<usize>,
    },
    /// `x0, x1, ..` joined along `axis`.
    Concat {
        axis: usize,
    },
    /// Constant-mode pad; `pads` is `[begin.., end..]`, negative crops. `value` is real
    /// (a quantized pad writes its quantized image, the zero point for 0).
    Pad {
        pads: Vec<i64>,
        value: f64,
    },
    /// Normalizes over the single `axis` (ONNX opset 13 semantics).
    Softmax {
        axis: usize,
    },
    /// Sorted, distinct axes.
    ReduceMean {
        axes: Vec<usize>,
        keepdims: bool,
    },
    Lrn(LrnAttrs),
    Identity,
}

impl Op {
    /// The text-form name (lower-case snake case).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Quantize => "quantize",
            Op::Dequantize => "dequantize",
            Op::Requantize => "requantize",
            Op::DynamicQuantize => "dynamic_quantize",
            Op::Cast { .. } => "cast",
            Op::Conv(_) => "conv",
            Op::ConvInteger(_) => "conv_integer",
            Op::ConvTranspose(_) => "conv_transpose",
            Op::Gemm(_) => "gemm",
            Op::MatMul { .. } => "matmul",
            Op::MatMulInteger => "matmul_integer",
            Op::BatchNorm { .. } => "batch_norm",
            Op::Add { .. } => "add",
            Op::Sub => "sub",
            Op::Mul => "mul",
            Op::Div => "div",
            Op::Sum => "sum",
            Op::Relu => "relu",
            Op::LeakyRelu { .. } => "leaky_relu",
            Op::PRelu => "prelu",
            Op::Clip { .. } => "clip",
            Op::Sigmoid => "sigmoid",
            Op::HardSigmoid { .. } => "hard_sigmoid",
            Op::HardSwish => "hard_swish",
            Op::Tanh => "tanh",
            Op::MaxPool { .. } => "max_pool",
            Op::AveragePool { .. } => "average_pool",
            Op::GlobalAveragePool => "global_average_pool",
            Op::GlobalMaxPool => "global_max_pool",
            Op::Flatten { .. } => "flatten",
            Op::Reshape { .. } => "reshape",
            Op::Squeeze { .. } => "squeeze",
            Op::Unsqueeze { .. } => "unsqueeze",
            Op::Transpose { .. } => "transpose",
            Op::Concat { .. } => "concat",
            Op::Pad { .. } => "pad",
            Op::Softmax { .. } => "softmax",
            Op::ReduceMean { .. } => "reduce_mean",
            Op::Lrn(_) => "lrn",
            Op::Identity => "identity",
        }
    }

    /// The fused activation, for ops that have one.
    pub fn activation(&self) -> Option<Activation> {
        match self {
            Op::Conv(a) => Some(a.act),
            Op::ConvTranspose(a) => Some(a.act),
            Op::Gemm(a) => Some(a.act),
            Op::MatMul { act } | Op::Add { act } => Some(*act),
            _ => None,
        }
    }
}
