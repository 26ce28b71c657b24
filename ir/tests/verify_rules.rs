//! The verifier: one valid graph that passes, and one small breakage per rule that
//! must be reported (naming the node or the value).

#![allow(clippy::panic)] // test helpers fail by panicking

use std::sync::Arc;

use qc_ir::verify::{verify, verify_node};
use qc_ir::{
    Activation, ConvAttrs, DType, Error, GemmAttrs, Graph, Node, NodeId, Op, PoolAttrs, Port,
    QType, QuantParams, Tensor, TensorData, TensorType, ValueDef, ValueId,
};

fn qu8(d: &[usize], scale: f32, zp: i32) -> TensorType {
    TensorType::quantized(d.to_vec(), QuantParams::per_tensor(QType::U8, scale, zp))
}

fn conv3x3() -> ConvAttrs {
    ConvAttrs {
        kernel: vec![3, 3],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: vec![1, 1, 1, 1],
        group: 1,
        act: Activation::None,
    }
}

fn pool2x2() -> Op {
    Op::MaxPool {
        pool: PoolAttrs {
            kernel: vec![2, 2],
            strides: vec![2, 2],
            dilations: vec![1, 1],
            pads: vec![0; 4],
            ceil_mode: false,
        },
        storage_order: 0,
    }
}

/// x: f32[1,3,8,8] -> quantize -> conv (per-channel i8 w, i32 b) -> relu -> max_pool
/// (with indices) -> dequantize -> flatten -> output.
struct Valid {
    g: Graph,
    w: ValueId,
    b: ValueId,
    quant: NodeId,
    q: ValueId,
    conv: NodeId,
    c: ValueId,
    relu: NodeId,
    r: ValueId,
    pool: NodeId,
    m: ValueId,
    dq: NodeId,
    d: ValueId,
    flat: NodeId,
}

fn valid() -> Valid {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32(vec![1, 3, 8, 8]));
    let quant = g.add_node(
        Op::Quantize,
        vec![x],
        vec![qu8(&[1, 3, 8, 8], 0.02, 128)],
        "q",
    );
    let q = g.nodes[quant.index()].outputs[0];
    let wt = Tensor::new(vec![4, 3, 3, 3], TensorData::I8(vec![1; 108])).expect("tensor");
    let wc = g.add_const_tensor(Arc::new(wt));
    let w = g.add_const_value(
        wc,
        Some(QuantParams::per_axis(
            QType::I8,
            0,
            vec![0.1, 0.2, 0.3, 0.4],
            vec![0; 4],
        )),
    );
    let b = g.add_const(Tensor::new(vec![4], TensorData::I32(vec![5; 4])).expect("tensor"));
    let conv = g.add_node(
        Op::Conv(conv3x3()),
        vec![q, w, b],
        vec![qu8(&[1, 4, 8, 8], 0.05, 0)],
        "conv",
    );
    let c = g.nodes[conv.index()].outputs[0];
    let relu = g.add_node(Op::Relu, vec![c], vec![qu8(&[1, 4, 8, 8], 0.05, 0)], "relu");
    let r = g.nodes[relu.index()].outputs[0];
    let pool = g.add_node(
        pool2x2(),
        vec![r],
        vec![
            qu8(&[1, 4, 4, 4], 0.05, 0),
            TensorType::new(DType::I64, vec![1, 4, 4, 4]),
        ],
        "pool",
    );
    let m = g.nodes[pool.index()].outputs[0];
    let dq = g.add_node(
        Op::Dequantize,
        vec![m],
        vec![TensorType::f32(vec![1, 4, 4, 4])],
        "dq",
    );
    let d = g.nodes[dq.index()].outputs[0];
    let flat = g.add_node(
        Op::Flatten { axis: 1 },
        vec![d],
        vec![TensorType::f32(vec![1, 64])],
        "flat",
    );
    let f = g.nodes[flat.index()].outputs[0];
    g.add_output("y", f);
    Valid {
        g,
        w,
        b,
        quant,
        q,
        conv,
        c,
        relu,
        r,
        pool,
        m,
        dq,
        d,
        flat,
    }
}

/// The error is about node `n` and its message contains `part`.
#[track_caller]
fn node_err(g: &Graph, n: NodeId, part: &str) {
    match verify(g) {
        Err(Error::Node { node, msg, .. }) => {
            assert_eq!(node, n, "wrong node: {msg}");
            assert!(msg.contains(part), "message {msg:?} lacks {part:?}");
        }
        other => panic!("expected an error on node {n} containing {part:?}, got {other:?}"),
    }
}

/// A value-level verifier error whose message contains `part`.
#[track_caller]
fn verify_err(g: &Graph, part: &str) {
    match verify(g) {
        Err(Error::Verify(msg)) => assert!(msg.contains(part), "message {msg:?} lacks {part:?}"),
        other => panic!("expected a verifier error containing {part:?}, got {other:?}"),
    }
}

#[test]
fn valid_graph_passes() {
    let v = valid();
    assert_eq!(verify(&v.g), Ok(()));
    for i in 0..v.g.nodes.len() {
        assert_eq!(verify_node(&v.g, NodeId::from_index(i)), Ok(()));
    }
    assert!(verify_node(&v.g, NodeId(99)).is_err());
}

#[test]
fn float_graph_and_optional_results_pass() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32(vec![2, 4]));
    let w = g.add_const(Tensor::from_f32(vec![4, 3], vec![0.5; 12]).expect("tensor"));
    let gemm = Op::Gemm(GemmAttrs {
        alpha: 2.0,
        beta: 1.0,
        trans_a: false,
        trans_b: false,
        act: Activation::Relu,
    });
    let n = g.add_node(gemm, vec![x, w], vec![TensorType::f32(vec![2, 3])], "");
    let y = g.nodes[n.index()].outputs[0];
    let n = g.add_node(
        Op::Reshape {
            shape: vec![1, 1, 2, 3],
        },
        vec![y],
        vec![TensorType::f32(vec![1, 1, 2, 3])],
        "",
    );
    let y = g.nodes[n.index()].outputs[0];
    // max_pool with only its first result
    let n = g.add_node(
        pool2x2(),
        vec![y],
        vec![TensorType::f32(vec![1, 1, 1, 1])],
        "",
    );
    let p = g.nodes[n.index()].outputs[0];
    let n = g.add_node(
        Op::DynamicQuantize,
        vec![x],
        vec![
            TensorType::new(DType::U8, vec![2, 4]),
            TensorType::f32(vec![]),
            TensorType::new(DType::U8, vec![]),
        ],
        "",
    );
    let dq = g.nodes[n.index()].outputs[0];
    g.add_output("p", p);
    g.add_output("q", dq);
    assert_eq!(verify(&g), Ok(()));
}

// ---- definitions and order ----

#[test]
fn operand_out_of_range() {
    let mut v = valid();
    v.g.node_mut(v.relu).inputs[0] = ValueId(999);
    node_err(&v.g, v.relu, "999");
}

#[test]
fn operand_used_before_definition() {
    let mut v = valid();
    // relu reads dequantize's result, which comes later
    v.g.node_mut(v.relu).inputs[0] = v.d;
    node_err(&v.g, v.relu, "topological");
}

#[test]
fn node_reading_its_own_result() {
    let mut v = valid();
    v.g.node_mut(v.relu).inputs[0] = v.r;
    node_err(&v.g, v.relu, "topological");
}

#[test]
fn value_defined_twice() {
    let mut v = valid();
    // a second node claims dequantize's result as its own
    let n = NodeId::from_index(v.g.nodes.len());
    v.g.nodes.push(Node {
        op: Op::Identity,
        inputs: vec![v.d],
        outputs: vec![v.d],
        name: "dup".into(),
    });
    node_err(&v.g, n, "defined as");
}

#[test]
fn def_does_not_point_back() {
    let mut v = valid();
    v.g.value_mut(v.c).def = ValueDef::Node {
        node: v.conv,
        slot: 1,
    };
    verify_err(&v.g, &format!("value {}", v.c));
    let mut v = valid();
    v.g.value_mut(v.c).def = ValueDef::Input(3);
    verify_err(&v.g, "input 3");
}

#[test]
fn graph_output_missing_value() {
    let mut v = valid();
    v.g.add_output("bad", ValueId(1000));
    verify_err(&v.g, "output 1");
}

#[test]
fn input_port_with_wrong_def() {
    let mut v = valid();
    v.g.inputs.push(Port {
        name: "z".into(),
        value: v.q,
    });
    verify_err(&v.g, "input 1");
}

#[test]
fn constant_type_differs_from_tensor() {
    let mut v = valid();
    v.g.value_mut(v.b).ty.shape = vec![5].into();
    verify_err(&v.g, &format!("value {}", v.b));
    let mut v = valid();
    v.g.value_mut(v.b).ty.dtype = DType::I64;
    verify_err(&v.g, "constant");
}

// ---- types ----

#[test]
fn invalid_quant_params() {
    let mut v = valid();
    if let Some(q) = v.g.value_mut(v.c).ty.quant.as_mut() {
        q.scales[0] = 0.0;
    }
    verify_err(&v.g, "scale");
    let mut v = valid();
    if let Some(q) = v.g.value_mut(v.c).ty.quant.as_mut() {
        q.zero_points[0] = 300;
    }
    verify_err(&v.g, "zero point");
}

#[test]
fn dtype_is_not_the_storage_type() {
    let mut v = valid();
    v.g.value_mut(v.c).ty.dtype = DType::I8;
    verify_err(&v.g, "storage");
}

#[test]
fn per_axis_params_do_not_fit_the_shape() {
    let mut v = valid();
    if let Some(q) = v.g.value_mut(v.w).ty.quant.as_mut() {
        q.axis = Some(4);
    }
    verify_err(&v.g, "axis 4");
    let mut v = valid();
    if let Some(q) = v.g.value_mut(v.w).ty.quant.as_mut() {
        q.axis = Some(1); // size 3, but 4 scales
    }
    verify_err(&v.g, "4 scales");
}

// ---- results against inference ----

#[test]
fn wrong_result_count() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32(vec![2]));
    let n = g.add_node(
        Op::Relu,
        vec![x],
        vec![TensorType::f32(vec![2]), TensorType::f32(vec![2])],
        "r",
    );
    node_err(&g, n, "2 results");

    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32(vec![2]));
    let n = g.add_node(
        Op::DynamicQuantize,
        vec![x],
        vec![TensorType::new(DType::U8, vec![2])],
        "dq",
    );
    node_err(&g, n, "expected 3");

    let mut v = valid();
    let extra = v.g.values.len();
    v.g.values.push(qc_ir::Value {
        ty: TensorType::new(DType::I64, vec![1, 4, 4, 4]),
        def: ValueDef::Node {
            node: v.pool,
            slot: 2,
        },
    });
    v.g.node_mut(v.pool)
        .outputs
        .push(ValueId::from_index(extra));
    node_err(&v.g, v.pool, "1 or 2");
}

#[test]
fn result_shape_differs_from_inference() {
    let mut v = valid();
    v.g.value_mut(v.c).ty.shape = vec![1, 4, 7, 7].into();
    node_err(&v.g, v.conv, "inferred [1,4,8,8]");
}

#[test]
fn result_dtype_differs_from_inference() {
    let mut v = valid();
    let f = v.g.nodes[v.flat.index()].outputs[0];
    v.g.value_mut(f).ty.dtype = DType::F64;
    node_err(&v.g, v.flat, "dtype");
}

#[test]
fn implied_params_differ() {
    let mut v = valid();
    v.g.value_mut(v.r).ty = qu8(&[1, 4, 8, 8], 0.06, 0);
    node_err(&v.g, v.relu, "implied");
    let mut v = valid();
    v.g.value_mut(v.m).ty = qu8(&[1, 4, 4, 4], 0.05, 1);
    node_err(&v.g, v.pool, "implied");
    // implied params dropped
    let mut v = valid();
    v.g.value_mut(v.m).ty = TensorType::new(DType::U8, vec![1, 4, 4, 4]);
    node_err(&v.g, v.pool, "implied");
}

#[test]
fn operand_types_rejected_by_inference() {
    let mut g = Graph::new();
    let x = g.add_input("x", qu8(&[2], 0.1, 0));
    let n = g.add_node(Op::Quantize, vec![x], vec![qu8(&[2], 0.1, 0)], "q");
    node_err(&g, n, "float");
}

// ---- quantized-op consistency ----

#[test]
fn quantize_must_produce_quantized() {
    let mut v = valid();
    v.g.value_mut(v.q).ty = TensorType::new(DType::U8, vec![1, 3, 8, 8]);
    node_err(&v.g, v.quant, "quantized");
}

#[test]
fn dequantize_needs_quantized_operand() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::new(DType::U8, vec![2]));
    let n = g.add_node(
        Op::Dequantize,
        vec![x],
        vec![TensorType::f32(vec![2])],
        "dq",
    );
    node_err(&g, n, "must be quantized");
}

#[test]
fn requantize_needs_quantized_result() {
    let mut g = Graph::new();
    let x = g.add_input("x", qu8(&[2], 0.1, 0));
    let n = g.add_node(
        Op::Requantize,
        vec![x],
        vec![TensorType::new(DType::U8, vec![2])],
        "rq",
    );
    node_err(&g, n, "quantized");
    // to another storage type is fine
    let mut g = Graph::new();
    let x = g.add_input("x", qu8(&[2], 0.1, 0));
    let i8t = TensorType::quantized(vec![2], QuantParams::per_tensor(QType::I8, 0.2, -3));
    g.add_node(Op::Requantize, vec![x], vec![i8t], "rq");
    assert_eq!(verify(&g), Ok(()));
}

#[test]
fn conv_with_raw_operand_and_quantized_weight() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::new(DType::U8, vec![1, 1, 3, 3]));
    let w = g.add_input("w", qu8(&[1, 1, 3, 3], 0.1, 0));
    let n = g.add_node(
        Op::Conv(conv3x3()),
        vec![x, w],
        vec![qu8(&[1, 1, 3, 3], 0.1, 0)],
        "conv",
    );
    node_err(&g, n, "operand 1 is quantized but operand 0 is not");
}

#[test]
fn quantized_conv_with_raw_result() {
    let mut v = valid();
    v.g.value_mut(v.c).ty = TensorType::new(DType::U8, vec![1, 4, 8, 8]);
    node_err(&v.g, v.conv, "raw result");
}

#[test]
fn quantized_conv_bias_must_be_raw_i32() {
    let mut v = valid();
    v.g.value_mut(v.b).ty.quant = Some(QuantParams::per_tensor(QType::I32, 0.002, 0));
    node_err(&v.g, v.conv, "bias");
}

#[test]
fn quantized_conv_params_layout() {
    // weights per-axis along the input-channel axis
    let mut g = Graph::new();
    let x = g.add_input("x", qu8(&[1, 3, 4, 4], 0.1, 0));
    let wq = QuantParams::per_axis(QType::I8, 1, vec![0.1, 0.1, 0.1], vec![0; 3]);
    let w = g.add_input("w", TensorType::quantized(vec![3, 3, 3, 3], wq));
    let n = g.add_node(
        Op::Conv(conv3x3()),
        vec![x, w],
        vec![qu8(&[1, 3, 4, 4], 0.1, 0)],
        "conv",
    );
    node_err(&g, n, "output-channel axis");
    // per-axis activations
    let mut g = Graph::new();
    let xq = QuantParams::per_axis(QType::U8, 1, vec![0.1, 0.1, 0.1], vec![0; 3]);
    let x = g.add_input("x", TensorType::quantized(vec![1, 3, 4, 4], xq));
    let w = g.add_input(
        "w",
        TensorType::quantized(vec![3, 3, 3, 3], QuantParams::per_tensor(QType::I8, 0.1, 0)),
    );
    let n = g.add_node(
        Op::Conv(conv3x3()),
        vec![x, w],
        vec![qu8(&[1, 3, 4, 4], 0.1, 0)],
        "conv",
    );
    node_err(&g, n, "per-tensor");
}

#[test]
fn raw_integer_conv_is_rejected() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::new(DType::U8, vec![1, 1, 3, 3]));
    let w = g.add_input("w", TensorType::new(DType::U8, vec![1, 1, 3, 3]));
    let n = g.add_node(
        Op::Conv(conv3x3()),
        vec![x, w],
        vec![TensorType::new(DType::U8, vec![1, 1, 3, 3])],
        "c",
    );
    node_err(&g, n, "conv_integer");
}

#[test]
fn quantized_gemm_needs_unit_alpha_beta() {
    let build = |alpha: f32| {
        let mut g = Graph::new();
        let a = g.add_input("a", qu8(&[2, 4], 0.1, 0));
        let b = g.add_input(
            "b",
            TensorType::quantized(vec![4, 3], QuantParams::per_tensor(QType::I8, 0.1, 0)),
        );
        let op = Op::Gemm(GemmAttrs {
            alpha,
            beta: 1.0,
            trans_a: false,
            trans_b: false,
            act: Activation::None,
        });
        let n = g.add_node(op, vec![a, b], vec![qu8(&[2, 3], 0.3, 10)], "gemm");
        (g, n)
    };
    let (g, _) = build(1.0);
    assert_eq!(verify(&g), Ok(()));
    let (g, n) = build(0.5);
    node_err(&g, n, "alpha");
}

#[test]
fn conv_integer_takes_raw_operands() {
    let mut g = Graph::new();
    let x = g.add_input("x", qu8(&[1, 1, 3, 3], 0.1, 0));
    let w = g.add_input("w", TensorType::new(DType::I8, vec![1, 1, 3, 3]));
    let xz = g.add_input("xz", TensorType::new(DType::U8, vec![]));
    let wz = g.add_input("wz", TensorType::new(DType::I8, vec![]));
    let n = g.add_node(
        Op::ConvInteger(conv3x3()),
        vec![x, w, xz, wz],
        vec![TensorType::new(DType::I32, vec![1, 1, 3, 3])],
        "ci",
    );
    node_err(&g, n, "operand 0 is quantized");
}

#[test]
fn elementwise_mixing_quantized_and_raw() {
    let mut g = Graph::new();
    let a = g.add_input("a", qu8(&[2], 0.1, 0));
    let b = g.add_input("b", TensorType::new(DType::U8, vec![2]));
    let n = g.add_node(
        Op::Add {
            act: Activation::None,
        },
        vec![a, b],
        vec![qu8(&[2], 0.1, 0)],
        "add",
    );
    node_err(&g, n, "mixes");
    // raw operands, quantized result
    let mut g = Graph::new();
    let a = g.add_input("a", TensorType::new(DType::U8, vec![2]));
    let n = g.add_node(Op::Sigmoid, vec![a], vec![qu8(&[2], 0.1, 0)], "s");
    // (raw u8 sigmoid is rejected by inference before the domain check)
    node_err(&g, n, "raw u8");
    let mut g = Graph::new();
    let a = g.add_input("a", TensorType::new(DType::U8, vec![2, 2]));
    let n = g.add_node(
        Op::Transpose { perm: vec![1, 0] },
        vec![a],
        vec![qu8(&[2, 2], 0.1, 0)],
        "t",
    );
    node_err(&g, n, "raw operands but a quantized result");
    // quantized operands, quantized result with a chosen storage: fine
    let mut g = Graph::new();
    let a = g.add_input("a", qu8(&[2], 0.1, 0));
    let b = g.add_input("b", qu8(&[2], 0.2, 3));
    let y = TensorType::quantized(vec![2], QuantParams::per_tensor(QType::I8, 0.3, 0));
    g.add_node(
        Op::Add {
            act: Activation::None,
        },
        vec![a, b],
        vec![y],
        "add",
    );
    assert_eq!(verify(&g), Ok(()));
}

#[test]
fn max_pool_indices_are_raw() {
    let mut v = valid();
    let idx = v.g.nodes[v.pool.index()].outputs[1];
    // an i64 result cannot carry params (no i64 storage), so a quantized i32 index type
    // is wrong both in dtype and in domain
    v.g.value_mut(idx).ty = TensorType::quantized(
        vec![1, 4, 4, 4],
        QuantParams::per_tensor(QType::I32, 1.0, 0),
    );
    node_err(&v.g, v.pool, "indices");
}

#[test]
fn dequantize_result_must_be_raw_float() {
    let v = valid();
    let mut g = v.g.clone();
    g.value_mut(v.d).ty = TensorType::new(DType::F64, vec![1, 4, 4, 4]);
    node_err(&g, v.dq, "dtype");
}

#[test]
fn constant_id_out_of_range() {
    let mut v = valid();
    v.g.value_mut(v.b).def = ValueDef::Const(qc_ir::ConstId(77));
    verify_err(&v.g, "constant #77");
}

#[test]
fn node_result_claimed_by_an_input_def() {
    let mut v = valid();
    // the quantize node's result is defined as an input port
    v.g.value_mut(v.q).def = ValueDef::Input(0);
    verify_err(&v.g, &format!("value {}", v.q));
}

#[test]
fn verify_node_alone_checks_order_and_types() {
    let mut v = valid();
    v.g.node_mut(v.conv).inputs[0] = v.r;
    match verify_node(&v.g, v.conv) {
        Err(Error::Node {
            node,
            op,
            name,
            msg,
        }) => {
            assert_eq!((node, op, name.as_str()), (v.conv, "conv", "conv"));
            assert!(msg.contains("topological"), "{msg}");
        }
        other => panic!("expected a node error, got {other:?}"),
    }
    // other nodes are unaffected
    assert_eq!(verify_node(&v.g, v.dq), Ok(()));
}
