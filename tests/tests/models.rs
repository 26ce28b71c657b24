//! Small end-to-end models (`fixtures/models/`, made by `fixtures/gen/models.py`) through
//! qc's importer and interpreter, against onnxruntime's outputs.
//!
//! - `cnn_float`: float CNN; float tolerance only (different summation order).
//! - `cnn_qdq`: its QDQ quantization. The interpreter runs Q/DQ unfused, like
//!   onnxruntime with `ORT_DISABLE_ALL` (`*.ort_noopt.npy`): outputs may differ only where
//!   a float sum lands within rounding noise of a quantization boundary, i.e. by one
//!   output step on a few elements. The fused onnxruntime result is only reported.
//! - `mlp_dynamic`: DynamicQuantizeLinear + MatMulInteger; every step is exact integer
//!   arithmetic or a single IEEE f32 operation, so the output must be bit-identical.
//! - every fixture model's graph survives `parse(print(g)) == g`.

// Test code: a panic is how a test fails.
#![allow(clippy::panic, clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use common::{compare, fixtures, read_npy, Tol};
use onnx_protobuf::ModelProto;
use protobuf::Message;
use qc_ir::{Graph, Tensor};

fn models_dir() -> PathBuf {
    fixtures().join("models")
}

fn load(name: &str) -> Graph {
    common::import(&common::read_bytes(
        &models_dir().join(format!("{name}.onnx")),
    ))
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn npy(name: &str) -> Tensor {
    read_npy(&models_dir().join(name))
}

/// Split `t` along axis 0 into tensors of shape `dims[1..]`.
fn unstack(t: &Tensor) -> Vec<Tensor> {
    let inner: Vec<usize> = t.dims()[1..].to_vec();
    let n: usize = inner.iter().product();
    t.to_f32_vec()
        .chunks(n)
        .map(|c| {
            Tensor::from_f32(inner.clone(), c.to_vec()).expect("invariant: chunk matches shape")
        })
        .collect()
}

/// The scale of the DequantizeLinear producing graph output `output` (read from the
/// ONNX file, independently of qc's importer).
fn output_scale(model: &str, output: &str) -> f64 {
    let bytes = common::read_bytes(&models_dir().join(format!("{model}.onnx")));
    let m = ModelProto::parse_from_bytes(&bytes).expect("parsing model");
    let g = m.graph.as_ref().expect("graph");
    let dq = g
        .node
        .iter()
        .find(|n| n.output.iter().any(|o| o == output))
        .expect("producer of output");
    assert_eq!(dq.op_type, "DequantizeLinear");
    let init = g
        .initializer
        .iter()
        .find(|t| t.name == dq.input[1])
        .expect("scale initializer");
    let t =
        qc_onnx::tensor_from_pb(&init.write_to_bytes().expect("serialize")).expect("scale tensor");
    assert_eq!(t.len(), 1, "per-tensor output scale");
    t.to_f64_vec()[0]
}

/// How far apart two dequantized outputs are, in output quantization steps.
struct StepAgreement {
    n: usize,
    identical: usize,
    one_step: usize,
    max_steps: f64,
}

fn step_agreement(got: &[f32], exp: &[f32], step: f64) -> StepAgreement {
    assert_eq!(got.len(), exp.len());
    let mut a = StepAgreement {
        n: got.len(),
        identical: 0,
        one_step: 0,
        max_steps: 0.0,
    };
    for (&g, &e) in got.iter().zip(exp) {
        let steps = (f64::from(g) - f64::from(e)).abs() / step;
        if g.to_bits() == e.to_bits() {
            a.identical += 1;
        } else if (steps - 1.0).abs() < 1e-3 {
            a.one_step += 1;
        }
        a.max_steps = a
            .max_steps
            .max(if steps.is_nan() { f64::INFINITY } else { steps });
    }
    a
}

/// Run `g` on the main input and on the 16 extra inputs; outputs flattened in order.
fn run_all(g: &Graph, model: &str) -> Vec<f32> {
    let mut out = common::run1(g, &npy(&format!("{model}.input.npy"))).to_f32_vec();
    for x in unstack(&npy("cnn_extra.input.npy")) {
        out.extend(common::run1(g, &x).to_f32_vec());
    }
    out
}

fn golden_all(model: &str, suffix: &str) -> Vec<f32> {
    let mut v = npy(&format!("{model}.{suffix}.npy")).to_f32_vec();
    v.extend(npy(&format!("{model}.extra.{suffix}.npy")).to_f32_vec());
    v
}

#[test]
fn cnn_float_matches_onnxruntime() {
    let g = load("cnn_float");
    let y = common::run1(&g, &npy("cnn_float.input.npy"));
    let tol = Tol {
        rtol: 1e-4,
        atol: 1e-5,
    };
    let a =
        compare(&y, &npy("cnn_float.ort.npy"), tol).unwrap_or_else(|e| panic!("cnn_float: {e}"));
    println!(
        "cnn_float: max abs {:.2e}, max rel {:.2e}",
        a.max_abs, a.max_rel
    );
    for (i, x) in unstack(&npy("cnn_extra.input.npy")).iter().enumerate() {
        let y = common::run1(&g, x);
        let exp = &unstack(&npy("cnn_float.extra.ort.npy"))[i];
        compare(&y, exp, tol).unwrap_or_else(|e| panic!("cnn_float extra input {i}: {e}"));
    }
}

fn check_quantized_cnn(model: &str) {
    let g = load(model);
    let step = output_scale(model, "y");
    let got = run_all(&g, model);
    let unfused = step_agreement(&got, &golden_all(model, "ort_noopt"), step);
    let fused = step_agreement(&got, &golden_all(model, "ort"), step);
    println!(
        "{model} vs onnxruntime unfused: {}/{} identical, {} one step off, max {:.3} steps (step {step:.4e})",
        unfused.identical, unfused.n, unfused.one_step, unfused.max_steps
    );
    println!(
        "{model} vs onnxruntime fused:   {}/{} identical, {} one step off, max {:.3} steps",
        fused.identical, fused.n, fused.one_step, fused.max_steps
    );
    assert!(
        unfused.identical * 100 >= unfused.n * 99,
        "{model}: only {}/{} outputs identical to onnxruntime (unfused QDQ)",
        unfused.identical,
        unfused.n
    );
    assert!(
        unfused.max_steps <= 1.0 + 1e-3,
        "{model}: an output is {:.3} steps off",
        unfused.max_steps
    );
}

#[test]
fn cnn_qdq_matches_onnxruntime_unfused() {
    check_quantized_cnn("cnn_qdq");
}

#[test]
fn cnn_qop_matches_onnxruntime() {
    check_quantized_cnn("cnn_qop");
}

#[test]
fn mlp_dynamic_is_bit_exact() {
    // The ONNX reference evaluator and a numpy transcription of the spec (dividing by the
    // scale, or multiplying by its reciprocal) both reproduce onnxruntime's output bit for
    // bit on this input, so anything but equality is a bug.
    let g = load("mlp_dynamic");
    let y = common::run1(&g, &npy("mlp_dynamic.input.npy"));
    let a = compare(
        &y,
        &npy("mlp_dynamic.ort.npy"),
        Tol {
            rtol: 0.0,
            atol: 0.0,
        },
    )
    .unwrap_or_else(|e| panic!("mlp_dynamic: {e}"));
    assert_eq!(a.identical, a.n);
    println!("mlp_dynamic: {}/{} identical", a.identical, a.n);
}

#[test]
fn text_form_round_trips_every_fixture_model() {
    let mut failures = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(models_dir())
        .expect("listing fixtures/models")
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".onnx")
                .map(String::from)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 4, "fixture models missing: {names:?}");
    for name in &names {
        let bytes = common::read_bytes(&models_dir().join(format!("{name}.onnx")));
        match common::import(&bytes) {
            Ok(g) => match common::check_text_roundtrip(&g) {
                Ok(()) => println!("{name}: text round-trip ok"),
                Err(e) => failures.push(format!("{name}: {e}")),
            },
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
