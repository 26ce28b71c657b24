//! The fusion rules, before ⇒ after, each through the interpreter too.
//! Expected weights are computed by hand in the comments.

#![allow(clippy::panic, clippy::unwrap_used)]

mod egg_support;

use egg_support::{check, op_counts, parse, run, same_outputs, unchanged};

#[test]
fn conv_batch_norm_with_zero_variance_plus_epsilon() {
    // k = s / sqrt(var + eps): channel 0: 2 / sqrt(0 + 1) = 2 (zero variance),
    // channel 1: 3 / sqrt(3 + 1) = 1.5.
    // w' = w * k: [1, 2] * 2 = [2, 4]; [3, 4] * 1.5 = [4.5, 6].
    // b' = (b - mean) * k + bias: (0.5 - 0.5) * 2 + 1 = 1; (-1 - 1) * 1.5 + 0 = -3.
    let out = check(
        r#"
#w = const f32[2,2,1,1] [1, 2, 3, 4]
#b = const f32[2] [0.5, -1]
#s = const f32[2] [2, 3]
#bi = const f32[2] [1, 0]
#m = const f32[2] [0.5, 1]
#v = const f32[2] [0, 3]
func @main(%x: f32[1,2,3,3]) -> f32[1,2,3,3] {
  %c = conv %x, #w, #b {kernel=[1,1]} : f32[1,2,3,3] loc("conv1")
  %n = batch_norm %c, #s, #bi, #m, #v {epsilon=1.0} : f32[1,2,3,3] loc("bn1")
  return %n
}
"#,
        &["fold-conv-batch-norm"],
        r#"
#w = const f32[2,2,1,1] [2, 4, 4.5, 6]
#b = const f32[2] [1, -3]
func @main(%x: f32[1,2,3,3]) -> f32[1,2,3,3] {
  %n = conv %x, #w, #b {kernel=[1,1]} : f32[1,2,3,3] loc("conv1")
  return %n
}
"#,
        1e-5,
    );
    assert_eq!(out.report.fired.get("fold-conv-batch-norm"), Some(&1));
}

#[test]
fn conv_without_bias_gets_one_from_batch_norm() {
    // k = 1 / sqrt(0.25 + 0) = 2 for both channels; b' = (0 - mean) * 2 + bias.
    check(
        r#"
#w = const f32[2,1,1,1] [1, -1]
#s = const f32[2] [1, 1]
#bi = const f32[2] [0.5, 0]
#m = const f32[2] [1, -2]
#v = const f32[2] [0.25, 0.25]
func @main(%x: f32[1,1,2,2]) -> f32[1,2,2,2] {
  %c = conv %x, #w {kernel=[1,1]} : f32[1,2,2,2]
  %n = batch_norm %c, #s, #bi, #m, #v {epsilon=0.0} : f32[1,2,2,2]
  return %n
}
"#,
        &["fold-conv-batch-norm"],
        r#"
#w = const f32[2,1,1,1] [2, -2]
#b = const f32[2] [-1.5, 4]
func @main(%x: f32[1,1,2,2]) -> f32[1,2,2,2] {
  %n = conv %x, #w, #b {kernel=[1,1]} : f32[1,2,2,2]
  return %n
}
"#,
        1e-5,
    );
}

#[test]
fn batch_norm_with_zero_variance_and_zero_epsilon_is_not_folded() {
    unchanged(
        r#"
#w = const f32[1,1,1,1] [1]
#s = const f32[1] [1]
#bi = const f32[1] [0]
#m = const f32[1] [0]
#v = const f32[1] [0]
func @main(%x: f32[1,1,2,2]) -> f32[1,1,2,2] {
  %c = conv %x, #w {kernel=[1,1]} : f32[1,1,2,2]
  %n = batch_norm %c, #s, #bi, #m, #v {epsilon=0.0} : f32[1,1,2,2]
  return %n
}
"#,
        &["fold-conv-batch-norm"],
    );
}

#[test]
fn batch_norm_after_a_conv_with_another_user_is_not_folded() {
    // Folding would compute the conv twice (once for %c's other user).
    unchanged(
        r#"
#w = const f32[1,1,1,1] [1]
#s = const f32[1] [2]
#bi = const f32[1] [0]
#m = const f32[1] [0]
#v = const f32[1] [1]
func @main(%x: f32[1,1,2,2]) -> (f32[1,1,2,2], f32[1,1,2,2]) {
  %c = conv %x, #w {kernel=[1,1]} : f32[1,1,2,2]
  %n = batch_norm %c, #s, #bi, #m, #v {epsilon=0.0} : f32[1,1,2,2]
  return %n, %c
}
"#,
        &["fold-conv-batch-norm"],
    );
}

#[test]
fn gemm_batch_norm() {
    // gemm: A[2,3] x B[3,2] + C[2] with beta 2; BN over the 2 columns, eps 1:
    // k0 = 2 / sqrt(3 + 1) = 1, k1 = 4 / sqrt(3 + 1) = 2.
    // B' = B * k along columns: [[1, 2], [3, 4], [5, 6]] -> [[1, 4], [3, 8], [5, 12]].
    // C' = (beta * C - mean) * k + bias = (2 * [1, -1] - [1, 0]) * [1, 2] + [0.5, 1]
    //    = [1, -2] * [1, 2] + [0.5, 1] = [1.5, -3]; the new gemm has beta 1.
    check(
        r#"
#b = const f32[3,2] [1, 2, 3, 4, 5, 6]
#c = const f32[2] [1, -1]
#s = const f32[2] [2, 4]
#bi = const f32[2] [0.5, 1]
#m = const f32[2] [1, 0]
#v = const f32[2] [3, 3]
func @main(%a: f32[2,3]) -> f32[2,2] {
  %g = gemm %a, #b, #c {beta=2.0} : f32[2,2]
  %n = batch_norm %g, #s, #bi, #m, #v {epsilon=1.0} : f32[2,2]
  return %n
}
"#,
        &["fold-gemm-batch-norm"],
        r#"
#b = const f32[3,2] [1, 4, 3, 8, 5, 12]
#c = const f32[2] [1.5, -3]
func @main(%a: f32[2,3]) -> f32[2,2] {
  %n = gemm %a, #b, #c : f32[2,2]
  return %n
}
"#,
        1e-5,
    );
}

#[test]
fn transposed_gemm_batch_norm_scales_rows_of_b() {
    // trans_b: B is [N, K] = [[1, 1], [2, 2]]; k = [1, 0.5] (scale [1, 1],
    // var [0.75, 3.75], eps 0.25); B' rows scaled: [[1, 1], [1, 1]];
    // no C: C' = -mean * k + bias = [-(2) * 1 + 0, -(4) * 0.5 + 1] = [-2, -1].
    check(
        r#"
#b = const f32[2,2] [1, 1, 2, 2]
#s = const f32[2] [1, 1]
#bi = const f32[2] [0, 1]
#m = const f32[2] [2, 4]
#v = const f32[2] [0.75, 3.75]
func @main(%a: f32[3,2]) -> f32[3,2] {
  %g = gemm %a, #b {trans_b=true} : f32[3,2]
  %n = batch_norm %g, #s, #bi, #m, #v {epsilon=0.25} : f32[3,2]
  return %n
}
"#,
        &["fold-gemm-batch-norm"],
        r#"
#b = const f32[2,2] [1, 1, 1, 1]
#c = const f32[2] [-2, -1]
func @main(%a: f32[3,2]) -> f32[3,2] {
  %n = gemm %a, #b, #c {trans_b=true} : f32[3,2]
  return %n
}
"#,
        1e-5,
    );
}

const CONV_ACT: &str = r#"
#w = const f32[2,1,1,1] [1, -2]
func @main(%x: f32[1,1,2,2]) -> f32[1,2,2,2] {
  %c = conv %x, #w {kernel=[1,1]} : f32[1,2,2,2] loc("c")
  %r = OP %c ATTRS : f32[1,2,2,2] loc("r")
  return %r
}
"#;

fn conv_act(op: &str, attrs: &str, fused: &str, rule: &str) {
    check(
        &CONV_ACT.replace("OP", op).replace("ATTRS", attrs),
        &[rule],
        &format!(
            r#"
#w = const f32[2,1,1,1] [1, -2]
func @main(%x: f32[1,1,2,2]) -> f32[1,2,2,2] {{
  %r = conv %x, #w {{kernel=[1,1], {fused}}} : f32[1,2,2,2] loc("c")
  return %r
}}
"#
        ),
        0.0,
    );
}

#[test]
fn conv_relu() {
    conv_act("relu", "", "act=relu", "fuse-conv-relu");
}

#[test]
fn conv_relu6_as_clip() {
    conv_act(
        "clip",
        "{min=0.0, max=6.0}",
        "act=clip(0.0, 6.0)",
        "fuse-conv-clip",
    );
}

#[test]
fn conv_clip_with_one_bound() {
    // A missing upper bound is +inf; clip(0, inf) is relu.
    conv_act("clip", "{min=0.0}", "act=relu", "fuse-conv-clip");
    conv_act("clip", "{max=1.5}", "act=clip(-inf, 1.5)", "fuse-conv-clip");
}

#[test]
fn existing_activation_composes() {
    // relu then clip(-1, 6): clamp to [max(0, -1), 6] = [0, 6].
    check(
        r#"
#w = const f32[2,1,1,1] [1, -2]
func @main(%x: f32[1,1,2,2]) -> f32[1,2,2,2] {
  %c = conv %x, #w {kernel=[1,1], act=relu} : f32[1,2,2,2]
  %r = clip %c {min=-1.0, max=6.0} : f32[1,2,2,2]
  return %r
}
"#,
        &["fuse-conv-clip"],
        r#"
#w = const f32[2,1,1,1] [1, -2]
func @main(%x: f32[1,1,2,2]) -> f32[1,2,2,2] {
  %r = conv %x, #w {kernel=[1,1], act=clip(0.0, 6.0)} : f32[1,2,2,2]
  return %r
}
"#,
        0.0,
    );
    // clip(-3, -1) then relu is the constant 0: not an activation, left alone.
    unchanged(
        r#"
#w = const f32[2,1,1,1] [1, -2]
func @main(%x: f32[1,1,2,2]) -> f32[1,2,2,2] {
  %c = conv %x, #w {kernel=[1,1], act=clip(-3.0, -1.0)} : f32[1,2,2,2]
  %r = relu %c : f32[1,2,2,2]
  return %r
}
"#,
        &["fuse-conv-relu"],
    );
}

#[test]
fn relu_of_a_shared_producer_stays() {
    unchanged(
        r#"
#w = const f32[2,1,1,1] [1, -2]
func @main(%x: f32[1,1,2,2]) -> (f32[1,2,2,2], f32[1,2,2,2]) {
  %c = conv %x, #w {kernel=[1,1]} : f32[1,2,2,2]
  %r = relu %c : f32[1,2,2,2]
  return %r, %c
}
"#,
        &["fuse-conv-relu"],
    );
}

#[test]
fn add_matmul_gemm_conv_transpose_take_activations() {
    check(
        r#"
#b = const f32[3,2] [1, -1, 2, -2, 3, -3]
#wt = const f32[1,2,2,2] [1, 2, 3, 4, -1, -2, -3, -4]
func @main(%x: f32[2,3], %y: f32[2,2], %z: f32[1,1,2,2]) -> (f32[2,2], f32[2,2], f32[1,2,3,3]) {
  %m = matmul %x, #b : f32[2,2]
  %mr = relu %m : f32[2,2]
  %a = add %mr, %y : f32[2,2]
  %ar = clip %a {min=0.0, max=6.0} : f32[2,2]
  %g = gemm %x, #b : f32[2,2]
  %gr = relu %g : f32[2,2]
  %t = conv_transpose %z, #wt {kernel=[2,2]} : f32[1,2,3,3]
  %tr = relu %t : f32[1,2,3,3]
  return %ar, %gr, %tr
}
"#,
        &[
            "fuse-matmul-relu",
            "fuse-add-clip",
            "fuse-gemm-relu",
            "fuse-conv-transpose-relu",
        ],
        r#"
#b = const f32[3,2] [1, -1, 2, -2, 3, -3]
#wt = const f32[1,2,2,2] [1, 2, 3, 4, -1, -2, -3, -4]
func @main(%x: f32[2,3], %y: f32[2,2], %z: f32[1,1,2,2]) -> (f32[2,2], f32[2,2], f32[1,2,3,3]) {
  // One value for #b: the e-graph shares equal constant values.
  %bv = const #b
  %m = matmul %x, %bv {act=relu} : f32[2,2]
  %ar = add %m, %y {act=clip(0.0, 6.0)} : f32[2,2]
  %gr = gemm %x, %bv {act=relu} : f32[2,2]
  %tr = conv_transpose %z, #wt {kernel=[2,2], act=relu} : f32[1,2,3,3]
  return %ar, %gr, %tr
}
"#,
        0.0,
    );
}

#[test]
fn matmul_plus_bias_is_gemm() {
    for body in ["%s = add %m, #c : f32[2,2]", "%s = add #c, %m : f32[2,2]"] {
        let out = check(
            &format!(
                r#"
#b = const f32[3,2] [1, -1, 2, -2, 3, -3]
#c = const f32[2] [0.5, -0.5]
func @main(%x: f32[2,3]) -> f32[2,2] {{
  %m = matmul %x, #b : f32[2,2] loc("mm")
  {body}
  return %s
}}
"#
            ),
            &["matmul-add-to-gemm", "add-matmul-to-gemm"],
            r#"
#b = const f32[3,2] [1, -1, 2, -2, 3, -3]
#c = const f32[2] [0.5, -0.5]
func @main(%x: f32[2,3]) -> f32[2,2] {
  %s = gemm %x, #b, #c : f32[2,2] loc("mm")
  return %s
}
"#,
            1e-6,
        );
        assert_eq!(out.report.fired.values().sum::<usize>(), 1);
    }
}

#[test]
fn matmul_plus_a_non_constant_or_a_batched_matmul_stays() {
    unchanged(
        r#"
#b = const f32[3,2] [1, -1, 2, -2, 3, -3]
func @main(%x: f32[2,3], %c: f32[2]) -> f32[2,2] {
  %m = matmul %x, #b : f32[2,2]
  %s = add %m, %c : f32[2,2]
  return %s
}
"#,
        &["matmul-add-to-gemm"],
    );
    unchanged(
        r#"
#b = const f32[3,2] [1, -1, 2, -2, 3, -3]
#c = const f32[2] [0.5, -0.5]
func @main(%x: f32[4,2,3]) -> f32[4,2,2] {
  %m = matmul %x, #b : f32[4,2,2]
  %s = add %m, #c : f32[4,2,2]
  return %s
}
"#,
        &["matmul-add-to-gemm"],
    );
}

#[test]
fn sum_of_two_is_add() {
    check(
        r#"
func @main(%x: f32[2,3], %y: f32[3]) -> f32[2,3] {
  %s = sum %x, %y : f32[2,3] loc("s")
  return %s
}
"#,
        &["sum-to-add"],
        r#"
func @main(%x: f32[2,3], %y: f32[3]) -> f32[2,3] {
  %s = add %x, %y : f32[2,3] loc("s")
  return %s
}
"#,
        0.0,
    );
}

#[test]
fn per_channel_mul_and_add_fold_into_the_conv() {
    // The light DenseNet / Inception-v2 pattern: mul by unsqueeze(const), then add.
    // The unsqueeze of a constant folds (analysis); mul by [2, 0.5] per channel:
    // w [1, -2] -> [2, -1], b [1, 4] -> [2, 2]; then + [1, -1]: b -> [3, 1], and
    // the add's relu moves onto the conv.
    let out = check(
        r#"
#w = const f32[2,1,1,1] [1, -2]
#b = const f32[2] [1, 4]
#k = const f32[2] [2, 0.5]
#t = const f32[1,2,1,1] [1, -1]
func @main(%x: f32[1,1,2,2]) -> f32[1,2,2,2] {
  %c = conv %x, #w, #b {kernel=[1,1]} : f32[1,2,2,2]
  %u = unsqueeze #k {axes=[1,2]} : f32[2,1,1]
  %m = mul %u, %c : f32[1,2,2,2]
  %a = add %m, #t {act=relu} : f32[1,2,2,2]
  return %a
}
"#,
        &[
            "fold-conv-mul-channel",
            "fold-channel-mul-conv",
            "fold-conv-add-channel",
        ],
        r#"
#w = const f32[2,1,1,1] [2, -1]
#b = const f32[2] [3, 1]
func @main(%x: f32[1,1,2,2]) -> f32[1,2,2,2] {
  %a = conv %x, #w, #b {kernel=[1,1], act=relu} : f32[1,2,2,2]
  return %a
}
"#,
        1e-6,
    );
    assert_eq!(out.report.fired.get("fold-channel-mul-conv"), Some(&1));
    assert_eq!(out.report.fired.get("fold-conv-add-channel"), Some(&1));
}

#[test]
fn mul_by_a_non_channel_constant_stays() {
    // [2] along the last axis is per column, not per channel.
    unchanged(
        r#"
#w = const f32[2,1,1,1] [1, -2]
#k = const f32[2] [2, 0.5]
func @main(%x: f32[1,1,2,2]) -> f32[1,2,2,2] {
  %c = conv %x, #w {kernel=[1,1]} : f32[1,2,2,2]
  %m = mul %c, #k : f32[1,2,2,2]
  return %m
}
"#,
        &["fold-conv-mul-channel"],
    );
}

#[test]
fn conv_batch_norm_relu_chain_with_all_rules() {
    // A 3x3 conv (with padding and groups) + BN + relu6, the MobileNet shape,
    // with every rule enabled: one conv with act=clip(0, 6) remains.
    let w: Vec<String> = (0..36)
        .map(|i| format!("{}", ((i * 7) % 11) as f32 / 8.0 - 0.6))
        .collect();
    let text = format!(
        r#"
#w = const f32[4,1,3,3] [{}]
#s = const f32[4] [1.5, 0.5, -1, 2]
#bi = const f32[4] [0.1, 0.2, 0.3, -0.4]
#m = const f32[4] [0.05, -0.1, 0.2, 0]
#v = const f32[4] [0, 1, 2, 0.5]
func @main(%x: f32[1,4,5,5]) -> f32[1,4,5,5] {{
  %c = conv %x, #w {{kernel=[3,3], pads=[1,1,1,1], group=4}} : f32[1,4,5,5]
  %n = batch_norm %c, #s, #bi, #m, #v {{epsilon=0.001}} : f32[1,4,5,5]
  %r = clip %n {{min=0.0, max=6.0}} : f32[1,4,5,5]
  return %r
}}
"#,
        w.join(", ")
    );
    let g = parse(&text);
    let out = run(&g, &[]);
    let counts = op_counts(&out.graph);
    assert_eq!(counts.get("conv"), Some(&1), "{counts:?}");
    assert_eq!(counts.len(), 1, "{counts:?}");
    let conv = &out.graph.nodes[0].op;
    assert_eq!(
        conv.activation(),
        Some(qc_ir::Activation::Clip { min: 0.0, max: 6.0 })
    );
    same_outputs(&g, &out.graph, 1e-5);
}

#[test]
fn per_channel_mul_and_add_fold_into_a_batch_norm() {
    // DenseNet's pre-activation BatchNorm, then mul/add by unsqueezed constants:
    // s' = s * k = [1 * 2, 2 * -1] = [2, -2];
    // beta' = beta * k + t = [0.5 * 2 + 1, -1 * -1 + 0.25] = [2, 1.25].
    check(
        r#"
#s = const f32[2] [1, 2]
#bi = const f32[2] [0.5, -1]
#m = const f32[2] [0, 1]
#v = const f32[2] [1, 3]
#k = const f32[2] [2, -1]
#t = const f32[2,1,1] [1, 0.25]
func @main(%x: f32[1,2,2,2]) -> f32[1,2,2,2] {
  %n = batch_norm %x, #s, #bi, #m, #v {epsilon=1.0} : f32[1,2,2,2] loc("bn")
  %u = unsqueeze #k {axes=[1,2]} : f32[2,1,1]
  %p = mul %n, %u : f32[1,2,2,2]
  %a = add #t, %p : f32[1,2,2,2]
  %r = relu %a : f32[1,2,2,2]
  return %r
}
"#,
        &[],
        r#"
#s = const f32[2] [2, -2]
#bi = const f32[2] [2, 1.25]
#m = const f32[2] [0, 1]
#v = const f32[2] [1, 3]
func @main(%x: f32[1,2,2,2]) -> f32[1,2,2,2] {
  %n = batch_norm %x, #s, #bi, #m, #v {epsilon=1.0} : f32[1,2,2,2] loc("bn")
  %r = relu %n : f32[1,2,2,2]
  return %r
}
"#,
        1e-5,
    );
}

#[test]
fn every_producer_takes_relu_and_clip() {
    // (producer line, result type, rule prefix) for each producer with a fused
    // activation; both activations, each alone through its rule and the interpreter.
    let producers = [
        ("conv %x4, #w4 {kernel=[1,1]}", "f32[1,2,2,2]", "conv"),
        (
            "conv_transpose %x4, #wt {kernel=[1,1]}",
            "f32[1,2,2,2]",
            "conv-transpose",
        ),
        ("gemm %x2, #b2", "f32[2,2]", "gemm"),
        ("matmul %x2, #b2", "f32[2,2]", "matmul"),
        ("add %x2, %y2", "f32[2,2]", "add"),
    ];
    let acts = [
        ("relu", "", "act=relu", "relu"),
        ("clip", "{min=-0.5, max=0.5}", "act=clip(-0.5, 0.5)", "clip"),
    ];
    for (prod, ty, prefix) in producers {
        for (op, attrs, act, suffix) in acts {
            let header = r#"
#w4 = const f32[2,1,1,1] [1, -2]
#wt = const f32[1,2,1,1] [0.5, -3]
#b2 = const f32[2,2] [1, -1, 0.25, 2]
"#;
            let sig =
                format!("func @main(%x4: f32[1,1,2,2], %x2: f32[2,2], %y2: f32[2,2]) -> {ty} {{");
            let before = format!(
                "{header}{sig}\n  %p = {prod} : {ty}\n  %r = {op} %p {attrs} : {ty}\n  return %r\n}}\n"
            );
            let fused = if prod.contains('{') {
                prod.replace('}', &format!(", {act}}}"))
            } else {
                format!("{prod} {{{act}}}")
            };
            let after = format!("{header}{sig}\n  %r = {fused} : {ty}\n  return %r\n}}\n");
            let rule = format!("fuse-{prefix}-{suffix}");
            check(&before, &[rule.as_str()], &after, 0.0);
        }
    }
}

#[test]
fn mirrored_channel_folds() {
    // conv * c (conv on the left) and c + conv (constant on the left).
    check(
        r#"
#w = const f32[2,1,1,1] [1, -2]
#k = const f32[1,2,1,1] [3, 0.5]
#t = const f32[2,1,1] [1, -1]
func @main(%x: f32[1,1,2,2]) -> f32[1,2,2,2] {
  %c = conv %x, #w {kernel=[1,1]} : f32[1,2,2,2]
  %m = mul %c, #k : f32[1,2,2,2]
  %a = add #t, %m : f32[1,2,2,2]
  return %a
}
"#,
        &["fold-conv-mul-channel", "fold-channel-add-conv"],
        r#"
#w = const f32[2,1,1,1] [3, -1]
#b = const f32[2] [1, -1]
func @main(%x: f32[1,1,2,2]) -> f32[1,2,2,2] {
  %a = conv %x, #w, #b {kernel=[1,1]} : f32[1,2,2,2]
  return %a
}
"#,
        1e-6,
    );
    // c * batch_norm and batch_norm + c: s' = [2, 1] * [3, 0.5] = [6, 0.5];
    // beta' = [1, 1] * [3, 0.5] + [1, -1] = [4, -0.5].
    check(
        r#"
#s = const f32[2] [2, 1]
#bi = const f32[2] [1, 1]
#m = const f32[2] [0, 0]
#v = const f32[2] [1, 1]
#k = const f32[1,2,1,1] [3, 0.5]
#t = const f32[2,1,1] [1, -1]
func @main(%x: f32[1,2,2,2]) -> f32[1,2,2,2] {
  %n = batch_norm %x, #s, #bi, #m, #v {epsilon=0.0} : f32[1,2,2,2]
  %p = mul #k, %n : f32[1,2,2,2]
  %a = add %p, #t : f32[1,2,2,2]
  return %a
}
"#,
        &["fold-channel-mul-batch-norm", "fold-batch-norm-add-channel"],
        r#"
#s = const f32[2] [6, 0.5]
#bi = const f32[2] [4, -0.5]
#m = const f32[2] [0, 0]
#v = const f32[2] [1, 1]
func @main(%x: f32[1,2,2,2]) -> f32[1,2,2,2] {
  %a = batch_norm %x, #s, #bi, #m, #v {epsilon=0.0} : f32[1,2,2,2]
  return %a
}
"#,
        1e-6,
    );
}
