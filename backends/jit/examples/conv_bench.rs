//! Single-threaded median latency and GMAC/s of MobileNetV2-224 layers on the JIT,
//! quantized (u8 activations, i8 per-channel weights), for both kernel sets.
//!
//! `cargo run --release -p qc-jit --example conv_bench [-- ITERS | --peak]`
//!
//! After the layers it prints each one's fraction of the instruction peaks, measured
//! in the same run.

use std::sync::Arc;
use std::time::Instant;

use qc_ir::{Activation, ConvAttrs, Graph, Op, QType, QuantParams, Tensor, TensorData, TensorType};
use qc_jit::{JitOptions, KernelSet};

struct Layer {
    name: &'static str,
    c_in: usize,
    c_out: usize,
    group: usize,
    hw: usize,
    k: usize,
    s: usize,
}

const LAYERS: [Layer; 5] = [
    Layer {
        name: "pw 320->1280 7x7",
        c_in: 320,
        c_out: 1280,
        group: 1,
        hw: 7,
        k: 1,
        s: 1,
    },
    Layer {
        name: "pw 24->144 56x56",
        c_in: 24,
        c_out: 144,
        group: 1,
        hw: 56,
        k: 1,
        s: 1,
    },
    Layer {
        name: "pw 144->24 56x56",
        c_in: 144,
        c_out: 24,
        group: 1,
        hw: 56,
        k: 1,
        s: 1,
    },
    Layer {
        name: "3x3 s2 3->32 224",
        c_in: 3,
        c_out: 32,
        group: 1,
        hw: 224,
        k: 3,
        s: 2,
    },
    Layer {
        name: "dw3x3 144 56x56",
        c_in: 144,
        c_out: 144,
        group: 144,
        hw: 56,
        k: 3,
        s: 1,
    },
];

/// xorshift, deterministic.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn layer_graph(l: &Layer) -> (Graph, usize) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut g = Graph::new();
    let x = g.add_input(
        "x",
        TensorType::quantized(
            vec![1, l.c_in, l.hw, l.hw],
            QuantParams::per_tensor(QType::U8, 0.02, 128),
        ),
    );
    let cin_g = l.c_in / l.group;
    let wn = l.c_out * cin_g * l.k * l.k;
    let wv: Vec<i8> = (0..wn).map(|_| (rng.next() % 255) as i8).collect();
    let wq = QuantParams::per_axis(
        QType::I8,
        0,
        (0..l.c_out)
            .map(|c| 0.002 + 0.0001 * (c % 7) as f32)
            .collect(),
        vec![0; l.c_out],
    );
    let w = g.add_const_tensor(Arc::new(
        Tensor::new(vec![l.c_out, cin_g, l.k, l.k], TensorData::I8(wv)).expect("w"),
    ));
    let w = g.add_const_value(w, Some(wq));
    let b = g.add_const_tensor(Arc::new(
        Tensor::new(
            vec![l.c_out],
            TensorData::I32((0..l.c_out as i32).map(|c| c * 13 - 500).collect()),
        )
        .expect("b"),
    ));
    let b = g.add_const_value(b, None);
    let p = l.k / 2;
    let op = Op::Conv(ConvAttrs {
        kernel: vec![l.k, l.k],
        strides: vec![l.s, l.s],
        dilations: vec![1, 1],
        pads: vec![p, p, p, p],
        group: l.group,
        act: Activation::Clip { min: 0.0, max: 6.0 },
    });
    let tys: Vec<&TensorType> = [x, w, b].iter().map(|&v| g.ty(v)).collect();
    let mut out = qc_ir::infer::infer(&op, &tys).expect("inference");
    out.truncate(1);
    let ho = out[0].shape.dims()[2];
    let sy = 0.02 * 0.002 * 40.0 * ((cin_g * l.k * l.k) as f32).sqrt();
    out[0] = TensorType::quantized(
        out[0].shape.clone(),
        QuantParams::per_tensor(QType::U8, sy, 0),
    );
    let id = g.add_node(op, vec![x, w, b], out, "conv");
    let y = g.node(id).outputs[0];
    g.add_output("y", y);
    let macs = l.c_out * ho * ho * cin_g * l.k * l.k;
    (g, macs)
}

fn median_secs(m: &qc_jit::CompiledModel, ins: &[&[u8]], out: &mut [u8], iters: usize) -> f64 {
    for _ in 0..3 {
        m.run_into(ins, &mut [&mut *out]).expect("run");
    }
    let mut t: Vec<f64> = (0..iters)
        .map(|_| {
            let t0 = Instant::now();
            m.run_into(ins, &mut [&mut *out]).expect("run");
            t0.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[t.len() / 2]
}

/// Measured MAC peaks of the instructions the two kernel paths are built on, in
/// GMAC/s: 12 independent accumulator chains (more than latency × throughput), inputs
/// hidden from the optimizer.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::incompatible_msrv)]
mod peak {
    use std::arch::x86_64::*;
    use std::hint::black_box;
    use std::time::Instant;

    const ITERS: usize = 20_000_000;

    #[target_feature(enable = "sse2")]
    fn pmaddwd128() -> i32 {
        let a = _mm_set1_epi16(black_box(3));
        let b = _mm_set1_epi16(black_box(5));
        let mut acc = [_mm_setzero_si128(); 12];
        let (mut b, one) = (b, _mm_set1_epi16(1));
        for _ in 0..ITERS {
            // `b` changes every iteration so the products cannot be hoisted.
            b = _mm_add_epi16(b, one);
            for (i, x) in acc.iter_mut().enumerate() {
                let ai = _mm_add_epi16(a, _mm_set1_epi16(i as i16));
                *x = _mm_add_epi32(*x, _mm_madd_epi16(ai, b));
            }
        }
        let mut s = _mm_setzero_si128();
        for x in acc {
            s = _mm_add_epi32(s, x);
        }
        _mm_cvtsi128_si32(s)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn dpbusd512() -> i32 {
        let a = _mm512_set1_epi8(black_box(3));
        let b = _mm512_set1_epi8(black_box(5));
        let mut acc = [_mm512_setzero_si512(); 12];
        for _ in 0..ITERS {
            for x in acc.iter_mut() {
                *x = _mm512_dpbusd_epi32(*x, a, b);
            }
        }
        let mut s = _mm512_setzero_si512();
        for x in acc {
            s = _mm512_add_epi32(s, x);
        }
        _mm512_reduce_add_epi32(s)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn dpwssd512() -> i32 {
        let a = _mm512_set1_epi16(black_box(3));
        let b = _mm512_set1_epi16(black_box(5));
        let mut acc = [_mm512_setzero_si512(); 12];
        for _ in 0..ITERS {
            for x in acc.iter_mut() {
                *x = _mm512_dpwssd_epi32(*x, a, b);
            }
        }
        let mut s = _mm512_setzero_si512();
        for x in acc {
            s = _mm512_add_epi32(s, x);
        }
        _mm512_reduce_add_epi32(s)
    }

    fn time(macs_per_iter: usize, f: impl Fn() -> i32) -> f64 {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t0 = Instant::now();
            black_box(f());
            best = best.min(t0.elapsed().as_secs_f64());
        }
        (ITERS * macs_per_iter) as f64 / best / 1e9
    }

    fn has_vnni512() -> bool {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
    }

    /// The 128-bit `pmaddwd` peak and (with AVX-512 VNNI) the `vpdpbusd` peak.
    pub fn paths() -> (f64, Option<f64>) {
        // SAFETY: SSE2 is part of x86-64.
        let p128 = time(12 * 8, || unsafe { pmaddwd128() });
        // SAFETY: the features were detected first.
        let q = has_vnni512().then(|| time(12 * 64, || unsafe { dpbusd512() }));
        (p128, q)
    }

    pub fn report() {
        let (p128, q) = paths();
        println!("peak 128-bit pmaddwd (Cranelift path's instruction): {p128:6.1} GMAC/s");
        if let Some(q) = q {
            // SAFETY: `paths` found the features.
            let w = time(12 * 32, || unsafe { dpwssd512() });
            println!("peak 512-bit vpdpbusd (u8 x i8 quads):            {q:6.1} GMAC/s");
            println!("peak 512-bit vpdpwssd (i16 pairs):                {w:6.1} GMAC/s");
        }
    }
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    if std::env::args().any(|a| a == "--peak") {
        peak::report();
        return;
    }
    let iters: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    // The peaks are measured in the same run, before and after the layers; the
    // fractions use the higher of the two (the machine is shared and its clock moves).
    #[cfg(target_arch = "x86_64")]
    let before = peak::paths();
    println!(
        "{:<20} {:>8} {:>22} {:>22}",
        "layer", "MMAC", "cranelift ms (GMAC/s)", "auto ms (GMAC/s)"
    );
    let mut rates = Vec::new();
    for l in &LAYERS {
        let (g, macs) = layer_graph(l);
        let mut rng = Rng(5);
        let x: Vec<u8> = (0..l.c_in * l.hw * l.hw)
            .map(|_| rng.next() as u8)
            .collect();
        let ty = &g.value(g.outputs[0].value).ty;
        let mut out = vec![0u8; ty.size_bytes().expect("size")];
        let mut cols = Vec::new();
        let mut outs = Vec::new();
        for ks in [KernelSet::Cranelift, KernelSet::Auto] {
            let m = qc_jit::compile(
                &g,
                &JitOptions {
                    kernels: ks,
                    ..Default::default()
                },
            )
            .expect("compile");
            let s = median_secs(&m, &[&x], &mut out, iters);
            rates.push(macs as f64 / s / 1e9);
            outs.push(out.clone());
            cols.push(format!("{:9.3} ({:6.1})", s * 1e3, macs as f64 / s / 1e9));
        }
        let same = if outs[0] == outs[1] { "" } else { "  MISMATCH" };
        println!(
            "{:<20} {:>8.2} {:>22} {:>22}{same}",
            l.name,
            macs as f64 / 1e6,
            cols[0],
            cols[1]
        );
    }
    #[cfg(target_arch = "x86_64")]
    {
        let after = peak::paths();
        let p128 = before.0.max(after.0);
        let q = before.1.zip(after.1).map(|(a, b)| a.max(b));
        println!(
            "\npeaks (higher of before/after the layers): 128-bit pmaddwd {p128:.1} GMAC/s{}",
            q.map_or(String::new(), |q| format!(
                ", 512-bit vpdpbusd {q:.1} GMAC/s"
            ))
        );
        println!(
            "{:<20} {:>22} {:>22}",
            "layer", "cranelift % of pmaddwd", "auto % of vpdpbusd"
        );
        for (l, r) in LAYERS.iter().zip(rates.chunks(2)) {
            let auto = q.map_or("-".to_string(), |q| format!("{:.0}%", 100.0 * r[1] / q));
            println!("{:<20} {:>21.0}% {:>22}", l.name, 100.0 * r[0] / p128, auto);
        }
    }
}
