//! Loads an ONNX model with tract, optimizes it, runs it on seeded random
//! inputs and prints `median_ms: X` (the same line `qc bench` prints, so
//! bench/run.py parses both alike). Single-threaded: tract runs on the calling
//! thread unless a multithread executor is installed, which this never does.
use std::time::Instant;
use tract_onnx::prelude::*;

fn usage() -> ! {
    eprintln!("usage: tract-runner MODEL.onnx [--iters N] [--warmup N]");
    std::process::exit(2)
}

/// xorshift64: deterministic inputs without a rand dependency.
struct Rng(u64);
impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn main() -> TractResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut path = None;
    let (mut iters, mut warmup) = (20usize, 5usize);
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--iters" => {
                i += 1;
                iters = args
                    .get(i)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| usage());
            }
            "--warmup" => {
                i += 1;
                warmup = args
                    .get(i)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| usage());
            }
            p if path.is_none() => path = Some(p.to_string()),
            _ => usage(),
        }
        i += 1;
    }
    let path = path.unwrap_or_else(|| usage());
    let iters = iters.max(1);

    let model = tract_onnx::onnx().model_for_path(&path)?;
    // Pin every input to its declared shape (benchmark models are static).
    let mut model = model;
    let n_inputs = model.input_outlets()?.len();
    let mut shapes = Vec::new();
    for ix in 0..n_inputs {
        let fact = model.input_fact(ix)?.clone();
        let shape: Vec<usize> = fact
            .shape
            .as_concrete_finite()?
            .ok_or_else(|| TractError::msg(format!("input {ix} has no static shape")))?
            .to_vec();
        model.set_input_fact(ix, f32::fact(&shape).into())?;
        shapes.push(shape);
    }
    let t0 = Instant::now();
    let plan = model.into_optimized()?.into_runnable()?;
    let compile_ms = t0.elapsed().as_secs_f64() * 1e3;

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let inputs: TVec<TValue> = shapes
        .iter()
        .map(|s| {
            let n: usize = s.iter().product();
            let data: Vec<f32> = (0..n).map(|_| rng.next_f32()).collect();
            tract_ndarray::Array::from_shape_vec(s.clone(), data)
                .map(|a| Tensor::from(a).into())
                .map_err(|e| TractError::msg(e.to_string()))
        })
        .collect::<TractResult<_>>()?;

    for _ in 0..warmup {
        plan.run(inputs.clone())?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        plan.run(inputs.clone())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = if iters % 2 == 1 {
        times[iters / 2]
    } else {
        (times[iters / 2 - 1] + times[iters / 2]) / 2.0
    };
    println!("optimize_ms: {compile_ms:.1}");
    println!("median_ms: {median:.4}");
    Ok(())
}
