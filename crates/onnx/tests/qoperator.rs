//! onnxruntime's `com.microsoft` QOperator ops (QLinearAdd, QLinearGlobalAveragePool,
//! QGemm, ...) import as ordinary ops on quantized types; the QOperator fixture models
//! (`fixtures/models/*_qop.onnx`, written by onnxruntime's `quantize_static`) import
//! with every contrib node mapped, the params read back from the files independently.
#![allow(clippy::panic)]

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::*;
use onnx_protobuf::{Message, ModelProto, NodeProto, OperatorSetIdProto};
use qc_ir::{DType, Graph, Op, QType, QuantParams, TensorType};
use qc_onnx::{tensor_from_proto, Error, NoExternalData};

fn ms(mut n: NodeProto) -> NodeProto {
    n.domain = "com.microsoft".into();
    n
}

/// Import `m` with `com.microsoft` opset `version` imported besides ai.onnx.
fn import_ms_version(m: &Model, version: i64) -> qc_onnx::Result<Graph> {
    let mut proto = m.proto();
    let mut o = OperatorSetIdProto::new();
    o.domain = "com.microsoft".into();
    o.version = version;
    proto.opset_import.push(o);
    let bytes = proto.write_to_bytes().expect("serialize");
    qc_onnx::import(&bytes, &Default::default(), &NoExternalData)
}

fn import_ms(m: &Model) -> qc_onnx::Result<Graph> {
    import_ms_version(m, 1)
}

fn u8t(shape: &[usize], s: f32, z: i32) -> TensorType {
    TensorType::quantized(shape.to_vec(), QuantParams::per_tensor(QType::U8, s, z))
}

/// `x: u8[1,2,2,2]` with scale 0.5 / zero point 10, output scale 0.25 / zero point 3.
fn unary_model(op: &str, attrs: Vec<onnx_protobuf::AttributeProto>) -> Model {
    Model::new(13)
        .input(vi("x", UINT8, &[1, 2, 2, 2]))
        .init(f32s("xs", &[], &[0.5]))
        .init(int32_data("xz", UINT8, &[], &[10]))
        .init(f32s("ys", &[], &[0.25]))
        .init(int32_data("yz", UINT8, &[], &[3]))
        .node(ms(node(
            op,
            "q",
            &["x", "xs", "xz", "ys", "yz"],
            &["y"],
            attrs,
        )))
        .output("y")
}

#[test]
fn qlinear_add_is_an_add_on_quantized_types() {
    // B is a constant without a zero point (absent = 0); C's zero point is absent too.
    let g = import_ms(
        &Model::new(13)
            .input(vi("a", UINT8, &[1, 3]))
            .init(f32s("as", &[], &[0.5]))
            .init(int32_data("az", UINT8, &[], &[128]))
            .init(int32_data("b", UINT8, &[3], &[1, 2, 3]))
            .init(f32s("bs", &[], &[0.125]))
            .init(f32s("cs", &[], &[0.75]))
            .node(ms(node(
                "QLinearAdd",
                "qadd",
                &["a", "as", "az", "b", "bs", "", "cs"],
                &["c"],
                vec![],
            )))
            .output("c"),
    )
    .expect("import");
    let n = only_node(&g);
    assert_eq!(
        n.op,
        Op::Add {
            act: qc_ir::Activation::None
        }
    );
    assert_eq!(n.name, "qadd");
    assert_eq!(n.inputs[0], g.inputs[0].value);
    assert_eq!(g.ty(n.inputs[0]), &u8t(&[1, 3], 0.5, 128));
    assert_eq!(g.ty(n.inputs[1]), &u8t(&[3], 0.125, 0));
    assert_eq!(out_ty(&g, 0), &u8t(&[1, 3], 0.75, 0));
}

#[test]
fn qlinear_mul_keeps_a_signed_storage() {
    let g = import_ms(
        &Model::new(13)
            .input(vi("a", INT8, &[4]))
            .input(vi("b", INT8, &[4]))
            .init(f32s("s", &[], &[0.5]))
            .init(int32_data("z", INT8, &[], &[-3]))
            .init(f32s("cs", &[], &[2.0]))
            .init(int32_data("cz", INT8, &[], &[7]))
            .node(ms(node(
                "QLinearMul",
                "qmul",
                &["a", "s", "z", "b", "s", "z", "cs", "cz"],
                &["c"],
                vec![],
            )))
            .output("c"),
    )
    .expect("import");
    let n = only_node(&g);
    assert_eq!(n.op, Op::Mul);
    let q = |s, z| TensorType::quantized([4], QuantParams::per_tensor(QType::I8, s, z));
    assert_eq!(g.ty(n.inputs[1]), &q(0.5, -3));
    assert_eq!(out_ty(&g, 0), &q(2.0, 7));
}

#[test]
fn qlinear_unary_ops() {
    let g = import_ms(&unary_model(
        "QLinearGlobalAveragePool",
        vec![ai("channels_last", 0)],
    ))
    .expect("gap");
    assert_eq!(only_node(&g).op, Op::GlobalAveragePool);
    assert_eq!(g.ty(g.inputs[0].value), &u8t(&[1, 2, 2, 2], 0.5, 10));
    assert_eq!(out_ty(&g, 0), &u8t(&[1, 2, 1, 1], 0.25, 3));

    let g = import_ms(&unary_model("QLinearLeakyRelu", vec![af("alpha", 0.2)])).expect("leaky");
    assert_eq!(only_node(&g).op, Op::LeakyRelu { alpha: 0.2 });
    assert_eq!(out_ty(&g, 0), &u8t(&[1, 2, 2, 2], 0.25, 3));
    // The schema's default alpha.
    let g = import_ms(&unary_model("QLinearLeakyRelu", vec![])).expect("leaky default");
    assert_eq!(only_node(&g).op, Op::LeakyRelu { alpha: 0.01 });

    let g = import_ms(&unary_model("QLinearSigmoid", vec![])).expect("sigmoid");
    assert_eq!(only_node(&g).op, Op::Sigmoid);
    assert_eq!(out_ty(&g, 0), &u8t(&[1, 2, 2, 2], 0.25, 3));

    let g = import_ms(&unary_model(
        "QLinearAveragePool",
        vec![
            aints("kernel_shape", &[2, 2]),
            ai("count_include_pad", 1),
            aints("pads", &[1, 1, 0, 0]),
        ],
    ))
    .expect("average pool");
    let Op::AveragePool {
        pool,
        count_include_pad,
    } = &only_node(&g).op
    else {
        panic!("not an average pool: {:?}", only_node(&g).op)
    };
    assert_eq!(
        (&pool.kernel[..], &pool.pads[..], *count_include_pad),
        (&[2, 2][..], &[1, 1, 0, 0][..], true)
    );
    // (2 + 1 - 2) / 1 + 1 = 2 per spatial axis.
    assert_eq!(out_ty(&g, 0), &u8t(&[1, 2, 2, 2], 0.25, 3));
}

#[test]
fn channels_last_is_rejected_by_name() {
    for op in ["QLinearGlobalAveragePool", "QLinearAveragePool"] {
        let mut attrs = vec![ai("channels_last", 1)];
        if op == "QLinearAveragePool" {
            attrs.push(aints("kernel_shape", &[2, 2]));
        }
        let err = import_ms(&unary_model(op, attrs)).expect_err(op);
        let msg = err.to_string();
        assert!(
            matches!(err, Error::Node { .. }) && msg.contains("channels_last") && msg.contains(op),
            "{op}: {msg}"
        );
    }
}

/// `QLinearConcat` of `x0: u8[1,1,2]` and `x1: u8[1,2,2]` along axis 1.
fn concat_model(x1_scale: f32, y_scale: f32) -> Model {
    Model::new(13)
        .input(vi("x0", UINT8, &[1, 1, 2]))
        .input(vi("x1", UINT8, &[1, 2, 2]))
        .init(f32s("s0", &[], &[0.5]))
        .init(f32s("s1", &[], &[x1_scale]))
        .init(int32_data("z", UINT8, &[], &[4]))
        .init(f32s("ys", &[], &[y_scale]))
        .node(ms(node(
            "QLinearConcat",
            "qcat",
            &["ys", "z", "x0", "s0", "z", "x1", "s1", "z"],
            &["y"],
            vec![ai("axis", -2)],
        )))
        .output("y")
}

#[test]
fn qlinear_concat_of_unequal_params_takes_the_output_params() {
    let g = import_ms(&concat_model(0.25, 1.0)).expect("import");
    let n = only_node(&g);
    assert_eq!(n.op, Op::Concat { axis: 1 });
    assert_eq!(g.ty(n.inputs[1]), &u8t(&[1, 2, 2], 0.25, 4));
    assert_eq!(out_ty(&g, 0), &u8t(&[1, 3, 2], 1.0, 4));
}

#[test]
fn qlinear_concat_of_equal_params() {
    // Output params equal to the inputs': a plain concat.
    let g = import_ms(&concat_model(0.5, 0.5)).expect("import");
    assert_eq!(only_node(&g).op, Op::Concat { axis: 1 });
    assert_eq!(out_ty(&g, 0), &u8t(&[1, 3, 2], 0.5, 4));
    // Different output params: the concat's own params are implied, then a requantize.
    let g = import_ms(&concat_model(0.5, 1.0)).expect("import");
    assert_eq!(ops(&g), [&Op::Concat { axis: 1 }, &Op::Requantize]);
    assert_eq!(g.ty(g.nodes[0].outputs[0]), &u8t(&[1, 3, 2], 0.5, 4));
    assert_eq!(out_ty(&g, 0), &u8t(&[1, 3, 2], 1.0, 4));
}

#[test]
fn qlinear_concat_checks_its_operand_triples_and_axis() {
    let mut m = concat_model(0.5, 1.0);
    m.nodes[0].input.pop();
    let err = import_ms(&m).expect_err("7 inputs");
    assert!(err.to_string().contains("triples"), "{err}");
    let mut m = concat_model(0.5, 1.0);
    m.nodes[0].attribute.clear();
    let err = import_ms(&m).expect_err("no axis");
    assert!(err.to_string().contains("'axis'"), "{err}");
}

/// `QGemm` of `a: u8[1,3]` and constant `b: i8[2,3]` (transB) with bias and output params.
fn qgemm_model(attrs: Vec<onnx_protobuf::AttributeProto>, with_y: bool) -> Model {
    let mut inputs = vec!["a", "as", "az", "b", "bs", "bz", "c"];
    if with_y {
        inputs.extend(["ys", "yz"]);
    }
    Model::new(13)
        .input(vi("a", UINT8, &[1, 3]))
        .init(f32s("as", &[], &[0.5]))
        .init(int32_data("az", UINT8, &[], &[100]))
        .init(int32_data("b", INT8, &[2, 3], &[1, -2, 3, -4, 5, -6]))
        .init(f32s("bs", &[2], &[0.25, 0.125]))
        .init(int32_data("bz", INT8, &[2], &[0, 0]))
        .init(int32_data("c", INT32, &[2], &[-9, 11]))
        .init(f32s("ys", &[], &[0.0625]))
        .init(int32_data("yz", UINT8, &[], &[50]))
        .node(ms(node("QGemm", "fc", &inputs, &["y"], attrs)))
        .output("y")
}

#[test]
fn qgemm_is_a_gemm_with_per_column_b() {
    let g = import_ms(&qgemm_model(
        vec![ai("transB", 1), af("alpha", 1.0), ai("transA", 0)],
        true,
    ))
    .expect("import");
    let n = only_node(&g);
    let Op::Gemm(a) = &n.op else {
        panic!("not a gemm: {:?}", n.op)
    };
    assert_eq!(
        (a.alpha, a.beta, a.trans_a, a.trans_b),
        (1.0, 1.0, false, true)
    );
    assert_eq!(g.ty(n.inputs[0]), &u8t(&[1, 3], 0.5, 100));
    // With transB, B is [N, K]: its columns of the product are B's rows, axis 0.
    assert_eq!(
        g.ty(n.inputs[1]),
        &TensorType::quantized(
            [2, 3],
            QuantParams::per_axis(QType::I8, 0, vec![0.25, 0.125], vec![0, 0])
        )
    );
    assert_eq!(g.ty(n.inputs[2]), &TensorType::new(DType::I32, [2]));
    assert_eq!(out_ty(&g, 0), &u8t(&[1, 2], 0.0625, 50));
}

#[test]
fn qgemm_without_trans_b_quantizes_b_along_axis_1() {
    let mut m = qgemm_model(vec![], true);
    // B as [K, N] = [3, 2].
    for t in m.inits.iter_mut().filter(|t| t.name == "b") {
        t.dims = vec![3, 2];
    }
    let g = import_ms(&m).expect("import");
    let n = only_node(&g);
    assert_eq!(
        g.ty(n.inputs[1]).quant.as_ref().and_then(|q| q.axis),
        Some(1)
    );
    assert_eq!(out_ty(&g, 0).shape.dims(), [1, 2]);
}

#[test]
fn qgemm_rejects_what_the_ir_cannot_say() {
    let err =
        import_ms(&qgemm_model(vec![ai("transB", 1), af("alpha", 0.5)], true)).expect_err("alpha");
    assert!(err.to_string().contains("alpha = 0.5"), "{err}");
    let err = import_ms(&qgemm_model(vec![ai("transB", 1)], false)).expect_err("float output");
    assert!(err.to_string().contains("float result"), "{err}");
}

#[test]
fn contrib_qlinear_conv_with_nchw_layout() {
    let m = |channels_last: i64| {
        Model::new(13)
            .input(vi("x", UINT8, &[1, 1, 3, 3]))
            .init(f32s("xs", &[], &[0.1]))
            .init(int32_data("xz", UINT8, &[], &[128]))
            .init(int32_data("w", INT8, &[2, 1, 1, 1], &[3, -3]))
            .init(f32s("ws", &[2], &[0.1, 0.2]))
            .init(int32_data("wz", INT8, &[2], &[0, 0]))
            .init(f32s("ys", &[], &[0.05]))
            .init(int32_data("yz", UINT8, &[], &[10]))
            .node(ms(node(
                "QLinearConv",
                "qconv",
                &["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"],
                &["y"],
                vec![ai("channels_last", channels_last)],
            )))
            .output("y")
    };
    let g = import_ms(&m(0)).expect("nchw");
    assert!(matches!(only_node(&g).op, Op::Conv(_)));
    assert_eq!(out_ty(&g, 0), &u8t(&[1, 2, 3, 3], 0.05, 10));
    let err = import_ms(&m(1)).expect_err("nhwc");
    assert!(err.to_string().contains("channels_last"), "{err}");
}

#[test]
fn contrib_opset_other_than_1_is_rejected() {
    let err = import_ms_version(&unary_model("QLinearSigmoid", vec![]), 2).expect_err("v2");
    let msg = err.to_string();
    assert!(
        msg.contains("com.microsoft opset 2") && msg.contains("version 1"),
        "{msg}"
    );
}

#[test]
fn contrib_ops_qc_does_not_know_stay_unsupported() {
    let err = import_ms(&unary_model("QLinearReduceMean", vec![])).expect_err("unknown");
    assert!(
        matches!(&err, Error::UnsupportedOp { domain, opset: 1, .. } if domain == "com.microsoft"),
        "{err}"
    );
}

// ---- the fixture models ----

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

/// A fixture model's proto, and its initializers decoded (read without the importer).
fn load_proto(name: &str) -> (ModelProto, HashMap<String, qc_ir::Tensor>) {
    let bytes = std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let m = ModelProto::parse_from_bytes(&bytes).expect("parse");
    let inits = m
        .graph
        .initializer
        .iter()
        .map(|t| {
            let v = tensor_from_proto(t, &NoExternalData).expect("initializer");
            (t.name.clone(), v)
        })
        .collect();
    (m, inits)
}

fn import_fixture(name: &str) -> Graph {
    let bytes = std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    qc_onnx::import(&bytes, &Default::default(), &NoExternalData)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Per-tensor params from a node's (scale, zero point) initializer names.
fn params(inits: &HashMap<String, qc_ir::Tensor>, s: &str, z: &str) -> QuantParams {
    let scale = inits[s].to_f32_vec();
    let zp = &inits[z];
    let storage = zp.dtype().qtype().expect("quantized zero point");
    assert_eq!(scale.len(), 1, "{s}");
    QuantParams::per_tensor(storage, scale[0], zp.to_i64_vec()[0] as i32)
}

/// Every node of a QOperator fixture maps to the IR op named in the table, in order,
/// and each contrib op's result carries the output params its node names.
fn check_qop_fixture(name: &str) {
    let (m, inits) = load_proto(name);
    let g = import_fixture(name);
    let want_op = |n: &NodeProto| match n.op_type.as_str() {
        "QuantizeLinear" => "quantize",
        "DequantizeLinear" => "dequantize",
        "QLinearConv" => "conv",
        "QLinearAdd" => "add",
        "QLinearGlobalAveragePool" => "global_average_pool",
        "QGemm" => "gemm",
        "MaxPool" => "max_pool",
        "Flatten" => "flatten",
        other => panic!("{name}: the fixture has an op this test does not expect: {other}"),
    };
    let want: Vec<&str> = m.graph.node.iter().map(want_op).collect();
    let got: Vec<&str> = g.nodes.iter().map(|n| n.op.name()).collect();
    assert_eq!(got, want, "{name}");
    let contrib = m.graph.node.iter().filter(|n| n.domain == "com.microsoft");
    let mut seen = 0;
    for (n, irn) in m.graph.node.iter().zip(&g.nodes) {
        if n.domain != "com.microsoft" {
            continue;
        }
        seen += 1;
        // The output (scale, zero point) inputs of each schema.
        let (s, z) = match n.op_type.as_str() {
            "QLinearAdd" => (6, 7),
            "QLinearGlobalAveragePool" => (3, 4),
            "QGemm" => (7, 8),
            other => panic!("{other}"),
        };
        let want = params(&inits, &n.input[s], &n.input[z]);
        let got = g.ty(irn.outputs[0]);
        assert_eq!(got.quant.as_ref(), Some(&want), "{name}: {}", n.name);
        assert_eq!(got.dtype, DType::U8, "{name}: {}", n.name);
        if n.op_type == "QGemm" {
            // Per-column weights of a transB gemm: axis 0, one scale per output.
            let b = g.ty(irn.inputs[1]).quant.clone().expect("quantized b");
            assert_eq!(b.axis, Some(0));
            assert_eq!(b.scales, inits[&n.input[4]].to_f32_vec());
            assert_eq!(g.ty(irn.inputs[2]).dtype, DType::I32);
        }
    }
    assert_eq!(seen, contrib.count());
    assert!(seen >= 3, "{name}: only {seen} contrib nodes");
    qc_ir::verify::verify(&g).expect("verifies");
}

#[test]
fn cnn_qop_fixture_imports() {
    check_qop_fixture("cnn_qop.onnx");
}

#[test]
fn mobilenetv2_qop_fixture_imports() {
    check_qop_fixture("mobilenetv2_qop.onnx");
}
