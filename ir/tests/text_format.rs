//! The text form pinned against literal text written by hand: these lines are what
//! snapshots and `qc inspect` show, so a format change must show up here.

#![allow(clippy::panic)] // tests fail by panicking

use std::sync::Arc;

use qc_ir::text::{parse, print, print_with, DataMode, PrintOptions};
use qc_ir::{
    Activation, ConvAttrs, ConvTransposeAttrs, DType, GemmAttrs, Graph, LrnAttrs, Op, PoolAttrs,
    QType, QuantParams, Tensor, TensorData, TensorType, ValueDef,
};

fn f32t(shape: &[usize]) -> TensorType {
    TensorType::f32(shape.to_vec())
}

fn u8q(shape: &[usize], s: f32, z: i32) -> TensorType {
    TensorType::quantized(shape.to_vec(), QuantParams::per_tensor(QType::U8, s, z))
}

fn tensor(shape: &[usize], data: TensorData) -> Arc<Tensor> {
    Arc::new(Tensor::new(shape.to_vec(), data).expect("test tensor"))
}

/// The example of DESIGN.md, made concrete.
fn design_example() -> Graph {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[1, 3, 32, 32]));
    let n = g.add_node(
        Op::Quantize,
        vec![x],
        vec![u8q(&[1, 3, 32, 32], 0.0235294, 128)],
        "",
    );
    let q = g.node(n).outputs[0];
    let wc = g.add_const_tensor(tensor(
        &[2, 3, 1, 1],
        TensorData::I8(vec![1, -1, 2, -2, 3, -3]),
    ));
    let w = g.add_const_value(
        wc,
        Some(QuantParams::per_axis(
            QType::I8,
            0,
            vec![0.5, 0.25],
            vec![0, 0],
        )),
    );
    let b = g.add_const(tensor(&[2], TensorData::I32(vec![5, -7])));
    let conv = ConvAttrs {
        kernel: vec![1, 1],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: vec![1, 1, 1, 1],
        group: 1,
        act: Activation::Relu,
    };
    let n = g.add_node(
        Op::Conv(conv),
        vec![q, w, b],
        vec![u8q(&[1, 2, 34, 34], 0.0413, 0)],
        "conv1",
    );
    let y = g.node(n).outputs[0];
    g.add_output("y", y);
    g
}

const DESIGN_EXAMPLE: &str = r#"#0 = const i8[2,3,1,1] [1, -1, 2, -2, 3, -3]
#1 = const i32[2] [5, -7]

func @main(%0 "x": f32[1,3,32,32]) -> ("y": u8[1,2,34,34] q(0.0413, 0)) {
  %1 = quantize %0 : u8[1,3,32,32] q(0.0235294, 128)
  %2 = const #0 : i8[2,3,1,1] q(axis=0, [0.5, 0.25], [0, 0])
  %3 = const #1 : i32[2]
  %4 = conv %1, %2, %3 {kernel=[1,1], pads=[1,1,1,1], act=relu} : u8[1,2,34,34] q(0.0413, 0) loc("conv1")
  return %4
}
"#;

#[test]
fn design_example_prints_as_written() {
    assert_eq!(print(&design_example()), DESIGN_EXAMPLE);
}

#[test]
fn design_example_parses_from_the_written_text() {
    assert_eq!(parse(DESIGN_EXAMPLE).expect("parses"), design_example());
}

/// The printed line of the one node of a graph `x -> op -> results`.
fn node_line(op: Op, input: TensorType, results: Vec<TensorType>, name: &str) -> String {
    let mut g = Graph::new();
    let x = g.add_input("x", input);
    let n = g.add_node(op, vec![x], results, name);
    for v in g.node(n).outputs.clone() {
        g.add_output("", v);
    }
    let text = print(&g);
    let line = text
        .lines()
        .find(|l| l.starts_with("  %1"))
        .unwrap_or_else(|| panic!("no node line in\n{text}"));
    // The line parses back to the same graph.
    assert_eq!(parse(&text).expect("parses"), g, "{text}");
    line.to_string()
}

#[test]
fn op_lines() {
    let x = || f32t(&[1, 1, 4, 4]);
    let pool = PoolAttrs {
        kernel: vec![2, 2],
        strides: vec![2, 2],
        dilations: vec![1, 1],
        pads: vec![0, 0, 0, 0],
        ceil_mode: true,
    };
    let cases: Vec<(Op, Vec<TensorType>, &str, &str)> = vec![
        (
            Op::MaxPool { pool: pool.clone(), storage_order: 1 },
            vec![f32t(&[1, 1, 2, 2]), TensorType::new(DType::I64, vec![1, 1, 2, 2])],
            "pool1",
            r#"  %1, %2 = max_pool %0 {kernel=[2,2], strides=[2,2], ceil_mode=true, storage_order=1} : f32[1,1,2,2], i64[1,1,2,2] loc("pool1")"#,
        ),
        (
            Op::AveragePool { pool, count_include_pad: true },
            vec![f32t(&[1, 1, 2, 2])],
            "",
            "  %1 = average_pool %0 {kernel=[2,2], strides=[2,2], ceil_mode=true, count_include_pad=true} : f32[1,1,2,2]",
        ),
        (
            Op::Gemm(GemmAttrs {
                alpha: 0.5,
                beta: -0.0,
                trans_a: true,
                trans_b: false,
                act: Activation::Clip { min: 0.0, max: 6.0 },
            }),
            vec![f32t(&[4, 4])],
            "",
            "  %1 = gemm %0 {alpha=0.5, beta=-0.0, trans_a=true, act=clip(0.0, 6.0)} : f32[4,4]",
        ),
        (
            Op::ConvTranspose(ConvTransposeAttrs {
                kernel: vec![3],
                strides: vec![2],
                dilations: vec![1],
                pads: vec![1, 1],
                output_padding: vec![1],
                group: 1,
                act: Activation::None,
            }),
            vec![f32t(&[1, 1, 8])],
            "",
            "  %1 = conv_transpose %0 {kernel=[3], strides=[2], pads=[1,1], output_padding=[1]} : f32[1,1,8]",
        ),
        (Op::Clip { min: Some(-1.5), max: None }, vec![x()], "", "  %1 = clip %0 {min=-1.5} : f32[1,1,4,4]"),
        (
            Op::Pad { pads: vec![0, 0, -1, 2, 0, 0, 0, 1], value: f64::NEG_INFINITY },
            vec![f32t(&[1, 1, 3, 7])],
            "",
            "  %1 = pad %0 {pads=[0,0,-1,2,0,0,0,1], value=-inf} : f32[1,1,3,7]",
        ),
        (Op::Cast { to: DType::F16 }, vec![TensorType::new(DType::F16, vec![1, 1, 4, 4])], "", "  %1 = cast %0 {to=f16} : f16[1,1,4,4]"),
        (
            Op::ReduceMean { axes: vec![2, 3], keepdims: false },
            vec![f32t(&[1, 1])],
            "",
            "  %1 = reduce_mean %0 {axes=[2,3], keepdims=false} : f32[1,1]",
        ),
        (
            Op::Lrn(LrnAttrs { size: 3, alpha: 0.0001, beta: 0.75, bias: 2.0 }),
            vec![x()],
            "",
            "  %1 = lrn %0 {size=3, alpha=0.0001, beta=0.75, bias=2.0} : f32[1,1,4,4]",
        ),
        (Op::BatchNorm { epsilon: 0.001 }, vec![x()], "", "  %1 = batch_norm %0 {epsilon=0.001} : f32[1,1,4,4]"),
        (Op::Relu, vec![x()], "a \"quoted\" \\ name", r#"  %1 = relu %0 : f32[1,1,4,4] loc("a \"quoted\" \\ name")"#),
        (
            Op::DynamicQuantize,
            vec![TensorType::new(DType::U8, vec![1, 1, 4, 4]), f32t(&[]), TensorType::new(DType::U8, vec![])],
            "",
            "  %1, %2, %3 = dynamic_quantize %0 : u8[1,1,4,4], f32[], u8[]",
        ),
        (
            Op::Requantize,
            vec![TensorType::quantized(vec![1, 1, 4, 4], QuantParams::per_tensor(QType::I8, 1e-3, -128))],
            "",
            "  %1 = requantize %0 : i8[1,1,4,4] q(0.001, -128)",
        ),
        (
            Op::Identity,
            vec![TensorType {
                dtype: DType::I16,
                shape: vec![2].into(),
                quant: Some(QuantParams::per_tensor(QType::I8, 2.0, 1)),
            }],
            "",
            "  %1 = identity %0 : i16[2] q(storage=i8, 2.0, 1)",
        ),
    ];
    for (op, results, name, want) in cases {
        assert_eq!(node_line(op, x(), results, name), want);
    }
}

#[test]
fn signature_quotes_port_names() {
    let mut g = Graph::new();
    let a = g.add_input("gpu_0/x", f32t(&[1]));
    let b = g.add_input(
        "n\n\t\"q\"",
        TensorType::quantized(vec![2], QuantParams::per_tensor(QType::U8, 0.5, 3)),
    );
    g.add_output("", a);
    let _ = b;
    let want = r#"func @main(%0 "gpu_0/x": f32[1], %1 "n\n\t\"q\"": u8[2] q(0.5, 3)) -> ("": f32[1]) {
  return %0
}
"#;
    assert_eq!(print(&g), want);
    let back = parse(want).expect("parses");
    assert_eq!(back.inputs[1].name, "n\n\t\"q\"");
    assert_eq!(back, g);
}

#[test]
fn long_signature_prints_one_port_per_line() {
    let mut g = Graph::new();
    let mut vs = Vec::new();
    for i in 0..4 {
        vs.push(g.add_input(format!("input_number_{i}"), f32t(&[1, 3, 224, 224])));
    }
    g.add_output("out", vs[3]);
    let want = r#"func @main(
    %0 "input_number_0": f32[1,3,224,224],
    %1 "input_number_1": f32[1,3,224,224],
    %2 "input_number_2": f32[1,3,224,224],
    %3 "input_number_3": f32[1,3,224,224],
) -> (
    "out": f32[1,3,224,224],
) {
  return %3
}
"#;
    assert_eq!(print(&g), want);
    assert_eq!(parse(want).expect("parses"), g);
}

#[test]
fn constant_data_modes() {
    let mut g = Graph::new();
    let small = g.add_const(tensor(
        &[2, 2],
        TensorData::F32(vec![1.0, -0.0, 0.1, f32::INFINITY]),
    ));
    let big_t = tensor(&[17], TensorData::U8((0..17).collect()));
    let digest = big_t.digest();
    let big = g.add_const(big_t);
    let ones = g.add_const(tensor(&[17], TensorData::F32(vec![1.0; 17])));
    for v in [small, big, ones] {
        g.add_output("c", v);
    }
    let lines = |mode| {
        let text = print_with(&g, &PrintOptions { data: mode });
        text.lines().take(3).map(str::to_string).collect::<Vec<_>>()
    };
    let small_inline = "#0 = const f32[2,2] [1.0, -0.0, 0.1, inf]";
    assert_eq!(
        lines(DataMode::Auto),
        vec![
            small_inline.to_string(),
            format!("#1 = const u8[17] digest {digest:016x}"),
            format!("#2 = const f32[17] digest {:016x}", g.consts[2].digest()),
        ]
    );
    assert_eq!(
        lines(DataMode::Digest)[0],
        format!("#0 = const f32[2,2] digest {:016x}", g.consts[0].digest())
    );
    assert_eq!(
        lines(DataMode::Full),
        vec![
            small_inline.to_string(),
            "#1 = const u8[17] hex \"000102030405060708090a0b0c0d0e0f10\"".to_string(),
            format!("#2 = const f32[17] hex \"{}\"", "0000803f".repeat(17)),
        ]
    );
    // The three constant values come before `return`, in value order.
    let text = print(&g);
    assert!(text.ends_with(
        "  %0 = const #0 : f32[2,2]\n  %1 = const #1 : u8[17]\n  %2 = const #2 : f32[17]\n  return %0, %1, %2\n}\n"
    ));
}

/// Forms the printer never writes but a hand-written `.qc` file may use.
#[test]
fn hand_written_conveniences() {
    let text = r#"
// weights
#w = const f32[2] [0.5, 2]
#b = const i32[] [3]

func @model(%x: f32[2], %y "second input": f32[2]) -> f32[2] {
  %s = add %x, #w {act=none}   // an inline constant operand
  %bias = const #b
  %t = mul %s, %y : f32[2]
  %u = identity %t, %bias : f32[2]
  return %u
}
"#;
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[2]));
    let y = g.add_input("second input", f32t(&[2]));
    let w = g.add_const(tensor(&[2], TensorData::F32(vec![0.5, 2.0])));
    let bc = g.add_const_tensor(tensor(&[], TensorData::I32(vec![3])));
    // `%s` has no result type in the text: a node line without ':' has no results...
    let _ = (x, y, w, bc);
    let err = parse(text).expect_err("a result without a type is an error");
    assert!(matches!(err, qc_ir::Error::Parse { line: 7, .. }), "{err}");

    // ...so give it one; everything else stays hand-written.
    let text = text.replace("{act=none}   //", "{act=none} : f32[2]   //");
    let back = parse(&text).expect("parses");
    let n = g.add_node(
        Op::Add {
            act: Activation::None,
        },
        vec![x, w],
        vec![f32t(&[2])],
        "",
    );
    let s = g.node(n).outputs[0];
    let bias = g.add_const_value(bc, None);
    let n = g.add_node(Op::Mul, vec![s, y], vec![f32t(&[2])], "");
    let t = g.node(n).outputs[0];
    let n = g.add_node(Op::Identity, vec![t, bias], vec![f32t(&[2])], "");
    let u = g.node(n).outputs[0];
    g.add_output("u", u);
    assert_eq!(back, g);
    assert_eq!(back.values[bias.index()].def, ValueDef::Const(bc));
}
