//! The fixture models: import, run the default pass pipeline, compile, and compare
//! the JIT with the interpreter on the same optimized graph (quantized: bits; float:
//! rtol 1e-5). Also: concurrent runs agree, typed errors, timing printout
//! (`cargo test -p qc-jit --release --test models -- --nocapture`).

#![allow(clippy::panic, clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::{compare, inputs_for, Rng};
use qc_ir::{Graph, Tensor, TensorData};
use qc_jit::{compile, Contract, JitOptions};

fn load(name: &str) -> Graph {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(format!("{name}.onnx"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut g = qc_onnx::import(
        &bytes,
        &qc_onnx::ImportOptions::default(),
        &qc_onnx::NoExternalData,
    )
    .unwrap_or_else(|e| panic!("{name}: import: {e}"));
    let pipeline = qc_passes::Pipeline::parse("default").expect("pipeline");
    let mut cx = qc_passes::PassCx::new(Default::default());
    pipeline
        .run(&mut g, &mut cx)
        .unwrap_or_else(|e| panic!("{name}: passes: {e}"));
    g
}

/// Float model inputs: images in [-1, 1] rather than the generic [-4, 4].
fn image_inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut rng = Rng(seed);
    g.inputs
        .iter()
        .map(|p| {
            let ty = &g.value(p.value).ty;
            let n: usize = ty.shape.dims().iter().product();
            Tensor::new(
                ty.shape.clone(),
                TensorData::F32((0..n).map(|_| rng.f32(-1.0, 1.0)).collect()),
            )
            .expect("input")
        })
        .collect()
}

fn check_model(name: &str, rtol: f32) {
    let g = load(name);
    for seed in [3, 4] {
        let ins = image_inputs(&g, seed);
        compare(&g, &ins, Contract::Float, rtol, name);
    }
}

#[test]
fn cnn_qdq() {
    check_model("cnn_qdq", 0.0);
}

#[test]
fn cnn_float() {
    check_model("cnn_float", 1e-5);
}

#[test]
fn mobilenetv2_qdq() {
    check_model("mobilenetv2_qdq", 0.0);
}

#[test]
fn mobilenetv2_float() {
    check_model("mobilenetv2_float", 1e-5);
}

#[test]
fn mobilenetv2_qdq_integer_contracts() {
    let g = load("mobilenetv2_qdq");
    let ins = image_inputs(&g, 9);
    for c in [Contract::Fixed, Contract::FixedSingle] {
        compare(&g, &ins, c, 0.0, &format!("mobilenetv2_qdq {c}"));
    }
}

#[test]
fn concurrent_runs_agree() {
    let g = load("mobilenetv2_qdq");
    let m = compile(&g, &JitOptions::default()).expect("compile");
    let ins = image_inputs(&g, 11);
    let first = m.run(&ins).expect("run");
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..5)
                        .map(|_| m.run(&ins).expect("run"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in hs {
            for r in h.join().expect("thread") {
                assert_eq!(r, first);
            }
        }
    });
}

#[test]
fn typed_errors_and_run_into() {
    let g = load("cnn_qdq");
    let m = compile(&g, &JitOptions::default()).expect("compile");
    assert!(matches!(
        m.run(&[]),
        Err(qc_jit::Error::InputCount {
            expected: 1,
            got: 0
        })
    ));
    let wrong = Tensor::from_f32(vec![1], vec![0.0]).expect("t");
    assert!(matches!(
        m.run(&[wrong]),
        Err(qc_jit::Error::InputMismatch { index: 0, .. })
    ));
    // run_into with raw bytes gives the same as run.
    let ins = inputs_for(&g, 1);
    let want = m.run(&ins).expect("run");
    let bytes: Vec<Vec<u8>> = ins.iter().map(|t| t.data().to_le_bytes()).collect();
    let refs: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
    let mut outs: Vec<Vec<u8>> = m
        .output_types()
        .iter()
        .map(|t| vec![0u8; t.size_bytes().expect("size")])
        .collect();
    let mut orefs: Vec<&mut [u8]> = outs.iter_mut().map(|b| b.as_mut_slice()).collect();
    m.run_into(&refs, &mut orefs).expect("run_into");
    for (w, o) in want.iter().zip(&outs) {
        assert_eq!(&w.data().to_le_bytes(), o);
    }
    let mut short = vec![0u8; 1];
    let mut bad: Vec<&mut [u8]> = vec![short.as_mut_slice()];
    assert!(matches!(
        m.run_into(&refs, &mut bad),
        Err(qc_jit::Error::OutputMismatch { index: 0, .. })
    ));
}

/// Not a timed test: prints compile time, code/arena/constant sizes and run times
/// of the JIT and the interpreter (use --release and --nocapture to read them).
#[test]
fn report_numbers() {
    for name in ["mobilenetv2_qdq", "mobilenetv2_float"] {
        let g = load(name);
        let t = Instant::now();
        let m = compile(&g, &JitOptions::default()).expect("compile");
        let compile_time = t.elapsed();
        let ins = image_inputs(&g, 1);
        let _ = m.run(&ins).expect("warm-up");
        let iters = 5;
        let t = Instant::now();
        for _ in 0..iters {
            let _ = m.run(&ins).expect("run");
        }
        let jit = t.elapsed() / iters;
        let t = Instant::now();
        let _ = qc_interp::run(&g, &ins, &qc_interp::Options::default()).expect("interp");
        let interp = t.elapsed();
        let s = m.stats();
        let mut ops: Vec<&str> = g.nodes.iter().map(|n| n.op.name()).collect();
        ops.sort_unstable();
        ops.dedup();
        println!("{name}: ops {}", ops.join(", "));
        println!(
            "{name}: nodes {} compile {:?} (stats {:?}) code {} B, arena {} B (lower bound {} B), consts {} B; run: jit {:?}, interp {:?}",
            g.nodes.len(),
            compile_time,
            s.compile_time,
            s.code_bytes,
            s.arena_bytes,
            s.arena_lower_bound,
            s.const_bytes,
            jit,
            interp
        );
        assert!(s.arena_lower_bound <= s.arena_bytes);
    }
}
