//! The `float` contract's fused add and softmax against onnxruntime's `QLinearAdd` and
//! `QLinearSoftmax`: outputs recorded by `fixtures/gen/fused_ops.py` for every pair of
//! codes (add, in its three broadcast forms) and random rows (softmax).

mod common;

use common::{node_q, pt, t};
use qc_interp::Contract;
use qc_ir::{Activation, Graph, Op, QType, TensorData, TensorType};

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/fused")
        .join(name)
}

fn npy_f64(name: &str) -> Vec<f64> {
    let bytes = std::fs::read(fixture(name)).expect("fixture (run fixtures/gen/fused_ops.py)");
    npyz::NpyFile::new(&bytes[..]).unwrap().into_vec().unwrap()
}

fn npy_u8(name: &str) -> Vec<u8> {
    let bytes = std::fs::read(fixture(name)).expect("fixture (run fixtures/gen/fused_ops.py)");
    npyz::NpyFile::new(&bytes[..]).unwrap().into_vec().unwrap()
}

fn codes(q: QType, bytes: &[u8]) -> TensorData {
    match q {
        QType::U8 => TensorData::U8(bytes.to_vec()),
        _ => TensorData::I8(bytes.iter().map(|&b| b as i8).collect()),
    }
}

fn bytes(d: &TensorData) -> Vec<u8> {
    match d {
        TensorData::U8(v) => v.clone(),
        TensorData::I8(v) => v.iter().map(|&x| x as u8).collect(),
        other => panic!("unexpected {:?}", other.dtype()),
    }
}

#[test]
fn add_matches_onnxruntime_for_every_pair_of_codes() {
    let params = npy_f64("add_params.npy");
    let outs = npy_u8("add_out.npy");
    let cases = params.len() / 8;
    assert_eq!(outs.len(), cases * 65536);
    let mut mismatches = 0;
    for (c, p) in params.chunks(8).enumerate() {
        let q = if p[0] == 0.0 { QType::U8 } else { QType::I8 };
        let form = p[1] as u8;
        let (sa, za, sb, zb, sc, zc) = (
            p[2] as f32,
            p[3] as i32,
            p[4] as f32,
            p[5] as i32,
            p[6] as f32,
            p[7] as i32,
        );
        let all: Vec<u8> = (0..=255u8)
            .map(|i| if q == QType::U8 { i } else { i ^ 0x80 })
            .collect();
        // Shapes as the script ran them; `b` as [256, 1] (form 2) gives y[b, a].
        let (ash, bsh, a, b): (Vec<usize>, Vec<usize>, Vec<u8>, Vec<u8>) = match form {
            0 => (
                vec![65536],
                vec![65536],
                all.iter()
                    .flat_map(|&x| std::iter::repeat_n(x, 256))
                    .collect(),
                (0..256).flat_map(|_| all.iter().copied()).collect(),
            ),
            1 => (vec![256, 1], vec![256], all.clone(), all.clone()),
            _ => (vec![256], vec![256, 1], all.clone(), all.clone()),
        };
        let mut g = Graph::new();
        let av = g.add_input("a", TensorType::quantized(ash.clone(), pt(q, sa, za)));
        let bv = g.add_input("b", TensorType::quantized(bsh.clone(), pt(q, sb, zb)));
        let y = node_q(
            &mut g,
            Op::Add {
                act: Activation::None,
            },
            &[av, bv],
            pt(q, sc, zc),
        );
        g.add_output("y", y);
        let got = common::run_with(
            &g,
            &[t(&ash, codes(q, &a)), t(&bsh, codes(q, &b))],
            Contract::Float,
        );
        let mut got = bytes(got[0].data());
        if form == 2 {
            let tr: Vec<u8> = (0..65536).map(|i| got[(i % 256) * 256 + i / 256]).collect();
            got = tr;
        }
        let want = &outs[c * 65536..(c + 1) * 65536];
        let bad = got.iter().zip(want).filter(|(x, y)| x != y).count();
        if bad > 0 {
            eprintln!("case {c} ({q:?}, form {form}): {bad} of 65536 differ");
        }
        mismatches += bad;
    }
    assert_eq!(mismatches, 0);
}

#[test]
fn softmax_matches_onnxruntime() {
    let params = npy_f64("softmax_params.npy");
    let xs = npy_u8("softmax_x.npy");
    let ys = npy_u8("softmax_y.npy");
    let rows = 64;
    let mut at = 0;
    let mut mismatches = 0;
    for (c, p) in params.chunks(6).enumerate() {
        let q = if p[0] == 0.0 { QType::U8 } else { QType::I8 };
        let (sx, zx, sy, zy, d) = (
            p[1] as f32,
            p[2] as i32,
            p[3] as f32,
            p[4] as i32,
            p[5] as usize,
        );
        let n = rows * d;
        let mut g = Graph::new();
        let x = g.add_input("x", TensorType::quantized(vec![rows, d], pt(q, sx, zx)));
        let y = node_q(&mut g, Op::Softmax { axis: 1 }, &[x], pt(q, sy, zy));
        g.add_output("y", y);
        let got = common::run_with(
            &g,
            &[t(&[rows, d], codes(q, &xs[at..at + n]))],
            Contract::Float,
        );
        let got = bytes(got[0].data());
        let bad = got
            .iter()
            .zip(&ys[at..at + n])
            .filter(|(a, b)| a != b)
            .count();
        if bad > 0 {
            eprintln!("softmax case {c} ({q:?}, d {d}): {bad} of {n} differ");
        }
        mismatches += bad;
        at += n;
    }
    assert_eq!(at, xs.len());
    assert_eq!(mismatches, 0);
}

#[test]
fn global_average_matches_onnxruntime() {
    let params = npy_f64("mean_params.npy");
    let ys = npy_u8("mean_y.npy");
    let (mut at_y, mut mismatches) = (0, 0);
    for (case, p) in params.chunks(7).enumerate() {
        let q = if p[0] == 0.0 { QType::U8 } else { QType::I8 };
        let (sx, zx, sy, zy) = (p[1] as f32, p[2] as i32, p[3] as f32, p[4] as i32);
        let (c, n) = (p[5] as usize, p[6] as usize);
        // The script's `mean_codes` hash.
        let lo = if q == QType::U8 { 0 } else { -128 };
        let xs: Vec<u8> = (0..(c * n) as u64)
            .map(|i| {
                let v = (i * 1_103_515_245 + 12_345 + 7_919 * case as u64) % (1 << 31);
                (((v >> 16) & 255) as i64 + lo) as u8
            })
            .collect();
        // As a global pool over [1, c, n], and as an average pool whose window is the
        // whole [n, 1] image.
        for op in [
            Op::GlobalAveragePool,
            Op::AveragePool {
                pool: qc_ir::PoolAttrs {
                    kernel: vec![n, 1],
                    strides: vec![1, 1],
                    dilations: vec![1, 1],
                    pads: vec![0; 4],
                    ceil_mode: false,
                },
                count_include_pad: false,
            },
        ] {
            let shape = if matches!(op, Op::GlobalAveragePool) {
                vec![1, c, n]
            } else {
                vec![1, c, n, 1]
            };
            let mut g = Graph::new();
            let x = g.add_input("x", TensorType::quantized(shape.clone(), pt(q, sx, zx)));
            let y = node_q(&mut g, op, &[x], pt(q, sy, zy));
            g.add_output("y", y);
            let got = common::run_with(&g, &[t(&shape, codes(q, &xs))], Contract::Float);
            let got = bytes(got[0].data());
            let bad = got
                .iter()
                .zip(&ys[at_y..at_y + c])
                .filter(|(a, b)| a != b)
                .count();
            if bad > 0 {
                eprintln!("mean case {case} ({q:?}, n {n}): {bad} of {c} differ");
            }
            mismatches += bad;
        }
        at_y += c;
    }
    assert_eq!(at_y, ys.len());
    assert_eq!(mismatches, 0);
}
