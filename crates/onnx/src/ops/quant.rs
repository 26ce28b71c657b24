//! Quantization: QDQ (`QuantizeLinear`/`DequantizeLinear`), QOperator (`QLinearConv`,
//! `QLinearMatMul`, and onnxruntime's `com.microsoft` ops `QLinearAdd`, `QLinearMul`,
//! `QLinearGlobalAveragePool`, `QLinearAveragePool`, `QLinearLeakyRelu`,
//! `QLinearSigmoid`, `QLinearConcat`, `QGemm`), integer ops (`ConvInteger`,
//! `MatMulInteger`) and `DynamicQuantizeLinear`.
//!
//! Quantization lives in types (see DESIGN.md): scales and zero points must be
//! constants and become [`QuantParams`] on the quantized value's type. One scale is
//! per-tensor; a 1-D scale of several elements is per-axis. Blocked quantization
//! (`block_size > 0`) is not supported.

use qc_ir::{Activation, DType, GemmAttrs, Op, QType, QuantParams, Tensor, ValueId};

use crate::import::Importer;
use crate::node::Cx;
use crate::tensor::dtype_from_onnx;
use crate::{Error, Result};

/// The quantized storage type of a dtype, or an error naming operand `what`.
fn storage_of(cx: &Cx, dtype: DType, what: &str) -> Result<QType> {
    dtype.qtype().ok_or_else(|| {
        cx.err(format!(
            "{what} is {dtype}; quantized types are u8, i8, u16, i16 and i32"
        ))
    })
}

impl Importer<'_> {
    /// Params from constant operands `scale_i` (float, scalar or 1-D) and `zp_i`
    /// (optional; absent = 0). `axis` (possibly negative, against `dims`) is where a
    /// scale of several elements applies; `None` allows per-tensor only.
    fn qparams(
        &self,
        cx: &Cx,
        scale_i: usize,
        zp_i: usize,
        storage: QType,
        axis: Option<i64>,
        dims: &[usize],
    ) -> Result<QuantParams> {
        let s = self.need_const(cx, scale_i)?;
        if !s.dtype().is_float() || s.dims().len() > 1 {
            return Err(cx.err(format!(
                "input {scale_i} (scale) must be a float scalar or 1-D tensor, got {}{}",
                s.dtype(),
                s.shape()
            )));
        }
        // f16/bf16/f64 scales are converted to f32, the IR's scale type.
        let scales = s.to_f32_vec();
        let zero_points = match self.opt_const(cx, zp_i)? {
            None => vec![0; scales.len()],
            Some(z) => {
                if z.dtype() != DType::from_qtype(storage) {
                    return Err(cx.err(format!(
                        "input {zp_i} (zero point) is {} but the quantized type is {}",
                        z.dtype(),
                        storage.name()
                    )));
                }
                // One zero point for several scales (seen in per-channel weights) is shared.
                if z.len() != scales.len() && z.len() != 1 {
                    return Err(cx.err(format!(
                        "input {zp_i} (zero point) has {} elements but the scale has {}",
                        z.len(),
                        scales.len()
                    )));
                }
                let mut zs = z.to_i64_vec();
                if zs.len() == 1 {
                    zs.resize(scales.len(), zs[0]);
                }
                zs.into_iter()
                    .map(|v| {
                        i32::try_from(v)
                            .map_err(|_| cx.err(format!("zero point {v} is out of range")))
                    })
                    .collect::<Result<Vec<_>>>()?
            }
        };
        let q = if scales.len() == 1 {
            QuantParams::per_tensor(storage, scales[0], zero_points[0])
        } else {
            let a = axis.ok_or_else(|| {
                cx.err(format!(
                    "input {scale_i} (scale) has {} elements but must be a scalar here",
                    scales.len()
                ))
            })?;
            let a = cx.axis("axis", a, dims.len())?;
            if dims.get(a) != Some(&scales.len()) {
                return Err(cx.err(format!(
                    "input {scale_i} (scale) has {} elements but axis {a} of the quantized tensor {dims:?} has {:?}",
                    scales.len(),
                    dims.get(a)
                )));
            }
            QuantParams::per_axis(storage, a, scales, zero_points)
        };
        q.validate()
            .map_err(|e| cx.err(format!("input {scale_i}: {e}")))?;
        Ok(q)
    }

    fn no_blocks(&self, cx: &Cx) -> Result<()> {
        if cx.int_or("block_size", 0)? != 0 {
            return Err(cx.unsupported("blocked quantization (block_size > 0)"));
        }
        Ok(())
    }

    /// The axis attribute (opset 13+, default 1); before 13 only per-tensor exists.
    fn quant_axis(&self, cx: &Cx) -> Result<Option<i64>> {
        Ok(if cx.opset >= 13 {
            Some(cx.int_or("axis", 1)?)
        } else {
            None
        })
    }

    /// `quantize` whose result type carries the params. Storage: the zero point's
    /// type, else `output_dtype` (21+), else u8.
    pub(super) fn quantize_linear(&mut self, cx: &Cx) -> Result<ValueId> {
        self.no_blocks(cx)?;
        let x = cx.input(0)?;
        let storage = match self.opt_const(cx, 2)? {
            Some(z) => storage_of(cx, z.dtype(), "input 2 (zero point)")?,
            None => match cx.int("output_dtype")?.filter(|&d| d != 0) {
                Some(code) => {
                    let code = i32::try_from(code)
                        .map_err(|_| cx.err(format!("unknown output_dtype {code}")))?;
                    let d = dtype_from_onnx(code).map_err(|ty| Error::UnsupportedType {
                        what: format!(
                            "node '{}' (QuantizeLinear, opset {}) output",
                            cx.label, cx.opset
                        ),
                        dtype: ty,
                    })?;
                    storage_of(cx, d, "output_dtype")?
                }
                None => QType::U8,
            },
        };
        let dims = self.ty(x).shape.0.clone();
        let q = self.qparams(cx, 1, 2, storage, self.quant_axis(cx)?, &dims)?;
        self.emit_quantized(cx, Op::Quantize, vec![x], q)
    }

    /// `dequantize` of `x` made quantized-typed with the node's params (see
    /// [`Importer::as_quantized`]). From opset 19 the result has the scale's float
    /// type: a non-f32 scale adds a cast.
    pub(super) fn dequantize_linear(&mut self, cx: &Cx) -> Result<ValueId> {
        self.no_blocks(cx)?;
        let x = cx.input(0)?;
        let xt = self.ty(x).clone();
        let storage = storage_of(cx, xt.dtype, "input 0 (x)")?;
        let q = self.qparams(cx, 1, 2, storage, self.quant_axis(cx)?, &xt.shape.0)?;
        let xq = self.as_quantized(cx, 0, x, &q)?;
        let y = self.emit(cx, Op::Dequantize, vec![xq])?;
        let mut to = self.need_const(cx, 1)?.dtype();
        if let Some(code) = cx.int("output_dtype")?.filter(|&d| d != 0) {
            let code =
                i32::try_from(code).map_err(|_| cx.err(format!("unknown output_dtype {code}")))?;
            to = dtype_from_onnx(code).map_err(|ty| Error::UnsupportedType {
                what: format!(
                    "node '{}' (DequantizeLinear, opset {}) output",
                    cx.label, cx.opset
                ),
                dtype: ty,
            })?;
        }
        if to == DType::F32 {
            Ok(y)
        } else {
            self.emit(cx, Op::Cast { to }, vec![y])
        }
    }

    // QLinearConv and QLinearMatMul *are* conv and matmul on quantized types:
    // `y = quantize(dequantize(x) * dequantize(w) + dequantize(b))` with y's params,
    // which is exactly what an IR conv/matmul whose operands and result carry these
    // params means (bias raw i32 with the implied scale s_x * s_w).

    pub(super) fn qlinear_conv(&mut self, cx: &Cx) -> Result<ValueId> {
        let (x, w) = (cx.input(0)?, cx.input(3)?);
        let (xt, wt) = (self.ty(x).clone(), self.ty(w).clone());
        let xs = storage_of(cx, xt.dtype, "input 0 (x)")?;
        let ws = storage_of(cx, wt.dtype, "input 3 (w)")?;
        let ys = match self.opt_const(cx, 7)? {
            Some(z) => storage_of(cx, z.dtype(), "input 7 (y_zero_point)")?,
            None => xs,
        };
        let xq = self.qparams(cx, 1, 2, xs, None, &xt.shape.0)?;
        // Per output channel: axis 0 of w ([M, C/group, k..]).
        let wq = self.qparams(cx, 4, 5, ws, Some(0), &wt.shape.0)?;
        let yq = self.qparams(cx, 6, 7, ys, None, &[])?;
        let attrs = self.conv_attrs(cx, x, w)?;
        let xv = self.as_quantized(cx, 0, x, &xq)?;
        let wv = self.as_quantized(cx, 3, w, &wq)?;
        let mut inputs = vec![xv, wv];
        inputs.extend(cx.opt(8));
        self.emit_quantized(cx, Op::Conv(attrs), inputs, yq)
    }

    pub(super) fn qlinear_matmul(&mut self, cx: &Cx) -> Result<ValueId> {
        let (a, b) = (cx.input(0)?, cx.input(3)?);
        let (at, bt) = (self.ty(a).clone(), self.ty(b).clone());
        let as_ = storage_of(cx, at.dtype, "input 0 (a)")?;
        let bs = storage_of(cx, bt.dtype, "input 3 (b)")?;
        let ys = match self.opt_const(cx, 7)? {
            Some(z) => storage_of(cx, z.dtype(), "input 7 (y_zero_point)")?,
            None => as_,
        };
        // a per row (axis rank - 2), b per column (axis rank - 1).
        let aq = self.qparams(cx, 1, 2, as_, Some(-2), &at.shape.0)?;
        let bq = self.qparams(cx, 4, 5, bs, Some(-1), &bt.shape.0)?;
        let yq = self.qparams(cx, 6, 7, ys, None, &[])?;
        let av = self.as_quantized(cx, 0, a, &aq)?;
        let bv = self.as_quantized(cx, 3, b, &bq)?;
        self.emit_quantized(
            cx,
            Op::MatMul {
                act: Activation::None,
            },
            vec![av, bv],
            yq,
        )
    }

    /// Zero-point operand `i`, or a scalar zero of `like`'s dtype when absent, so the
    /// integer ops always have four operands.
    fn zero_point_or_zero(&mut self, cx: &Cx, i: usize, like: ValueId) -> Result<ValueId> {
        match cx.opt(i) {
            Some(v) => Ok(v),
            None => {
                let z = Tensor::zeros(self.ty(like).dtype, qc_ir::Shape::scalar())
                    .map_err(|e| cx.err(e.to_string()))?;
                Ok(self.add_const(z))
            }
        }
    }

    pub(super) fn conv_integer(&mut self, cx: &Cx) -> Result<ValueId> {
        let (x, w) = (cx.input(0)?, cx.input(1)?);
        let attrs = self.conv_attrs(cx, x, w)?;
        let xz = self.zero_point_or_zero(cx, 2, x)?;
        let wz = self.zero_point_or_zero(cx, 3, w)?;
        self.emit(cx, Op::ConvInteger(attrs), vec![x, w, xz, wz])
    }

    pub(super) fn matmul_integer(&mut self, cx: &Cx) -> Result<ValueId> {
        let (a, b) = (cx.input(0)?, cx.input(1)?);
        let az = self.zero_point_or_zero(cx, 2, a)?;
        let bz = self.zero_point_or_zero(cx, 3, b)?;
        self.emit(cx, Op::MatMulInteger, vec![a, b, az, bz])
    }

    pub(super) fn dynamic_quantize(&mut self, cx: &Cx) -> Result<Vec<ValueId>> {
        let x = cx.input(0)?;
        self.emit_n(cx, Op::DynamicQuantize, vec![x], 3)
    }

    // ---- onnxruntime's com.microsoft QOperator ops ----
    //
    // Their schemas (onnxruntime/core/graph/contrib_ops/quantization_defs.cc and
    // nhwc_schema_defs.cc) define each as "dequantize the operands, apply the float op,
    // quantize with the output's params", e.g. QLinearAdd:
    // `C = (A_scale * (A - A_zp) + B_scale * (B - B_zp)) / C_scale + C_zp`, and
    // QLinearAveragePool: `Dequantize(Input) -> AveragePool on fp32 data ->
    // Quantize(output)`. That is the meaning of the ordinary IR op on quantized types,
    // so each becomes that op. Their scales and zero points are per-tensor scalars
    // (zero points optional, 0 when absent) except QGemm's `b`, which may be per column.

    /// `channels_last` (NHWC) variants are onnxruntime's internal layout; qc's ops are NCHW.
    fn nchw_only(&self, cx: &Cx) -> Result<()> {
        if cx.int_or("channels_last", 0)? != 0 {
            return Err(cx.unsupported("channels_last != 0 (the NHWC layout)"));
        }
        Ok(())
    }

    /// Operand `i` (with scale `i + 1` and zero point `i + 2`) as a per-tensor quantized value.
    fn qlinear_operand(&mut self, cx: &Cx, i: usize) -> Result<(ValueId, QType)> {
        let x = cx.input(i)?;
        let xt = self.ty(x).clone();
        let storage = storage_of(cx, xt.dtype, &format!("input {i} ('{}')", cx.input_name(i)))?;
        let q = self.qparams(cx, i + 1, i + 2, storage, None, &xt.shape.0)?;
        Ok((self.as_quantized(cx, i, x, &q)?, storage))
    }

    /// `com.microsoft` QLinearConv: the NHWC-capable schema of the same op; with
    /// `channels_last = 0` it is ai.onnx's QLinearConv.
    pub(super) fn contrib_qlinear_conv(&mut self, cx: &Cx) -> Result<ValueId> {
        self.nchw_only(cx)?;
        self.qlinear_conv(cx)
    }

    /// `X, X_scale, [X_zp], Y_scale, [Y_zp]` → `op` on quantized types; Y has X's type.
    pub(super) fn qlinear_unary(&mut self, cx: &Cx, op: Op) -> Result<ValueId> {
        let (x, storage) = self.qlinear_operand(cx, 0)?;
        let yq = self.qparams(cx, 3, 4, storage, None, &[])?;
        self.emit_quantized(cx, op, vec![x], yq)
    }

    pub(super) fn qlinear_global_average_pool(&mut self, cx: &Cx) -> Result<ValueId> {
        self.nchw_only(cx)?;
        self.qlinear_unary(cx, Op::GlobalAveragePool)
    }

    pub(super) fn qlinear_average_pool(&mut self, cx: &Cx) -> Result<ValueId> {
        self.nchw_only(cx)?;
        let x = cx.input(0)?;
        let pool = self.pool_attrs(cx, x)?;
        let count_include_pad = cx.flag("count_include_pad", false)?;
        self.qlinear_unary(
            cx,
            Op::AveragePool {
                pool,
                count_include_pad,
            },
        )
    }

    /// `A, A_scale, [A_zp], B, B_scale, [B_zp], C_scale, [C_zp]` → `op` (add, mul) on
    /// quantized types; C has A's type.
    pub(super) fn qlinear_binary(&mut self, cx: &Cx, op: Op) -> Result<ValueId> {
        let (a, storage) = self.qlinear_operand(cx, 0)?;
        let (b, _) = self.qlinear_operand(cx, 3)?;
        let yq = self.qparams(cx, 6, 7, storage, None, &[])?;
        self.emit_quantized(cx, op, vec![a, b], yq)
    }

    /// `Y_scale, Y_zp, (X_i, X_i_scale, X_i_zp)..` → `concat`. Inputs with equal params
    /// make concat's result params implied (see `qc_ir::infer`); when Y's differ from
    /// them, a `requantize` follows.
    pub(super) fn qlinear_concat(&mut self, cx: &Cx) -> Result<ValueId> {
        let n = cx.node.input.len();
        if n < 5 || !(n - 2).is_multiple_of(3) {
            return Err(cx.err(format!(
                "expects Y_scale, Y_zero_point and (tensor, scale, zero point) triples, got {n} inputs"
            )));
        }
        let axis = cx
            .int("axis")?
            .ok_or_else(|| cx.err("attribute 'axis' is required"))?;
        let mut xs = Vec::with_capacity((n - 2) / 3);
        let mut storage = None;
        for i in (2..n).step_by(3) {
            let (x, s) = self.qlinear_operand(cx, i)?;
            storage.get_or_insert(s);
            xs.push(x);
        }
        let storage = storage.ok_or_else(|| cx.err("invariant: at least one operand"))?;
        let rank = xs.first().map_or(0, |&x| self.ty(x).rank());
        let axis = cx.axis("axis", axis, rank)?;
        let yq = self.qparams(cx, 0, 1, storage, None, &[])?;
        let op = Op::Concat { axis };
        let implied = self
            .infer(cx, &op, &xs)?
            .into_iter()
            .next()
            .and_then(|t| t.quant);
        match implied {
            None => self.emit_quantized(cx, op, xs, yq),
            Some(q) if q == yq => self.emit(cx, op, xs),
            Some(_) => {
                let joined = self.emit(cx, op, xs)?;
                self.emit_quantized(cx, Op::Requantize, vec![joined], yq)
            }
        }
    }

    /// `A, a_scale, a_zp, B, b_scale, b_zp, [C], [y_scale, y_zp]` → a quantized gemm.
    /// `b` may be per column (axis 1 of `B`, or 0 with `transB`); `C` is raw i32 with
    /// implied scale `alpha * a_scale * b_scale`, which with `alpha = 1` is the IR's.
    pub(super) fn qgemm(&mut self, cx: &Cx) -> Result<ValueId> {
        let alpha = cx.float_or("alpha", 1.0)?;
        if alpha != 1.0 {
            return Err(cx.unsupported(format!("alpha = {alpha} (only 1)")));
        }
        if cx.opt(7).is_none() {
            return Err(cx.unsupported("a float result (no y_scale)"));
        }
        let trans_a = cx.flag("transA", false)?;
        let trans_b = cx.flag("transB", false)?;
        let (a, b) = (cx.input(0)?, cx.input(3)?);
        let (at, bt) = (self.ty(a).clone(), self.ty(b).clone());
        let as_ = storage_of(cx, at.dtype, "input 0 (A)")?;
        let bs = storage_of(cx, bt.dtype, "input 3 (B)")?;
        let ys = match self.opt_const(cx, 8)? {
            Some(z) => storage_of(cx, z.dtype(), "input 8 (y_zero_point)")?,
            None => as_,
        };
        let aq = self.qparams(cx, 1, 2, as_, None, &at.shape.0)?;
        let bq = self.qparams(cx, 4, 5, bs, Some(i64::from(!trans_b)), &bt.shape.0)?;
        let yq = self.qparams(cx, 7, 8, ys, None, &[])?;
        let av = self.as_quantized(cx, 0, a, &aq)?;
        let bv = self.as_quantized(cx, 3, b, &bq)?;
        let mut inputs = vec![av, bv];
        inputs.extend(cx.opt(6));
        let attrs = GemmAttrs {
            alpha: 1.0,
            beta: 1.0,
            trans_a,
            trans_b,
            act: Activation::None,
        };
        self.emit_quantized(cx, Op::Gemm(attrs), inputs, yq)
    }
}
