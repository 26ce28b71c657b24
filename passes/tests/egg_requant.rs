//! The requantization rules and quantized activations, before ⇒ after, with the
//! interpreter's quantized outputs required to be identical.

#![allow(clippy::panic, clippy::unwrap_used)]

mod egg_support;

use egg_support::{check, op_counts, parse, run, same_outputs, unchanged};

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
    // After a conv it becomes the conv's activation (kept visible), not deleted.
    let zp0 = |t: String| t.replace("q(0.01, 128) loc", "q(0.01, 0) loc");
    check(
        &zp0(qconv(
            "u8[1,2,3,3] q(0.01, 0)",
            "%r = relu %c : u8[1,2,3,3] q(0.01, 0)\n  return %r",
        )),
        &[],
        &zp0(qconv("u8[1,2,3,3] q(0.01, 0)", "return %r"))
            .replace("{kernel=[1,1]}", "{kernel=[1,1], act=relu}")
            .replace("%c = conv", "%r = conv"),
        0.0,
    );
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
    // After a conv: fused; its epilogue clamps to [quantize(0), quantize(6)] =
    // [128, 255] (saturated), the same codes as the clip.
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
