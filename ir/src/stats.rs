//! Whole-graph statistics for `qc inspect`: op counts, parameter bytes, MACs and
//! activation bytes. MACs count multiply-accumulates of the linear ops only
//! (conv, conv_integer, conv_transpose, gemm, matmul, matmul_integer).

use std::collections::BTreeMap;

use crate::{Graph, Op, ValueDef};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Node count per op name.
    pub op_counts: BTreeMap<&'static str, usize>,
    /// Bytes of all constant tensors (weights, biases, other constants).
    pub param_bytes: u64,
    /// Multiply-accumulates of one inference.
    pub macs: u64,
    /// Bytes of all values computed by nodes (every intermediate and output, once).
    pub activation_bytes: u64,
    /// Bytes of the largest single computed value.
    pub largest_activation_bytes: u64,
}

fn prod(d: &[usize]) -> u64 {
    d.iter().map(|&x| x as u64).product()
}

/// Multiply-accumulates of one node of `g` (0 for ops without a matrix product).
pub fn node_macs(g: &Graph, node: &crate::Node) -> u64 {
    let ty = |k: usize| node.inputs.get(k).map(|&v| g.ty(v).shape.dims());
    let out = node
        .outputs
        .first()
        .map(|&v| g.ty(v).shape.dims())
        .unwrap_or(&[]);
    match &node.op {
        Op::Conv(_) | Op::ConvInteger(_) => {
            // N * C_out * spatial_out, times (C_in / group) * kernel = w.dims[1..]
            let Some(w) = ty(1) else { return 0 };
            prod(out) * prod(w.get(1..).unwrap_or(&[]))
        }
        Op::ConvTranspose(_) => {
            // every input element scatters into C_out/group * kernel outputs
            let (Some(x), Some(w)) = (ty(0), ty(1)) else {
                return 0;
            };
            prod(x) * prod(w.get(1..).unwrap_or(&[]))
        }
        Op::Gemm(a) => {
            let Some(x) = ty(0) else { return 0 };
            let k = if a.trans_a { x.first() } else { x.get(1) };
            prod(out) * k.copied().unwrap_or(0) as u64
        }
        Op::MatMul { .. } | Op::MatMulInteger => {
            let Some(x) = ty(0) else { return 0 };
            prod(out) * x.last().copied().unwrap_or(0) as u64
        }
        _ => 0,
    }
}

pub fn summarize(g: &Graph) -> Summary {
    let mut s = Summary::default();
    for c in &g.consts {
        s.param_bytes += (c.len() * c.dtype().size()) as u64;
    }
    for n in &g.nodes {
        *s.op_counts.entry(n.op.name()).or_default() += 1;
        s.macs += node_macs(g, n);
    }
    for v in &g.values {
        if matches!(v.def, ValueDef::Node { .. }) {
            let b = (prod(v.ty.shape.dims()) as usize * v.ty.dtype.size()) as u64;
            s.activation_bytes += b;
            s.largest_activation_bytes = s.largest_activation_bytes.max(b);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Activation, ConvAttrs, DType, GemmAttrs, Tensor, TensorType};

    #[test]
    fn counts_macs_params_and_activations() {
        let mut g = Graph::new();
        let x = g.add_input("x", TensorType::f32([1, 3, 8, 8]));
        let w = g.add_const(Tensor::zeros(DType::F32, [4, 3, 3, 3]).expect("small"));
        let conv = ConvAttrs {
            kernel: vec![3, 3],
            strides: vec![1, 1],
            dilations: vec![1, 1],
            pads: vec![1, 1, 1, 1],
            group: 1,
            act: Activation::None,
        };
        let n = g.add_node(
            Op::Conv(conv),
            vec![x, w],
            vec![TensorType::f32([1, 4, 8, 8])],
            "c",
        );
        let y = g.node(n).outputs[0];
        let f = g.add_node(
            Op::Flatten { axis: 1 },
            vec![y],
            vec![TensorType::f32([1, 256])],
            "f",
        );
        let fy = g.node(f).outputs[0];
        let b = g.add_const(Tensor::zeros(DType::F32, [256, 10]).expect("small"));
        let gemm = GemmAttrs {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: false,
            act: Activation::None,
        };
        let m = g.add_node(
            Op::Gemm(gemm),
            vec![fy, b],
            vec![TensorType::f32([1, 10])],
            "g",
        );
        g.add_output("out", g.node(m).outputs[0]);

        let s = summarize(&g);
        // conv: 4 out channels * 64 pixels * (3 * 3 * 3) taps; gemm: 10 * 256.
        assert_eq!(s.macs, 4 * 64 * 27 + 10 * 256);
        assert_eq!(s.param_bytes, (4 * 27 + 2560) * 4);
        // conv out 256 floats, flatten 256, gemm 10.
        assert_eq!(s.activation_bytes, (256 + 256 + 10) * 4);
        assert_eq!(s.largest_activation_bytes, 1024);
        assert_eq!(s.op_counts.get("conv"), Some(&1));
    }
}
