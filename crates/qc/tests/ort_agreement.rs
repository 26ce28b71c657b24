//! The JIT under the default (`float`) contract against onnxruntime on QDQ models
//! written by onnxruntime's `quantize_static`: the MLPerf-Tiny-shaped keyword-spotting
//! and ResNet-8 models on the 50 inputs `fixtures/gen/cgen_ort.py` recorded
//! onnxruntime's outputs for. The bar: at least 99.9% of output elements identical and
//! none more than one quantization step apart.

use std::path::Path;

use qc::{Model, Options, TensorRef};

fn fixture(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(rel)
}

fn check(name: &str) {
    let compiled = Model::load(fixture(&format!("{name}.onnx")))
        .expect("loads")
        .compile(&Options::default())
        .expect("compiles");
    let xs = qc::npy::read_npy(&fixture(&format!("{name}.ort_in.npy"))).expect("inputs");
    let want = qc::npy::read_npy(&fixture(&format!("{name}.ort_out.npy"))).expect("outputs");
    let (n, per_in) = (xs.dims()[0], xs.len() / xs.dims()[0]);
    let per_out = want.len() / n;
    let (xs, want) = (xs.as_f32().expect("f32"), want.as_f32().expect("f32"));
    // The model ends in a softmax quantized with step 1/256.
    let step = 1.0 / 256.0;
    let (mut same, mut worst) = (0usize, 0f32);
    for i in 0..n {
        let x = qc::ir::Tensor::from_f32(
            compiled.inputs()[0].1.shape.dims().to_vec(),
            xs[i * per_in..(i + 1) * per_in].to_vec(),
        )
        .expect("input");
        let got = compiled
            .run(&[TensorRef::of(&x).expect("f32")])
            .expect("runs");
        let got = got[0].as_f32().expect("f32 output");
        for (a, b) in got.iter().zip(&want[i * per_out..(i + 1) * per_out]) {
            same += usize::from(a == b);
            worst = worst.max((a - b).abs() / step);
        }
    }
    let total = n * per_out;
    eprintln!(
        "{name}: {same}/{total} ({:.2}%) identical to onnxruntime, max {worst:.2} steps",
        100.0 * same as f64 / total as f64
    );
    assert!(
        same * 1000 >= total * 999,
        "{name}: only {same}/{total} identical"
    );
    assert!(worst <= 1.01, "{name}: {worst} steps off");
}

#[test]
fn keyword_spotting_matches_onnxruntime() {
    check("kws_dscnn_int8");
}

#[test]
fn resnet8_matches_onnxruntime() {
    check("ic_resnet8_int8");
}
