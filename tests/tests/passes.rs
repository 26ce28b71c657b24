//! Pass-pipeline snapshots: each `fixtures/passes/*.qc` case runs the pipeline its first
//! line names (`// passes: a,b,c`), and the IR after every pass (a `// after <pass>`
//! line, then the compacted text form) is an insta snapshot named after the file; each
//! ONNX fixture model's final IR after the `default` pipeline is one too
//! (`onnx_<model>`). Every case
//! also asserts the property it is about (a snapshot alone only shows *something*), and
//! the properties are checked before the snapshot, so a snapshot is only written for a
//! run that has them. Semantics (interpreter before = after) are `semantics.rs`'s job.
//!
//! Update snapshots with `INSTA_UPDATE=always cargo test -p qc-tests --test passes` and
//! review them by eye.

// Test code: a panic is how a test fails.
#![allow(clippy::panic, clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use common::fixtures;
use qc_ir::{
    Activation, DType, Graph, Node, Op, QType, QuantParams, TensorType, ValueDef, ValueId,
};
use qc_passes::{PassCx, PassOptions, PassReport, Pipeline};

/// Every `.qc` case; `every_case_has_a_test` keeps this list and the directory in step.
const CASES: &[&str] = &[
    "canon_add",
    "canon_bias_mismatched_scale",
    "canon_conv_per_channel",
    "canon_fake_quant_weights",
    "canon_gemm",
    "canon_matmul",
    "fuse_add_relu",
    "fuse_conv_batch_norm",
    "fuse_conv_mul_add",
    "fuse_conv_relu",
    "fuse_conv_relu6",
    "fuse_gemm_batch_norm",
    "fuse_matmul_add",
    "qdq_concat_equal",
    "qdq_concat_requantize",
    "qdq_dq_q_equal",
    "qdq_dq_q_requantize",
    "qdq_flatten",
    "qdq_max_pool",
    "qdq_pad",
    "qdq_reshape",
    "qdq_transpose",
    "requant_into_producer",
    "requant_into_producer_inexact",
    "requant_relu_clamp",
    "requant_relu_identity",
    "requant_requant_exact",
    "requant_requant_inexact",
    "tricky_bn_zero_variance",
    "tricky_per_channel_negative_mul",
    "tricky_per_channel_weights",
    "tricky_relu6_clamp_needed",
    "tricky_relu6_wider_than_range",
    "tricky_residual_add",
    "tricky_shared_weights",
    "tricky_two_consumers_requantize",
];

// ---------------------------------------------------------------- running

/// What a pipeline run leaves: the final graph (compacted) and the snapshot text.
struct Outcome {
    g: Graph,
    snapshot: String,
    /// The pass names of the pipeline, in order.
    passes: Vec<&'static str>,
}

impl Outcome {
    fn text(&self) -> String {
        qc_ir::text::print(&self.g)
    }
}

fn print_compact(g: &Graph) -> String {
    let mut g = g.clone();
    g.compact();
    qc_ir::text::print(&g)
}

/// Run `spec` on `g`; the snapshot has a `// after <pass>` section per pass.
fn run(mut g: Graph, spec: &str, what: &str) -> Outcome {
    let pipeline = Pipeline::parse(spec)
        .unwrap_or_else(|e| panic!("{what}: pipeline '{spec}' (pending passes?): {e}"));
    let mut cx = PassCx::new(PassOptions {
        verify: true,
        ..PassOptions::default()
    });
    let mut snapshot = format!("// pipeline: {spec}\n");
    pipeline
        .run_with(&mut g, &mut cx, |report: &PassReport, g: &Graph| {
            snapshot.push_str(&format!("\n// after {}\n", report.pass));
            snapshot.push_str(&print_compact(g));
        })
        .unwrap_or_else(|e| panic!("{what}: pipeline '{spec}': {e}"));
    g.compact();
    qc_ir::verify::verify(&g).unwrap_or_else(|e| panic!("{what}: {e}"));
    Outcome {
        g,
        snapshot,
        passes: pipeline.names(),
    }
}

/// Parse `fixtures/passes/<name>.qc` and run the pipeline its header names.
fn qc_case(name: &str) -> Outcome {
    let path = fixtures().join("passes").join(format!("{name}.qc"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let spec = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("// passes:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{name}: the first line must be '// passes: <pipeline>'"));
    let g = qc_ir::text::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    qc_ir::verify::verify(&g).unwrap_or_else(|e| panic!("{name} as written: {e}"));
    run(g, spec, name)
}

/// An ONNX fixture after the default pipeline; its snapshot is the final IR only.
fn onnx_case(name: &str) -> Outcome {
    let bytes = common::read_bytes(&fixtures().join("models").join(format!("{name}.onnx")));
    let g = common::import(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut out = run(g, "default", name);
    out.snapshot = format!(
        "// pipeline: default ({})\n\n{}",
        out.passes.join(","),
        out.text()
    );
    out
}

/// Check the property, then the snapshot.
fn check(name: &str, out: &Outcome, property: impl FnOnce(&Graph, &str)) {
    property(&out.g, &out.text());
    insta::assert_snapshot!(name, out.snapshot);
}

/// One test per `.qc` case: `case!(name, |g, text| { assertions })`.
macro_rules! case {
    ($name:ident, |$g:ident, $t:ident| $body:block) => {
        #[test]
        fn $name() {
            let name = stringify!($name);
            let out = qc_case(name);
            #[allow(unused_variables)]
            check(name, &out, |$g: &Graph, $t: &str| $body);
        }
    };
}

// ---------------------------------------------------------------- graph queries

/// The op names of the nodes, in order.
fn op_names(g: &Graph) -> Vec<&'static str> {
    g.nodes.iter().map(|n| n.op.name()).collect()
}

fn nodes<'a>(g: &'a Graph, op: &str) -> Vec<&'a Node> {
    g.nodes.iter().filter(|n| n.op.name() == op).collect()
}

fn count(g: &Graph, op: &str) -> usize {
    nodes(g, op).len()
}

/// The single node with op `op`.
fn only<'a>(g: &'a Graph, op: &str) -> &'a Node {
    let v = nodes(g, op);
    assert_eq!(v.len(), 1, "expected one {op}, got {:?}", op_names(g));
    v[0]
}

fn ty(g: &Graph, v: ValueId) -> &TensorType {
    g.ty(v)
}

fn out_ty<'a>(g: &'a Graph, n: &Node) -> &'a TensorType {
    g.ty(n.outputs[0])
}

fn u8q(s: f32, z: i32) -> Option<QuantParams> {
    Some(QuantParams::per_tensor(QType::U8, s, z))
}

fn conv_act(n: &Node) -> Activation {
    n.op.activation().expect("an op with a fused activation")
}

/// The constant tensor an operand reads, as i64 values.
fn const_ints(g: &Graph, v: ValueId) -> Vec<i64> {
    g.const_of(v)
        .unwrap_or_else(|| panic!("{v} is not a constant"))
        .to_i64_vec()
}

fn const_f32(g: &Graph, v: ValueId) -> Vec<f32> {
    g.const_of(v)
        .unwrap_or_else(|| panic!("{v} is not a constant"))
        .to_f32_vec()
}

fn producer(g: &Graph, v: ValueId) -> Option<&Node> {
    match g.value(v).def {
        ValueDef::Node { node, .. } => Some(g.node(node)),
        _ => None,
    }
}

/// Conv, gemm and matmul all run on quantized operands; quantize only reads graph
/// inputs; dequantize only feeds graph outputs; no dequantize -> quantize pair.
fn assert_integer_only(g: &Graph, what: &str) {
    let uses = g.use_counts();
    for n in &g.nodes {
        let here = format!("{what}: {} {} ({})", n.op.name(), n.outputs[0], n.name);
        match &n.op {
            Op::Conv(_) | Op::Gemm(_) | Op::MatMul { .. } => assert!(
                n.inputs.iter().take(2).all(|&v| ty(g, v).is_quantized()),
                "{here}: float"
            ),
            Op::Quantize => {
                assert!(
                    matches!(g.value(n.inputs[0]).def, ValueDef::Input(_)),
                    "{here}: not right after an input"
                );
            }
            Op::Dequantize => {
                let v = n.outputs[0];
                assert!(
                    g.outputs.iter().any(|p| p.value == v) && uses[v.index()] == 1,
                    "{here}: feeds more than a graph output"
                );
                assert!(
                    producer(g, n.inputs[0]).is_none_or(|p| p.op != Op::Quantize),
                    "{here}: a quantize -> dequantize pair"
                );
            }
            Op::BatchNorm { .. } => panic!("{here}: batch_norm left"),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------- the cases

#[test]
fn every_case_has_a_test() {
    let mut files: Vec<String> = std::fs::read_dir(fixtures().join("passes"))
        .expect("listing fixtures/passes")
        .filter_map(|e| {
            let p: PathBuf = e.ok()?.path();
            let stem = p.file_stem()?.to_string_lossy().into_owned();
            (p.extension()? == "qc").then_some(stem)
        })
        .collect();
    files.sort();
    assert_eq!(files, CASES);
}

// ---- canonicalization: each QDQ form becomes an op on quantized types

case!(canon_conv_per_channel, |g, t| {
    assert_eq!(op_names(g), ["quantize", "conv", "dequantize"]);
    let c = only(g, "conv");
    assert_eq!(ty(g, c.inputs[0]).quant, u8q(0.0625, 128));
    assert_eq!(
        ty(g, c.inputs[1]).quant,
        Some(QuantParams::per_axis(
            QType::I8,
            0,
            vec![0.0625, 0.03125],
            vec![0, 0]
        ))
    );
    // The bias scales were s_x * s_w[c] already: the i32 values are reused, raw.
    assert_eq!(ty(g, c.inputs[2]), &TensorType::new(DType::I32, [2]));
    assert_eq!(const_ints(g, c.inputs[2]), [40, -12]);
    assert_eq!(out_ty(g, c).quant, u8q(0.0625, 128));
});

case!(canon_matmul, |g, t| {
    assert_eq!(op_names(g), ["quantize", "matmul", "dequantize"]);
    let m = only(g, "matmul");
    let b = ty(g, m.inputs[1]).quant.clone().expect("quantized b");
    assert_eq!((b.axis, b.scales), (Some(1), vec![0.0625, 0.125, 0.03125]));
    assert_eq!(out_ty(g, m).quant, u8q(0.125, 128));
});

case!(canon_gemm, |g, t| {
    assert_eq!(op_names(g), ["quantize", "gemm", "dequantize"]);
    let m = only(g, "gemm");
    assert!(matches!(&m.op, Op::Gemm(a) if a.trans_b));
    assert_eq!(
        ty(g, m.inputs[1]).quant.as_ref().and_then(|q| q.axis),
        Some(0)
    );
    assert_eq!(ty(g, m.inputs[2]).quant, None);
    assert_eq!(const_ints(g, m.inputs[2]), [100, -50, 7]);
    assert_eq!(out_ty(g, m).quant, u8q(0.125, 120));
});

case!(canon_add, |g, t| {
    assert_eq!(op_names(g), ["quantize", "quantize", "add", "dequantize"]);
    let a = only(g, "add");
    assert_eq!(ty(g, a.inputs[0]).quant, u8q(0.0625, 128));
    assert_eq!(ty(g, a.inputs[1]).quant, u8q(0.03125, 100));
    assert_eq!(out_ty(g, a).quant, u8q(0.1, 120));
});

case!(canon_fake_quant_weights, |g, t| {
    assert_eq!(op_names(g), ["quantize", "conv", "dequantize"]);
    let c = only(g, "conv");
    let scales = [0.00390625f32, 0.005859375];
    assert_eq!(
        ty(g, c.inputs[1]).quant,
        Some(QuantParams::per_axis(
            QType::I8,
            0,
            scales.to_vec(),
            vec![0, 0]
        ))
    );
    // ONNX QuantizeLinear of the float weights: w / s rounded half to even, saturated.
    let w = [
        0.3f32, -0.25, 0.125, 0.5, -0.4, 0.05, 0.2, -0.1, 0.7, -0.6, 0.33, 0.0, -0.15, 0.45, -0.05,
        0.25,
    ];
    let want: Vec<i64> = w
        .iter()
        .enumerate()
        .map(|(i, &x)| ((x / scales[i / 8]).round_ties_even() as i64).clamp(-128, 127))
        .collect();
    assert_eq!(const_ints(g, c.inputs[1]), want);
});

case!(canon_bias_mismatched_scale, |g, t| {
    assert_eq!(op_names(g), ["quantize", "conv", "dequantize"]);
    let c = only(g, "conv");
    // The real bias (40 * 0.004, -12 * 0.002) on the implied grid (2^-8, 2^-9):
    // 40.96 -> 41 and -12.288 -> -12; never the written i32 values reused.
    let real = [40.0f64 * f64::from(0.004f32), -12.0 * f64::from(0.002f32)];
    let grid = [0.00390625f64, 0.001953125];
    let want: Vec<i64> = real
        .iter()
        .zip(grid)
        .map(|(r, s)| (r / s).round() as i64)
        .collect();
    assert_eq!(want, [41, -12]);
    assert_eq!(ty(g, c.inputs[2]).quant, None);
    assert_eq!(const_ints(g, c.inputs[2]), want);
});

// ---- fusion (float)

case!(fuse_conv_batch_norm, |g, t| {
    assert!(!t.contains("batch_norm"), "{t}");
    assert_eq!(op_names(g), ["conv"]);
});

case!(fuse_gemm_batch_norm, |g, t| {
    assert!(!t.contains("batch_norm"), "{t}");
    assert_eq!(op_names(g), ["gemm"]);
});

case!(fuse_conv_relu, |g, t| {
    assert_eq!(op_names(g), ["conv"]);
    assert_eq!(conv_act(&g.nodes[0]), Activation::Relu);
});

case!(fuse_conv_relu6, |g, t| {
    assert_eq!(op_names(g), ["conv"]);
    assert_eq!(
        conv_act(&g.nodes[0]),
        Activation::Clip { min: 0.0, max: 6.0 }
    );
});

case!(fuse_add_relu, |g, t| {
    assert_eq!(op_names(g), ["add"]);
    assert_eq!(conv_act(&g.nodes[0]), Activation::Relu);
});

case!(fuse_matmul_add, |g, t| {
    assert_eq!(op_names(g), ["gemm"]);
    let m = &g.nodes[0];
    assert_eq!(m.inputs.len(), 3, "the addend is the gemm's c");
    assert_eq!(const_f32(g, m.inputs[2]), [0.1, 0.0, -0.2, 0.3]);
});

case!(fuse_conv_mul_add, |g, t| {
    assert_eq!(op_names(g), ["conv"]);
});

// ---- q/dq propagation

/// `[quantize, <op>, dequantize]` with `<op>` on quantized values of params `q`.
fn moved_quantized(g: &Graph, op: &str, q: Option<QuantParams>) {
    assert_eq!(op_names(g), ["quantize", op, "dequantize"]);
    let n = only(g, op);
    assert_eq!(ty(g, n.inputs[0]).quant, q);
    assert_eq!(out_ty(g, n).quant, q);
}

case!(qdq_reshape, |g, t| {
    moved_quantized(g, "reshape", u8q(0.0625, 128));
});

case!(qdq_flatten, |g, t| {
    moved_quantized(
        g,
        "flatten",
        Some(QuantParams::per_tensor(QType::I8, 0.05, -3)),
    );
});

case!(qdq_transpose, |g, t| {
    moved_quantized(g, "transpose", u8q(0.0625, 128));
});

case!(qdq_max_pool, |g, t| {
    moved_quantized(g, "max_pool", u8q(0.0625, 128));
});

case!(qdq_pad, |g, t| {
    moved_quantized(g, "pad", u8q(0.0625, 128));
    assert!(matches!(only(g, "pad").op, Op::Pad { value, .. } if value == 0.0));
});

case!(qdq_concat_equal, |g, t| {
    assert_eq!(
        op_names(g),
        ["quantize", "quantize", "concat", "dequantize"]
    );
    let c = only(g, "concat");
    assert!(c.inputs.iter().all(|&v| ty(g, v).quant == u8q(0.0625, 128)));
    assert_eq!(out_ty(g, c).quant, u8q(0.0625, 128));
});

case!(qdq_concat_requantize, |g, t| {
    let c = only(g, "concat");
    assert!(c.inputs.iter().all(|&v| ty(g, v).is_quantized()));
    assert_eq!(out_ty(g, c).quant, u8q(0.125, 128));
    assert_eq!((count(g, "quantize"), count(g, "dequantize")), (2, 1));
});

case!(qdq_dq_q_equal, |g, t| {
    assert!(g.nodes.is_empty(), "{t}");
    assert_eq!(g.outputs[0].value, g.inputs[0].value);
});

case!(qdq_dq_q_requantize, |g, t| {
    assert_eq!(op_names(g), ["requantize"]);
    assert_eq!(
        out_ty(g, &g.nodes[0]).quant,
        Some(QuantParams::per_tensor(QType::I8, 0.25, -10))
    );
});

// ---- requantization

case!(requant_requant_exact, |g, t| {
    assert_eq!(op_names(g), ["requantize"]);
    let r = &g.nodes[0];
    assert_eq!(r.inputs[0], g.inputs[0].value);
    assert_eq!(out_ty(g, r).quant, u8q(1.0, 3));
});

case!(requant_requant_inexact, |g, t| {
    // Double rounding: folding would change 24 of the 256 values.
    assert_eq!(op_names(g), ["requantize", "requantize"]);
});

case!(requant_into_producer, |g, t| {
    assert_eq!(op_names(g), ["quantize", "conv", "dequantize"]);
    assert_eq!(out_ty(g, only(g, "conv")).quant, u8q(0.0625, 0));
});

case!(requant_into_producer_inexact, |g, t| {
    assert_eq!(
        op_names(g),
        ["quantize", "conv", "requantize", "dequantize"]
    );
});

case!(requant_relu_identity, |g, t| {
    assert_eq!(op_names(g), ["quantize", "conv", "dequantize"]);
    // The relu disappears: no node, and no fused act (a relu at the storage minimum
    // clamps nothing).
    assert_eq!(conv_act(only(g, "conv")), Activation::None, "{t}");
});

case!(requant_relu_clamp, |g, t| {
    assert_eq!(op_names(g), ["quantize", "conv", "dequantize"]);
    assert_eq!(conv_act(only(g, "conv")), Activation::Relu);
});

// ---- tricky cases

case!(tricky_per_channel_weights, |g, t| {
    assert_eq!(op_names(g), ["quantize", "conv", "dequantize"]);
    let c = only(g, "conv");
    let w = ty(g, c.inputs[1]).quant.clone().expect("quantized weights");
    assert_eq!((w.axis, w.scales), (Some(0), vec![0.0078125, 1.1920929e-7]));
    assert_eq!(out_ty(g, c).quant, u8q(0.03125, 0));
});

case!(tricky_per_channel_negative_mul, |g, t| {
    assert_eq!(count(g, "mul"), 0, "{t}");
    assert_integer_only(g, "tricky_per_channel_negative_mul");
    let c = only(g, "conv");
    let w = ty(g, c.inputs[1]).quant.clone().expect("quantized weights");
    assert!(w.scales.iter().all(|&s| s > 0.0), "{w:?}");
});

case!(tricky_shared_weights, |g, t| {
    assert_eq!(count(g, "batch_norm"), 0, "{t}");
    let convs = nodes(g, "conv");
    assert_eq!(convs.len(), 2, "{t}");
    let w = [
        0.3f32, -0.25, 0.125, 0.5, -0.4, 0.05, 0.2, -0.1, 0.7, -0.6, 0.33, 0.0, -0.15, 0.45, -0.05,
        0.25,
    ];
    // The conv of output 1 (no batch norm) still reads the original weights; the other
    // reads folded ones.
    let plain = producer(g, g.outputs[1].value).expect("conv of output 1");
    let folded = producer(g, g.outputs[0].value).expect("conv of output 0");
    assert_eq!(const_f32(g, plain.inputs[1]), w);
    assert_ne!(const_f32(g, folded.inputs[1]), w);
});

case!(tricky_residual_add, |g, t| {
    assert_eq!((count(g, "conv"), count(g, "add")), (2, 1), "{t}");
    assert_integer_only(g, "tricky_residual_add");
    let add = only(g, "add");
    let convs = nodes(g, "conv");
    // a = conv1(x) feeds conv2 and the add: computed once.
    let a = convs[0].outputs[0];
    assert_eq!(convs[1].inputs[0], a);
    assert!(add.inputs.contains(&a), "{t}");
    assert!(add.inputs.contains(&convs[1].outputs[0]), "{t}");
});

case!(tricky_two_consumers_requantize, |g, t| {
    assert_eq!(count(g, "conv"), 1, "{t}");
    assert!(count(g, "requantize") <= 1, "{t}");
    let p = only(g, "max_pool");
    let a = only(g, "global_average_pool");
    assert_eq!(p.inputs[0], a.inputs[0]);
    assert_eq!(ty(g, p.inputs[0]).quant, u8q(0.0625, 0));
});

case!(tricky_relu6_wider_than_range, |g, t| {
    assert_eq!(op_names(g), ["quantize", "conv", "dequantize"]);
    let c = only(g, "conv");
    // The range [0, 3] is inside the clamp: no act needed, a clip(0, 6) harmless.
    assert!(
        matches!(
            conv_act(c),
            Activation::None | Activation::Relu | Activation::Clip { min: 0.0, max: 6.0 }
        ),
        "{t}"
    );
    assert_eq!(out_ty(g, c).quant, u8q(0.011764706, 0));
});

case!(tricky_relu6_clamp_needed, |g, t| {
    assert_eq!(op_names(g), ["quantize", "conv", "dequantize"]);
    assert_eq!(
        conv_act(only(g, "conv")),
        Activation::Clip { min: 0.0, max: 6.0 }
    );
});

case!(tricky_bn_zero_variance, |g, t| {
    assert_eq!(op_names(g), ["conv"]);
    let c = only(g, "conv");
    assert!(const_f32(g, c.inputs[1]).iter().all(|x| x.is_finite()));
    assert!(const_f32(g, c.inputs[2]).iter().all(|x| x.is_finite()));
});

// ---------------------------------------------------------------- ONNX fixtures

fn onnx_check(name: &str, property: impl FnOnce(&Graph, &str)) {
    let out = onnx_case(name);
    check(&format!("onnx_{name}"), &out, property);
}

/// Every conv of the float CNNs carries its activation; no batch_norm, relu or clip.
fn float_fused(g: &Graph, t: &str, convs: usize, clamped: usize) {
    for op in ["batch_norm", "relu", "clip"] {
        assert_eq!(count(g, op), 0, "{op} left:\n{t}");
    }
    let cs = nodes(g, "conv");
    assert_eq!(cs.len(), convs);
    let acts = cs
        .iter()
        .filter(|n| conv_act(n) != Activation::None)
        .count();
    assert_eq!(acts, clamped, "{t}");
}

#[test]
fn onnx_cnn_float() {
    onnx_check("cnn_float", |g, t| float_fused(g, t, 3, 3));
}

#[test]
fn onnx_mobilenetv2_float() {
    onnx_check("mobilenetv2_float", |g, t| {
        float_fused(g, t, 16, 11);
        assert!(nodes(g, "conv").iter().all(|n| matches!(
            conv_act(n),
            Activation::None | Activation::Clip { min: 0.0, max: 6.0 }
        )));
    });
}

#[test]
fn onnx_cnn_qdq() {
    onnx_check("cnn_qdq", |g, _| assert_integer_only(g, "cnn_qdq"));
}

#[test]
fn onnx_cnn_qop() {
    onnx_check("cnn_qop", |g, _| assert_integer_only(g, "cnn_qop"));
}

#[test]
fn onnx_mobilenetv2_qdq() {
    onnx_check("mobilenetv2_qdq", |g, _| {
        assert_integer_only(g, "mobilenetv2_qdq")
    });
}

#[test]
fn onnx_mobilenetv2_qop() {
    onnx_check("mobilenetv2_qop", |g, _| {
        assert_integer_only(g, "mobilenetv2_qop")
    });
}

#[test]
fn cnn_qop_and_qdq_give_the_same_ir() {
    let names_cleared = |name: &str| {
        let mut g = onnx_case(name).g;
        for n in &mut g.nodes {
            n.name.clear();
        }
        g.compact();
        qc_ir::text::print(&g)
    };
    let (a, b) = (names_cleared("cnn_qdq"), names_cleared("cnn_qop"));
    assert_eq!(a, b, "--- qdq\n{a}\n--- qop\n{b}");
}
