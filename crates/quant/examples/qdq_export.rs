//! Quantize an ONNX model on seeded random calibration data and write the QDQ model,
//! the test inputs and qc's outputs (raw little-endian f32) for a side-by-side check
//! against onnxruntime:
//!
//! `cargo run -p qc-quant --example qdq_export -- MODEL.onnx OUT_DIR [minmax|percentile|entropy|mse] [per-channel]`
#![allow(clippy::unwrap_used)]

use std::io::Write;

use qc_ir::{Graph, Tensor};
use qc_quant::{Interp, Method, QuantizeOptions};

fn samples(g: &Graph, n: usize, seed: u64) -> Vec<Vec<Tensor>> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            g.inputs
                .iter()
                .map(|p| {
                    let ty = g.ty(p.value);
                    let v = (0..ty.shape.numel().unwrap())
                        .map(|_| {
                            s ^= s << 13;
                            s ^= s >> 7;
                            s ^= s << 17;
                            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                        })
                        .collect();
                    Tensor::from_f32(ty.shape.clone(), v).unwrap()
                })
                .collect()
        })
        .collect()
}

/// `QC_CALIB` / `QC_TEST`: an [N, ...] .npy of samples for a one-input model.
fn npy_samples(var: &str, g: &Graph) -> Option<Vec<Vec<Tensor>>> {
    let path = std::env::var(var).ok()?;
    let bytes = std::fs::read(path).unwrap();
    let v = npyz::NpyFile::new(&bytes[..])
        .unwrap()
        .into_vec::<f32>()
        .unwrap();
    let shape = g.ty(g.inputs[0].value).shape.clone();
    let per = shape.numel().unwrap();
    Some(
        v.chunks(per)
            .map(|c| vec![Tensor::from_f32(shape.clone(), c.to_vec()).unwrap()])
            .collect(),
    )
}

fn write_f32(path: &std::path::Path, ts: &[Tensor]) {
    let mut f = std::fs::File::create(path).unwrap();
    for t in ts {
        for x in t.to_f32_vec() {
            f.write_all(&x.to_le_bytes()).unwrap();
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (model, out) = (&args[1], std::path::PathBuf::from(&args[2]));
    let method = match args.get(3).map(String::as_str) {
        Some("percentile") => Method::Percentile(99.99),
        Some("entropy") => Method::Entropy,
        Some("mse") => Method::Mse,
        _ => Method::MinMax,
    };
    let per_channel = args.get(4).is_some_and(|a| a == "per-channel");
    let bytes = std::fs::read(model).unwrap();
    let g = qc_onnx::import(&bytes, &Default::default(), &qc_onnx::NoExternalData).unwrap();
    let calib = npy_samples("QC_CALIB", &g).unwrap_or_else(|| samples(&g, 32, 11));
    // QC_INT16=name,name quantizes those layers as i16 (written at opset 21).
    let int16: Vec<String> = std::env::var("QC_INT16")
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let opset = if int16.is_empty() { 13 } else { 21 };
    let opts = QuantizeOptions {
        method,
        per_channel,
        int16,
        ..Default::default()
    };
    let q = qc_quant::quantize(&g, &calib, &opts, &Interp::default(), &mut |_, _, _| {}).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("qdq.onnx"),
        qc_onnx::export::to_onnx(&q.qdq, opset).unwrap(),
    )
    .unwrap();
    let mut int = q.qdq.clone();
    qc_passes::Pipeline::parse("default")
        .unwrap()
        .run(&mut int, &mut Default::default())
        .unwrap();
    let test = npy_samples("QC_TEST", &g).unwrap_or_else(|| samples(&g, 64, 12345));
    let (mut xs, mut qdq_out, mut int_out, mut float_out) = (vec![], vec![], vec![], vec![]);
    let o = qc_interp::Options::default();
    for x in &test {
        xs.push(x[0].clone());
        qdq_out.push(qc_interp::run(&q.qdq, x, &o).unwrap().remove(0));
        int_out.push(qc_interp::run(&int, x, &o).unwrap().remove(0));
        float_out.push(qc_interp::run(&g, x, &o).unwrap().remove(0));
    }
    write_f32(&out.join("inputs.f32"), &xs);
    write_f32(&out.join("qdq_out.f32"), &qdq_out);
    write_f32(&out.join("int_out.f32"), &int_out);
    write_f32(&out.join("float_out.f32"), &float_out);
    println!(
        "{} layers, calibration {:?}",
        q.layers.len(),
        q.report.calibration_time
    );
}
