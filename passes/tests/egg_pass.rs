//! The pass as a whole: shared subgraphs, limits and statistics, and the light
//! ResNet-50 (float Conv + BatchNormalization + Relu) end to end on the interpreter.

#![allow(clippy::panic, clippy::unwrap_used)]

mod egg_support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use egg_support::{assert_outputs_close, op_counts, parse, run, same_outputs, Rng};
use qc_ir::{Activation, Graph, Op, Tensor, ValueDef};
use qc_passes::egg::{optimize, rules, EggPass, Stop};
use qc_passes::{Changed, EggLimits, Pass, PassCx, PassOptions};

/// A residual block: the branch `%r` (conv + bn + relu) feeds both a second conv and
/// the residual add. Extraction memoized on e-classes must build it once.
const RESIDUAL: &str = r#"
#w1 = const f32[2,2,1,1] [1, 0.5, -0.5, 1]
#w2 = const f32[2,2,1,1] [0.25, -1, 1, 0.75]
#s = const f32[2] [1, 2]
#bi = const f32[2] [0.1, -0.1]
#m = const f32[2] [0, 0.5]
#v = const f32[2] [1, 3]
func @main(%x: f32[1,2,3,3]) -> f32[1,2,3,3] {
  %a = conv %x, #w1 {kernel=[1,1]} : f32[1,2,3,3] loc("conv_a")
  %an = batch_norm %a, #s, #bi, #m, #v {epsilon=0.0} : f32[1,2,3,3]
  %r = relu %an : f32[1,2,3,3]
  %b = conv %r, #w2 {kernel=[1,1]} : f32[1,2,3,3] loc("conv_b")
  %bn = batch_norm %b, #s, #bi, #m, #v {epsilon=0.0} : f32[1,2,3,3]
  %s = add %bn, %r : f32[1,2,3,3] loc("res")
  %o = relu %s : f32[1,2,3,3]
  return %o
}
"#;

#[test]
fn residual_branch_is_extracted_once() {
    let g = parse(RESIDUAL);
    let out = run(&g, &[]);
    // conv_a{relu} (BN folded), conv_b (BN folded), add{relu}: three nodes. A tree
    // extraction would have built conv_a twice (once per consumer of %r).
    let counts = op_counts(&out.graph);
    assert_eq!(
        out.graph.nodes.len(),
        3,
        "{counts:?}\n{}",
        qc_ir::text::print(&out.graph)
    );
    assert_eq!(counts.get("conv"), Some(&2));
    assert_eq!(counts.get("add"), Some(&1));
    let names: Vec<&str> = out.graph.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["conv_a", "conv_b", "res"]);
    let acts: Vec<Option<Activation>> = out.graph.nodes.iter().map(|n| n.op.activation()).collect();
    assert_eq!(
        acts,
        [
            Some(Activation::Relu),
            Some(Activation::None),
            Some(Activation::Relu)
        ]
    );
    // The shared value is one value read twice.
    let a = out.graph.nodes[0].outputs[0];
    let reads = out
        .graph
        .nodes
        .iter()
        .flat_map(|n| &n.inputs)
        .filter(|&&v| v == a)
        .count();
    assert_eq!(reads, 2);
    same_outputs(&g, &out.graph, 1e-5);
}

#[test]
fn unchanged_graph_comes_back_identical() {
    let g = parse(
        r#"
func @main(%x: f32[2,3], %y: f32[2,3]) -> (f32[2,3], f32[2,3]) {
  %a = mul %x, %y : f32[2,3] loc("m")
  %b = sigmoid %a : f32[2,3] loc("s")
  %c = sub %b, %x : f32[2,3] loc("d")
  return %c, %a
}
"#,
    );
    let mut h = g.clone();
    let mut cx = PassCx::default();
    assert_eq!(EggPass.run(&mut h, &mut cx).unwrap(), Changed::No);
    assert_eq!(h, g);
}

#[test]
fn tiny_node_limit_stops_with_node_limit_and_stays_correct() {
    let g = parse(RESIDUAL);
    let limits = EggLimits {
        node_limit: 5,
        ..EggLimits::default()
    };
    let out = optimize(&g, &limits).unwrap();
    assert!(
        matches!(out.report.stop, Stop::NodeLimit(_)),
        "{:?}",
        out.report.stop
    );
    qc_ir::verify::verify(&out.graph).unwrap();
    same_outputs(&g, &out.graph, 1e-5);

    let limits = EggLimits {
        iter_limit: 1,
        ..EggLimits::default()
    };
    let out = optimize(&g, &limits).unwrap();
    assert_eq!(out.report.stop, Stop::IterationLimit(1));
    assert_eq!(out.report.iterations, 1);
    same_outputs(&g, &out.graph, 1e-5);
}

#[test]
fn pass_records_statistics() {
    let mut g = parse(RESIDUAL);
    let mut cx = PassCx::new(PassOptions::default());
    assert_eq!(EggPass.name(), "egg");
    assert_eq!(EggPass.run(&mut g, &mut cx).unwrap(), Changed::Yes);
    let stat = |k: &str| {
        cx.stats
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no stat {k}: {:?}", cx.stats))
    };
    assert!(stat("e-nodes").parse::<usize>().unwrap() > 10);
    assert!(stat("e-classes").parse::<usize>().unwrap() > 10);
    assert!(stat("iterations").parse::<usize>().unwrap() >= 2);
    assert_eq!(stat("stop-reason"), "saturated");
    assert_eq!(
        stat("rules-fired"),
        "fold-conv-batch-norm×2, fuse-add-relu×1, fuse-conv-relu×1"
    );
}

#[test]
fn every_rule_set_alone_keeps_the_residual_block_correct() {
    // Each rule on its own must leave a verified, equivalent graph.
    let g = parse(RESIDUAL);
    for r in rules::all() {
        let name = r.name.to_string();
        let out = qc_passes::egg::optimize_with(&g, &EggLimits::default(), &[r])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        same_outputs(&g, &out.graph, 1e-5);
    }
}

// ---------------------------------------------------------------------------------
// light ResNet-50

fn light_resnet50() -> Graph {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/light/light_resnet50.onnx");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    qc_onnx::import(
        &bytes,
        &qc_onnx::ImportOptions::default(),
        &qc_onnx::NoExternalData,
    )
    .unwrap_or_else(|e| panic!("import: {e}"))
}

/// Replace the shipped uniform weights (every one 0.02) by seeded random ones, so that
/// channels differ and a wrong fold would show: conv/gemm weights uniform in
/// ±sqrt(3 / fan_in) (unit variance of the sums), BatchNorm scale and variance in
/// [0.5, 1.5), bias and mean in ±0.1.
fn randomize(g: &mut Graph) {
    let mut rng = Rng::new(50);
    let mut done = vec![false; g.consts.len()];
    let nodes = g.nodes.clone();
    for n in &nodes {
        for (i, &v) in n.inputs.iter().enumerate() {
            let ValueDef::Const(c) = g.value(v).def else {
                continue;
            };
            if done[c.index()] {
                continue;
            }
            let t = &g.consts[c.index()];
            if t.dtype() != qc_ir::DType::F32 {
                continue;
            }
            let dims = t.dims().to_vec();
            let len = t.len();
            let (lo, hi) = match (&n.op, i) {
                (Op::Conv(_) | Op::Gemm(_), 1) => {
                    let fan_in: usize = match &n.op {
                        Op::Conv(_) => dims[1..].iter().product(),
                        _ => dims[0],
                    };
                    let a = (3.0 / fan_in.max(1) as f32).sqrt();
                    (-a, a)
                }
                (Op::BatchNorm { .. }, 1 | 4) => (0.5, 1.5),
                _ => (-0.1, 0.1),
            };
            let data: Vec<f32> = (0..len).map(|_| rng.uniform(lo, hi)).collect();
            g.consts[c.index()] = Arc::new(Tensor::from_f32(dims, data).unwrap());
            done[c.index()] = true;
        }
    }
}

/// Convs whose result (directly, or through a batch_norm) feeds a relu.
fn convs_feeding_relu(g: &Graph) -> usize {
    let producer = |v: qc_ir::ValueId| match g.value(v).def {
        ValueDef::Node { node, .. } => Some(g.node(node)),
        _ => None,
    };
    g.nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Relu))
        .filter_map(|n| producer(n.inputs[0]))
        .filter_map(|p| match p.op {
            Op::BatchNorm { .. } => producer(p.inputs[0]),
            _ => Some(p),
        })
        .filter(|p| matches!(p.op, Op::Conv(_)))
        .count()
}

#[test]
fn light_resnet50_folds_batch_norm_and_fuses_relu() {
    let mut g = light_resnet50();
    randomize(&mut g);
    let before = op_counts(&g);
    let want_relu_convs = convs_feeding_relu(&g);

    let mut h = g.clone();
    let mut cx = PassCx::default();
    let t0 = Instant::now();
    let changed = EggPass.run(&mut h, &mut cx).unwrap();
    let elapsed = t0.elapsed();
    let after = op_counts(&h);
    println!(
        "light ResNet-50 through egg in {:.3} s ({} build)",
        elapsed.as_secs_f64(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!("  before: {before:?}");
    println!("  after:  {after:?}");
    for (k, v) in &cx.stats {
        println!("  {k}: {v}");
    }
    assert_eq!(changed, Changed::Yes);
    assert_eq!(after.get("batch_norm"), None);
    assert_eq!(
        after.get("relu"),
        None,
        "every relu fused into a conv or an add"
    );
    let relu_convs = h
        .nodes
        .iter()
        .filter(|n| matches!(&n.op, Op::Conv(a) if a.act == Activation::Relu))
        .count();
    assert!(want_relu_convs > 0);
    assert_eq!(relu_convs, want_relu_convs);
    assert_eq!(after.get("conv"), before.get("conv"));
    if !cfg!(debug_assertions) {
        assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    }

    // Numerically equal on the interpreter (one seeded input: each run is 4 GMACs).
    let x = egg_support::seeded_inputs(&g, 7);
    let opts = qc_interp::Options::default();
    let y0 = qc_interp::run(&g, &x, &opts).unwrap();
    let y1 = qc_interp::run(&h, &x, &opts).unwrap();
    for (a, b) in y0.iter().zip(&y1) {
        let max = a.to_f32_vec().iter().fold(0f32, |m, v| m.max(v.abs()));
        println!("  output max |y| {max:.4}");
        assert!(max > 0.0 && max.is_finite());
        assert_outputs_close(a, b, 1e-3, "light ResNet-50 output");
    }
}

#[test]
fn nodes_with_several_results_pass_through() {
    // max_pool with indices and dynamic_quantize are tuples in the e-graph, read by
    // projections; rules do not rewrite through them, and they come back as they were.
    let g = parse(
        r#"
func @main(%x: f32[1,1,4,4]) -> (f32[1,1,2,2], i64[1,1,2,2], u8[1,1,4,4], f32[], u8[]) {
  %y, %i = max_pool %x {kernel=[2,2], strides=[2,2]} : f32[1,1,2,2], i64[1,1,2,2]
  %r = relu %y : f32[1,1,2,2]
  %q, %s, %z = dynamic_quantize %x : u8[1,1,4,4], f32[], u8[]
  return %r, %i, %q, %s, %z
}
"#,
    );
    let out = run(&g, &[]);
    assert_eq!(egg_support::canon(&out.graph), egg_support::canon(&g));
    same_outputs(&g, &out.graph, 0.0);
}

#[test]
fn a_rule_that_unions_different_types_fails_the_pass() {
    // A deliberately wrong rule (reshape changes the shape): the analysis sees the
    // type conflict and the pass reports it instead of producing a graph.
    let g = parse(
        r#"
func @main(%x: f32[2,3]) -> f32[6] {
  %r = reshape %x {shape=[6]} : f32[6]
  return %r
}
"#,
    );
    let pat: egg::Pattern<qc_passes::egg::lang::Qc> = "(reshape ?a ?t ?x)".parse().unwrap();
    let to: egg::Pattern<qc_passes::egg::lang::Qc> = "?x".parse().unwrap();
    let bad = egg::Rewrite::new("bad-reshape", pat, to).unwrap();
    let err = qc_passes::egg::optimize_with(&g, &EggLimits::default(), &[bad]).unwrap_err();
    assert!(
        matches!(&err, qc_passes::Error::Pass { pass: "egg", msg } if msg.contains("different types")),
        "{err}"
    );
}
