//! Every lowered op, JIT against the interpreter on seeded inputs: quantized results
//! bit for bit, float results within rtol 1e-5 (most are bit-identical too).

#![allow(clippy::panic, clippy::unwrap_used)]

mod common;

use common::check_text;

const Q: f32 = 0.0; // bits
const F: f32 = 1e-5;

/// f32 → 8-bit quantize takes a 16-lane path plus a scalar tail: special values (NaN,
/// infinities, huge magnitudes, exact rounding ties, values past the storage range)
/// in both, bit-exact with the interpreter.
#[test]
fn quantize_special_values() {
    let specials = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e30,
        -1e30,
        0.25,
        0.75,
        -0.25,
        -0.75,
        1.25,
        -0.0,
        0.0,
        6.4,
        -6.5,
        3.0e9,
        -2.9e9,
        0.125,
        12.75,
        -12.75,
        100.0,
    ];
    for (ty, n) in [("u8", 37usize), ("i8", 37), ("u8", 16)] {
        let src = format!(
            "func @main(%x: f32[{n}]) -> {ty}[{n}] q(0.5, 3) {{
               %y = quantize %x : {ty}[{n}] q(0.5, 3)
               return %y }}"
        );
        let g = qc_ir::text::parse(&src).expect("parse");
        let x: Vec<f32> = (0..n).map(|i| specials[i % specials.len()]).collect();
        let t = qc_ir::Tensor::new(vec![n], qc_ir::TensorData::F32(x)).expect("tensor");
        for ks in [qc_jit::KernelSet::Auto, qc_jit::KernelSet::Cranelift] {
            common::compare_with(
                &g,
                std::slice::from_ref(&t),
                qc_jit::Contract::Float,
                ks,
                Q,
                &src,
            );
        }
    }
}

#[test]
fn conversions() {
    check_text(
        "func @main(%x: f32[2,3,5]) -> u8[2,3,5] q(0.05, 128) {
           %y = quantize %x : u8[2,3,5] q(0.05, 128)
           return %y }",
        Q,
    );
    check_text(
        "func @main(%x: f32[7,3]) -> i8[7,3] q(0.0625, -3) {
           %y = quantize %x : i8[7,3] q(0.0625, -3)
           return %y }",
        Q,
    );
    check_text(
        "func @main(%x: u8[4,9] q(0.1, 100)) -> f32[4,9] {
           %y = dequantize %x : f32[4,9]
           return %y }",
        Q,
    );
    check_text(
        "func @main(%x: i8[4,9] q(0.1, 3)) -> u8[4,9] q(0.07, 120) {
           %y = requantize %x : u8[4,9] q(0.07, 120)
           return %y }",
        Q,
    );
    // 16-bit and 32-bit storage go through the general (non-table) path.
    check_text(
        "func @main(%x: i16[33] q(0.001, 5)) -> f32[33] {
           %y = dequantize %x : f32[33]
           return %y }",
        Q,
    );
    check_text(
        "func @main(%x: f32[33]) -> i32[33] q(0.0001, 7) {
           %y = quantize %x : i32[33] q(0.0001, 7)
           return %y }",
        Q,
    );
}

#[test]
fn unary_float() {
    for op in [
        "relu %x",
        "leaky_relu %x {alpha=0.1}",
        "clip %x {min=-1.0, max=2.5}",
        "sigmoid %x",
        "hard_sigmoid %x {alpha=0.2, beta=0.5}",
        "hard_swish %x",
        "tanh %x",
        "identity %x",
    ] {
        check_text(
            &format!(
                "func @main(%x: f32[3,17]) -> f32[3,17] {{
                   %y = {op} : f32[3,17]
                   return %y }}"
            ),
            Q,
        );
    }
}

#[test]
fn unary_quantized_tables() {
    // relu, clip and reshape keep the operand's params (the verifier's rule); the
    // others may requantize.
    for (op, keep) in [
        ("relu %x", true),
        ("clip %x {min=-1.0, max=2.5}", true),
        ("reshape %x {shape=[51]}", true),
        ("leaky_relu %x {alpha=0.1}", false),
        ("sigmoid %x", false),
        ("hard_sigmoid %x {alpha=0.2, beta=0.5}", false),
        ("hard_swish %x", false),
        ("tanh %x", false),
    ] {
        let out = if op.starts_with("reshape") {
            "[51]"
        } else {
            "[3,17]"
        };
        for (xt, q) in [("u8", "q(0.05, 120)"), ("i8", "q(0.04, -5)")] {
            let yq = if keep { q } else { "q(0.03, 10)" };
            let src = format!(
                "func @main(%x: {xt}[3,17] {q}) -> {xt}{out} {yq} {{
                   %y = {op} : {xt}{out} {yq}
                   return %y }}"
            );
            check_text(&src, Q);
        }
    }
}

/// Same-shape 8-bit quantized add/sub/mul take a 16-lane vector path plus a scalar
/// tail (37 = 2·16 + 5 elements); scales chosen so results saturate at both ends and
/// land on rounding ties.
#[test]
fn quantized_same_shape_binary() {
    for op in [
        "add",
        "sub",
        "mul",
        "add {act=relu}",
        "add {act=clip(-0.5, 1.0)}",
    ] {
        let (name, attr) = op.split_once(' ').unwrap_or((op, ""));
        for (ta, tb, ty) in [
            (
                "u8[37] q(0.05, 128)",
                "u8[37] q(0.02, 100)",
                "u8[37] q(0.01, 60)",
            ),
            (
                "i8[37] q(0.5, -3)",
                "i8[37] q(0.25, 7)",
                "i8[37] q(0.125, 0)",
            ),
            (
                "u8[5,16] q(0.1, 0)",
                "u8[5,16] q(0.1, 0)",
                "i8[5,16] q(0.2, -100)",
            ),
        ] {
            let src = format!(
                "func @main(%a: {ta}, %b: {tb}) -> {ty} {{
                   %y = {name} %a, %b {attr} : {ty}
                   return %y }}"
            );
            let g = qc_ir::text::parse(&src).expect("parse");
            // Both the native kernel (auto) and the generated vector path.
            for seed in [1, 2] {
                let ins = common::inputs_for(&g, seed);
                for ks in [qc_jit::KernelSet::Auto, qc_jit::KernelSet::Cranelift] {
                    common::compare_with(&g, &ins, qc_jit::Contract::Float, ks, Q, &src);
                }
            }
        }
    }
}

#[test]
fn binary_broadcast() {
    for op in ["add", "sub", "mul", "div", "add {act=relu}"] {
        let (name, attr) = op.split_once(' ').unwrap_or((op, ""));
        let src = format!(
            "func @main(%a: f32[2,3,4,5], %b: f32[3,1,5]) -> f32[2,3,4,5] {{
               %y = {name} %a, %b {attr} : f32[2,3,4,5]
               return %y }}"
        );
        check_text(&src, Q);
        let src = format!(
            "func @main(%a: u8[2,3,4,5] q(0.05, 128), %b: u8[1,3,1,1] q(0.02, 100)) -> u8[2,3,4,5] q(0.1, 60) {{
               %y = {name} %a, %b {attr} : u8[2,3,4,5] q(0.1, 60)
               return %y }}"
        );
        check_text(&src, Q);
        // The broadcast operand first (the fused add swaps the operands' roles), i8.
        let src = format!(
            "func @main(%a: i8[3,1] q(0.05, 12), %b: i8[2,3,7] q(0.02, -100)) -> i8[2,3,7] q(0.1, 6) {{
               %y = {name} %a, %b {attr} : i8[2,3,7] q(0.1, 6)
               return %y }}"
        );
        check_text(&src, Q);
    }
    // A constant quantized operand.
    check_text(
        "#k = const u8[5] [0, 7, 128, 200, 255]
         func @main(%a: u8[3,5] q(0.05, 128)) -> u8[3,5] q(0.07, 120) {
           %c = const #k : u8[5] q(0.03, 100)
           %y = add %a, %c {act=relu} : u8[3,5] q(0.07, 120)
           return %y }",
        Q,
    );
    check_text(
        "#c = const f32[3] [0.5, -1.25, 2.0]
         func @main(%a: f32[2,3]) -> f32[2,3] {
           %y = mul %a, #c : f32[2,3]
           return %y }",
        Q,
    );
    check_text(
        "func @main(%a: f32[4], %b: f32[4], %c: f32[2,1]) -> f32[2,4] {
           %y = sum %a, %b, %c : f32[2,4]
           return %y }",
        Q,
    );
}

#[test]
fn movement() {
    check_text(
        "func @main(%x: f32[2,3,4]) -> f32[4,2,3] {
           %y = transpose %x {perm=[2,0,1]} : f32[4,2,3]
           return %y }",
        Q,
    );
    check_text(
        "func @main(%x: u8[1,3,5,7] q(0.1, 3)) -> u8[1,5,7,3] q(0.1, 3) {
           %y = transpose %x {perm=[0,2,3,1]} : u8[1,5,7,3] q(0.1, 3)
           return %y }",
        Q,
    );
    check_text(
        "func @main(%a: u8[1,2,3] q(0.1, 3), %b: u8[1,4,3] q(0.2, 7)) -> u8[1,6,3] q(0.1, 3) {
           %y = concat %a, %b {axis=1} : u8[1,6,3] q(0.1, 3)
           return %y }",
        Q,
    );
    check_text(
        "func @main(%a: f32[2,3], %b: f32[2,5]) -> f32[2,8] {
           %y = concat %a, %b {axis=1} : f32[2,8]
           return %y }",
        Q,
    );
    check_text(
        "func @main(%x: f32[1,2,3,4]) -> f32[1,2,5,5] {
           %y = pad %x {pads=[0,0,1,2,0,0,1,-1], value=1.5} : f32[1,2,5,5]
           return %y }",
        Q,
    );
    check_text(
        "func @main(%x: u8[1,2,3,3] q(0.1, 7)) -> u8[1,2,5,5] q(0.1, 7) {
           %y = pad %x {pads=[0,0,1,1,0,0,1,1]} : u8[1,2,5,5] q(0.1, 7)
           return %y }",
        Q,
    );
    check_text(
        "func @main(%x: f32[2,3,4]) -> f32[2,12] {
           %y = flatten %x {axis=1} : f32[2,12]
           return %y }",
        Q,
    );
    check_text(
        "func @main(%x: i8[2,1,4] q(0.1, 1)) -> i8[2,4] q(0.1, 1) {
           %y = squeeze %x {axes=[1]} : i8[2,4] q(0.1, 1)
           return %y }",
        Q,
    );
}

#[test]
fn pools() {
    for attrs in [
        "kernel=[3,3], strides=[2,2], pads=[1,1,1,1]",
        "kernel=[2,2], strides=[2,2]",
        "kernel=[3,3], strides=[2,2], pads=[1,1,1,1], ceil_mode=true",
        "kernel=[3,2], dilations=[2,1]",
    ] {
        for (xt, yt_q) in [
            ("f32[1,3,9,8]", false),
            ("u8[1,3,9,8] q(0.1, 12)", true),
            ("i8[2,3,9,8] q(0.1, -3)", true),
            // Rows wide enough for the max pool's 16-output vector steps.
            ("u8[1,2,5,70] q(0.1, 12)", true),
            ("i8[1,2,5,75] q(0.1, -3)", true),
        ] {
            let g = qc_ir::text::parse(&format!(
                "func @main(%x: {xt}) -> f32[1] {{ %y = max_pool %x {{{attrs}}} : f32[1] return %y }}"
            ));
            // Result type: let inference fill it by building the graph instead.
            let _ = g;
            let mut gr = qc_ir::Graph::new();
            let ty = qc_ir::text::parse(&format!("func @main(%x: {xt}) -> {xt} {{ return %x }}"))
                .expect("parse")
                .values[0]
                .ty
                .clone();
            let x = gr.add_input("x", ty.clone());
            let src = format!("func @main(%x: {xt}) -> {xt} {{ return %x }}");
            let _ = src;
            let pool = parse_pool(attrs);
            for op in [
                qc_ir::Op::MaxPool {
                    pool: pool.clone(),
                    storage_order: 0,
                },
                qc_ir::Op::AveragePool {
                    pool: pool.clone(),
                    count_include_pad: false,
                },
                qc_ir::Op::AveragePool {
                    pool: pool.clone(),
                    count_include_pad: true,
                },
            ] {
                let mut g = gr.clone();
                let keeps = matches!(op, qc_ir::Op::MaxPool { .. });
                let y = if yt_q && !keeps {
                    common::node_q(&mut g, op, &[x], common::pt(qc_ir::QType::U8, 0.07, 5))
                } else {
                    common::node(&mut g, op, &[x])
                };
                g.add_output("y", y);
                for seed in [1, 2] {
                    let ins = common::inputs_for(&g, seed);
                    common::compare(&g, &ins, qc_jit::Contract::Float, Q, attrs);
                }
            }
        }
    }
    check_text(
        "func @main(%x: f32[2,3,5,7]) -> f32[2,3,1,1] {
           %y = global_average_pool %x : f32[2,3,1,1]
           return %y }",
        Q,
    );
    check_text(
        "func @main(%x: u8[2,3,5,7] q(0.1, 4)) -> u8[2,3,1,1] q(0.05, 9) {
           %y = global_average_pool %x : u8[2,3,1,1] q(0.05, 9)
           return %y }",
        Q,
    );
    // The `float` contract's fused global average, also as a whole-image average pool.
    check_text(
        "func @main(%x: i8[2,19,8,8] q(0.07, -4)) -> i8[2,19,1,1] q(0.03, 9) {
           %y = global_average_pool %x : i8[2,19,1,1] q(0.03, 9)
           return %y }",
        Q,
    );
    check_text(
        "func @main(%x: u8[1,21,6,5] q(0.11, 30)) -> u8[1,21,1,1] q(0.02, 100) {
           %y = average_pool %x {kernel=[6,5]} : u8[1,21,1,1] q(0.02, 100)
           return %y }",
        Q,
    );
    check_text(
        "func @main(%x: i8[2,3,5,7] q(0.1, 4)) -> i8[2,3,1,1] q(0.1, 4) {
           %y = global_max_pool %x : i8[2,3,1,1] q(0.1, 4)
           return %y }",
        Q,
    );
}

fn parse_pool(attrs: &str) -> qc_ir::PoolAttrs {
    let mut p = qc_ir::PoolAttrs {
        kernel: vec![],
        strides: vec![],
        dilations: vec![],
        pads: vec![],
        ceil_mode: false,
    };
    let list = |s: &str| -> Vec<usize> {
        s.trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|v| v.trim().parse().expect("int"))
            .collect()
    };
    let rank = 2;
    if attrs.contains("ceil_mode=true") {
        p.ceil_mode = true;
    }
    let attrs = attrs.replace(", ceil_mode=true", "");
    for part in attrs.split("], ").map(|s| s.trim_end_matches(']')) {
        let (k, v) = part.split_once('=').expect("attr");
        match k.trim() {
            "kernel" => p.kernel = list(v),
            "strides" => p.strides = list(v),
            "dilations" => p.dilations = list(v),
            "pads" => {
                let (pv, rest) = v.split_once(']').unwrap_or((v, ""));
                p.pads = list(pv);
                if rest.contains("ceil_mode=true") {
                    p.ceil_mode = true;
                }
            }
            other => panic!("attr {other}"),
        }
    }
    if p.strides.is_empty() {
        p.strides = vec![1; rank];
    }
    if p.dilations.is_empty() {
        p.dilations = vec![1; rank];
    }
    if p.pads.is_empty() {
        p.pads = vec![0; 2 * rank];
    }
    p
}

#[test]
fn softmax_and_batch_norm() {
    check_text(
        "func @main(%x: f32[2,5,3]) -> f32[2,5,3] {
           %y = softmax %x {axis=1} : f32[2,5,3]
           return %y }",
        Q,
    );
    check_text(
        "func @main(%x: u8[3,10] q(0.1, 128)) -> u8[3,10] q(0.00390625, 0) {
           %y = softmax %x {axis=1} : u8[3,10] q(0.00390625, 0)
           return %y }",
        Q,
    );
    check_text(
        "func @main(%x: i8[2,9,3] q(0.3, 5)) -> i8[2,9,3] q(0.00390625, -128) {
           %y = softmax %x {axis=1} : i8[2,9,3] q(0.00390625, -128)
           return %y }",
        Q,
    );
    check_text(
        "#s = const f32[3] [1.5, 0.5, -2.0]
         #b = const f32[3] [0.1, 0.2, 0.3]
         #m = const f32[3] [0.0, 1.0, -1.0]
         #v = const f32[3] [1.0, 2.0, 0.25]
         func @main(%x: f32[2,3,4]) -> f32[2,3,4] {
           %y = batch_norm %x, #s, #b, #m, #v {epsilon=0.00001} : f32[2,3,4]
           return %y }",
        Q,
    );
}

#[test]
fn gemm_and_matmul_float() {
    check_text(
        "#w = const f32[3,2] [0.5, -1.0, 0.25, 2.0, -0.75, 1.5]
         #c = const f32[2] [0.1, -0.2]
         func @main(%a: f32[5,3]) -> f32[5,2] {
           %y = gemm %a, #w, #c {alpha=0.5, beta=2.0} : f32[5,2]
           return %y }",
        F,
    );
    check_text(
        "#w = const f32[2,3] [0.5, -1.0, 0.25, 2.0, -0.75, 1.5]
         func @main(%a: f32[3,5]) -> f32[5,2] {
           %y = gemm %a, #w {trans_a=true, trans_b=true, act=relu} : f32[5,2]
           return %y }",
        F,
    );
    check_text(
        "#w = const f32[2,3,2] [0.5, -1.0, 0.25, 2.0, -0.75, 1.5, 1.0, 2.0, 3.0, -4.0, 0.5, 0.125]
         func @main(%a: f32[2,4,3]) -> f32[2,4,2] {
           %y = matmul %a, #w : f32[2,4,2]
           return %y }",
        F,
    );
}

#[test]
fn gemm_and_matmul_quantized() {
    check_text(
        "#w = const i8[3,2] [50, -100, 25, 127, -75, 15]
         #c = const i32[2] [100, -200]
         func @main(%a: u8[5,3] q(0.05, 128)) -> u8[5,2] q(0.2, 100) {
           %w = const #w : i8[3,2] q(axis=1, [0.01, 0.02], [0, 0])
           %y = gemm %a, %w, #c : u8[5,2] q(0.2, 100)
           return %y }",
        Q,
    );
    check_text(
        "#w = const i8[2,3] [50, -100, 25, 127, -75, 15]
         func @main(%a: i8[9,3] q(0.05, 3)) -> i8[9,2] q(0.04, -7) {
           %w = const #w : i8[2,3] q(0.01, 0)
           %y = gemm %a, %w {trans_b=true, act=relu} : i8[9,2] q(0.04, -7)
           return %y }",
        Q,
    );
    check_text(
        "#w = const u8[3,4] [50, 100, 25, 127, 75, 15, 0, 255, 128, 1, 2, 3]
         func @main(%a: u8[2,5,3] q(0.05, 128)) -> i8[2,5,4] q(0.3, -10) {
           %w = const #w : u8[3,4] q(0.02, 128)
           %y = matmul %a, %w {act=clip(-1.0, 2.0)} : i8[2,5,4] q(0.3, -10)
           return %y }",
        Q,
    );
}

/// Quantized results wider than 8 bits: 16-bit results through the vector epilogue,
/// 32-bit ones with scaled sums far past the i32 range (saturating at both ends) and
/// zero points that put `hi - zp` outside i32.
#[test]
fn gemm_results_wider_than_8_bits() {
    for (y, act) in [
        ("i32[6,8] q(0.000001, 0)", ""),
        ("i32[6,8] q(0.000001, -5)", ""),
        ("i32[6,8] q(0.000001, 7)", " {act=relu}"),
        ("i32[6,8] q(1.0, -2147483000)", ""),
        ("u16[6,8] q(0.5, 40000)", " {act=relu}"),
        ("i16[6,8] q(0.01, -300)", ""),
    ] {
        let src = format!(
            "#w = const i8[5,8] [100, -100, 127, -128, 1, 2, 3, -4, 100, -100, 127, -128, 5, \
             6, 7, -8, 100, -100, 127, -128, 9, 10, 11, -12, 100, -100, 127, -128, 13, 14, \
             15, -16, 100, -100, 127, -128, 17, 18, 19, -20]
             func @main(%a: u8[6,5] q(1.0, 0)) -> {y} {{
               %w = const #w : i8[5,8] q(1.0, 0)
               %y = matmul %a, %w{act} : {y}
               return %y }}"
        );
        let g = qc_ir::text::parse(&src).unwrap_or_else(|e| panic!("parse: {e}\n{src}"));
        for seed in [1, 2] {
            let ins = common::inputs_for(&g, seed);
            for ks in [qc_jit::KernelSet::Cranelift, qc_jit::KernelSet::Auto] {
                common::compare_with(&g, &ins, qc_jit::Contract::Float, ks, Q, &src);
            }
        }
    }
}

#[test]
fn integer_elementwise_wraps() {
    for t in ["i8", "u8", "i16", "u16", "i32"] {
        for op in ["add", "sub", "mul"] {
            check_text(
                &format!(
                    "func @main(%a: {t}[3,7], %b: {t}[7]) -> {t}[3,7] {{
                       %y = {op} %a, %b : {t}[3,7]
                       return %y }}"
                ),
                Q,
            );
        }
        let d = if t.starts_with('u') {
            "[7, 3, 1, 200, 9]"
        } else {
            "[7, -3, 1, -1, 9]"
        };
        check_text(
            &format!(
                "#d = const {t}[5] {d}
                 func @main(%a: {t}[4,5]) -> {t}[4,5] {{
                   %y = div %a, #d : {t}[4,5]
                   return %y }}"
            ),
            Q,
        );
        check_text(
            &format!(
                "func @main(%a: {t}[2,9]) -> {t}[2,9] {{
                   %y = clip %a {{min=-5.0, max=100.0}} : {t}[2,9]
                   return %y }}"
            ),
            Q,
        );
    }
    check_text(
        "func @main(%a: i16[4], %b: i16[4], %c: i16[4]) -> i16[4] {
           %y = sum %a, %b, %c : i16[4]
           return %y }",
        Q,
    );
}

#[test]
fn casts() {
    for (from, tos) in [
        (
            "f32",
            &[
                "i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64", "f64", "bool",
            ][..],
        ),
        ("i16", &["f32", "f64", "u8", "i8", "i64", "u64", "bool"][..]),
        ("u16", &["i8", "f32", "i16"][..]),
        ("i32", &["u8", "f32", "u16"][..]),
        ("u8", &["f64", "i8", "f32"][..]),
    ] {
        for to in tos {
            check_text(
                &format!(
                    "func @main(%x: {from}[3,11]) -> {to}[3,11] {{
                       %y = cast %x {{to={to}}} : {to}[3,11]
                       return %y }}"
                ),
                Q,
            );
        }
    }
    // Saturation of large floats into narrow integers.
    check_text(
        "#k = const f32[1] [1000.0]
         func @main(%x: f32[40]) -> i8[40] {
           %s = mul %x, #k : f32[40]
           %y = cast %s {to=i8} : i8[40]
           return %y }",
        Q,
    );
}

#[test]
fn integer_ops_with_zero_points() {
    check_text(
        "func @main(%a: u8[2,5,7], %b: u8[7,3], %za: u8[], %zb: u8[3]) -> i32[2,5,3] {
           %y = matmul_integer %a, %b, %za, %zb : i32[2,5,3]
           return %y }",
        Q,
    );
    check_text(
        "#za = const i8[4] [1, -2, 0, 5]
         #zb = const i8[] [-3]
         func @main(%a: i8[4,6], %b: i8[6,5]) -> i32[4,5] {
           %y = matmul_integer %a, %b, #za, #zb : i32[4,5]
           return %y }",
        Q,
    );
    check_text(
        "func @main(%x: u8[1,4,7,6], %w: u8[6,2,3,3], %zx: u8[], %zw: u8[6]) -> i32[1,6,4,3] {
           %y = conv_integer %x, %w, %zx, %zw {kernel=[3,3], strides=[2,2], pads=[1,0,1,1], group=2} : i32[1,6,4,3]
           return %y }",
        Q,
    );
    check_text(
        "#zx = const i8[] [0]
         #zw = const i8[] [2]
         func @main(%x: i8[2,3,9], %w: i8[4,3,2]) -> i32[2,4,4] {
           %y = conv_integer %x, %w, #zx, #zw {kernel=[2], dilations=[2], strides=[2]} : i32[2,4,4]
           return %y }",
        Q,
    );
}

#[test]
fn run_time_weights() {
    check_text(
        "func @main(%a: f32[2,5,3], %b: f32[3,4]) -> f32[2,5,4] {
           %y = matmul %a, %b : f32[2,5,4]
           return %y }",
        F,
    );
    check_text(
        "func @main(%a: f32[3], %b: f32[2,3,4]) -> f32[2,4] {
           %y = matmul %a, %b : f32[2,4]
           return %y }",
        F,
    );
    check_text(
        "func @main(%a: f32[3,5], %b: f32[4,3], %c: f32[4]) -> f32[5,4] {
           %y = gemm %a, %b, %c {alpha=0.5, beta=2.0, trans_a=true, trans_b=true, act=relu} : f32[5,4]
           return %y }",
        F,
    );
    check_text(
        "func @main(%a: u8[2,5,3] q(0.05, 128), %b: i8[3,4] q(0.02, 3)) -> u8[2,5,4] q(0.1, 120) {
           %y = matmul %a, %b {act=relu} : u8[2,5,4] q(0.1, 120)
           return %y }",
        Q,
    );
    check_text(
        "func @main(%x: f32[1,4,6,5], %w: f32[6,2,3,3], %b: f32[6]) -> f32[1,6,3,5] {
           %y = conv %x, %w, %b {kernel=[3,3], strides=[2,1], pads=[1,1,0,1], group=2} : f32[1,6,3,5]
           return %y }",
        F,
    );
    check_text(
        "func @main(%x: u8[1,3,5,5] q(0.05, 128), %w: i8[4,3,3,3] q(0.01, 0), %b: i32[4]) -> u8[1,4,5,5] q(0.2, 100) {
           %y = conv %x, %w, %b {kernel=[3,3], pads=[1,1,1,1], act=clip(0.0, 6.0)} : u8[1,4,5,5] q(0.2, 100)
           return %y }",
        Q,
    );
}

#[test]
fn per_axis_quantize_and_dequantize() {
    check_text(
        "func @main(%x: f32[2,3,4]) -> u8[2,3,4] q(axis=1, [0.05, 0.1, 0.02], [128, 0, 30]) {
           %y = quantize %x : u8[2,3,4] q(axis=1, [0.05, 0.1, 0.02], [128, 0, 30])
           return %y }",
        Q,
    );
    check_text(
        "func @main(%x: i8[3,2] q(axis=0, [0.05, 0.1, 0.02], [1, 0, -3])) -> f32[3,2] {
           %y = dequantize %x : f32[3,2]
           return %y }",
        Q,
    );
}

#[test]
fn max_pool_indices_and_integers() {
    for order in [0, 1] {
        for (xt, yt) in [
            ("f32[2,3,7,6]", "f32[2,3,4,3]"),
            ("u8[2,3,7,6] q(0.1, 12)", "u8[2,3,4,3] q(0.1, 12)"),
            ("i16[2,3,7,6]", "i16[2,3,4,3]"),
        ] {
            check_text(
                &format!(
                    "func @main(%x: {xt}) -> ({yt}, i64[2,3,4,3]) {{
                       %y, %i = max_pool %x {{kernel=[3,2], strides=[2,2], pads=[1,0,1,0], storage_order={order}}} : {yt}, i64[2,3,4,3]
                       return %y, %i }}"
                ),
                Q,
            );
        }
    }
    check_text(
        "func @main(%x: u8[1,2,5,5]) -> u8[1,2,2,2] {
           %y = max_pool %x {kernel=[2,2], strides=[2,2]} : u8[1,2,2,2]
           return %y }",
        Q,
    );
}

#[test]
fn dynamic_quantize_matches() {
    check_text(
        "func @main(%x: f32[3,17]) -> (u8[3,17], f32[], u8[]) {
           %y, %s, %z = dynamic_quantize %x : u8[3,17], f32[], u8[]
           return %y, %s, %z }",
        Q,
    );
    // All-positive input: the range is folded from 0.
    check_text(
        "#k = const f32[1] [10.0]
         func @main(%x: f32[9]) -> (u8[9], f32[], u8[]) {
           %a = mul %x, %x : f32[9]
           %b = add %a, #k : f32[9]
           %y, %s, %z = dynamic_quantize %b : u8[9], f32[], u8[]
           return %y, %s, %z }",
        Q,
    );
}

#[test]
fn reduce_mean_and_lrn() {
    for (axes, keep, yt) in [
        ("[1]", "true", "[2,1,5,4]"),
        ("[0,2]", "false", "[3,4]"),
        ("[1,3]", "true", "[2,1,5,1]"),
        ("[0,1,2,3]", "false", "[]"),
    ] {
        check_text(
            &format!(
                "func @main(%x: f32[2,3,5,4]) -> f32{yt} {{
                   %y = reduce_mean %x {{axes={axes}, keepdims={keep}}} : f32{yt}
                   return %y }}"
            ),
            Q,
        );
    }
    check_text(
        "func @main(%x: u8[2,3,4] q(0.05, 100)) -> u8[2,1,4] q(0.05, 100) {
           %y = reduce_mean %x {axes=[1], keepdims=true} : u8[2,1,4] q(0.05, 100)
           return %y }",
        Q,
    );
    for size in [1, 2, 3, 5] {
        check_text(
            &format!(
                "func @main(%x: f32[2,6,3,3]) -> f32[2,6,3,3] {{
                   %y = lrn %x {{size={size}, alpha=0.0002, beta=0.75, bias=1.5}} : f32[2,6,3,3]
                   return %y }}"
            ),
            F,
        );
    }
}

#[test]
fn conv_transpose_float_and_quantized() {
    // Output sizes: s*(i-1) + opad + (k-1)*d + 1 - pads.
    check_text(
        "func @main(%x: f32[1,4,5,4], %w: f32[4,3,3,3], %b: f32[6]) -> f32[1,6,11,9] {
           %y = conv_transpose %x, %w, %b {kernel=[3,3], strides=[2,2], pads=[1,0,0,1], output_padding=[1,1], group=2, act=relu} : f32[1,6,11,9]
           return %y }",
        Q,
    );
    check_text(
        "func @main(%x: f32[2,3,7], %w: f32[3,2,2]) -> f32[2,2,8] {
           %y = conv_transpose %x, %w {kernel=[2], dilations=[2], pads=[1,0]} : f32[2,2,8]
           return %y }",
        Q,
    );
    check_text(
        "#w = const i8[2,4,3,3] [1, -2, 3, -4, 5, -6, 7, -8, 9, 10, -11, 12, 13, -14, 15, 16, -17, 18, 19, 20, -21, 22, 23, -24, 25, 26, 27, -28, 29, 30, 31, -32, 33, 34, -35, 36, 37, 38, -39, 40, 41, 42, -43, 44, 45, 46, 47, -48, 49, 50, 51, 52, -53, 54, 55, 56, 57, 58, -59, 60, 61, 62, 63, -64, 65, 66, 67, 68, 69, -70, 71, 72]
         #b = const i32[4] [100, -50, 0, 7]
         func @main(%x: u8[1,2,4,4] q(0.05, 128)) -> u8[1,4,9,9] q(0.2, 120) {
           %w = const #w : i8[2,4,3,3] q(axis=1, [0.01, 0.02, 0.005, 0.03], [0, 0, 0, 0])
           %y = conv_transpose %x, %w, #b {kernel=[3,3], strides=[2,2], pads=[1,1,0,0], output_padding=[1,1]} : u8[1,4,9,9] q(0.2, 120)
           return %y }",
        Q,
    );
}

#[test]
fn batch_norm_run_time_parameters() {
    check_text(
        "func @main(%x: f32[2,3,4,5], %s: f32[3], %b: f32[3], %m: f32[3], %v: f32[3]) -> f32[2,3,4,5] {
           %a = mul %v, %v : f32[3]
           %y = batch_norm %x, %s, %b, %m, %a {epsilon=0.001} : f32[2,3,4,5]
           return %y }",
        Q,
    );
}

#[test]
fn bf16_casts() {
    // Values with bits below bf16's precision exercise rounding to nearest even.
    check_text(
        "#k = const f32[1] [1.0039063]
         func @main(%x: f32[5,7]) -> f32[5,7] {
           %s = mul %x, #k : f32[5,7]
           %h = cast %s {to=bf16} : bf16[5,7]
           %y = cast %h {to=f32} : f32[5,7]
           return %y }",
        Q,
    );
}

#[test]
fn f16_casts() {
    // Scales reach f16 overflow (x * 30000), normal values and subnormals (x * 1e-6).
    for k in ["30000.0", "1.0039063", "0.000001", "0.00000003"] {
        check_text(
            &format!(
                "#k = const f32[1] [{k}]
                 func @main(%x: f32[5,7]) -> (f16[5,7], f32[5,7], f16[5,7], f64[5,7]) {{
                   %s = mul %x, #k : f32[5,7]
                   %h = cast %s {{to=f16}} : f16[5,7]
                   %y = cast %h {{to=f32}} : f32[5,7]
                   %d = cast %s {{to=f64}} : f64[5,7]
                   %dh = cast %d {{to=f16}} : f16[5,7]
                   %hd = cast %dh {{to=f64}} : f64[5,7]
                   return %h, %y, %dh, %hd }}"
            ),
            Q,
        );
    }
}

/// Output size of a conv along one dim: `(i + pads - d*(k-1) - 1) / s + 1`.
fn conv_out(i: usize, k: usize, s: usize, d: usize, pb: usize, pe: usize) -> usize {
    (i + pb + pe - d * (k - 1) - 1) / s + 1
}

/// Output size of a conv_transpose along one dim: `s*(i-1) + op + d*(k-1) + 1 - pads`.
fn convt_out(i: usize, k: usize, s: usize, d: usize, pb: usize, pe: usize, op: usize) -> usize {
    s * (i - 1) + op + d * (k - 1) + 1 - pb - pe
}

#[test]
fn run_time_weight_convs_over_shapes() {
    let mut rng = common::Rng(7);
    for case in 0..12 {
        let group = [1, 2, 3][rng.below(3)];
        let (cig, cog) = (1 + rng.below(3), 1 + rng.below(3));
        let (cin, cout) = (cig * group, cog * group);
        let (kh, kw) = (1 + rng.below(3), 1 + rng.below(3));
        let (sh, sw) = (1 + rng.below(2), 1 + rng.below(2));
        let (dh, dw) = (1 + rng.below(2), 1 + rng.below(2));
        let p = [rng.below(2), rng.below(2), rng.below(2), rng.below(2)];
        let (ih, iw) = (
            dh * (kh - 1) + 1 + rng.below(5),
            dw * (kw - 1) + 1 + rng.below(5),
        );
        let (oh, ow) = (
            conv_out(ih, kh, sh, dh, p[0], p[2]),
            conv_out(iw, kw, sw, dw, p[1], p[3]),
        );
        let attrs = format!(
            "kernel=[{kh},{kw}], strides=[{sh},{sw}], dilations=[{dh},{dw}], pads=[{},{},{},{}], group={group}",
            p[0], p[1], p[2], p[3]
        );
        check_text(
            &format!(
                "func @main(%x: f32[2,{cin},{ih},{iw}], %w: f32[{cout},{cig},{kh},{kw}], %b: f32[{cout}]) -> f32[2,{cout},{oh},{ow}] {{
                   %y = conv %x, %w, %b {{{attrs}}} : f32[2,{cout},{oh},{ow}]
                   return %y }}"
            ),
            F,
        );
        check_text(
            &format!(
                "func @main(%x: i8[1,{cin},{ih},{iw}] q(0.05, -3), %w: u8[{cout},{cig},{kh},{kw}] q(0.01, 120), %b: i32[{cout}]) -> u8[1,{cout},{oh},{ow}] q(0.3, 7) {{
                   %y = conv %x, %w, %b {{{attrs}, act=relu}} : u8[1,{cout},{oh},{ow}] q(0.3, 7)
                   return %y }}"
            ),
            Q,
        );
        check_text(
            &format!(
                "func @main(%x: u8[1,{cin},{ih},{iw}], %w: i8[{cout},{cig},{kh},{kw}], %zx: u8[], %zw: i8[{cout}]) -> i32[1,{cout},{oh},{ow}] {{
                   %y = conv_integer %x, %w, %zx, %zw {{{attrs}}} : i32[1,{cout},{oh},{ow}]
                   return %y }}"
            ),
            Q,
        );
        // conv_transpose with the same geometry (output padding below the stride).
        let op = [rng.below(sh), rng.below(sw)];
        let (th, tw) = (
            convt_out(ih, kh, sh, dh, p[0], p[2], op[0]),
            convt_out(iw, kw, sw, dw, p[1], p[3], op[1]),
        );
        let tattrs = format!("{attrs}, output_padding=[{},{}]", op[0], op[1]);
        check_text(
            &format!(
                "func @main(%x: f32[2,{cin},{ih},{iw}], %w: f32[{cin},{cog},{kh},{kw}], %b: f32[{cout}]) -> f32[2,{cout},{th},{tw}] {{
                   %y = conv_transpose %x, %w, %b {{{tattrs}}} : f32[2,{cout},{th},{tw}]
                   return %y }}"
            ),
            Q,
        );
        check_text(
            &format!(
                "func @main(%x: u8[1,{cin},{ih},{iw}] q(0.05, 128), %w: i8[{cin},{cog},{kh},{kw}] q(0.02, 0), %b: i32[{cout}]) -> i8[1,{cout},{th},{tw}] q(0.25, -5) {{
                   %y = conv_transpose %x, %w, %b {{{tattrs}}} : i8[1,{cout},{th},{tw}] q(0.25, -5)
                   return %y }}"
            ),
            Q,
        );
        let _ = case;
    }
}

#[test]
fn quantized_gemm_with_run_time_b() {
    check_text(
        "func @main(%a: u8[5,3] q(0.05, 128), %b: i8[4,3] q(0.02, 2), %c: i32[4]) -> u8[5,4] q(0.1, 100) {
           %y = gemm %a, %b, %c {trans_b=true, act=clip(-1.0, 2.0)} : u8[5,4] q(0.1, 100)
           return %y }",
        Q,
    );
    check_text(
        "func @main(%a: i8[3,6] q(0.05, -1), %b: u8[3,2] q(0.02, 128), %c: i32[6,1]) -> i8[6,2] q(0.1, 3) {
           %y = gemm %a, %b, %c {trans_a=true} : i8[6,2] q(0.1, 3)
           return %y }",
        Q,
    );
}
