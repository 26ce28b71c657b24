//! qc's own exp / ln / tanh / pow / sigmoid in the emitted C against `qc_ir::real`:
//! (a) the C functions alone over a sweep of bit patterns, every result bit for bit;
//! (b) f32 sigmoid, tanh, softmax and lrn graphs emitted whole and compared bit for
//! bit with `qc_interp::run` under `-fsanitize=address,undefined`. Skipped (with a
//! message) when gcc is not installed.

#![allow(clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use qc_cgen::{CSource, CgenOptions, Contract};
use qc_ir::{Graph, LrnAttrs, Op, Tensor, TensorData, TensorType};

const CFLAGS: &[&str] = &["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"];
const SANITIZE: &[&str] = &[
    "-O2",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
];

fn have_gcc() -> bool {
    Command::new("gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A deterministic generator so the tests are reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 32) as u32
    }
}

fn workdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qc-cgen-fmath-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn gcc(dir: &Path, flags: &[&str], args: &[&str]) {
    let out = Command::new("gcc")
        .current_dir(dir)
        .args(CFLAGS)
        .args(flags)
        .args(args)
        .output()
        .expect("run gcc");
    assert!(
        out.status.success(),
        "gcc {args:?} failed in {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn f(d: &[usize]) -> TensorType {
    TensorType::f32(d.to_vec())
}

fn lrn(size: usize, alpha: f32, beta: f32, bias: f32) -> Op {
    Op::Lrn(LrnAttrs {
        size,
        alpha,
        beta,
        bias,
    })
}

/// A graph applying each op to one input `x` of shape `dims`, one output per op.
fn graph(dims: &[usize], ops: &[Op]) -> Graph {
    let mut g = Graph::new();
    let x = g.add_input("x", f(dims));
    for (i, op) in ops.iter().enumerate() {
        let n = g.add_node(op.clone(), vec![x], vec![f(dims)], format!("op{i}"));
        let y = g.node(n).outputs[0];
        g.add_output(format!("y{i}"), y);
    }
    g
}

fn emit(g: &Graph, name: &str) -> CSource {
    let opts = CgenOptions {
        name: name.into(),
        contract: Contract::Float,
        ..Default::default()
    };
    qc_cgen::emit(g, &opts).unwrap_or_else(|e| panic!("{name}: emit: {e}"))
}

/// Inputs of a sweep: every 2039th bit pattern, then values around the functions'
/// edges (thresholds, powers of two, subnormals, infinities, NaNs); each with an
/// exponent for `pow` (lrn-like ones, simple ones, or random bits).
fn sweep() -> Vec<(u32, u32)> {
    let mut xs: Vec<u32> = (0..=u32::MAX).step_by(2039).collect();
    let edges = [
        0.0f32,
        -0.0,
        1.0,
        -1.0,
        0.5,
        2.0,
        88.72283,
        88.72284,
        -87.33654,
        -103.0,
        -103.97208,
        -104.0,
        -150.0,
        9.0,
        9.125,
        0.5625,
        1.0 / 4096.0,
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        std::f32::consts::SQRT_2,
        std::f32::consts::FRAC_1_SQRT_2,
        std::f32::consts::LN_2,
    ];
    for e in edges {
        let b = e.to_bits();
        for d in 0..8u32 {
            xs.extend([b.wrapping_add(d), b.wrapping_sub(d), b ^ 0x8000_0000]);
        }
    }
    xs.extend(1..64u32);
    // Dense over [-20, 20] where exp/tanh/sigmoid do their work.
    let mut rng = Rng(7);
    for _ in 0..400_000 {
        xs.push((40.0 * (rng.next() as f32 / u32::MAX as f32) - 20.0).to_bits());
    }
    let ys = [0.75f32, 0.5, -0.75, 2.0, 1.0 / 3.0, 0.0, -1.0, 3.5];
    xs.iter()
        .enumerate()
        .map(|(i, &x)| {
            let y = if i % 9 == 8 {
                rng.next()
            } else {
                ys[i % 9 % ys.len()].to_bits()
            };
            (x, y)
        })
        .collect()
}

/// (a) The C functions return the Rust functions' bits for every input of the sweep.
#[test]
fn c_functions_match_rust_bit_for_bit() {
    if !have_gcc() {
        eprintln!("gcc not installed: skipped");
        return;
    }
    // One model using all five functions: the driver includes its source.
    let g = graph(
        &[1, 3, 2],
        &[
            Op::Sigmoid,
            Op::Tanh,
            Op::Softmax { axis: 1 },
            lrn(3, 1e-4, 0.75, 1.0),
        ],
    );
    let src = emit(&g, "fm");
    for name in ["qc_expf", "qc_logf", "qc_tanhf", "qc_powf", "qc_sigmoidf"] {
        assert!(
            src.source.contains(&format!("static float {name}(")),
            "{name}"
        );
    }
    let dir = workdir("fns");
    std::fs::write(dir.join("fm.h"), &src.header).expect("write .h");
    std::fs::write(dir.join("fm.c"), &src.source).expect("write .c");
    let driver = r#"
#include <stdio.h>
#include "fm.c"

/* Reads (x, y) bit pairs from in.bin, writes the bits of exp x, ln x, tanh x,
 * sigmoid x and pow(x, y) to out.bin. */
int main(void)
{
    FILE *in = fopen("in.bin", "rb"), *out = fopen("out.bin", "wb");
    uint32_t p[2];
    if (in == NULL || out == NULL) {
        return 1;
    }
    while (fread(p, sizeof p[0], 2, in) == 2) {
        float x = qc_cm_float(p[0]), y = qc_cm_float(p[1]);
        float r[5];
        uint32_t b[5];
        r[0] = qc_expf(x);
        r[1] = qc_logf(x);
        r[2] = qc_tanhf(x);
        r[3] = qc_sigmoidf(x);
        r[4] = qc_powf(x, y);
        memcpy(b, r, sizeof b);
        if (fwrite(b, sizeof b[0], 5, out) != 5) {
            return 1;
        }
    }
    return fclose(out) != 0 || fclose(in) != 0;
}
"#;
    std::fs::write(dir.join("driver.c"), driver).expect("write driver");
    gcc(&dir, &["-O2"], &["driver.c", "-o", "driver"]);
    let pairs = sweep();
    let bytes: Vec<u8> = pairs
        .iter()
        .flat_map(|&(x, y)| [x.to_le_bytes(), y.to_le_bytes()])
        .flatten()
        .collect();
    std::fs::write(dir.join("in.bin"), bytes).expect("write in.bin");
    let st = Command::new(dir.join("driver"))
        .current_dir(&dir)
        .status()
        .expect("run driver");
    assert!(st.success(), "driver failed: {st}");
    let out = std::fs::read(dir.join("out.bin")).expect("read out.bin");
    assert_eq!(out.len(), pairs.len() * 20, "result count");
    let names = ["exp", "ln", "tanh", "sigmoid", "pow"];
    let mut bad = Vec::new();
    for (&(xb, yb), c) in pairs.iter().zip(out.chunks_exact(20)) {
        let (x, y) = (f32::from_bits(xb), f32::from_bits(yb));
        let want = [
            qc_ir::real::exp(x),
            qc_ir::real::ln(x),
            qc_ir::real::tanh(x),
            qc_ir::real::sigmoid(x),
            qc_ir::real::pow(x, y),
        ];
        for (k, (w, cb)) in want.iter().zip(c.chunks_exact(4)).enumerate() {
            let got = u32::from_le_bytes([cb[0], cb[1], cb[2], cb[3]]);
            if got != w.to_bits() {
                bad.push(format!(
                    "{}({x:e} [{xb:#010x}], y {y:e}): C {got:#010x}, Rust {:#010x}",
                    names[k],
                    w.to_bits()
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} results differ, e.g.:\n{}",
        bad.len(),
        pairs.len() * 5,
        bad[..bad.len().min(10)].join("\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Float inputs over many magnitudes, with some zeros, infinities and a NaN.
fn inputs(g: &Graph, seed: u64, specials: bool) -> Vec<Tensor> {
    let mut rng = Rng(seed);
    g.inputs
        .iter()
        .map(|p| {
            let ty = &g.value(p.value).ty;
            let n: usize = ty.shape.dims().iter().product();
            let v: Vec<f32> = (0..n)
                .map(|i| {
                    if specials && i % 17 == 3 {
                        let s = [0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
                        return s[(rng.next() % 5) as usize];
                    }
                    let m = rng.next() as f32 / u32::MAX as f32;
                    let sign = if rng.next().is_multiple_of(2) {
                        1.0
                    } else {
                        -1.0
                    };
                    // |v| from 2^-20 to 2^8, two thirds of them within [2^-4, 2^2].
                    let e = (rng.next() % 28) as i32 - 20;
                    let e = if rng.next().is_multiple_of(3) {
                        e
                    } else {
                        e / 5
                    };
                    sign * (1.0 + m) * 2f32.powi(e)
                })
                .collect();
            Tensor::new(ty.shape.clone(), TensorData::F32(v)).expect("tensor")
        })
        .collect()
}

/// Emit, compile and run `g` under the sanitizers; compare every output with the
/// interpreter bit for bit (NaN included).
fn verify(g: &Graph, tag: &str, seeds: &[u64], specials: bool) -> CSource {
    let src = emit(g, tag);
    let dir = workdir(tag);
    std::fs::write(dir.join(format!("{tag}.h")), &src.header).expect("write .h");
    std::fs::write(dir.join(format!("{tag}.c")), &src.source).expect("write .c");
    gcc(
        &dir,
        SANITIZE,
        &["-c", &format!("{tag}.c"), "-o", &format!("{tag}.o")],
    );
    let iopts = qc_interp::Options {
        contract: Contract::Float,
    };
    for &seed in seeds {
        let ins = inputs(g, seed, specials);
        let want = qc_interp::run(g, &ins, &iopts).unwrap_or_else(|e| panic!("{tag}: interp: {e}"));
        let main = qc_cgen::test_main(g, &src, &ins, false).expect("test main");
        let exe = format!("t_{seed}");
        std::fs::write(dir.join(format!("{exe}.c")), main).expect("write main");
        gcc(
            &dir,
            SANITIZE,
            &[&format!("{exe}.c"), &format!("{tag}.o"), "-o", &exe],
        );
        let out = Command::new(dir.join(&exe)).output().expect("run test");
        assert!(
            out.status.success(),
            "{tag}: {exe} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let got = qc_cgen::parse_test_output(g, &src, &stdout, false).expect("parse output");
        assert_eq!(got.len(), want.len());
        for (k, (w, c)) in want.iter().zip(&got).enumerate() {
            assert_eq!(w.dims(), c.dims(), "{tag}: output {k} shape");
            let (wv, cv) = (w.to_f32_vec(), c.to_f32_vec());
            let diff: Vec<usize> = (0..wv.len())
                .filter(|&i| wv[i].to_bits() != cv[i].to_bits())
                .collect();
            assert!(
                diff.is_empty(),
                "{tag} seed {seed}: output {k}: {} of {} differ, first at {}: interp {:e}, C {:e}",
                diff.len(),
                wv.len(),
                diff[0],
                wv[diff[0]],
                cv[diff[0]]
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    src
}

/// (b) Sigmoid, tanh, softmax over every axis and lrn of odd, even and unit sizes.
#[test]
fn transcendental_graphs_bit_exact() {
    if !have_gcc() {
        eprintln!("gcc not installed: skipped");
        return;
    }
    let ops = [
        Op::Sigmoid,
        Op::Tanh,
        Op::Softmax { axis: 0 },
        Op::Softmax { axis: 1 },
        Op::Softmax { axis: 2 },
        Op::Softmax { axis: 3 },
        lrn(3, 1e-4, 0.75, 1.0),
        lrn(4, 0.5, 0.6, 2.0),
        lrn(1, 2.0, 1.5, 0.5),
        lrn(7, 1.0, 0.75, 1.0),
    ];
    let g = graph(&[2, 5, 3, 4], &ops);
    let src = verify(&g, "fm_all", &[1, 2], false);
    assert!(src.source.contains("qc_flrn(") && src.source.contains("qc_fsoftmax("));
    // Zeros, infinities and NaN through every kernel.
    verify(&g, "fm_special", &[3], true);
    // Rank 2 and 3 (lrn with no spatial dims), and a chain through one buffer.
    let g = graph(
        &[3, 7],
        &[Op::Softmax { axis: 1 }, lrn(2, 0.1, 0.75, 1.0), Op::Tanh],
    );
    verify(&g, "fm_rank2", &[4], false);
    let mut g = Graph::new();
    let x = g.add_input("x", f(&[2, 4, 5]));
    let mut last = x;
    for (i, op) in [
        Op::Tanh,
        Op::Sigmoid,
        Op::Softmax { axis: 2 },
        lrn(3, 0.2, 0.5, 1.0),
    ]
    .into_iter()
    .enumerate()
    {
        let n = g.add_node(op, vec![last], vec![f(&[2, 4, 5])], format!("c{i}"));
        last = g.node(n).outputs[0];
    }
    g.add_output("y", last);
    verify(&g, "fm_chain", &[5], false);
}

/// Only the functions a model calls are emitted (an unused `static` function would
/// not compile under `-Werror`).
#[test]
fn only_used_functions_are_emitted() {
    let has = |src: &CSource, f: &str| src.source.contains(&format!("static float {f}("));
    let s = emit(&graph(&[1, 4], &[Op::Tanh]), "fm_t");
    assert!(has(&s, "qc_tanhf") && has(&s, "qc_expf"));
    assert!(!has(&s, "qc_logf") && !has(&s, "qc_powf") && !has(&s, "qc_sigmoidf"));
    let s = emit(&graph(&[1, 4], &[Op::Softmax { axis: 1 }]), "fm_s");
    assert!(has(&s, "qc_expf") && !has(&s, "qc_tanhf") && !has(&s, "qc_logf"));
    let s = emit(&graph(&[1, 4], &[Op::Relu]), "fm_r");
    assert!(!has(&s, "qc_expf") && !s.source.contains("qc_cm_float"));
    // Two sigmoid nodes share one definition.
    let s = emit(&graph(&[1, 4], &[Op::Sigmoid, Op::Sigmoid]), "fm_2");
    assert_eq!(s.source.matches("static float qc_expf(").count(), 1);
}
