//! Post-training quantization end to end on the fixture models: ONNX export round
//! trips, calibration + Q/DQ insertion, the integer pipeline, CLE, bias correction,
//! bias-overflow widening, and QAT (fake-quant) import.
//!
//! References are independent of the code under test: the float graph run by the
//! reference interpreter, and hand-computed values.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

use qc_ir::{Activation, ConvAttrs, DType, Graph, Op, QType, Tensor, TensorType};
use qc_quant::{Interp, Method, QuantizeOptions};

fn fixture(name: &str) -> Graph {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    qc_onnx::import(
        &bytes,
        &qc_onnx::ImportOptions::default(),
        &qc_onnx::NoExternalData,
    )
    .unwrap()
}

fn run(g: &Graph, inputs: &[Tensor]) -> Vec<Tensor> {
    qc_interp::run(g, inputs, &qc_interp::Options::default()).unwrap()
}

/// Seeded inputs: xorshift, uniform in [-1, 1), one tensor per graph input.
fn samples(g: &Graph, n: usize, seed: u64) -> Vec<Vec<Tensor>> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            g.inputs
                .iter()
                .map(|p| {
                    let ty = g.ty(p.value);
                    let len = ty.shape.numel().unwrap();
                    let v = (0..len)
                        .map(|_| {
                            s ^= s << 13;
                            s ^= s >> 7;
                            s ^= s << 17;
                            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                        })
                        .collect();
                    Tensor::from_f32(ty.shape.clone(), v).unwrap()
                })
                .collect()
        })
        .collect()
}

fn optimize(g: &mut Graph) {
    qc_passes::Pipeline::parse("default")
        .unwrap()
        .run(g, &mut qc_passes::PassCx::default())
        .unwrap();
}

fn roundtrip(g: &Graph) -> Graph {
    let bytes = qc_onnx::export::to_onnx(g, 13).unwrap();
    qc_onnx::import(
        &bytes,
        &qc_onnx::ImportOptions::default(),
        &qc_onnx::NoExternalData,
    )
    .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    a.to_f32_vec()
        .iter()
        .zip(b.to_f32_vec())
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

fn cosine(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
    let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn export_round_trips_float_models_bit_exactly() {
    for name in ["cnn_float.onnx", "mobilenetv2_float.onnx"] {
        let g = fixture(name);
        let mut opt = g.clone();
        optimize(&mut opt);
        let x = samples(&g, 1, 7).remove(0);
        let want = run(&g, &x);
        // The imported graph and the optimized one (fused activations written back as
        // Conv + Relu / Clip) both survive the trip.
        for (what, graph) in [("imported", &g), ("optimized", &opt)] {
            let back = roundtrip(graph);
            let got = run(&back, &x);
            let direct = run(graph, &x);
            assert_eq!(got, direct, "{name} {what}: export changed the function");
            for (a, b) in got.iter().zip(&want) {
                assert!(max_abs_diff(a, b) < 1e-4, "{name} {what}");
            }
        }
    }
}

#[test]
fn export_refuses_what_it_cannot_write() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32([1, 4]));
    let n = g.add_node(
        Op::Requantize,
        vec![x],
        vec![TensorType::f32([1, 4])],
        "bad",
    );
    let y = g.node(n).outputs[0];
    g.add_output("y", y);
    let e = qc_onnx::export::to_onnx(&g, 13).unwrap_err().to_string();
    assert!(e.contains("requantize") && e.contains("bad"), "{e}");
    assert!(qc_onnx::export::to_onnx(&g, 12).is_err());
}

fn quantized_cnn(opts: &QuantizeOptions) -> (Graph, qc_quant::Quantized, Vec<Vec<Tensor>>) {
    let g = fixture("cnn_float.onnx");
    let calib = samples(&g, 16, 11);
    let q = qc_quant::quantize(&g, &calib, opts, &Interp::default(), &mut |_, _, _| {}).unwrap();
    (g, q, calib)
}

#[test]
fn qdq_graph_lowers_to_integer_ops_and_exports() {
    for method in [
        Method::MinMax,
        Method::Percentile(99.99),
        Method::Entropy,
        Method::Mse,
        Method::MovingAverageMinMax { momentum: 0.1 },
    ] {
        for per_channel in [false, true] {
            let opts = QuantizeOptions {
                method,
                per_channel,
                ..Default::default()
            };
            let (g, q, _) = quantized_cnn(&opts);
            let test = samples(&g, 4, 99);
            let mut int = q.qdq.clone();
            optimize(&mut int);
            for n in &int.nodes {
                if matches!(n.op, Op::Conv(_) | Op::Gemm(_) | Op::MatMul { .. }) {
                    let x = int.ty(n.inputs[0]);
                    assert!(
                        x.is_quantized(),
                        "{method:?} {per_channel}: float {} '{}' left",
                        n.op.name(),
                        n.name
                    );
                }
            }
            // Export → import gives the same QDQ function, bit for bit; the integer
            // graph is written in QDQ form and compiles back to the same integer ops.
            let back = roundtrip(&q.qdq);
            let mut back_int = roundtrip(&int);
            optimize(&mut back_int);
            for x in &test {
                let f = run(&g, x);
                let a = run(&q.qdq, x);
                let b = run(&back, x);
                let i = run(&int, x);
                assert_eq!(a, b, "{method:?}: exported QDQ differs");
                assert_eq!(
                    i,
                    run(&back_int, x),
                    "{method:?}: exported integer graph differs"
                );
                let c = cosine(&f[0], &i[0]);
                assert!(c > 0.99, "{method:?} {per_channel}: cosine {c}");
            }
        }
    }
}

#[test]
fn fused_relu_is_quantized_after_the_activation() {
    let (_, q, _) = quantized_cnn(&QuantizeOptions::default());
    for l in &q.layers {
        let fed_by_relu_conv = q.float.nodes.iter().any(|n| {
            n.outputs.first() == Some(&l.float)
                && matches!(&n.op, Op::Conv(a) if a.act == Activation::Relu)
        });
        if fed_by_relu_conv {
            // u8 asymmetric over a range >= 0: the zero point is the storage minimum.
            assert_eq!(l.params.zero_points, vec![0], "{}", l.name);
        }
    }
    assert!(q.layers.len() >= 5);
    // max_pool and flatten reuse their operand's parameters (their Q/DQ pairs cancel),
    // global_average_pool gets its own.
    let params_of = |name: &str| {
        q.layers
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.params.clone())
            .unwrap_or_else(|| panic!("no layer {name}"))
    };
    assert_eq!(params_of("pool"), params_of("res"));
    assert_eq!(params_of("flat"), params_of("gap"));
    assert_ne!(params_of("gap"), params_of("pool"));
}

#[test]
fn options_shape_the_parameters() {
    let opts = QuantizeOptions {
        activations: QType::I8,
        symmetric_activations: true,
        power_of_two: true,
        per_channel: true,
        int16: vec!["x".into()],
        ..Default::default()
    };
    let (_, q, _) = quantized_cnn(&opts);
    for l in &q.layers {
        let p = &l.params;
        let want = if l.name == "x" { QType::I16 } else { QType::I8 };
        assert_eq!(p.storage, want, "{}", l.name);
        assert_eq!(p.zero_points, vec![0], "{}", l.name);
        let s = p.scales[0];
        assert_eq!(s, 2f32.powi(s.log2().round() as i32), "{}: {s}", l.name);
    }
    // Weight and bias scales are powers of two too.
    for n in &q.qdq.nodes {
        if n.op == Op::Dequantize {
            let p = q.qdq.ty(n.inputs[0]).quant.clone().unwrap();
            for s in p.scales {
                assert_eq!(s, 2f32.powi(s.log2().round() as i32), "{}", n.name);
            }
        }
    }
    // Power-of-two u8 asymmetric: one-sided activations get zero point 0 and the
    // graph still compiles to integer ops.
    let opts = QuantizeOptions {
        power_of_two: true,
        ..Default::default()
    };
    let (g, q2, _) = quantized_cnn(&opts);
    assert!(q2
        .layers
        .iter()
        .any(|l| l.params.zero_points == vec![0] && l.op == "conv"));
    let mut int = q2.qdq.clone();
    optimize(&mut int);
    assert!(int
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Conv(_) | Op::Gemm(_)))
        .all(|n| int.ty(n.inputs[0]).is_quantized()));
    for x in samples(&g, 2, 8) {
        assert!(cosine(&run(&g, &x)[0], &run(&int, &x)[0]) > 0.98);
    }
    // 16-bit QDQ needs opset 21.
    assert!(qc_onnx::export::to_onnx(&q.qdq, 13).is_err());
    assert!(qc_onnx::export::to_onnx(&q.qdq, 21).is_ok());
}

#[test]
fn cross_layer_equalization_keeps_the_function() {
    // cnn_float: c1 -relu-> c2 (c2 also feeds a residual add, so c2 -> dw is no
    // pair); mobilenetv2 uses relu6 (not positively homogeneous: skipped) and
    // residual adds, leaving few pairs.
    for (name, pairs) in [("cnn_float.onnx", 1), ("mobilenetv2_float.onnx", 1)] {
        let mut g = fixture(name);
        optimize(&mut g);
        let mut e = g.clone();
        let rep = qc_quant::equalize(&mut e);
        assert!(rep.pairs >= pairs, "{name}: {rep:?}");
        for x in samples(&g, 3, 5) {
            let (a, b) = (run(&g, &x), run(&e, &x));
            let scale = a[0].to_f32_vec().iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(
                max_abs_diff(&a[0], &b[0]) <= 1e-5 * scale.max(1.0),
                "{name}"
            );
        }
    }
}

/// conv(3→4, 1x1) with relu → conv(4→2, 1x1) (or depthwise 4→4), channel ranges
/// 100x apart.
fn unbalanced_pair(depthwise: bool) -> Graph {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32([1, 3, 4, 4]));
    let attrs = |act, group| ConvAttrs {
        kernel: vec![1, 1],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: vec![0; 4],
        group,
        act,
    };
    let w1: Vec<f32> = (0..12)
        .map(|i| (if i / 3 == 0 { 10.0 } else { 0.1 }) * (1.0 + i as f32 / 12.0))
        .collect();
    let w1 = g.add_const(Tensor::from_f32([4, 3, 1, 1], w1).unwrap());
    let b1 = g.add_const(Tensor::from_f32([4], vec![0.5, 0.01, -0.02, 0.03]).unwrap());
    let n1 = g.add_node(
        Op::Conv(attrs(Activation::Relu, 1)),
        vec![x, w1, b1],
        vec![TensorType::f32([1, 4, 4, 4])],
        "c1",
    );
    let y1 = g.node(n1).outputs[0];
    let (group, wdims) = if depthwise {
        (4, [4, 1, 1, 1])
    } else {
        (1, [2, 4, 1, 1])
    };
    let w2: Vec<f32> = (0..8).map(|i| 0.3 - i as f32 * 0.07).collect();
    let w2 =
        g.add_const(Tensor::from_f32(wdims, w2[..if depthwise { 4 } else { 8 }].to_vec()).unwrap());
    let n2 = g.add_node(
        Op::Conv(attrs(Activation::None, group)),
        vec![y1, w2],
        vec![TensorType::f32([1, wdims[0], 4, 4])],
        "c2",
    );
    let y2 = g.node(n2).outputs[0];
    g.add_output("y", y2);
    g
}

#[test]
fn cle_balances_channel_ranges_by_hand() {
    for depthwise in [false, true] {
        let g = unbalanced_pair(depthwise);
        let mut e = g.clone();
        qc_quant::equalize(&mut e);
        // After equalization, output channel i of c1 and input channel i of c2 have the
        // same largest magnitude sqrt(r1_i * r2_i).
        let w1 = g.const_of(g.nodes[0].inputs[1]).unwrap().to_f32_vec();
        let w2 = g.const_of(g.nodes[1].inputs[1]).unwrap().to_f32_vec();
        let e1 = e.const_of(e.nodes[0].inputs[1]).unwrap().to_f32_vec();
        let e2 = e.const_of(e.nodes[1].inputs[1]).unwrap().to_f32_vec();
        for i in 0..4 {
            let r = |v: &[f32], idx: &mut dyn Iterator<Item = usize>| {
                idx.fold(0f32, |m, k| m.max(v[k].abs()))
            };
            let r1 = r(&w1, &mut (i * 3..i * 3 + 3));
            // Input channel i of c2: column i of both outputs, or depthwise output i.
            let cols = if depthwise { vec![i] } else { vec![i, 4 + i] };
            let r2 = r(&w2, &mut cols.clone().into_iter());
            let er1 = r(&e1, &mut (i * 3..i * 3 + 3));
            let er2 = r(&e2, &mut cols.into_iter());
            let want = (r1 * r2).sqrt();
            assert!(
                (er1 - want).abs() <= want * 1e-5,
                "channel {i}: {er1} vs {want}"
            );
            assert!(
                (er2 - want).abs() <= want * 1e-5,
                "channel {i}: {er2} vs {want}"
            );
        }
        let x = samples(&g, 1, 3).remove(0);
        assert!(max_abs_diff(&run(&g, &x)[0], &run(&e, &x)[0]) < 1e-4);
    }
}

fn mean_abs_error(f: &Graph, q: &Graph, xs: &[Vec<Tensor>]) -> f64 {
    let mut s = 0.0;
    let mut n = 0usize;
    for x in xs {
        let (a, b) = (run(f, x), run(q, x));
        let (a, b) = (a[0].to_f64_vec(), b[0].to_f64_vec());
        // Mean signed error per element: what bias correction removes.
        s += a.iter().zip(&b).map(|(x, y)| x - y).sum::<f64>().abs();
        n += a.len();
    }
    s / n as f64
}

#[test]
fn bias_correction_lowers_the_mean_error() {
    let g = fixture("mobilenetv2_float.onnx");
    let calib = samples(&g, 8, 21);
    let base = QuantizeOptions {
        per_channel: false,
        ..Default::default()
    };
    let q0 = qc_quant::quantize(&g, &calib, &base, &Interp::default(), &mut |_, _, _| {}).unwrap();
    let corrected = QuantizeOptions {
        bias_correction: true,
        ..base
    };
    let q1 = qc_quant::quantize(
        &g,
        &calib,
        &corrected,
        &Interp::default(),
        &mut |_, _, _| {},
    )
    .unwrap();
    assert!(!q1.report.bias_corrections.is_empty());
    let e0 = mean_abs_error(&g, &q0.qdq, &calib);
    let e1 = mean_abs_error(&g, &q1.qdq, &calib);
    eprintln!("bias correction: mean output error {e0:.6} -> {e1:.6}");
    assert!(e1 < e0, "bias correction: {e0} -> {e1}");
}

#[test]
fn bias_overflow_widens_the_weight_scale() {
    // x in [-1, 1] (scale 2/255), w = 1e-9: bias 1000 / (2/255 * 1e-9 / 127) is far
    // beyond int32, so the weight scale must grow to at least
    // 1000 / (2/255 * 2^31) = 5.9e-5 and the node must stay quantizable.
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32([1, 2]));
    let w = g.add_const(Tensor::from_f32([2, 2], vec![1e-9, -1e-9, 0.5e-9, 1e-9]).unwrap());
    // Channel 1: 1e-5 / (2/255 * 1e-9 / 127) = 1.6e8 fits.
    let b = g.add_const(Tensor::from_f32([2], vec![1000.0, 1e-5]).unwrap());
    let n = g.add_node(
        Op::Gemm(qc_ir::GemmAttrs {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: true,
            act: Activation::None,
        }),
        vec![x, w, b],
        vec![TensorType::f32([1, 2])],
        "fc",
    );
    let y = g.node(n).outputs[0];
    g.add_output("y", y);
    let calib = vec![vec![Tensor::from_f32([1, 2], vec![-1.0, 1.0]).unwrap()]];
    let opts = QuantizeOptions {
        per_channel: true,
        optimize: false,
        ..Default::default()
    };
    let q = qc_quant::quantize(&g, &calib, &opts, &Interp::default(), &mut |_, _, _| {}).unwrap();
    assert_eq!(q.report.bias_overflows.len(), 1, "{:?}", q.report);
    let o = &q.report.bias_overflows[0];
    assert_eq!((o.node.as_str(), o.channel), ("fc", 0));
    assert!(o.new_scale >= 1000.0 / 2_147_483_647.0 && o.new_scale < 1000.0 / 2e9);
    assert_eq!(q.report.warnings.len(), 1);
    // The output is still right to the precision of the widened scale.
    let want = run(&g, &calib[0]);
    let got = run(&q.qdq, &calib[0]);
    assert!(max_abs_diff(&want[0], &got[0]) < 5.0, "{want:?} {got:?}");
}

#[test]
fn qat_fake_quant_model_compiles_with_its_own_scales() {
    // cnn_qdq.onnx carries Q→DQ pairs on activations and DQ on int8 weights (what
    // QAT exports write after constant folding the weight fake-quant).
    let g = fixture("cnn_qdq.onnx");
    let mut dq_weight_scales: Vec<Vec<f32>> = g
        .nodes
        .iter()
        .filter(|n| n.op == Op::Dequantize)
        .filter_map(|n| {
            let t = g.ty(n.inputs[0]);
            (g.const_of(n.inputs[0]).is_some() && t.dtype == DType::I8)
                .then(|| t.quant.clone().unwrap().scales)
        })
        .collect();
    let mut int = g.clone();
    optimize(&mut int);
    let mut conv_weight_scales: Vec<Vec<f32>> = int
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Conv(_) | Op::Gemm(_)))
        .map(|n| {
            assert!(int.ty(n.inputs[0]).is_quantized(), "float {} left", n.name);
            int.ty(n.inputs[1]).quant.clone().unwrap().scales
        })
        .collect();
    let key = |v: &Vec<f32>| v.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
    dq_weight_scales.sort_by_key(key);
    conv_weight_scales.sort_by_key(key);
    assert_eq!(dq_weight_scales, conv_weight_scales);
}

#[test]
fn accuracy_diagnostics_rank_layers() {
    let (_, q, calib) = quantized_cnn(&QuantizeOptions::default());
    let acc = qc_quant::debug_accuracy(
        &q.float,
        &q.qdq,
        &q.layers,
        &calib,
        &Interp::default(),
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(acc.len(), q.layers.len());
    for w in acc.windows(2) {
        assert!(w[0].sqnr_db <= w[1].sqnr_db);
    }
    // u8 quantization of an activation: roughly 6 dB per bit, well above 20 dB.
    for a in &acc {
        assert!(a.sqnr_db > 20.0 && a.cosine > 0.99, "{a:?}");
    }
    // Matching by node names finds the same pairs in the QDQ graph.
    let m = qc_quant::match_layers(&q.float, &q.qdq);
    assert!(
        m.len() + 1 >= q.layers.len(),
        "{} vs {}",
        m.len(),
        q.layers.len()
    );
}

#[test]
fn per_channel_gemm_without_trans_b_and_matmul_lower_to_integer_ops() {
    // x[1,4] -> matmul W1[4,6] -> relu -> gemm W2[6,3] (transB = 0) + b.
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32([1, 4]));
    let w1: Vec<f32> = (0..24).map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0).collect();
    let w1 = g.add_const(Tensor::from_f32([4, 6], w1).unwrap());
    let m = g.add_node(
        Op::MatMul {
            act: Activation::None,
        },
        vec![x, w1],
        vec![TensorType::f32([1, 6])],
        "mm",
    );
    let h = g.node(m).outputs[0];
    let r = g.add_node(Op::Relu, vec![h], vec![TensorType::f32([1, 6])], "relu");
    let h = g.node(r).outputs[0];
    let w2: Vec<f32> = (0..18).map(|i| ((i * 5 % 7) as f32 - 3.0) / 3.0).collect();
    let w2 = g.add_const(Tensor::from_f32([6, 3], w2).unwrap());
    let b2 = g.add_const(Tensor::from_f32([3], vec![0.1, -0.2, 0.3]).unwrap());
    let n = g.add_node(
        Op::Gemm(qc_ir::GemmAttrs {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: false,
            act: Activation::None,
        }),
        vec![h, w2, b2],
        vec![TensorType::f32([1, 3])],
        "fc",
    );
    let y = g.node(n).outputs[0];
    g.add_output("y", y);
    let calib = samples(&g, 8, 5);
    let opts = QuantizeOptions {
        per_channel: true,
        ..Default::default()
    };
    let q = qc_quant::quantize(&g, &calib, &opts, &Interp::default(), &mut |_, _, _| {}).unwrap();
    let mut int = q.qdq.clone();
    optimize(&mut int);
    let linear: Vec<_> = int
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Gemm(_) | Op::MatMul { .. }))
        .collect();
    assert_eq!(linear.len(), 2);
    for n in linear {
        assert!(int.ty(n.inputs[0]).is_quantized(), "float {} left", n.name);
        assert!(int.ty(n.inputs[1]).quant.as_ref().unwrap().axis == Some(1));
    }
    for x in &calib {
        let (a, b) = (run(&g, x), run(&int, x));
        assert!(max_abs_diff(&a[0], &b[0]) < 0.05, "{a:?} {b:?}");
    }
}

#[test]
fn export_handles_outputs_that_are_inputs_constants_or_repeated() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32([2]));
    let c = g.add_const(Tensor::from_f32([2], vec![1.5, -2.0]).unwrap());
    let n = g.add_node(
        Op::Add {
            act: Activation::Relu,
        },
        vec![x, c],
        vec![TensorType::f32([2])],
        "add",
    );
    let y = g.node(n).outputs[0];
    g.add_output("same_as_x", x);
    g.add_output("c", c);
    g.add_output("y", y);
    g.add_output("y_again", y);
    let back = roundtrip(&g);
    let names: Vec<&str> = back.outputs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["same_as_x", "c", "y", "y_again"]);
    let input = vec![Tensor::from_f32([2], vec![1.0, 1.0]).unwrap()];
    let got = run(&back, &input);
    // x, c, relu(x + c) = [2.5, 0], twice.
    let want = [
        vec![1.0, 1.0],
        vec![1.5, -2.0],
        vec![2.5, 0.0],
        vec![2.5, 0.0],
    ];
    for (t, w) in got.iter().zip(want) {
        assert_eq!(t.to_f32_vec(), w);
    }
}

/// `g` with every dequantized i8 weight constant replaced by a fake-quant pair on its
/// float values — `dequantize(quantize(w_float))`, as QAT exports write.
fn fake_quant_weights(g: &Graph) -> Graph {
    let mut h = Graph::new();
    let mut map = vec![None; g.values.len()];
    for p in &g.inputs {
        map[p.value.index()] = Some(h.add_input(p.name.clone(), g.ty(p.value).clone()));
    }
    let value = |h: &mut Graph, v: qc_ir::ValueId, map: &mut Vec<Option<qc_ir::ValueId>>| {
        if let Some(m) = map[v.index()] {
            return m;
        }
        let t = g.const_of(v).unwrap().clone();
        let c = h.add_const_tensor(t);
        let m = h.add_const_value(c, g.ty(v).quant.clone());
        map[v.index()] = Some(m);
        m
    };
    for n in &g.nodes {
        let mut ins = Vec::new();
        for &v in &n.inputs {
            let ty = g.ty(v);
            let fake = n.op == Op::Dequantize && g.const_of(v).is_some() && ty.dtype == DType::I8;
            if fake {
                let q = ty.quant.clone().unwrap();
                let t = g.const_of(v).unwrap();
                let dims = t.dims().to_vec();
                let axis = q.axis.unwrap_or(0);
                let inner: usize = dims[axis + 1..].iter().product();
                let real: Vec<f32> = t
                    .to_i64_vec()
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| q.dequantize(c, (i / inner) % dims[axis]))
                    .collect();
                let w = h.add_const(Tensor::from_f32(dims, real).unwrap());
                let qn = h.add_node(Op::Quantize, vec![w], vec![ty.clone()], "fq");
                ins.push(h.node(qn).outputs[0]);
            } else {
                ins.push(value(&mut h, v, &mut map));
            }
        }
        let tys = n.outputs.iter().map(|&o| g.ty(o).clone()).collect();
        let m = h.add_node(n.op.clone(), ins, tys, n.name.clone());
        for (&o, &mo) in n.outputs.iter().zip(&h.node(m).outputs.clone()) {
            map[o.index()] = Some(mo);
        }
    }
    for p in &g.outputs {
        let v = value(&mut h, p.value, &mut map);
        h.add_output(p.name.clone(), v);
    }
    qc_ir::verify::verify(&h).unwrap();
    h
}

#[test]
fn qat_fake_quant_weights_and_activations_compile_to_the_same_integer_graph() {
    let opts = QuantizeOptions {
        per_channel: true,
        ..Default::default()
    };
    let (g, q, _) = quantized_cnn(&opts);
    let fq = fake_quant_weights(&q.qdq);
    assert!(fq.nodes.iter().filter(|n| n.op == Op::Quantize).count() > q.layers.len());
    // It survives the ONNX round trip as QuantizeLinear on float initializers.
    let fq = roundtrip(&fq);
    let (mut a, mut b) = (q.qdq.clone(), fq.clone());
    optimize(&mut a);
    optimize(&mut b);
    let scales = |g: &Graph| -> Vec<Vec<f32>> {
        g.nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Conv(_) | Op::Gemm(_)))
            .map(|n| {
                assert!(g.ty(n.inputs[0]).is_quantized(), "float {} left", n.name);
                g.ty(n.inputs[1]).quant.clone().unwrap().scales
            })
            .collect()
    };
    assert_eq!(scales(&a), scales(&b));
    for x in samples(&g, 3, 4) {
        assert_eq!(run(&a, &x), run(&b, &x));
    }
}
