//! Helpers for building small graphs and comparing results.
#![allow(dead_code)]

use qc_interp::{Contract, Options};
use qc_ir::{DType, Graph, Op, QType, QuantParams, Tensor, TensorData, TensorType, ValueId};

/// Add a node whose result types come from `qc_ir::infer`; returns its results.
pub fn node(g: &mut Graph, op: Op, inputs: &[ValueId]) -> Vec<ValueId> {
    let tys: Vec<&TensorType> = inputs.iter().map(|&v| g.ty(v)).collect();
    let out = qc_ir::infer::infer(&op, &tys).expect("inference");
    let id = g.add_node(op, inputs.to_vec(), out, "n");
    g.node(id).outputs.clone()
}

/// Like [`node`], with the first result given quantization params `q`.
pub fn node_q(g: &mut Graph, op: Op, inputs: &[ValueId], q: QuantParams) -> ValueId {
    let tys: Vec<&TensorType> = inputs.iter().map(|&v| g.ty(v)).collect();
    let mut out = qc_ir::infer::infer(&op, &tys).expect("inference");
    out[0] = TensorType::quantized(out[0].shape.clone(), q);
    let id = g.add_node(op, inputs.to_vec(), out, "nq");
    g.node(id).outputs[0]
}

/// A node with explicitly written result types (no inference).
pub fn node_typed(g: &mut Graph, op: Op, inputs: &[ValueId], out: Vec<TensorType>) -> Vec<ValueId> {
    let id = g.add_node(op, inputs.to_vec(), out, "typed");
    g.node(id).outputs.clone()
}

pub fn f32t(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::from_f32(shape.to_vec(), v).expect("tensor")
}

pub fn t(shape: &[usize], d: TensorData) -> Tensor {
    Tensor::new(shape.to_vec(), d).expect("tensor")
}

/// A constant value with quantization params.
pub fn qconst(g: &mut Graph, t: Tensor, q: QuantParams) -> ValueId {
    let c = g.add_const_tensor(std::sync::Arc::new(t));
    g.add_const_value(c, Some(q))
}

pub fn pt(q: QType, scale: f32, zp: i32) -> QuantParams {
    QuantParams::per_tensor(q, scale, zp)
}

pub fn run(g: &Graph, inputs: &[Tensor]) -> Vec<Tensor> {
    qc_interp::run(g, inputs, &Options::default()).expect("interpreter run")
}

pub fn run_with(g: &Graph, inputs: &[Tensor], contract: Contract) -> Vec<Tensor> {
    qc_interp::run(g, inputs, &Options { contract }).expect("interpreter run")
}

/// Run a graph with one output and return it.
pub fn run1(g: &Graph, inputs: &[Tensor]) -> Tensor {
    run(g, inputs).remove(0)
}

pub fn f32s(t: &Tensor) -> Vec<f32> {
    assert_eq!(t.dtype(), DType::F32);
    t.as_f32().expect("f32").to_vec()
}

#[track_caller]
pub fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "length: got {got:?} want {want:?}");
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let ok = (a - b).abs() <= tol * (1.0 + b.abs()) || (a.is_nan() && b.is_nan());
        assert!(
            ok,
            "element {i}: got {a}, want {b}\n got {got:?}\nwant {want:?}"
        );
    }
}

/// Deterministic pseudo-random values in [-1, 1) (xorshift).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Single-op float graph: inputs become graph inputs, result via inference.
pub fn unary_graph(op: Op, x: &Tensor) -> Graph {
    let mut g = Graph::new();
    let xv = g.add_input("x", TensorType::new(x.dtype(), x.dims().to_vec()));
    let y = node(&mut g, op, &[xv])[0];
    g.add_output("y", y);
    g
}
