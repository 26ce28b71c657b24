//! Embedding qc: load a model, compile it for this CPU, run it from several threads.
//!
//! `cargo run --release -p qc --example embed -- fixtures/models/cnn_qdq.onnx`

use std::sync::Arc;

use qc::{Model, Options, TensorMut, TensorRef};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fixtures/models/cnn_qdq.onnx".into());
    let model = Model::load(&path)?;
    let compiled = Arc::new(model.compile(&Options::default())?);
    let s = compiled.stats();
    println!(
        "compiled {path} in {:.1} ms: {} bytes of code, {} bytes of arena",
        s.compile_time.as_secs_f64() * 1e3,
        s.code_bytes,
        s.arena_bytes
    );

    let (in_name, in_ty) = compiled.inputs()[0].clone();
    let (out_name, out_ty) = compiled.outputs()[0].clone();
    let n_in = in_ty.numel()?;
    let n_out = out_ty.numel()?;
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let compiled = Arc::clone(&compiled);
            let (in_shape, out_shape) = (in_ty.shape.0.clone(), out_ty.shape.0.clone());
            std::thread::spawn(move || -> Result<f32, qc::Error> {
                let x: Vec<f32> = (0..n_in)
                    .map(|i| ((i * 7 + t) % 13) as f32 / 13.0 - 0.5)
                    .collect();
                let mut y = vec![0f32; n_out];
                // run_into writes the caller's buffer: no allocation per call once warm.
                for _ in 0..100 {
                    compiled.run_into(
                        &[TensorRef::new(&in_shape, &x[..])],
                        &mut [TensorMut::new(&out_shape, &mut y[..])],
                    )?;
                }
                Ok(y.iter().sum())
            })
        })
        .collect();
    for (t, w) in workers.into_iter().enumerate() {
        let sum = w.join().map_err(|_| "worker panicked")??;
        println!("thread {t}: sum of '{out_name}' for its input to '{in_name}' = {sum}");
    }
    Ok(())
}
