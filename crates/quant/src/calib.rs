//! Calibration samples from batches: what the CLI reads from `.npy` files becomes
//! one tensor per graph input per sample.
//!
//! **Invariant.** Every sample returned has exactly the graph input's dtype (f32) and
//! shape, so [`crate::quantize()`] never sees a mismatched tensor; anything else is an
//! [`Error::Data`] naming the input.

use qc_ir::{DType, Graph, Tensor, TensorType};

use crate::{Error, Result};

/// Split `batch` into samples of type `input`. Accepted shapes: `[N] ++ input` (the
/// first axis indexes samples), `[N] ++ input[1..]` when `input[0] == 1` (samples
/// without their leading 1), or exactly `input` (one sample). Float data of any
/// width is converted to f32.
pub fn split_samples(name: &str, input: &TensorType, batch: &Tensor) -> Result<Vec<Tensor>> {
    let err = |msg: String| Error::Data(format!("input '{name}': {msg}"));
    if input.dtype != DType::F32 {
        return Err(err(format!("the model input is {}, not f32", input.dtype)));
    }
    if !batch.dtype().is_float() {
        return Err(err(format!(
            "calibration data is {}, not float",
            batch.dtype()
        )));
    }
    let want = input.shape.dims();
    let got = batch.dims();
    let n = if got == want {
        1
    } else if (got.len() == want.len() + 1 && got[1..] == *want)
        || (want.first() == Some(&1) && got.len() == want.len() && got[1..] == want[1..])
    {
        got[0]
    } else {
        return Err(err(format!(
            "calibration data of shape {} fits neither {} nor [N,{}]",
            batch.shape(),
            input.shape,
            want.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )));
    };
    let per = input.shape.numel()?;
    let data = batch.to_f32_vec();
    if n == 0 {
        return Err(err("calibration data holds no samples".into()));
    }
    data.chunks(per.max(1))
        .take(n)
        .map(|c| Ok(Tensor::from_f32(input.shape.clone(), c.to_vec())?))
        .collect()
}

/// Per-input sample lists (in `g.inputs` order) zipped into per-sample input lists.
/// Every input must have the same number of samples.
pub fn zip_inputs(g: &Graph, per_input: Vec<Vec<Tensor>>) -> Result<Vec<Vec<Tensor>>> {
    if per_input.len() != g.inputs.len() {
        return Err(Error::Data(format!(
            "{} inputs given, the model has {}",
            per_input.len(),
            g.inputs.len()
        )));
    }
    let n = per_input.first().map_or(0, Vec::len);
    if let Some((i, v)) = per_input.iter().enumerate().find(|(_, v)| v.len() != n) {
        let name = g.inputs.get(i).map_or("", |p| p.name.as_str());
        return Err(Error::Sample {
            sample: 0,
            msg: format!(
                "input '{name}' has {} samples, the first input {n}",
                v.len()
            ),
        });
    }
    let mut iters: Vec<_> = per_input.into_iter().map(Vec::into_iter).collect();
    Ok((0..n)
        .map(|_| iters.iter_mut().filter_map(Iterator::next).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_with_or_without_the_leading_one() {
        let ty = TensorType::f32([1, 2]);
        let b = Tensor::from_f32([3, 1, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
            .unwrap_or_else(|_| Tensor::scalar_f32(0.0));
        let s = split_samples("x", &ty, &b).unwrap_or_default();
        assert_eq!(s.len(), 3);
        assert_eq!(s[2].to_f32_vec(), vec![5.0, 6.0]);
        let b = Tensor::from_f32([3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
            .unwrap_or_else(|_| Tensor::scalar_f32(0.0));
        assert_eq!(split_samples("x", &ty, &b).map(|s| s.len()).ok(), Some(3));
        let one =
            Tensor::from_f32([1, 2], vec![1.0, 2.0]).unwrap_or_else(|_| Tensor::scalar_f32(0.0));
        assert_eq!(split_samples("x", &ty, &one).map(|s| s.len()).ok(), Some(1));
        let bad =
            Tensor::from_f32([3], vec![1.0, 2.0, 3.0]).unwrap_or_else(|_| Tensor::scalar_f32(0.0));
        let e = split_samples("x", &ty, &bad)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("'x'") && e.contains("[3]"), "{e}");
    }
}
