//! The ONNX backend node tests and the QDQ fixture models on the Cranelift JIT (`qc-jit`).
//!
//! - The node tests of the quantization ops (QLinearConv, QLinearMatMul, ConvInteger,
//!   MatMulInteger, QuantizeLinear, DequantizeLinear) that `tests/conformance.manifest`
//!   marks `pass` must be **bit-exact** on the JIT.
//! - Every other `pass` case must pass on the JIT with the ONNX tolerances, except the
//!   cases listed in [`JIT_UNSUPPORTED`]; a listed case that passes fails the test, so
//!   the list only shrinks.
//! - `cnn_qdq` and `mobilenetv2_qdq` after the default pipeline match onnxruntime's fused
//!   session: >= 99.9% of output elements identical, none more than one output step off.
//!
//! The harness is that of `conformance.rs` (inputs the importer needs constant are frozen
//! from the test data). A case is compiled as imported; if the JIT rejects that graph, it
//! is compiled after the default pass pipeline.

// Test code: a panic is how a test fails.
#![allow(clippy::panic, clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use common::{fixtures, read_npy, Tol, ONNX_TOL};
use qc_ir::{Graph, Tensor};

/// Bit-exact comparison (integers equal; floats equal up to `0 + 0 * |exp|`).
const EXACT: Tol = Tol {
    rtol: 0.0,
    atol: 0.0,
};

/// Case-name prefixes of the ops that must be bit-exact on the JIT.
const EXACT_OPS: &[&str] = &[
    "test_qlinearconv",
    "test_qlinearmatmul",
    "test_convinteger",
    "test_matmulinteger",
    "test_quantizelinear",
    "test_dequantizelinear",
];

/// Manifest `pass` cases of the exact ops the JIT does not pass yet (kept honest:
/// a listed case that passes fails the test).
const EXACT_PENDING: &[&str] = &[];

/// Other manifest `pass` cases the JIT does not pass yet (kept honest by
/// `onnx_node_cases_on_jit`).
const JIT_UNSUPPORTED: &[&str] = &[];

fn pass_cases() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance.manifest");
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (case, rest) = l.split_once(char::is_whitespace)?;
            (rest.trim() == "pass").then(|| case.to_string())
        })
        .collect()
}

fn default_pipeline(g: &mut Graph) -> Result<(), String> {
    let pipeline = qc_passes::Pipeline::parse("default").map_err(|e| e.to_string())?;
    let mut cx = qc_passes::PassCx::new(Default::default());
    pipeline
        .run(g, &mut cx)
        .map(|_| ())
        .map_err(|e| format!("passes: {e}"))
}

/// Cases that compiled only after the default pipeline (reported, not asserted).
static NEEDED_PIPELINE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Compile as imported; on rejection, after the default pipeline.
fn jit_compile(g: &Graph) -> Result<qc_jit::CompiledModel, String> {
    let opts = qc_jit::JitOptions::default();
    match qc_jit::compile(g, &opts) {
        Ok(m) => Ok(m),
        Err(first) => {
            NEEDED_PIPELINE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut g = g.clone();
            default_pipeline(&mut g)?;
            qc_jit::compile(&g, &opts).map_err(|e| format!("jit: {e} (raw graph: {first})"))
        }
    }
}

fn run_case_jit(case: &Path, tol: Tol) -> Result<(), String> {
    common::check_node_case(case, tol, &|g, args| {
        jit_compile(g)?
            .run(args)
            .map_err(|e| format!("jit run: {e}"))
    })
}

fn run_guarded(case: &str, tol: Tol) -> Result<(), String> {
    let dir = fixtures().join("onnx-node").join(case);
    catch_unwind(AssertUnwindSafe(|| run_case_jit(&dir, tol)))
        .unwrap_or_else(|_| Err("panicked".into()))
}

fn is_exact_op(case: &str) -> bool {
    EXACT_OPS
        .iter()
        .any(|p| case == *p || case.starts_with(&format!("{p}_")))
}

#[test]
fn quantization_node_tests_are_bit_exact_on_jit() {
    let cases: Vec<String> = pass_cases()
        .into_iter()
        .filter(|c| is_exact_op(c))
        .collect();
    assert!(cases.len() >= 20, "only {} cases found", cases.len());
    for l in EXACT_PENDING {
        assert!(cases.iter().any(|c| c == l), "EXACT_PENDING lists '{l}'");
    }
    let mut failures = Vec::new();
    let mut passed = 0;
    for c in &cases {
        let pending = EXACT_PENDING.contains(&c.as_str());
        match (run_guarded(c, EXACT), pending) {
            (Ok(()), false) => passed += 1,
            (Ok(()), true) => failures.push(format!("{c}: listed pending but passes")),
            (Err(e), false) => failures.push(format!("{c}: {e}")),
            (Err(e), true) => {
                if std::env::var_os("QC_CONFORMANCE_VERBOSE").is_some() {
                    println!("pending {c}: {e}");
                }
            }
        }
    }
    println!(
        "quantization node tests bit-exact on the JIT: {passed}/{} ({} pending)",
        cases.len(),
        EXACT_PENDING.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn onnx_node_cases_on_jit() {
    let filter = std::env::var("QC_CONFORMANCE_FILTER").ok();
    let listed: BTreeSet<&str> = JIT_UNSUPPORTED.iter().copied().collect();
    let all = pass_cases();
    for l in &listed {
        assert!(
            all.iter().any(|c| c == l),
            "JIT_UNSUPPORTED lists '{l}', which is not a manifest pass case"
        );
    }
    let (mut passed, mut n) = (0, 0);
    let mut problems = Vec::new();
    for c in all.iter().filter(|c| !is_exact_op(c)) {
        if filter.as_ref().is_some_and(|f| !c.contains(f.as_str())) {
            continue;
        }
        n += 1;
        let r = run_guarded(c, ONNX_TOL);
        match (&r, listed.contains(c.as_str())) {
            (Ok(()), false) => passed += 1,
            (Ok(()), true) => problems.push(format!("{c}: listed unsupported but passes")),
            (Err(e), false) => problems.push(format!("{c}: {e}")),
            (Err(e), true) => {
                if std::env::var_os("QC_CONFORMANCE_VERBOSE").is_some() {
                    println!("unsupported {c}: {e}");
                }
            }
        }
    }
    println!(
        "other manifest pass cases on the JIT: {passed}/{n} pass, {} listed unsupported \
         ({} test sets in this binary so far needed the default pipeline first)",
        listed.len(),
        NEEDED_PIPELINE.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---- QDQ models vs onnxruntime ----

fn models_dir() -> PathBuf {
    fixtures().join("models")
}

fn npy(name: &str) -> Tensor {
    read_npy(&models_dir().join(name))
}

fn unstack(t: &Tensor) -> Vec<Tensor> {
    let inner: Vec<usize> = t.dims()[1..].to_vec();
    let n: usize = inner.iter().product();
    t.to_f32_vec()
        .chunks(n)
        .map(|c| Tensor::from_f32(inner.clone(), c.to_vec()).unwrap())
        .collect()
}

/// The scale of the DequantizeLinear producing graph output `y`, read from the ONNX file.
fn output_scale(bytes: &[u8]) -> f64 {
    let m = <onnx_protobuf::ModelProto as protobuf::Message>::parse_from_bytes(bytes).unwrap();
    let g = m.graph.as_ref().unwrap();
    let out = &g.output[0].name;
    let dq = g
        .node
        .iter()
        .find(|n| n.output.iter().any(|o| o == out))
        .unwrap();
    assert_eq!(dq.op_type, "DequantizeLinear");
    let init = g
        .initializer
        .iter()
        .find(|t| t.name == dq.input[1])
        .unwrap();
    let t = qc_onnx::tensor_from_pb(&protobuf::Message::write_to_bytes(init).unwrap()).unwrap();
    assert_eq!(t.len(), 1, "per-tensor output scale");
    t.to_f64_vec()[0]
}

fn check_qdq_model(model: &str, extra: Option<(&str, &str)>) {
    let bytes = common::read_bytes(&models_dir().join(format!("{model}.onnx")));
    let step = output_scale(&bytes);
    let mut g = common::import(&bytes).unwrap();
    default_pipeline(&mut g).unwrap();
    let m = qc_jit::compile(&g, &qc_jit::JitOptions::default())
        .unwrap_or_else(|e| panic!("{model}: {e}"));
    let mut xs = vec![npy(&format!("{model}.input.npy"))];
    let mut exp = npy(&format!("{model}.ort.npy")).to_f32_vec();
    if let Some((inputs, golden)) = extra {
        if models_dir().join(inputs).exists() && models_dir().join(golden).exists() {
            xs.extend(unstack(&npy(inputs)));
            exp.extend(npy(golden).to_f32_vec());
        }
    }
    let mut got = Vec::new();
    for x in &xs {
        let mut y = m.run(std::slice::from_ref(x)).unwrap();
        got.extend(y.remove(0).to_f32_vec());
    }
    assert_eq!(got.len(), exp.len(), "{model}: output sizes");
    let (mut identical, mut one, mut max_steps) = (0usize, 0usize, 0f64);
    for (&a, &b) in got.iter().zip(&exp) {
        let steps = (f64::from(a) - f64::from(b)).abs() / step;
        if a.to_bits() == b.to_bits() {
            identical += 1;
        } else if (steps - 1.0).abs() < 1e-3 {
            one += 1;
        }
        max_steps = max_steps.max(if steps.is_nan() { f64::INFINITY } else { steps });
    }
    let n = got.len();
    println!(
        "{model} JIT vs onnxruntime (fused): {identical}/{n} identical, {one} one step off, \
         max {max_steps:.3} steps (step {step:.4e}, {} inputs)",
        xs.len()
    );
    assert!(
        identical * 1000 >= n * 999,
        "{model}: only {identical}/{n} identical"
    );
    assert!(
        max_steps <= 1.0 + 1e-3,
        "{model}: an output is {max_steps:.3} steps off"
    );
}

#[test]
fn cnn_qdq_jit_matches_onnxruntime() {
    check_qdq_model(
        "cnn_qdq",
        Some(("cnn_extra.input.npy", "cnn_qdq.extra.ort.npy")),
    );
}

#[test]
fn mobilenetv2_qdq_jit_matches_onnxruntime() {
    check_qdq_model(
        "mobilenetv2_qdq",
        Some((
            "mobilenetv2_extra.input.npy",
            "mobilenetv2_qdq.extra.ort.npy",
        )),
    );
}
