//! IR → ONNX: writes a [`qc_ir::Graph`] as a standard ONNX model (ai.onnx opsets
//! 13 through 21) that onnxruntime loads and that [`crate::import`] reads back into an
//! equivalent graph.
//!
//! **Encoding.** Quantization lives in IR types; ONNX carries it in QDQ nodes. So:
//!
//! - a quantized value is written as its integer tensor; wherever a float is needed a
//!   `DequantizeLinear` of it is emitted (once per value) with its scale and zero
//!   point as initializers (`axis` for per-axis parameters);
//! - `quantize` / `dequantize` are `QuantizeLinear` / `DequantizeLinear`; `requantize`
//!   is the pair `DequantizeLinear → QuantizeLinear`, which is how the IR defines it;
//! - any other op whose operands or result are quantized is written in its QDQ
//!   form — the float op between dequantized operands and a `QuantizeLinear` of its
//!   result — which is exactly the interpreter's meaning of an op on quantized types
//!   and what onnxruntime's QDQ fusion turns back into an integer kernel. The raw i32
//!   bias of a quantized conv / conv_transpose / gemm gets a `DequantizeLinear` with its
//!   implied scale `s_x * s_w[c]` (in f32, as onnxruntime computes it) and zero point 0;
//! - a fused activation is written after its op as `Relu` or `Clip`.
//!
//! **Invariants.** Every ONNX value name is unique: graph inputs and outputs keep their
//! port names, everything else gets a generated name that cannot clash with them.
//! Nodes are written in the graph's (topological) order, so the model is sorted.
//! An op or a type the writer cannot express is an [`ExportError`] naming the node
//! and op; nothing in a graph makes it panic.

use std::collections::{HashMap, HashSet};

use onnx_protobuf::{
    attribute_proto::AttributeType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    Message, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use protobuf::{EnumOrUnknown, MessageField};
use qc_ir::{
    Activation, DType, Graph, Node, NodeId, Op, QType, QuantParams, Tensor, TensorType, ValueDef,
    ValueId,
};

/// Errors of the writer: each names the node and op it concerns.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExportError {
    #[error("cannot write node {node} ({op} '{name}') as ONNX: {msg}")]
    Node {
        node: NodeId,
        op: &'static str,
        name: String,
        msg: String,
    },
    #[error("cannot write the model as ONNX: {0}")]
    Model(String),
}

pub type Result<T, E = ExportError> = std::result::Result<T, E>;

/// The ai.onnx opsets the writer emits.
pub const EXPORT_OPSETS: std::ops::RangeInclusive<i64> = 13..=21;

/// Serialize `g` as an ONNX model with ai.onnx opset `opset` (13..=21; 16-bit
/// quantized types need 21).
pub fn to_onnx(g: &Graph, opset: i64) -> Result<Vec<u8>> {
    let m = to_model(g, opset)?;
    m.write_to_bytes()
        .map_err(|e| ExportError::Model(format!("protobuf encoding failed: {e}")))
}

/// Build the `ModelProto` of `g` (see [`to_onnx`]).
pub fn to_model(g: &Graph, opset: i64) -> Result<ModelProto> {
    if !EXPORT_OPSETS.contains(&opset) {
        return Err(ExportError::Model(format!(
            "opset {opset}: the writer emits opsets {} through {}",
            EXPORT_OPSETS.start(),
            EXPORT_OPSETS.end()
        )));
    }
    let mut w = Writer::new(g, opset);
    w.write()?;
    let mut model = ModelProto::new();
    model.ir_version = match opset {
        ..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    };
    model.producer_name = "qc".into();
    model.producer_version = env!("CARGO_PKG_VERSION").into();
    let mut os = OperatorSetIdProto::new();
    os.domain = String::new();
    os.version = opset;
    model.opset_import.push(os);
    model.graph = MessageField::some(w.out);
    Ok(model)
}

/// ONNX `TensorProto.DataType` code of a dtype.
fn onnx_type(d: DType) -> i32 {
    match d {
        DType::F32 => 1,
        DType::U8 => 2,
        DType::I8 => 3,
        DType::U16 => 4,
        DType::I16 => 5,
        DType::I32 => 6,
        DType::I64 => 7,
        DType::Bool => 9,
        DType::F16 => 10,
        DType::F64 => 11,
        DType::U32 => 12,
        DType::U64 => 13,
        DType::BF16 => 16,
    }
}

fn tensor_proto(name: &str, t: &Tensor) -> TensorProto {
    let mut p = TensorProto::new();
    p.name = name.to_string();
    p.data_type = onnx_type(t.dtype());
    p.dims = t.dims().iter().map(|&d| d as i64).collect();
    p.raw_data = t.data().to_le_bytes();
    p
}

fn value_info(name: &str, ty: &TensorType) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for &d in ty.shape.dims() {
        let mut dim = tensor_shape_proto::Dimension::new();
        dim.value = Some(tensor_shape_proto::dimension::Value::DimValue(d as i64));
        shape.dim.push(dim);
    }
    let mut tt = type_proto::Tensor::new();
    tt.elem_type = onnx_type(ty.dtype);
    tt.shape = MessageField::some(shape);
    let mut t = TypeProto::new();
    t.value = Some(type_proto::Value::TensorType(tt));
    let mut v = ValueInfoProto::new();
    v.name = name.to_string();
    v.type_ = MessageField::some(t);
    v
}

fn attr(name: &str, ty: AttributeType) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.type_ = EnumOrUnknown::new(ty);
    a
}

fn a_int(name: &str, v: i64) -> AttributeProto {
    let mut a = attr(name, AttributeType::INT);
    a.i = v;
    a
}

fn a_float(name: &str, v: f32) -> AttributeProto {
    let mut a = attr(name, AttributeType::FLOAT);
    a.f = v;
    a
}

fn a_ints(name: &str, v: impl IntoIterator<Item = i64>) -> AttributeProto {
    let mut a = attr(name, AttributeType::INTS);
    a.ints = v.into_iter().collect();
    a
}

fn usizes(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

struct Writer<'g> {
    g: &'g Graph,
    opset: i64,
    out: GraphProto,
    /// ONNX name of each IR value once written (the stored integers for quantized ones).
    names: Vec<Option<String>>,
    /// `DequantizeLinear` result of a quantized value, once emitted.
    float_view: HashMap<ValueId, String>,
    /// Names taken by graph ports, which generated names must avoid.
    reserved: HashSet<String>,
    counter: usize,
    /// The node being written, for messages.
    cur: (NodeId, &'static str, String),
    /// The IR node name waiting for the ONNX node that carries the IR node's op (the
    /// first one written for it that is not a quantize/dequantize helper, unless the
    /// IR op is one), so that tools can pair layers across the IR and the file.
    pending_name: Option<(String, bool)>,
    /// Node names given out, which later names must avoid.
    node_names: HashSet<String>,
}

impl<'g> Writer<'g> {
    fn new(g: &'g Graph, opset: i64) -> Writer<'g> {
        let reserved = g
            .inputs
            .iter()
            .chain(&g.outputs)
            .map(|p| p.name.clone())
            .collect();
        let mut out = GraphProto::new();
        out.name = "qc".into();
        Writer {
            g,
            opset,
            out,
            names: vec![None; g.values.len()],
            float_view: HashMap::new(),
            reserved,
            counter: 0,
            cur: (NodeId(0), "graph", String::new()),
            pending_name: None,
            node_names: HashSet::new(),
        }
    }

    fn err(&self, msg: impl std::fmt::Display) -> ExportError {
        let (node, op, name) = &self.cur;
        ExportError::Node {
            node: *node,
            op,
            name: name.clone(),
            msg: msg.to_string(),
        }
    }

    /// A fresh name that no port and no other generated name uses.
    fn fresh(&mut self, hint: &str) -> String {
        loop {
            self.counter += 1;
            let s = format!("{hint}.{}", self.counter);
            if !self.reserved.contains(&s) && !self.node_names.contains(&s) {
                return s;
            }
        }
    }

    fn node(
        &mut self,
        op: &str,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attrs: Vec<AttributeProto>,
    ) {
        let mut n = NodeProto::new();
        n.op_type = op.to_string();
        let helper = matches!(op, "QuantizeLinear" | "DequantizeLinear");
        n.name = match self.pending_name.take() {
            Some((name, qdq_op))
                if (!helper || qdq_op)
                    && !name.is_empty()
                    && !self.reserved.contains(&name)
                    && !self.node_names.contains(&name) =>
            {
                name
            }
            other => {
                // Not this node's: keep it for the next one.
                if helper {
                    self.pending_name = other;
                }
                self.fresh(op)
            }
        };
        self.node_names.insert(n.name.clone());
        n.input = inputs;
        n.output = outputs;
        n.attribute = attrs;
        self.out.node.push(n);
    }

    fn initializer(&mut self, hint: &str, t: &Tensor) -> String {
        let name = self.fresh(hint);
        self.out.initializer.push(tensor_proto(&name, t));
        name
    }

    fn write(&mut self) -> Result<()> {
        let g = self.g;
        for p in &g.inputs {
            self.out.input.push(value_info(&p.name, g.ty(p.value)));
            self.names[p.value.index()] = Some(p.name.clone());
        }
        // A graph output defined by a node takes the port's name directly (the first
        // port naming it); other outputs get an Identity below.
        let mut port_name: HashMap<ValueId, String> = HashMap::new();
        for p in &g.outputs {
            if matches!(g.value(p.value).def, ValueDef::Node { .. }) {
                port_name.entry(p.value).or_insert_with(|| p.name.clone());
            }
        }
        for (id, n) in g.iter_nodes() {
            self.cur = (id, n.op.name(), n.name.clone());
            let qdq_op = matches!(n.op, qc_ir::Op::Quantize | qc_ir::Op::Dequantize);
            self.pending_name = Some((n.name.clone(), qdq_op));
            let outs: Vec<String> = n
                .outputs
                .iter()
                .map(|v| match port_name.get(v) {
                    Some(s) => s.clone(),
                    None => self.fresh("t"),
                })
                .collect();
            self.write_node(n, &outs)?;
            for (v, s) in n.outputs.iter().zip(outs) {
                self.names[v.index()] = Some(s);
            }
        }
        self.cur = (NodeId(0), "graph", String::new());
        self.pending_name = None;
        for p in &g.outputs {
            let src = self.raw(p.value)?;
            if src != p.name {
                self.node("Identity", vec![src], vec![p.name.clone()], vec![]);
            }
            self.out.output.push(value_info(&p.name, g.ty(p.value)));
        }
        Ok(())
    }

    /// The ONNX name holding `v`'s stored data (integers for a quantized value);
    /// constants become initializers on first use.
    fn raw(&mut self, v: ValueId) -> Result<String> {
        if let Some(Some(s)) = self.names.get(v.index()) {
            return Ok(s.clone());
        }
        let g = self.g;
        let Some(t) = g.const_of(v) else {
            return Err(self.err(format!("operand {v} is used before it is defined")));
        };
        let name = self.initializer("c", t);
        self.names[v.index()] = Some(name.clone());
        Ok(name)
    }

    /// Scale and zero-point initializers and the `axis` attribute of `q`.
    fn qparams(&mut self, q: &QuantParams) -> Result<(String, String, Vec<AttributeProto>)> {
        if matches!(q.storage, QType::U16 | QType::I16) && self.opset < 21 {
            return Err(self.err(format!(
                "{} quantization needs opset 21 (writing opset {})",
                q.storage.name(),
                self.opset
            )));
        }
        let (shape, attrs) = match q.axis {
            None => (vec![], vec![]),
            Some(a) => (vec![q.scales.len()], vec![a_int("axis", a as i64)]),
        };
        let scales = Tensor::from_f32(shape.clone(), q.scales.clone()).map_err(|e| self.err(e))?;
        let zps = q
            .zero_points
            .iter()
            .map(|&z| i64::from(z))
            .collect::<Vec<_>>();
        let zp = int_tensor(DType::from_qtype(q.storage), shape, &zps).map_err(|e| self.err(e))?;
        let s = self.initializer("scale", &scales);
        let z = self.initializer("zero_point", &zp);
        Ok((s, z, attrs))
    }

    /// `v` as a float: its own name, or a `DequantizeLinear` of a quantized value.
    fn float(&mut self, v: ValueId) -> Result<String> {
        let raw = self.raw(v)?;
        let Some(q) = self.g.ty(v).quant.clone() else {
            return Ok(raw);
        };
        if let Some(s) = self.float_view.get(&v) {
            return Ok(s.clone());
        }
        let out = self.dequantize(raw, &q)?;
        self.float_view.insert(v, out.clone());
        Ok(out)
    }

    fn dequantize(&mut self, raw: String, q: &QuantParams) -> Result<String> {
        let (s, z, attrs) = self.qparams(q)?;
        let out = self.fresh("dq");
        self.node(
            "DequantizeLinear",
            vec![raw, s, z],
            vec![out.clone()],
            attrs,
        );
        Ok(out)
    }

    fn quantize(&mut self, x: String, q: &QuantParams, out: String) -> Result<()> {
        if q.storage == QType::I32 {
            return Err(self.err("QuantizeLinear to i32 is not expressible in ONNX"));
        }
        let (s, z, attrs) = self.qparams(q)?;
        self.node("QuantizeLinear", vec![x, s, z], vec![out], attrs);
        Ok(())
    }

    /// A float constant scalar initializer (clip bounds, pad values).
    fn scalar(&mut self, hint: &str, v: f32) -> String {
        self.initializer(hint, &Tensor::scalar_f32(v))
    }

    fn i64s(&mut self, hint: &str, v: &[i64]) -> Result<String> {
        let t = int_tensor(DType::I64, vec![v.len()], v).map_err(|e| self.err(e))?;
        Ok(self.initializer(hint, &t))
    }

    /// Operand names for a float op: dequantized where quantized. A raw i32 bias of a
    /// quantized linear op (operand 2) is dequantized with its implied scale.
    fn operands(&mut self, n: &Node) -> Result<Vec<String>> {
        let g = self.g;
        let linear = matches!(n.op, Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm(_));
        let mut names = Vec::with_capacity(n.inputs.len());
        for (i, &v) in n.inputs.iter().enumerate() {
            let ty = g.ty(v);
            if linear && i == 2 && ty.quant.is_none() && ty.dtype == DType::I32 {
                let (Some(xq), Some(wq)) = (
                    n.inputs.first().and_then(|&x| g.ty(x).quant.as_ref()),
                    n.inputs.get(1).and_then(|&w| g.ty(w).quant.as_ref()),
                ) else {
                    return Err(self.err("an i32 bias needs quantized x and w"));
                };
                let Some(q) = bias_params(xq, wq, ty) else {
                    return Err(self.err(format!(
                        "bias {} does not match the {} per-channel weight scales",
                        ty.shape,
                        wq.len()
                    )));
                };
                let raw = self.raw(v)?;
                names.push(self.dequantize(raw, &q)?);
            } else {
                names.push(self.float(v)?);
            }
        }
        Ok(names)
    }

    fn write_node(&mut self, n: &Node, outs: &[String]) -> Result<()> {
        let g = self.g;
        let result_q = |i: usize| n.outputs.get(i).and_then(|&v| g.ty(v).quant.clone());
        match &n.op {
            Op::Quantize => {
                let (Some(&x), Some(q), Some(o)) = (n.inputs.first(), result_q(0), outs.first())
                else {
                    return Err(self.err("quantize needs one operand and a quantized result"));
                };
                let x = self.float(x)?;
                return self.quantize(x, &q, o.clone());
            }
            Op::Dequantize => {
                let (Some(&x), Some(o)) = (n.inputs.first(), outs.first()) else {
                    return Err(self.err("dequantize needs one operand"));
                };
                let Some(q) = g.ty(x).quant.clone() else {
                    return Err(self.err("dequantize of an unquantized operand"));
                };
                let (s, z, attrs) = self.qparams(&q)?;
                let raw = self.raw(x)?;
                self.node("DequantizeLinear", vec![raw, s, z], vec![o.clone()], attrs);
                return Ok(());
            }
            Op::Requantize => {
                // The IR defines requantize as dequantize then quantize.
                let (Some(&x), Some(q), Some(o)) = (n.inputs.first(), result_q(0), outs.first())
                else {
                    return Err(self.err("requantize needs one operand and a quantized result"));
                };
                let x = self.float(x)?;
                return self.quantize(x, &q, o.clone());
            }
            Op::DynamicQuantize => return self.raw_op(n, outs, "DynamicQuantizeLinear", vec![]),
            Op::MatMulInteger => return self.raw_op(n, outs, "MatMulInteger", vec![]),
            Op::ConvInteger(a) => {
                if a.act != Activation::None {
                    return Err(self.err("conv_integer with a fused activation"));
                }
                let at = conv_attrs(&a.kernel, &a.strides, &a.dilations, &a.pads, a.group);
                return self.raw_op(n, outs, "ConvInteger", at);
            }
            Op::Cast { to } => {
                if n.inputs.iter().any(|&v| g.ty(v).is_quantized()) || result_q(0).is_some() {
                    return Err(self.err("cast of quantized types"));
                }
                let at = vec![a_int("to", i64::from(onnx_type(*to)))];
                return self.raw_op(n, outs, "Cast", at);
            }
            _ => {}
        }

        // A float op (or the QDQ form of an op on quantized types).
        let ins = self.operands(n)?;
        let quantized_results: Vec<Option<QuantParams>> =
            (0..n.outputs.len()).map(result_q).collect();
        let act = n.op.activation().unwrap_or_default();
        // Names the float op writes: the final ones unless a quantize or an activation follows.
        let mut float_outs = Vec::with_capacity(outs.len());
        for (i, o) in outs.iter().enumerate() {
            let needs_tmp = quantized_results.get(i).is_some_and(Option::is_some)
                || (i == 0 && act != Activation::None);
            float_outs.push(if needs_tmp {
                self.fresh("f")
            } else {
                o.clone()
            });
        }
        self.float_op(n, ins, float_outs.clone())?;
        if act != Activation::None {
            let (Some(pre), Some(o)) = (float_outs.first().cloned(), outs.first()) else {
                return Err(self.err("a fused activation needs a result"));
            };
            let post = if quantized_results.first().is_some_and(Option::is_some) {
                self.fresh("a")
            } else {
                o.clone()
            };
            match act {
                Activation::None => {}
                Activation::Relu => self.node("Relu", vec![pre], vec![post.clone()], vec![]),
                Activation::Clip { min, max } => {
                    let lo = self.scalar("min", min);
                    let hi = self.scalar("max", max);
                    self.node("Clip", vec![pre, lo, hi], vec![post.clone()], vec![]);
                }
            }
            if let Some(f) = float_outs.first_mut() {
                *f = post;
            }
        }
        for (i, q) in quantized_results.iter().enumerate() {
            if let (Some(q), Some(f), Some(o)) = (q, float_outs.get(i), outs.get(i)) {
                self.quantize(f.clone(), q, o.clone())?;
            }
        }
        Ok(())
    }

    /// An op on raw stored data: operands pass as stored.
    fn raw_op(
        &mut self,
        n: &Node,
        outs: &[String],
        op: &str,
        attrs: Vec<AttributeProto>,
    ) -> Result<()> {
        let ins = n
            .inputs
            .iter()
            .map(|&v| self.raw(v))
            .collect::<Result<Vec<_>>>()?;
        self.node(op, ins, outs.to_vec(), attrs);
        Ok(())
    }

    /// The ONNX node(s) of a float op from operand names `ins` to result names `outs`
    /// (a fused activation is written by the caller).
    fn float_op(&mut self, n: &Node, mut ins: Vec<String>, outs: Vec<String>) -> Result<()> {
        let g = self.g;
        let x_ty = || n.inputs.first().map(|&v| g.ty(v));
        let (op, attrs): (&str, Vec<AttributeProto>) = match &n.op {
            Op::Conv(a) => (
                "Conv",
                conv_attrs(&a.kernel, &a.strides, &a.dilations, &a.pads, a.group),
            ),
            Op::ConvTranspose(a) => {
                let mut at = conv_attrs(&a.kernel, &a.strides, &a.dilations, &a.pads, a.group);
                at.push(a_ints("output_padding", usizes(&a.output_padding)));
                ("ConvTranspose", at)
            }
            Op::Gemm(a) => (
                "Gemm",
                vec![
                    a_float("alpha", a.alpha),
                    a_float("beta", a.beta),
                    a_int("transA", i64::from(a.trans_a)),
                    a_int("transB", i64::from(a.trans_b)),
                ],
            ),
            Op::MatMul { .. } => ("MatMul", vec![]),
            Op::BatchNorm { epsilon } => ("BatchNormalization", vec![a_float("epsilon", *epsilon)]),
            Op::Add { .. } => ("Add", vec![]),
            Op::Sub => ("Sub", vec![]),
            Op::Mul => ("Mul", vec![]),
            Op::Div => ("Div", vec![]),
            Op::Sum => ("Sum", vec![]),
            Op::Relu => ("Relu", vec![]),
            Op::LeakyRelu { alpha } => ("LeakyRelu", vec![a_float("alpha", *alpha)]),
            Op::PRelu => ("PRelu", vec![]),
            Op::Clip { min, max } => {
                let float_x = x_ty().is_some_and(|t| t.dtype.is_float() || t.is_quantized());
                if !float_x {
                    return Err(self.err("clip of a plain integer tensor"));
                }
                let lo = match min {
                    Some(v) => self.scalar("min", *v as f32),
                    None => String::new(),
                };
                let hi = match max {
                    Some(v) => self.scalar("max", *v as f32),
                    None => String::new(),
                };
                ins.push(lo);
                ins.push(hi);
                ("Clip", vec![])
            }
            Op::Sigmoid => ("Sigmoid", vec![]),
            Op::HardSigmoid { alpha, beta } => (
                "HardSigmoid",
                vec![a_float("alpha", *alpha), a_float("beta", *beta)],
            ),
            Op::HardSwish => {
                if self.opset < 14 {
                    return Err(self.err("HardSwish needs opset 14"));
                }
                ("HardSwish", vec![])
            }
            Op::Tanh => ("Tanh", vec![]),
            Op::MaxPool {
                pool,
                storage_order,
            } => {
                let mut at = pool_attrs(pool);
                at.push(a_ints("dilations", usizes(&pool.dilations)));
                at.push(a_int("storage_order", i64::from(*storage_order)));
                ("MaxPool", at)
            }
            Op::AveragePool {
                pool,
                count_include_pad,
            } => {
                let mut at = pool_attrs(pool);
                if pool.dilations.iter().any(|&d| d != 1) {
                    if self.opset < 19 {
                        return Err(self.err("a dilated average pool needs opset 19"));
                    }
                    at.push(a_ints("dilations", usizes(&pool.dilations)));
                }
                at.push(a_int("count_include_pad", i64::from(*count_include_pad)));
                ("AveragePool", at)
            }
            Op::GlobalAveragePool => ("GlobalAveragePool", vec![]),
            Op::GlobalMaxPool => ("GlobalMaxPool", vec![]),
            Op::Flatten { axis } => ("Flatten", vec![a_int("axis", *axis as i64)]),
            Op::Reshape { shape } => {
                let s = self.i64s("shape", &usizes(shape))?;
                ins.truncate(1);
                ins.push(s);
                ("Reshape", vec![])
            }
            Op::Squeeze { axes } => {
                let a = self.i64s("axes", &usizes(axes))?;
                ins.push(a);
                ("Squeeze", vec![])
            }
            Op::Unsqueeze { axes } => {
                let a = self.i64s("axes", &usizes(axes))?;
                ins.push(a);
                ("Unsqueeze", vec![])
            }
            Op::Transpose { perm } => ("Transpose", vec![a_ints("perm", usizes(perm))]),
            Op::Concat { axis } => ("Concat", vec![a_int("axis", *axis as i64)]),
            Op::Pad { pads, value } => {
                let p = self.i64s("pads", pads)?;
                // The constant has the (float view's) element type of x.
                let dtype = match x_ty() {
                    Some(t) if t.is_quantized() => DType::F32,
                    Some(t) => t.dtype,
                    None => return Err(self.err("pad needs an operand")),
                };
                let c = scalar_of(dtype, *value).map_err(|e| self.err(e))?;
                let c = self.initializer("pad_value", &c);
                ins.truncate(1);
                ins.push(p);
                ins.push(c);
                ("Pad", vec![])
            }
            Op::Softmax { axis } => ("Softmax", vec![a_int("axis", *axis as i64)]),
            Op::ReduceMean { axes, keepdims } => {
                let keep = a_int("keepdims", i64::from(*keepdims));
                if self.opset < 18 {
                    ("ReduceMean", vec![a_ints("axes", usizes(axes)), keep])
                } else {
                    let a = self.i64s("axes", &usizes(axes))?;
                    ins.push(a);
                    ("ReduceMean", vec![keep])
                }
            }
            Op::Lrn(a) => (
                "LRN",
                vec![
                    a_int("size", a.size as i64),
                    a_float("alpha", a.alpha),
                    a_float("beta", a.beta),
                    a_float("bias", a.bias),
                ],
            ),
            Op::Identity => ("Identity", vec![]),
            Op::Quantize
            | Op::Dequantize
            | Op::Requantize
            | Op::DynamicQuantize
            | Op::Cast { .. }
            | Op::ConvInteger(_)
            | Op::MatMulInteger => return Err(self.err("not a float op")),
        };
        self.node(op, ins, outs, attrs);
        Ok(())
    }
}

fn conv_attrs(
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
    pads: &[usize],
    group: usize,
) -> Vec<AttributeProto> {
    vec![
        a_ints("kernel_shape", usizes(kernel)),
        a_ints("strides", usizes(strides)),
        a_ints("dilations", usizes(dilations)),
        a_ints("pads", usizes(pads)),
        a_int("group", group as i64),
    ]
}

fn pool_attrs(p: &qc_ir::PoolAttrs) -> Vec<AttributeProto> {
    vec![
        a_ints("kernel_shape", usizes(&p.kernel)),
        a_ints("strides", usizes(&p.strides)),
        a_ints("pads", usizes(&p.pads)),
        a_int("ceil_mode", i64::from(p.ceil_mode)),
    ]
}

/// Implied params of a quantized linear op's raw i32 bias: `s_x * s_w[c]` in f32
/// (onnxruntime's product), zero point 0; per axis along the bias's last dim (its
/// output channels) when the weights are per channel.
fn bias_params(xq: &QuantParams, wq: &QuantParams, bias: &TensorType) -> Option<QuantParams> {
    let sx = xq.scale(0);
    if wq.is_per_tensor() {
        return Some(QuantParams::per_tensor(QType::I32, sx * wq.scale(0), 0));
    }
    let c = *bias.shape.dims().last()?;
    if c != wq.len() {
        return None;
    }
    let scales = wq.scales.iter().map(|&sw| sx * sw).collect();
    Some(QuantParams::per_axis(
        QType::I32,
        bias.rank() - 1,
        scales,
        vec![0; c],
    ))
}

fn int_tensor(dtype: DType, shape: Vec<usize>, v: &[i64]) -> qc_ir::Result<Tensor> {
    use qc_ir::TensorData as D;
    let data = match dtype {
        DType::U8 => D::U8(v.iter().map(|&x| x as u8).collect()),
        DType::I8 => D::I8(v.iter().map(|&x| x as i8).collect()),
        DType::U16 => D::U16(v.iter().map(|&x| x as u16).collect()),
        DType::I16 => D::I16(v.iter().map(|&x| x as i16).collect()),
        DType::I32 => D::I32(v.iter().map(|&x| x as i32).collect()),
        DType::I64 => D::I64(v.to_vec()),
        other => {
            return Err(qc_ir::Error::Tensor(format!(
                "{other} is not an integer type"
            )))
        }
    };
    Tensor::new(shape, data)
}

/// A scalar of `dtype` holding `v` (the pad constant).
fn scalar_of(dtype: DType, v: f64) -> qc_ir::Result<Tensor> {
    use qc_ir::TensorData as D;
    let data = match dtype {
        DType::F32 => D::F32(vec![v as f32]),
        DType::F64 => D::F64(vec![v]),
        DType::F16 => D::F16(vec![half::f16::from_f64(v).to_bits()]),
        DType::BF16 => D::BF16(vec![half::bf16::from_f64(v).to_bits()]),
        DType::Bool => D::Bool(vec![v != 0.0]),
        d => return int_tensor(d, vec![], &[v as i64]),
    };
    Tensor::new(Vec::<usize>::new(), data)
}
