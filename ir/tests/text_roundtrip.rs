//! Round trip of the text form over hand-built graphs covering every op, every
//! attribute, every dtype of constant data, quantized types (per-tensor, per-axis,
//! explicit storage), shared constants, multi-result nodes and odd names.

#![allow(clippy::panic)] // tests fail by panicking

use std::sync::Arc;

use qc_ir::text::{
    digest_resolver, parse, parse_with_consts, print, print_with, DataMode, PrintOptions,
};
use qc_ir::{
    Activation, ConvAttrs, ConvTransposeAttrs, DType, GemmAttrs, Graph, LrnAttrs, Op, PoolAttrs,
    QType, QuantParams, Tensor, TensorData, TensorType, ValueDef, ValueId,
};

/// One index per `Op` variant. Exhaustive on purpose: a new op breaks this build until
/// the zoo below covers it.
fn variant(op: &Op) -> usize {
    match op {
        Op::Quantize => 0,
        Op::Dequantize => 1,
        Op::Requantize => 2,
        Op::DynamicQuantize => 3,
        Op::Cast { .. } => 4,
        Op::Conv(_) => 5,
        Op::ConvInteger(_) => 6,
        Op::ConvTranspose(_) => 7,
        Op::Gemm(_) => 8,
        Op::MatMul { .. } => 9,
        Op::MatMulInteger => 10,
        Op::BatchNorm { .. } => 11,
        Op::Add { .. } => 12,
        Op::Sub => 13,
        Op::Mul => 14,
        Op::Div => 15,
        Op::Sum => 16,
        Op::Relu => 17,
        Op::LeakyRelu { .. } => 18,
        Op::PRelu => 19,
        Op::Clip { .. } => 20,
        Op::Sigmoid => 21,
        Op::HardSigmoid { .. } => 22,
        Op::HardSwish => 23,
        Op::Tanh => 24,
        Op::MaxPool { .. } => 25,
        Op::AveragePool { .. } => 26,
        Op::GlobalAveragePool => 27,
        Op::GlobalMaxPool => 28,
        Op::Flatten { .. } => 29,
        Op::Reshape { .. } => 30,
        Op::Squeeze { .. } => 31,
        Op::Unsqueeze { .. } => 32,
        Op::Transpose { .. } => 33,
        Op::Concat { .. } => 34,
        Op::Pad { .. } => 35,
        Op::Softmax { .. } => 36,
        Op::ReduceMean { .. } => 37,
        Op::Lrn(_) => 38,
        Op::Identity => 39,
    }
}
const VARIANTS: usize = 40;

fn f32t(shape: &[usize]) -> TensorType {
    TensorType::f32(shape.to_vec())
}

fn u8q(shape: &[usize], s: f32, z: i32) -> TensorType {
    TensorType::quantized(shape.to_vec(), QuantParams::per_tensor(QType::U8, s, z))
}

fn raw(dtype: DType, shape: &[usize]) -> TensorType {
    TensorType::new(dtype, shape.to_vec())
}

fn conv_attrs(kernel: &[usize]) -> ConvAttrs {
    let k = kernel.len();
    ConvAttrs {
        kernel: kernel.to_vec(),
        strides: vec![1; k],
        dilations: vec![1; k],
        pads: vec![0; 2 * k],
        group: 1,
        act: Activation::None,
    }
}

fn pool_attrs(kernel: &[usize]) -> PoolAttrs {
    let k = kernel.len();
    PoolAttrs {
        kernel: kernel.to_vec(),
        strides: vec![1; k],
        dilations: vec![1; k],
        pads: vec![0; 2 * k],
        ceil_mode: false,
    }
}

fn tensor(shape: &[usize], data: TensorData) -> Arc<Tensor> {
    Arc::new(Tensor::new(shape.to_vec(), data).expect("test tensor"))
}

/// A graph with every op (several with non-default attributes), compacted.
fn zoo() -> Graph {
    let mut g = Graph::new();
    let x = g.add_input("gpu_0/data_0", f32t(&[1, 3, 8, 8]));
    let xq = g.add_input(
        "weird \"name\" \\ with\nnewline\ttab, é, 🚀 and \u{1}",
        u8q(&[1, 3, 8, 8], 0.5, 128),
    );
    let y = g.add_input("", f32t(&[1, 3, 8, 8]));
    let mut outs: Vec<ValueId> = Vec::new();
    let mut node = |g: &mut Graph,
                    op: Op,
                    ins: Vec<ValueId>,
                    tys: Vec<TensorType>,
                    name: &str|
     -> Vec<ValueId> {
        let n = g.add_node(op, ins, tys, name);
        let o = g.node(n).outputs.clone();
        outs.extend(o.iter().copied());
        o
    };

    // conversions
    let q = node(
        &mut g,
        Op::Quantize,
        vec![x],
        vec![u8q(&[1, 3, 8, 8], 0.0235294, 128)],
        "q1",
    )[0];
    node(
        &mut g,
        Op::Dequantize,
        vec![q],
        vec![f32t(&[1, 3, 8, 8])],
        "",
    );
    let i8q = TensorType::quantized(
        vec![1, 3, 8, 8],
        QuantParams::per_tensor(QType::I8, 1.5e-7, -3),
    );
    node(&mut g, Op::Requantize, vec![q], vec![i8q], "requant");
    node(
        &mut g,
        Op::DynamicQuantize,
        vec![x],
        vec![
            raw(DType::U8, &[1, 3, 8, 8]),
            f32t(&[]),
            raw(DType::U8, &[]),
        ],
        "dq",
    );
    node(
        &mut g,
        Op::Cast { to: DType::BF16 },
        vec![x],
        vec![raw(DType::BF16, &[1, 3, 8, 8])],
        "",
    );

    // a per-axis weight shared by two values with different quant params, and a bias
    let wdata: Vec<i8> = (0..4 * 3 * 3 * 3).map(|i| (i % 255) as i8 - 100).collect();
    let wc = g.add_const_tensor(tensor(&[4, 3, 3, 3], TensorData::I8(wdata)));
    let w_axis = g.add_const_value(
        wc,
        Some(QuantParams::per_axis(
            QType::I8,
            0,
            vec![0.01, 0.02, f32::MIN_POSITIVE, 3.0e38],
            vec![0, 0, -1, 1],
        )),
    );
    let w_tensor = g.add_const_value(wc, Some(QuantParams::per_tensor(QType::I8, 0.125, 0)));
    let b = g.add_const(tensor(
        &[4],
        TensorData::I32(vec![i32::MIN, -1, 0, i32::MAX]),
    ));
    let mut c1 = conv_attrs(&[3, 3]);
    c1.strides = vec![2, 2];
    c1.pads = vec![1, 1, 1, 1];
    c1.act = Activation::Relu;
    node(
        &mut g,
        Op::Conv(c1),
        vec![q, w_axis, b],
        vec![u8q(&[1, 4, 4, 4], 0.0413, 0)],
        "conv1",
    );
    let mut c2 = conv_attrs(&[3, 3]);
    c2.act = Activation::Clip { min: 0.0, max: 6.0 };
    node(
        &mut g,
        Op::Conv(c2),
        vec![q, w_tensor],
        vec![u8q(&[1, 4, 6, 6], 0.05, 3)],
        "",
    );
    let mut ci = conv_attrs(&[3, 3]);
    ci.dilations = vec![2, 2];
    ci.group = 3;
    let zp = g.add_const(tensor(&[], TensorData::U8(vec![128])));
    let wzp = g.add_const(tensor(&[], TensorData::I8(vec![0])));
    node(
        &mut g,
        Op::ConvInteger(ci),
        vec![q, w_tensor, zp, wzp],
        vec![raw(DType::I32, &[1, 4, 4, 4])],
        "ci",
    );
    let ct = ConvTransposeAttrs {
        kernel: vec![2],
        strides: vec![2],
        dilations: vec![1],
        pads: vec![0, 1],
        output_padding: vec![1],
        group: 2,
        act: Activation::Clip {
            min: f32::NEG_INFINITY,
            max: -0.0,
        },
    };
    let x1d = g.add_input("x1d", f32t(&[1, 4, 5]));
    let wt = g.add_const(tensor(
        &[4, 2, 2],
        TensorData::F32((0..16).map(|i| i as f32 * 0.1).collect()),
    ));
    node(
        &mut g,
        Op::ConvTranspose(ct),
        vec![x1d, wt],
        vec![f32t(&[1, 4, 10])],
        "deconv",
    );

    // linear algebra
    let a2 = g.add_input("a", f32t(&[2, 3]));
    let b2 = g.add_const(tensor(&[4, 3], TensorData::F32(vec![1.0; 12])));
    let gm = GemmAttrs {
        alpha: 0.5,
        beta: -0.0,
        trans_a: false,
        trans_b: true,
        act: Activation::Clip {
            min: -1.0,
            max: f32::INFINITY,
        },
    };
    node(
        &mut g,
        Op::Gemm(gm),
        vec![a2, b2],
        vec![f32t(&[2, 4])],
        "fc",
    );
    let gd = GemmAttrs {
        alpha: 1.0,
        beta: 1.0,
        trans_a: true,
        trans_b: false,
        act: Activation::None,
    };
    node(&mut g, Op::Gemm(gd), vec![a2, a2], vec![f32t(&[3, 3])], "");
    node(
        &mut g,
        Op::MatMul {
            act: Activation::None,
        },
        vec![a2, b2],
        vec![f32t(&[2, 4])],
        "",
    );
    node(
        &mut g,
        Op::MatMul {
            act: Activation::Relu,
        },
        vec![a2, b2],
        vec![f32t(&[2, 4])],
        "mm",
    );
    node(
        &mut g,
        Op::MatMulInteger,
        vec![xq, xq, zp, zp],
        vec![raw(DType::I32, &[1, 3, 8, 8])],
        "",
    );
    let bn: Vec<ValueId> = (0..4)
        .map(|k| g.add_const(tensor(&[3], TensorData::F32(vec![k as f32, 1e-3, -2.5]))))
        .collect();
    node(
        &mut g,
        Op::BatchNorm { epsilon: 1e-5 },
        vec![x, bn[0], bn[1], bn[2], bn[3]],
        vec![f32t(&[1, 3, 8, 8])],
        "bn",
    );

    // elementwise
    node(
        &mut g,
        Op::Add {
            act: Activation::Relu,
        },
        vec![x, y],
        vec![f32t(&[1, 3, 8, 8])],
        "add",
    );
    node(
        &mut g,
        Op::Add {
            act: Activation::None,
        },
        vec![q, q],
        vec![u8q(&[1, 3, 8, 8], 0.04, 120)],
        "",
    );
    node(&mut g, Op::Sub, vec![x, y], vec![f32t(&[1, 3, 8, 8])], "");
    node(&mut g, Op::Mul, vec![x, y], vec![f32t(&[1, 3, 8, 8])], "");
    node(&mut g, Op::Div, vec![x, y], vec![f32t(&[1, 3, 8, 8])], "");
    node(
        &mut g,
        Op::Sum,
        vec![x, y, x],
        vec![f32t(&[1, 3, 8, 8])],
        "",
    );
    node(
        &mut g,
        Op::Relu,
        vec![q],
        vec![u8q(&[1, 3, 8, 8], 0.0235294, 128)],
        "",
    );
    node(
        &mut g,
        Op::LeakyRelu { alpha: 0.01 },
        vec![x],
        vec![f32t(&[1, 3, 8, 8])],
        "",
    );
    let slope = g.add_const(tensor(&[3, 1, 1], TensorData::F32(vec![0.25, -0.0, 1e-45])));
    node(
        &mut g,
        Op::PRelu,
        vec![x, slope],
        vec![f32t(&[1, 3, 8, 8])],
        "",
    );
    node(
        &mut g,
        Op::Clip {
            min: Some(0.0),
            max: None,
        },
        vec![x],
        vec![f32t(&[1, 3, 8, 8])],
        "",
    );
    node(
        &mut g,
        Op::Clip {
            min: None,
            max: Some(6.0),
        },
        vec![x],
        vec![f32t(&[1, 3, 8, 8])],
        "",
    );
    node(
        &mut g,
        Op::Clip {
            min: None,
            max: None,
        },
        vec![x],
        vec![f32t(&[1, 3, 8, 8])],
        "",
    );
    node(
        &mut g,
        Op::Clip {
            min: Some(f64::NEG_INFINITY),
            max: Some(0.1),
        },
        vec![x],
        vec![f32t(&[1, 3, 8, 8])],
        "",
    );
    node(&mut g, Op::Sigmoid, vec![x], vec![f32t(&[1, 3, 8, 8])], "");
    node(
        &mut g,
        Op::HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        },
        vec![x],
        vec![f32t(&[1, 3, 8, 8])],
        "",
    );
    node(
        &mut g,
        Op::HardSwish,
        vec![x],
        vec![f32t(&[1, 3, 8, 8])],
        "",
    );
    node(&mut g, Op::Tanh, vec![x], vec![f32t(&[1, 3, 8, 8])], "");

    // pooling
    let mut mp = pool_attrs(&[3, 3]);
    mp.strides = vec![2, 2];
    mp.pads = vec![0, 0, 1, 1];
    mp.ceil_mode = true;
    node(
        &mut g,
        Op::MaxPool {
            pool: mp,
            storage_order: 1,
        },
        vec![q],
        vec![
            u8q(&[1, 3, 4, 4], 0.0235294, 128),
            raw(DType::I64, &[1, 3, 4, 4]),
        ],
        "pool_with_indices",
    );
    node(
        &mut g,
        Op::MaxPool {
            pool: pool_attrs(&[2, 2]),
            storage_order: 0,
        },
        vec![x],
        vec![f32t(&[1, 3, 7, 7])],
        "",
    );
    let mut ap = pool_attrs(&[2, 2]);
    ap.dilations = vec![1, 2];
    node(
        &mut g,
        Op::AveragePool {
            pool: ap,
            count_include_pad: true,
        },
        vec![x],
        vec![f32t(&[1, 3, 7, 6])],
        "",
    );
    node(
        &mut g,
        Op::AveragePool {
            pool: pool_attrs(&[8, 8]),
            count_include_pad: false,
        },
        vec![x],
        vec![f32t(&[1, 3, 1, 1])],
        "",
    );
    node(
        &mut g,
        Op::GlobalAveragePool,
        vec![q],
        vec![u8q(&[1, 3, 1, 1], 0.01, 0)],
        "",
    );
    node(
        &mut g,
        Op::GlobalMaxPool,
        vec![x],
        vec![f32t(&[1, 3, 1, 1])],
        "",
    );

    // data movement
    node(
        &mut g,
        Op::Flatten { axis: 1 },
        vec![x],
        vec![f32t(&[1, 192])],
        "",
    );
    node(
        &mut g,
        Op::Reshape { shape: vec![3, 64] },
        vec![x],
        vec![f32t(&[3, 64])],
        "",
    );
    node(
        &mut g,
        Op::Squeeze { axes: vec![0] },
        vec![x],
        vec![f32t(&[3, 8, 8])],
        "",
    );
    node(
        &mut g,
        Op::Unsqueeze { axes: vec![0, 5] },
        vec![x],
        vec![f32t(&[1, 1, 3, 8, 8, 1])],
        "",
    );
    node(
        &mut g,
        Op::Transpose {
            perm: vec![0, 2, 3, 1],
        },
        vec![q],
        vec![u8q(&[1, 8, 8, 3], 0.0235294, 128)],
        "",
    );
    node(
        &mut g,
        Op::Concat { axis: 1 },
        vec![x, y],
        vec![f32t(&[1, 6, 8, 8])],
        "",
    );
    node(
        &mut g,
        Op::Pad {
            pads: vec![0, 0, 1, -1, 0, 0, 2, -2],
            value: 0.5,
        },
        vec![x],
        vec![f32t(&[1, 3, 11, 5])],
        "",
    );
    node(
        &mut g,
        Op::Pad {
            pads: vec![0; 8],
            value: -0.0,
        },
        vec![x],
        vec![f32t(&[1, 3, 8, 8])],
        "",
    );
    node(
        &mut g,
        Op::Pad {
            pads: vec![1; 8],
            value: 0.0,
        },
        vec![q],
        vec![u8q(&[3, 5, 10, 10], 0.0235294, 128)],
        "",
    );
    node(
        &mut g,
        Op::Softmax { axis: 3 },
        vec![x],
        vec![f32t(&[1, 3, 8, 8])],
        "",
    );
    node(
        &mut g,
        Op::ReduceMean {
            axes: vec![2, 3],
            keepdims: false,
        },
        vec![x],
        vec![f32t(&[1, 3])],
        "",
    );
    node(
        &mut g,
        Op::ReduceMean {
            axes: vec![1],
            keepdims: true,
        },
        vec![x],
        vec![f32t(&[1, 1, 8, 8])],
        "",
    );
    node(
        &mut g,
        Op::Lrn(LrnAttrs {
            size: 5,
            alpha: 1e-4,
            beta: 0.75,
            bias: 1.0,
        }),
        vec![x],
        vec![f32t(&[1, 3, 8, 8])],
        "lrn",
    );

    // constant data of every dtype, inline (small) and large, through identity nodes
    let small: Vec<(Vec<usize>, TensorData)> = vec![
        (
            vec![4],
            TensorData::F32(vec![f32::INFINITY, f32::NEG_INFINITY, -0.0, f32::MAX]),
        ),
        (
            vec![3],
            TensorData::F64(vec![0.1, -1e300, f64::MIN_POSITIVE / 4.0]),
        ),
        (vec![3], TensorData::F16(vec![0x3c00, 0x8000, 0x0001])),
        (vec![3], TensorData::BF16(vec![0x3f80, 0x7f80, 0x3dcd])),
        (vec![2], TensorData::I8(vec![i8::MIN, i8::MAX])),
        (vec![2], TensorData::U8(vec![0, 255])),
        (vec![2], TensorData::I16(vec![i16::MIN, i16::MAX])),
        (vec![2], TensorData::U16(vec![0, u16::MAX])),
        (vec![2], TensorData::U32(vec![0, u32::MAX])),
        (vec![2], TensorData::I64(vec![i64::MIN, i64::MAX])),
        (vec![2], TensorData::U64(vec![0, u64::MAX])),
        (vec![2, 1], TensorData::Bool(vec![true, false])),
        (vec![0, 3], TensorData::F32(vec![])),
        (vec![], TensorData::F64(vec![2.5])),
    ];
    let mut big_i = 0u64;
    let mut next = || {
        big_i = big_i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        big_i
    };
    let big: Vec<(Vec<usize>, TensorData)> = vec![
        (
            vec![17],
            TensorData::F32(
                (0..17)
                    .map(|_| f32::from_bits(next() as u32 & 0x7f7f_ffff))
                    .collect(),
            ),
        ),
        (
            vec![2, 9],
            TensorData::F64((0..18).map(|_| f64::from_bits(next() >> 2)).collect()),
        ),
        (
            vec![20],
            TensorData::F16((0..20).map(|_| next() as u16 & 0x7bff).collect()),
        ),
        (
            vec![20],
            TensorData::BF16((0..20).map(|_| next() as u16 & 0x7f7f).collect()),
        ),
        (
            vec![33],
            TensorData::I8((0..33).map(|_| next() as i8).collect()),
        ),
        (
            vec![33],
            TensorData::U16((0..33).map(|_| next() as u16).collect()),
        ),
        (
            vec![17],
            TensorData::I64((0..17).map(|_| next() as i64).collect()),
        ),
        (vec![17], TensorData::U64((0..17).map(|_| next()).collect())),
        (
            vec![17],
            TensorData::Bool((0..17).map(|_| next() & 1 == 1).collect()),
        ),
    ];
    for (shape, data) in small.into_iter().chain(big) {
        let dtype = data.dtype();
        let c = g.add_const(tensor(&shape, data));
        node(&mut g, Op::Identity, vec![c], vec![raw(dtype, &shape)], "");
    }

    // a quantized type whose storage differs from its dtype (kept as printed), and a
    // per-axis type without an axis: invalid, but the text form is still lossless
    let odd = TensorType {
        dtype: DType::I16,
        shape: vec![2].into(),
        quant: Some(QuantParams {
            storage: QType::I8,
            axis: None,
            scales: vec![1.0, 2.0],
            zero_points: vec![0],
        }),
    };
    node(&mut g, Op::Identity, vec![x], vec![odd], "");

    for (i, v) in outs.into_iter().enumerate() {
        g.add_output(format!("out/{i}:0"), v);
    }
    // graph outputs that no node computes: an input and an output-only constant
    g.add_output("passthrough", y);
    let only_out = g.add_const_value(wc, None);
    g.add_output("weights", only_out);
    g.compact();
    g
}

fn full(g: &Graph) -> String {
    print_with(g, &PrintOptions::full())
}

#[test]
fn zoo_covers_every_op() {
    let g = zoo();
    let mut seen = [false; VARIANTS];
    for n in &g.nodes {
        seen[variant(&n.op)] = true;
    }
    let missing: Vec<usize> = (0..VARIANTS).filter(|&i| !seen[i]).collect();
    assert!(missing.is_empty(), "variants not covered: {missing:?}");
}

#[test]
fn zoo_is_compact_and_shares_a_constant() {
    // The property the round trip relies on, checked on the fixture itself.
    let g = zoo();
    let mut again = g.clone();
    again.compact();
    assert_eq!(again, g);
    let shared = g
        .values
        .iter()
        .filter(|v| v.def == ValueDef::Const(qc_ir::ConstId(0)))
        .count();
    assert_eq!(shared, 3, "#0 is viewed per-axis, per-tensor and raw");
}

#[test]
fn full_data_round_trips() {
    let g = zoo();
    let text = full(&g);
    let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back, g);
}

#[test]
fn digests_round_trip_through_a_resolver() {
    let g = zoo();
    let resolve = digest_resolver(&g.consts);
    for mode in [DataMode::Auto, DataMode::Digest] {
        let text = print_with(&g, &PrintOptions { data: mode });
        let back = parse_with_consts(&text, &resolve).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, g, "{mode:?}");
    }
    let back = parse_with_consts(&print(&g), &resolve).expect("print() parses with a resolver");
    assert_eq!(back, g);
}

#[test]
fn printing_is_a_fixed_point() {
    let g = zoo();
    let text = full(&g);
    let back = parse(&text).expect("parses");
    assert_eq!(full(&back), text);
    assert_eq!(print(&back), print(&g));
}

#[test]
fn auto_mode_needs_data_for_large_constants_only() {
    let g = zoo();
    // The large weight is printed as a digest: without a resolver this is an error...
    assert!(matches!(parse(&print(&g)), Err(qc_ir::Error::Parse { .. })));
    // ...and the digest mode prints no data at all.
    let digest = print_with(
        &g,
        &PrintOptions {
            data: DataMode::Digest,
        },
    );
    assert!(!digest.contains(" = const i32[4] ["));
    assert!(print(&g).contains(" = const i32[4] [-2147483648, -1, 0, 2147483647]\n"));
}

#[test]
fn empty_graph_round_trips() {
    let g = Graph::new();
    let text = print(&g);
    assert_eq!(text, "func @main() -> () {\n  return\n}\n");
    assert_eq!(parse(&text).expect("parses"), g);
}

/// NaN never equals itself, so graphs holding NaNs are compared bit by bit.
#[test]
fn nans_keep_their_bits() {
    let neg_nan32 = f32::from_bits(0xffc0_0000);
    let payload32 = f32::from_bits(0x7f80_0001);
    let payload64 = f64::from_bits(0xfff8_0000_0000_0001);
    let mut g = Graph::new();
    let x = g.add_input("x", f32t(&[2]));
    let c = g.add_const(tensor(
        &[3],
        TensorData::F32(vec![f32::NAN, neg_nan32, payload32]),
    ));
    let h = g.add_const(tensor(&[2], TensorData::F16(vec![0x7e00, 0xfd01])));
    let bh = g.add_const(tensor(&[2], TensorData::BF16(vec![0x7fc0, 0xff81])));
    let d = g.add_const(tensor(&[2], TensorData::F64(vec![f64::NAN, payload64])));
    let n1 = g.add_node(
        Op::LeakyRelu { alpha: neg_nan32 },
        vec![x],
        vec![f32t(&[2])],
        "",
    );
    let n2 = g.add_node(
        Op::Clip {
            min: Some(payload64),
            max: Some(f64::NAN),
        },
        vec![x],
        vec![f32t(&[2])],
        "",
    );
    let n3 = g.add_node(Op::Sum, vec![c, h, bh, d], vec![f32t(&[2])], "");
    for n in [n1, n2, n3] {
        let v = g.node(n).outputs[0];
        g.add_output("", v);
    }
    g.compact();
    let text = full(&g);
    assert!(
        text.contains("[NaN, NaN_0xffc00000, NaN_0x7f800001]"),
        "{text}"
    );
    assert!(text.contains("{alpha=NaN_0xffc00000}"), "{text}");
    assert!(
        text.contains("{min=NaN_0xfff8000000000001, max=NaN}"),
        "{text}"
    );
    assert!(text.contains("f16[2] [NaN, NaN_0xfd01]"), "{text}");
    assert!(text.contains("bf16[2] [NaN, NaN_0xff81]"), "{text}");

    let back = parse(&text).expect("parses");
    assert_eq!(full(&back), text);
    let Op::LeakyRelu { alpha } = back.nodes[0].op else {
        panic!("op order")
    };
    assert_eq!(alpha.to_bits(), 0xffc0_0000);
    let Op::Clip {
        min: Some(lo),
        max: Some(hi),
    } = back.nodes[1].op
    else {
        panic!("op order")
    };
    assert_eq!(
        (lo.to_bits(), hi.to_bits()),
        (0xfff8_0000_0000_0001, 0x7ff8_0000_0000_0000)
    );
    let bits32: Vec<u32> = match back.consts[0].data() {
        TensorData::F32(v) => v.iter().map(|x| x.to_bits()).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(bits32, vec![0x7fc0_0000, 0xffc0_0000, 0x7f80_0001]);
    assert_eq!(
        back.consts[1].data(),
        &TensorData::F16(vec![0x7e00, 0xfd01])
    );
    assert_eq!(
        back.consts[2].data(),
        &TensorData::BF16(vec![0x7fc0, 0xff81])
    );
    let bits64: Vec<u64> = match back.consts[3].data() {
        TensorData::F64(v) => v.iter().map(|x| x.to_bits()).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(bits64, vec![0x7ff8_0000_0000_0000, 0xfff8_0000_0000_0001]);

    // In the hex form the bytes are carried as they are.
    let mut big = Graph::new();
    let nan_data: Vec<f32> = (0..20).map(|i| f32::from_bits(0xffc0_0000 | i)).collect();
    let v = big.add_const(tensor(&[20], TensorData::F32(nan_data)));
    big.add_output("nans", v);
    let back = parse(&full(&big)).expect("parses");
    let bits: Vec<u32> = back.consts[0]
        .as_f32()
        .expect("f32")
        .iter()
        .map(|x| x.to_bits())
        .collect();
    assert_eq!(bits, (0..20).map(|i| 0xffc0_0000 | i).collect::<Vec<u32>>());
}

#[test]
fn random_floats_round_trip_bit_exactly() {
    // Attributes, scales and inline data all go through the same spelling; hammer it
    // with random bit patterns (NaNs included) through a leaky_relu alpha, a clip bound
    // and a per-axis scale list.
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for _ in 0..300 {
        let a = f32::from_bits(next() as u32);
        let m = f64::from_bits(next());
        let scales: Vec<f32> = (0..4).map(|_| f32::from_bits(next() as u32)).collect();
        let data: Vec<f32> = (0..4).map(|_| f32::from_bits(next() as u32)).collect();
        let mut g = Graph::new();
        let qp = QuantParams::per_axis(QType::I8, 0, scales.clone(), vec![0, 1, -1, 127]);
        let x = g.add_input("x", TensorType::quantized(vec![4], qp));
        let c = g.add_const(tensor(&[4], TensorData::F32(data.clone())));
        let n1 = g.add_node(Op::LeakyRelu { alpha: a }, vec![x, c], vec![f32t(&[4])], "");
        let n2 = g.add_node(
            Op::Clip {
                min: Some(m),
                max: None,
            },
            vec![x],
            vec![f32t(&[4])],
            "",
        );
        for n in [n1, n2] {
            let v = g.node(n).outputs[0];
            g.add_output("o", v);
        }
        let text = full(&g);
        let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let Op::LeakyRelu { alpha } = back.nodes[0].op else {
            panic!()
        };
        assert_eq!(alpha.to_bits(), a.to_bits(), "{text}");
        let Op::Clip { min: Some(lo), .. } = back.nodes[1].op else {
            panic!()
        };
        assert_eq!(lo.to_bits(), m.to_bits(), "{text}");
        let q = back.values[0].ty.quant.as_ref().expect("quantized input");
        let got: Vec<u32> = q.scales.iter().map(|x| x.to_bits()).collect();
        assert_eq!(
            got,
            scales.iter().map(|x| x.to_bits()).collect::<Vec<u32>>(),
            "{text}"
        );
        let got: Vec<u32> = back.consts[0]
            .as_f32()
            .expect("f32")
            .iter()
            .map(|x| x.to_bits())
            .collect();
        assert_eq!(
            got,
            data.iter().map(|x| x.to_bits()).collect::<Vec<u32>>(),
            "{text}"
        );
    }
}

#[test]
fn const_values_keep_their_ids_and_types() {
    // Two values over one tensor with different quantization, the second defined
    // first by use order: the value ↔ ConstId mapping must survive.
    let mut g = Graph::new();
    let x = g.add_input("x", u8q(&[1, 2], 0.5, 0));
    let c = g.add_const_tensor(tensor(&[2], TensorData::U8(vec![7, 9])));
    let other = g.add_const_tensor(tensor(&[1], TensorData::F32(vec![1.0])));
    let va = g.add_const_value(c, Some(QuantParams::per_tensor(QType::U8, 0.25, 1)));
    let vb = g.add_const_value(
        c,
        Some(QuantParams::per_axis(
            QType::U8,
            0,
            vec![0.5, 0.75],
            vec![2, 3],
        )),
    );
    let vo = g.add_const_value(other, None);
    let n = g.add_node(
        Op::Add {
            act: Activation::None,
        },
        vec![x, vb],
        vec![u8q(&[1, 2], 0.5, 0)],
        "",
    );
    let s = g.node(n).outputs[0];
    let n2 = g.add_node(
        Op::Add {
            act: Activation::None,
        },
        vec![s, va],
        vec![u8q(&[1, 2], 0.5, 0)],
        "",
    );
    let out = g.node(n2).outputs[0];
    g.add_output("y", out);
    g.add_output("one", vo);
    g.compact();
    // after compact: %0 x, %1 vb, %2 sum, %3 va, %4 out, %5 vo; #0 shared, #1 other
    assert_eq!(g.values[1].def, ValueDef::Const(qc_ir::ConstId(0)));
    assert_eq!(g.values[3].def, ValueDef::Const(qc_ir::ConstId(0)));
    assert_eq!(g.values[5].def, ValueDef::Const(qc_ir::ConstId(1)));
    let text = print(&g);
    let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back, g);
}

#[test]
#[ignore = "prints the zoo for inspection"]
fn show_zoo() {
    println!("{}", print(&zoo()));
}
