//! The requantization rules and quantized activations, before ⇒ after, with the
//! interpreter's quantized outputs required to be identical.

#![allow(clippy::panic, clippy::unwrap_used)]

mod egg_support;

use egg_support::{check, op_counts, parse, run, same_outputs, seeded_inputs, unchanged};

#[test]
fn lossless_requantize_chain_collapses() {
    // u8 zp 128 -> i8 zp 0 at the same scale re-encodes every code exactly.
    check(
        r#"
func @main(%x: u8[16] q(0.5, 128)) -> u8[16] q(0.3, 3) {
  %a = requantize %x : i8[16] q(0.5, 0)
  %b = requantize %a : u8[16] q(0.3, 3) loc("rq2")
  return %b
}
"#,
        &["requantize-requantize"],
        r#"
func @main(%x: u8[16] q(0.5, 128)) -> u8[16] q(0.3, 3) {
  %b = requantize %x : u8[16] q(0.3, 3) loc("rq2")
  return %b
}
"#,
        0.0,
    );
}

#[test]
fn lossy_requantize_chain_stays() {
    // The first step rounds to a coarser scale: the chain rounds twice.
    unchanged(
        r#"
func @main(%x: u8[16] q(0.5, 128)) -> u8[16] q(0.5, 128) {
  %a = requantize %x : u8[16] q(1.0, 128)
  %b = requantize %a : u8[16] q(0.5, 128)
  return %b
}
"#,
        &["requantize-requantize", "requantize-identity"],
    );
    // A shift that pushes codes out of range saturates: lossy too.
    unchanged(
        r#"
func @main(%x: u8[16] q(0.5, 128)) -> u8[16] q(0.3, 3) {
  %a = requantize %x : i8[16] q(0.5, 5)
  %b = requantize %a : u8[16] q(0.3, 3)
  return %b
}
"#,
        &["requantize-requantize"],
    );
}

#[test]
fn requantize_back_to_the_same_type_disappears() {
    // The chain collapses to a requantize to x's own type, which is the identity.
    check(
        r#"
func @main(%x: u8[16] q(0.5, 128)) -> u8[16] q(0.5, 128) {
  %a = requantize %x : i8[16] q(0.5, 0)
  %b = requantize %a : u8[16] q(0.5, 128)
  return %b
}
"#,
        &["requantize-requantize", "requantize-identity"],
        r#"
func @main(%x: u8[16] q(0.5, 128)) -> ("b": u8[16] q(0.5, 128)) {
  return %x
}
"#,
        0.0,
    );
}

const QCONV: &str = r#"
#w = const i8[2,1,1,1] [3, -5]
#b = const i32[2] [10, -4]
func @main(%x: u8[1,1,3,3] q(0.5, 128)) -> OUT {
  %wq = const #w : i8[2,1,1,1] q(axis=0, [0.02, 0.03], [0, 0])
  %bv = const #b
  %c = conv %x, %wq, %bv {kernel=[1,1]} : u8[1,2,3,3] q(0.01, 128) loc("conv")
  BODY
}
"#;

fn qconv(out: &str, body: &str) -> String {
    QCONV.replace("OUT", out).replace("BODY", body)
}

#[test]
fn requantize_that_only_moves_storage_folds_into_the_conv() {
    check(
        &qconv(
            "i8[1,2,3,3] q(0.01, 0)",
            "%r = requantize %c : i8[1,2,3,3] q(0.01, 0)\n  return %r",
        ),
        &["fold-requantize"],
        &qconv("i8[1,2,3,3] q(0.01, 0)", "return %c")
            .replace(
                "u8[1,2,3,3] q(0.01, 128) loc(\"conv\")",
                "i8[1,2,3,3] q(0.01, 0) loc(\"conv\")",
            )
            .replace("%c = conv", "%r = conv")
            .replace("return %c", "return %r"),
        0.0,
    );
}

#[test]
fn requantize_to_another_scale_stays() {
    // Folding would round once instead of twice: results could differ by one step.
    unchanged(
        &qconv(
            "u8[1,2,3,3] q(0.02, 128)",
            "%r = requantize %c : u8[1,2,3,3] q(0.02, 128)\n  return %r",
        ),
        &["fold-requantize"],
    );
}

#[test]
fn two_consumers_of_one_requantize() {
    // The requantize folds into the conv (its only user); the requantized value has
    // two users, so the relu is not fused into the conv (that would compute the conv
    // twice) and stays an op.
    let text = qconv(
        "(i8[1,2,3,3] q(0.01, 0), i8[1,2,1,1] q(0.01, 0))",
        "%r = requantize %c : i8[1,2,3,3] q(0.01, 0)\n  \
         %a = relu %r : i8[1,2,3,3] q(0.01, 0)\n  \
         %p = global_max_pool %r : i8[1,2,1,1] q(0.01, 0)\n  \
         return %a, %p",
    );
    let g = parse(&text);
    let out = run(&g, &[]);
    let counts = op_counts(&out.graph);
    assert_eq!(counts.get("conv"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("requantize"), None, "{counts:?}");
    assert_eq!(counts.get("relu"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("global_max_pool"), Some(&1), "{counts:?}");
    assert_eq!(out.graph.nodes.len(), 3);
    same_outputs(&g, &out.graph, 0.0);
}

#[test]
fn relu_on_a_quantized_conv_becomes_its_activation() {
    check(
        &qconv(
            "u8[1,2,3,3] q(0.01, 128)",
            "%r = relu %c : u8[1,2,3,3] q(0.01, 128)\n  return %r",
        ),
        &["fuse-conv-relu"],
        &qconv("u8[1,2,3,3] q(0.01, 128)", "return %r")
            .replace("{kernel=[1,1]}", "{kernel=[1,1], act=relu}")
            .replace("%c = conv", "%r = conv"),
        0.0,
    );
}

#[test]
fn relu_with_zero_point_at_the_storage_minimum() {
    // After a max-pool (no activation to fuse into) it is the identity.
    check(
        r#"
func @main(%x: u8[1,1,4,4] q(0.5, 0)) -> u8[1,1,2,2] q(0.5, 0) {
  %p = max_pool %x {kernel=[2,2], strides=[2,2]} : u8[1,1,2,2] q(0.5, 0)
  %r = relu %p : u8[1,1,2,2] q(0.5, 0)
  return %r
}
"#,
        &[],
        r#"
func @main(%x: u8[1,1,4,4] q(0.5, 0)) -> u8[1,1,2,2] q(0.5, 0) {
  %r = max_pool %x {kernel=[2,2], strides=[2,2]} : u8[1,1,2,2] q(0.5, 0)
  return %r
}
"#,
        0.0,
    );
    // After a conv it is deleted too: no relu node and no act (a relu at the storage
    // minimum clamps no code, so `act=relu` would be noise).
    let zp0 = |t: String| t.replace("q(0.01, 128) loc", "q(0.01, 0) loc");
    let out = check(
        &zp0(qconv(
            "u8[1,2,3,3] q(0.01, 0)",
            "%r = relu %c : u8[1,2,3,3] q(0.01, 0)\n  return %r",
        )),
        &[],
        &zp0(qconv("u8[1,2,3,3] q(0.01, 0)", "return %r")).replace("%c = conv", "%r = conv"),
        0.0,
    );
    assert!(out.report.fired.contains_key("relu-quantized-identity"));
    assert!(!out.report.fired.contains_key("fuse-conv-relu"));
    // After a requantize (no activation to fuse into): deleted.
    check(
        &qconv(
            "u8[1,2,3,3] q(0.02, 0)",
            "%d = requantize %c : u8[1,2,3,3] q(0.02, 0)\n  %r = relu %d : u8[1,2,3,3] q(0.02, 0)\n  return %r",
        ),
        &[],
        &qconv(
            "u8[1,2,3,3] q(0.02, 0)",
            "%r = requantize %c : u8[1,2,3,3] q(0.02, 0)\n  return %r",
        ),
        0.0,
    );
}

#[test]
fn relu6_wider_than_the_quantized_range() {
    // u8 with scale 0.01 and zero point 0 covers [0, 2.55]: clip(0, 6) clamps nothing.
    // After a max-pool: removed.
    check(
        r#"
func @main(%x: u8[1,1,4,4] q(0.01, 0)) -> u8[1,1,2,2] q(0.01, 0) {
  %p = max_pool %x {kernel=[2,2], strides=[2,2]} : u8[1,1,2,2] q(0.01, 0)
  %r = clip %p {min=0.0, max=6.0} : u8[1,1,2,2] q(0.01, 0)
  return %r
}
"#,
        &[],
        r#"
func @main(%x: u8[1,1,4,4] q(0.01, 0)) -> u8[1,1,2,2] q(0.01, 0) {
  %r = max_pool %x {kernel=[2,2], strides=[2,2]} : u8[1,1,2,2] q(0.01, 0)
  return %r
}
"#,
        0.0,
    );
    // After a conv with the same range: deleted, no act.
    check(
        &qconv(
            "u8[1,2,3,3] q(0.01, 0)",
            "%r = clip %c {min=0.0, max=6.0} : u8[1,2,3,3] q(0.01, 0)\n  return %r",
        )
        .replace("q(0.01, 128) loc", "q(0.01, 0) loc"),
        &[],
        &qconv("u8[1,2,3,3] q(0.01, 0)", "return %r")
            .replace("q(0.01, 128) loc", "q(0.01, 0) loc")
            .replace("%c = conv", "%r = conv"),
        0.0,
    );
    // After a conv whose zero point is 128: the lower bound bites, so it is fused;
    // the epilogue clamps to [quantize(0), quantize(6)] = [128, 255] (saturated),
    // the same codes as the clip.
    check(
        &qconv(
            "u8[1,2,3,3] q(0.01, 128)",
            "%r = clip %c {min=0.0, max=6.0} : u8[1,2,3,3] q(0.01, 128)\n  return %r",
        ),
        &[],
        &qconv("u8[1,2,3,3] q(0.01, 128)", "return %r")
            .replace("{kernel=[1,1]}", "{kernel=[1,1], act=clip(0.0, 6.0)}")
            .replace("%c = conv", "%r = conv"),
        0.0,
    );
    // A range wider than 6 keeps the clamp.
    unchanged(
        r#"
func @main(%x: u8[1,1,4,4] q(0.05, 0)) -> u8[1,1,2,2] q(0.05, 0) {
  %p = max_pool %x {kernel=[2,2], strides=[2,2]} : u8[1,1,2,2] q(0.05, 0)
  %r = clip %p {min=0.0, max=6.0} : u8[1,1,2,2] q(0.05, 0)
  return %r
}
"#,
        &[],
    );
}

#[test]
fn requantize_chain_through_a_finer_grid_collapses() {
    // u8 q(0.5, 0) -> u16 q(0.25, 0) is q' = 2q: no rounding, no saturation, so the
    // second requantize sees the same reals as from x itself.
    let out = check(
        r#"
func @main(%x: u8[256] q(0.5, 0)) -> u8[256] q(1.0, 3) {
  %a = requantize %x : u16[256] q(0.25, 0)
  %b = requantize %a : u8[256] q(1.0, 3) loc("rq2")
  return %b
}
"#,
        &["requantize-requantize"],
        r#"
func @main(%x: u8[256] q(0.5, 0)) -> u8[256] q(1.0, 3) {
  %b = requantize %x : u8[256] q(1.0, 3) loc("rq2")
  return %b
}
"#,
        0.0,
    );
    assert_eq!(out.report.fired.get("requantize-requantize"), Some(&1));
    // The same grid in u8 saturates above q = 127 (2q > 255): the chain clips the
    // top half to 127.5 before the second step, so it stays.
    unchanged(
        r#"
func @main(%x: u8[256] q(0.5, 0)) -> u8[256] q(1.0, 3) {
  %a = requantize %x : u8[256] q(0.25, 0)
  %b = requantize %a : u8[256] q(1.0, 3)
  return %b
}
"#,
        &["requantize-requantize"],
    );
}

const WIDE_CONV: &str = r#"
#w = const i8[2,2,1,1] [127, 127, -127, -127]
func @main(%x: u8[1,2,3,3] q(0.5, 0)) -> OUT {
  %wq = const #w : i8[2,2,1,1] q(axis=0, [0.5, 0.5], [0, 0])
  %c = conv %x, %wq {kernel=[1,1]} : FROM loc("conv")
  %r = requantize %c : TO
  return %r
}
"#;

fn wide_conv(from: &str, to: &str) -> String {
    WIDE_CONV
        .replace("OUT", to)
        .replace("FROM", from)
        .replace("TO", to)
}

#[test]
fn narrowing_requantize_folds_into_the_conv() {
    // i16 zp 0 -> u8 zp 0 at one scale: only saturation differs, and saturating to
    // i16 first changes nothing u8 keeps. (Results reach far beyond both ranges:
    // 127 * 255 * 2 steps of the input.)
    let (i16t, u8t) = ("i16[1,2,3,3] q(0.25, 0)", "u8[1,2,3,3] q(0.25, 0)");
    let g = parse(&wide_conv(i16t, u8t));
    let out = run(&g, &["fold-requantize"]);
    assert_eq!(op_counts(&out.graph).get("requantize"), None);
    let conv = out
        .graph
        .nodes
        .iter()
        .find(|n| n.op.name() == "conv")
        .unwrap();
    assert_eq!(out.graph.ty(conv.outputs[0]).dtype, qc_ir::DType::U8);
    same_outputs(&g, &out.graph, 0.0);
}

#[test]
fn widening_requantize_stays() {
    // u8 -> i16 at one scale and zero point: the u8 conv saturates at 255 (and 0),
    // an i16 conv would not. The rule must not fire ...
    let (u8t, i16t) = ("u8[1,2,3,3] q(0.25, 0)", "i16[1,2,3,3] q(0.25, 0)");
    unchanged(&wide_conv(u8t, i16t), &["fold-requantize"]);
    // ... because folding would change results: the conv computed directly in i16.
    let chain = parse(&wide_conv(u8t, i16t));
    let direct = parse(&wide_conv(i16t, i16t).replace(
        "%r = requantize %c : i16[1,2,3,3] q(0.25, 0)\n  return %r",
        "return %c",
    ));
    let xs = seeded_inputs(&chain, 7);
    let opts = qc_interp::Options::default();
    let a = qc_interp::run(&chain, &xs, &opts).unwrap();
    let b = qc_interp::run(&direct, &xs, &opts).unwrap();
    assert_ne!(a, b, "the u8 conv saturates where the i16 one does not");
}
