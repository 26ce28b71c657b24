//! The import driver: model → graph inputs and constants → nodes in topological
//! order → graph outputs → verifier.
//!
//! Invariants while importing:
//! - `env` maps every ONNX value name defined so far to its IR value; a name is
//!   defined once (a second definition is an error). Initializers are decoded lazily
//!   on first use, so an unused initializer of an unsupported type does no harm.
//! - nodes are appended to the graph only after all their operands exist, so the
//!   graph is in topological order by construction.
//! - a constant's plain value (`quant: None`) is the one `env` holds; quantized views
//!   of the same tensor are extra values made by [`Importer::as_quantized`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use onnx_protobuf::{
    tensor_shape_proto::dimension::Value as DimValue, type_proto::Value as TypeValue, GraphProto,
    Message, ModelProto, NodeProto, TensorProto, ValueInfoProto,
};
use petgraph::graph::DiGraph;
use qc_ir::{ConstId, Graph, Op, QuantParams, Tensor, TensorType, ValueDef, ValueId};

use crate::node::Cx;
use crate::tensor::{dtype_from_onnx, tensor_from_proto};
use crate::{Error, ExternalData, ImportOptions, Result};

/// Supported ai.onnx opsets.
const OPSETS: std::ops::RangeInclusive<i64> = 7..=28;

/// onnxruntime's contrib domain, whose QOperator ops (`QLinearAdd`, `QGemm`, ...) qc
/// imports; every schema qc reads there is `since_version` 1.
pub(crate) const MS_DOMAIN: &str = "com.microsoft";
pub(crate) const MS_OPSET: i64 = 1;

pub(crate) fn import(bytes: &[u8], opts: &ImportOptions, ext: &dyn ExternalData) -> Result<Graph> {
    let model = ModelProto::parse_from_bytes(bytes).map_err(|e| Error::Decode(e.to_string()))?;
    let graph = model.graph.as_ref().ok_or(Error::NoGraph)?;

    let mut opsets: HashMap<String, i64> = HashMap::new();
    for o in &model.opset_import {
        let domain = if o.domain == "ai.onnx" {
            String::new()
        } else {
            o.domain.clone()
        };
        if let Some(prev) = opsets.insert(domain.clone(), o.version) {
            if prev != o.version {
                return Err(Error::Graph(format!(
                    "the model imports opsets {prev} and {} of domain '{domain}'",
                    o.version
                )));
            }
        }
    }
    let opset = *opsets.get("").ok_or(Error::NoOpset)?;
    if !OPSETS.contains(&opset) {
        return Err(Error::UnsupportedOpset(opset));
    }

    let mut imp = Importer {
        g: Graph::new(),
        env: HashMap::new(),
        inits: graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect(),
        ext,
        opset,
        opsets,
        used: HashSet::new(),
        qconsts: Vec::new(),
    };
    if let Some(s) = graph.sparse_initializer.first() {
        let name = s.values.as_ref().map_or("", |v| v.name.as_str());
        return Err(Error::Tensor {
            name: name.to_string(),
            msg: "sparse initializers are not supported".into(),
        });
    }
    for n in &graph.node {
        imp.used
            .extend(n.input.iter().filter(|s| !s.is_empty()).cloned());
    }
    imp.used.extend(graph.output.iter().map(|o| o.name.clone()));

    imp.graph_inputs(graph, opts)?;
    for i in topo_order(graph)? {
        if let Some(n) = graph.node.get(i) {
            imp.node(n, i)?;
        }
    }
    for o in &graph.output {
        let v = imp
            .lookup(&o.name)?
            .ok_or_else(|| Error::Graph(format!("graph output '{}' is not defined", o.name)))?;
        imp.g.add_output(o.name.clone(), v);
    }
    qc_ir::verify::verify(&imp.g).map_err(Error::Verify)?;
    Ok(imp.g)
}

/// A node's label for messages: its name, or its index and first output when unnamed.
fn node_label(n: &NodeProto, index: usize) -> String {
    if !n.name.is_empty() {
        return n.name.clone();
    }
    match n.output.iter().find(|o| !o.is_empty()) {
        Some(o) => format!("#{index} -> {o}"),
        None => format!("#{index}"),
    }
}

/// Node indices in a topological order: the file's order when it already is one,
/// otherwise petgraph's. Cycles and doubly defined names are errors.
fn topo_order(graph: &GraphProto) -> Result<Vec<usize>> {
    let sources: HashSet<&str> = graph
        .input
        .iter()
        .map(|i| i.name.as_str())
        .chain(graph.initializer.iter().map(|t| t.name.as_str()))
        .collect();
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if sources.contains(o.as_str()) {
                return Err(Error::Graph(format!(
                    "node '{}' redefines '{o}', a graph input or initializer",
                    node_label(n, i)
                )));
            }
            if producer.insert(o.as_str(), i).is_some() {
                return Err(Error::Graph(format!(
                    "value '{o}' is produced by two nodes"
                )));
            }
        }
    }
    let mut edges = Vec::new();
    let mut sorted = true;
    for (i, n) in graph.node.iter().enumerate() {
        for inp in &n.input {
            if let Some(&p) = producer.get(inp.as_str()) {
                edges.push((p, i));
                sorted &= p < i;
            }
        }
    }
    if sorted {
        return Ok((0..graph.node.len()).collect());
    }
    let mut dg: DiGraph<usize, ()> = DiGraph::new();
    let ids: Vec<_> = (0..graph.node.len()).map(|i| dg.add_node(i)).collect();
    for (p, c) in edges {
        if let (Some(&a), Some(&b)) = (ids.get(p), ids.get(c)) {
            dg.add_edge(a, b, ());
        }
    }
    match petgraph::algo::toposort(&dg, None) {
        Ok(order) => Ok(order.into_iter().map(|ix| ix.index()).collect()),
        Err(cycle) => {
            let i = cycle.node_id().index();
            let label = graph
                .node
                .get(i)
                .map_or_else(|| format!("#{i}"), |n| node_label(n, i));
            Err(Error::Graph(format!(
                "the nodes form a cycle through node '{label}'"
            )))
        }
    }
}

pub(crate) struct Importer<'a> {
    pub g: Graph,
    env: HashMap<String, ValueId>,
    inits: HashMap<&'a str, &'a TensorProto>,
    ext: &'a dyn ExternalData,
    pub opset: i64,
    opsets: HashMap<String, i64>,
    /// Names some node or graph output consumes (to tell whether optional results are used).
    used: HashSet<String>,
    /// Quantized views of constant tensors, so one (tensor, params) pair is one value.
    qconsts: Vec<(ConstId, QuantParams, ValueId)>,
}

impl<'a> Importer<'a> {
    /// The value named `name`: defined so far, or an initializer decoded now.
    fn lookup(&mut self, name: &str) -> Result<Option<ValueId>> {
        if let Some(&v) = self.env.get(name) {
            return Ok(Some(v));
        }
        let Some(t) = self.inits.get(name).copied() else {
            return Ok(None);
        };
        let v = self.g.add_const(tensor_from_proto(t, self.ext)?);
        self.env.insert(name.to_string(), v);
        Ok(Some(v))
    }

    pub(crate) fn ext(&self) -> &'a dyn ExternalData {
        self.ext
    }

    pub(crate) fn is_used(&self, name: Option<&str>) -> bool {
        name.is_some_and(|n| self.used.contains(n))
    }

    fn graph_inputs(&mut self, graph: &GraphProto, opts: &ImportOptions) -> Result<()> {
        let known: HashSet<&str> = graph
            .input
            .iter()
            .map(|i| i.name.as_str())
            .chain(graph.initializer.iter().map(|t| t.name.as_str()))
            .collect();
        for name in opts.const_inputs.keys().chain(opts.input_shapes.keys()) {
            if !known.contains(name.as_str()) {
                return Err(Error::Graph(format!(
                    "ImportOptions names '{name}', which is not a graph input"
                )));
            }
        }
        for vi in &graph.input {
            let name = vi.name.as_str();
            if name.is_empty() {
                return Err(Error::Graph("a graph input has no name".into()));
            }
            if self.env.contains_key(name) {
                return Err(Error::Graph(format!(
                    "graph input '{name}' is listed twice"
                )));
            }
            if let Some(t) = opts.const_inputs.get(name) {
                check_const_input(vi, t)?;
                let v = self.g.add_const(t.clone());
                self.env.insert(name.to_string(), v);
                continue;
            }
            if self.inits.contains_key(name) {
                // An initializer listed among the inputs (old models): a constant.
                continue;
            }
            let ty = input_type(vi, opts.input_shapes.get(name))?;
            let v = self.g.add_input(name, ty);
            self.env.insert(name.to_string(), v);
        }
        // A constant given for an initializer that is not listed as an input replaces it.
        let mut rest: Vec<(&String, &Tensor)> = opts
            .const_inputs
            .iter()
            .filter(|(k, _)| !self.env.contains_key(k.as_str()))
            .collect();
        rest.sort_by(|a, b| a.0.cmp(b.0));
        for (name, t) in rest {
            let v = self.g.add_const(t.clone());
            self.env.insert(name.clone(), v);
        }
        Ok(())
    }

    fn node(&mut self, n: &NodeProto, index: usize) -> Result<()> {
        let label = node_label(n, index);
        let domain = if n.domain == "ai.onnx" {
            ""
        } else {
            n.domain.as_str()
        };
        let contrib = domain == MS_DOMAIN;
        if !domain.is_empty() && !contrib {
            return Err(Error::UnsupportedOp {
                op: n.op_type.clone(),
                domain: domain.to_string(),
                node: label,
                opset: self.opsets.get(domain).copied().unwrap_or(0),
            });
        }
        if contrib {
            let version = self.opsets.get(domain).copied().unwrap_or(0);
            if version != MS_OPSET {
                return Err(Error::Node {
                    node: label,
                    op: n.op_type.clone(),
                    opset: version,
                    msg: format!(
                        "the model imports {MS_DOMAIN} opset {version}; qc supports version {MS_OPSET}"
                    ),
                });
            }
        }
        let mut inputs = Vec::with_capacity(n.input.len());
        for name in &n.input {
            if name.is_empty() {
                inputs.push(None);
                continue;
            }
            let v = self.lookup(name)?.ok_or_else(|| {
                Error::Graph(format!(
                    "node '{label}' ({}): input '{name}' is not defined",
                    n.op_type
                ))
            })?;
            inputs.push(Some(v));
        }
        let cx = Cx {
            node: n,
            label,
            opset: self.opset,
            inputs,
        };
        let results = if contrib {
            self.convert_contrib(&cx)?
        } else {
            self.convert(&cx)?
        };
        for (i, name) in n.output.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            let Some(&v) = results.get(i) else {
                // A result qc does not model (e.g. BatchNormalization's training
                // outputs) is fine as long as nothing reads it.
                if self.used.contains(name) {
                    return Err(cx.err(format!("output {i} ('{name}') is not supported")));
                }
                continue;
            };
            if self.env.insert(name.clone(), v).is_some() {
                return Err(Error::Graph(format!("value '{name}' is defined twice")));
            }
        }
        Ok(())
    }

    // ---- helpers for the op converters ----

    pub(crate) fn ty(&self, v: ValueId) -> &TensorType {
        self.g.ty(v)
    }

    /// Result types of `op` on `inputs`, failures naming the node.
    pub(crate) fn infer(&self, cx: &Cx, op: &Op, inputs: &[ValueId]) -> Result<Vec<TensorType>> {
        let tys: Vec<&TensorType> = inputs.iter().map(|&v| self.g.ty(v)).collect();
        qc_ir::infer::infer(op, &tys).map_err(|e| cx.err(e.to_string()))
    }

    /// Append a node whose results are the first `n` that inference gives.
    pub(crate) fn emit_n(
        &mut self,
        cx: &Cx,
        op: Op,
        inputs: Vec<ValueId>,
        n: usize,
    ) -> Result<Vec<ValueId>> {
        let mut tys = self.infer(cx, &op, &inputs)?;
        if tys.len() < n {
            return Err(cx.err(format!(
                "uses {n} results but {} has {}",
                op.name(),
                tys.len()
            )));
        }
        tys.truncate(n);
        Ok(self.emit_typed(cx, op, inputs, tys))
    }

    /// Append a node with one (inferred) result.
    pub(crate) fn emit(&mut self, cx: &Cx, op: Op, inputs: Vec<ValueId>) -> Result<ValueId> {
        let v = self.emit_n(cx, op, inputs, 1)?;
        v.first()
            .copied()
            .ok_or_else(|| cx.err("invariant: one result"))
    }

    /// Append a node with one inferred result whose quantization is `quant` (a choice
    /// inference leaves to the builder); the storage type follows the params.
    pub(crate) fn emit_quantized(
        &mut self,
        cx: &Cx,
        op: Op,
        inputs: Vec<ValueId>,
        quant: QuantParams,
    ) -> Result<ValueId> {
        let tys = self.infer(cx, &op, &inputs)?;
        let shape = tys
            .into_iter()
            .next()
            .ok_or_else(|| cx.err("invariant: one result"))?
            .shape;
        let v = self.emit_typed(cx, op, inputs, vec![TensorType::quantized(shape, quant)]);
        v.first()
            .copied()
            .ok_or_else(|| cx.err("invariant: one result"))
    }

    pub(crate) fn emit_typed(
        &mut self,
        cx: &Cx,
        op: Op,
        inputs: Vec<ValueId>,
        tys: Vec<TensorType>,
    ) -> Vec<ValueId> {
        let node = self.g.add_node(op, inputs, tys, cx.node.name.clone());
        self.g.node(node).outputs.clone()
    }

    pub(crate) fn add_const(&mut self, t: Tensor) -> ValueId {
        self.g.add_const(t)
    }

    /// The tensor behind `v` if `v` is a plain (unquantized) constant.
    pub(crate) fn konst(&self, v: ValueId) -> Option<Arc<Tensor>> {
        if self.g.ty(v).quant.is_some() {
            return None;
        }
        self.g.const_of(v).cloned()
    }

    /// Operand `i`, which must be present and constant.
    pub(crate) fn need_const(&self, cx: &Cx, i: usize) -> Result<Arc<Tensor>> {
        let v = cx.input(i)?;
        self.konst(v).ok_or_else(|| cx.must_be_const(i))
    }

    /// Operand `i` if present, which then must be constant.
    pub(crate) fn opt_const(&self, cx: &Cx, i: usize) -> Result<Option<Arc<Tensor>>> {
        match cx.opt(i) {
            None => Ok(None),
            Some(v) => self.konst(v).map(Some).ok_or_else(|| cx.must_be_const(i)),
        }
    }

    /// Operand `i` as a list of integers (a constant 0-D or 1-D integer tensor).
    pub(crate) fn const_ints(&self, cx: &Cx, i: usize) -> Result<Option<Vec<i64>>> {
        let Some(t) = self.opt_const(cx, i)? else {
            return Ok(None);
        };
        if !t.dtype().is_int() || t.dims().len() > 1 {
            return Err(cx.err(format!(
                "input {i} ('{}') must be a 1-D integer tensor, got {}{}",
                cx.input_name(i),
                t.dtype(),
                t.shape()
            )));
        }
        Ok(Some(t.to_i64_vec()))
    }

    /// `v` as a value of quantized type with params `q`: `v` itself when it already
    /// has them; a quantized view of a constant; a graph input of the raw storage
    /// type, which takes the params. Anything else cannot carry the params.
    pub(crate) fn as_quantized(
        &mut self,
        cx: &Cx,
        i: usize,
        v: ValueId,
        q: &QuantParams,
    ) -> Result<ValueId> {
        let ty = self.g.ty(v);
        let storage = qc_ir::DType::from_qtype(q.storage);
        if ty.dtype != storage {
            return Err(cx.err(format!(
                "input {i} ('{}') is {} but its quantization parameters are for {storage}",
                cx.input_name(i),
                ty.dtype
            )));
        }
        if let Some(have) = &ty.quant {
            if have == q {
                return Ok(v);
            }
            return Err(cx.err(format!(
                "input {i} ('{}') is already quantized with other parameters ({have:?}, wanted {q:?}); \
                 requantization between them is not supported here",
                cx.input_name(i)
            )));
        }
        match self.g.value(v).def {
            ValueDef::Const(c) => {
                if let Some(&(_, _, qv)) = self.qconsts.iter().find(|(cc, qq, _)| *cc == c && qq == q) {
                    return Ok(qv);
                }
                let qv = self.g.add_const_value(c, Some(q.clone()));
                self.qconsts.push((c, q.clone(), qv));
                Ok(qv)
            }
            ValueDef::Input(_) => {
                self.g.value_mut(v).ty.quant = Some(q.clone());
                Ok(v)
            }
            ValueDef::Node { .. } => Err(cx.err(format!(
                "input {i} ('{}') is a raw {} result of another op; only constants, graph inputs and \
                 QuantizeLinear results can be dequantized",
                cx.input_name(i),
                ty.dtype
            ))),
        }
    }
}

/// The type of a graph input: declared element type, dims from the model or `bound`.
fn input_type(vi: &ValueInfoProto, bound: Option<&Vec<usize>>) -> Result<TensorType> {
    let name = vi.name.as_str();
    let err = |msg: String| Error::Input {
        input: name.to_string(),
        msg,
    };
    let Some(TypeValue::TensorType(tt)) = vi.type_.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(err(
            "is not a tensor (sequences, maps and optionals are not supported)".into(),
        ));
    };
    let dtype = dtype_from_onnx(tt.elem_type).map_err(|ty| Error::UnsupportedType {
        what: format!("graph input '{name}'"),
        dtype: ty,
    })?;
    let declared = tt.shape.as_ref().map(|s| &s.dim);
    if let Some(b) = bound {
        if let Some(d) = declared {
            if d.len() != b.len() {
                return Err(err(format!(
                    "input_shapes gives rank {} but the model declares rank {}",
                    b.len(),
                    d.len()
                )));
            }
        }
        let ty = TensorType::new(dtype, b.clone());
        ty.numel().map_err(|e| err(e.to_string()))?;
        return Ok(ty);
    }
    let Some(declared) = declared else {
        return Err(err(
            "has no shape in the model; bind it with ImportOptions::input_shapes".into(),
        ));
    };
    let mut dims = Vec::with_capacity(declared.len());
    for (i, d) in declared.iter().enumerate() {
        match d.value {
            Some(DimValue::DimValue(v)) if v > 0 => dims
                .push(usize::try_from(v).map_err(|_| err(format!("dim {i} = {v} is too large")))?),
            _ => {
                return Err(Error::UnboundDim {
                    input: name.to_string(),
                    dim: i,
                })
            }
        }
    }
    let ty = TensorType::new(dtype, dims);
    ty.numel().map_err(|e| err(e.to_string()))?;
    Ok(ty)
}

/// A constant bound to a graph input must match the input's declared type.
fn check_const_input(vi: &ValueInfoProto, t: &Tensor) -> Result<()> {
    let name = vi.name.as_str();
    let err = |msg: String| Error::Input {
        input: name.to_string(),
        msg,
    };
    let Some(TypeValue::TensorType(tt)) = vi.type_.as_ref().and_then(|t| t.value.as_ref()) else {
        return Ok(());
    };
    if let Ok(dtype) = dtype_from_onnx(tt.elem_type) {
        if dtype != t.dtype() {
            return Err(err(format!(
                "is declared {dtype} but const_inputs gives {}",
                t.dtype()
            )));
        }
    }
    if let Some(shape) = tt.shape.as_ref() {
        let ok = shape.dim.len() == t.dims().len()
            && shape.dim.iter().zip(t.dims()).all(|(d, &n)| match d.value {
                Some(DimValue::DimValue(v)) if v > 0 => usize::try_from(v).ok() == Some(n),
                _ => true,
            });
        if !ok {
            return Err(err(format!(
                "the constant's shape {} does not fit the declared shape",
                t.shape()
            )));
        }
    }
    Ok(())
}
