//! A tiny ModelProto builder for the importer tests.
#![allow(dead_code)]

use onnx_protobuf::{
    attribute_proto::AttributeType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    Message, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use protobuf::{EnumOrUnknown, MessageField};

pub const FLOAT: i32 = 1;
pub const UINT8: i32 = 2;
pub const INT8: i32 = 3;
pub const INT32: i32 = 6;
pub const INT64: i32 = 7;
pub const FLOAT16: i32 = 10;

/// A graph dim: static or symbolic.
pub enum D {
    N(i64),
    S(&'static str),
}

pub fn vi(name: &str, elem: i32, dims: &[i64]) -> ValueInfoProto {
    vi_dims(name, elem, dims.iter().map(|&d| D::N(d)).collect())
}

pub fn vi_dims(name: &str, elem: i32, dims: Vec<D>) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for d in dims {
        let mut dim = tensor_shape_proto::Dimension::new();
        dim.value = Some(match d {
            D::N(v) => tensor_shape_proto::dimension::Value::DimValue(v),
            D::S(s) => tensor_shape_proto::dimension::Value::DimParam(s.to_string()),
        });
        shape.dim.push(dim);
    }
    let mut tt = type_proto::Tensor::new();
    tt.elem_type = elem;
    tt.shape = MessageField::some(shape);
    let mut ty = TypeProto::new();
    ty.value = Some(type_proto::Value::TensorType(tt));
    let mut v = ValueInfoProto::new();
    v.name = name.to_string();
    v.type_ = MessageField::some(ty);
    v
}

/// An output declaration (type and shape are not needed by the importer).
pub fn out(name: &str) -> ValueInfoProto {
    let mut v = ValueInfoProto::new();
    v.name = name.to_string();
    v
}

pub fn tensor(name: &str, elem: i32, dims: &[i64]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.to_string();
    t.data_type = elem;
    t.dims = dims.to_vec();
    t
}

pub fn f32s(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
    let mut t = tensor(name, FLOAT, dims);
    t.float_data = v.to_vec();
    t
}

pub fn i64s(name: &str, dims: &[i64], v: &[i64]) -> TensorProto {
    let mut t = tensor(name, INT64, dims);
    t.int64_data = v.to_vec();
    t
}

/// int8/uint8/int32 (and other int32_data types) from their values.
pub fn int32_data(name: &str, elem: i32, dims: &[i64], v: &[i32]) -> TensorProto {
    let mut t = tensor(name, elem, dims);
    t.int32_data = v.to_vec();
    t
}

fn attr(name: &str, ty: AttributeType) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.type_ = EnumOrUnknown::new(ty);
    a
}

pub fn ai(name: &str, v: i64) -> AttributeProto {
    let mut a = attr(name, AttributeType::INT);
    a.i = v;
    a
}

pub fn af(name: &str, v: f32) -> AttributeProto {
    let mut a = attr(name, AttributeType::FLOAT);
    a.f = v;
    a
}

pub fn aints(name: &str, v: &[i64]) -> AttributeProto {
    let mut a = attr(name, AttributeType::INTS);
    a.ints = v.to_vec();
    a
}

pub fn as_(name: &str, v: &str) -> AttributeProto {
    let mut a = attr(name, AttributeType::STRING);
    a.s = v.as_bytes().to_vec();
    a
}

pub fn at(name: &str, t: TensorProto) -> AttributeProto {
    let mut a = attr(name, AttributeType::TENSOR);
    a.t = MessageField::some(t);
    a
}

pub fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.to_string();
    n.name = name.to_string();
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = outputs.iter().map(|s| s.to_string()).collect();
    n.attribute = attrs;
    n
}

pub struct Model {
    pub opset: i64,
    pub nodes: Vec<NodeProto>,
    pub inputs: Vec<ValueInfoProto>,
    pub outputs: Vec<&'static str>,
    pub inits: Vec<TensorProto>,
}

impl Model {
    pub fn new(opset: i64) -> Model {
        Model {
            opset,
            nodes: vec![],
            inputs: vec![],
            outputs: vec![],
            inits: vec![],
        }
    }
    pub fn input(mut self, v: ValueInfoProto) -> Model {
        self.inputs.push(v);
        self
    }
    pub fn init(mut self, t: TensorProto) -> Model {
        self.inits.push(t);
        self
    }
    pub fn node(mut self, n: NodeProto) -> Model {
        self.nodes.push(n);
        self
    }
    pub fn output(mut self, name: &'static str) -> Model {
        self.outputs.push(name);
        self
    }
    pub fn proto(&self) -> ModelProto {
        let mut g = GraphProto::new();
        g.name = "test".into();
        g.node = self.nodes.clone();
        g.input = self.inputs.clone();
        g.output = self.outputs.iter().map(|o| out(o)).collect();
        g.initializer = self.inits.clone();
        let mut m = ModelProto::new();
        m.ir_version = 8;
        let mut o = OperatorSetIdProto::new();
        o.domain = String::new();
        o.version = self.opset;
        m.opset_import.push(o);
        m.graph = MessageField::some(g);
        m
    }
    pub fn bytes(&self) -> Vec<u8> {
        self.proto().write_to_bytes().expect("serialize")
    }
    pub fn import(&self) -> qc_onnx::Result<qc_ir::Graph> {
        qc_onnx::import(&self.bytes(), &Default::default(), &qc_onnx::NoExternalData)
    }
    pub fn import_with(&self, opts: &qc_onnx::ImportOptions) -> qc_onnx::Result<qc_ir::Graph> {
        qc_onnx::import(&self.bytes(), opts, &qc_onnx::NoExternalData)
    }
}

/// The ops of the graph's nodes, in order.
pub fn ops(g: &qc_ir::Graph) -> Vec<&qc_ir::Op> {
    g.nodes.iter().map(|n| &n.op).collect()
}

/// The single node of `g` (panics in tests otherwise).
pub fn only_node(g: &qc_ir::Graph) -> &qc_ir::Node {
    assert_eq!(g.nodes.len(), 1, "expected one node, got {:?}", ops(g));
    &g.nodes[0]
}

/// The type of graph output `i`.
pub fn out_ty(g: &qc_ir::Graph, i: usize) -> &qc_ir::TensorType {
    g.ty(g.outputs[i].value)
}
