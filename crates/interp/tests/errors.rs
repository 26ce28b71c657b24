//! Malformed inputs, graphs and type combinations give errors naming what is wrong,
//! never panics.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::excessive_precision,
    clippy::cloned_ref_to_slice_refs,
    clippy::too_many_arguments
)]

mod common;

use common::*;
use qc_interp::Error;
use qc_ir::{
    Activation, ConvAttrs, DType, GemmAttrs, Graph, Node, NodeId, Op, QType, QuantParams,
    TensorData, TensorType, ValueId,
};

fn relu_graph() -> Graph {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32(vec![2]));
    let y = node(&mut g, Op::Relu, &[x])[0];
    g.add_output("y", y);
    g
}

#[test]
fn wrong_input_count() {
    let e = qc_interp::run(&relu_graph(), &[], &Default::default()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InputCount {
                expected: 1,
                got: 0
            }
        ),
        "{e}"
    );
}

#[test]
fn wrong_input_dtype_or_shape() {
    let g = relu_graph();
    let e = qc_interp::run(&g, &[f32t(&[3], vec![0.0; 3])], &Default::default()).unwrap_err();
    match e {
        Error::InputMismatch {
            index,
            name,
            expected,
            got,
        } => {
            assert_eq!((index, name.as_str()), (0, "x"));
            assert_eq!((expected.as_str(), got.as_str()), ("f32[2]", "f32[3]"));
        }
        other => panic!("unexpected {other}"),
    }
    let e = qc_interp::run(
        &g,
        &[t(&[2], TensorData::I32(vec![1, 2]))],
        &Default::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::InputMismatch { .. }), "{e}");
}

fn node_error(e: Error) -> (NodeId, &'static str, String, String) {
    match e {
        Error::Node {
            node,
            op,
            name,
            msg,
        } => (node, op, name, msg),
        other => panic!("expected a node error, got {other}"),
    }
}

#[test]
fn raw_integer_bias_on_float_conv_names_the_node() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32(vec![1, 1, 2, 2]));
    let r = node(&mut g, Op::Relu, &[x])[0];
    let w = g.add_const(f32t(&[1, 1, 1, 1], vec![1.0]));
    let b = g.add_const(t(&[1], TensorData::I32(vec![1])));
    let attrs = ConvAttrs {
        kernel: vec![1, 1],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: vec![0; 4],
        group: 1,
        act: Activation::None,
    };
    let y = node_typed(
        &mut g,
        Op::Conv(attrs),
        &[r, w, b],
        vec![TensorType::f32(vec![1, 1, 2, 2])],
    )[0];
    g.node_mut(NodeId(1)).name = "conv_7".into();
    g.add_output("y", y);
    let e = qc_interp::run(
        &g,
        &[f32t(&[1, 1, 2, 2], vec![0.0; 4])],
        &Default::default(),
    )
    .unwrap_err();
    let (node, op, name, msg) = node_error(e);
    assert_eq!((node, op, name.as_str()), (NodeId(1), "conv", "conv_7"));
    assert!(msg.contains("raw i32"), "{msg}");
}

#[test]
fn result_type_disagreeing_with_computation_is_reported() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32(vec![2, 3]));
    let y = node_typed(
        &mut g,
        Op::Transpose { perm: vec![1, 0] },
        &[x],
        vec![TensorType::f32(vec![2, 3])],
    )[0];
    g.add_output("y", y);
    let e = qc_interp::run(&g, &[f32t(&[2, 3], vec![0.0; 6])], &Default::default()).unwrap_err();
    let (_, op, _, msg) = node_error(e);
    assert_eq!(op, "transpose");
    assert!(
        msg.contains("f32[3,2]") && msg.contains("f32[2,3]"),
        "{msg}"
    );
}

#[test]
fn per_axis_params_not_fitting_the_shape_are_rejected() {
    // 3 scales on an axis of size 2.
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32(vec![2]));
    let q = QuantParams::per_axis(QType::U8, 0, vec![1.0, 1.0, 1.0], vec![0, 0, 0]);
    let y = node_typed(
        &mut g,
        Op::Quantize,
        &[x],
        vec![TensorType::quantized(vec![2], q)],
    )[0];
    g.add_output("y", y);
    let e = qc_interp::run(&g, &[f32t(&[2], vec![0.0; 2])], &Default::default()).unwrap_err();
    let (_, op, _, _) = node_error(e);
    assert_eq!(op, "quantize");
}

#[test]
fn quantized_gemm_with_alpha_is_rejected() {
    let mut g = Graph::new();
    let a = g.add_input(
        "a",
        TensorType::quantized(vec![1, 2], pt(QType::U8, 1.0, 0)),
    );
    let b = qconst(
        &mut g,
        t(&[2, 2], TensorData::I8(vec![1, 2, 3, 4])),
        pt(QType::I8, 1.0, 0),
    );
    let attrs = GemmAttrs {
        alpha: 2.0,
        beta: 1.0,
        trans_a: false,
        trans_b: false,
        act: Activation::None,
    };
    let y = node_q(&mut g, Op::Gemm(attrs), &[a, b], pt(QType::U8, 1.0, 0));
    g.add_output("y", y);
    let e = qc_interp::run(
        &g,
        &[t(&[1, 2], TensorData::U8(vec![1, 2]))],
        &Default::default(),
    )
    .unwrap_err();
    assert!(node_error(e).3.contains("alpha"));
}

#[test]
fn bad_geometry_is_an_error_not_a_panic() {
    // Conv weights whose input channels do not match x, with a hand-written result type.
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32(vec![1, 3, 4, 4]));
    let w = g.add_const(f32t(&[2, 2, 3, 3], vec![0.0; 36]));
    let attrs = ConvAttrs {
        kernel: vec![3, 3],
        strides: vec![0, 1],
        dilations: vec![1, 1],
        pads: vec![0; 4],
        group: 1,
        act: Activation::None,
    };
    let y = node_typed(
        &mut g,
        Op::Conv(attrs),
        &[x, w],
        vec![TensorType::f32(vec![1, 2, 2, 2])],
    )[0];
    g.add_output("y", y);
    let e = qc_interp::run(
        &g,
        &[f32t(&[1, 3, 4, 4], vec![0.0; 48])],
        &Default::default(),
    )
    .unwrap_err();
    assert_eq!(node_error(e).1, "conv");
}

#[test]
fn value_used_before_definition() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32(vec![2]));
    // Node 0 reads value 2, which node 1 defines later.
    g.nodes.push(Node {
        op: Op::Relu,
        inputs: vec![ValueId(2)],
        outputs: vec![ValueId(1)],
        name: "a".into(),
    });
    g.values.push(qc_ir::Value {
        ty: TensorType::f32(vec![2]),
        def: qc_ir::ValueDef::Node {
            node: NodeId(0),
            slot: 0,
        },
    });
    g.nodes.push(Node {
        op: Op::Relu,
        inputs: vec![x],
        outputs: vec![ValueId(2)],
        name: "b".into(),
    });
    g.values.push(qc_ir::Value {
        ty: TensorType::f32(vec![2]),
        def: qc_ir::ValueDef::Node {
            node: NodeId(1),
            slot: 0,
        },
    });
    g.add_output("y", ValueId(1));
    let e = qc_interp::run(&g, &[f32t(&[2], vec![0.0; 2])], &Default::default()).unwrap_err();
    assert!(node_error(e).3.contains("before it is defined"));
    // A dangling value id in the outputs.
    let mut g = relu_graph();
    g.outputs[0].value = ValueId(99);
    let e = qc_interp::run(&g, &[f32t(&[2], vec![0.0; 2])], &Default::default()).unwrap_err();
    assert!(matches!(e, Error::Graph(_)), "{e}");
}

#[test]
fn cast_of_a_quantized_value_is_rejected() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::quantized(vec![1], pt(QType::U8, 1.0, 0)));
    let y = node_typed(
        &mut g,
        Op::Cast { to: DType::F32 },
        &[x],
        vec![TensorType::f32(vec![1])],
    )[0];
    g.add_output("y", y);
    let e =
        qc_interp::run(&g, &[t(&[1], TensorData::U8(vec![1]))], &Default::default()).unwrap_err();
    assert_eq!(node_error(e).1, "cast");
}

#[test]
fn float_op_on_raw_integers_is_rejected() {
    let x = t(&[2], TensorData::I32(vec![1, 2]));
    let mut g = Graph::new();
    let xv = g.add_input("x", TensorType::new(DType::I32, vec![2]));
    let y = node_typed(
        &mut g,
        Op::Sigmoid,
        &[xv],
        vec![TensorType::new(DType::I32, vec![2])],
    )[0];
    g.add_output("y", y);
    let e = qc_interp::run(&g, &[x], &Default::default()).unwrap_err();
    assert_eq!(node_error(e).1, "sigmoid");
}
