//! Convolution, pooling, normalization and gemm.
//!
//! `auto_pad` is resolved into explicit pads here (the IR has none):
//! `SAME_*` gives `out = ceil(in / stride)` with
//! `total = max(0, (out - 1) * stride + (k - 1) * dilation + 1 - in)`, split with the
//! extra pad at the end (`SAME_UPPER`) or at the beginning (`SAME_LOWER`); `VALID` is
//! no padding. Pools with `SAME_*` ignore `ceil_mode` (the output size is fixed by
//! the formula above). Geometry is computed in `i128` and converted back checked.

use qc_ir::{
    Activation, ConvAttrs, ConvTransposeAttrs, GemmAttrs, LrnAttrs, Op, PoolAttrs, ValueId,
};

use crate::import::Importer;
use crate::node::Cx;
use crate::Result;

/// How `auto_pad` asks for pads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum AutoPad {
    NotSet,
    Valid,
    SameUpper,
    SameLower,
}

fn auto_pad(cx: &Cx) -> Result<AutoPad> {
    match cx.string("auto_pad")?.as_deref() {
        None | Some("") | Some("NOTSET") => Ok(AutoPad::NotSet),
        Some("VALID") => Ok(AutoPad::Valid),
        Some("SAME_UPPER") => Ok(AutoPad::SameUpper),
        Some("SAME_LOWER") => Ok(AutoPad::SameLower),
        Some(other) => Err(cx.err(format!("unknown auto_pad '{other}'"))),
    }
}

fn to_usize(cx: &Cx, v: i128, what: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| cx.err(format!("{what} {v} is out of range")))
}

/// A per-spatial-axis attribute of `k` values, each >= 1, defaulting to ones.
fn spatial(cx: &Cx, name: &str, k: usize) -> Result<Vec<usize>> {
    match cx.usizes(name)? {
        None => Ok(vec![1; k]),
        Some(v) if v.len() == k && !v.contains(&0) => Ok(v),
        Some(v) => Err(cx.err(format!(
            "attribute '{name}' {v:?} must have {k} values >= 1"
        ))),
    }
}

/// Explicit pads `[begins.., ends..]` for a conv or pool window; `true` when they come
/// from `SAME_*`.
fn resolve_pads(
    cx: &Cx,
    input: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
) -> Result<(Vec<usize>, bool)> {
    let k = input.len();
    let mode = auto_pad(cx)?;
    match mode {
        AutoPad::NotSet => match cx.usizes("pads")? {
            None => Ok((vec![0; 2 * k], false)),
            Some(p) if p.len() == 2 * k => Ok((p, false)),
            Some(p) => Err(cx.err(format!("attribute 'pads' {p:?} must have {} values", 2 * k))),
        },
        AutoPad::Valid => Ok((vec![0; 2 * k], false)),
        AutoPad::SameUpper | AutoPad::SameLower => {
            let mut pads = vec![0; 2 * k];
            for i in 0..k {
                let (n, kk, s, d) = (
                    input[i] as i128,
                    kernel[i] as i128,
                    strides[i] as i128,
                    dilations[i] as i128,
                );
                let out = (n + s - 1) / s;
                let total = ((out - 1) * s + (kk - 1) * d + 1 - n).max(0);
                let (b, e) = if mode == AutoPad::SameUpper {
                    (total / 2, total - total / 2)
                } else {
                    (total - total / 2, total / 2)
                };
                pads[i] = to_usize(cx, b, "pad")?;
                pads[i + k] = to_usize(cx, e, "pad")?;
            }
            Ok((pads, true))
        }
    }
}

impl Importer<'_> {
    /// The spatial dims of `x` (`[N, C, spatial..]`).
    fn spatial_dims(&self, cx: &Cx, x: ValueId) -> Result<Vec<usize>> {
        let t = self.ty(x);
        match t.shape.dims().get(2..) {
            Some(s) if !s.is_empty() => Ok(s.to_vec()),
            _ => Err(cx.err(format!(
                "input 0 must be [N, C, spatial..], got {}",
                t.shape
            ))),
        }
    }

    /// `kernel_shape`, or the spatial dims of the weight `w` when absent.
    fn kernel(&self, cx: &Cx, w: ValueId, k: usize) -> Result<Vec<usize>> {
        let kernel = match cx.usizes("kernel_shape")? {
            Some(v) => v,
            None => self
                .ty(w)
                .shape
                .dims()
                .get(2..)
                .map(<[usize]>::to_vec)
                .unwrap_or_default(),
        };
        if kernel.len() != k || kernel.contains(&0) {
            return Err(cx.err(format!("kernel shape {kernel:?} must have {k} values >= 1")));
        }
        Ok(kernel)
    }

    fn group(&self, cx: &Cx) -> Result<usize> {
        let g = cx.int_or("group", 1)?;
        usize::try_from(g)
            .ok()
            .filter(|&g| g >= 1)
            .ok_or_else(|| cx.err(format!("group {g} must be >= 1")))
    }

    /// Conv geometry from the node's attributes and the types of `x` and `w` (shared
    /// by Conv, QLinearConv and ConvInteger).
    pub(crate) fn conv_attrs(&self, cx: &Cx, x: ValueId, w: ValueId) -> Result<ConvAttrs> {
        let input = self.spatial_dims(cx, x)?;
        let k = input.len();
        let kernel = self.kernel(cx, w, k)?;
        let strides = spatial(cx, "strides", k)?;
        let dilations = spatial(cx, "dilations", k)?;
        let (pads, _) = resolve_pads(cx, &input, &kernel, &strides, &dilations)?;
        Ok(ConvAttrs {
            kernel,
            strides,
            dilations,
            pads,
            group: self.group(cx)?,
            act: Activation::None,
        })
    }

    pub(super) fn conv(&mut self, cx: &Cx) -> Result<ValueId> {
        let (x, w) = (cx.input(0)?, cx.input(1)?);
        let attrs = self.conv_attrs(cx, x, w)?;
        let mut inputs = vec![x, w];
        inputs.extend(cx.opt(2));
        self.emit(cx, Op::Conv(attrs), inputs)
    }

    /// ConvTranspose with `output_shape` and `auto_pad` resolved into pads and
    /// output padding. `SAME_*` (with `output_shape`, else `in * stride` as target)
    /// uses the spec's `total_padding` split (floor division: `SAME_UPPER` puts the
    /// extra at the end). Without `SAME_*`, a given `output_shape` keeps the pads and
    /// extends (output padding) or crops (end pad) the end, as the ONNX reference
    /// implementation does.
    pub(super) fn conv_transpose(&mut self, cx: &Cx) -> Result<ValueId> {
        let (x, w) = (cx.input(0)?, cx.input(1)?);
        let input = self.spatial_dims(cx, x)?;
        let k = input.len();
        let kernel = self.kernel(cx, w, k)?;
        let strides = spatial(cx, "strides", k)?;
        let dilations = spatial(cx, "dilations", k)?;
        let mut output_padding = match cx.usizes("output_padding")? {
            None => vec![0; k],
            Some(v) if v.len() == k => v,
            Some(v) => {
                return Err(cx.err(format!(
                    "attribute 'output_padding' {v:?} must have {k} values"
                )))
            }
        };
        let output_shape = match cx.usizes("output_shape")? {
            None => None,
            Some(v) if v.len() == k => Some(v),
            // Some exporters write the full [N, C, spatial..] shape.
            Some(v) if v.len() == k + 2 => Some(v[2..].to_vec()),
            Some(v) => {
                return Err(cx.err(format!(
                    "attribute 'output_shape' {v:?} must have {k} values"
                )))
            }
        };
        let mode = auto_pad(cx)?;
        let explicit = match (mode, cx.usizes("pads")?) {
            (AutoPad::NotSet, Some(p)) if p.len() == 2 * k => p,
            (AutoPad::NotSet, Some(p)) => {
                return Err(cx.err(format!("attribute 'pads' {p:?} must have {} values", 2 * k)))
            }
            _ => vec![0; 2 * k],
        };
        let mut pads = vec![0usize; 2 * k];
        for i in 0..k {
            let (n, kk, s, d, op) = (
                input[i] as i128,
                kernel[i] as i128,
                strides[i] as i128,
                dilations[i] as i128,
                output_padding[i] as i128,
            );
            // The output size with no padding at all.
            let full = s * (n - 1) + op + (kk - 1) * d + 1;
            let target = output_shape.as_ref().map(|o| o[i] as i128);
            let (b, mut e, mut extra) = match mode {
                AutoPad::SameUpper | AutoPad::SameLower => {
                    let total = full - target.unwrap_or(n * s);
                    let half = total.div_euclid(2);
                    let (b, e) = if mode == AutoPad::SameUpper {
                        (half, total - half)
                    } else {
                        (total - half, half)
                    };
                    (b, e, 0)
                }
                AutoPad::NotSet | AutoPad::Valid => {
                    let (b, e) = (explicit[i] as i128, explicit[i + k] as i128);
                    let extra = target.map_or(0, |t| t - (full - b - e));
                    (b, e, extra)
                }
            };
            if extra < 0 {
                e -= extra;
                extra = 0;
            }
            if e < 0 {
                extra -= e;
                e = 0;
            }
            if b < 0 {
                return Err(cx.unsupported(format!(
                    "an output shape that needs negative padding at the start of spatial axis {i}"
                )));
            }
            pads[i] = to_usize(cx, b, "pad")?;
            pads[i + k] = to_usize(cx, e, "pad")?;
            output_padding[i] = to_usize(cx, op + extra, "output padding")?;
        }
        let attrs = ConvTransposeAttrs {
            kernel,
            strides,
            dilations,
            pads,
            output_padding,
            group: self.group(cx)?,
            act: Activation::None,
        };
        let mut inputs = vec![x, w];
        inputs.extend(cx.opt(2));
        self.emit(cx, Op::ConvTranspose(attrs), inputs)
    }

    pub(super) fn pool_attrs(&self, cx: &Cx, x: ValueId) -> Result<PoolAttrs> {
        let input = self.spatial_dims(cx, x)?;
        let k = input.len();
        let kernel = match cx.usizes("kernel_shape")? {
            Some(v) if v.len() == k && !v.contains(&0) => v,
            Some(v) => return Err(cx.err(format!("kernel_shape {v:?} must have {k} values >= 1"))),
            None => return Err(cx.err("attribute 'kernel_shape' is required")),
        };
        let strides = spatial(cx, "strides", k)?;
        let dilations = spatial(cx, "dilations", k)?;
        let (pads, same) = resolve_pads(cx, &input, &kernel, &strides, &dilations)?;
        let ceil_mode = cx.flag("ceil_mode", false)? && !same;
        Ok(PoolAttrs {
            kernel,
            strides,
            dilations,
            pads,
            ceil_mode,
        })
    }

    pub(super) fn max_pool(&mut self, cx: &Cx) -> Result<Vec<ValueId>> {
        let x = cx.input(0)?;
        let pool = self.pool_attrs(cx, x)?;
        let storage_order = u8::from(cx.flag("storage_order", false)?);
        self.emit_n(
            cx,
            Op::MaxPool {
                pool,
                storage_order,
            },
            vec![x],
            cx.n_outputs().max(1),
        )
    }

    pub(super) fn average_pool(&mut self, cx: &Cx) -> Result<ValueId> {
        let x = cx.input(0)?;
        let pool = self.pool_attrs(cx, x)?;
        let count_include_pad = cx.flag("count_include_pad", false)?;
        self.emit(
            cx,
            Op::AveragePool {
                pool,
                count_include_pad,
            },
            vec![x],
        )
    }

    pub(super) fn batch_norm(&mut self, cx: &Cx) -> Result<ValueId> {
        if cx.flag("training_mode", false)? {
            return Err(cx.unsupported("training_mode=1"));
        }
        if cx.opset < 9 && cx.int_or("spatial", 1)? == 0 {
            return Err(cx.unsupported("spatial=0"));
        }
        if (1..5).any(|i| self.is_used(cx.output_name(i))) {
            return Err(
                cx.unsupported("using the training outputs (running or saved mean and variance)")
            );
        }
        let epsilon = cx.float_or("epsilon", 1e-5)?;
        let inputs = (0..5).map(|i| cx.input(i)).collect::<Result<Vec<_>>>()?;
        self.emit(cx, Op::BatchNorm { epsilon }, inputs)
    }

    pub(super) fn lrn(&mut self, cx: &Cx) -> Result<ValueId> {
        let x = cx.input(0)?;
        let size = cx
            .int("size")?
            .ok_or_else(|| cx.err("attribute 'size' is required"))?;
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s >= 1)
            .ok_or_else(|| cx.err(format!("size {size} must be >= 1")))?;
        let attrs = LrnAttrs {
            size,
            alpha: cx.float_or("alpha", 1e-4)?,
            beta: cx.float_or("beta", 0.75)?,
            bias: cx.float_or("bias", 1.0)?,
        };
        self.emit(cx, Op::Lrn(attrs), vec![x])
    }

    pub(super) fn gemm(&mut self, cx: &Cx) -> Result<ValueId> {
        let (a, b) = (cx.input(0)?, cx.input(1)?);
        let attrs = GemmAttrs {
            alpha: cx.float_or("alpha", 1.0)?,
            beta: cx.float_or("beta", 1.0)?,
            trans_a: cx.flag("transA", false)?,
            trans_b: cx.flag("transB", false)?,
            act: Activation::None,
        };
        let mut inputs = vec![a, b];
        inputs.extend(cx.opt(2));
        self.emit(cx, Op::Gemm(attrs), inputs)
    }

    pub(super) fn matmul(&mut self, cx: &Cx) -> Result<ValueId> {
        let (a, b) = (cx.input(0)?, cx.input(1)?);
        self.emit(
            cx,
            Op::MatMul {
                act: Activation::None,
            },
            vec![a, b],
        )
    }
}
