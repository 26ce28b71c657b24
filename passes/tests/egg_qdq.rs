//! The q/dq rules, before ⇒ after, each through the interpreter too (quantized
//! outputs must be identical, float outputs equal: these rewrites are exact).

#![allow(clippy::panic, clippy::unwrap_used)]

mod egg_support;

use egg_support::{check, parse, run, unchanged};
use qc_passes::egg::EggPass;
use qc_passes::{Pass, PassCx};

#[test]
fn dequantize_moves_below_reshape() {
    let out = check(
        r#"
func @main(%x: u8[1,2,2,2] q(0.5, 128)) -> f32[1,8] {
  %d = dequantize %x : f32[1,2,2,2] loc("dq")
  %r = reshape %d {shape=[1,8]} : f32[1,8] loc("rs")
  return %r
}
"#,
        &["dequantize-reshape"],
        r#"
func @main(%x: u8[1,2,2,2] q(0.5, 128)) -> f32[1,8] {
  %m = reshape %x {shape=[1,8]} : u8[1,8] q(0.5, 128) loc("rs")
  %r = dequantize %m : f32[1,8] loc("dq")
  return %r
}
"#,
        0.0,
    );
    assert_eq!(out.report.fired.get("dequantize-reshape"), Some(&1));
}

#[test]
fn dequantize_moves_below_flatten_squeeze_unsqueeze() {
    check(
        r#"
func @main(%x: i8[2,1,3] q(0.25, -3)) -> f32[1,6] {
  %d = dequantize %x : f32[2,1,3]
  %s = squeeze %d {axes=[1]} : f32[2,3]
  %u = unsqueeze %s {axes=[0]} : f32[1,2,3]
  %f = flatten %u {axis=1} : f32[1,6]
  return %f
}
"#,
        &[
            "dequantize-squeeze",
            "dequantize-unsqueeze",
            "dequantize-flatten",
        ],
        r#"
func @main(%x: i8[2,1,3] q(0.25, -3)) -> f32[1,6] {
  %s = squeeze %x {axes=[1]} : i8[2,3] q(0.25, -3)
  %u = unsqueeze %s {axes=[0]} : i8[1,2,3] q(0.25, -3)
  %g = flatten %u {axis=1} : i8[1,6] q(0.25, -3)
  %f = dequantize %g : f32[1,6]
  return %f
}
"#,
        0.0,
    );
}

#[test]
fn per_axis_params_follow_a_transpose() {
    check(
        r#"
func @main(%x: i8[2,3] q(axis=0, [0.5, 0.25], [0, 1])) -> f32[3,2] {
  %d = dequantize %x : f32[2,3]
  %t = transpose %d {perm=[1,0]} : f32[3,2]
  return %t
}
"#,
        &["dequantize-transpose"],
        r#"
func @main(%x: i8[2,3] q(axis=0, [0.5, 0.25], [0, 1])) -> f32[3,2] {
  %m = transpose %x {perm=[1,0]} : i8[3,2] q(axis=1, [0.5, 0.25], [0, 1])
  %t = dequantize %m : f32[3,2]
  return %t
}
"#,
        0.0,
    );
}

#[test]
fn quantize_of_dequantize() {
    // Equal params: the identity.
    check(
        r#"
func @main(%x: u8[4] q(0.5, 128)) -> u8[4] q(0.5, 128) {
  %d = dequantize %x : f32[4]
  %q = quantize %d : u8[4] q(0.5, 128)
  return %q
}
"#,
        &["quantize-dequantize-identity"],
        r#"
func @main(%x: u8[4] q(0.5, 128)) -> ("q": u8[4] q(0.5, 128)) {
  return %x
}
"#,
        0.0,
    );
    // Other params: a requantize (by definition the same computation).
    check(
        r#"
func @main(%x: u8[4] q(0.5, 128)) -> i8[4] q(0.3, -2) {
  %d = dequantize %x : f32[4]
  %q = quantize %d : i8[4] q(0.3, -2) loc("q")
  return %q
}
"#,
        &["quantize-dequantize-requantize"],
        r#"
func @main(%x: u8[4] q(0.5, 128)) -> i8[4] q(0.3, -2) {
  %q = requantize %x : i8[4] q(0.3, -2) loc("q")
  return %q
}
"#,
        0.0,
    );
}

#[test]
fn dq_reshape_q_becomes_a_quantized_reshape() {
    check(
        r#"
func @main(%x: u8[2,3] q(0.5, 128)) -> u8[6] q(0.5, 128) {
  %d = dequantize %x : f32[2,3]
  %r = reshape %d {shape=[6]} : f32[6] loc("rs")
  %q = quantize %r : u8[6] q(0.5, 128)
  return %q
}
"#,
        &[],
        r#"
func @main(%x: u8[2,3] q(0.5, 128)) -> u8[6] q(0.5, 128) {
  %q = reshape %x {shape=[6]} : u8[6] q(0.5, 128) loc("rs")
  return %q
}
"#,
        0.0,
    );
}

#[test]
fn i32_storage_does_not_round_trip_and_stays() {
    // quantize(dequantize(q)) = q is not guaranteed for 32-bit codes.
    unchanged(
        r#"
func @main(%x: i32[4] q(0.5, 0)) -> i32[4] q(0.5, 0) {
  %d = dequantize %x : f32[4]
  %q = quantize %d : i32[4] q(0.5, 0)
  return %q
}
"#,
        &["quantize-dequantize-identity"],
    );
}

#[test]
fn concat_with_equal_params() {
    check(
        r#"
func @main(%a: u8[1,2] q(0.5, 128), %b: u8[1,3] q(0.5, 128)) -> f32[1,5] {
  %da = dequantize %a : f32[1,2] loc("dqa")
  %db = dequantize %b : f32[1,3] loc("dqb")
  %c = concat %da, %db {axis=1} : f32[1,5] loc("cat")
  return %c
}
"#,
        &["dequantize-concat"],
        r#"
func @main(%a: u8[1,2] q(0.5, 128), %b: u8[1,3] q(0.5, 128)) -> f32[1,5] {
  %m = concat %a, %b {axis=1} : u8[1,5] q(0.5, 128) loc("cat")
  %c = dequantize %m : f32[1,5] loc("dqa")
  return %c
}
"#,
        0.0,
    );
}

#[test]
fn concat_with_unequal_params_requantizes_operands() {
    let out = check(
        r#"
func @main(%a: u8[1,2] q(0.5, 128), %b: u8[1,2] q(0.25, 10)) -> u8[1,4] q(0.5, 128) {
  %da = dequantize %a : f32[1,2]
  %db = dequantize %b : f32[1,2]
  %c = concat %da, %db {axis=1} : f32[1,4] loc("cat")
  %q = quantize %c : u8[1,4] q(0.5, 128) loc("q")
  return %q
}
"#,
        &[],
        r#"
func @main(%a: u8[1,2] q(0.5, 128), %b: u8[1,2] q(0.25, 10)) -> u8[1,4] q(0.5, 128) {
  %rb = requantize %b : u8[1,2] q(0.5, 128) loc("q")
  %q = concat %a, %rb {axis=1} : u8[1,4] q(0.5, 128) loc("cat")
  return %q
}
"#,
        0.0,
    );
    let fired = &out.report.fired;
    assert_eq!(fired.get("quantize-concat"), Some(&1), "{fired:?}");
    assert_eq!(
        fired.get("quantize-dequantize-identity"),
        Some(&1),
        "{fired:?}"
    );
    assert_eq!(
        fired.get("quantize-dequantize-requantize"),
        Some(&1),
        "{fired:?}"
    );
}

#[test]
fn max_pool_and_global_max_pool() {
    check(
        r#"
func @main(%x: u8[1,2,4,4] q(0.1, 3)) -> (f32[1,2,2,2], f32[1,2,1,1]) {
  %d = dequantize %x : f32[1,2,4,4]
  %p = max_pool %d {kernel=[3,3], strides=[2,2], pads=[1,1,0,0]} : f32[1,2,2,2]
  %g = global_max_pool %d : f32[1,2,1,1]
  return %p, %g
}
"#,
        &["dequantize-max-pool", "dequantize-global-max-pool"],
        r#"
func @main(%x: u8[1,2,4,4] q(0.1, 3)) -> (f32[1,2,2,2], f32[1,2,1,1]) {
  %mp = max_pool %x {kernel=[3,3], strides=[2,2], pads=[1,1,0,0]} : u8[1,2,2,2] q(0.1, 3)
  %p = dequantize %mp : f32[1,2,2,2]
  %mg = global_max_pool %x : u8[1,2,1,1] q(0.1, 3)
  %g = dequantize %mg : f32[1,2,1,1]
  return %p, %g
}
"#,
        0.0,
    );
}

#[test]
fn max_pool_with_a_window_in_the_padding_stays() {
    // pads 2 >= kernel 2: the first window sees only padding (-inf in float).
    unchanged(
        r#"
func @main(%x: u8[1,1,3,3] q(0.1, 3)) -> f32[1,1,5,5] {
  %d = dequantize %x : f32[1,1,3,3]
  %p = max_pool %d {kernel=[2,2], pads=[2,2,1,1]} : f32[1,1,5,5]
  return %p
}
"#,
        &["dequantize-max-pool"],
    );
}

#[test]
fn pad_with_zero_and_with_an_unrepresentable_value() {
    // 0 quantizes to the zero point: exact. (A lone dequantize is cheaper before the
    // pad than after it; the quantize behind makes moving it pay.)
    check(
        r#"
func @main(%x: u8[1,1,2,2] q(0.5, 7)) -> u8[1,1,4,4] q(0.5, 7) {
  %d = dequantize %x : f32[1,1,2,2]
  %p = pad %d {pads=[0,0,1,1,0,0,1,1]} : f32[1,1,4,4]
  %q = quantize %p : u8[1,1,4,4] q(0.5, 7)
  return %q
}
"#,
        &["dequantize-pad", "quantize-dequantize-identity"],
        r#"
func @main(%x: u8[1,1,2,2] q(0.5, 7)) -> u8[1,1,4,4] q(0.5, 7) {
  %q = pad %x {pads=[0,0,1,1,0,0,1,1]} : u8[1,1,4,4] q(0.5, 7)
  return %q
}
"#,
        0.0,
    );
    // 0.3 is not a multiple of 0.5: the quantized pad would write 0.5 instead.
    unchanged(
        r#"
func @main(%x: u8[1,1,2,2] q(0.5, 7)) -> u8[1,1,4,4] q(0.5, 7) {
  %d = dequantize %x : f32[1,1,2,2]
  %p = pad %d {pads=[0,0,1,1,0,0,1,1], value=0.3} : f32[1,1,4,4]
  %q = quantize %p : u8[1,1,4,4] q(0.5, 7)
  return %q
}
"#,
        &["dequantize-pad", "quantize-dequantize-identity"],
    );
}

#[test]
fn relu_and_clip_on_dequantized_values() {
    check(
        r#"
func @main(%x: i8[8] q(0.5, 1)) -> (f32[8], f32[8]) {
  %d = dequantize %x : f32[8]
  %r = relu %d : f32[8]
  %c = clip %d {min=-1.0, max=1000.0} : f32[8]
  return %r, %c
}
"#,
        &["dequantize-relu", "dequantize-clip"],
        r#"
func @main(%x: i8[8] q(0.5, 1)) -> (f32[8], f32[8]) {
  %mr = relu %x : i8[8] q(0.5, 1)
  %r = dequantize %mr : f32[8]
  %mc = clip %x {min=-1.0, max=1000.0} : i8[8] q(0.5, 1)
  %c = dequantize %mc : f32[8]
  return %r, %c
}
"#,
        0.0,
    );
    // A bound between two codes (0.25 with scale 0.5) would be rounded: stays.
    unchanged(
        r#"
func @main(%x: i8[8] q(0.5, 1)) -> f32[8] {
  %d = dequantize %x : f32[8]
  %c = clip %d {min=0.25} : f32[8]
  return %c
}
"#,
        &["dequantize-clip"],
    );
}

#[test]
fn dq_op_q_becomes_the_quantized_op() {
    check(
        r#"
func @main(%a: u8[2,3] q(0.5, 128), %b: u8[3] q(0.25, 0)) -> (u8[2,3] q(0.1, 0), i8[2,3] q(0.01, 0)) {
  %da = dequantize %a : f32[2,3]
  %db = dequantize %b : f32[3]
  %s = add %da, %db {act=relu} : f32[2,3] loc("add")
  %qs = quantize %s : u8[2,3] q(0.1, 0)
  %g = sigmoid %da : f32[2,3] loc("sig")
  %qg = quantize %g : i8[2,3] q(0.01, 0)
  return %qs, %qg
}
"#,
        &["quantize-op"],
        r#"
func @main(%a: u8[2,3] q(0.5, 128), %b: u8[3] q(0.25, 0)) -> (u8[2,3] q(0.1, 0), i8[2,3] q(0.01, 0)) {
  %qs = add %a, %b {act=relu} : u8[2,3] q(0.1, 0) loc("add")
  %qg = sigmoid %a : i8[2,3] q(0.01, 0) loc("sig")
  return %qs, %qg
}
"#,
        0.0,
    );
}

#[test]
fn batch_norm_on_a_dequantized_input_keeps_raw_parameters() {
    check(
        r#"
#s = const f32[2] [1, 2]
#bi = const f32[2] [0, 1]
#m = const f32[2] [0.5, 0]
#v = const f32[2] [1, 4]
func @main(%x: u8[1,2,2] q(0.1, 100)) -> u8[1,2,2] q(0.2, 50) {
  %d = dequantize %x : f32[1,2,2]
  %n = batch_norm %d, #s, #bi, #m, #v {epsilon=0.0} : f32[1,2,2] loc("bn")
  %q = quantize %n : u8[1,2,2] q(0.2, 50)
  return %q
}
"#,
        &["quantize-op"],
        r#"
#s = const f32[2] [1, 2]
#bi = const f32[2] [0, 1]
#m = const f32[2] [0.5, 0]
#v = const f32[2] [1, 4]
func @main(%x: u8[1,2,2] q(0.1, 100)) -> u8[1,2,2] q(0.2, 50) {
  %q = batch_norm %x, #s, #bi, #m, #v {epsilon=0.0} : u8[1,2,2] q(0.2, 50) loc("bn")
  return %q
}
"#,
        0.0,
    );
}

const FLOAT_BETWEEN: &str = r#"
#k = const f32[3] [0.5, 2, -1]
func @main(%a: u8[3] q(0.5, 128)) -> u8[3] q(0.1, 0) {
  %d = dequantize %a : f32[3]
  %m = mul %d, #k : f32[3] loc("scale")
  %q = quantize %m : u8[3] q(0.1, 0)
  return %q
}
"#;

#[test]
fn float_op_with_a_float_constant_stays_and_is_reported() {
    let out = unchanged(FLOAT_BETWEEN, &[]);
    assert_eq!(
        out.report.float_ops_between_qdq,
        vec!["mul 'scale'".to_string()]
    );

    let mut g = parse(FLOAT_BETWEEN);
    let mut cx = PassCx::default();
    EggPass.run(&mut g, &mut cx).unwrap();
    assert_eq!(cx.remarks.len(), 1, "{:?}", cx.remarks);
    assert!(cx.remarks[0].contains("mul 'scale'"), "{:?}", cx.remarks);
    let stat = cx.stats.iter().find(|(k, _)| k == "float-ops-between-qdq");
    assert_eq!(stat.map(|(_, v)| v.as_str()), Some("1"));
}

#[test]
fn linear_ops_between_dq_and_q_are_left_to_canonicalize() {
    // Not equal to the quantized conv (integer accumulation): no rule applies.
    let out = run(
        &parse(
            r#"
#w = const i8[1,1,1,1] [3]
func @main(%x: u8[1,1,2,2] q(0.5, 128)) -> u8[1,1,2,2] q(0.1, 0) {
  %wq = const #w : i8[1,1,1,1] q(0.02, 0)
  %dx = dequantize %x : f32[1,1,2,2]
  %dw = dequantize %wq : f32[1,1,1,1]
  %c = conv %dx, %dw {kernel=[1,1]} : f32[1,1,2,2]
  %q = quantize %c : u8[1,1,2,2] q(0.1, 0)
  return %q
}
"#,
        ),
        &[],
    );
    assert!(out.report.fired.is_empty(), "{:?}", out.report.fired);
    assert_eq!(
        out.report.float_ops_between_qdq,
        vec!["conv ''".to_string()]
    );
}
