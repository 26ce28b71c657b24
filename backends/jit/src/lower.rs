//! Lowering of one node to the body of its kernel function.
//!
//! [`lower`] matches every [`Op`] exhaustively. Ops on float and quantized types
//! follow the interpreter's generic form — dequantize every operand, compute in f32,
//! quantize the result with its own parameters — emitted per element with the same
//! operations in the same order. Two shortcuts keep that exact while being cheaper:
//! - a unary op on an 8-bit per-tensor quantized operand is a 256-entry table made at
//!   compile time with `qc_qmath` and the interpreter's formula (`funcs`);
//! - a constant operand of an elementwise op is dequantized at compile time (the same
//!   `qc_qmath::dequantize` per element), so per-axis constants work too.
//!
//! Conv, gemm and matmul with constant weights live in `linear`. Module `ops` holds
//! the scalar lowerings of raw integer elementwise ops and clip, `cast`,
//! `conv_integer` / `matmul_integer`, per-axis quantize / dequantize,
//! `dynamic_quantize`, conv / gemm / matmul with run-time weights (`ops::linear_rt`),
//! `conv_transpose`, `reduce_mean` and `lrn`. Max pool here also writes the indices
//! result and runs on raw integers; batch norm also takes run-time parameters.

use std::sync::Arc;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{InstBuilder, Value};
use qc_ir::{DType, Graph, Node, NodeId, Op, PoolAttrs, QType, Tensor, TensorType};

use crate::emit::{Real, E, F32, F64, I32, I64};
use crate::funcs::{self, Callback};
use crate::mem::ConstPool;
use crate::{linear, ops, Error, JitOptions, Result};

/// The pointer parameters of a kernel.
pub(crate) struct Ptrs {
    pub ins: Vec<Value>,
    pub outs: Vec<Value>,
    pub scratch: Value,
}

/// What lowering one node may read and write.
pub(crate) struct Cx<'a> {
    pub g: &'a Graph,
    pub id: NodeId,
    pub node: &'a Node,
    pub opts: &'a JitOptions,
    pub pool: &'a mut ConstPool,
}

impl Cx<'_> {
    pub fn unsupported(&self, msg: impl Into<String>) -> Error {
        Error::Unsupported {
            node: self.id,
            op: self.node.op.name(),
            name: self.node.name.clone(),
            msg: msg.into(),
        }
    }

    pub fn in_ty(&self, i: usize) -> Result<&TensorType> {
        let v = self
            .node
            .inputs
            .get(i)
            .ok_or_else(|| self.unsupported(format!("missing operand {i}")))?;
        Ok(&self.g.value(*v).ty)
    }

    pub fn out_ty(&self, i: usize) -> Result<&TensorType> {
        let v = self
            .node
            .outputs
            .get(i)
            .ok_or_else(|| self.unsupported(format!("missing result {i}")))?;
        Ok(&self.g.value(*v).ty)
    }

    pub fn const_in(&self, i: usize) -> Option<&Arc<Tensor>> {
        self.node.inputs.get(i).and_then(|&v| self.g.const_of(v))
    }

    pub fn arity(&self, lo: usize, hi: usize) -> Result<()> {
        let n = self.node.inputs.len();
        if n < lo || n > hi {
            return Err(self.unsupported(format!("{n} operands, expected {lo}..={hi}")));
        }
        if self.node.outputs.is_empty() {
            return Err(self.unsupported("no result"));
        }
        Ok(())
    }

    /// How elementwise code reads/writes values of type `t` as reals.
    pub fn real(&self, t: &TensorType) -> Result<Real> {
        match &t.quant {
            None if t.dtype == DType::F32 => Ok(Real::F32),
            None => Err(self.unsupported(format!("{} tensors", t.dtype))),
            Some(p) if p.len() == 1 => Ok(Real::Q {
                q: p.storage,
                scale: p.scales[0],
                zp: p.zero_points[0],
            }),
            Some(_) => Err(self.unsupported("per-axis quantized activations")),
        }
    }

    /// An operand as a real source: constants dequantized at compile time to f32.
    fn real_operand(&mut self, i: usize, ptr: Value, e: &mut E) -> Result<(Real, Value)> {
        if let Some(t) = self.const_in(i).cloned() {
            let ty = self.in_ty(i)?.clone();
            let v = dequant_const(&t, &ty).map_err(|m| self.unsupported(m))?;
            let addr = self.pool.add_f32(&v);
            return Ok((Real::F32, e.ic(addr as i64)));
        }
        let ty = self.in_ty(i)?.clone();
        Ok((self.real(&ty)?, ptr))
    }
}

/// The real values of a constant as the interpreter sees them (`qops::dequant`, or
/// the f32 data).
pub(crate) fn dequant_const(t: &Tensor, ty: &TensorType) -> Result<Vec<f32>, String> {
    match &ty.quant {
        None if t.dtype() == DType::F32 => Ok(t.to_f32_vec()),
        None => Err(format!("raw {} constant operand", t.dtype())),
        Some(p) => {
            let q = t.to_i64_vec();
            let dims = t.dims();
            let (outer, dim, inner) = match p.axis {
                Some(a) if p.len() > 1 => {
                    if dims.get(a) != Some(&p.len()) {
                        return Err("per-axis parameters do not fit the constant".into());
                    }
                    (
                        dims[..a].iter().product(),
                        dims[a],
                        dims[a + 1..].iter().product(),
                    )
                }
                _ => (1, 1, q.len()),
            };
            let mut out = Vec::with_capacity(q.len());
            for _ in 0..outer {
                for c in 0..dim {
                    for _ in 0..inner {
                        let i = out.len();
                        out.push(qc_qmath::dequantize(q[i], p.scale(c), p.zero_point(c)));
                    }
                }
            }
            Ok(out)
        }
    }
}

pub(crate) fn numel(d: &[usize]) -> usize {
    d.iter().product()
}

/// Lower `cx.node` into `e`; returns the scratch bytes the kernel uses.
pub(crate) fn lower(cx: &mut Cx, e: &mut E, p: &Ptrs) -> Result<usize> {
    let op = cx.node.op.clone();
    match &op {
        Op::Quantize | Op::Dequantize | Op::Requantize => unary(cx, e, p),
        Op::Clip { min, max }
            if !cx.in_ty(0)?.is_quantized() && ops::is_int(cx.in_ty(0)?.dtype) =>
        {
            ops::int_clip(cx, e, p, *min, *max)
        }
        Op::Relu
        | Op::LeakyRelu { .. }
        | Op::Clip { .. }
        | Op::Sigmoid
        | Op::HardSigmoid { .. }
        | Op::HardSwish
        | Op::Tanh => unary(cx, e, p),
        Op::Identity
        | Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. } => unary(cx, e, p),
        Op::Add { .. } | Op::Sub | Op::Mul | Op::Div | Op::Sum | Op::PRelu => {
            let y = cx.out_ty(0)?;
            if !y.is_quantized() && ops::is_int(y.dtype) {
                ops::int_nary(cx, e, p)
            } else {
                nary(cx, e, p)
            }
        }
        Op::Transpose { perm } => transpose(cx, e, p, perm),
        Op::Concat { axis } => concat(cx, e, p, *axis),
        Op::Pad { pads, value } => pad(cx, e, p, pads, *value),
        Op::MaxPool {
            pool,
            storage_order,
        } => {
            let idx = (cx.node.outputs.len() > 1).then_some(*storage_order);
            pool_op(cx, e, p, pool, None, idx)
        }
        Op::AveragePool {
            pool,
            count_include_pad,
        } => pool_op(cx, e, p, pool, Some(*count_include_pad), None),
        Op::GlobalAveragePool | Op::GlobalMaxPool => global_pool(cx, e, p),
        Op::Softmax { axis } => softmax(cx, e, p, *axis),
        Op::BatchNorm { epsilon } => batch_norm(cx, e, p, *epsilon),
        Op::Conv(a) if cx.const_in(1).is_none() => ops::linear_rt::conv(cx, e, p, a),
        Op::Conv(a) => linear::conv(cx, e, p, a),
        Op::Gemm(a) if cx.const_in(1).is_none() => ops::linear_rt::gemm(cx, e, p, a),
        Op::Gemm(a) => linear::gemm(cx, e, p, a),
        Op::MatMul { act } if cx.const_in(1).is_none() => ops::linear_rt::matmul(cx, e, p, *act),
        Op::MatMul { act } => linear::matmul(cx, e, p, *act),
        Op::DynamicQuantize => ops::dynamic_quantize(cx, e, p),
        Op::Cast { to } => ops::cast(cx, e, p, *to),
        Op::ConvInteger(a) => ops::conv_integer(cx, e, p, a),
        Op::ConvTranspose(a) => ops::conv_transpose::conv_transpose(cx, e, p, a),
        Op::MatMulInteger => ops::matmul_integer(cx, e, p),
        Op::ReduceMean { axes, keepdims } => ops::reduce::reduce_mean(cx, e, p, axes, *keepdims),
        Op::Lrn(a) => ops::reduce::lrn(cx, e, p, a),
    }
}

fn is_reshape_like(op: &Op) -> bool {
    matches!(
        op,
        Op::Identity
            | Op::Flatten { .. }
            | Op::Reshape { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
    )
}

/// A byte-moving copy of `n` elements of `dtype`.
fn raw_copy(e: &mut E, dst: Value, src: Value, bytes: usize) {
    e.memcpy(dst, src, bytes);
}

/// The table `code -> result` of a unary op on an 8-bit per-tensor operand, as
/// little-endian result elements. `None` when the types do not allow a table.
fn unary_table(op: &Op, x: &TensorType, y: &TensorType) -> Option<(Vec<u8>, usize)> {
    let px = x.quant.as_ref()?;
    if px.len() != 1 || !matches!(px.storage, QType::U8 | QType::I8) {
        return None;
    }
    let f = funcs::unary_real(op).or_else(|| match op {
        Op::Dequantize => funcs::unary_real(&Op::Identity),
        _ => None,
    })?;
    let (lo, hi) = (px.storage.min(), px.storage.max());
    let mut bytes = Vec::new();
    for q in lo..=hi {
        let r = f(qc_qmath::dequantize(q, px.scales[0], px.zero_points[0]));
        match &y.quant {
            Some(py) if py.len() == 1 => {
                let v = qc_qmath::quantize(r, py.scales[0], py.zero_points[0], py.storage);
                match py.storage {
                    QType::U8 | QType::I8 => bytes.push(v as u8),
                    QType::U16 | QType::I16 => bytes.extend((v as u16).to_le_bytes()),
                    QType::I32 => bytes.extend((v as i32).to_le_bytes()),
                }
            }
            None if y.dtype == DType::F32 => bytes.extend(r.to_le_bytes()),
            _ => return None,
        }
    }
    let size = bytes.len() / 256;
    Some((bytes, size))
}

/// Is the table the identity on codes (same storage, every code maps to itself)?
fn table_is_identity(t: &[u8], x: &TensorType, y: &TensorType) -> bool {
    let (Some(px), Some(py)) = (&x.quant, &y.quant) else {
        return false;
    };
    px.storage == py.storage
        && t.len() == 256
        && t.iter().enumerate().all(|(i, &b)| {
            let code = px.storage.min() + i as i64;
            let out = if py.storage == QType::I8 {
                i64::from(b as i8)
            } else {
                i64::from(b)
            };
            out == code
        })
}

/// Apply a code table: `y[i] = table[x[i] - min]`.
fn emit_table_map(
    e: &mut E,
    xq: QType,
    table: usize,
    esize: i64,
    src: Value,
    dst: Value,
    n: usize,
) -> Result<()> {
    let t = e.ic(table as i64);
    e.for_n(n, |e, i| {
        let a = e.add(src, i);
        let v = e.load_q(xq, a, 0);
        let v = e.b.ins().iadd_imm_s(v, -xq.min());
        let v = e.b.ins().uextend(I64, v);
        let ta = e.addr(t, v, esize, 0);
        let da = e.addr(dst, i, esize, 0);
        match esize {
            1 => {
                let x = e.b.ins().uload8(I32, crate::emit::mf(), ta, 0);
                e.b.ins().istore8(crate::emit::mf(), x, da, 0);
            }
            2 => {
                let x = e.b.ins().uload16(I32, crate::emit::mf(), ta, 0);
                e.b.ins().istore16(crate::emit::mf(), x, da, 0);
            }
            _ => {
                let x = e.b.ins().load(I32, crate::emit::mf(), ta, 0);
                e.store(x, da, 0);
            }
        }
        Ok(())
    })
}

/// Emit `f(x)` for a unary op on an f32 value, with the interpreter's formula.
fn emit_unary_f(cx: &Cx, e: &mut E, op: &Op, x: Value) -> Result<Value> {
    Ok(match op {
        Op::Relu => e.relu(x),
        Op::LeakyRelu { alpha } => {
            let a = e.f32c(*alpha);
            let m = e.b.ins().fmul(x, a);
            let z = e.f32c(0.0);
            e.sel_lt(x, z, m, x)
        }
        Op::Clip { min, max } => {
            let (lo, hi) = funcs::clip_bounds(*min, *max);
            e.clip(x, lo, hi)
        }
        Op::Sigmoid => e.call(Callback::Sigmoid, x),
        Op::Tanh => e.call(Callback::Tanh, x),
        Op::HardSigmoid { alpha, beta } => e.hard_sigmoid(x, *alpha, *beta),
        Op::HardSwish => {
            let h = e.hard_sigmoid(x, funcs::HARD_SWISH_ALPHA, 0.5);
            e.b.ins().fmul(x, h)
        }
        Op::Quantize
        | Op::Dequantize
        | Op::Requantize
        | Op::Identity
        | Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. } => x,
        other => return Err(cx.unsupported(format!("{} is not unary", other.name()))),
    })
}

/// Unary elementwise ops, conversions and reshape-like moves.
fn unary(cx: &mut Cx, e: &mut E, p: &Ptrs) -> Result<usize> {
    cx.arity(1, 1)?;
    let op = cx.node.op.clone();
    let x = cx.in_ty(0)?.clone();
    let y = cx.out_ty(0)?.clone();
    let n = numel(y.shape.dims());
    if x.shape.dims().iter().product::<usize>() != n {
        return Err(cx.unsupported("operand and result sizes differ"));
    }
    match &op {
        Op::Quantize if x.is_quantized() || !y.is_quantized() => {
            return Err(cx.unsupported("quantize from float to quantized only"))
        }
        Op::Dequantize if !x.is_quantized() || y.is_quantized() => {
            return Err(cx.unsupported("dequantize from quantized to float only"))
        }
        Op::Requantize if !x.is_quantized() || !y.is_quantized() => {
            return Err(cx.unsupported("requantize between quantized types only"))
        }
        _ => {}
    }
    let per_axis = |t: &TensorType| t.quant.as_ref().is_some_and(|q| q.len() > 1);
    if matches!(op, Op::Quantize | Op::Dequantize) && (per_axis(&x) || per_axis(&y)) {
        return ops::per_axis_qdq(cx, e, p);
    }
    // Plain moves of unquantized data, whatever the dtype.
    if is_reshape_like(&op) && !x.is_quantized() && !y.is_quantized() && x.dtype == y.dtype {
        let bytes = n * x.dtype.size();
        raw_copy(e, p.outs[0], p.ins[0], bytes);
        return Ok(0);
    }
    if let Some((table, esize)) = unary_table(&op, &x, &y) {
        let xq = x.quant.as_ref().map(|q| q.storage).unwrap_or(QType::U8);
        if is_reshape_like(&op) && table_is_identity(&table, &x, &y) {
            raw_copy(e, p.outs[0], p.ins[0], n);
            return Ok(0);
        }
        let addr = cx.pool.add(&table);
        emit_table_map(e, xq, addr, esize as i64, p.ins[0], p.outs[0], n)?;
        return Ok(0);
    }
    let (rx, src) = cx.real_operand(0, p.ins[0], e)?;
    let ry = cx.real(&y)?;
    let dst = p.outs[0];
    // f32 to 8-bit quantize: 16 elements per step, the rest below.
    let mut done = 0;
    if let (Op::Quantize, Real::F32, Real::Q { q, scale, zp }, Some(f)) =
        (&op, rx, ry, crate::kernels::quantize(cx.opts.kernels))
    {
        if matches!(q, QType::U8 | QType::I8) {
            let prm = [scale.to_bits(), zp as u32, u32::from(q == QType::I8)];
            let ptab = cx.pool.add_slice(&prm);
            let args = [e.ic(ptab as i64), src, dst, e.ic(n as i64)];
            e.call_addr(f, &args);
            return Ok(0);
        }
    }
    if let (Op::Quantize, Real::F32, Real::Q { q, scale, zp }) = (&op, rx, ry) {
        if matches!(q, QType::U8 | QType::I8) {
            e.for_n(n / 16, |e, ci| {
                let s = e.muli(ci, 64);
                let s = e.add(src, s);
                let mut v = [s; 4];
                for (j, v) in v.iter_mut().enumerate() {
                    *v = e.b.ins().load(
                        cranelift_codegen::ir::types::F32X4,
                        crate::emit::mf(),
                        s,
                        (16 * j) as i32,
                    );
                }
                let b = quantize_vec16(e, v, q, scale, zp);
                let d = e.muli(ci, 16);
                let d = e.add(dst, d);
                e.b.ins().store(crate::emit::mf(), b, d, 0);
                Ok(())
            })?;
            done = (n / 16) * 16;
        }
    }
    e.for_n(n - done, |e, i| {
        let i = e.addi(i, done as i64);
        let v = e.load_real(rx, src, i);
        let v = emit_unary_f(cx, e, &op, v)?;
        e.store_real(ry, dst, i, v);
        Ok(())
    })?;
    Ok(0)
}

/// numpy broadcast strides (in elements) of `sh` read through `out` (0 on broadcast dims).
pub(crate) fn bcast_strides(sh: &[usize], out: &[usize]) -> Option<Vec<i64>> {
    if sh.len() > out.len() {
        return None;
    }
    let off = out.len() - sh.len();
    let mut st = vec![0i64; out.len()];
    let mut acc = 1i64;
    for i in (0..sh.len()).rev() {
        if sh[i] != out[off + i] && sh[i] != 1 {
            return None;
        }
        st[off + i] = if sh[i] == 1 { 0 } else { acc };
        acc *= sh[i] as i64;
    }
    Some(st)
}

/// Row-major strides of a shape.
pub(crate) fn strides(sh: &[usize]) -> Vec<i64> {
    let mut st = vec![1i64; sh.len()];
    for i in (0..sh.len().saturating_sub(1)).rev() {
        st[i] = st[i + 1] * sh[i + 1] as i64;
    }
    st
}

/// Merge adjacent dims where every operand's strides are contiguous across them.
pub(crate) fn collapse(dims: &[usize], strides: &[Vec<i64>]) -> (Vec<usize>, Vec<Vec<i64>>) {
    let mut d: Vec<usize> = Vec::new();
    let mut s: Vec<Vec<i64>> = vec![Vec::new(); strides.len()];
    for (i, &n) in dims.iter().enumerate() {
        if n == 1 {
            continue;
        }
        let merge = !d.is_empty()
            && strides.iter().enumerate().all(|(k, st)| {
                let last = *s[k].last().unwrap_or(&0);
                last == st[i] * n as i64
            });
        if merge {
            let l = d.len() - 1;
            d[l] *= n;
            for (k, st) in strides.iter().enumerate() {
                let ll = s[k].len() - 1;
                s[k][ll] = st[i];
            }
        } else {
            d.push(n);
            for (k, st) in strides.iter().enumerate() {
                s[k].push(st[i]);
            }
        }
    }
    if d.is_empty() {
        d.push(1);
        for sk in &mut s {
            sk.push(0);
        }
    }
    (d, s)
}

/// A loop nest over `dims`; `body` gets the element index of every operand.
pub(crate) fn nest(
    e: &mut E,
    dims: &[usize],
    strides: &[Vec<i64>],
    base: Vec<Value>,
    body: &mut dyn FnMut(&mut E, &[Value]) -> Result<()>,
) -> Result<()> {
    let Some((&n, rest)) = dims.split_first() else {
        return body(e, &base);
    };
    let d = dims.len();
    let stride_here: Vec<i64> = strides.iter().map(|s| s[s.len() - d]).collect();
    e.for_n(n, |e, i| {
        let idx: Vec<Value> = base
            .iter()
            .zip(&stride_here)
            .map(|(&b, &s)| {
                if s == 0 {
                    b
                } else {
                    let m = e.muli(i, s);
                    e.add(b, m)
                }
            })
            .collect();
        nest(e, rest, strides, idx, body)
    })
}

/// The `float` contract's fused add, when it defines this node (`qc_ir::fused`).
fn fused_add_of(cx: &Cx, op: &Op) -> Result<Option<qc_qmath::FusedAdd>> {
    let Op::Add { act } = op else {
        return Ok(None);
    };
    if cx.opts.contract != qc_qmath::Contract::Float || cx.node.inputs.len() != 2 {
        return Ok(None);
    }
    match qc_ir::fused::add(cx.in_ty(0)?, cx.in_ty(1)?, cx.out_ty(0)?, *act) {
        None => Ok(None),
        Some(Ok(f)) => Ok(Some(f)),
        Some(Err(err)) => Err(cx.unsupported(err.to_string())),
    }
}

/// Elementwise ops with broadcasting: add, sub, mul, div, sum, prelu.
fn nary(cx: &mut Cx, e: &mut E, p: &Ptrs) -> Result<usize> {
    let op = cx.node.op.clone();
    let k = cx.node.inputs.len();
    if let Some(f) = fused_add_of(cx, &op)? {
        return ops::fused::add(cx, e, p, &f);
    }
    match &op {
        Op::Sum => cx.arity(1, usize::MAX)?,
        _ => cx.arity(2, 2)?,
    }
    let y = cx.out_ty(0)?.clone();
    let ry = cx.real(&y)?;
    let out = y.shape.dims().to_vec();
    let mut srcs = Vec::with_capacity(k);
    let mut sts = Vec::with_capacity(k + 1);
    for i in 0..k {
        let (r, ptr) = cx.real_operand(i, p.ins[i], e)?;
        srcs.push((r, ptr));
        let st = bcast_strides(cx.in_ty(i)?.shape.dims(), &out)
            .ok_or_else(|| cx.unsupported("operand does not broadcast to the result"))?;
        sts.push(st);
    }
    // Same-shape 8-bit quantized add/sub/mul: 16 elements per step in vectors (the
    // scalar formulas lane by lane; exact as argued at `nary_q8_vec`), the rest below.
    let mut done = 0usize;
    if let (Some(n), Some(f)) = (
        nary_q8_vec_applies(cx, &op, &srcs, ry, &out)?,
        crate::kernels::qbinary(cx.opts.kernels),
    ) {
        // The native kernel, all n elements.
        let q = |r: Real| match r {
            Real::Q { q, scale, zp } => (scale, zp, q == QType::I8),
            Real::F32 => (1.0, 0, false),
        };
        let (opc, act, lo, hi) = match &op {
            Op::Sub => (1, 0, 0.0, 0.0),
            Op::Mul => (2, 0, 0.0, 0.0),
            Op::Add { act } => match *act {
                qc_ir::Activation::None => (0, 0, 0.0, 0.0),
                qc_ir::Activation::Relu => (0, 1, 0.0, 0.0),
                qc_ir::Activation::Clip { min, max } => (0, 2, min, max),
            },
            _ => (0, 0, 0.0, 0.0),
        };
        let prm =
            crate::kernels::qbinary::params(q(srcs[0].0), q(srcs[1].0), q(ry), opc, act, (lo, hi));
        let ptab = cx.pool.add_slice(&prm);
        let args = [
            e.ic(ptab as i64),
            srcs[0].1,
            srcs[1].1,
            p.outs[0],
            e.ic(n as i64),
        ];
        e.call_addr(f, &args);
        return Ok(0);
    }
    if let Some(n) = nary_q8_vec_applies(cx, &op, &srcs, ry, &out)? {
        nary_q8_vec(e, &op, &srcs, ry, p.outs[0], n / 16)?;
        done = (n / 16) * 16;
        if done == n {
            return Ok(0);
        }
    }
    sts.push(strides(&out));
    let (dims, sts) = if done > 0 {
        // Only a flat tail is left: every operand has the result's shape.
        let n = numel(&out);
        (vec![n - done], vec![vec![1]; k + 1])
    } else {
        collapse(&out, &sts)
    };
    let start = e.ic(done as i64);
    let dst = p.outs[0];
    nest(e, &dims, &sts, vec![start; k + 1], &mut |e, idx| {
        let vals: Vec<Value> = srcs
            .iter()
            .zip(idx)
            .map(|(&(r, ptr), &i)| e.load_real(r, ptr, i))
            .collect();
        let v = match &op {
            Op::Add { act } => {
                let s = e.b.ins().fadd(vals[0], vals[1]);
                e.act(*act, s)
            }
            Op::Sub => e.b.ins().fsub(vals[0], vals[1]),
            Op::Mul => e.b.ins().fmul(vals[0], vals[1]),
            Op::Div => e.b.ins().fdiv(vals[0], vals[1]),
            Op::PRelu => {
                let m = e.b.ins().fmul(vals[0], vals[1]);
                let z = e.f32c(0.0);
                e.sel_lt(vals[0], z, m, vals[0])
            }
            _ => {
                let mut acc = vals[0];
                for &v in &vals[1..] {
                    acc = e.b.ins().fadd(acc, v);
                }
                acc
            }
        };
        e.store_real(ry, dst, idx[k], v);
        Ok(())
    })?;
    Ok(0)
}

/// The element count when `nary_q8_vec` applies: add/sub/mul of two 8-bit quantized
/// operands of the result's shape, with an 8-bit quantized result.
fn nary_q8_vec_applies(
    cx: &Cx,
    op: &Op,
    srcs: &[(Real, Value)],
    ry: Real,
    out: &[usize],
) -> Result<Option<usize>> {
    let q8 = |r: Real| {
        matches!(
            r,
            Real::Q {
                q: QType::U8 | QType::I8,
                ..
            }
        )
    };
    if !matches!(op, Op::Add { .. } | Op::Sub | Op::Mul) || srcs.len() != 2 || !q8(ry) {
        return Ok(None);
    }
    for (i, &(r, _)) in srcs.iter().enumerate() {
        if !q8(r) || cx.in_ty(i)?.shape.dims() != out {
            return Ok(None);
        }
    }
    Ok(Some(numel(out)))
}

/// `steps` vector steps of 16 elements of a same-shape quantized add/sub/mul.
///
/// **Exactness:** lane by lane this is the scalar path's arithmetic: `(q - zp)` exact in
/// i32, converted exactly to f32, times the scale (one rounding, as the scalar `fmul`);
/// the f32 op; the activation as max/min — the operands are finite (dequantized 8-bit
/// values and their sum, difference or product), where `max`/`min` differ from the
/// scalar select only in the sign of a zero, which quantizes alike; then division by
/// the result scale, round half to even, and `sat(r + zp)`: the rounded value is first
/// clamped to ±2^24, which changes no 8-bit result (any |r| ≥ 2^24 saturates either way)
/// and keeps the i32 lanes from overflowing.
fn nary_q8_vec(
    e: &mut E,
    op: &Op,
    srcs: &[(Real, Value)],
    ry: Real,
    dst: Value,
    steps: usize,
) -> Result<()> {
    use cranelift_codegen::ir::types::{F32X4, I32X4, I8X16};
    let Real::Q {
        q: qy,
        scale: sy,
        zp: zy,
    } = ry
    else {
        return Ok(());
    };
    e.for_n(steps, |e, ci| {
        let off = e.muli(ci, 16);
        let mut vals: Vec<[Value; 4]> = Vec::with_capacity(2);
        for &(r, ptr) in srcs {
            let Real::Q { q, scale, zp } = r else {
                return Ok(());
            };
            let a = e.add(ptr, off);
            let v = e.b.ins().load(I8X16, crate::emit::mf(), a, 0);
            let (lo, hi) = if q == QType::U8 {
                (e.b.ins().uwiden_low(v), e.b.ins().uwiden_high(v))
            } else {
                (e.b.ins().swiden_low(v), e.b.ins().swiden_high(v))
            };
            let z = e.i32c(zp);
            let zv = e.b.ins().splat(I32X4, z);
            let sc = e.f32c(scale);
            let sv = e.b.ins().splat(F32X4, sc);
            let mut lanes = [v; 4];
            for (j, h) in [lo, hi].into_iter().enumerate() {
                for (t, w) in [e.b.ins().swiden_low(h), e.b.ins().swiden_high(h)]
                    .into_iter()
                    .enumerate()
                {
                    let d = e.b.ins().isub(w, zv);
                    let f = e.b.ins().fcvt_from_sint(F32X4, d);
                    lanes[2 * j + t] = e.b.ins().fmul(f, sv);
                }
            }
            vals.push(lanes);
        }
        let zf = e.f32c(0.0);
        let zero = e.b.ins().splat(F32X4, zf);
        let mut res = [zero; 4];
        for (j, r) in res.iter_mut().enumerate() {
            let (a, b) = (vals[0][j], vals[1][j]);
            let mut v = match op {
                Op::Sub => e.b.ins().fsub(a, b),
                Op::Mul => e.b.ins().fmul(a, b),
                _ => e.b.ins().fadd(a, b),
            };
            if let Op::Add { act } = op {
                v = match *act {
                    qc_ir::Activation::None => v,
                    qc_ir::Activation::Relu => e.b.ins().fmax(v, zero),
                    qc_ir::Activation::Clip { min, max } => {
                        let l = e.f32c(min);
                        let lv = e.b.ins().splat(F32X4, l);
                        let h = e.f32c(max);
                        let hv = e.b.ins().splat(F32X4, h);
                        let t = e.b.ins().fmax(v, lv);
                        e.b.ins().fmin(t, hv)
                    }
                };
            }
            *r = v;
        }
        let b = quantize_vec16(e, res, qy, sy, zy);
        let a = e.add(dst, off);
        e.b.ins().store(crate::emit::mf(), b, a, 0);
        Ok(())
    })
}

/// Quantize 16 f32 lanes (four f32x4) to 8-bit storage `q`: the scalar
/// `E::quantize` lane by lane — division by the scale, round half to even, `sat(r +
/// zp)` — with the rounded value clamped to ±2^24 first (no 8-bit result changes: a
/// value beyond saturates either way; NaN stays NaN through the clamp and converts to
/// 0, as the scalar saturating conversion does), which keeps the i32 lanes from
/// overflowing.
fn quantize_vec16(e: &mut E, v: [Value; 4], q: QType, scale: f32, zp: i32) -> Value {
    use cranelift_codegen::ir::types::{F32X4, I32X4};
    let sc = e.f32c(scale);
    let sv = e.b.ins().splat(F32X4, sc);
    let big = e.f32c(16_777_216.0);
    let bigv = e.b.ins().splat(F32X4, big);
    let nbig = e.f32c(-16_777_216.0);
    let nbigv = e.b.ins().splat(F32X4, nbig);
    let z = e.i32c(zp);
    let zv = e.b.ins().splat(I32X4, z);
    let mut r = [zv; 4];
    for (o, x) in r.iter_mut().zip(v) {
        let d = e.b.ins().fdiv(x, sv);
        let rn = e.b.ins().nearest(d);
        let rn = e.b.ins().fmax(rn, nbigv);
        let rn = e.b.ins().fmin(rn, bigv);
        let iv = e.b.ins().fcvt_to_sint_sat(I32X4, rn);
        *o = e.b.ins().iadd(iv, zv);
    }
    let h0 = e.b.ins().snarrow(r[0], r[1]);
    let h1 = e.b.ins().snarrow(r[2], r[3]);
    if q == QType::U8 {
        e.b.ins().unarrow(h0, h1)
    } else {
        e.b.ins().snarrow(h0, h1)
    }
}

/// How a moved element goes from operand to result: raw bytes, or through a table
/// (8-bit quantized with different params), or dequantize + quantize.
enum Move {
    Raw(i64),
    Table { xq: QType, table: usize, esize: i64 },
    Real { rx: Real, ry: Real },
}

fn move_kind(cx: &mut Cx, x: &TensorType, y: &TensorType) -> Result<Move> {
    if !x.is_quantized() && !y.is_quantized() {
        if x.dtype != y.dtype {
            return Err(cx.unsupported("operand and result dtypes differ"));
        }
        return Ok(Move::Raw(x.dtype.size() as i64));
    }
    if let Some((t, esize)) = unary_table(&Op::Identity, x, y) {
        if table_is_identity(&t, x, y) {
            return Ok(Move::Raw(1));
        }
        let xq = x.quant.as_ref().map(|q| q.storage).unwrap_or(QType::U8);
        let table = cx.pool.add(&t);
        return Ok(Move::Table {
            xq,
            table,
            esize: esize as i64,
        });
    }
    Ok(Move::Real {
        rx: cx.real(x)?,
        ry: cx.real(y)?,
    })
}

fn emit_move(e: &mut E, m: &Move, src: Value, si: Value, dst: Value, di: Value) {
    match *m {
        Move::Raw(sz) => {
            let a = e.addr(src, si, sz, 0);
            let b = e.addr(dst, di, sz, 0);
            let ty = match sz {
                1 => cranelift_codegen::ir::types::I8,
                2 => cranelift_codegen::ir::types::I16,
                4 => I32,
                _ => I64,
            };
            let v = e.b.ins().load(ty, crate::emit::mf(), a, 0);
            e.b.ins().store(crate::emit::mf(), v, b, 0);
        }
        Move::Table { xq, table, esize } => {
            let a = e.add(src, si);
            let v = e.load_q(xq, a, 0);
            let v = e.b.ins().iadd_imm_s(v, -xq.min());
            let v = e.b.ins().uextend(I64, v);
            let t = e.ic(table as i64);
            let ta = e.addr(t, v, esize, 0);
            let da = e.addr(dst, di, esize, 0);
            let ty = match esize {
                1 => cranelift_codegen::ir::types::I8,
                2 => cranelift_codegen::ir::types::I16,
                _ => I32,
            };
            let x = e.b.ins().load(ty, crate::emit::mf(), ta, 0);
            e.b.ins().store(crate::emit::mf(), x, da, 0);
        }
        Move::Real { rx, ry } => {
            let v = e.load_real(rx, src, si);
            e.store_real(ry, dst, di, v);
        }
    }
}

fn transpose(cx: &mut Cx, e: &mut E, p: &Ptrs, perm: &[usize]) -> Result<usize> {
    cx.arity(1, 1)?;
    let x = cx.in_ty(0)?.clone();
    let y = cx.out_ty(0)?.clone();
    let r = x.rank();
    let perm: Vec<usize> = if perm.is_empty() {
        (0..r).rev().collect()
    } else {
        perm.to_vec()
    };
    if perm.len() != r || perm.iter().any(|&a| a >= r) {
        return Err(cx.unsupported("bad permutation"));
    }
    let m = move_kind(cx, &x, &y)?;
    let ist = strides(x.shape.dims());
    let src_st: Vec<i64> = perm.iter().map(|&a| ist[a]).collect();
    let out = y.shape.dims().to_vec();
    let (dims, sts) = collapse(&out, &[src_st, strides(&out)]);
    let zero = e.ic(0);
    let (src, dst) = (p.ins[0], p.outs[0]);
    nest(e, &dims, &sts, vec![zero, zero], &mut |e, idx| {
        emit_move(e, &m, src, idx[0], dst, idx[1]);
        Ok(())
    })?;
    Ok(0)
}

fn concat(cx: &mut Cx, e: &mut E, p: &Ptrs, axis: usize) -> Result<usize> {
    cx.arity(1, usize::MAX)?;
    let y = cx.out_ty(0)?.clone();
    let out = y.shape.dims().to_vec();
    if axis >= out.len() {
        return Err(cx.unsupported("axis out of range"));
    }
    let outer = numel(&out[..axis]);
    let total = numel(&out[axis..]);
    let mut at = 0usize;
    for i in 0..cx.node.inputs.len() {
        let x = cx.in_ty(i)?.clone();
        let chunk = numel(&x.shape.dims()[axis..]);
        let m = move_kind(cx, &x, &y)?;
        let (src, dst) = (p.ins[i], p.outs[0]);
        let dims = [outer, chunk];
        let sts = vec![vec![chunk as i64, 1], vec![total as i64, 1]];
        let base = e.ic(at as i64);
        let zero = e.ic(0);
        nest(e, &dims, &sts, vec![zero, base], &mut |e, idx| {
            emit_move(e, &m, src, idx[0], dst, idx[1]);
            Ok(())
        })?;
        at += chunk;
    }
    Ok(0)
}

fn pad(cx: &mut Cx, e: &mut E, p: &Ptrs, pads: &[i64], value: f64) -> Result<usize> {
    cx.arity(1, 1)?;
    let x = cx.in_ty(0)?.clone();
    let y = cx.out_ty(0)?.clone();
    let (xs, ys) = (x.shape.dims().to_vec(), y.shape.dims().to_vec());
    let r = xs.len();
    if pads.len() != 2 * r || ys.len() != r {
        return Err(cx.unsupported("pads do not fit the rank"));
    }
    let m = move_kind(cx, &x, &y)?;
    // The fill element, as the interpreter makes it.
    let fill: Vec<u8> = match &y.quant {
        Some(py) if py.len() == 1 => {
            let q = qc_qmath::quantize(value as f32, py.scales[0], py.zero_points[0], py.storage);
            match py.storage {
                QType::U8 | QType::I8 => vec![q as u8],
                QType::U16 | QType::I16 => (q as u16).to_le_bytes().to_vec(),
                QType::I32 => (q as i32).to_le_bytes().to_vec(),
            }
        }
        Some(_) => return Err(cx.unsupported("per-axis quantized pad")),
        None => {
            let t = Tensor::new(vec![1], qc_ir::TensorData::F64(vec![value]))
                .map_err(|e| cx.unsupported(e.to_string()))?;
            scalar_bytes(&t, y.dtype).ok_or_else(|| cx.unsupported("pad of this dtype"))?
        }
    };
    let esize = fill.len();
    let n_out = numel(&ys);
    let dst = p.outs[0];
    // Fill everything, then copy the kept region of the operand.
    if n_out > 0 {
        let mut word = 0u64;
        for (i, b) in fill.iter().enumerate() {
            word |= u64::from(*b) << (8 * i);
        }
        let ty = match esize {
            1 => cranelift_codegen::ir::types::I8,
            2 => cranelift_codegen::ir::types::I16,
            4 => I32,
            _ => I64,
        };
        let v =
            e.b.ins()
                .iconst(if esize == 8 { I64 } else { ty }, word as i64);
        e.for_n(n_out, |e, i| {
            let a = e.addr(dst, i, esize as i64, 0);
            e.b.ins().store(crate::emit::mf(), v, a, 0);
            Ok(())
        })?;
    }
    let mut count = Vec::with_capacity(r);
    let (mut s0, mut d0) = (0i64, 0i64);
    let (ist, ost) = (strides(&xs), strides(&ys));
    for d in 0..r {
        let (b, en) = (pads[d], pads[r + d]);
        let src_start = (-b).max(0);
        let dst_start = b.max(0);
        let c = (xs[d] as i64 - src_start - (-en).max(0)).min(ys[d] as i64 - dst_start);
        if c <= 0 {
            return Ok(0);
        }
        count.push(c as usize);
        s0 += src_start * ist[d];
        d0 += dst_start * ost[d];
    }
    let (dims, sts) = collapse(&count, &[ist, ost]);
    let (a, b) = (e.ic(s0), e.ic(d0));
    let src = p.ins[0];
    nest(e, &dims, &sts, vec![a, b], &mut |e, idx| {
        emit_move(e, &m, src, idx[0], dst, idx[1]);
        Ok(())
    })?;
    Ok(0)
}

/// The little-endian bytes of element 0 of `t` cast to `to` like the interpreter's
/// `cast::scalar` (floats round, integers truncate toward zero and saturate).
fn scalar_bytes(t: &Tensor, to: DType) -> Option<Vec<u8>> {
    let v = t.data().get_f64(0);
    Some(match to {
        DType::F32 => (v as f32).to_le_bytes().to_vec(),
        DType::F64 => v.to_le_bytes().to_vec(),
        DType::I8 => vec![(v as i8) as u8],
        DType::U8 => vec![v as u8],
        DType::I16 => (v as i16).to_le_bytes().to_vec(),
        DType::U16 => (v as u16).to_le_bytes().to_vec(),
        DType::I32 => (v as i32).to_le_bytes().to_vec(),
        DType::U32 => (v as u32).to_le_bytes().to_vec(),
        DType::I64 => (v as i64).to_le_bytes().to_vec(),
        DType::U64 => (v as u64).to_le_bytes().to_vec(),
        DType::Bool => vec![u8::from(v != 0.0)],
        DType::F16 => half_bits(v, false)?.to_le_bytes().to_vec(),
        DType::BF16 => half_bits(v, true)?.to_le_bytes().to_vec(),
    })
}

fn half_bits(_v: f64, _bf: bool) -> Option<u16> {
    None
}

/// Pool geometry right-aligned into 3 dims (as the interpreter's `pool::Geom`).
struct PoolGeom {
    nc: usize,
    in_sp: [usize; 3],
    out_sp: [usize; 3],
    k: [usize; 3],
    stride: [usize; 3],
    dil: [usize; 3],
    pad_b: [usize; 3],
    pad_e: [usize; 3],
}

fn spatial3(v: &[usize], rank: usize, default: usize) -> Option<[usize; 3]> {
    let mut out = [1; 3];
    if v.is_empty() {
        for o in out.iter_mut().skip(3 - rank) {
            *o = default;
        }
    } else if v.len() == rank {
        out[3 - rank..].copy_from_slice(v);
    } else {
        return None;
    }
    Some(out)
}

fn pool_geom(a: &PoolAttrs, x: &[usize], y: &[usize]) -> Option<PoolGeom> {
    if x.len() < 3 || x.len() > 5 || y.len() != x.len() {
        return None;
    }
    let rank = x.len() - 2;
    let k = spatial3(&a.kernel, rank, 0)?;
    let stride = spatial3(&a.strides, rank, 1)?;
    let dil = spatial3(&a.dilations, rank, 1)?;
    if k.contains(&0) || stride.contains(&0) || dil.contains(&0) {
        return None;
    }
    let (mut pad_b, mut pad_e) = ([0; 3], [0; 3]);
    if a.pads.len() == 2 * rank {
        pad_b[3 - rank..].copy_from_slice(&a.pads[..rank]);
        pad_e[3 - rank..].copy_from_slice(&a.pads[rank..]);
    } else if !a.pads.is_empty() {
        return None;
    }
    Some(PoolGeom {
        nc: x[0] * x[1],
        in_sp: spatial3(&x[2..], rank, 1)?,
        out_sp: spatial3(&y[2..], rank, 1)?,
        k,
        stride,
        dil,
        pad_b,
        pad_e,
    })
}

/// Max pool (`avg = None`) or average pool (`avg = Some(count_include_pad)`), in
/// reals: taps in the padding are skipped, the first maximum wins, an empty window
/// gives 0.
///
/// `indices = Some(storage_order)`: max pool also writes the i64 flat index of each
/// maximum (`-1` for an empty window) to result 1, as the interpreter. Raw integer
/// operands (max pool only) compare as integers.
fn pool_op(
    cx: &mut Cx,
    e: &mut E,
    p: &Ptrs,
    a: &PoolAttrs,
    avg: Option<bool>,
    indices: Option<u8>,
) -> Result<usize> {
    if let Some(f) = fused_mean_of(cx)? {
        return ops::fused::mean(cx, e, p, &f);
    }
    if indices.is_some() {
        if cx.node.outputs.len() != 2 || p.outs.len() != 2 || cx.out_ty(1)?.dtype != DType::I64 {
            return Err(cx.unsupported("max_pool indices must be one i64 result"));
        }
    } else {
        cx.arity(1, 1)?;
    }
    let x = cx.in_ty(0)?.clone();
    let y = cx.out_ty(0)?.clone();
    let int_dt = (!x.is_quantized() && ops::is_int(x.dtype) && avg.is_none()).then_some(x.dtype);
    if int_dt == Some(DType::U64) {
        return Err(cx.unsupported("max_pool on u64"));
    }
    let (rx, ry) = if int_dt.is_some() {
        (Real::F32, Real::F32)
    } else {
        (cx.real(&x)?, cx.real(&y)?)
    };
    let idx_dst = p.outs.get(1).copied();
    let g = pool_geom(a, x.shape.dims(), y.shape.dims())
        .ok_or_else(|| cx.unsupported("pool geometry"))?;
    if let (None, None, Some(qx), Some(qy), crate::KernelSet::Auto) =
        (avg, indices, &x.quant, &y.quant, cx.opts.kernels)
    {
        let flat = g.in_sp[0] == 1 && g.out_sp[0] == 1 && g.k[0] == 1 && g.pad_b[0] == 0;
        let same = qx == qy
            && qx.len() == 1
            && qx.scales.first().is_some_and(|&s| s > 0.0)
            && matches!(qx.storage, qc_ir::QType::U8 | qc_ir::QType::I8);
        if flat && same {
            let zp = qx.zero_points.first().copied().unwrap_or(0);
            let v: [usize; 13] = [
                g.nc,
                g.in_sp[1],
                g.in_sp[2],
                g.k[1],
                g.k[2],
                g.stride[1],
                g.stride[2],
                g.dil[1],
                g.dil[2],
                g.pad_b[1],
                g.pad_b[2],
                g.out_sp[1],
                g.out_sp[2],
            ];
            let mut prm: Vec<i64> = v.iter().map(|&d| d as i64).collect();
            prm.push(i64::from(qx.storage == qc_ir::QType::I8));
            prm.push(i64::from(zp as u8));
            let ptab = cx.pool.add_slice(&prm);
            let pt = e.ic(ptab as i64);
            e.call_addr(
                crate::kernels::max_pool::entry as *const () as usize,
                &[pt, p.ins[0], p.outs[0]],
            );
            return Ok(0);
        }
    }
    let [id_, ih_, iw_] = g.in_sp;
    let [od_, oh_, ow_] = g.out_sp;
    let isz = id_ * ih_ * iw_;
    let osz = od_ * oh_ * ow_;
    let (src, dst) = (p.ins[0], p.outs[0]);
    e.for_n(g.nc, |e, nc| {
        let xb = e.muli(nc, isz as i64);
        let yb = e.muli(nc, osz as i64);
        e.for_n(od_, |e, od| {
            e.for_n(oh_, |e, oh| {
                e.for_n(ow_, |e, ow| {
                    let o = [od, oh, ow];
                    // Per dim and tap: (in-bounds flag, coordinate).
                    let mut taps: [Vec<(Value, Value)>; 3] = [Vec::new(), Vec::new(), Vec::new()];
                    let mut padded_counts: [Value; 3] = [o[0]; 3];
                    for dim in 0..3 {
                        let lim = g.in_sp[dim] as i64;
                        let end = (g.in_sp[dim] + g.pad_b[dim] + g.pad_e[dim]) as i64;
                        let mut cnt = e.ic(0);
                        for k in 0..g.k[dim] {
                            let base = e.muli(o[dim], g.stride[dim] as i64);
                            let pos = e.addi(base, (k * g.dil[dim]) as i64);
                            let c = e.addi(pos, -(g.pad_b[dim] as i64));
                            let ok = e.b.ins().icmp_imm_s(IntCC::UnsignedLessThan, c, lim);
                            taps[dim].push((ok, c));
                            let inp = e.b.ins().icmp_imm_s(IntCC::SignedLessThan, pos, end);
                            let inc = e.b.ins().uextend(I64, inp);
                            cnt = e.add(cnt, inc);
                        }
                        padded_counts[dim] = cnt;
                    }
                    let zero_f = e.f32c(0.0);
                    let mut best = match int_dt {
                        Some(_) => e.ic(0),
                        None => zero_f,
                    };
                    let mut best_idx = e.ic(-1);
                    let mut any = e.b.ins().iconst(cranelift_codegen::ir::types::I8, 0);
                    let mut sum = zero_f;
                    let mut inside = e.ic(0);
                    for &(okd, cd) in &taps[0] {
                        for &(okh, ch) in &taps[1] {
                            for &(okw, cw) in &taps[2] {
                                let ok = e.b.ins().band(okd, okh);
                                let ok = e.b.ins().band(ok, okw);
                                let r = e.muli(cd, ih_ as i64);
                                let r = e.add(r, ch);
                                let r = e.muli(r, iw_ as i64);
                                let r = e.add(r, cw);
                                let r = e.add(r, xb);
                                let z = e.ic(0);
                                let idx = e.b.ins().select(ok, r, z);
                                let v = match int_dt {
                                    Some(d) => ops::load_int(e, d, src, idx),
                                    None => e.load_real(rx, src, idx),
                                };
                                if avg.is_some() {
                                    let vv = e.b.ins().select(ok, v, zero_f);
                                    sum = e.b.ins().fadd(sum, vv);
                                    let inc = e.b.ins().uextend(I64, ok);
                                    inside = e.add(inside, inc);
                                } else {
                                    let gt = match int_dt {
                                        Some(_) => {
                                            e.b.ins().icmp(IntCC::SignedGreaterThan, v, best)
                                        }
                                        None => e.b.ins().fcmp(FloatCC::GreaterThan, v, best),
                                    };
                                    let none = e.b.ins().icmp_imm_s(IntCC::Equal, any, 0);
                                    let take = e.b.ins().bor(none, gt);
                                    let take = e.b.ins().band(take, ok);
                                    best = e.b.ins().select(take, v, best);
                                    any = e.b.ins().bor(any, ok);
                                    if let Some(order) = indices {
                                        // The tap's flat index (row-major, or with
                                        // storage_order 1 column-major within the plane).
                                        let sp = if order == 1 {
                                            let t = e.muli(ch, id_ as i64);
                                            let u = e.muli(cw, (id_ * ih_) as i64);
                                            let t = e.add(t, u);
                                            let t = e.add(t, cd);
                                            e.add(t, xb)
                                        } else {
                                            r
                                        };
                                        best_idx = e.b.ins().select(take, sp, best_idx);
                                    }
                                }
                            }
                        }
                    }
                    let v = match avg {
                        None => best,
                        Some(include_pad) => {
                            let count = if include_pad {
                                let c = e.b.ins().imul(padded_counts[0], padded_counts[1]);
                                e.b.ins().imul(c, padded_counts[2])
                            } else {
                                inside
                            };
                            let cf = e.b.ins().fcvt_from_sint(F32, count);
                            e.b.ins().fdiv(sum, cf)
                        }
                    };
                    let oi = e.muli(od, (oh_ * ow_) as i64);
                    let t = e.muli(oh, ow_ as i64);
                    let oi = e.add(oi, t);
                    let oi = e.add(oi, ow);
                    let oi = e.add(oi, yb);
                    match int_dt {
                        Some(d) => ops::store_int(e, d, v, dst, oi),
                        None => e.store_real(ry, dst, oi, v),
                    }
                    if let Some(ip) = idx_dst {
                        let a = e.addr(ip, oi, 8, 0);
                        e.store(best_idx, a, 0);
                    }
                    Ok(())
                })
            })
        })
    })?;
    Ok(0)
}

/// The `float` contract's fused global average, when it defines this node.
fn fused_mean_of(cx: &Cx) -> Result<Option<qc_qmath::FusedMean>> {
    if cx.opts.contract != qc_qmath::Contract::Float || cx.node.inputs.len() != 1 {
        return Ok(None);
    }
    Ok(qc_ir::fused::mean(&cx.node.op, cx.in_ty(0)?, cx.out_ty(0)?))
}

fn global_pool(cx: &mut Cx, e: &mut E, p: &Ptrs) -> Result<usize> {
    cx.arity(1, 1)?;
    if let Some(f) = fused_mean_of(cx)? {
        return ops::fused::mean(cx, e, p, &f);
    }
    let is_max = matches!(cx.node.op, Op::GlobalMaxPool);
    let x = cx.in_ty(0)?.clone();
    let y = cx.out_ty(0)?.clone();
    let (rx, ry) = (cx.real(&x)?, cx.real(&y)?);
    let d = x.shape.dims();
    if d.len() < 2 {
        return Err(cx.unsupported("rank < 2"));
    }
    let nc = d[0] * d[1];
    let inner = numel(&d[2..]);
    let (src, dst) = (p.ins[0], p.outs[0]);
    e.for_n(nc, |e, c| {
        let base = e.muli(c, inner as i64);
        let v = if is_max {
            if inner == 0 {
                e.f32c(0.0)
            } else {
                let first = e.load_real(rx, src, base);
                let acc = e.var(F32, first);
                e.for_n(inner - 1, |e, i| {
                    let j = e.add(base, i);
                    let j = e.addi(j, 1);
                    let v = e.load_real(rx, src, j);
                    let b = e.b.use_var(acc);
                    let n = e.sel_gt(v, b, v, b);
                    e.b.def_var(acc, n);
                    Ok(())
                })?;
                e.b.use_var(acc)
            }
        } else {
            let z = e.b.ins().f64const(0.0);
            let acc = e.var(F64, z);
            e.for_n(inner, |e, i| {
                let j = e.add(base, i);
                let v = e.load_real(rx, src, j);
                let w = e.b.ins().fpromote(F64, v);
                let s = e.b.use_var(acc);
                let s = e.b.ins().fadd(s, w);
                e.b.def_var(acc, s);
                Ok(())
            })?;
            let s = e.b.use_var(acc);
            let n = e.b.ins().f64const(inner as f64);
            let m = e.b.ins().fdiv(s, n);
            e.b.ins().fdemote(F32, m)
        };
        e.store_real(ry, dst, c, v);
        Ok(())
    })?;
    Ok(0)
}

fn softmax(cx: &mut Cx, e: &mut E, p: &Ptrs, axis: usize) -> Result<usize> {
    cx.arity(1, 1)?;
    let x = cx.in_ty(0)?.clone();
    let y = cx.out_ty(0)?.clone();
    if cx.opts.contract == qc_qmath::Contract::Float {
        if let Some(&d) = x.shape.dims().get(axis) {
            match qc_ir::fused::softmax(&x, &y, d) {
                None => {}
                Some(Ok(s)) => return ops::fused::softmax(cx, e, p, axis, &s),
                Some(Err(err)) => return Err(cx.unsupported(err.to_string())),
            }
        }
    }
    let (rx, ry) = (cx.real(&x)?, cx.real(&y)?);
    let d = x.shape.dims();
    if axis >= d.len() {
        return Err(cx.unsupported("axis out of range"));
    }
    let (outer, dim, inner) = (numel(&d[..axis]), d[axis], numel(&d[axis + 1..]));
    let (src, dst, tmp) = (p.ins[0], p.outs[0], p.scratch);
    e.for_n(outer, |e, o| {
        e.for_n(inner, |e, i| {
            // Index of element d: (o * dim + d) * inner + i.
            let b = e.muli(o, (dim * inner) as i64);
            let b = e.add(b, i);
            let ninf = e.f32c(f32::NEG_INFINITY);
            let mx = e.var(F32, ninf);
            e.for_n(dim, |e, k| {
                let j = e.muli(k, inner as i64);
                let j = e.add(j, b);
                let v = e.load_real(rx, src, j);
                let m = e.b.use_var(mx);
                let gt = e.b.ins().fcmp(FloatCC::GreaterThan, v, m);
                let nan = e.b.ins().fcmp(FloatCC::Unordered, v, v);
                let c = e.b.ins().bor(gt, nan);
                let n = e.b.ins().select(c, v, m);
                e.b.def_var(mx, n);
                Ok(())
            })?;
            let m = e.b.use_var(mx);
            let z = e.f32c(0.0);
            let sum = e.var(F32, z);
            e.for_n(dim, |e, k| {
                let j = e.muli(k, inner as i64);
                let j = e.add(j, b);
                let v = e.load_real(rx, src, j);
                let dlt = e.b.ins().fsub(v, m);
                let ex = e.call(Callback::Exp, dlt);
                let a = e.addr(tmp, k, 4, 0);
                e.store(ex, a, 0);
                let s = e.b.use_var(sum);
                let s = e.b.ins().fadd(s, ex);
                e.b.def_var(sum, s);
                Ok(())
            })?;
            let s = e.b.use_var(sum);
            e.for_n(dim, |e, k| {
                let a = e.addr(tmp, k, 4, 0);
                let ex = e.load_f32(a, 0);
                let q = e.b.ins().fdiv(ex, s);
                let j = e.muli(k, inner as i64);
                let j = e.add(j, b);
                e.store_real(ry, dst, j, q);
                Ok(())
            })
        })
    })?;
    Ok(dim * 4)
}

fn batch_norm(cx: &mut Cx, e: &mut E, p: &Ptrs, eps: f32) -> Result<usize> {
    cx.arity(5, 5)?;
    let x = cx.in_ty(0)?.clone();
    let y = cx.out_ty(0)?.clone();
    let (rx, ry) = (cx.real(&x)?, cx.real(&y)?);
    let d = x.shape.dims();
    if d.len() < 2 {
        return Err(cx.unsupported("rank < 2"));
    }
    let (outer, c, inner) = (d[0], d[1], numel(&d[2..]));
    if (1..5).any(|i| cx.const_in(i).is_none()) {
        return batch_norm_rt(cx, e, p, eps, rx, ry, (outer, c, inner));
    }
    let mut params: Vec<Vec<f32>> = Vec::new();
    for i in 1..5 {
        let t = cx
            .const_in(i)
            .cloned()
            .ok_or_else(|| cx.unsupported("batch_norm parameters must be constants"))?;
        let ty = cx.in_ty(i)?.clone();
        let v = dequant_const(&t, &ty).map_err(|m| cx.unsupported(m))?;
        if v.len() != c {
            return Err(cx.unsupported("parameter length"));
        }
        params.push(v);
    }
    // Record per channel: scale, bias, mean, den = sqrt(var + eps) (f32, as the interpreter).
    let mut rec = Vec::with_capacity(4 * c);
    let [s, b, mean, var] = [&params[0], &params[1], &params[2], &params[3]];
    for (((s, b), m), v) in s.iter().zip(b).zip(mean).zip(var) {
        rec.extend([*s, *b, *m, (*v + eps).sqrt()]);
    }
    let tab = cx.pool.add_f32(&rec);
    let (src, dst) = (p.ins[0], p.outs[0]);
    e.for_n(outer, |e, o| {
        e.for_n(c, |e, ch| {
            let t = e.ic(tab as i64);
            let ra = e.addr(t, ch, 16, 0);
            let s = e.load_f32(ra, 0);
            let bb = e.load_f32(ra, 4);
            let mean = e.load_f32(ra, 8);
            let den = e.load_f32(ra, 12);
            let base = e.muli(o, c as i64);
            let base = e.add(base, ch);
            let base = e.muli(base, inner as i64);
            e.for_n(inner, |e, i| {
                let j = e.add(base, i);
                let v = e.load_real(rx, src, j);
                let v = e.b.ins().fsub(v, mean);
                let v = e.b.ins().fmul(s, v);
                let v = e.b.ins().fdiv(v, den);
                let v = e.b.ins().fadd(v, bb);
                e.store_real(ry, dst, j, v);
                Ok(())
            })
        })
    })?;
    Ok(0)
}

/// Batch norm whose parameters are run-time f32 values: the per-channel record
/// (scale, bias, mean, sqrt(var + eps)) is computed into scratch first, with the same
/// f32 operations as the constant path (and the interpreter).
#[allow(clippy::too_many_arguments)]
fn batch_norm_rt(
    cx: &mut Cx,
    e: &mut E,
    p: &Ptrs,
    eps: f32,
    rx: Real,
    ry: Real,
    (outer, c, inner): (usize, usize, usize),
) -> Result<usize> {
    for i in 1..5 {
        let t = cx.in_ty(i)?;
        if t.is_quantized() || t.dtype != DType::F32 || numel(t.shape.dims()) != c {
            return Err(cx.unsupported("run-time batch_norm parameters must be f32[C]"));
        }
    }
    let tab = p.scratch;
    let ptrs = [p.ins[1], p.ins[2], p.ins[3], p.ins[4]];
    e.for_n(c, |e, ch| {
        let ra = e.addr(tab, ch, 16, 0);
        for (k, &ptr) in ptrs.iter().enumerate() {
            let a = e.addr(ptr, ch, 4, 0);
            let v = e.load_f32(a, 0);
            let v = if k == 3 {
                let ep = e.f32c(eps);
                let v = e.b.ins().fadd(v, ep);
                e.b.ins().sqrt(v)
            } else {
                v
            };
            e.store(v, ra, (4 * k) as i32);
        }
        Ok(())
    })?;
    let (src, dst) = (p.ins[0], p.outs[0]);
    e.for_n(outer, |e, o| {
        e.for_n(c, |e, ch| {
            let ra = e.addr(tab, ch, 16, 0);
            let s = e.load_f32(ra, 0);
            let bb = e.load_f32(ra, 4);
            let mean = e.load_f32(ra, 8);
            let den = e.load_f32(ra, 12);
            let base = e.muli(o, c as i64);
            let base = e.add(base, ch);
            let base = e.muli(base, inner as i64);
            e.for_n(inner, |e, i| {
                let j = e.add(base, i);
                let v = e.load_real(rx, src, j);
                let v = e.b.ins().fsub(v, mean);
                let v = e.b.ins().fmul(s, v);
                let v = e.b.ins().fdiv(v, den);
                let v = e.b.ins().fadd(v, bb);
                e.store_real(ry, dst, j, v);
                Ok(())
            })
        })
    })?;
    Ok(16 * c)
}
