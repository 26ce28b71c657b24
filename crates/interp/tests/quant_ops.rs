//! Quantized ops: conversions, integer-accumulating kernels (expected integers worked
//! out by hand in the comments) and the generic dequantize → float → quantize form.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::excessive_precision,
    clippy::cloned_ref_to_slice_refs,
    clippy::too_many_arguments
)]

mod common;

use common::*;
use qc_interp::Contract;
use qc_ir::{
    Activation, ConvAttrs, DType, GemmAttrs, Graph, Op, PoolAttrs, QType, QuantParams, TensorData,
    TensorType,
};

fn u8s(v: &[u8]) -> TensorData {
    TensorData::U8(v.to_vec())
}

fn i8s(v: &[i8]) -> TensorData {
    TensorData::I8(v.to_vec())
}

#[test]
fn quantize_rounds_ties_to_even_and_saturates() {
    let x = f32t(&[8], vec![0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 300.0, -300.0]);
    let mut g = Graph::new();
    let xv = g.add_input("x", TensorType::f32(vec![8]));
    let y = node_q(&mut g, Op::Quantize, &[xv], pt(QType::I8, 1.0, 0));
    g.add_output("y", y);
    assert_eq!(
        run1(&g, &[x]).data(),
        &i8s(&[0, 2, 2, 0, -2, -2, 127, -128])
    );

    // scale 0.5, zp 128: 0.25 → 0.5 → 0 → 128; 0.75 → 1.5 → 2 → 130; -0.25 → -0.5 → 0 → 128;
    // 1.25 → 2.5 → 2 → 130.
    let mut g = Graph::new();
    let xv = g.add_input("x", TensorType::f32(vec![4]));
    let y = node_q(&mut g, Op::Quantize, &[xv], pt(QType::U8, 0.5, 128));
    g.add_output("y", y);
    assert_eq!(
        run1(&g, &[f32t(&[4], vec![0.25, 0.75, -0.25, 1.25])]).data(),
        &u8s(&[128, 130, 128, 130])
    );
}

#[test]
fn quantize_and_dequantize_per_axis() {
    // axis 1, scales [0.5, 2], zero points [10, 0].
    let p = QuantParams::per_axis(QType::U8, 1, vec![0.5, 2.0], vec![10, 0]);
    let mut g = Graph::new();
    let xv = g.add_input("x", TensorType::f32(vec![2, 2]));
    let q = node_q(&mut g, Op::Quantize, &[xv], p.clone());
    let d = node(&mut g, Op::Dequantize, &[q])[0];
    g.add_output("q", q);
    g.add_output("d", d);
    // [[1, 6], [-1, 2]] → [[1/0.5+10, 6/2], [-1/0.5+10, 2/2]] = [[12, 3], [8, 1]].
    let r = run(&g, &[f32t(&[2, 2], vec![1.0, 6.0, -1.0, 2.0])]);
    assert_eq!(r[0].data(), &u8s(&[12, 3, 8, 1]));
    assert_close(&f32s(&r[1]), &[1.0, 6.0, -1.0, 2.0], 0.0);
}

#[test]
fn requantize_between_params() {
    // u8 (0.5, 10) → i8 (0.25, -3): q 12 → 1.0 → 4 - 3 = 1; q 0 → -5 → -20 - 3 = -23;
    // q 255 → 122.5 → 490 → saturates at 127.
    let mut g = Graph::new();
    let xv = g.add_input("x", TensorType::quantized(vec![3], pt(QType::U8, 0.5, 10)));
    let y = node_q(&mut g, Op::Requantize, &[xv], pt(QType::I8, 0.25, -3));
    g.add_output("y", y);
    assert_eq!(
        run1(&g, &[t(&[3], u8s(&[12, 0, 255]))]).data(),
        &i8s(&[1, -23, 127])
    );
}

/// The hand-worked quantized conv:
/// x u8 [1,1,2,2] = [130, 126, 128, 134], s_x 0.5, z_x 128 → x - z_x = [2, -2, 0, 6].
/// w i8 [2,1,2,2] per axis 0, scales [0.25, 0.125], zero points 0:
///   w0 = [1, 2, 3, 4], w1 = [-1, 0, 0, 1]. bias i32 = [10, 16].
/// acc0 = 2·1 - 2·2 + 0·3 + 6·4 + 10 = 32; acc1 = -2 + 6 + 16 = 20.
fn qconv_graph(y_ty: Option<QuantParams>, act: Activation, w1_neg: bool) -> Graph {
    let mut g = Graph::new();
    let x = g.add_input(
        "x",
        TensorType::quantized(vec![1, 1, 2, 2], pt(QType::U8, 0.5, 128)),
    );
    let w1: [i8; 4] = if w1_neg { [1, 0, 0, -1] } else { [-1, 0, 0, 1] };
    let wd = [1i8, 2, 3, 4]
        .iter()
        .chain(&w1)
        .copied()
        .collect::<Vec<_>>();
    let w = qconst(
        &mut g,
        t(&[2, 1, 2, 2], TensorData::I8(wd)),
        QuantParams::per_axis(QType::I8, 0, vec![0.25, 0.125], vec![0, 0]),
    );
    let b = g.add_const(t(&[2], TensorData::I32(vec![10, 16])));
    let attrs = ConvAttrs {
        kernel: vec![2, 2],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: vec![0, 0, 0, 0],
        group: 1,
        act,
    };
    let y = match y_ty {
        Some(q) => node_q(&mut g, Op::Conv(attrs), &[x, w, b], q),
        None => node_typed(
            &mut g,
            Op::Conv(attrs),
            &[x, w, b],
            vec![TensorType::f32(vec![1, 2, 1, 1])],
        )[0],
    };
    g.add_output("y", y);
    g
}

fn qconv_x() -> qc_ir::Tensor {
    t(&[1, 1, 2, 2], u8s(&[130, 126, 128, 134]))
}

#[test]
fn quantized_conv_per_channel_by_hand() {
    // y u8 (0.5, 100). m0 = 0.5·0.25/0.5 = 0.25 → 32·0.25 = 8 → 108.
    // m1 = 0.5·0.125/0.5 = 0.125 → 20·0.125 = 2.5 → ties to even 2 → 102.
    let g = qconv_graph(Some(pt(QType::U8, 0.5, 100)), Activation::None, false);
    assert_eq!(run1(&g, &[qconv_x()]).data(), &u8s(&[108, 102]));
}

#[test]
fn quantized_conv_rounding_contracts() {
    // 2.5 rounds half away from zero (fixed) / half up (fixed-single) to 3 → 103.
    let g = qconv_graph(Some(pt(QType::U8, 0.5, 100)), Activation::None, false);
    assert_eq!(
        run_with(&g, &[qconv_x()], Contract::Float)[0].data(),
        &u8s(&[108, 102])
    );
    assert_eq!(
        run_with(&g, &[qconv_x()], Contract::Fixed)[0].data(),
        &u8s(&[108, 103])
    );
    assert_eq!(
        run_with(&g, &[qconv_x()], Contract::FixedSingle)[0].data(),
        &u8s(&[108, 103])
    );
}

#[test]
fn quantized_conv_fused_relu_and_clip_clamp() {
    // With w1 = [1, 0, 0, -1]: acc0 = 32, acc1 = 2 - 6 + 16 = 12.
    // y u8 (0.5, 101): 32·0.25 = 8 → 109; 12·0.125 = 1.5 → 2 → 103; relu bound
    // quantize(0) = 101 does not bind.
    let g = qconv_graph(Some(pt(QType::U8, 0.5, 101)), Activation::Relu, true);
    assert_eq!(run1(&g, &[qconv_x()]).data(), &u8s(&[109, 103]));
    // Clip [-0.5, 1.0]: bounds quantize to [-1 + 101, 2 + 101] = [100, 103]: 109 → 103.
    let g = qconv_graph(
        Some(pt(QType::U8, 0.5, 101)),
        Activation::Clip {
            min: -0.5,
            max: 1.0,
        },
        true,
    );
    assert_eq!(run1(&g, &[qconv_x()]).data(), &u8s(&[103, 103]));
    // y i8 (0.5, 0), Clip [0, 3]: bounds [0, 6]: 8 → 6; 1.5 → 2 stays.
    let g = qconv_graph(
        Some(pt(QType::I8, 0.5, 0)),
        Activation::Clip { min: 0.0, max: 3.0 },
        true,
    );
    assert_eq!(run1(&g, &[qconv_x()]).data(), &i8s(&[6, 2]));
}

#[test]
fn quantized_conv_relu_clamps_negative_to_zero_point() {
    // Bias -40 on both channels: acc0 = 22 - 40 = -18 → -18·0.25 = -4.5 → -4 → zp 50 - 4 = 46,
    // relu → 50. acc1 = 4 - 40 = -36 → -4.5 → -4 → 46 → 50. Without relu: 46, 46.
    let build = |act| {
        let mut g = Graph::new();
        let x = g.add_input(
            "x",
            TensorType::quantized(vec![1, 1, 2, 2], pt(QType::U8, 0.5, 128)),
        );
        let w = qconst(
            &mut g,
            t(&[2, 1, 2, 2], i8s(&[1, 2, 3, 4, -1, 0, 0, 1])),
            QuantParams::per_axis(QType::I8, 0, vec![0.25, 0.125], vec![0, 0]),
        );
        let b = g.add_const(t(&[2], TensorData::I32(vec![-40, -40])));
        let attrs = ConvAttrs {
            kernel: vec![2, 2],
            strides: vec![1, 1],
            dilations: vec![1, 1],
            pads: vec![0, 0, 0, 0],
            group: 1,
            act,
        };
        let y = node_q(&mut g, Op::Conv(attrs), &[x, w, b], pt(QType::U8, 0.5, 50));
        g.add_output("y", y);
        g
    };
    assert_eq!(
        run1(&build(Activation::None), &[qconv_x()]).data(),
        &u8s(&[46, 46])
    );
    assert_eq!(
        run1(&build(Activation::Relu), &[qconv_x()]).data(),
        &u8s(&[50, 50])
    );
}

#[test]
fn quantized_conv_with_float_result() {
    // acc · s_x · s_w[c]: 32 · 0.125 = 4.0, 20 · 0.0625 = 1.25.
    let g = qconv_graph(None, Activation::None, false);
    assert_close(&f32s(&run1(&g, &[qconv_x()])), &[4.0, 1.25], 0.0);
}

#[test]
fn quantized_conv_padded_matches_float_reference_within_one_lsb() {
    // Random u8 activations, per-channel i8 weights, padding and stride: the integer
    // path must agree with quantize(float conv of dequantized values) to 1 LSB.
    let (xd, wd) = ([1usize, 3, 6, 5], [4usize, 3, 3, 3]);
    let xq: Vec<u8> = rand_vec(90, 50)
        .iter()
        .map(|v| ((v + 1.0) * 127.0) as u8)
        .collect();
    let wq: Vec<i8> = rand_vec(108, 51)
        .iter()
        .map(|v| (v * 127.0) as i8)
        .collect();
    let bq: Vec<i32> = rand_vec(4, 52).iter().map(|v| (v * 500.0) as i32).collect();
    let (sx, zx) = (0.02f32, 120);
    let sw = vec![0.01f32, 0.02, 0.005, 0.03];
    let (sy, zy) = (0.05f32, 128);
    let attrs = ConvAttrs {
        kernel: vec![3, 3],
        strides: vec![2, 1],
        dilations: vec![1, 1],
        pads: vec![1, 1, 1, 0],
        group: 1,
        act: Activation::None,
    };
    let mut g = Graph::new();
    let x = g.add_input(
        "x",
        TensorType::quantized(xd.to_vec(), pt(QType::U8, sx, zx)),
    );
    let w = qconst(
        &mut g,
        t(&wd, TensorData::I8(wq.clone())),
        QuantParams::per_axis(QType::I8, 0, sw.clone(), vec![0; 4]),
    );
    let b = g.add_const(t(&[4], TensorData::I32(bq.clone())));
    let y = node_q(
        &mut g,
        Op::Conv(attrs.clone()),
        &[x, w, b],
        pt(QType::U8, sy, zy),
    );
    g.add_output("y", y);
    let got = run1(&g, &[t(&xd, TensorData::U8(xq.clone()))]);

    // Float reference graph on dequantized values.
    let xf: Vec<f32> = xq
        .iter()
        .map(|&q| (i32::from(q) - zx) as f32 * sx)
        .collect();
    let wf: Vec<f32> = wq
        .iter()
        .enumerate()
        .map(|(i, &q)| f32::from(q) * sw[i / 27])
        .collect();
    let bf: Vec<f32> = bq
        .iter()
        .enumerate()
        .map(|(c, &q)| q as f32 * sx * sw[c])
        .collect();
    let mut gf = Graph::new();
    let x = gf.add_input("x", TensorType::f32(xd.to_vec()));
    let w = gf.add_const(f32t(&wd, wf));
    let b = gf.add_const(f32t(&[4], bf));
    let y = node(&mut gf, Op::Conv(attrs), &[x, w, b])[0];
    gf.add_output("y", y);
    let yf = f32s(&run1(&gf, &[f32t(&xd, xf)]));
    let TensorData::U8(gq) = got.data() else {
        panic!("u8 result")
    };
    assert_eq!(gq.len(), yf.len());
    for (i, (&q, &f)) in gq.iter().zip(&yf).enumerate() {
        let want = ((f / sy).round() + zy as f32).clamp(0.0, 255.0);
        assert!(
            (f32::from(q) - want).abs() <= 1.0,
            "element {i}: got {q}, float reference {want}"
        );
    }
}

#[test]
fn conv_integer_with_zero_points() {
    // ONNX "convinteger_without_padding": x = 2..10 (3x3), x_zp 1, w = ones(2x2):
    // y = [[12, 16], [24, 28]]. Channel 1 uses w = 5 with w_zp 6, i.e. -1: negated.
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::new(DType::U8, vec![1, 1, 3, 3]));
    let w = g.add_const(t(&[2, 1, 2, 2], u8s(&[1, 1, 1, 1, 5, 5, 5, 5])));
    let xz = g.add_const(t(&[], u8s(&[1])));
    let wz = g.add_const(t(&[2], u8s(&[0, 6])));
    let attrs = ConvAttrs {
        kernel: vec![2, 2],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: vec![0, 0, 0, 0],
        group: 1,
        act: Activation::None,
    };
    let y = node(&mut g, Op::ConvInteger(attrs), &[x, w, xz, wz])[0];
    g.add_output("y", y);
    let y = run1(&g, &[t(&[1, 1, 3, 3], u8s(&[2, 3, 4, 5, 6, 7, 8, 9, 10]))]);
    assert_eq!(
        y.data(),
        &TensorData::I32(vec![12, 16, 24, 28, -12, -16, -24, -28])
    );
}

#[test]
fn conv_integer_padding_contributes_zero() {
    // ONNX "convinteger_with_padding": pads 1 → padded positions are x_zp, i.e. 0 after
    // subtracting it: y = [[1, 3, 5, 3], [5, 12, 16, 9], [11, 24, 28, 15], [7, 15, 17, 9]].
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::new(DType::U8, vec![1, 1, 3, 3]));
    let w = g.add_const(t(&[1, 1, 2, 2], u8s(&[1, 1, 1, 1])));
    let xz = g.add_const(t(&[], u8s(&[1])));
    let wz = g.add_const(t(&[], u8s(&[0])));
    let attrs = ConvAttrs {
        kernel: vec![2, 2],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: vec![1, 1, 1, 1],
        group: 1,
        act: Activation::None,
    };
    let y = node(&mut g, Op::ConvInteger(attrs), &[x, w, xz, wz])[0];
    g.add_output("y", y);
    let y = run1(&g, &[t(&[1, 1, 3, 3], u8s(&[2, 3, 4, 5, 6, 7, 8, 9, 10]))]);
    assert_eq!(
        y.data(),
        &TensorData::I32(vec![1, 3, 5, 3, 5, 12, 16, 9, 11, 24, 28, 15, 7, 15, 17, 9])
    );
}

#[test]
fn matmul_integer_zero_points() {
    // ONNX "matmulinteger": A 4x3 with a_zp 12, B 3x2 with b_zp 0.
    let a = u8s(&[11, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0]);
    let b = u8s(&[1, 4, 2, 5, 3, 6]);
    let build = |az: qc_ir::Tensor, bz: qc_ir::Tensor| {
        let mut g = Graph::new();
        let av = g.add_input("a", TensorType::new(DType::U8, vec![4, 3]));
        let bv = g.add_input("b", TensorType::new(DType::U8, vec![3, 2]));
        let azv = g.add_const(az);
        let bzv = g.add_const(bz);
        let y = node(&mut g, Op::MatMulInteger, &[av, bv, azv, bzv])[0];
        g.add_output("y", y);
        g
    };
    let g = build(t(&[], u8s(&[12])), t(&[], u8s(&[0])));
    let y = run1(&g, &[t(&[4, 3], a.clone()), t(&[3, 2], b.clone())]);
    assert_eq!(
        y.data(),
        &TensorData::I32(vec![-38, -83, -44, -98, -50, -113, -56, -128])
    );

    // Per-row a_zp [12, 11, 10, 9] and per-column b_zp [0, 1]: rows of A - a_zp become
    // [-1,-5,-9], [-1,-5,-9], [-1,-5,-9], [-1,-5,-9]; B - b_zp = [[1,3],[2,4],[3,5]]:
    // every row gives [-1-10-27, -3-20-45] = [-38, -68].
    let g = build(t(&[4], u8s(&[12, 11, 10, 9])), t(&[2], u8s(&[0, 1])));
    let y = run1(&g, &[t(&[4, 3], a), t(&[3, 2], b)]);
    assert_eq!(
        y.data(),
        &TensorData::I32(vec![-38, -68, -38, -68, -38, -68, -38, -68])
    );
}

fn qgemm_graph(trans_b: bool) -> Graph {
    let mut g = Graph::new();
    let a = g.add_input(
        "a",
        TensorType::quantized(vec![1, 2], pt(QType::U8, 0.5, 128)),
    );
    let (bd, bdata, axis) = if trans_b {
        ([2, 2], [1i8, 3, 2, 4], 0)
    } else {
        ([2, 2], [1i8, 2, 3, 4], 1)
    };
    let b = qconst(
        &mut g,
        t(&bd, i8s(&bdata)),
        QuantParams::per_axis(QType::I8, axis, vec![1.0, 0.5], vec![0, 0]),
    );
    let c = g.add_const(t(&[2], TensorData::I32(vec![10, 0])));
    let attrs = GemmAttrs {
        alpha: 1.0,
        beta: 1.0,
        trans_a: false,
        trans_b,
        act: Activation::None,
    };
    let y = node_q(&mut g, Op::Gemm(attrs), &[a, b, c], pt(QType::U8, 1.0, 50));
    g.add_output("y", y);
    g
}

#[test]
fn quantized_gemm_per_column() {
    // a - z = [2, -2]; B = [[1, 2], [3, 4]] (columns scaled 1.0 and 0.5).
    // acc = [2 - 6 + 10, 4 - 8 + 0] = [6, -4]; m = [0.5, 0.25] → [3, -1] → +50 = [53, 49].
    for trans_b in [false, true] {
        let y = run1(&qgemm_graph(trans_b), &[t(&[1, 2], u8s(&[130, 126]))]);
        assert_eq!(y.data(), &u8s(&[53, 49]), "trans_b {trans_b}");
    }
}

#[test]
fn quantized_matmul_per_column() {
    // a = [[1,2],[3,4]] (s 1, z 0), b = [[1,0],[0,2]] with column scales [1, 0.5]:
    // acc = [[1,4],[3,8]]; y i8 (1, 0): column 1 scaled by 0.5 → [[1,2],[3,4]].
    let mut g = Graph::new();
    let a = g.add_input(
        "a",
        TensorType::quantized(vec![2, 2], pt(QType::U8, 1.0, 0)),
    );
    let b = qconst(
        &mut g,
        t(&[2, 2], i8s(&[1, 0, 0, 2])),
        QuantParams::per_axis(QType::I8, 1, vec![1.0, 0.5], vec![0, 0]),
    );
    let y = node_q(
        &mut g,
        Op::MatMul {
            act: Activation::None,
        },
        &[a, b],
        pt(QType::I8, 1.0, 0),
    );
    g.add_output("y", y);
    assert_eq!(
        run1(&g, &[t(&[2, 2], u8s(&[1, 2, 3, 4]))]).data(),
        &i8s(&[1, 2, 3, 4])
    );
}

#[test]
fn quantized_add_goes_through_real_values() {
    // Under the integer contracts (the `float` contract's fused add is onnxruntime's,
    // tests/fused_ort.rs).
    // a (0.5, 10), b (0.25, 0), y (1, 5): 14,6 → 2 + 1.5 = 3.5 → 4 → 9;
    // 13,4 → 1.5 + 1 = 2.5 → 2 → 7; 0,0 → -5 → -5 + 5 = 0; relu variant: max(real, 0).
    let build = |act| {
        let mut g = Graph::new();
        let a = g.add_input("a", TensorType::quantized(vec![3], pt(QType::U8, 0.5, 10)));
        let b = g.add_input("b", TensorType::quantized(vec![3], pt(QType::U8, 0.25, 0)));
        let y = node_q(&mut g, Op::Add { act }, &[a, b], pt(QType::U8, 1.0, 5));
        g.add_output("y", y);
        g
    };
    let ins = [t(&[3], u8s(&[14, 13, 0])), t(&[3], u8s(&[6, 4, 0]))];
    assert_eq!(
        run_with(&build(Activation::None), &ins, Contract::Fixed)[0].data(),
        &u8s(&[9, 7, 0])
    );
    assert_eq!(
        run_with(&build(Activation::Relu), &ins, Contract::Fixed)[0].data(),
        &u8s(&[9, 7, 5])
    );
    // The fused add on codes: fixed = 5 - (0.5 * 10 + 0) = 0; 14,6 → 7 + 1.5 = 8.5 → 8;
    // 13,4 → 6.5 + 1 = 7.5 → 8; relu clamps the codes at the zero point 5.
    assert_eq!(
        run_with(&build(Activation::None), &ins, Contract::Float)[0].data(),
        &u8s(&[8, 8, 0])
    );
    assert_eq!(
        run_with(&build(Activation::Relu), &ins, Contract::Float)[0].data(),
        &u8s(&[8, 8, 5])
    );
}

#[test]
fn quantized_data_movement_and_pools() {
    // Concat of unequal params: a (0.5, 0) [2, 4] = reals [1, 2]; b (1, 1) [3] = real 2;
    // y (0.5, 0) → [2, 4, 4].
    let mut g = Graph::new();
    let a = g.add_input("a", TensorType::quantized(vec![2], pt(QType::U8, 0.5, 0)));
    let b = g.add_input("b", TensorType::quantized(vec![1], pt(QType::U8, 1.0, 1)));
    let y = node_q(
        &mut g,
        Op::Concat { axis: 0 },
        &[a, b],
        pt(QType::U8, 0.5, 0),
    );
    g.add_output("y", y);
    assert_eq!(
        run1(&g, &[t(&[2], u8s(&[2, 4])), t(&[1], u8s(&[3]))]).data(),
        &u8s(&[2, 4, 4])
    );

    // Pad with real 0 writes the zero point.
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::quantized(vec![2], pt(QType::U8, 0.1, 7)));
    let y = node(
        &mut g,
        Op::Pad {
            pads: vec![1, 2],
            value: 0.0,
        },
        &[x],
    )[0];
    g.add_output("y", y);
    assert_eq!(
        run1(&g, &[t(&[2], u8s(&[200, 3]))]).data(),
        &u8s(&[7, 200, 3, 7, 7])
    );

    // Max pool keeps the stored values exactly (same params).
    let mut g = Graph::new();
    let x = g.add_input(
        "x",
        TensorType::quantized(vec![1, 1, 2, 2], pt(QType::I8, 0.37, -3)),
    );
    let p = PoolAttrs {
        kernel: vec![2, 1],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: vec![0; 4],
        ceil_mode: false,
    };
    let y = node(
        &mut g,
        Op::MaxPool {
            pool: p,
            storage_order: 0,
        },
        &[x],
    )[0];
    g.add_output("y", y);
    assert_eq!(
        run1(&g, &[t(&[1, 1, 2, 2], i8s(&[-128, 90, 17, 127]))]).data(),
        &i8s(&[17, 127])
    );

    // Sigmoid on u8 (1/16, 128) → u8 (1/256, 0): x = 128 → 0 → 0.5 → 128; x = 255 → 7.9375
    // → 0.99964 → 255.9 → 255 (saturated); x = 0 → -8 → 0.000335 → 0.086 → 0.
    let mut g = Graph::new();
    let x = g.add_input(
        "x",
        TensorType::quantized(vec![3], pt(QType::U8, 1.0 / 16.0, 128)),
    );
    let y = node_q(&mut g, Op::Sigmoid, &[x], pt(QType::U8, 1.0 / 256.0, 0));
    g.add_output("y", y);
    assert_eq!(
        run1(&g, &[t(&[3], u8s(&[128, 255, 0]))]).data(),
        &u8s(&[128, 255, 0])
    );
}

#[test]
fn dynamic_quantize_onnx_examples() {
    let build = |n| {
        let mut g = Graph::new();
        let x = g.add_input("x", TensorType::f32(vec![n]));
        let outs = node(&mut g, Op::DynamicQuantize, &[x]);
        for (i, o) in outs.into_iter().enumerate() {
            g.add_output(format!("o{i}"), o);
        }
        g
    };
    // ONNX DynamicQuantizeLinear example: scale (2 + 3) / 255, zp round(3 / scale) = 153.
    let r = run(&build(6), &[f32t(&[6], vec![0., 2., -3., -2.5, 1.34, 0.5])]);
    assert_eq!(r[0].data(), &u8s(&[153, 255, 0, 26, 221, 179]));
    assert_close(&f32s(&r[1]), &[5.0 / 255.0], 1e-7);
    assert_eq!(r[2].data(), &u8s(&[153]));
    // Positive only: x_min is 0, so zp 0 and scale max / 255.
    let r = run(&build(3), &[f32t(&[3], vec![1., 2.55, 0.51])]);
    assert_eq!(r[0].data(), &u8s(&[100, 255, 51]));
    assert_eq!(r[2].data(), &u8s(&[0]));
    // All zeros: the reference's scale is 1/255, zp 0, y 0.
    let r = run(&build(2), &[f32t(&[2], vec![0., 0.])]);
    assert_eq!(r[0].data(), &u8s(&[0, 0]));
    assert_close(&f32s(&r[1]), &[1.0 / 255.0], 0.0);
}
