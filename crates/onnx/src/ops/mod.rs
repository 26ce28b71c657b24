//! ONNX op → IR op converters, one table ([`Importer::convert`]) and one file per
//! family: `nn` (convolution, pooling, normalization, gemm), `math` (elementwise),
//! `shape` (data movement, constants and the folded shape computations), `quant`
//! (QDQ, QOperator — including onnxruntime's `com.microsoft` QLinear* ops, table
//! [`Importer::convert_contrib`] — and integer ops).
//!
//! Every converter returns the IR values of the node's results by position (a
//! converter may return fewer than the node lists when the rest are unused).

mod math;
mod nn;
mod quant;
mod shape;

use qc_ir::ValueId;

use crate::fold::IntOp;
use crate::import::Importer;
use crate::node::Cx;
use crate::{Error, Result};

impl Importer<'_> {
    pub(crate) fn convert(&mut self, cx: &Cx) -> Result<Vec<ValueId>> {
        use qc_ir::Op;
        let one = |r: Result<ValueId>| r.map(|v| vec![v]);
        match cx.op() {
            // nn
            "Conv" => one(self.conv(cx)),
            "ConvTranspose" => one(self.conv_transpose(cx)),
            "MaxPool" => self.max_pool(cx),
            "AveragePool" => one(self.average_pool(cx)),
            "GlobalAveragePool" => one(self.unary(cx, Op::GlobalAveragePool)),
            "GlobalMaxPool" => one(self.unary(cx, Op::GlobalMaxPool)),
            "BatchNormalization" => one(self.batch_norm(cx)),
            "LRN" => one(self.lrn(cx)),
            "Gemm" => one(self.gemm(cx)),
            "MatMul" => one(self.matmul(cx)),
            // elementwise
            "Relu" => one(self.unary(cx, Op::Relu)),
            "Sigmoid" => one(self.unary(cx, Op::Sigmoid)),
            "Tanh" => one(self.unary(cx, Op::Tanh)),
            "HardSwish" => one(self.unary(cx, Op::HardSwish)),
            "LeakyRelu" => one(self.leaky_relu(cx)),
            "HardSigmoid" => one(self.hard_sigmoid(cx)),
            "PRelu" => one(self.prelu(cx)),
            "Clip" => one(self.clip(cx)),
            "Add" => one(self.binary(
                cx,
                IntOp::Add,
                Op::Add {
                    act: qc_ir::Activation::None,
                },
            )),
            "Sub" => one(self.binary(cx, IntOp::Sub, Op::Sub)),
            "Mul" => one(self.binary(cx, IntOp::Mul, Op::Mul)),
            "Div" => one(self.binary(cx, IntOp::Div, Op::Div)),
            "Sum" => one(self.sum(cx)),
            // data movement and constants
            "Flatten" => one(self.flatten(cx)),
            "Reshape" => one(self.reshape(cx)),
            "Squeeze" => one(self.squeeze(cx)),
            "Unsqueeze" => one(self.unsqueeze(cx)),
            "Transpose" => one(self.transpose(cx)),
            "Concat" => one(self.concat(cx)),
            "Pad" => one(self.pad(cx)),
            "Softmax" => one(self.softmax(cx)),
            "ReduceMean" => one(self.reduce_mean(cx)),
            "Identity" => one(self.identity(cx)),
            "Dropout" => self.dropout(cx),
            "Cast" => one(self.cast(cx, false)),
            "CastLike" => one(self.cast(cx, true)),
            "Constant" => one(self.constant(cx)),
            "ConstantOfShape" => one(self.constant_of_shape(cx)),
            "Shape" => one(self.shape(cx)),
            "Gather" => one(self.gather(cx)),
            "Slice" => one(self.slice(cx)),
            // quantization
            "QuantizeLinear" => one(self.quantize_linear(cx)),
            "DequantizeLinear" => one(self.dequantize_linear(cx)),
            "QLinearConv" => one(self.qlinear_conv(cx)),
            "QLinearMatMul" => one(self.qlinear_matmul(cx)),
            "ConvInteger" => one(self.conv_integer(cx)),
            "MatMulInteger" => one(self.matmul_integer(cx)),
            "DynamicQuantizeLinear" => self.dynamic_quantize(cx),
            _ => Err(Error::UnsupportedOp {
                op: cx.op().to_string(),
                domain: cx.node.domain.clone(),
                node: cx.label.clone(),
                opset: cx.opset,
            }),
        }
    }

    /// The ops of onnxruntime's `com.microsoft` domain that QOperator models use. Each
    /// is an ordinary op on quantized types (see `quant.rs`); anything else there is
    /// unsupported.
    pub(crate) fn convert_contrib(&mut self, cx: &Cx) -> Result<Vec<ValueId>> {
        use qc_ir::Op;
        let one = |r: Result<ValueId>| r.map(|v| vec![v]);
        match cx.op() {
            "QLinearConv" => one(self.contrib_qlinear_conv(cx)),
            "QLinearAdd" => one(self.qlinear_binary(
                cx,
                Op::Add {
                    act: qc_ir::Activation::None,
                },
            )),
            "QLinearMul" => one(self.qlinear_binary(cx, Op::Mul)),
            "QLinearGlobalAveragePool" => one(self.qlinear_global_average_pool(cx)),
            "QLinearAveragePool" => one(self.qlinear_average_pool(cx)),
            "QLinearLeakyRelu" => {
                let alpha = cx.float_or("alpha", 0.01)?;
                one(self.qlinear_unary(cx, Op::LeakyRelu { alpha }))
            }
            "QLinearSigmoid" => one(self.qlinear_unary(cx, Op::Sigmoid)),
            "QLinearConcat" => one(self.qlinear_concat(cx)),
            "QGemm" => one(self.qgemm(cx)),
            _ => Err(Error::UnsupportedOp {
                op: cx.op().to_string(),
                domain: cx.node.domain.clone(),
                node: cx.label.clone(),
                opset: crate::import::MS_OPSET,
            }),
        }
    }

    /// An op with one operand and one result and no attributes qc reads.
    fn unary(&mut self, cx: &Cx, op: qc_ir::Op) -> Result<ValueId> {
        let x = cx.input(0)?;
        self.emit(cx, op, vec![x])
    }
}
