//! Quantization import: QDQ, QOperator and integer ops map to quantized types.
#![allow(clippy::panic)]

mod common;

use common::*;
use qc_ir::{DType, Op, QType, QuantParams, TensorType, ValueDef};

#[test]
fn quantize_linear_per_axis() {
    // Scales along axis 1 (3 channels), given as -3 on a rank-4 input.
    let g = Model::new(13)
        .input(vi("x", FLOAT, &[1, 3, 2, 2]))
        .init(f32s("s", &[3], &[0.5, 0.25, 0.125]))
        .init(int32_data("z", INT8, &[3], &[0, 1, -1]))
        .node(node(
            "QuantizeLinear",
            "q",
            &["x", "s", "z"],
            &["y"],
            vec![ai("axis", -3)],
        ))
        .output("y")
        .import()
        .expect("import");
    let n = only_node(&g);
    assert_eq!(n.op, Op::Quantize);
    let want = QuantParams::per_axis(QType::I8, 1, vec![0.5, 0.25, 0.125], vec![0, 1, -1]);
    assert_eq!(out_ty(&g, 0), &TensorType::quantized([1, 3, 2, 2], want));
    assert_eq!(out_ty(&g, 0).dtype, DType::I8);
}

#[test]
fn quantize_linear_defaults_to_u8_per_tensor_and_f16_scales_convert() {
    // No zero point: u8, zero point 0. The f16 scale 0x3400 is 2^-2 = 0.25.
    let mut s = tensor("s", FLOAT16, &[]);
    s.int32_data = vec![0x3400];
    let g = Model::new(19)
        .input(vi("x", FLOAT, &[4]))
        .init(s)
        .node(node("QuantizeLinear", "q", &["x", "s"], &["y"], vec![]))
        .output("y")
        .import()
        .expect("import");
    assert_eq!(
        out_ty(&g, 0),
        &TensorType::quantized([4], QuantParams::per_tensor(QType::U8, 0.25, 0))
    );
}

#[test]
fn quantize_linear_output_dtype_and_blocked() {
    let g = Model::new(21)
        .input(vi("x", FLOAT, &[4]))
        .init(f32s("s", &[], &[0.5]))
        .node(node(
            "QuantizeLinear",
            "q",
            &["x", "s"],
            &["y"],
            vec![ai("output_dtype", INT8 as i64)],
        ))
        .output("y")
        .import()
        .expect("import");
    assert_eq!(
        out_ty(&g, 0),
        &TensorType::quantized([4], QuantParams::per_tensor(QType::I8, 0.5, 0))
    );

    let err = Model::new(21)
        .input(vi("x", FLOAT, &[4, 4]))
        .init(f32s("s", &[4, 2], &[0.5; 8]))
        .node(node(
            "QuantizeLinear",
            "q",
            &["x", "s"],
            &["y"],
            vec![ai("block_size", 2)],
        ))
        .output("y")
        .import()
        .expect_err("blocked");
    assert!(err.to_string().contains("block_size"), "{err}");
}

#[test]
fn quantize_then_dequantize_with_equal_params_chains_directly() {
    let g = Model::new(13)
        .input(vi("x", FLOAT, &[4]))
        .init(f32s("s", &[], &[0.1]))
        .init(int32_data("z", UINT8, &[], &[128]))
        .node(node(
            "QuantizeLinear",
            "q",
            &["x", "s", "z"],
            &["xq"],
            vec![],
        ))
        .node(node(
            "DequantizeLinear",
            "dq",
            &["xq", "s", "z"],
            &["y"],
            vec![],
        ))
        .output("y")
        .import()
        .expect("import");
    assert_eq!(ops(&g), [&Op::Quantize, &Op::Dequantize]);
    assert_eq!(g.nodes[1].inputs, g.nodes[0].outputs);
    assert_eq!(out_ty(&g, 0), &TensorType::f32([4]));
}

#[test]
fn dequantize_of_constant_is_a_quantized_view_of_the_same_tensor() {
    // Per-channel i8 weights on axis 0 (default axis 1 overridden), and an i32 bias
    // whose zero point is absent.
    let g = Model::new(13)
        .init(int32_data("w", INT8, &[2, 3], &[1, -2, 3, -4, 5, -6]))
        .init(f32s("ws", &[2], &[0.5, 0.25]))
        .init(int32_data("wz", INT8, &[2], &[0, 0]))
        .init(int32_data("b", INT32, &[2], &[100, -100]))
        .init(f32s("bs", &[], &[0.01]))
        .node(node(
            "DequantizeLinear",
            "dqw",
            &["w", "ws", "wz"],
            &["wf"],
            vec![ai("axis", 0)],
        ))
        .node(node(
            "DequantizeLinear",
            "dqb",
            &["b", "bs"],
            &["bf"],
            vec![],
        ))
        .output("wf")
        .output("bf")
        .import()
        .expect("import");
    assert_eq!(ops(&g), [&Op::Dequantize, &Op::Dequantize]);
    let wq = g.nodes[0].inputs[0];
    let ValueDef::Const(c) = g.value(wq).def else {
        panic!("w is not a constant")
    };
    assert_eq!(
        g.consts[c.index()].data(),
        &qc_ir::TensorData::I8(vec![1, -2, 3, -4, 5, -6])
    );
    assert_eq!(
        g.ty(wq).quant,
        Some(QuantParams::per_axis(
            QType::I8,
            0,
            vec![0.5, 0.25],
            vec![0, 0]
        ))
    );
    let bq = g.nodes[1].inputs[0];
    assert_eq!(
        g.ty(bq),
        &TensorType::quantized([2], QuantParams::per_tensor(QType::I32, 0.01, 0))
    );
}

#[test]
fn dequantize_of_a_graph_input_gives_it_the_params() {
    let g = Model::new(13)
        .input(vi("xq", UINT8, &[4]))
        .init(f32s("s", &[], &[0.1]))
        .init(int32_data("z", UINT8, &[], &[3]))
        .node(node(
            "DequantizeLinear",
            "dq1",
            &["xq", "s", "z"],
            &["a"],
            vec![],
        ))
        .node(node(
            "DequantizeLinear",
            "dq2",
            &["xq", "s", "z"],
            &["b"],
            vec![],
        ))
        .output("a")
        .output("b")
        .import()
        .expect("import");
    assert_eq!(
        g.ty(g.inputs[0].value),
        &TensorType::quantized([4], QuantParams::per_tensor(QType::U8, 0.1, 3))
    );

    // Two consumers that disagree.
    let err = Model::new(13)
        .input(vi("xq", UINT8, &[4]))
        .init(f32s("s", &[], &[0.1]))
        .init(f32s("s2", &[], &[0.2]))
        .node(node(
            "DequantizeLinear",
            "dq1",
            &["xq", "s"],
            &["a"],
            vec![],
        ))
        .node(node(
            "DequantizeLinear",
            "dq2",
            &["xq", "s2"],
            &["b"],
            vec![],
        ))
        .output("a")
        .output("b")
        .import()
        .expect_err("conflicting params");
    assert!(err.to_string().contains("node 'dq2'"), "{err}");
}

#[test]
fn qlinear_conv_is_a_conv_on_quantized_types() {
    let g = Model::new(13)
        .input(vi("x", UINT8, &[1, 2, 4, 4]))
        .init(f32s("xs", &[], &[0.1]))
        .init(int32_data("xz", UINT8, &[], &[128]))
        .init(int32_data("w", INT8, &[3, 2, 1, 1], &[1, 2, 3, 4, 5, 6]))
        .init(f32s("ws", &[3], &[0.1, 0.2, 0.3]))
        .init(int32_data("wz", INT8, &[3], &[0, 0, 0]))
        .init(f32s("ys", &[], &[0.05]))
        .init(int32_data("yz", UINT8, &[], &[10]))
        .init(int32_data("b", INT32, &[3], &[7, 8, 9]))
        .node(node(
            "QLinearConv",
            "qconv",
            &["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
            &["y"],
            vec![aints("pads", &[0, 0, 0, 0])],
        ))
        .output("y")
        .import()
        .expect("import");
    let n = only_node(&g);
    let Op::Conv(a) = &n.op else {
        panic!("not a conv: {:?}", n.op)
    };
    assert_eq!(a.kernel, [1, 1]);
    assert_eq!(n.name, "qconv");
    assert_eq!(n.inputs.len(), 3);
    assert_eq!(
        g.ty(n.inputs[0]),
        &TensorType::quantized([1, 2, 4, 4], QuantParams::per_tensor(QType::U8, 0.1, 128))
    );
    assert_eq!(n.inputs[0], g.inputs[0].value);
    assert_eq!(
        g.ty(n.inputs[1]),
        &TensorType::quantized(
            [3, 2, 1, 1],
            QuantParams::per_axis(QType::I8, 0, vec![0.1, 0.2, 0.3], vec![0, 0, 0])
        )
    );
    assert_eq!(g.ty(n.inputs[2]), &TensorType::new(DType::I32, [3]));
    assert_eq!(
        out_ty(&g, 0),
        &TensorType::quantized([1, 3, 4, 4], QuantParams::per_tensor(QType::U8, 0.05, 10))
    );
}

#[test]
fn qlinear_matmul_is_a_matmul_with_per_column_b() {
    let g = Model::new(13)
        .input(vi("a", INT8, &[2, 3]))
        .init(f32s("as", &[], &[0.5]))
        .init(int32_data("az", INT8, &[], &[-1]))
        .init(int32_data("b", INT8, &[3, 2], &[1, 2, 3, 4, 5, 6]))
        .init(f32s("bs", &[2], &[0.25, 0.125]))
        // One zero point shared by both columns.
        .init(int32_data("bz", INT8, &[], &[2]))
        .init(f32s("ys", &[], &[2.0]))
        .init(int32_data("yz", INT8, &[], &[5]))
        .node(node(
            "QLinearMatMul",
            "qmm",
            &["a", "as", "az", "b", "bs", "bz", "ys", "yz"],
            &["y"],
            vec![],
        ))
        .output("y")
        .import()
        .expect("import");
    let n = only_node(&g);
    assert_eq!(
        n.op,
        Op::MatMul {
            act: qc_ir::Activation::None
        }
    );
    assert_eq!(
        g.ty(n.inputs[1]).quant,
        Some(QuantParams::per_axis(
            QType::I8,
            1,
            vec![0.25, 0.125],
            vec![2, 2]
        ))
    );
    assert_eq!(
        out_ty(&g, 0),
        &TensorType::quantized([2, 2], QuantParams::per_tensor(QType::I8, 2.0, 5))
    );
}

#[test]
fn conv_integer_and_matmul_integer_materialize_absent_zero_points() {
    let g = Model::new(13)
        .input(vi("x", UINT8, &[1, 1, 3, 3]))
        .init(int32_data("w", UINT8, &[1, 1, 2, 2], &[1, 1, 1, 1]))
        .input(vi("a", INT8, &[2, 3]))
        .init(int32_data("bm", INT8, &[3, 4], &[0; 12]))
        .init(int32_data("az", INT8, &[], &[3]))
        .node(node("ConvInteger", "ci", &["x", "w"], &["y"], vec![]))
        .node(node(
            "MatMulInteger",
            "mi",
            &["a", "bm", "az"],
            &["z"],
            vec![],
        ))
        .output("y")
        .output("z")
        .import()
        .expect("import");
    assert!(matches!(g.nodes[0].op, Op::ConvInteger(_)));
    assert_eq!(g.nodes[1].op, Op::MatMulInteger);
    for (node, dtypes) in [
        (&g.nodes[0], [DType::U8, DType::U8]),
        (&g.nodes[1], [DType::I8, DType::I8]),
    ] {
        assert_eq!(node.inputs.len(), 4);
        for (k, dt) in dtypes.iter().enumerate() {
            let zp = g
                .const_of(node.inputs[2 + k])
                .expect("zero point is constant");
            assert_eq!(zp.dtype(), *dt);
            assert_eq!(zp.len(), 1);
        }
    }
    // The given a zero point is kept; the absent ones are 0.
    assert_eq!(
        g.const_of(g.nodes[1].inputs[2]).expect("az").to_i64_vec(),
        [3]
    );
    assert_eq!(
        g.const_of(g.nodes[1].inputs[3]).expect("bz").to_i64_vec(),
        [0]
    );
    assert_eq!(
        g.const_of(g.nodes[0].inputs[2]).expect("xz").to_i64_vec(),
        [0]
    );
    assert_eq!(out_ty(&g, 0), &TensorType::new(DType::I32, [1, 1, 2, 2]));
    assert_eq!(out_ty(&g, 1), &TensorType::new(DType::I32, [2, 4]));
}

#[test]
fn dynamic_quantize_linear_has_three_results() {
    let g = Model::new(13)
        .input(vi("x", FLOAT, &[2, 2]))
        .node(node(
            "DynamicQuantizeLinear",
            "dq",
            &["x"],
            &["y", "s", "z"],
            vec![],
        ))
        .output("y")
        .output("s")
        .output("z")
        .import()
        .expect("import");
    assert_eq!(only_node(&g).op, Op::DynamicQuantize);
    assert_eq!(out_ty(&g, 0), &TensorType::new(DType::U8, [2, 2]));
    assert_eq!(out_ty(&g, 1), &TensorType::f32(qc_ir::Shape::scalar()));
    assert_eq!(
        out_ty(&g, 2),
        &TensorType::new(DType::U8, qc_ir::Shape::scalar())
    );
}

#[test]
fn runtime_scale_is_input_must_be_constant() {
    let err = Model::new(13)
        .input(vi("x", FLOAT, &[4]))
        .input(vi("s", FLOAT, &[]))
        .node(node("QuantizeLinear", "q", &["x", "s"], &["y"], vec![]))
        .output("y")
        .import()
        .expect_err("runtime scale");
    assert!(
        matches!(&err, qc_onnx::Error::InputMustBeConstant { input, .. } if input == "s"),
        "{err}"
    );
}
