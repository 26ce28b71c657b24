//! Quantization: QDQ (`QuantizeLinear`/`DequantizeLinear`), QOperator (`QLinearConv`,
//! `QLinearMatMul`), integer ops (`ConvInteger`, `MatMulInteger`) and
//! `DynamicQuantizeLinear`.
//!
//! Quantization lives in types (see DESIGN.md): scales and zero points must be
//! constants and become [`QuantParams`] on the quantized value's type. One scale is
//! per-tensor; a 1-D scale of several elements is per-axis. Blocked quantization
//! (`block_size > 0`) is not supported.

use qc_ir::{Activation, DType, Op, QType, QuantParams, Tensor, ValueId};

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
}
