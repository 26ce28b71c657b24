//! Real accuracy: the digits CNN (fixtures/digits, made by fixtures/gen/digits.py from
//! scikit-learn's digits) quantized by qc on its calibration split, compiled by the
//! default pipeline to integer ops and run on the held-out split by the reference
//! interpreter. Thresholds come from `reference.json`: the float accuracy and
//! onnxruntime's `quantize_static` on the same calibration samples.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Instant;

use qc_ir::{Graph, Tensor};
use qc_quant::{Interp, Method, QuantizeOptions};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/digits")
}

fn npy_f32(name: &str) -> (Vec<u64>, Vec<f32>) {
    let bytes = std::fs::read(dir().join(name)).unwrap();
    let f = npyz::NpyFile::new(&bytes[..]).unwrap();
    (f.shape().to_vec(), f.into_vec::<f32>().unwrap())
}

fn labels() -> Vec<i64> {
    let bytes = std::fs::read(dir().join("test_y.npy")).unwrap();
    npyz::NpyFile::new(&bytes[..])
        .unwrap()
        .into_vec::<i64>()
        .unwrap()
}

/// Samples of shape [1, 1, 8, 8] from an [N, 1, 8, 8] array.
fn split(name: &str) -> Vec<Vec<Tensor>> {
    let (shape, v) = npy_f32(name);
    let per: usize = shape[1..].iter().product::<u64>() as usize;
    v.chunks(per)
        .map(|c| vec![Tensor::from_f32([1, 1, 8, 8], c.to_vec()).unwrap()])
        .collect()
}

fn correct(g: &Graph, xs: &[Vec<Tensor>], ys: &[i64]) -> usize {
    xs.iter()
        .zip(ys)
        .filter(|(x, &y)| {
            let out = qc_interp::run(g, x, &qc_interp::Options::default()).unwrap();
            let v = out[0].to_f32_vec();
            // First index on ties, as the reference does.
            let mut best = 0;
            for (i, &s) in v.iter().enumerate() {
                if s > v[best] {
                    best = i;
                }
            }
            best as i64 == y
        })
        .count()
}

fn reference(key: &str) -> usize {
    let s = std::fs::read_to_string(dir().join("reference.json")).unwrap();
    // "key": { "correct": N, ...: the first "correct" after the key.
    let at = s.find(&format!("\"{key}\"")).unwrap();
    let rest = &s[at..];
    let c = rest.find("\"correct\":").unwrap() + "\"correct\":".len();
    rest[c..]
        .trim_start()
        .split(|ch: char| !ch.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn digits_int8_accuracy_meets_float_and_onnxruntime() {
    let bytes = std::fs::read(dir().join("digits_float.onnx")).unwrap();
    let g = qc_onnx::import(&bytes, &Default::default(), &qc_onnx::NoExternalData).unwrap();
    let calib = split("calib.npy");
    let test = split("test_x.npy");
    let ys = labels();
    let total = ys.len();
    let float_correct = reference("float");
    let ort_best = reference("ort_best_of_all");
    assert_eq!(correct(&g, &test, &ys), float_correct, "float model");
    let mut rows = Vec::new();
    let mut configs = Vec::new();
    for method in [
        Method::MinMax,
        Method::Percentile(99.99),
        Method::Entropy,
        Method::Mse,
    ] {
        for per_channel in [false, true] {
            configs.push(QuantizeOptions {
                method,
                per_channel,
                ..Default::default()
            });
        }
    }
    for (cle, bias_correction) in [(true, false), (true, true), (false, true)] {
        configs.push(QuantizeOptions {
            cle,
            bias_correction,
            ..Default::default()
        });
    }
    for opts in configs {
        let (method, per_channel) = (opts.method, opts.per_channel);
        let t0 = Instant::now();
        let q =
            qc_quant::quantize(&g, &calib, &opts, &Interp::default(), &mut |_, _, _| {}).unwrap();
        let quantize_time = t0.elapsed();
        let mut int = q.qdq.clone();
        qc_passes::Pipeline::parse("default")
            .unwrap()
            .run(&mut int, &mut Default::default())
            .unwrap();
        let c = correct(&int, &test, &ys);
        eprintln!(
                "{method:?} per_channel={per_channel} cle={} bias_correction={}: {c}/{total}, calibration {:?} (quantize {:?})",
                opts.cle, opts.bias_correction, q.report.calibration_time, quantize_time
            );
        assert!(q.report.calibration_time.as_secs_f64() < 10.0);
        rows.push(c);
    }
    let best = rows.iter().copied().max().unwrap_or(0);
    // >= float - 0.5 points, and >= onnxruntime's best, for the best qc setting;
    // every setting within 1 point of float.
    assert!(best * 1000 >= float_correct * 1000 - 5 * total, "{rows:?}");
    assert!(
        best >= ort_best,
        "qc {rows:?} vs onnxruntime best {ort_best}"
    );
    for &c in &rows {
        assert!(c * 100 >= float_correct * 100 - total, "{rows:?}");
    }
}
