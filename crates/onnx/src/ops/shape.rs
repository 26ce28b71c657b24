//! Data movement, constants, and the shape computations folded at import.
//!
//! `Shape` always folds (shapes are static). `Gather`, `Slice`, `ConstantOfShape` and
//! `Constant` only exist as constants: their operands must be constant. `Cast`,
//! `Concat`, `Reshape`, `Squeeze`, `Unsqueeze` and `Identity` fold when every operand
//! is a plain constant (and the copy stays under [`fold::MAX_FOLD_BYTES`]), and
//! otherwise become IR ops.

use std::sync::Arc;

use qc_ir::{Op, Shape, Tensor, TensorData, ValueId};

use crate::fold;
use crate::import::Importer;
use crate::node::Cx;
use crate::tensor::{dtype_from_onnx, tensor_from_proto};
use crate::{Error, Result};

impl Importer<'_> {
    /// A fold result as a constant value; errors name the node.
    fn folded(&mut self, cx: &Cx, r: std::result::Result<Tensor, String>) -> Result<ValueId> {
        let t = r.map_err(|e| cx.err(e))?;
        Ok(self.add_const(t))
    }

    /// `x` reshaped to `dims`: folded when `x` is a constant small enough to copy.
    fn reshape_to(&mut self, cx: &Cx, x: ValueId, dims: Vec<usize>, op: Op) -> Result<ValueId> {
        if let Some(t) = self.konst(x) {
            if fold::check_size(t.shape(), t.dtype()).is_ok() {
                return self.folded(cx, fold::reshape(&t, dims));
            }
        }
        self.emit(cx, op, vec![x])
    }

    pub(super) fn flatten(&mut self, cx: &Cx) -> Result<ValueId> {
        let x = cx.input(0)?;
        let rank = self.ty(x).rank();
        let a = cx.int_or("axis", 1)?;
        // Flatten's axis ranges over [-r, r] (r: everything in the first dim).
        let axis = if a == rank as i64 {
            rank
        } else {
            cx.axis("axis", a, rank)?
        };
        self.emit(cx, Op::Flatten { axis }, vec![x])
    }

    pub(super) fn reshape(&mut self, cx: &Cx) -> Result<ValueId> {
        let x = cx.input(0)?;
        let spec = self
            .const_ints(cx, 1)?
            .ok_or_else(|| cx.err("input 1 (shape) is required"))?;
        let allowzero = cx.flag("allowzero", false)?;
        let input = self.ty(x).shape.clone();
        let numel = input.numel().map_err(|e| cx.err(e.to_string()))?;
        let mut dims = Vec::with_capacity(spec.len());
        let mut infer_at = None;
        for (i, &s) in spec.iter().enumerate() {
            match s {
                -1 if infer_at.is_none() => {
                    infer_at = Some(i);
                    dims.push(1);
                }
                -1 => return Err(cx.err(format!("shape {spec:?} has more than one -1"))),
                0 if !allowzero => dims.push(*input.dims().get(i).ok_or_else(|| {
                    cx.err(format!(
                        "shape {spec:?}: 0 at position {i} copies a dim x {input} does not have"
                    ))
                })?),
                s => dims.push(
                    usize::try_from(s).map_err(|_| cx.err(format!("shape {spec:?} has {s}")))?,
                ),
            }
        }
        if let Some(i) = infer_at {
            let known = Shape(dims.clone())
                .numel()
                .map_err(|e| cx.err(e.to_string()))?;
            if known == 0 || numel % known != 0 {
                return Err(cx.err(format!(
                    "shape {spec:?}: cannot infer -1 for x {input} of {numel} elements"
                )));
            }
            dims[i] = numel / known;
        }
        let out = Shape(dims.clone())
            .numel()
            .map_err(|e| cx.err(e.to_string()))?;
        if out != numel {
            return Err(cx.err(format!(
                "shape {spec:?} (resolved {dims:?}) does not fit x {input}"
            )));
        }
        self.reshape_to(cx, x, dims.clone(), Op::Reshape { shape: dims })
    }

    /// Axes from the `axes` attribute (opset < 13) or input 1 (opset >= 13).
    fn axes_operand(&self, cx: &Cx) -> Result<Option<Vec<i64>>> {
        if cx.opset < 13 {
            Ok(cx.ints("axes")?.map(<[i64]>::to_vec))
        } else {
            self.const_ints(cx, 1)
        }
    }

    pub(super) fn squeeze(&mut self, cx: &Cx) -> Result<ValueId> {
        let x = cx.input(0)?;
        let input = self.ty(x).shape.clone();
        let axes = match self.axes_operand(cx)? {
            Some(a) if !a.is_empty() => cx.axes("axes", &a, input.rank())?,
            // No axes: every size-1 dim.
            _ => (0..input.rank()).filter(|&i| input.0[i] == 1).collect(),
        };
        for &a in &axes {
            if input.0[a] != 1 {
                return Err(cx.err(format!(
                    "axis {a} of x {input} has size {}, not 1",
                    input.0[a]
                )));
            }
        }
        let dims: Vec<usize> = (0..input.rank())
            .filter(|i| !axes.contains(i))
            .map(|i| input.0[i])
            .collect();
        self.reshape_to(cx, x, dims, Op::Squeeze { axes })
    }

    pub(super) fn unsqueeze(&mut self, cx: &Cx) -> Result<ValueId> {
        let x = cx.input(0)?;
        let input = self.ty(x).shape.clone();
        let a = self
            .axes_operand(cx)?
            .ok_or_else(|| cx.err("axes are required"))?;
        let rank = input.rank() + a.len();
        let axes = cx.axes("axes", &a, rank)?;
        let mut old = input.0.iter();
        let dims: Vec<usize> = (0..rank)
            .map(|r| {
                if axes.contains(&r) {
                    1
                } else {
                    old.next().copied().unwrap_or(1)
                }
            })
            .collect();
        self.reshape_to(cx, x, dims, Op::Unsqueeze { axes })
    }

    pub(super) fn transpose(&mut self, cx: &Cx) -> Result<ValueId> {
        let x = cx.input(0)?;
        let rank = self.ty(x).rank();
        let perm = match cx.ints("perm")? {
            None => (0..rank).rev().collect(),
            Some(p) => p
                .iter()
                .map(|&v| usize::try_from(v).map_err(|_| cx.err(format!("perm {p:?} has {v}"))))
                .collect::<Result<Vec<_>>>()?,
        };
        self.emit(cx, Op::Transpose { perm }, vec![x])
    }

    pub(super) fn concat(&mut self, cx: &Cx) -> Result<ValueId> {
        let inputs = (0..cx.node.input.len())
            .map(|i| cx.input(i))
            .collect::<Result<Vec<_>>>()?;
        let first = *inputs
            .first()
            .ok_or_else(|| cx.err("needs at least one input"))?;
        let a = cx
            .int("axis")?
            .ok_or_else(|| cx.err("attribute 'axis' is required"))?;
        let axis = cx.axis("axis", a, self.ty(first).rank())?;
        let consts: Option<Vec<Arc<Tensor>>> = inputs.iter().map(|&v| self.konst(v)).collect();
        if let Some(ts) = consts {
            let refs: Vec<&Tensor> = ts.iter().map(Arc::as_ref).collect();
            if let Ok(t) = fold::concat(&refs, axis) {
                return Ok(self.add_const(t));
            }
        }
        self.emit(cx, Op::Concat { axis }, inputs)
    }

    /// Constant mode only. Opset < 11: `pads`/`value` attributes; from 11: constant
    /// operands `pads`, `constant_value` and (18+) `axes`.
    pub(super) fn pad(&mut self, cx: &Cx) -> Result<ValueId> {
        let mode = cx.string("mode")?.unwrap_or_else(|| "constant".into());
        if mode != "constant" {
            return Err(cx.unsupported(format!("mode '{mode}' (only constant padding)")));
        }
        let x = cx.input(0)?;
        let rank = self.ty(x).rank();
        let (pads, value) = if cx.opset < 11 {
            let pads = cx
                .ints("pads")?
                .ok_or_else(|| cx.err("attribute 'pads' is required"))?
                .to_vec();
            (pads, f64::from(cx.float_or("value", 0.0)?))
        } else {
            let pads = self
                .const_ints(cx, 1)?
                .ok_or_else(|| cx.err("input 1 (pads) is required"))?;
            let value = match self.opt_const(cx, 2)? {
                None => 0.0,
                Some(t) if t.len() == 1 => t.data().get_f64(0),
                Some(t) => {
                    return Err(cx.err(format!(
                        "constant_value must have one element, got {}",
                        t.shape()
                    )))
                }
            };
            let axes = if cx.opset >= 18 {
                self.const_ints(cx, 3)?
            } else {
                None
            };
            match axes {
                None => (pads, value),
                Some(axes) => {
                    // `pads` follows the order of `axes`; spread it over all axes.
                    let norm = axes
                        .iter()
                        .map(|&a| cx.axis("axes", a, rank))
                        .collect::<Result<Vec<_>>>()?;
                    cx.axes("axes", &axes, rank)?;
                    let n = norm.len();
                    if pads.len() != 2 * n {
                        return Err(cx.err(format!(
                            "pads {pads:?} must have 2 * {n} values for axes {axes:?}"
                        )));
                    }
                    let mut full = vec![0i64; 2 * rank];
                    for (j, &a) in norm.iter().enumerate() {
                        full[a] = pads[j];
                        full[a + rank] = pads[j + n];
                    }
                    (full, value)
                }
            }
        };
        if pads.len() != 2 * rank {
            return Err(cx.err(format!("pads {pads:?} must have 2 * {rank} values")));
        }
        self.emit(cx, Op::Pad { pads, value }, vec![x])
    }

    /// Opset >= 13: one axis. Before, the input is coerced to 2-D at `axis` (default
    /// one) and normalized over the second dim: unless that is the last axis alone,
    /// this is reshape, softmax over axis 1, reshape back.
    pub(super) fn softmax(&mut self, cx: &Cx) -> Result<ValueId> {
        let x = cx.input(0)?;
        let input = self.ty(x).shape.clone();
        let rank = input.rank();
        if cx.opset >= 13 {
            let axis = cx.axis("axis", cx.int_or("axis", -1)?, rank)?;
            return self.emit(cx, Op::Softmax { axis }, vec![x]);
        }
        let axis = cx.axis("axis", cx.int_or("axis", 1)?, rank)?;
        if axis + 1 == rank {
            return self.emit(cx, Op::Softmax { axis }, vec![x]);
        }
        let numel = |d: &[usize]| Shape(d.to_vec()).numel().map_err(|e| cx.err(e.to_string()));
        let rows = numel(&input.0[..axis])?;
        let cols = numel(&input.0[axis..])?;
        let flat = self.emit(
            cx,
            Op::Reshape {
                shape: vec![rows, cols],
            },
            vec![x],
        )?;
        let y = self.emit(cx, Op::Softmax { axis: 1 }, vec![flat])?;
        self.emit(cx, Op::Reshape { shape: input.0 }, vec![y])
    }

    /// Axes: attribute before opset 18, operand from 18. No axes means all of them,
    /// unless `noop_with_empty_axes` (18+) makes it the identity.
    pub(super) fn reduce_mean(&mut self, cx: &Cx) -> Result<ValueId> {
        let x = cx.input(0)?;
        let rank = self.ty(x).rank();
        let keepdims = cx.flag("keepdims", true)?;
        let (axes, noop) = if cx.opset < 18 {
            (cx.ints("axes")?.map(<[i64]>::to_vec), false)
        } else {
            (
                self.const_ints(cx, 1)?,
                cx.flag("noop_with_empty_axes", false)?,
            )
        };
        let axes = match axes {
            Some(a) if !a.is_empty() => cx.axes("axes", &a, rank)?,
            _ if noop => return self.emit(cx, Op::Identity, vec![x]),
            _ => (0..rank).collect(),
        };
        self.emit(cx, Op::ReduceMean { axes, keepdims }, vec![x])
    }

    pub(super) fn identity(&mut self, cx: &Cx) -> Result<ValueId> {
        let x = cx.input(0)?;
        if self.g.const_of(x).is_some() {
            return Ok(x);
        }
        self.emit(cx, Op::Identity, vec![x])
    }

    /// Inference: the output is the input; a used mask is all-true (bool from opset
    /// 10; before, ones of the input's type).
    pub(super) fn dropout(&mut self, cx: &Cx) -> Result<Vec<ValueId>> {
        let x = cx.input(0)?;
        if cx.opset >= 12 {
            if let Some(t) = self.opt_const(cx, 2)? {
                if t.to_f64_vec().iter().any(|&v| v != 0.0) {
                    return Err(cx.unsupported("training_mode=true"));
                }
            }
        }
        let y = self.identity(cx)?;
        let mut out = vec![y];
        if self.is_used(cx.output_name(1)) {
            let ty = self.ty(x).clone();
            let one = if cx.opset >= 10 {
                Tensor::new(Shape::scalar(), TensorData::Bool(vec![true]))
                    .map_err(|e| cx.err(e.to_string()))?
            } else {
                fold::cast(&Tensor::scalar_f32(1.0), ty.dtype).map_err(|e| cx.err(e))?
            };
            let mask = fold::fill(&one, ty.shape);
            out.push(self.folded(cx, mask)?);
        }
        Ok(out)
    }

    /// Cast (target from `to`) or CastLike (target from operand 1's dtype).
    pub(super) fn cast(&mut self, cx: &Cx, like: bool) -> Result<ValueId> {
        let x = cx.input(0)?;
        let to = if like {
            self.ty(cx.input(1)?).dtype
        } else {
            let code = cx
                .int("to")?
                .ok_or_else(|| cx.err("attribute 'to' is required"))?;
            let code = i32::try_from(code).map_err(|_| cx.err(format!("unknown type {code}")))?;
            dtype_from_onnx(code).map_err(|ty| Error::UnsupportedType {
                what: format!("node '{}' (Cast, opset {}) target", cx.label, cx.opset),
                dtype: ty,
            })?
        };
        if let Some(t) = self.konst(x) {
            if let Ok(c) = fold::cast(&t, to) {
                return Ok(self.add_const(c));
            }
        }
        self.emit(cx, Op::Cast { to }, vec![x])
    }

    /// A tensor from a node attribute; errors name the node.
    fn attr_tensor(&self, cx: &Cx, t: &onnx_protobuf::TensorProto) -> Result<Tensor> {
        tensor_from_proto(t, self.ext()).map_err(|e| match e {
            Error::UnsupportedType { dtype, .. } => Error::UnsupportedType {
                what: format!(
                    "node '{}' ({}, opset {}) value",
                    cx.label,
                    cx.op(),
                    cx.opset
                ),
                dtype,
            },
            Error::Tensor { msg, .. } => cx.err(format!("value: {msg}")),
            e => e,
        })
    }

    pub(super) fn constant(&mut self, cx: &Cx) -> Result<ValueId> {
        if cx.has_attr("sparse_value") {
            return Err(cx.unsupported("a sparse value"));
        }
        if cx.has_attr("value_string") || cx.has_attr("value_strings") {
            return Err(Error::UnsupportedType {
                what: format!("node '{}' (Constant, opset {}) value", cx.label, cx.opset),
                dtype: "STRING".into(),
            });
        }
        let t = if let Some(t) = cx.tensor("value")? {
            self.attr_tensor(cx, t)?
        } else if let Some(f) = cx.float("value_float")? {
            Tensor::scalar_f32(f)
        } else if let Some(v) = cx.floats("value_floats")? {
            Tensor::from_f32([v.len()], v.to_vec()).map_err(|e| cx.err(e.to_string()))?
        } else if let Some(i) = cx.int("value_int")? {
            Tensor::new(Shape::scalar(), TensorData::I64(vec![i]))
                .map_err(|e| cx.err(e.to_string()))?
        } else if let Some(v) = cx.ints("value_ints")? {
            Tensor::new([v.len()], TensorData::I64(v.to_vec()))
                .map_err(|e| cx.err(e.to_string()))?
        } else {
            return Err(cx.err("has no value attribute"));
        };
        Ok(self.add_const(t))
    }

    pub(super) fn constant_of_shape(&mut self, cx: &Cx) -> Result<ValueId> {
        let spec = self
            .const_ints(cx, 0)?
            .ok_or_else(|| cx.err("input 0 (shape) is required"))?;
        let dims = spec
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| cx.err(format!("shape {spec:?} has {d}"))))
            .collect::<Result<Vec<_>>>()?;
        let value = match cx.tensor("value")? {
            Some(t) => self.attr_tensor(cx, t)?,
            None => Tensor::scalar_f32(0.0),
        };
        let t = fold::fill(&value, Shape(dims));
        self.folded(cx, t)
    }

    /// Always a constant: shapes are static. `start`/`end` (15+) slice the dims.
    pub(super) fn shape(&mut self, cx: &Cx) -> Result<ValueId> {
        let x = cx.input(0)?;
        let dims = self.ty(x).shape.0.clone();
        let r = dims.len() as i128;
        let clamp = |v: i64| {
            let v = i128::from(v);
            (if v < 0 { v + r } else { v }).clamp(0, r) as usize
        };
        let (start, end) = if cx.opset >= 15 {
            (
                clamp(cx.int_or("start", 0)?),
                cx.int("end")?.map_or(dims.len(), clamp),
            )
        } else {
            (0, dims.len())
        };
        let vals: Vec<i64> = dims
            .get(start..end.max(start))
            .unwrap_or_default()
            .iter()
            .map(|&d| d as i64)
            .collect();
        let t = Tensor::new([vals.len()], TensorData::I64(vals)).map_err(|e| e.to_string());
        self.folded(cx, t)
    }

    pub(super) fn gather(&mut self, cx: &Cx) -> Result<ValueId> {
        let data = self.need_const(cx, 0)?;
        let indices = self.need_const(cx, 1)?;
        let axis = cx.axis("axis", cx.int_or("axis", 0)?, data.dims().len())?;
        let t = fold::gather(&data, &indices, axis);
        self.folded(cx, t)
    }

    /// Opset < 10: `starts`/`ends`/`axes` attributes; from 10: constant operands
    /// `starts`, `ends`, `axes`, `steps`.
    pub(super) fn slice(&mut self, cx: &Cx) -> Result<ValueId> {
        let data = self.need_const(cx, 0)?;
        let rank = data.dims().len();
        let required = |v: Option<Vec<i64>>, what: &str| {
            v.ok_or_else(|| cx.err(format!("{what} are required")))
        };
        let (starts, ends, axes, steps) = if cx.opset < 10 {
            (
                required(cx.ints("starts")?.map(<[i64]>::to_vec), "starts")?,
                required(cx.ints("ends")?.map(<[i64]>::to_vec), "ends")?,
                cx.ints("axes")?.map(<[i64]>::to_vec),
                None,
            )
        } else {
            (
                required(self.const_ints(cx, 1)?, "starts")?,
                required(self.const_ints(cx, 2)?, "ends")?,
                self.const_ints(cx, 3)?,
                self.const_ints(cx, 4)?,
            )
        };
        let axes = match axes {
            Some(a) => a
                .iter()
                .map(|&a| cx.axis("axes", a, rank))
                .collect::<Result<Vec<_>>>()?,
            None => (0..starts.len()).collect(),
        };
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        let t = fold::slice(&data, &starts, &ends, &axes, &steps);
        self.folded(cx, t)
    }
}
