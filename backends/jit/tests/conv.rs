//! Property-style loops over random conv shapes (fixed seed): channels, kernel 1/3/5,
//! stride 1/2, dilation 1/2, groups (1, depthwise, others), asymmetric paddings, odd
//! sizes that are not multiples of the vector width; quantized under every rounding
//! contract (bits) and float (rtol 1e-5).

#![allow(clippy::panic, clippy::unwrap_used)]

mod common;

use common::{compare, inputs_for, node, node_q, pt, qconst, Rng};
use qc_ir::{
    Activation, ConvAttrs, DType, Graph, Op, QType, QuantParams, Tensor, TensorData, TensorType,
};
use qc_jit::{Contract, JitOptions, KernelSet};

/// Both kernel paths: generated code only, and native micro-kernels where the host has
/// them (on other hosts `Auto` is the Cranelift path again, still checked).
const KERNEL_SETS: [KernelSet; 2] = [KernelSet::Cranelift, KernelSet::Auto];

/// Quantized results of the JIT under `kernels` equal the interpreter's bit for bit.
fn compare_bits(g: &Graph, inputs: &[Tensor], contract: Contract, kernels: KernelSet, what: &str) {
    let want = qc_interp::run(g, inputs, &qc_interp::Options { contract })
        .unwrap_or_else(|e| panic!("{what}: interpreter: {e}"));
    let m = qc_jit::compile(
        g,
        &JitOptions {
            contract,
            kernels,
            profile: false,
        },
    )
    .unwrap_or_else(|e| panic!("{what}: compile: {e}"));
    let got = m.run(inputs).unwrap_or_else(|e| panic!("{what}: run: {e}"));
    assert_eq!(want.len(), got.len(), "{what}: result count");
    for (o, (w, j)) in want.iter().zip(&got).enumerate() {
        assert_eq!(w.dims(), j.dims(), "{what}: output {o} shape");
        let (a, b) = (w.data(), j.data());
        if a != b {
            let i = (0..w.dims().iter().product::<usize>())
                .position(|i| a.get_f64(i) != b.get_f64(i))
                .unwrap_or(0);
            panic!(
                "{what}: output {o} differs first at element {i}: interp {} jit {}",
                a.get_f64(i),
                b.get_f64(i)
            );
        }
    }
}

struct Shape {
    n: usize,
    c_in: usize,
    c_out: usize,
    group: usize,
    h: usize,
    w: usize,
    k: [usize; 2],
    s: [usize; 2],
    d: [usize; 2],
    pads: [usize; 4],
    act: Activation,
}

fn random_shape(rng: &mut Rng) -> Shape {
    let kind = rng.below(4);
    let (c_in, c_out, group) = match kind {
        0 => {
            let c = 1 + rng.below(12);
            (c, c * (1 + rng.below(2)), c) // depthwise (multiplier 1 or 2)
        }
        1 => {
            let g = 2 + rng.below(2);
            (g * (1 + rng.below(4)), g * (1 + rng.below(5)), g)
        }
        _ => (1 + rng.below(19), 1 + rng.below(21), 1),
    };
    let ks = [1, 3, 5];
    let k = [ks[rng.below(3)], ks[rng.below(3)]];
    let s = [1 + rng.below(2), 1 + rng.below(2)];
    let d = [1 + rng.below(2), 1 + rng.below(2)];
    let pads = [rng.below(3), rng.below(3), rng.below(3), rng.below(3)];
    // Input big enough for the dilated kernel.
    let h = (d[0] * (k[0] - 1) + 1)
        .saturating_sub(pads[0] + pads[2])
        .max(1)
        + rng.below(9);
    let w = (d[1] * (k[1] - 1) + 1)
        .saturating_sub(pads[1] + pads[3])
        .max(1)
        + rng.below(13);
    let act = match rng.below(3) {
        0 => Activation::None,
        1 => Activation::Relu,
        _ => Activation::Clip {
            min: -0.5,
            max: 3.0,
        },
    };
    Shape {
        n: 1 + rng.below(2),
        c_in,
        c_out,
        group,
        h,
        w,
        k,
        s,
        d,
        pads,
        act,
    }
}

fn attrs(sh: &Shape) -> ConvAttrs {
    ConvAttrs {
        kernel: sh.k.to_vec(),
        strides: sh.s.to_vec(),
        dilations: sh.d.to_vec(),
        pads: sh.pads.to_vec(),
        group: sh.group,
        act: sh.act,
    }
}

fn quant_conv(rng: &mut Rng, sh: &Shape, xq: QType, per_channel: bool, bias: bool) -> Graph {
    quant_conv_scaled(rng, sh, xq, per_channel, bias, 1.0)
}

/// [`quant_conv`] with the output scale multiplied by `y_scale_mul`.
fn quant_conv_scaled(
    rng: &mut Rng,
    sh: &Shape,
    xq: QType,
    per_channel: bool,
    bias: bool,
    y_scale_mul: f32,
) -> Graph {
    let mut g = Graph::new();
    let (sx, zx) = (
        0.02,
        if xq == QType::U8 {
            7 + rng.below(240) as i32
        } else {
            rng.range(-100, 100) as i32
        },
    );
    let x = g.add_input(
        "x",
        TensorType::quantized(vec![sh.n, sh.c_in, sh.h, sh.w], pt(xq, sx, zx)),
    );
    let cin_g = sh.c_in / sh.group;
    let wn = sh.c_out * cin_g * sh.k[0] * sh.k[1];
    let wv: Vec<i8> = (0..wn).map(|_| rng.range(-127, 127) as i8).collect();
    let wq = if per_channel {
        QuantParams::per_axis(
            QType::I8,
            0,
            (0..sh.c_out)
                .map(|c| 0.002 + 0.001 * (c % 5) as f32)
                .collect(),
            vec![0; sh.c_out],
        )
    } else {
        pt(QType::I8, 0.003, rng.range(-20, 20) as i32)
    };
    let w = qconst(
        &mut g,
        Tensor::new(vec![sh.c_out, cin_g, sh.k[0], sh.k[1]], TensorData::I8(wv)).expect("w"),
        Some(wq),
    );
    let mut ins = vec![x, w];
    if bias {
        let bv: Vec<i32> = (0..sh.c_out)
            .map(|_| rng.range(-3000, 3000) as i32)
            .collect();
        ins.push(qconst(
            &mut g,
            Tensor::new(vec![sh.c_out], TensorData::I32(bv)).expect("b"),
            None,
        ));
    }
    // An output scale that puts typical sums inside the 8-bit range.
    let k = (cin_g * sh.k[0] * sh.k[1]) as f32;
    let sy = sx * 0.003 * 40.0 * k.sqrt() * y_scale_mul;
    // The result has the input's storage type: a zero point away from the middle of
    // the range, so clamps at both ends are exercised.
    let zy = if xq == QType::U8 { 100 } else { -28 };
    let y = node_q(&mut g, Op::Conv(attrs(sh)), &ins, pt(xq, sy, zy));
    g.add_output("y", y);
    g
}

fn float_conv(rng: &mut Rng, sh: &Shape) -> Graph {
    let mut g = Graph::new();
    let x = g.add_input(
        "x",
        TensorType::new(DType::F32, vec![sh.n, sh.c_in, sh.h, sh.w]),
    );
    let cin_g = sh.c_in / sh.group;
    let wn = sh.c_out * cin_g * sh.k[0] * sh.k[1];
    let wv: Vec<f32> = (0..wn).map(|_| rng.f32(-1.0, 1.0)).collect();
    let w = qconst(
        &mut g,
        Tensor::from_f32(vec![sh.c_out, cin_g, sh.k[0], sh.k[1]], wv).expect("w"),
        None,
    );
    let bv: Vec<f32> = (0..sh.c_out).map(|_| rng.f32(-1.0, 1.0)).collect();
    let b = qconst(
        &mut g,
        Tensor::from_f32(vec![sh.c_out], bv).expect("b"),
        None,
    );
    let y = node(&mut g, Op::Conv(attrs(sh)), &[x, w, b]);
    g.add_output("y", y);
    g
}

fn describe(sh: &Shape) -> String {
    format!(
        "n{} cin{} cout{} g{} {}x{} k{:?} s{:?} d{:?} pads{:?} {:?}",
        sh.n, sh.c_in, sh.c_out, sh.group, sh.h, sh.w, sh.k, sh.s, sh.d, sh.pads, sh.act
    )
}

#[test]
fn random_quantized_convs_are_bit_exact() {
    let mut rng = Rng(0x51ed_2701);
    for case in 0..60 {
        let sh = random_shape(&mut rng);
        let xq = if case % 3 == 0 { QType::I8 } else { QType::U8 };
        let g = quant_conv(&mut rng, &sh, xq, case % 2 == 0, case % 4 != 1);
        let contract = Contract::ALL[case % 3];
        let ins = inputs_for(&g, case as u64);
        for ks in KERNEL_SETS {
            compare_bits(
                &g,
                &ins,
                contract,
                ks,
                &format!("case {case} {contract} {ks:?}: {}", describe(&sh)),
            );
        }
    }
}

#[test]
fn random_float_convs_match() {
    let mut rng = Rng(0xf10a_7c0e);
    for case in 0..40 {
        let sh = random_shape(&mut rng);
        let g = float_conv(&mut rng, &sh);
        let ins = inputs_for(&g, case as u64);
        // Same summation order as the interpreter: expected bit-identical, checked at 1e-5.
        compare(
            &g,
            &ins,
            Contract::Float,
            1e-5,
            &format!("case {case}: {}", describe(&sh)),
        );
    }
}

#[test]
fn gemm_shapes_not_multiple_of_tiles() {
    let mut rng = Rng(77);
    for (m, k, n) in [
        (1, 1, 1),
        (1, 1280, 10),
        (3, 7, 5),
        (9, 16, 17),
        (17, 33, 4),
    ] {
        for (trans_b, xq, zx) in [
            (false, QType::U8, 120),
            (true, QType::U8, 120),
            (true, QType::I8, -5),
        ] {
            let mut g = Graph::new();
            let a = g.add_input("a", TensorType::quantized(vec![m, k], pt(xq, 0.05, zx)));
            let wd = if trans_b { vec![n, k] } else { vec![k, n] };
            let wv: Vec<i8> = (0..k * n).map(|_| rng.range(-127, 127) as i8).collect();
            let w = qconst(
                &mut g,
                Tensor::new(wd, TensorData::I8(wv)).expect("w"),
                Some(QuantParams::per_axis(
                    QType::I8,
                    if trans_b { 0 } else { 1 },
                    (0..n).map(|j| 0.001 + 0.0005 * (j % 3) as f32).collect(),
                    vec![0; n],
                )),
            );
            let c = qconst(
                &mut g,
                Tensor::new(
                    vec![n],
                    TensorData::I32((0..n as i32).map(|j| j * 37 - 50).collect()),
                )
                .expect("c"),
                None,
            );
            let op = Op::Gemm(qc_ir::GemmAttrs {
                alpha: 1.0,
                beta: 1.0,
                trans_a: false,
                trans_b,
                act: Activation::None,
            });
            let sy = 0.05 * 0.0015 * 30.0 * (k as f32).sqrt();
            let y = node_q(&mut g, op, &[a, w, c], pt(QType::I8, sy, -3));
            g.add_output("y", y);
            for contract in Contract::ALL {
                let ins = inputs_for(&g, 5);
                for ks in KERNEL_SETS {
                    compare_bits(
                        &g,
                        &ins,
                        contract,
                        ks,
                        &format!("gemm {m}x{k}x{n} tb {trans_b} {xq:?} {contract} {ks:?}"),
                    );
                }
            }
        }
    }
}

/// Shapes that take each fast path of the quantized packing at least once: the direct
/// 1×1 (no im2col; column counts with and without a 16-column tail; odd and even k),
/// stride-1 row copies shorter and longer than 16 bytes and longer than 8 vectors
/// (a loop), strided gathers, stride-2 taps over phase planes, taps entirely in the
/// padding, depthwise and grouped, and row counts that leave partial native tiles.
#[test]
fn fixed_shapes_cover_fast_paths() {
    type Case = (
        usize,
        usize,
        usize,
        usize,
        usize,
        [usize; 2],
        [usize; 2],
        [usize; 2],
        [usize; 4],
    );
    #[rustfmt::skip]
    let shapes: [Case; 20] = [
        // c_in, c_out, group, h, w, k, s, d, pads
        // Stride-2 gathers of 16 outputs per vector step, with a scalar tail.
        (3, 8, 1, 9, 70, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]),
        (2, 5, 1, 5, 67, [3, 4], [1, 2], [1, 1], [0, 2, 1, 1]),
        // Depthwise planes small enough to share kernel calls: one full group of 256
        // channels and a partial one; with a channel multiplier of 2.
        (300, 300, 300, 4, 4, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        (150, 300, 150, 4, 4, [3, 3], [2, 2], [1, 1], [1, 0, 1, 1]),
        (7, 13, 1, 5, 7, [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
        (24, 40, 1, 12, 12, [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
        (6, 10, 2, 3, 11, [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
        (5, 9, 1, 9, 23, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        (16, 16, 16, 17, 17, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]),
        (8, 8, 1, 6, 6, [1, 1], [2, 2], [1, 1], [0, 0, 0, 0]),
        (3, 7, 1, 13, 40, [5, 5], [1, 1], [2, 2], [4, 4, 4, 4]),
        (2, 3, 1, 2, 300, [1, 3], [1, 1], [1, 1], [0, 1, 0, 1]),
        (3, 5, 1, 4, 5, [3, 3], [1, 1], [1, 1], [3, 3, 3, 3]),
        (32, 37, 1, 7, 7, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        // Stride 2 over phase planes: a 7×7 stem with 16-sample gathers, even kernels
        // and asymmetric pads, a plane row shorter than 16.
        (3, 16, 1, 21, 45, [7, 7], [2, 2], [1, 1], [3, 3, 3, 3]),
        (5, 8, 1, 10, 11, [4, 2], [2, 2], [1, 1], [1, 0, 2, 1]),
        (4, 9, 1, 8, 9, [3, 3], [2, 2], [1, 1], [0, 1, 1, 0]),
        // Depthwise rows of 32 outputs or more (byte planes and quads): two 64-column
        // steps with a tail, stride 2 with a channel multiplier, dilated 5×5.
        (6, 6, 6, 9, 70, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        (4, 8, 4, 10, 80, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]),
        (3, 3, 3, 5, 66, [5, 5], [1, 1], [2, 2], [4, 4, 4, 4]),
    ];
    let mut rng = Rng(0xfa57);
    for (case, &(c_in, c_out, group, h, w, k, s, d, pads)) in shapes.iter().enumerate() {
        let sh = Shape {
            n: 1 + case % 2,
            c_in,
            c_out,
            group,
            h,
            w,
            k,
            s,
            d,
            pads,
            act: Activation::Relu,
        };
        for xq in [QType::U8, QType::I8] {
            let g = quant_conv(&mut rng, &sh, xq, case % 2 == 0, true);
            let ins = inputs_for(&g, case as u64);
            for contract in Contract::ALL {
                for ks in KERNEL_SETS {
                    compare_bits(
                        &g,
                        &ins,
                        contract,
                        ks,
                        &format!("fixed {case} {xq:?} {contract} {ks:?}: {}", describe(&sh)),
                    );
                }
            }
        }
    }
}

/// Output scales far too small (the scaled sums leave the i32 range, so every result
/// saturates, through the float-to-int conversion's saturation) and far too large
/// (everything rounds to the zero point): the vector epilogue's clamping order must
/// still give the interpreter's values.
#[test]
fn extreme_output_scales_saturate_like_the_interpreter() {
    let mut rng = Rng(0x5a7);
    let sh = Shape {
        n: 1,
        c_in: 16,
        c_out: 20,
        group: 1,
        h: 6,
        w: 9,
        k: [3, 3],
        s: [1, 1],
        d: [1, 1],
        pads: [1, 1, 1, 1],
        act: Activation::None,
    };
    for (i, mul) in [1e-9f32, 1e-4, 1e4].into_iter().enumerate() {
        for xq in [QType::U8, QType::I8] {
            let g = quant_conv_scaled(&mut rng, &sh, xq, true, true, mul);
            let ins = inputs_for(&g, i as u64);
            for contract in Contract::ALL {
                for ks in KERNEL_SETS {
                    compare_bits(
                        &g,
                        &ins,
                        contract,
                        ks,
                        &format!("scale x{mul} {xq:?} {contract} {ks:?}"),
                    );
                }
            }
        }
    }
}
