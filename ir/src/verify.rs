//! The verifier. An error always means a bug in whoever built the graph.
//!
//! [`verify`] checks every invariant of [`crate::graph`]; [`verify_node`] the ones
//! local to one node. Errors name the node (`Error::Node`, with id, op and source
//! name) or the value (`Error::Verify("value %N: ..")`).
//!
//! What is checked:
//! - **Definitions.** Every value's `def` points at where it is defined: `Input(i)` is
//!   the value of input port `i`, `Node { node, slot }` is `node.outputs[slot]`,
//!   `Const(c)` is an existing constant whose dtype and shape are the value's. As a
//!   value has one `def`, this also rules out a value defined twice (two ports, two
//!   result slots, or a port and a result). Graph outputs refer to existing values.
//! - **Order.** Every operand of node `n` is an input, a constant or a result of a node
//!   before `n` (topological order).
//! - **Types.** Every element count is within [`crate::MAX_NUMEL`]; quantization params
//!   are valid ([`QuantParams::validate`]), their storage is the dtype, and per-axis
//!   params name an axis `< rank` whose size is the number of scales.
//! - **Results.** The result count fits the op (`max_pool` 1 or 2, `dynamic_quantize`
//!   3, all others 1); [`crate::infer::infer`] re-run on the operand types agrees with
//!   every stored result in shape and dtype, and where it infers (implied) quantization
//!   params they are the stored ones. Where params are the builder's choice (inference
//!   returns `None` for them) a quantized result may use any quantized storage type.
//! - **Quantized-op consistency.** `quantize`: raw float → quantized; `dequantize`:
//!   quantized → raw float; `requantize`: quantized → quantized; `cast`,
//!   `dynamic_quantize`, `conv_integer`, `matmul_integer`: raw operands and results.
//!   `conv`, `conv_transpose`, `gemm`, `matmul`: either all raw float, or `x` and `w`
//!   (`a` and `b`) and the result quantized with a raw i32 bias; then `x` and the result
//!   are per-tensor, `w` is per-tensor or per-axis along its output-channel axis
//!   (conv: 0, conv_transpose: 1, gemm: 1, or 0 with `trans_b`, matmul: b's last), and
//!   a quantized gemm has `alpha == beta == 1`. `batch_norm`: the four params raw.
//!   `max_pool`: indices raw. Every other op: its operands are all quantized or all
//!   raw, and its result is quantized exactly when they are.

use crate::infer::infer;
use crate::{DType, Error, Graph, NodeId, Op, QuantParams, Result, TensorType, ValueDef, ValueId};

/// Check every graph invariant (see the module docs).
pub fn verify(g: &Graph) -> Result<()> {
    for (i, v) in g.values.iter().enumerate() {
        let id = ValueId::from_index(i);
        check_type(&v.ty).map_err(|m| value_err(id, format!("type: {m}")))?;
        check_def(g, id).map_err(|m| value_err(id, m))?;
    }
    for (i, p) in g.inputs.iter().enumerate() {
        let def = g.values.get(p.value.index()).map(|v| v.def);
        if def != Some(ValueDef::Input(i as u32)) {
            return Err(Error::Verify(format!(
                "input {i} ('{}') is value {} defined as {def:?}, not as input {i}",
                p.name, p.value
            )));
        }
    }
    for (i, p) in g.outputs.iter().enumerate() {
        if p.value.index() >= g.values.len() {
            return Err(Error::Verify(format!(
                "output {i} ('{}') refers to value {}, but there are {} values",
                p.name,
                p.value,
                g.values.len()
            )));
        }
    }
    for i in 0..g.nodes.len() {
        verify_node(g, NodeId::from_index(i))?;
    }
    Ok(())
}

/// Check the invariants local to node `n`: its operands exist and are defined before
/// it, its results are defined by it with valid types, the types agree with
/// [`infer`], and quantized and raw types are used consistently.
pub fn verify_node(g: &Graph, n: NodeId) -> Result<()> {
    let node = g.nodes.get(n.index()).ok_or_else(|| {
        Error::Verify(format!("node {n} does not exist ({} nodes)", g.nodes.len()))
    })?;
    let fail = |msg: String| Error::Node {
        node: n,
        op: node.op.name(),
        name: node.name.clone(),
        msg,
    };

    let mut operands: Vec<&TensorType> = Vec::with_capacity(node.inputs.len());
    for (i, &v) in node.inputs.iter().enumerate() {
        let value = g.values.get(v.index()).ok_or_else(|| {
            fail(format!(
                "operand {i} is value {v}, but there are {} values",
                g.values.len()
            ))
        })?;
        let before = match value.def {
            ValueDef::Node { node: m, .. } => m < n,
            ValueDef::Input(_) | ValueDef::Const(_) => true,
        };
        if !before {
            return Err(fail(format!(
                "operand {i} ({v}) is defined by {:?}, not before this node (topological order)",
                value.def
            )));
        }
        check_def(g, v).map_err(|m| fail(format!("operand {i}: value {v}: {m}")))?;
        operands.push(&value.ty);
    }

    let mut results: Vec<&TensorType> = Vec::with_capacity(node.outputs.len());
    for (slot, &v) in node.outputs.iter().enumerate() {
        let value = g.values.get(v.index()).ok_or_else(|| {
            fail(format!(
                "result {slot} is value {v}, but there are {} values",
                g.values.len()
            ))
        })?;
        let want = ValueDef::Node {
            node: n,
            slot: slot as u32,
        };
        if value.def != want {
            return Err(fail(format!(
                "result {slot} ({v}) is defined as {:?}, not as {want:?}",
                value.def
            )));
        }
        check_type(&value.ty).map_err(|m| fail(format!("result {slot} ({v}) type: {m}")))?;
        results.push(&value.ty);
    }

    let count_ok = match node.op {
        Op::MaxPool { .. } => matches!(results.len(), 1 | 2),
        Op::DynamicQuantize => results.len() == 3,
        _ => results.len() == 1,
    };
    if !count_ok {
        let want = match node.op {
            Op::MaxPool { .. } => "1 or 2",
            Op::DynamicQuantize => "3",
            _ => "1",
        };
        return Err(fail(format!(
            "has {} results, expected {want}",
            results.len()
        )));
    }

    let inferred = infer(&node.op, &operands).map_err(|e| match e {
        Error::Infer { msg, .. } => fail(format!("inference: {msg}")),
        e => fail(e.to_string()),
    })?;
    for (slot, (stored, want)) in results.iter().zip(&inferred).enumerate() {
        let v = node.outputs[slot];
        if stored.shape != want.shape {
            return Err(fail(format!(
                "result {slot} ({v}) has shape {}, inferred {}",
                stored.shape, want.shape
            )));
        }
        match &want.quant {
            Some(q) => {
                if stored.dtype != want.dtype || stored.quant.as_ref() != Some(q) {
                    return Err(fail(format!(
                        "result {slot} ({v}) is {}, but its params are implied by the operand: {}",
                        show(stored),
                        show(want)
                    )));
                }
            }
            // A quantized result's params, and so its storage type, are the builder's
            // choice; whether it may be quantized at all is `check_quant`'s business.
            None if stored.is_quantized() => {}
            None => {
                if stored.dtype != want.dtype {
                    return Err(fail(format!(
                        "result {slot} ({v}) has dtype {}, inferred {}",
                        stored.dtype, want.dtype
                    )));
                }
            }
        }
    }

    check_quant(&node.op, &operands, &results).map_err(fail)
}

fn value_err(v: ValueId, msg: String) -> Error {
    Error::Verify(format!("value {v}: {msg}"))
}

fn show(t: &TensorType) -> String {
    match &t.quant {
        None => format!("{}{}", t.dtype, t.shape),
        Some(q) => format!(
            "{}{} q(axis {:?}, scales {:?}, zero points {:?})",
            t.dtype, t.shape, q.axis, q.scales, q.zero_points
        ),
    }
}

/// The value's `def` points back at it.
fn check_def(g: &Graph, v: ValueId) -> std::result::Result<(), String> {
    let value = g
        .values
        .get(v.index())
        .ok_or_else(|| format!("does not exist ({} values)", g.values.len()))?;
    match value.def {
        ValueDef::Input(i) => match g.inputs.get(i as usize) {
            Some(p) if p.value == v => Ok(()),
            Some(p) => Err(format!(
                "defined as input {i}, but input {i} is {}",
                p.value
            )),
            None => Err(format!(
                "defined as input {i}, but there are {} inputs",
                g.inputs.len()
            )),
        },
        ValueDef::Node { node, slot } => match g.nodes.get(node.index()) {
            Some(nd) => match nd.outputs.get(slot as usize) {
                Some(&o) if o == v => Ok(()),
                Some(o) => Err(format!(
                    "defined as result {slot} of {node}, but that is {o}"
                )),
                None => Err(format!(
                    "defined as result {slot} of {node}, which has {} results",
                    nd.outputs.len()
                )),
            },
            None => Err(format!(
                "defined by node {node}, but there are {} nodes",
                g.nodes.len()
            )),
        },
        ValueDef::Const(c) => {
            let t = g.consts.get(c.index()).ok_or_else(|| {
                format!(
                    "defined as constant {c}, but there are {} constants",
                    g.consts.len()
                )
            })?;
            if t.dtype() != value.ty.dtype || t.shape() != &value.ty.shape {
                return Err(format!(
                    "has type {}{} but its constant {c} is {}{}",
                    value.ty.dtype,
                    value.ty.shape,
                    t.dtype(),
                    t.shape()
                ));
            }
            Ok(())
        }
    }
}

/// A type's own invariants.
fn check_type(t: &TensorType) -> std::result::Result<(), String> {
    t.numel().map_err(|e| e.to_string())?;
    let Some(q) = &t.quant else { return Ok(()) };
    q.validate().map_err(|e| e.to_string())?;
    if DType::from_qtype(q.storage) != t.dtype {
        return Err(format!(
            "dtype {} but quantized storage {}",
            t.dtype,
            q.storage.name()
        ));
    }
    if let Some(a) = q.axis {
        let Some(&d) = t.shape.dims().get(a) else {
            return Err(format!(
                "per-axis params on axis {a}, but the rank is {}",
                t.rank()
            ));
        };
        if q.scales.len() != d {
            return Err(format!(
                "{} scales for axis {a} of size {d}",
                q.scales.len()
            ));
        }
    }
    Ok(())
}

/// Quantized-op consistency (see the module docs). Operand and result counts have
/// been checked by inference and the result count check.
fn check_quant(
    op: &Op,
    ops: &[&TensorType],
    res: &[&TensorType],
) -> std::result::Result<(), String> {
    let quantized = |t: &&TensorType| t.is_quantized();
    let raw_all = |what: &str| -> std::result::Result<(), String> {
        if let Some(i) = ops.iter().position(quantized) {
            return Err(format!(
                "operand {i} is quantized; {what} takes raw operands"
            ));
        }
        if let Some(i) = res.iter().position(quantized) {
            return Err(format!("result {i} is quantized; {what} has raw results"));
        }
        Ok(())
    };
    let res0 = res.first().ok_or("no result")?;
    match op {
        Op::Quantize => {
            if ops.iter().any(quantized) {
                return Err("operand is quantized; quantize takes a raw float".into());
            }
            if !res0.is_quantized() {
                return Err("result must be quantized".into());
            }
        }
        Op::Dequantize | Op::Requantize => {
            if !ops.iter().all(quantized) {
                return Err("operand must be quantized".into());
            }
            let want_q = matches!(op, Op::Requantize);
            if res0.is_quantized() != want_q {
                return Err(format!(
                    "result must be {}",
                    if want_q { "quantized" } else { "raw float" }
                ));
            }
        }
        Op::DynamicQuantize => raw_all("dynamic_quantize")?,
        Op::Cast { .. } => raw_all("cast")?,
        Op::ConvInteger(_) => raw_all("conv_integer")?,
        Op::MatMulInteger => raw_all("matmul_integer")?,
        Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm(_) | Op::MatMul { .. } => {
            linear(op, ops, res0)?
        }
        Op::BatchNorm { .. } => {
            if let Some(i) = ops.iter().skip(1).position(quantized) {
                return Err(format!(
                    "operand {} (a normalization parameter) must be raw float",
                    i + 1
                ));
            }
            same_domain(&ops[..1], res0)?;
        }
        Op::MaxPool { .. } => {
            same_domain(ops, res0)?;
            if res.get(1).is_some_and(|t| t.is_quantized()) {
                return Err("result 1 (indices) must be raw i64".into());
            }
        }
        Op::Add { .. }
        | Op::Sub
        | Op::Mul
        | Op::Div
        | Op::Sum
        | Op::Relu
        | Op::LeakyRelu { .. }
        | Op::PRelu
        | Op::Clip { .. }
        | Op::Sigmoid
        | Op::HardSigmoid { .. }
        | Op::HardSwish
        | Op::Tanh
        | Op::AveragePool { .. }
        | Op::GlobalAveragePool
        | Op::GlobalMaxPool
        | Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Transpose { .. }
        | Op::Concat { .. }
        | Op::Pad { .. }
        | Op::Softmax { .. }
        | Op::ReduceMean { .. }
        | Op::Lrn(_)
        | Op::Identity => same_domain(ops, res0)?,
    }
    Ok(())
}

/// Operands all quantized or all raw, and the result quantized exactly when they are.
fn same_domain(ops: &[&TensorType], res: &TensorType) -> std::result::Result<(), String> {
    let q = ops.iter().filter(|t| t.is_quantized()).count();
    if q != 0 && q != ops.len() {
        let which: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].is_quantized()).collect();
        return Err(format!("mixes quantized operands {which:?} with raw ones"));
    }
    match (q != 0, res.is_quantized()) {
        (true, false) => Err("quantized operands but a raw result".into()),
        (false, true) if !ops.is_empty() => Err("raw operands but a quantized result".into()),
        _ => Ok(()),
    }
}

/// conv / conv_transpose / gemm / matmul: all float, or quantized x, w and result
/// with a raw i32 bias.
fn linear(op: &Op, ops: &[&TensorType], res: &TensorType) -> std::result::Result<(), String> {
    let (Some(x), Some(w)) = (ops.first(), ops.get(1)) else {
        return Err("expected at least 2 operands".into());
    };
    let bias = ops.get(2);
    match (x.is_quantized(), w.is_quantized()) {
        (false, false) => {
            if !x.dtype.is_float() {
                return Err(format!(
                    "raw {} operands; integer {} must be quantized (or use conv_integer / matmul_integer)",
                    x.dtype,
                    op.name()
                ));
            }
            if res.is_quantized() {
                return Err("float operands but a quantized result (insert a quantize)".into());
            }
            if bias.is_some_and(|b| b.is_quantized()) {
                return Err("operand 2 (bias) of a float op is quantized".into());
            }
            Ok(())
        }
        (true, true) => {
            if !res.is_quantized() {
                return Err("quantized operands but a raw result (insert a dequantize)".into());
            }
            if let Some(b) = bias {
                if b.is_quantized() || b.dtype != DType::I32 {
                    return Err(format!(
                        "operand 2 (bias) of a quantized op must be raw i32 (scale implied), got {}",
                        show(b)
                    ));
                }
            }
            if let Op::Gemm(a) = op {
                if a.alpha != 1.0 || a.beta != 1.0 {
                    return Err(format!(
                        "quantized gemm needs alpha = beta = 1, got {} and {}",
                        a.alpha, a.beta
                    ));
                }
            }
            if !per_tensor(x.quant.as_ref()) {
                return Err("operand 0 must have per-tensor params".into());
            }
            if !per_tensor(res.quant.as_ref()) {
                return Err("the result must have per-tensor params".into());
            }
            let w_axis = match op {
                Op::Conv(_) => Some(0),
                Op::ConvTranspose(_) => Some(1),
                Op::Gemm(a) => Some(if a.trans_b { 0 } else { 1 }),
                _ => w.rank().checked_sub(1).filter(|_| w.rank() >= 2),
            };
            let axis = w.quant.as_ref().and_then(|q| q.axis);
            if axis.is_some() && axis != w_axis {
                return Err(format!(
                    "operand 1 has per-axis params on axis {axis:?}; only per-tensor or the output-channel axis {w_axis:?}"
                ));
            }
            Ok(())
        }
        (true, false) => Err("operand 0 is quantized but operand 1 is not".into()),
        (false, true) => Err("operand 1 is quantized but operand 0 is not".into()),
    }
}

fn per_tensor(q: Option<&QuantParams>) -> bool {
    q.is_none_or(|q| q.axis.is_none())
}
