//! `canonicalize-qdq`: text-IR input ⇒ hand-written expected text, and the
//! interpreter before and after on seeded inputs.
//!
//! Exactness: every non-linear rewrite must give bit-identical results. A linear op
//! (integer accumulation, one requantization) agrees with its float chain only when
//! the float arithmetic is exact, so the identity cases below use power-of-two
//! scales and small codes, where every product and sum is exact in f32 and every
//! requantization multiplier is a power of two; `random_conv_is_within_one_step`
//! measures the general case.

#![allow(clippy::panic)] // tests fail by panicking

use qc_ir::text::{parse, print};
use qc_ir::{DType, Graph, Op, Tensor, TensorData};
use qc_passes::{PassCx, Pipeline};

fn graph(text: &str) -> Graph {
    parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Run a pipeline (the pipeline verifies after every pass in debug builds). The
/// returned context holds the remarks and, gathered from the reports, every pass's
/// statistics.
fn run(passes: &str, g: &mut Graph) -> PassCx {
    let mut cx = PassCx::default();
    let reports = Pipeline::parse(passes)
        .expect("pipeline")
        .run(g, &mut cx)
        .unwrap_or_else(|e| panic!("{passes}: {e}\n{}", print(g)));
    qc_ir::verify::verify(g).unwrap_or_else(|e| panic!("{e}\n{}", print(g)));
    cx.stats = reports.into_iter().flat_map(|r| r.stats).collect();
    cx
}

/// `input` through `canonicalize-qdq`: (before, after, context).
fn canon(input: &str) -> (Graph, Graph, PassCx) {
    let before = graph(input);
    let mut after = before.clone();
    let cx = run("canonicalize-qdq", &mut after);
    (before, after, cx)
}

/// `after` prints as the hand-written `expected` (names normalized by compaction).
fn assert_text(after: &Graph, expected: &str) {
    let mut want = graph(expected);
    want.compact();
    assert_eq!(print(after), print(&want), "got:\n{}", print(after));
}

fn stat(cx: &PassCx, key: &str) -> String {
    cx.stats
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no stat {key} in {:?}", cx.stats))
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    fn f32(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
}

/// Seeded inputs for every graph input: floats in [-3, 3), integers over their range.
fn inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut r = Rng(seed.wrapping_mul(0x1234_5678_9ABC_DEF1));
    g.inputs
        .iter()
        .map(|p| {
            let ty = g.ty(p.value);
            let n = ty.numel().expect("numel");
            let data = match ty.dtype {
                DType::F32 => TensorData::F32((0..n).map(|_| r.f32(-3.0, 3.0)).collect()),
                DType::U8 => TensorData::U8((0..n).map(|_| r.next() as u8).collect()),
                DType::I8 => TensorData::I8((0..n).map(|_| r.next() as i8).collect()),
                other => panic!("no generator for {other}"),
            };
            Tensor::new(ty.shape.clone(), data).expect("tensor")
        })
        .collect()
}

fn interp(g: &Graph, xs: &[Tensor]) -> Vec<Tensor> {
    qc_interp::run(g, xs, &Default::default()).unwrap_or_else(|e| panic!("{e}\n{}", print(g)))
}

/// Both graphs give identical outputs (bit for bit) under the `fixed` contract, where
/// a quantized add keeps the generic dequantize → add → quantize definition (under
/// `float` it is onnxruntime's fused `QLinearAdd`, which the unfused graph is not).
fn assert_same_generic(before: &Graph, after: &Graph) {
    let opts = qc_interp::Options {
        contract: qc_interp::Contract::Fixed,
    };
    for seed in 1..=4 {
        let xs = inputs(before, seed);
        let run = |g: &Graph| qc_interp::run(g, &xs, &opts).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(run(before), run(after), "seed {seed}");
    }
}

/// Both graphs give identical outputs (bit for bit) on several seeded inputs.
fn assert_same(before: &Graph, after: &Graph) {
    for seed in 1..=4 {
        let xs = inputs(before, seed);
        assert_eq!(interp(before, &xs), interp(after, &xs), "seed {seed}");
    }
}

fn count_ops(g: &Graph, name: &str) -> usize {
    g.nodes.iter().filter(|n| n.op.name() == name).count()
}

// ---------------------------------------------------------------- linear ops

#[test]
fn per_channel_conv_with_i32_bias() {
    // Bias scales are s_x * s_w[c] = 0.5 * [0.25, 0.125]: onnxruntime's form, reused.
    let input = r#"
#0 = const i8[2,2,1,1] [3, -2, 1, 4]
#1 = const i32[2] [5, -7]
func @main(%x: f32[1,2,3,3]) -> ("y": f32[1,2,3,3]) {
  %xq = quantize %x : u8[1,2,3,3] q(0.5, 128)
  %xd = dequantize %xq : f32[1,2,3,3]
  %w = const #0 : i8[2,2,1,1] q(axis=0, [0.25, 0.125], [0, 0])
  %wd = dequantize %w : f32[2,2,1,1]
  %b = const #1 : i32[2] q(axis=0, [0.125, 0.0625], [0, 0])
  %bd = dequantize %b : f32[2]
  %y = conv %xd, %wd, %bd {kernel=[1,1]} : f32[1,2,3,3]
  %yq = quantize %y : u8[1,2,3,3] q(0.25, 100)
  %yd = dequantize %yq : f32[1,2,3,3]
  return %yd
}
"#;
    let expected = r#"
#0 = const i8[2,2,1,1] [3, -2, 1, 4]
#1 = const i32[2] [5, -7]
func @main(%x: f32[1,2,3,3]) -> ("y": f32[1,2,3,3]) {
  %xq = quantize %x : u8[1,2,3,3] q(0.5, 128)
  %w = const #0 : i8[2,2,1,1] q(axis=0, [0.25, 0.125], [0, 0])
  %b = const #1 : i32[2]
  %y = conv %xq, %w, %b {kernel=[1,1]} : u8[1,2,3,3] q(0.25, 100)
  %yd = dequantize %y : f32[1,2,3,3]
  return %yd
}
"#;
    let (before, after, cx) = canon(input);
    assert_text(&after, expected);
    assert_eq!(stat(&cx, "rewritten"), "1");
    assert_eq!(stat(&cx, "bias-reused"), "1");
    assert_same(&before, &after);
}

#[test]
fn per_tensor_matmul() {
    let input = r#"
#0 = const i8[3,4] [1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12]
func @main(%a: f32[2,3]) -> ("y": f32[2,4]) {
  %aq = quantize %a : u8[2,3] q(0.5, 128)
  %ad = dequantize %aq : f32[2,3]
  %b = const #0 : i8[3,4] q(0.25, 0)
  %bd = dequantize %b : f32[3,4]
  %y = matmul %ad, %bd : f32[2,4]
  %yq = quantize %y : u8[2,4] q(0.125, 100)
  %yd = dequantize %yq : f32[2,4]
  return %yd
}
"#;
    let expected = r#"
#0 = const i8[3,4] [1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12]
func @main(%a: f32[2,3]) -> ("y": f32[2,4]) {
  %aq = quantize %a : u8[2,3] q(0.5, 128)
  %b = const #0 : i8[3,4] q(0.25, 0)
  %y = matmul %aq, %b : u8[2,4] q(0.125, 100)
  %yd = dequantize %y : f32[2,4]
  return %yd
}
"#;
    let (before, after, _) = canon(input);
    assert_text(&after, expected);
    assert_same(&before, &after);
}

#[test]
fn gemm_with_trans_b_and_per_channel_weights() {
    // w is [n=4, k=3] per axis 0 (its output channels under trans_b); the bias scales
    // 0.5 * [0.25, 0.5, 0.125, 0.25] are the implied ones.
    let input = r#"
#0 = const i8[4,3] [1, 2, 3, -1, -2, -3, 4, 0, -4, 2, 2, 2]
#1 = const i32[4] [8, -4, 16, 0]
func @main(%a: f32[2,3]) -> ("y": f32[2,4]) {
  %aq = quantize %a : u8[2,3] q(0.5, 128)
  %ad = dequantize %aq : f32[2,3]
  %w = const #0 : i8[4,3] q(axis=0, [0.25, 0.5, 0.125, 0.25], [0, 0, 0, 0])
  %wd = dequantize %w : f32[4,3]
  %c = const #1 : i32[4] q(axis=0, [0.125, 0.25, 0.0625, 0.125], [0, 0, 0, 0])
  %cd = dequantize %c : f32[4]
  %y = gemm %ad, %wd, %cd {trans_b=true} : f32[2,4]
  %yq = quantize %y : i8[2,4] q(0.25, -3)
  %yd = dequantize %yq : f32[2,4]
  return %yd
}
"#;
    let expected = r#"
#0 = const i8[4,3] [1, 2, 3, -1, -2, -3, 4, 0, -4, 2, 2, 2]
#1 = const i32[4] [8, -4, 16, 0]
func @main(%a: f32[2,3]) -> ("y": f32[2,4]) {
  %aq = quantize %a : u8[2,3] q(0.5, 128)
  %w = const #0 : i8[4,3] q(axis=0, [0.25, 0.5, 0.125, 0.25], [0, 0, 0, 0])
  %c = const #1 : i32[4]
  %y = gemm %aq, %w, %c {trans_b=true} : i8[2,4] q(0.25, -3)
  %yd = dequantize %y : f32[2,4]
  return %yd
}
"#;
    let (before, after, _) = canon(input);
    assert_text(&after, expected);
    assert_same(&before, &after);
}

#[test]
fn conv_transpose_with_weights_per_axis_1() {
    // w is [C_in=2, C_out=2, 1, 1], quantized along its output channels (axis 1); the
    // bias scales 0.5 * [0.25, 0.125] are the implied ones.
    let input = r#"
#0 = const i8[2,2,1,1] [3, -2, 1, 4]
#1 = const i32[2] [-9, 11]
func @main(%x: f32[1,2,2,3]) -> ("y": f32[1,2,2,3]) {
  %xq = quantize %x : u8[1,2,2,3] q(0.5, 128)
  %xd = dequantize %xq : f32[1,2,2,3]
  %w = const #0 : i8[2,2,1,1] q(axis=1, [0.25, 0.125], [0, 0])
  %wd = dequantize %w : f32[2,2,1,1]
  %b = const #1 : i32[2] q(axis=0, [0.125, 0.0625], [0, 0])
  %bd = dequantize %b : f32[2]
  %y = conv_transpose %xd, %wd, %bd {kernel=[1,1]} : f32[1,2,2,3]
  %yq = quantize %y : u8[1,2,2,3] q(0.25, 100)
  %yd = dequantize %yq : f32[1,2,2,3]
  return %yd
}
"#;
    let expected = r#"
#0 = const i8[2,2,1,1] [3, -2, 1, 4]
#1 = const i32[2] [-9, 11]
func @main(%x: f32[1,2,2,3]) -> ("y": f32[1,2,2,3]) {
  %xq = quantize %x : u8[1,2,2,3] q(0.5, 128)
  %w = const #0 : i8[2,2,1,1] q(axis=1, [0.25, 0.125], [0, 0])
  %b = const #1 : i32[2]
  %y = conv_transpose %xq, %w, %b {kernel=[1,1]} : u8[1,2,2,3] q(0.25, 100)
  %yd = dequantize %y : f32[1,2,2,3]
  return %yd
}
"#;
    let (before, after, cx) = canon(input);
    assert_text(&after, expected);
    assert_eq!(stat(&cx, "bias-reused"), "1");
    assert_same(&before, &after);
}

#[test]
fn weights_per_axis_off_the_output_channels_stay_float() {
    // A conv's w quantized along its input channels (axis 1) has no quantized form.
    let input = r#"
#0 = const i8[2,2,1,1] [3, -2, 1, 4]
func @main(%x: f32[1,2,2,2]) -> ("y": f32[1,2,2,2]) {
  %xq = quantize %x : u8[1,2,2,2] q(0.5, 128)
  %xd = dequantize %xq : f32[1,2,2,2]
  %w = const #0 : i8[2,2,1,1] q(axis=1, [0.25, 0.125], [0, 0])
  %wd = dequantize %w : f32[2,2,1,1]
  %y = conv %xd, %wd {kernel=[1,1]} : f32[1,2,2,2]
  %yq = quantize %y : u8[1,2,2,2] q(0.25, 100)
  %yd = dequantize %yq : f32[1,2,2,2]
  return %yd
}
"#;
    let (before, after, cx) = canon(input);
    assert_text(&after, input);
    assert!(
        cx.remarks.len() == 1 && cx.remarks[0].contains("per axis 1"),
        "{:?}",
        cx.remarks
    );
    assert_same(&before, &after);
}

#[test]
fn bias_with_a_mismatched_scale_is_rescaled() {
    // Implied bias scales: 0.5 * [0.25, 0.125] = [0.125, 0.0625]. Channel 0 is stored
    // at scale 0.25: 3 * 0.25 = 0.75 = 6 * 0.125. Channel 1 already matches: -5.
    let input = r#"
#0 = const i8[2,2,1,1] [3, -2, 1, 4]
#1 = const i32[2] [3, -5]
func @main(%x: f32[1,2,3,3]) -> ("y": f32[1,2,3,3]) {
  %xq = quantize %x : u8[1,2,3,3] q(0.5, 128)
  %xd = dequantize %xq : f32[1,2,3,3]
  %w = const #0 : i8[2,2,1,1] q(axis=0, [0.25, 0.125], [0, 0])
  %wd = dequantize %w : f32[2,2,1,1]
  %b = const #1 : i32[2] q(axis=0, [0.25, 0.0625], [0, 0])
  %bd = dequantize %b : f32[2]
  %y = conv %xd, %wd, %bd {kernel=[1,1]} : f32[1,2,3,3]
  %yq = quantize %y : u8[1,2,3,3] q(0.25, 100)
  %yd = dequantize %yq : f32[1,2,3,3]
  return %yd
}
"#;
    let expected = r#"
#0 = const i8[2,2,1,1] [3, -2, 1, 4]
#1 = const i32[2] [6, -5]
func @main(%x: f32[1,2,3,3]) -> ("y": f32[1,2,3,3]) {
  %xq = quantize %x : u8[1,2,3,3] q(0.5, 128)
  %w = const #0 : i8[2,2,1,1] q(axis=0, [0.25, 0.125], [0, 0])
  %b = const #1 : i32[2]
  %y = conv %xq, %w, %b {kernel=[1,1]} : u8[1,2,3,3] q(0.25, 100)
  %yd = dequantize %y : f32[1,2,3,3]
  return %yd
}
"#;
    let (before, after, cx) = canon(input);
    assert_text(&after, expected);
    assert_eq!(stat(&cx, "bias-rescaled"), "1");
    assert_same(&before, &after);
}

#[test]
fn float_bias_is_quantized_at_the_implied_scale() {
    // 0.3 / (0.5 * 0.25) = 2.4 -> 2 ; -0.2 / (0.5 * 0.125) = -3.2 -> -3.
    let input = r#"
#0 = const i8[2,2,1,1] [3, -2, 1, 4]
#1 = const f32[2] [0.3, -0.2]
func @main(%x: f32[1,2,3,3]) -> ("y": u8[1,2,3,3] q(0.25, 100)) {
  %xq = quantize %x : u8[1,2,3,3] q(0.5, 128)
  %xd = dequantize %xq : f32[1,2,3,3]
  %w = const #0 : i8[2,2,1,1] q(axis=0, [0.25, 0.125], [0, 0])
  %wd = dequantize %w : f32[2,2,1,1]
  %y = conv %xd, %wd, #1 {kernel=[1,1]} : f32[1,2,3,3]
  %yq = quantize %y : u8[1,2,3,3] q(0.25, 100)
  return %yq
}
"#;
    let expected = r#"
#0 = const i8[2,2,1,1] [3, -2, 1, 4]
#1 = const i32[2] [2, -3]
func @main(%x: f32[1,2,3,3]) -> ("y": u8[1,2,3,3] q(0.25, 100)) {
  %xq = quantize %x : u8[1,2,3,3] q(0.5, 128)
  %w = const #0 : i8[2,2,1,1] q(axis=0, [0.25, 0.125], [0, 0])
  %y = conv %xq, %w, #1 {kernel=[1,1]} : u8[1,2,3,3] q(0.25, 100)
  return %y
}
"#;
    let (_, after, cx) = canon(input);
    assert_text(&after, expected);
    assert_eq!(stat(&cx, "bias-quantized"), "1");
}

#[test]
fn bias_overflowing_int32_leaves_the_conv_float_with_a_remark() {
    // 2e9 * 1.0 / (0.5 * 0.25) = 1.6e10 does not fit in i32.
    let input = r#"
#0 = const i8[2,2,1,1] [3, -2, 1, 4]
#1 = const i32[2] [2000000000, 1]
func @main(%x: f32[1,2,3,3]) -> ("y": f32[1,2,3,3]) {
  %xq = quantize %x : u8[1,2,3,3] q(0.5, 128)
  %xd = dequantize %xq : f32[1,2,3,3]
  %w = const #0 : i8[2,2,1,1] q(axis=0, [0.25, 0.125], [0, 0])
  %wd = dequantize %w : f32[2,2,1,1]
  %b = const #1 : i32[2] q(axis=0, [1.0, 0.0625], [0, 0])
  %bd = dequantize %b : f32[2]
  %y = conv %xd, %wd, %bd {kernel=[1,1]} : f32[1,2,3,3]
  %yq = quantize %y : u8[1,2,3,3] q(0.25, 100)
  %yd = dequantize %yq : f32[1,2,3,3]
  return %yd
}
"#;
    let (before, after, cx) = canon(input);
    assert_text(&after, input);
    assert_eq!(stat(&cx, "rewritten"), "0");
    assert_eq!(stat(&cx, "float-left"), "1");
    assert_eq!(cx.remarks.len(), 1, "{:?}", cx.remarks);
    assert!(
        cx.remarks[0].contains("conv") && cx.remarks[0].contains("does not fit in int32"),
        "{:?}",
        cx.remarks
    );
    assert_same(&before, &after);
}

#[test]
fn fake_quant_weights_are_quantized_at_compile_time() {
    // Per axis 0 with scales [0.25, 0.5]: 0.625 / 0.25 = 2.5 -> 2 (ties to even),
    // -0.25 / 0.25 = -1, 1.0 / 0.5 = 2, -1.5 / 0.5 = -3.
    let input = r#"
#0 = const f32[2,2,1,1] [0.625, -0.25, 1.0, -1.5]
func @main(%x: f32[1,2,2,2]) -> ("y": u8[1,2,2,2] q(0.25, 0)) {
  %xq = quantize %x : u8[1,2,2,2] q(0.5, 128)
  %xd = dequantize %xq : f32[1,2,2,2]
  %w = const #0 : f32[2,2,1,1]
  %wq = quantize %w : i8[2,2,1,1] q(axis=0, [0.25, 0.5], [0, 0])
  %wd = dequantize %wq : f32[2,2,1,1]
  %y = conv %xd, %wd {kernel=[1,1]} : f32[1,2,2,2]
  %yq = quantize %y : u8[1,2,2,2] q(0.25, 0)
  return %yq
}
"#;
    let expected = r#"
#0 = const i8[2,2,1,1] [2, -1, 2, -3]
func @main(%x: f32[1,2,2,2]) -> ("y": u8[1,2,2,2] q(0.25, 0)) {
  %xq = quantize %x : u8[1,2,2,2] q(0.5, 128)
  %w = const #0 : i8[2,2,1,1] q(axis=0, [0.25, 0.5], [0, 0])
  %y = conv %xq, %w {kernel=[1,1]} : u8[1,2,2,2] q(0.25, 0)
  return %y
}
"#;
    let (before, after, cx) = canon(input);
    assert_text(&after, expected);
    assert_eq!(stat(&cx, "fake-quant-folded"), "1");
    assert_same(&before, &after);
}

#[test]
fn shared_weights_serve_both_convs() {
    let input = r#"
#0 = const i8[2,2,1,1] [3, -2, 1, 4]
func @main(%x: f32[1,2,2,2]) -> ("y1": f32[1,2,2,2], "y2": f32[1,2,2,2]) {
  %xq = quantize %x : u8[1,2,2,2] q(0.5, 128)
  %xd = dequantize %xq : f32[1,2,2,2]
  %w = const #0 : i8[2,2,1,1] q(axis=0, [0.25, 0.125], [0, 0])
  %wd = dequantize %w : f32[2,2,1,1]
  %y1 = conv %xd, %wd {kernel=[1,1]} : f32[1,2,2,2]
  %q1 = quantize %y1 : u8[1,2,2,2] q(0.25, 100)
  %d1 = dequantize %q1 : f32[1,2,2,2]
  %y2 = conv %xd, %wd {kernel=[1,1], act=relu} : f32[1,2,2,2]
  %q2 = quantize %y2 : i8[1,2,2,2] q(0.5, -128)
  %d2 = dequantize %q2 : f32[1,2,2,2]
  return %d1, %d2
}
"#;
    let expected = r#"
#0 = const i8[2,2,1,1] [3, -2, 1, 4]
func @main(%x: f32[1,2,2,2]) -> ("y1": f32[1,2,2,2], "y2": f32[1,2,2,2]) {
  %xq = quantize %x : u8[1,2,2,2] q(0.5, 128)
  %w = const #0 : i8[2,2,1,1] q(axis=0, [0.25, 0.125], [0, 0])
  %y1 = conv %xq, %w {kernel=[1,1]} : u8[1,2,2,2] q(0.25, 100)
  %d1 = dequantize %y1 : f32[1,2,2,2]
  %y2 = conv %xq, %w {kernel=[1,1], act=relu} : i8[1,2,2,2] q(0.5, -128)
  %d2 = dequantize %y2 : f32[1,2,2,2]
  return %d1, %d2
}
"#;
    let (before, after, _) = canon(input);
    assert_text(&after, expected);
    assert_same(&before, &after);
}

/// A conv with arbitrary (non power-of-two) scales: the integer form may differ from
/// the float chain where the float result lies next to a rounding boundary, by at
/// most one step.
#[test]
fn random_conv_is_within_one_step() {
    let mut r = Rng(7);
    let w: Vec<String> = (0..4 * 3 * 3 * 3)
        .map(|_| ((r.next() % 255) as i64 - 127).to_string())
        .collect();
    let b: Vec<String> = (0..4)
        .map(|_| ((r.next() % 2001) as i64 - 1000).to_string())
        .collect();
    let (sx, sw) = (0.0173_f32, [0.0031_f32, 0.0047, 0.0022, 0.0039]);
    let sb: Vec<String> = sw.iter().map(|s| format!("{:?}", sx * s)).collect();
    let sw: Vec<String> = sw.iter().map(|s| format!("{s:?}")).collect();
    let input = format!(
        r#"
#0 = const i8[4,3,3,3] [{w}]
#1 = const i32[4] [{b}]
func @main(%x: f32[1,3,8,8]) -> ("y": u8[1,4,8,8] q(0.05, 117)) {{
  %xq = quantize %x : u8[1,3,8,8] q({sx:?}, 131)
  %xd = dequantize %xq : f32[1,3,8,8]
  %w = const #0 : i8[4,3,3,3] q(axis=0, [{sw}], [0, 0, 0, 0])
  %wd = dequantize %w : f32[4,3,3,3]
  %b = const #1 : i32[4] q(axis=0, [{sb}], [0, 0, 0, 0])
  %bd = dequantize %b : f32[4]
  %y = conv %xd, %wd, %bd {{kernel=[3,3], pads=[1,1,1,1]}} : f32[1,4,8,8]
  %yq = quantize %y : u8[1,4,8,8] q(0.05, 117)
  return %yq
}}
"#,
        w = w.join(", "),
        b = b.join(", "),
        sw = sw.join(", "),
        sb = sb.join(", "),
    );
    let (before, after, cx) = canon(&input);
    assert_eq!(stat(&cx, "rewritten"), "1");
    assert_eq!(stat(&cx, "bias-reused"), "1");
    assert_eq!(count_ops(&after, "dequantize"), 0);
    let (mut differ, mut total, mut inside) = (0usize, 0usize, 0usize);
    for seed in 1..=8 {
        let xs = inputs(&before, seed);
        let (a, b) = (&interp(&before, &xs)[0], &interp(&after, &xs)[0]);
        let (TensorData::U8(a), TensorData::U8(b)) = (a.data(), b.data()) else {
            panic!("u8 outputs expected");
        };
        for (&p, &q) in a.iter().zip(b) {
            let d = (i32::from(p) - i32::from(q)).abs();
            assert!(d <= 1, "step difference {d}");
            differ += usize::from(d != 0);
            total += 1;
            inside += usize::from(p != 0 && p != 255);
        }
    }
    println!(
        "random conv: {differ} of {total} quantized outputs differ by one step \
         ({inside} not saturated)"
    );
    // Most outputs must be inside the range, or the comparison says little.
    assert!(inside * 2 > total, "{inside} of {total} not saturated");
}

// ---------------------------------------------------------------- other ops

#[test]
fn add_of_two_dequantized_values() {
    let input = r#"
func @main(%a: f32[2,3], %b: f32[2,3]) -> ("y": f32[2,3]) {
  %aq = quantize %a : u8[2,3] q(0.02, 120)
  %ad = dequantize %aq : f32[2,3]
  %bq = quantize %b : i8[2,3] q(0.03, -5)
  %bd = dequantize %bq : f32[2,3]
  %s = add %ad, %bd : f32[2,3]
  %sq = quantize %s : u8[2,3] q(0.045, 128)
  %sd = dequantize %sq : f32[2,3]
  return %sd
}
"#;
    let expected = r#"
func @main(%a: f32[2,3], %b: f32[2,3]) -> ("y": f32[2,3]) {
  %aq = quantize %a : u8[2,3] q(0.02, 120)
  %bq = quantize %b : i8[2,3] q(0.03, -5)
  %s = add %aq, %bq : u8[2,3] q(0.045, 128)
  %sd = dequantize %s : f32[2,3]
  return %sd
}
"#;
    let (before, after, _) = canon(input);
    assert_text(&after, expected);
    assert_same(&before, &after);
}

#[test]
fn max_pool_reshape_concat_chain() {
    let input = r#"
func @main(%x: f32[1,2,4,4], %z: f32[1,2,4]) -> ("y": f32[1,2,8]) {
  %xq = quantize %x : u8[1,2,4,4] q(0.025, 128)
  %xd = dequantize %xq : f32[1,2,4,4]
  %p = max_pool %xd {kernel=[2,2], strides=[2,2]} : f32[1,2,2,2]
  %pq = quantize %p : u8[1,2,2,2] q(0.025, 128)
  %pd = dequantize %pq : f32[1,2,2,2]
  %r = reshape %pd {shape=[1,2,4]} : f32[1,2,4]
  %rq = quantize %r : u8[1,2,4] q(0.025, 128)
  %rd = dequantize %rq : f32[1,2,4]
  %zq = quantize %z : u8[1,2,4] q(0.025, 128)
  %zd = dequantize %zq : f32[1,2,4]
  %c = concat %rd, %zd {axis=2} : f32[1,2,8]
  %cq = quantize %c : u8[1,2,8] q(0.025, 128)
  %cd = dequantize %cq : f32[1,2,8]
  return %cd
}
"#;
    let expected = r#"
func @main(%x: f32[1,2,4,4], %z: f32[1,2,4]) -> ("y": f32[1,2,8]) {
  %xq = quantize %x : u8[1,2,4,4] q(0.025, 128)
  %p = max_pool %xq {kernel=[2,2], strides=[2,2]} : u8[1,2,2,2] q(0.025, 128)
  %r = reshape %p {shape=[1,2,4]} : u8[1,2,4] q(0.025, 128)
  %zq = quantize %z : u8[1,2,4] q(0.025, 128)
  %c = concat %r, %zq {axis=2} : u8[1,2,8] q(0.025, 128)
  %cd = dequantize %c : f32[1,2,8]
  return %cd
}
"#;
    let (before, after, cx) = canon(input);
    assert_text(&after, expected);
    assert_eq!(stat(&cx, "rewritten"), "3");
    assert_same(&before, &after);
}

#[test]
fn residual_add_uses_the_shared_conv_result() {
    let input = r#"
#0 = const i8[2,2,1,1] [3, -2, 1, 4]
#1 = const i8[2,2,1,1] [-1, 2, 2, 1]
func @main(%x: f32[1,2,3,3]) -> ("y": f32[1,2,3,3]) {
  %xq = quantize %x : u8[1,2,3,3] q(0.5, 128)
  %xd = dequantize %xq : f32[1,2,3,3]
  %w1 = const #0 : i8[2,2,1,1] q(0.25, 0)
  %w1d = dequantize %w1 : f32[2,2,1,1]
  %c1 = conv %xd, %w1d {kernel=[1,1]} : f32[1,2,3,3]
  %c1q = quantize %c1 : u8[1,2,3,3] q(0.25, 128)
  %c1d = dequantize %c1q : f32[1,2,3,3]
  %w2 = const #1 : i8[2,2,1,1] q(0.5, 0)
  %w2d = dequantize %w2 : f32[2,2,1,1]
  %c2 = conv %c1d, %w2d {kernel=[1,1]} : f32[1,2,3,3]
  %c2q = quantize %c2 : u8[1,2,3,3] q(0.5, 128)
  %c2d = dequantize %c2q : f32[1,2,3,3]
  %s = add %c1d, %c2d : f32[1,2,3,3]
  %sq = quantize %s : u8[1,2,3,3] q(0.5, 100)
  %sd = dequantize %sq : f32[1,2,3,3]
  return %sd
}
"#;
    let expected = r#"
#0 = const i8[2,2,1,1] [3, -2, 1, 4]
#1 = const i8[2,2,1,1] [-1, 2, 2, 1]
func @main(%x: f32[1,2,3,3]) -> ("y": f32[1,2,3,3]) {
  %xq = quantize %x : u8[1,2,3,3] q(0.5, 128)
  %w1 = const #0 : i8[2,2,1,1] q(0.25, 0)
  %c1 = conv %xq, %w1 {kernel=[1,1]} : u8[1,2,3,3] q(0.25, 128)
  %w2 = const #1 : i8[2,2,1,1] q(0.5, 0)
  %c2 = conv %c1, %w2 {kernel=[1,1]} : u8[1,2,3,3] q(0.5, 128)
  %s = add %c1, %c2 : u8[1,2,3,3] q(0.5, 100)
  %sd = dequantize %s : f32[1,2,3,3]
  return %sd
}
"#;
    let (before, after, cx) = canon(input);
    assert_text(&after, expected);
    assert_eq!(stat(&cx, "rewritten"), "3");
    assert_same(&before, &after);
}

#[test]
fn dequantize_feeding_a_quantizable_and_a_float_op() {
    // The sigmoid's result is a float output: it stays float, and so does its
    // dequantize; the relu between dequantize and quantize becomes quantized.
    let input = r#"
func @main(%x: f32[4]) -> ("r": f32[4], "s": f32[4]) {
  %xq = quantize %x : u8[4] q(0.05, 0)
  %xd = dequantize %xq : f32[4]
  %r = relu %xd : f32[4]
  %rq = quantize %r : u8[4] q(0.05, 0)
  %rd = dequantize %rq : f32[4]
  %s = sigmoid %xd : f32[4]
  return %rd, %s
}
"#;
    let expected = r#"
func @main(%x: f32[4]) -> ("r": f32[4], "s": f32[4]) {
  %xq = quantize %x : u8[4] q(0.05, 0)
  %xd = dequantize %xq : f32[4]
  %r = relu %xq : u8[4] q(0.05, 0)
  %rd = dequantize %r : f32[4]
  %s = sigmoid %xd : f32[4]
  return %rd, %s
}
"#;
    let (before, after, cx) = canon(input);
    assert_text(&after, expected);
    assert!(cx.remarks.is_empty(), "{:?}", cx.remarks);
    assert_same(&before, &after);
}

#[test]
fn float_operand_that_is_not_dequantized_stays_float_with_a_remark() {
    let input = r#"
func @main(%x: f32[4], %f: f32[4]) -> ("y": f32[4]) {
  %xq = quantize %x : u8[4] q(0.05, 0)
  %xd = dequantize %xq : f32[4]
  %m = mul %xd, %f : f32[4] loc("scale")
  %mq = quantize %m : u8[4] q(0.05, 0)
  %md = dequantize %mq : f32[4]
  return %md
}
"#;
    let (before, after, cx) = canon(input);
    assert_text(&after, input);
    assert_eq!(stat(&cx, "float-left"), "1");
    assert_eq!(cx.remarks.len(), 1, "{:?}", cx.remarks);
    assert!(
        cx.remarks[0].contains("mul 'scale'") && cx.remarks[0].contains("operand 1"),
        "{:?}",
        cx.remarks
    );
    assert_same(&before, &after);
}

#[test]
fn scalar_constant_operand_gets_an_exact_quantized_form() {
    // -0.75 is the i8 code -1 at scale 0.75.
    let input = r#"
#0 = const f32[] [-0.75]
func @main(%x: f32[4]) -> ("y": f32[4]) {
  %xq = quantize %x : u8[4] q(0.05, 128)
  %xd = dequantize %xq : f32[4]
  %m = mul %xd, #0 : f32[4]
  %mq = quantize %m : u8[4] q(0.04, 128)
  %md = dequantize %mq : f32[4]
  return %md
}
"#;
    let expected = r#"
#0 = const i8[] [-1]
func @main(%x: f32[4]) -> ("y": f32[4]) {
  %xq = quantize %x : u8[4] q(0.05, 128)
  %c = const #0 : i8[] q(0.75, 0)
  %m = mul %xq, %c : u8[4] q(0.04, 128)
  %md = dequantize %m : f32[4]
  return %md
}
"#;
    let (before, after, _) = canon(input);
    assert_text(&after, expected);
    assert_same(&before, &after);
}

#[test]
fn quantize_users_with_different_types_keep_the_op_float() {
    let input = r#"
func @main(%x: f32[4]) -> ("a": u8[4] q(0.05, 0), "b": u8[4] q(0.1, 0)) {
  %xq = quantize %x : u8[4] q(0.05, 128)
  %xd = dequantize %xq : f32[4]
  %r = relu %xd : f32[4]
  %a = quantize %r : u8[4] q(0.05, 0)
  %b = quantize %r : u8[4] q(0.1, 0)
  return %a, %b
}
"#;
    let (before, after, cx) = canon(input);
    assert_text(&after, input);
    assert!(
        cx.remarks.iter().any(|r| r.contains("different types")),
        "{:?}",
        cx.remarks
    );
    assert_same(&before, &after);
}

// ---------------------------------------------------------------- tails: clamp, per-channel mul

#[test]
fn relu_between_conv_and_quantize_becomes_the_act_or_disappears() {
    // c1: the output zero point 128 is above the storage minimum, so the relu clamps
    // (act=relu). c2: zero point 0, the relu clamps no code and is dropped. Power-of-two
    // scales and a requantization multiplier of 1: bit-identical.
    let input = r#"
#0 = const i8[2,2,1,1] [3, -2, 1, 4]
func @main(%x: f32[1,2,3,3]) -> ("y": f32[1,2,3,3], "z": f32[1,2,3,3]) {
  %xq = quantize %x : u8[1,2,3,3] q(0.5, 128)
  %xd = dequantize %xq : f32[1,2,3,3]
  %w = const #0 : i8[2,2,1,1] q(0.25, 0)
  %wd = dequantize %w : f32[2,2,1,1]
  %y = conv %xd, %wd {kernel=[1,1]} : f32[1,2,3,3] loc("c1")
  %r = relu %y : f32[1,2,3,3]
  %rq = quantize %r : u8[1,2,3,3] q(0.125, 128)
  %rd = dequantize %rq : f32[1,2,3,3]
  %z = conv %xd, %wd {kernel=[1,1]} : f32[1,2,3,3] loc("c2")
  %s = relu %z : f32[1,2,3,3]
  %sq = quantize %s : u8[1,2,3,3] q(0.125, 0)
  %sd = dequantize %sq : f32[1,2,3,3]
  return %rd, %sd
}
"#;
    let expected = r#"
#0 = const i8[2,2,1,1] [3, -2, 1, 4]
func @main(%x: f32[1,2,3,3]) -> ("y": f32[1,2,3,3], "z": f32[1,2,3,3]) {
  %xq = quantize %x : u8[1,2,3,3] q(0.5, 128)
  %w = const #0 : i8[2,2,1,1] q(0.25, 0)
  %y = conv %xq, %w {kernel=[1,1], act=relu} : u8[1,2,3,3] q(0.125, 128) loc("c1")
  %rd = dequantize %y : f32[1,2,3,3]
  %z = conv %xq, %w {kernel=[1,1]} : u8[1,2,3,3] q(0.125, 0) loc("c2")
  %sd = dequantize %z : f32[1,2,3,3]
  return %rd, %sd
}
"#;
    let (before, after, cx) = canon(input);
    assert_text(&after, expected);
    assert_eq!(stat(&cx, "clamp-fused"), "1");
    assert_eq!(stat(&cx, "clamp-dropped"), "1");
    assert!(cx.remarks.is_empty(), "{:?}", cx.remarks);
    assert_same(&before, &after);
}

#[test]
fn relu6_between_conv_and_quantize_clamps_only_where_it_bites() {
    // u8 q(0.125, 0) reaches 31.875 > 6: act=clip(0, 6). u8 q(0.015625, 0) tops out
    // at 3.98 < 6: the clip clamps no code and is dropped.
    let input = r#"
#0 = const i8[2,2,1,1] [3, -2, 1, 4]
func @main(%x: f32[1,2,3,3]) -> ("y": f32[1,2,3,3], "z": f32[1,2,3,3]) {
  %xq = quantize %x : u8[1,2,3,3] q(0.5, 128)
  %xd = dequantize %xq : f32[1,2,3,3]
  %w = const #0 : i8[2,2,1,1] q(0.25, 0)
  %wd = dequantize %w : f32[2,2,1,1]
  %y = conv %xd, %wd {kernel=[1,1]} : f32[1,2,3,3] loc("c1")
  %r = clip %y {min=0.0, max=6.0} : f32[1,2,3,3]
  %rq = quantize %r : u8[1,2,3,3] q(0.125, 0)
  %rd = dequantize %rq : f32[1,2,3,3]
  %z = conv %xd, %wd {kernel=[1,1]} : f32[1,2,3,3] loc("c2")
  %s = clip %z {min=0.0, max=6.0} : f32[1,2,3,3]
  %sq = quantize %s : u8[1,2,3,3] q(0.015625, 0)
  %sd = dequantize %sq : f32[1,2,3,3]
  return %rd, %sd
}
"#;
    let expected = r#"
#0 = const i8[2,2,1,1] [3, -2, 1, 4]
func @main(%x: f32[1,2,3,3]) -> ("y": f32[1,2,3,3], "z": f32[1,2,3,3]) {
  %xq = quantize %x : u8[1,2,3,3] q(0.5, 128)
  %w = const #0 : i8[2,2,1,1] q(0.25, 0)
  %y = conv %xq, %w {kernel=[1,1], act=clip(0.0, 6.0)} : u8[1,2,3,3] q(0.125, 0) loc("c1")
  %rd = dequantize %y : f32[1,2,3,3]
  %z = conv %xq, %w {kernel=[1,1]} : u8[1,2,3,3] q(0.015625, 0) loc("c2")
  %sd = dequantize %z : f32[1,2,3,3]
  return %rd, %sd
}
"#;
    let (before, after, _) = canon(input);
    assert_text(&after, expected);
    assert_same(&before, &after);
}

#[test]
fn relu_between_add_and_quantize_becomes_the_act() {
    let input = r#"
func @main(%a: f32[4], %b: f32[4]) -> ("y": f32[4]) {
  %aq = quantize %a : u8[4] q(0.05, 128)
  %ad = dequantize %aq : f32[4]
  %bq = quantize %b : u8[4] q(0.025, 128)
  %bd = dequantize %bq : f32[4]
  %s = add %ad, %bd : f32[4]
  %r = relu %s : f32[4]
  %rq = quantize %r : u8[4] q(0.1, 128)
  %rd = dequantize %rq : f32[4]
  return %rd
}
"#;
    let expected = r#"
func @main(%a: f32[4], %b: f32[4]) -> ("y": f32[4]) {
  %aq = quantize %a : u8[4] q(0.05, 128)
  %bq = quantize %b : u8[4] q(0.025, 128)
  %s = add %aq, %bq {act=relu} : u8[4] q(0.1, 128)
  %rd = dequantize %s : f32[4]
  return %rd
}
"#;
    let (before, after, _) = canon(input);
    assert_text(&after, expected);
    assert_same_generic(&before, &after);
}

#[test]
fn relu_with_another_user_is_not_absorbed() {
    // The relu's float result also feeds a sigmoid: the conv cannot take it over.
    let input = r#"
#0 = const i8[2,2,1,1] [3, -2, 1, 4]
func @main(%x: f32[1,2,3,3]) -> ("y": f32[1,2,3,3], "s": f32[1,2,3,3]) {
  %xq = quantize %x : u8[1,2,3,3] q(0.5, 128)
  %xd = dequantize %xq : f32[1,2,3,3]
  %w = const #0 : i8[2,2,1,1] q(0.25, 0)
  %wd = dequantize %w : f32[2,2,1,1]
  %y = conv %xd, %wd {kernel=[1,1]} : f32[1,2,3,3]
  %r = relu %y : f32[1,2,3,3]
  %rq = quantize %r : u8[1,2,3,3] q(0.125, 128)
  %rd = dequantize %rq : f32[1,2,3,3]
  %s = sigmoid %r : f32[1,2,3,3]
  return %rd, %s
}
"#;
    let (before, after, cx) = canon(input);
    assert_text(&after, input);
    assert!(
        cx.remarks
            .iter()
            .any(|r| r.contains("also used by sigmoid")),
        "{:?}",
        cx.remarks
    );
    assert_same(&before, &after);
}

#[test]
fn relu_whose_result_is_a_graph_output_is_not_absorbed() {
    let input = r#"
#0 = const i8[2,2,1,1] [3, -2, 1, 4]
func @main(%x: f32[1,2,3,3]) -> ("y": f32[1,2,3,3], "r": f32[1,2,3,3]) {
  %xq = quantize %x : u8[1,2,3,3] q(0.5, 128)
  %xd = dequantize %xq : f32[1,2,3,3]
  %w = const #0 : i8[2,2,1,1] q(0.25, 0)
  %wd = dequantize %w : f32[2,2,1,1]
  %y = conv %xd, %wd {kernel=[1,1]} : f32[1,2,3,3]
  %r = relu %y : f32[1,2,3,3]
  %rq = quantize %r : u8[1,2,3,3] q(0.125, 128)
  %rd = dequantize %rq : f32[1,2,3,3]
  return %rd, %r
}
"#;
    let (before, after, cx) = canon(input);
    assert_text(&after, input);
    assert!(
        cx.remarks.iter().any(|r| r.contains("graph output")),
        "{:?}",
        cx.remarks
    );
    assert_same(&before, &after);
}

const SCALED_CONV: &str = r#"
#0 = const i8[2,2,1,1] WEIGHTS
#1 = const i32[2] [5, -7]
#2 = const f32[1,2,1,1] FACTORS
func @main(%x: f32[1,2,3,3]) -> ("y": f32[1,2,3,3]) {
  %xq = quantize %x : u8[1,2,3,3] q(0.5, 128)
  %xd = dequantize %xq : f32[1,2,3,3]
  %w = const #0 : i8[2,2,1,1] q(axis=0, [W_SCALE, 0.125], [0, 0])
  %wd = dequantize %w : f32[2,2,1,1]
  %b = const #1 : i32[2] q(axis=0, [0.125, 0.0625], [0, 0])
  %bd = dequantize %b : f32[2]
  %y = conv %xd, %wd, %bd {kernel=[1,1]} : f32[1,2,3,3] loc("conv")
  %m = mul #2, %y : f32[1,2,3,3] loc("scale")
  %mq = quantize %m : u8[1,2,3,3] q(0.25, 100)
  %md = dequantize %mq : f32[1,2,3,3]
  return %md
}
"#;

fn scaled_conv(weights: &str, w_scale: &str, factors: &str) -> String {
    SCALED_CONV
        .replace("WEIGHTS", weights)
        .replace("W_SCALE", w_scale)
        .replace("FACTORS", factors)
}

#[test]
fn per_channel_mul_folds_into_weight_and_bias_scales() {
    // Channel 0 times 2: scales 0.5 (w) and 0.25 (b). Channel 1 times -0.5: codes
    // negated, scales 0.0625 and 0.03125. The bias scales are again s_x * s_w'
    // (0.5 * 0.5, 0.5 * 0.0625), so the negated i32 codes are reused as they are.
    let input = scaled_conv("[3, -2, 1, 4]", "0.25", "[2.0, -0.5]");
    let expected = r#"
#0 = const i8[2,2,1,1] [3, -2, -1, -4]
#1 = const i32[2] [5, 7]
func @main(%x: f32[1,2,3,3]) -> ("y": f32[1,2,3,3]) {
  %xq = quantize %x : u8[1,2,3,3] q(0.5, 128)
  %w = const #0 : i8[2,2,1,1] q(axis=0, [0.5, 0.0625], [0, 0])
  %b = const #1 : i32[2]
  %y = conv %xq, %w, %b {kernel=[1,1]} : u8[1,2,3,3] q(0.25, 100) loc("conv")
  %md = dequantize %y : f32[1,2,3,3]
  return %md
}
"#;
    let (before, after, cx) = canon(&input);
    assert_text(&after, expected);
    assert_eq!(stat(&cx, "channel-mul-folded"), "1");
    assert_eq!(stat(&cx, "bias-reused"), "1");
    // Every product and sum is exact and the multipliers are 1 and 1/8: bit-identical.
    assert_same(&before, &after);
}

#[test]
fn per_channel_mul_that_would_round_stays_float() {
    // 0.3 * 0.1 (as f32s) is not an f32 without rounding.
    assert_ne!(
        f64::from(0.3f32) * f64::from(0.1f32),
        f64::from(0.3f32 * 0.1f32)
    );
    let input = scaled_conv("[3, -2, 1, 4]", "0.3", "[0.1, 1.0]");
    let (before, after, cx) = canon(&input);
    assert_text(&after, &input);
    assert!(
        cx.remarks
            .iter()
            .any(|r| r.contains("conv 'conv'") && r.contains("not exact")),
        "{:?}",
        cx.remarks
    );
    assert_same(&before, &after);
    // -128 cannot be negated in i8.
    let input = scaled_conv("[3, -2, -128, 4]", "0.25", "[1.0, -1.0]");
    let (_, after, cx) = canon(&input);
    assert_text(&after, &input);
    assert!(
        cx.remarks
            .iter()
            .any(|r| r.contains("outside the range of i8")),
        "{:?}",
        cx.remarks
    );
}

// ---------------------------------------------------------------- q/dq pairs

#[test]
fn quantize_of_dequantize_with_equal_params_is_the_value() {
    let input = r#"
func @main(%x: u8[4] q(0.5, 128)) -> ("y": u8[4] q(0.5, 128)) {
  %d = dequantize %x : f32[4]
  %q = quantize %d : u8[4] q(0.5, 128)
  return %q
}
"#;
    let expected = r#"
func @main(%x: u8[4] q(0.5, 128)) -> ("y": u8[4] q(0.5, 128)) {
  return %x
}
"#;
    let (before, after, cx) = canon(input);
    assert_text(&after, expected);
    assert_eq!(stat(&cx, "q-dq-removed"), "1");
    assert_same(&before, &after);
}

#[test]
fn quantize_of_dequantize_with_other_params_is_a_requantize() {
    let input = r#"
func @main(%x: u8[8] q(0.5, 128)) -> ("y": i8[8] q(0.3, 3)) {
  %d = dequantize %x : f32[8]
  %q = quantize %d : i8[8] q(0.3, 3)
  return %q
}
"#;
    let expected = r#"
func @main(%x: u8[8] q(0.5, 128)) -> ("y": i8[8] q(0.3, 3)) {
  %q = requantize %x : i8[8] q(0.3, 3)
  return %q
}
"#;
    let (before, after, cx) = canon(input);
    assert_text(&after, expected);
    assert_eq!(stat(&cx, "q-dq-requantize"), "1");
    assert_same(&before, &after);
}

// ---------------------------------------------------------------- left alone

#[test]
fn dynamic_quantization_is_left_alone_with_one_remark() {
    // onnxruntime's quantize_dynamic: the scale %s is computed at run time.
    let input = r#"
#0 = const f32[] [0.003]
#1 = const u8[3,2] [120, 130, 127, 140, 110, 127]
#2 = const u8[] [127]
#3 = const f32[2] [0.1, -0.2]
func @main(%x: f32[4,3]) -> ("y": f32[4,2]) {
  %xq, %s, %z = dynamic_quantize %x : u8[4,3], f32[], u8[]
  %ws = mul %s, #0 : f32[]
  %acc = matmul_integer %xq, #1, %z, #2 : i32[4,2]
  %f = cast %acc {to=f32} : f32[4,2]
  %m = mul %f, %ws : f32[4,2]
  %y = add %m, #3 : f32[4,2]
  return %y
}
"#;
    let (before, after, cx) = canon(input);
    assert_text(&after, input);
    assert_eq!(stat(&cx, "dynamic-quant-left"), "1");
    assert_eq!(cx.remarks.len(), 1, "{:?}", cx.remarks);
    assert!(
        cx.remarks[0].contains("dynamic_quantize") && cx.remarks[0].contains("run time"),
        "{:?}",
        cx.remarks
    );
    assert_same(&before, &after);
}

// ---------------------------------------------------------------- a real model

/// onnxruntime's `quantize_static` QDQ model of a small CNN, through the default
/// pipeline: no float conv/gemm left, dequantize only feeding outputs, quantize only
/// right after inputs; outputs within a few quantization steps of the QDQ graph.
#[test]
fn cnn_qdq_through_the_default_pipeline() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/models/cnn_qdq.onnx"
    );
    let bytes = std::fs::read(path).expect("fixture");
    let before =
        qc_onnx::import(&bytes, &Default::default(), &qc_onnx::NoExternalData).expect("import");
    let mut after = before.clone();
    let cx = run("default", &mut after);
    println!("{}", print(&after));

    for n in &after.nodes {
        let float_linear = matches!(n.op, Op::Conv(_) | Op::Gemm(_) | Op::MatMul { .. })
            && !n
                .inputs
                .iter()
                .all(|&v| after.ty(v).is_quantized() || after.ty(v).dtype == DType::I32);
        assert!(!float_linear, "float {} left", n.op.name());
    }
    let uses = |v| -> Vec<String> {
        let mut u: Vec<String> = after
            .nodes
            .iter()
            .filter(|n| n.inputs.contains(&v))
            .map(|n| n.op.name().to_string())
            .collect();
        if after.outputs.iter().any(|p| p.value == v) {
            u.push("output".into());
        }
        u
    };
    for n in &after.nodes {
        match n.op {
            Op::Dequantize => assert_eq!(uses(n.outputs[0]), ["output"], "{}", n.name),
            Op::Quantize => assert!(
                after.inputs.iter().any(|p| p.value == n.inputs[0]),
                "quantize '{}' not after an input",
                n.name
            ),
            _ => {}
        }
    }
    assert_eq!(count_ops(&after, "conv"), 3);
    assert_eq!(count_ops(&after, "gemm"), 1);
    let ours: Vec<&String> = cx
        .remarks
        .iter()
        .filter(|r| r.starts_with("canonicalize-qdq"))
        .collect();
    assert!(ours.is_empty(), "{ours:?}");

    // The integer model is onnxruntime's meaning of the QDQ model; the float chain
    // differs by rounding, which can grow through the layers a little.
    let scale = 0.02353061_f32; // the output's quantization step
    let mut worst = 0f32;
    for seed in 1..=4 {
        // The model's input range is about [-1, 1] (scale 0.0078, zero point 127).
        let xs: Vec<Tensor> = inputs(&before, seed)
            .into_iter()
            .map(|t| {
                let v = t.to_f32_vec().iter().map(|x| x / 3.0).collect();
                Tensor::from_f32(t.dims().to_vec(), v).expect("tensor")
            })
            .collect();
        let (a, b) = (&interp(&before, &xs)[0], &interp(&after, &xs)[0]);
        for (p, q) in a.to_f32_vec().iter().zip(b.to_f32_vec()) {
            worst = worst.max((p - q).abs() / scale);
        }
    }
    println!("cnn_qdq: largest output difference {worst} steps");
    assert!(worst <= 3.0, "{worst} steps");
}
