//! Where accuracy goes: per-layer SQNR and cosine similarity of quantized vs float
//! activations over the calibration samples.
//!
//! For a layer with float activations `f` and quantized (dequantized) ones `q`, summed
//! over all samples and elements: `SQNR = 10 log10(sum f^2 / sum (f - q)^2)` dB (∞ when
//! they are equal) and `cosine = sum f q / sqrt(sum f^2 * sum q^2)` (1 when both are
//! zero). Results are sorted worst first (lowest SQNR).
//!
//! **Invariant.** Both graphs see the same sample inputs; a layer pairs a float value
//! and a value of the quantized graph with the same shape (others are skipped).

use qc_ir::{Graph, Op, Tensor, ValueId};

use crate::quantize::{run_observed, Layer};
use crate::{Executor, Result};

/// The accuracy of one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerAccuracy {
    pub name: String,
    pub op: &'static str,
    pub sqnr_db: f64,
    pub cosine: f64,
    /// Elements compared (over all samples).
    pub elements: u64,
}

/// Pair the layers of a float graph and a quantized one (e.g. an imported QDQ model)
/// by node name: a float node's first result pairs with the same-named node's result
/// in `qdq`, taken after its `quantize → dequantize` when it has one.
pub fn match_layers(float: &Graph, qdq: &Graph) -> Vec<Layer> {
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); qdq.values.len()];
    for (i, n) in qdq.nodes.iter().enumerate() {
        for &v in &n.inputs {
            users[v.index()].push(i);
        }
    }
    let follow = |v: ValueId| -> ValueId {
        // op → quantize → dequantize: the dequantized value is what later layers read.
        let only = |v: ValueId, op: &Op| -> Option<ValueId> {
            match users.get(v.index())?.as_slice() {
                [u] if qdq.nodes.get(*u)?.op == *op => qdq.nodes.get(*u)?.outputs.first().copied(),
                _ => None,
            }
        };
        only(v, &Op::Quantize)
            .and_then(|q| only(q, &Op::Dequantize))
            .unwrap_or(v)
    };
    let mut layers = Vec::new();
    for n in &float.nodes {
        if n.name.is_empty() {
            continue;
        }
        let Some(&fv) = n.outputs.first() else {
            continue;
        };
        if float.ty(fv).dtype != qc_ir::DType::F32 {
            continue;
        }
        let Some(m) = qdq
            .nodes
            .iter()
            .find(|m| m.name == n.name && m.op.name() == n.op.name())
        else {
            continue;
        };
        let Some(&qv) = m.outputs.first() else {
            continue;
        };
        let qv = follow(qv);
        if qdq.ty(qv).shape != float.ty(fv).shape {
            continue;
        }
        layers.push(Layer {
            name: n.name.clone(),
            op: n.op.name(),
            float: fv,
            quant: qv,
            params: qdq
                .ty(m.outputs[0])
                .quant
                .clone()
                .unwrap_or_else(|| qc_ir::QuantParams::per_tensor(qc_ir::QType::U8, 1.0, 0)),
        });
    }
    layers
}

/// SQNR and cosine similarity of every layer over `samples`, worst first.
pub fn debug_accuracy(
    float: &Graph,
    qdq: &Graph,
    layers: &[Layer],
    samples: &[Vec<Tensor>],
    exec: &dyn Executor,
    progress: &mut dyn FnMut(&'static str, usize, usize),
) -> Result<Vec<LayerAccuracy>> {
    let fvals: Vec<ValueId> = layers.iter().map(|l| l.float).collect();
    let qvals: Vec<ValueId> = layers.iter().map(|l| l.quant).collect();
    // Per layer: sum f^2, sum q^2, sum f q, sum (f - q)^2, count. The float run is
    // kept per sample so the two runs can be compared element by element.
    let mut float_outs: Vec<Vec<Vec<f32>>> = Vec::with_capacity(samples.len());
    run_observed(float, &fvals, samples, exec, "float", progress, |_, obs| {
        float_outs.push(obs.iter().map(Tensor::to_f32_vec).collect());
    })?;
    let mut acc = vec![[0f64; 4]; layers.len()];
    let mut count = vec![0u64; layers.len()];
    run_observed(
        qdq,
        &qvals,
        samples,
        exec,
        "quantized",
        progress,
        |s, obs| {
            let Some(fs) = float_outs.get(s) else { return };
            for (k, (f, q)) in fs.iter().zip(obs).enumerate() {
                // A quantized value (a layer of an optimized integer graph) is compared
                // through its real values.
                let q = match qvals.get(k).and_then(|&v| qdq.ty(v).quant.as_ref()) {
                    Some(p) => dequantized(q, p),
                    None => q.to_f32_vec(),
                };
                let a = &mut acc[k];
                for (&x, &y) in f.iter().zip(&q) {
                    let (x, y) = (f64::from(x), f64::from(y));
                    a[0] += x * x;
                    a[1] += y * y;
                    a[2] += x * y;
                    a[3] += (x - y) * (x - y);
                }
                count[k] += f.len().min(q.len()) as u64;
            }
        },
    )?;
    let mut out: Vec<LayerAccuracy> = layers
        .iter()
        .zip(acc.iter().zip(&count))
        .map(|(l, (a, &n))| LayerAccuracy {
            name: l.name.clone(),
            op: l.op,
            sqnr_db: sqnr(a[0], a[3]),
            cosine: cosine(a[0], a[1], a[2]),
            elements: n,
        })
        .collect();
    out.sort_by(|a, b| a.sqnr_db.total_cmp(&b.sqnr_db));
    Ok(out)
}

/// The real values of a quantized tensor (per-axis parameters along their axis).
fn dequantized(t: &Tensor, p: &qc_qmath::QuantParams) -> Vec<f32> {
    let dims = t.dims();
    let inner: usize = match p.axis {
        Some(a) if p.len() > 1 => dims.iter().skip(a + 1).product(),
        _ => 1,
    };
    let channels = p.len().max(1);
    (0..t.dims().iter().product::<usize>())
        .map(|i| {
            let c = if channels > 1 {
                (i / inner.max(1)) % channels
            } else {
                0
            };
            p.dequantize(t.data().get_i64(i), c)
        })
        .collect()
}

/// `10 log10(signal / noise)`; ∞ without noise, -∞ without signal (but with noise).
pub fn sqnr(signal: f64, noise: f64) -> f64 {
    if noise == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (signal / noise).log10()
    }
}

/// `fq / sqrt(ff * qq)`; 1 when both vectors are zero, 0 when only one is.
pub fn cosine(ff: f64, qq: f64, fq: f64) -> f64 {
    if ff == 0.0 && qq == 0.0 {
        1.0
    } else if ff == 0.0 || qq == 0.0 {
        0.0
    } else {
        fq / (ff * qq).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_by_hand() {
        // f = [3, 4], q = [3, 3]: signal 25, noise 1 -> 10 log10 25 = 13.979 dB;
        // cosine = 21 / (5 * sqrt(18)) = 0.98995.
        assert!((sqnr(25.0, 1.0) - 13.979_400_086_720_377).abs() < 1e-12);
        assert!((cosine(25.0, 18.0, 21.0) - 21.0 / (5.0 * 18f64.sqrt())).abs() < 1e-15);
        assert_eq!(sqnr(1.0, 0.0), f64::INFINITY);
        assert_eq!(cosine(0.0, 0.0, 0.0), 1.0);
    }
}
