//! Import of individual ops: the IR op, its resolved attributes and result types.
//! Expected values are worked out by hand in the comments.
#![allow(clippy::panic)]

mod common;

use common::*;
use qc_ir::{Activation, DType, Op, TensorType};

#[test]
fn conv_same_upper_5x5_k3_s2() {
    // out = ceil(5 / 2) = 3; total = (3 - 1) * 2 + 3 - 5 = 2 → begin 1, end 1.
    let g = Model::new(13)
        .input(vi("x", FLOAT, &[1, 1, 5, 5]))
        .init(f32s("w", &[1, 1, 3, 3], &[0.0; 9]))
        .node(node(
            "Conv",
            "conv0",
            &["x", "w"],
            &["y"],
            vec![as_("auto_pad", "SAME_UPPER"), aints("strides", &[2, 2])],
        ))
        .output("y")
        .import()
        .expect("import");
    let n = only_node(&g);
    assert_eq!(n.name, "conv0");
    let Op::Conv(a) = &n.op else {
        panic!("not a conv: {:?}", n.op)
    };
    assert_eq!(a.kernel, [3, 3]); // from w, no kernel_shape attribute
    assert_eq!(a.strides, [2, 2]);
    assert_eq!(a.dilations, [1, 1]);
    assert_eq!(a.pads, [1, 1, 1, 1]);
    assert_eq!(a.group, 1);
    assert_eq!(out_ty(&g, 0), &TensorType::f32([1, 1, 3, 3]));
}

#[test]
fn conv_same_upper_and_lower_put_the_odd_pad_at_opposite_ends() {
    // 6x6, k3 s2: out = 3, total = (3 - 1) * 2 + 3 - 6 = 1 → UPPER (0, 1), LOWER (1, 0).
    for (mode, pads) in [("SAME_UPPER", [0, 0, 1, 1]), ("SAME_LOWER", [1, 1, 0, 0])] {
        let g = Model::new(13)
            .input(vi("x", FLOAT, &[1, 2, 6, 6]))
            .init(f32s("w", &[2, 1, 3, 3], &[0.0; 18]))
            .node(node(
                "Conv",
                "",
                &["x", "w"],
                &["y"],
                vec![
                    as_("auto_pad", mode),
                    aints("strides", &[2, 2]),
                    ai("group", 2),
                ],
            ))
            .output("y")
            .import()
            .expect("import");
        let n = only_node(&g);
        assert_eq!(n.name, "");
        let Op::Conv(a) = &n.op else {
            panic!("not a conv")
        };
        assert_eq!(a.pads, pads, "{mode}");
        assert_eq!(a.group, 2);
        assert_eq!(out_ty(&g, 0).shape.dims(), [1, 2, 3, 3]);
    }
}

#[test]
fn conv_dilated_same_upper() {
    // 7 wide, k3 d2 (effective 5) s1: out 7, total = 6 + 5 - 7 = 4 → (2, 2).
    let g = Model::new(13)
        .input(vi("x", FLOAT, &[1, 1, 7]))
        .init(f32s("w", &[1, 1, 3], &[0.0; 3]))
        .node(node(
            "Conv",
            "c",
            &["x", "w"],
            &["y"],
            vec![as_("auto_pad", "SAME_UPPER"), aints("dilations", &[2])],
        ))
        .output("y")
        .import()
        .expect("import");
    let Op::Conv(a) = &only_node(&g).op else {
        panic!("not a conv")
    };
    assert_eq!(a.pads, [2, 2]);
}

#[test]
fn conv_transpose_output_shape_becomes_output_padding() {
    // x 3x3, k3, strides (3, 2): natural sizes 3*2+3 = 9 and 2*2+3 = 7; output_shape
    // (10, 8) adds one at the end of each axis.
    let g = Model::new(13)
        .input(vi("x", FLOAT, &[1, 1, 3, 3]))
        .init(f32s("w", &[1, 2, 3, 3], &[0.0; 18]))
        .node(node(
            "ConvTranspose",
            "ct",
            &["x", "w"],
            &["y"],
            vec![aints("strides", &[3, 2]), aints("output_shape", &[10, 8])],
        ))
        .output("y")
        .import()
        .expect("import");
    let Op::ConvTranspose(a) = &only_node(&g).op else {
        panic!("not a conv_transpose")
    };
    assert_eq!(a.pads, [0, 0, 0, 0]);
    assert_eq!(a.output_padding, [1, 1]);
    assert_eq!(out_ty(&g, 0).shape.dims(), [1, 2, 10, 8]);
}

#[test]
fn conv_transpose_same_upper() {
    // x 3, k3 s2: target 3 * 2 = 6, full = 2 * 2 + 3 = 7, total 1 → SAME_UPPER (0, 1).
    let g = Model::new(13)
        .input(vi("x", FLOAT, &[1, 1, 3, 3]))
        .init(f32s("w", &[1, 1, 3, 3], &[0.0; 9]))
        .node(node(
            "ConvTranspose",
            "ct",
            &["x", "w"],
            &["y"],
            vec![aints("strides", &[2, 2]), as_("auto_pad", "SAME_UPPER")],
        ))
        .output("y")
        .import()
        .expect("import");
    let Op::ConvTranspose(a) = &only_node(&g).op else {
        panic!("not a conv_transpose")
    };
    assert_eq!(a.pads, [0, 0, 1, 1]);
    assert_eq!(a.output_padding, [0, 0]);
    assert_eq!(out_ty(&g, 0).shape.dims(), [1, 1, 6, 6]);
}

#[test]
fn clip_attributes_before_opset_11() {
    let g = Model::new(10)
        .input(vi("x", FLOAT, &[4]))
        .node(node(
            "Clip",
            "c",
            &["x"],
            &["y"],
            vec![af("min", -0.5), af("max", 6.0)],
        ))
        .output("y")
        .import()
        .expect("import");
    assert_eq!(
        only_node(&g).op,
        Op::Clip {
            min: Some(-0.5),
            max: Some(6.0)
        }
    );
}

#[test]
fn clip_inputs_from_opset_11() {
    // min given as an initializer, max absent (empty name).
    let g = Model::new(13)
        .input(vi("x", INT32, &[4]))
        .init(int32_data("lo", INT32, &[], &[-3]))
        .node(node("Clip", "c", &["x", "lo", ""], &["y"], vec![]))
        .output("y")
        .import()
        .expect("import");
    assert_eq!(
        only_node(&g).op,
        Op::Clip {
            min: Some(-3.0),
            max: None
        }
    );

    // A runtime bound is an error naming the input.
    let err = Model::new(13)
        .input(vi("x", FLOAT, &[4]))
        .input(vi("hi", FLOAT, &[]))
        .node(node("Clip", "c", &["x", "", "hi"], &["y"], vec![]))
        .output("y")
        .import()
        .expect_err("runtime max");
    match err {
        qc_onnx::Error::InputMustBeConstant { node, op, input } => {
            assert_eq!(
                (node.as_str(), op.as_str(), input.as_str()),
                ("c", "Clip", "hi")
            );
        }
        e => panic!("wrong error {e}"),
    }
}

#[test]
fn squeeze_axes_attribute_at_opset_11() {
    // [1, 3, 1, 2] squeezed at (0, -2) → axes 0 and 2 → [3, 2].
    let g = Model::new(11)
        .input(vi("x", FLOAT, &[1, 3, 1, 2]))
        .node(node(
            "Squeeze",
            "s",
            &["x"],
            &["y"],
            vec![aints("axes", &[-2, 0])],
        ))
        .output("y")
        .import()
        .expect("import");
    assert_eq!(only_node(&g).op, Op::Squeeze { axes: vec![0, 2] });
    assert_eq!(out_ty(&g, 0).shape.dims(), [3, 2]);
}

#[test]
fn squeeze_without_axes_removes_all_ones_and_unsqueeze_input_at_13() {
    let g = Model::new(13)
        .input(vi("x", FLOAT, &[1, 3, 1, 2]))
        .init(i64s("ax", &[2], &[-1, 1]))
        .node(node("Squeeze", "s", &["x"], &["t"], vec![]))
        .node(node("Unsqueeze", "u", &["t", "ax"], &["y"], vec![]))
        .output("y")
        .import()
        .expect("import");
    // Unsqueeze of [3, 2] at (-1, 1) with result rank 4 → axes 1 and 3 → [3, 1, 2, 1].
    assert_eq!(
        ops(&g),
        [
            &Op::Squeeze { axes: vec![0, 2] },
            &Op::Unsqueeze { axes: vec![1, 3] }
        ]
    );
    assert_eq!(out_ty(&g, 0).shape.dims(), [3, 1, 2, 1]);
}

#[test]
fn softmax_opset_11_coerces_to_2d() {
    // [2, 3, 4] at axis 1 → [2, 12], softmax over axis 1, back to [2, 3, 4].
    let g = Model::new(11)
        .input(vi("x", FLOAT, &[2, 3, 4]))
        .node(node("Softmax", "sm", &["x"], &["y"], vec![ai("axis", 1)]))
        .output("y")
        .import()
        .expect("import");
    assert_eq!(
        ops(&g),
        [
            &Op::Reshape { shape: vec![2, 12] },
            &Op::Softmax { axis: 1 },
            &Op::Reshape {
                shape: vec![2, 3, 4]
            }
        ]
    );
    assert!(g.nodes.iter().all(|n| n.name == "sm"));
    assert_eq!(out_ty(&g, 0).shape.dims(), [2, 3, 4]);
}

#[test]
fn softmax_last_axis_is_one_op_in_both_forms() {
    for (opset, attrs) in [(11, vec![ai("axis", 2)]), (13, vec![])] {
        let g = Model::new(opset)
            .input(vi("x", FLOAT, &[2, 3, 4]))
            .node(node("Softmax", "sm", &["x"], &["y"], attrs))
            .output("y")
            .import()
            .expect("import");
        assert_eq!(ops(&g), [&Op::Softmax { axis: 2 }], "opset {opset}");
    }
}

#[test]
fn shape_gather_unsqueeze_concat_reshape_folds_to_a_constant_shape() {
    // The PyTorch idiom x.view(x.size(0), -1): Shape → Gather(0) → Unsqueeze → Concat
    // with [-1] → Reshape. x is [2, 3, 4], so the target is [2, 12].
    let g = Model::new(13)
        .input(vi("x", FLOAT, &[2, 3, 4]))
        .init(i64s("zero", &[], &[0]))
        .init(i64s("ax0", &[1], &[0]))
        .init(i64s("minus1", &[1], &[-1]))
        .node(node("Shape", "shape", &["x"], &["s"], vec![]))
        .node(node(
            "Gather",
            "gather",
            &["s", "zero"],
            &["n"],
            vec![ai("axis", 0)],
        ))
        .node(node("Unsqueeze", "unsq", &["n", "ax0"], &["n1"], vec![]))
        .node(node(
            "Concat",
            "cat",
            &["n1", "minus1"],
            &["target"],
            vec![ai("axis", 0)],
        ))
        .node(node("Reshape", "view", &["x", "target"], &["y"], vec![]))
        .output("y")
        .import()
        .expect("import");
    let n = only_node(&g);
    assert_eq!(n.op, Op::Reshape { shape: vec![2, 12] });
    assert_eq!(n.name, "view");
}

#[test]
fn shape_arithmetic_on_integer_constants_folds() {
    // Shape of [2, 3, 4] sliced to the last two dims (opset 15 start), times 2 → [6, 8];
    // ConstantOfShape of that (value 1.5 f32) is a constant of 48 elements.
    let g = Model::new(15)
        .input(vi("x", FLOAT, &[2, 3, 4]))
        .init(i64s("two", &[], &[2]))
        .node(node("Shape", "", &["x"], &["s"], vec![ai("start", -2)]))
        .node(node("Mul", "", &["s", "two"], &["d"], vec![]))
        .node(node(
            "ConstantOfShape",
            "",
            &["d"],
            &["y"],
            vec![at("value", f32s("", &[1], &[1.5]))],
        ))
        .output("d")
        .output("y")
        .import()
        .expect("import");
    assert!(g.nodes.is_empty(), "{:?}", ops(&g));
    let d = g.const_of(g.outputs[0].value).expect("d is constant");
    assert_eq!(d.to_i64_vec(), [6, 8]);
    let y = g.const_of(g.outputs[1].value).expect("y is constant");
    assert_eq!(y.dims(), [6, 8]);
    assert!(y.as_f32().expect("f32").iter().all(|&v| v == 1.5));
}

#[test]
fn slice_folds_with_attributes_and_inputs() {
    // data [0..6) as [2, 3]; rows 0.., columns 1..3 → [[1, 2], [4, 5]].
    let data = i64s("data", &[2, 3], &[0, 1, 2, 3, 4, 5]);
    let g = Model::new(9)
        .init(data.clone())
        .node(node(
            "Slice",
            "",
            &["data"],
            &["y"],
            vec![
                aints("starts", &[1]),
                aints("ends", &[3]),
                aints("axes", &[1]),
            ],
        ))
        .output("y")
        .import()
        .expect("opset 9");
    assert_eq!(
        g.const_of(g.outputs[0].value).expect("const").to_i64_vec(),
        [1, 2, 4, 5]
    );

    // Opset 13: axis -2 (rows) from the end backwards with step -1 → rows [1, 0].
    let g = Model::new(13)
        .init(data)
        .init(i64s("st", &[1], &[-1]))
        .init(i64s("en", &[1], &[i64::MIN]))
        .init(i64s("ax", &[1], &[-2]))
        .init(i64s("sp", &[1], &[-1]))
        .node(node(
            "Slice",
            "",
            &["data", "st", "en", "ax", "sp"],
            &["y"],
            vec![],
        ))
        .output("y")
        .import()
        .expect("opset 13");
    let y = g.const_of(g.outputs[0].value).expect("const");
    assert_eq!(y.dims(), [2, 3]);
    assert_eq!(y.to_i64_vec(), [3, 4, 5, 0, 1, 2]);
}

#[test]
fn reshape_zero_copies_unless_allowzero() {
    // [2, 3, 4] with (0, -1) → [2, 12].
    let g = Model::new(14)
        .input(vi("x", FLOAT, &[2, 3, 4]))
        .init(i64s("s", &[2], &[0, -1]))
        .node(node("Reshape", "", &["x", "s"], &["y"], vec![]))
        .output("y")
        .import()
        .expect("import");
    assert_eq!(only_node(&g).op, Op::Reshape { shape: vec![2, 12] });
    // With allowzero=1 the 0 is a real zero-size dim, which cannot hold 24 elements.
    let err = Model::new(14)
        .input(vi("x", FLOAT, &[2, 3, 4]))
        .init(i64s("s", &[2], &[0, -1]))
        .node(node(
            "Reshape",
            "r",
            &["x", "s"],
            &["y"],
            vec![ai("allowzero", 1)],
        ))
        .output("y")
        .import()
        .expect_err("allowzero");
    assert!(
        err.to_string().contains("node 'r' (Reshape, opset 14)"),
        "{err}"
    );
}

#[test]
fn reshape_of_a_runtime_shape_names_the_input() {
    let err = Model::new(13)
        .input(vi("x", FLOAT, &[2, 3]))
        .input(vi("shape", INT64, &[1]))
        .node(node("Reshape", "r", &["x", "shape"], &["y"], vec![]))
        .output("y")
        .import()
        .expect_err("runtime shape");
    assert!(
        matches!(&err, qc_onnx::Error::InputMustBeConstant { input, .. } if input == "shape"),
        "{err}"
    );
    assert!(err.to_string().contains("const_inputs"), "{err}");

    // Bound as a constant it imports.
    let mut opts = qc_onnx::ImportOptions::default();
    opts.const_inputs.insert(
        "shape".into(),
        qc_ir::Tensor::new([1], qc_ir::TensorData::I64(vec![6])).expect("tensor"),
    );
    let g = Model::new(13)
        .input(vi("x", FLOAT, &[2, 3]))
        .input(vi("shape", INT64, &[1]))
        .node(node("Reshape", "r", &["x", "shape"], &["y"], vec![]))
        .output("y")
        .import_with(&opts)
        .expect("bound");
    assert_eq!(only_node(&g).op, Op::Reshape { shape: vec![6] });
    assert_eq!(g.inputs.len(), 1);
}

#[test]
fn pad_opset_18_axes_and_negative_pads() {
    // rank 3; axes (-1, 1) with pads begins (2, -1), ends (0, 1):
    // axis 2 gets (2, 0), axis 1 gets (-1, 1) → [0, -1, 2, 0, 1, 0].
    let g = Model::new(18)
        .input(vi("x", FLOAT, &[1, 3, 4]))
        .init(i64s("p", &[4], &[2, -1, 0, 1]))
        .init(f32s("v", &[], &[0.25]))
        .init(i64s("ax", &[2], &[-1, 1]))
        .node(node("Pad", "pad", &["x", "p", "v", "ax"], &["y"], vec![]))
        .output("y")
        .import()
        .expect("import");
    assert_eq!(
        only_node(&g).op,
        Op::Pad {
            pads: vec![0, -1, 2, 0, 1, 0],
            value: 0.25
        }
    );
    assert_eq!(out_ty(&g, 0).shape.dims(), [1, 3, 6]);

    // Opset 10: attributes; reflect mode is a clear error.
    let g = Model::new(10)
        .input(vi("x", FLOAT, &[2, 2]))
        .node(node(
            "Pad",
            "",
            &["x"],
            &["y"],
            vec![aints("pads", &[1, 0, 0, 1]), af("value", -1.0)],
        ))
        .output("y")
        .import()
        .expect("opset 10");
    assert_eq!(
        only_node(&g).op,
        Op::Pad {
            pads: vec![1, 0, 0, 1],
            value: -1.0
        }
    );
    let err = Model::new(10)
        .input(vi("x", FLOAT, &[2, 2]))
        .node(node(
            "Pad",
            "p",
            &["x"],
            &["y"],
            vec![aints("pads", &[1, 0, 0, 1]), as_("mode", "reflect")],
        ))
        .output("y")
        .import()
        .expect_err("reflect");
    assert!(err.to_string().contains("reflect"), "{err}");
}

#[test]
fn max_pool_with_indices_and_average_pool_attributes() {
    // 5x5, k2 s2 ceil_mode → ceil((5 - 2) / 2) + 1 = 3.
    let g = Model::new(12)
        .input(vi("x", FLOAT, &[1, 1, 5, 5]))
        .node(node(
            "MaxPool",
            "mp",
            &["x"],
            &["y", "idx"],
            vec![
                aints("kernel_shape", &[2, 2]),
                aints("strides", &[2, 2]),
                ai("ceil_mode", 1),
                ai("storage_order", 1),
            ],
        ))
        .node(node(
            "AveragePool",
            "ap",
            &["x"],
            &["z"],
            vec![
                aints("kernel_shape", &[3, 3]),
                aints("pads", &[1, 1, 1, 1]),
                ai("count_include_pad", 1),
            ],
        ))
        .output("y")
        .output("idx")
        .output("z")
        .import()
        .expect("import");
    let Op::MaxPool {
        pool,
        storage_order,
    } = &g.nodes[0].op
    else {
        panic!("not max_pool")
    };
    assert_eq!(
        (pool.kernel.as_slice(), pool.ceil_mode, *storage_order),
        (&[2, 2][..], true, 1)
    );
    assert_eq!(g.nodes[0].outputs.len(), 2);
    assert_eq!(out_ty(&g, 0).shape.dims(), [1, 1, 3, 3]);
    assert_eq!(out_ty(&g, 1), &TensorType::new(DType::I64, [1, 1, 3, 3]));
    let Op::AveragePool {
        pool,
        count_include_pad,
    } = &g.nodes[1].op
    else {
        panic!("not average_pool")
    };
    assert_eq!(
        (pool.pads.as_slice(), *count_include_pad),
        (&[1, 1, 1, 1][..], true)
    );
    assert_eq!(out_ty(&g, 2).shape.dims(), [1, 1, 5, 5]);
}

#[test]
fn gemm_batchnorm_lrn_leaky_hard_sigmoid_attributes() {
    let g = Model::new(13)
        .input(vi("a", FLOAT, &[4, 3]))
        .init(f32s("b", &[5, 3], &[0.0; 15]))
        .init(f32s("c", &[5], &[0.0; 5]))
        .node(node(
            "Gemm",
            "",
            &["a", "b", "c"],
            &["y"],
            vec![af("alpha", 0.5), ai("transB", 1)],
        ))
        .node(node("LeakyRelu", "", &["y"], &["l"], vec![]))
        .node(node("HardSigmoid", "", &["l"], &["h"], vec![]))
        .output("h")
        .import()
        .expect("import");
    let Op::Gemm(a) = &g.nodes[0].op else {
        panic!("not gemm")
    };
    assert_eq!(
        (a.alpha, a.beta, a.trans_a, a.trans_b, a.act),
        (0.5, 1.0, false, true, Activation::None)
    );
    assert_eq!(g.nodes[1].op, Op::LeakyRelu { alpha: 0.01 });
    assert_eq!(
        g.nodes[2].op,
        Op::HardSigmoid {
            alpha: 0.2,
            beta: 0.5
        }
    );
    assert_eq!(out_ty(&g, 0).shape.dims(), [4, 5]);

    let p = |n: &'static str| f32s(n, &[2], &[1.0, 1.0]);
    let g = Model::new(9)
        .input(vi("x", FLOAT, &[1, 2, 3, 3]))
        .init(p("s"))
        .init(p("bias"))
        .init(p("m"))
        .init(p("v"))
        .node(node(
            "BatchNormalization",
            "bn",
            &["x", "s", "bias", "m", "v"],
            &["y", "rm", "rv"],
            vec![af("epsilon", 1e-3)],
        ))
        .node(node("LRN", "lrn", &["y"], &["z"], vec![ai("size", 3)]))
        .output("z")
        .import()
        .expect("import");
    assert_eq!(g.nodes[0].op, Op::BatchNorm { epsilon: 1e-3 });
    assert_eq!(
        g.nodes[1].op,
        Op::Lrn(qc_ir::LrnAttrs {
            size: 3,
            alpha: 1e-4,
            beta: 0.75,
            bias: 1.0
        })
    );
}

#[test]
fn batchnorm_training_is_unsupported() {
    let p = |n: &'static str| f32s(n, &[2], &[1.0, 1.0]);
    let base = || {
        Model::new(15)
            .input(vi("x", FLOAT, &[1, 2, 3, 3]))
            .init(p("s"))
            .init(p("bias"))
            .init(p("m"))
            .init(p("v"))
    };
    let err = base()
        .node(node(
            "BatchNormalization",
            "bn",
            &["x", "s", "bias", "m", "v"],
            &["y"],
            vec![ai("training_mode", 1)],
        ))
        .output("y")
        .import()
        .expect_err("training_mode");
    assert!(err.to_string().contains("training_mode"), "{err}");
    // A used running-mean output needs training semantics too.
    let err = base()
        .node(node(
            "BatchNormalization",
            "bn",
            &["x", "s", "bias", "m", "v"],
            &["y", "rm"],
            vec![],
        ))
        .output("y")
        .output("rm")
        .import()
        .expect_err("running mean");
    assert!(err.to_string().contains("node 'bn'"), "{err}");
}

#[test]
fn dropout_is_identity_with_an_all_true_mask() {
    let g = Model::new(13)
        .input(vi("x", FLOAT, &[2, 2]))
        .node(node("Dropout", "d", &["x"], &["y", "mask"], vec![]))
        .output("y")
        .output("mask")
        .import()
        .expect("import");
    assert_eq!(ops(&g), [&Op::Identity]);
    let mask = g.const_of(g.outputs[1].value).expect("mask is constant");
    assert_eq!(mask.data(), &qc_ir::TensorData::Bool(vec![true; 4]));
    assert_eq!(mask.dims(), [2, 2]);

    let err = Model::new(13)
        .input(vi("x", FLOAT, &[2, 2]))
        .init(int32_data("t", 9, &[], &[1]))
        .node(node("Dropout", "d", &["x", "", "t"], &["y"], vec![]))
        .output("y")
        .import()
        .expect_err("training");
    assert!(err.to_string().contains("training_mode"), "{err}");
}

#[test]
fn cast_of_runtime_value_is_an_op_and_of_a_constant_is_folded() {
    let g = Model::new(13)
        .input(vi("x", FLOAT, &[3]))
        .init(f32s("c", &[3], &[-1.5, 0.5, 2.9]))
        .node(node(
            "Cast",
            "",
            &["x"],
            &["y"],
            vec![ai("to", INT32 as i64)],
        ))
        .node(node(
            "Cast",
            "",
            &["c"],
            &["z"],
            vec![ai("to", INT64 as i64)],
        ))
        .node(node("CastLike", "", &["c", "y"], &["w"], vec![]))
        .output("y")
        .output("z")
        .output("w")
        .import()
        .expect("import");
    assert_eq!(ops(&g), [&Op::Cast { to: DType::I32 }]);
    // Truncation toward zero.
    assert_eq!(
        g.const_of(g.outputs[1].value).expect("z").to_i64_vec(),
        [-1, 0, 2]
    );
    let w = g.const_of(g.outputs[2].value).expect("w");
    assert_eq!(w.data(), &qc_ir::TensorData::I32(vec![-1, 0, 2]));

    let err = Model::new(13)
        .input(vi("x", FLOAT, &[3]))
        .node(node("Cast", "c8", &["x"], &["y"], vec![ai("to", 17)]))
        .output("y")
        .import()
        .expect_err("float8");
    assert!(
        matches!(&err, qc_onnx::Error::UnsupportedType { dtype, .. } if dtype == "FLOAT8E4M3FN"),
        "{err}"
    );
}

#[test]
fn constant_node_forms() {
    let g = Model::new(13)
        .node(node(
            "Constant",
            "",
            &[],
            &["a"],
            vec![af("value_float", 2.5)],
        ))
        .node(node(
            "Constant",
            "",
            &[],
            &["b"],
            vec![aints("value_ints", &[3, -4])],
        ))
        .node(node(
            "Constant",
            "",
            &[],
            &["c"],
            vec![at("value", i64s("", &[1, 2], &[7, 8]))],
        ))
        .output("a")
        .output("b")
        .output("c")
        .import()
        .expect("import");
    let a = g.const_of(g.outputs[0].value).expect("a");
    assert_eq!((a.dims(), a.as_f32()), (&[][..], Some(&[2.5f32][..])));
    let b = g.const_of(g.outputs[1].value).expect("b");
    assert_eq!((b.dims(), b.to_i64_vec()), (&[2][..], vec![3, -4]));
    let c = g.const_of(g.outputs[2].value).expect("c");
    assert_eq!((c.dims(), c.to_i64_vec()), (&[1, 2][..], vec![7, 8]));
}

#[test]
fn reduce_mean_axes_forms() {
    let g = Model::new(13)
        .input(vi("x", FLOAT, &[2, 3, 4]))
        .node(node(
            "ReduceMean",
            "",
            &["x"],
            &["y"],
            vec![aints("axes", &[-1, 1]), ai("keepdims", 0)],
        ))
        .output("y")
        .import()
        .expect("opset 13");
    assert_eq!(
        only_node(&g).op,
        Op::ReduceMean {
            axes: vec![1, 2],
            keepdims: false
        }
    );
    assert_eq!(out_ty(&g, 0).shape.dims(), [2]);

    let g = Model::new(18)
        .input(vi("x", FLOAT, &[2, 3]))
        .node(node(
            "ReduceMean",
            "",
            &["x"],
            &["y"],
            vec![ai("noop_with_empty_axes", 1)],
        ))
        .node(node("ReduceMean", "", &["x"], &["z"], vec![]))
        .output("y")
        .output("z")
        .import()
        .expect("opset 18");
    assert_eq!(
        ops(&g),
        [
            &Op::Identity,
            &Op::ReduceMean {
                axes: vec![0, 1],
                keepdims: true
            }
        ]
    );
}

#[test]
fn flatten_transpose_concat_defaults() {
    let g = Model::new(13)
        .input(vi("x", FLOAT, &[2, 3, 4]))
        .input(vi("z", FLOAT, &[4, 3, 1]))
        .node(node("Flatten", "", &["x"], &["f"], vec![ai("axis", -1)]))
        .node(node("Transpose", "", &["x"], &["t"], vec![]))
        .node(node(
            "Concat",
            "",
            &["t", "z"],
            &["c"],
            vec![ai("axis", -1)],
        ))
        .output("f")
        .output("c")
        .import()
        .expect("import");
    assert_eq!(
        ops(&g),
        [
            &Op::Flatten { axis: 2 },
            &Op::Transpose {
                perm: vec![2, 1, 0]
            },
            &Op::Concat { axis: 2 }
        ]
    );
    assert_eq!(out_ty(&g, 0).shape.dims(), [6, 4]);
    assert_eq!(out_ty(&g, 1).shape.dims(), [4, 3, 3]);
}

#[test]
fn elementwise_ops_on_runtime_values() {
    let g = Model::new(13)
        .input(vi("a", FLOAT, &[2, 1]))
        .input(vi("b", FLOAT, &[3]))
        .init(f32s("s", &[1], &[0.1]))
        .node(node("Add", "", &["a", "b"], &["c"], vec![]))
        .node(node("Sub", "", &["c", "a"], &["d"], vec![]))
        .node(node("Mul", "", &["d", "b"], &["e"], vec![]))
        .node(node("Div", "", &["e", "b"], &["f"], vec![]))
        .node(node("Sum", "", &["f", "c", "d"], &["g"], vec![]))
        .node(node("PRelu", "", &["g", "s"], &["h"], vec![]))
        .node(node("Relu", "", &["h"], &["i"], vec![]))
        .node(node("Sigmoid", "", &["i"], &["j"], vec![]))
        .node(node("Tanh", "", &["j"], &["k"], vec![]))
        .node(node("HardSwish", "", &["k"], &["l"], vec![]))
        .node(node("Identity", "", &["l"], &["m"], vec![]))
        .output("m")
        .import()
        .expect("import");
    let names: Vec<&str> = g.nodes.iter().map(|n| n.op.name()).collect();
    assert_eq!(
        names,
        [
            "add",
            "sub",
            "mul",
            "div",
            "sum",
            "prelu",
            "relu",
            "sigmoid",
            "tanh",
            "hard_swish",
            "identity"
        ]
    );
    assert_eq!(out_ty(&g, 0).shape.dims(), [2, 3]);
}

#[test]
fn float_constants_are_not_folded_by_arithmetic() {
    // Integer constant arithmetic folds; float arithmetic stays an op.
    let g = Model::new(13)
        .init(f32s("a", &[2], &[1.0, 2.0]))
        .init(f32s("b", &[2], &[3.0, 4.0]))
        .node(node("Add", "", &["a", "b"], &["c"], vec![]))
        .output("c")
        .import()
        .expect("import");
    assert_eq!(
        ops(&g),
        [&Op::Add {
            act: Activation::None
        }]
    );
}
