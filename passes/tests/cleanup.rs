//! `fold-constants`, `dce`, `compact` and the pipeline registry: text-IR input ⇒
//! hand-written expected text, and the interpreter before and after (bit-identical
//! outputs: folding must compute exactly what the interpreter computes).

#![allow(clippy::panic)] // tests fail by panicking

use qc_ir::text::{parse, print};
use qc_ir::{DType, Graph, Tensor, TensorData};
use qc_passes::{Changed, Error, PassCx, Pipeline};

fn graph(text: &str) -> Graph {
    parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Run a pipeline; the context returned holds every pass's statistics.
fn run(passes: &str, g: &mut Graph) -> (PassCx, Vec<Changed>) {
    let mut cx = PassCx::default();
    let reports = Pipeline::parse(passes)
        .expect("pipeline")
        .run(g, &mut cx)
        .unwrap_or_else(|e| panic!("{passes}: {e}\n{}", print(g)));
    qc_ir::verify::verify(g).unwrap_or_else(|e| panic!("{e}\n{}", print(g)));
    let changed = reports.iter().map(|r| r.changed).collect();
    cx.stats = reports.into_iter().flat_map(|r| r.stats).collect();
    (cx, changed)
}

fn stat(cx: &PassCx, key: &str) -> String {
    cx.stats
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no stat {key} in {:?}", cx.stats))
}

fn assert_text(after: &Graph, expected: &str) {
    let mut want = graph(expected);
    want.compact();
    assert_eq!(print(after), print(&want), "got:\n{}", print(after));
}

/// Seeded f32 inputs in [-3, 3) (the only input dtype these graphs use).
fn inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut s = seed;
    g.inputs
        .iter()
        .map(|p| {
            let ty = g.ty(p.value);
            assert_eq!(ty.dtype, DType::F32);
            let v = (0..ty.numel().expect("numel"))
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((s >> 40) as f32 / (1u64 << 24) as f32) * 6.0 - 3.0
                })
                .collect();
            Tensor::new(ty.shape.clone(), TensorData::F32(v)).expect("tensor")
        })
        .collect()
}

fn assert_same(before: &Graph, after: &Graph) {
    for seed in 1..=3 {
        let xs = inputs(before, seed);
        let a = qc_interp::run(before, &xs, &Default::default()).expect("before");
        let b = qc_interp::run(after, &xs, &Default::default()).expect("after");
        // Bitwise, so NaN results compare too.
        let bits = |ts: &[Tensor]| -> Vec<(DType, Vec<usize>, Vec<u8>)> {
            ts.iter()
                .map(|t| (t.dtype(), t.dims().to_vec(), t.data().to_le_bytes()))
                .collect()
        };
        assert_eq!(bits(&a), bits(&b), "seed {seed}");
    }
}

/// `input` through `fold-constants` ⇒ `expected`, and the same outputs.
fn check_fold(input: &str, expected: &str) -> PassCx {
    let before = graph(input);
    let mut after = before.clone();
    let (cx, _) = run("fold-constants", &mut after);
    assert_text(&after, expected);
    assert_same(&before, &after);
    cx
}

// ---------------------------------------------------------------- fold-constants

#[test]
fn transpose_then_reshape_fold_into_one_constant() {
    // [[1,2,3],[4,5,6]]^T = [[1,4],[2,5],[3,6]], then reshaped to [3,2] (unchanged order).
    let cx = check_fold(
        r#"
#0 = const f32[2,3] [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
func @main(%x: f32[3,2]) -> ("y": f32[3,2]) {
  %t = transpose #0 {perm=[1,0]} : f32[3,2]
  %f = flatten %t {axis=0} : f32[1,6]
  %r = reshape %f {shape=[3,2]} : f32[3,2]
  %y = add %x, %r : f32[3,2]
  return %y
}
"#,
        r#"
#0 = const f32[3,2] [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
func @main(%x: f32[3,2]) -> ("y": f32[3,2]) {
  %y = add %x, #0 : f32[3,2]
  return %y
}
"#,
    );
    assert_eq!(stat(&cx, "folded"), "3");
}

#[test]
fn concat_pad_squeeze_of_raw_integers_and_bools() {
    // concat axis 1: [[1,2],[3,4]] ++ [[5],[6]] = [[1,2,5],[3,4,6]].
    // pad [0,-1,1,2] value 7 on [[1,2,3,4]]: crop one column in front, add two at the
    // end, one row below: [[2,3,4,7,7],[7,7,7,7,7]].
    // squeeze axis 1 of [[true],[false]]: [true, false]; unsqueeze back at 0.
    check_fold(
        r#"
#0 = const i64[2,2] [1, 2, 3, 4]
#1 = const i64[2,1] [5, 6]
#2 = const i8[1,4] [1, 2, 3, 4]
#3 = const bool[2,1] [true, false]
func @main() -> ("c": i64[2,3], "p": i8[2,5], "s": bool[1,2]) {
  %c = concat #0, #1 {axis=1} : i64[2,3]
  %p = pad #2 {pads=[0,-1,1,2], value=7.0} : i8[2,5]
  %s = squeeze #3 {axes=[1]} : bool[2]
  %u = unsqueeze %s {axes=[0]} : bool[1,2]
  %i = identity %u : bool[1,2]
  return %c, %p, %i
}
"#,
        r#"
#0 = const i64[2,3] [1, 2, 5, 3, 4, 6]
#1 = const i8[2,5] [2, 3, 4, 7, 7, 7, 7, 7, 7, 7]
#2 = const bool[1,2] [true, false]
func @main() -> ("c": i64[2,3], "p": i8[2,5], "s": bool[1,2]) {
  %c = const #0 : i64[2,3]
  %p = const #1 : i8[2,5]
  %i = const #2 : bool[1,2]
  return %c, %p, %i
}
"#,
    );
}

#[test]
fn movement_of_a_quantized_constant_keeps_its_params() {
    // Per-axis params follow the transposed axis (0 -> 1).
    check_fold(
        r#"
#0 = const i8[2,3] [1, 2, 3, -4, -5, -6]
func @main(%x: f32[3,2]) -> ("y": f32[3,2]) {
  %w = const #0 : i8[2,3] q(axis=0, [0.5, 0.25], [0, 1])
  %t = transpose %w {perm=[1,0]} : i8[3,2] q(axis=1, [0.5, 0.25], [0, 1])
  %d = dequantize %t : f32[3,2]
  %y = add %x, %d : f32[3,2]
  return %y
}
"#,
        r#"
#0 = const i8[3,2] [1, -4, 2, -5, 3, -6]
func @main(%x: f32[3,2]) -> ("y": f32[3,2]) {
  %t = const #0 : i8[3,2] q(axis=1, [0.5, 0.25], [0, 1])
  %d = dequantize %t : f32[3,2]
  %y = add %x, %d : f32[3,2]
  return %y
}
"#,
    );
}

#[test]
fn quantize_of_a_float_constant_per_axis() {
    // Channel 0 (scale 0.25, zp 0): 0.3 -> 1.2 -> 1; -0.625 -> -2.5 -> -2 (ties to
    // even); 40 -> 160 -> 127 (saturated). Channel 1 (scale 0.5, zp 10): 1 -> 2 + 10 =
    // 12; 2.75 -> 5.5 -> 6 + 10 = 16; -100 -> -200 + 10 -> -128.
    check_fold(
        r#"
#0 = const f32[2,3] [0.3, -0.625, 40.0, 1.0, 2.75, -100.0]
func @main() -> ("q": i8[2,3] q(axis=0, [0.25, 0.5], [0, 10])) {
  %q = quantize #0 : i8[2,3] q(axis=0, [0.25, 0.5], [0, 10])
  return %q
}
"#,
        r#"
#0 = const i8[2,3] [1, -2, 127, 12, 16, -128]
func @main() -> ("q": i8[2,3] q(axis=0, [0.25, 0.5], [0, 10])) {
  %q = const #0 : i8[2,3] q(axis=0, [0.25, 0.5], [0, 10])
  return %q
}
"#,
    );
}

#[test]
fn integer_arithmetic_wraps_truncates_and_broadcasts() {
    // i8: 100 + 100 = 200 wraps to -56, -100 + -100 = -200 wraps to 56; with relu the
    // wrapped sums give 0 and 56.
    // i32 broadcast [2,1] + [3]: [[11,21,31],[12,22,32]].
    // -7 / 2 = -3, 7 / -2 = -3 (toward zero). 3 - 10 = -7, 3 * -4 = -12.
    // clip(-1.5, 10.9) on i32 binds at -1 and 10.
    check_fold(
        r#"
#0 = const i8[2] [100, -100]
#1 = const i32[2,1] [1, 2]
#2 = const i32[3] [10, 20, 30]
#3 = const i32[2] [-7, 7]
#4 = const i32[2] [2, -2]
#5 = const i32[3] [-5, 5, 50]
func @main() -> ("a": i8[2], "r": i8[2], "b": i32[2,3], "d": i32[2], "s": i32[2], "m": i32[2], "c": i32[3]) {
  %a = add #0, #0 : i8[2]
  %r = add #0, #0 {act=relu} : i8[2]
  %b = add #1, #2 : i32[2,3]
  %d = div #3, #4 : i32[2]
  %s = sub #4, #3 : i32[2]
  %m = mul #3, #4 : i32[2]
  %c = clip #5 {min=-1.5, max=10.9} : i32[3]
  return %a, %r, %b, %d, %s, %m, %c
}
"#,
        r#"
#0 = const i8[2] [-56, 56]
#1 = const i8[2] [0, 56]
#2 = const i32[2,3] [11, 21, 31, 12, 22, 32]
#3 = const i32[2] [-3, -3]
#4 = const i32[2] [9, -9]
#5 = const i32[2] [-14, -14]
#6 = const i32[3] [-1, 5, 10]
func @main() -> ("a": i8[2], "r": i8[2], "b": i32[2,3], "d": i32[2], "s": i32[2], "m": i32[2], "c": i32[3]) {
  %a = const #0 : i8[2]
  %r = const #1 : i8[2]
  %b = const #2 : i32[2,3]
  %d = const #3 : i32[2]
  %s = const #4 : i32[2]
  %m = const #5 : i32[2]
  %c = const #6 : i32[3]
  return %a, %r, %b, %d, %s, %m, %c
}
"#,
    );
}

#[test]
fn float_arithmetic() {
    // [1.5, -2] * 2 = [3, -4]; relu([-1, 0.5]) = [0, 0.5]; clip 0..6 of [-1, 3, 7] =
    // [0, 3, 6]; [1, 3] - [0.5, 0.25] = [0.5, 2.75]; [1, 3] / [0.5, 0.25] = [2, 12];
    // [1, 3] + [0.5, 0.25] clipped to [0, 2] = [1.5, 2].
    check_fold(
        r#"
#0 = const f32[2] [1.5, -2.0]
#1 = const f32[] [2.0]
#2 = const f32[2] [-1.0, 0.5]
#3 = const f32[3] [-1.0, 3.0, 7.0]
#4 = const f32[2] [1.0, 3.0]
#5 = const f32[2] [0.5, 0.25]
func @main() -> ("m": f32[2], "r": f32[2], "c": f32[3], "s": f32[2], "d": f32[2], "a": f32[2]) {
  %m = mul #0, #1 : f32[2]
  %r = relu #2 : f32[2]
  %c = clip #3 {min=0.0, max=6.0} : f32[3]
  %s = sub #4, #5 : f32[2]
  %d = div #4, #5 : f32[2]
  %a = add #4, #5 {act=clip(0.0, 2.0)} : f32[2]
  return %m, %r, %c, %s, %d, %a
}
"#,
        r#"
#0 = const f32[2] [3.0, -4.0]
#1 = const f32[2] [0.0, 0.5]
#2 = const f32[3] [0.0, 3.0, 6.0]
#3 = const f32[2] [0.5, 2.75]
#4 = const f32[2] [2.0, 12.0]
#5 = const f32[2] [1.5, 2.0]
func @main() -> ("m": f32[2], "r": f32[2], "c": f32[3], "s": f32[2], "d": f32[2], "a": f32[2]) {
  %m = const #0 : f32[2]
  %r = const #1 : f32[2]
  %c = const #2 : f32[3]
  %s = const #3 : f32[2]
  %d = const #4 : f32[2]
  %a = const #5 : f32[2]
  return %m, %r, %c, %s, %d, %a
}
"#,
    );
}

#[test]
fn arithmetic_on_quantized_constants_requantizes() {
    // Reals: [1.0, -0.5] + [0.25, 0.25] = [1.25, -0.25]; at scale 0.5, zp 10:
    // 2.5 -> 2 (ties to even) + 10 = 12 ; -0.5 -> -0 + 10 = 10.
    check_fold(
        r#"
#0 = const u8[2] [132, 126]
#1 = const i8[] [1]
func @main() -> ("y": u8[2] q(0.5, 10)) {
  %a = const #0 : u8[2] q(0.25, 128)
  %b = const #1 : i8[] q(0.25, 0)
  %y = add %a, %b : u8[2] q(0.5, 10)
  return %y
}
"#,
        r#"
#0 = const u8[2] [12, 10]
func @main() -> ("y": u8[2] q(0.5, 10)) {
  %y = const #0 : u8[2] q(0.5, 10)
  return %y
}
"#,
    );
}

#[test]
fn cast_saturates_floats_and_wraps_integers() {
    // f32 -> i8: 300.7 -> 127, -3.9 -> -3 (toward zero), NaN -> 0, -1000 -> -128.
    // i32 -> u8: 256 -> 0, -1 -> 255, 300 -> 44. i32 -> bool: 0 -> false, 5 -> true.
    check_fold(
        r#"
#0 = const f32[4] [300.7, -3.9, NaN, -1000.0]
#1 = const i32[3] [256, -1, 300]
#2 = const i32[2] [0, 5]
func @main() -> ("a": i8[4], "b": u8[3], "c": bool[2]) {
  %a = cast #0 {to=i8} : i8[4]
  %b = cast #1 {to=u8} : u8[3]
  %c = cast #2 {to=bool} : bool[2]
  return %a, %b, %c
}
"#,
        r#"
#0 = const i8[4] [127, -3, 0, -128]
#1 = const u8[3] [0, 255, 44]
#2 = const bool[2] [false, true]
func @main() -> ("a": i8[4], "b": u8[3], "c": bool[2]) {
  %a = const #0 : i8[4]
  %b = const #1 : u8[3]
  %c = const #2 : bool[2]
  return %a, %b, %c
}
"#,
    );
}

#[test]
fn what_is_not_folded_stays() {
    // Integer division by zero is an error at run time, not a constant; sigmoid is not
    // a folded op; dequantize stays so canonical quantized weights are not undone.
    let input = r#"
#0 = const i32[2] [4, 6]
#1 = const i32[2] [2, 0]
#2 = const f32[2] [0.5, -1.0]
#3 = const i8[2] [3, -4]
func @main() -> ("d": i32[2], "s": f32[2], "q": f32[2]) {
  %d = div #0, #1 : i32[2]
  %s = sigmoid #2 : f32[2]
  %w = const #3 : i8[2] q(0.5, 0)
  %q = dequantize %w : f32[2]
  return %d, %s, %q
}
"#;
    let before = graph(input);
    let mut after = before.clone();
    let (cx, changed) = run("fold-constants", &mut after);
    assert_text(&after, input);
    assert_eq!(stat(&cx, "folded"), "0");
    assert_eq!(changed, [Changed::No]);
}

#[test]
fn results_above_the_size_cap_are_not_folded() {
    // 1 + 16 Mi elements: one more than the cap.
    let input = r#"
#0 = const f32[1] [1.0]
func @main() -> ("p": f32[16777217]) {
  %p = pad #0 {pads=[0,16777216]} : f32[16777217]
  return %p
}
"#;
    let mut g = graph(input);
    let (cx, _) = run("fold-constants", &mut g);
    assert_eq!(stat(&cx, "too-large"), "1");
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(qc_passes::fold::MAX_FOLD_ELEMS, 16 * 1024 * 1024);
}

// ---------------------------------------------------------------- dce, compact

#[test]
fn dce_removes_unused_chains_and_keeps_inputs_and_outputs() {
    let input = r#"
func @main(%x: f32[4], %unused: f32[4]) -> ("y": f32[4], "x": f32[4]) {
  %dead1 = relu %x : f32[4]
  %dead2 = sigmoid %dead1 : f32[4]
  %y = tanh %x : f32[4]
  %dead3 = add %y, %unused : f32[4]
  return %y, %x
}
"#;
    let expected = r#"
func @main(%x: f32[4], %unused: f32[4]) -> ("y": f32[4], "x": f32[4]) {
  %y = tanh %x : f32[4]
  return %y, %x
}
"#;
    let before = graph(input);
    let mut after = before.clone();
    let (cx, changed) = run("dce", &mut after);
    assert_text(&after, expected);
    assert_eq!(stat(&cx, "removed-nodes"), "3");
    assert_eq!(changed, [Changed::Yes]);
    assert_same(&before, &after);
    // Nothing left to do.
    let (cx, changed) = run("dce", &mut after);
    assert_eq!(stat(&cx, "removed-nodes"), "0");
    assert_eq!(changed, [Changed::No]);
}

#[test]
fn compact_renumbers_densely() {
    // Build a graph with an arena hole: a constant value nobody uses, defined first.
    let mut g = graph(
        r#"
func @main(%x: f32[2]) -> ("y": f32[2]) {
  %y = relu %x : f32[2]
  return %y
}
"#,
    );
    let hole = g.add_const(Tensor::from_f32(vec![2], vec![1.0, 2.0]).expect("tensor"));
    assert_eq!(hole.index(), 2);
    let (cx, changed) = run("compact", &mut g);
    assert_eq!(changed, [Changed::Yes]);
    assert_eq!(stat(&cx, "values"), "2");
    assert_eq!(stat(&cx, "consts"), "0");
    let (_, changed) = run("compact", &mut g);
    assert_eq!(changed, [Changed::No]);
}

// ---------------------------------------------------------------- registry

#[test]
fn default_pipeline_and_registry() {
    let names = Pipeline::parse("default").expect("default").names();
    assert_eq!(names, ["canonicalize-qdq", "fold-constants", "egg", "dce"]);
    assert!(Pipeline::parse("none").expect("none").names().is_empty());
    let list = Pipeline::parse(" dce , compact,fold-constants ").expect("list");
    assert_eq!(list.names(), ["dce", "compact", "fold-constants"]);
    match Pipeline::parse("dce,nope") {
        Err(Error::UnknownPass { name, known }) => {
            assert_eq!(name, "nope");
            for p in [
                "canonicalize-qdq",
                "fold-constants",
                "egg",
                "dce",
                "compact",
            ] {
                assert!(known.contains(p), "{known}");
            }
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("an unknown pass was accepted"),
    }
}
