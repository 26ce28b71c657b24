//! One helper per boundary: build or parse a graph, run it on the interpreter (the
//! oracle) and on the JIT with the same seeded inputs, compare.
#![allow(dead_code)]

use qc_ir::{DType, Graph, Op, QType, QuantParams, Tensor, TensorData, TensorType, ValueId};
use qc_jit::{Contract, JitOptions};

/// A small deterministic generator (PCG-like LCG), so tests are reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i64
    }
    pub fn f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * (self.next() % 1_000_000) as f32 / 1_000_000.0
    }
}

/// A random tensor of type `ty` (codes over the whole storage range when quantized).
pub fn random_tensor(rng: &mut Rng, ty: &TensorType) -> Tensor {
    let n: usize = ty.shape.dims().iter().product();
    let d = match ty.dtype {
        DType::F32 => TensorData::F32((0..n).map(|_| rng.f32(-4.0, 4.0)).collect()),
        DType::U8 => TensorData::U8((0..n).map(|_| rng.range(0, 255) as u8).collect()),
        DType::I8 => TensorData::I8((0..n).map(|_| rng.range(-128, 127) as i8).collect()),
        DType::I32 => TensorData::I32((0..n).map(|_| rng.range(-5000, 5000) as i32).collect()),
        DType::I16 => TensorData::I16((0..n).map(|_| rng.range(-32768, 32767) as i16).collect()),
        DType::U16 => TensorData::U16((0..n).map(|_| rng.range(0, 65535) as u16).collect()),
        other => panic!("no generator for {other}"),
    };
    Tensor::new(ty.shape.clone(), d).expect("tensor")
}

pub fn inputs_for(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut rng = Rng(seed);
    g.inputs
        .iter()
        .map(|p| random_tensor(&mut rng, &g.value(p.value).ty))
        .collect()
}

/// Compare JIT and interpreter on `inputs`: bit for bit on non-float results,
/// within `rtol` (plus a tiny absolute slack) on floats (`rtol = 0` means bits).
pub fn compare(g: &Graph, inputs: &[Tensor], contract: Contract, rtol: f32, what: &str) {
    compare_with(g, inputs, contract, qc_jit::KernelSet::Auto, rtol, what)
}

/// [`compare`] with the given kernel set.
pub fn compare_with(
    g: &Graph,
    inputs: &[Tensor],
    contract: Contract,
    kernels: qc_jit::KernelSet,
    rtol: f32,
    what: &str,
) {
    let want = qc_interp::run(g, inputs, &qc_interp::Options { contract })
        .unwrap_or_else(|e| panic!("{what}: interpreter: {e}"));
    let m = qc_jit::compile(
        g,
        &JitOptions {
            contract,
            kernels,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{what}: compile: {e}"));
    let got = m.run(inputs).unwrap_or_else(|e| panic!("{what}: run: {e}"));
    assert_eq!(want.len(), got.len(), "{what}: result count");
    for (o, (w, j)) in want.iter().zip(&got).enumerate() {
        assert_eq!(w.dtype(), j.dtype(), "{what}: output {o} dtype");
        assert_eq!(w.dims(), j.dims(), "{what}: output {o} shape");
        match (w.data(), j.data()) {
            (TensorData::F32(a), TensorData::F32(b)) if rtol > 0.0 => {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    let tol = rtol * x.abs().max(y.abs()) + 1e-6;
                    assert!(
                        (x - y).abs() <= tol || (x.is_nan() && y.is_nan()),
                        "{what}: output {o}[{i}]: interp {x} jit {y}"
                    );
                }
            }
            (a, b) => {
                let (ab, bb) = (a.to_le_bytes(), b.to_le_bytes());
                if ab != bb {
                    let size = w.dtype().size();
                    let i = ab
                        .chunks(size)
                        .zip(bb.chunks(size))
                        .position(|(x, y)| x != y)
                        .unwrap_or(0);
                    panic!(
                        "{what}: output {o} differs first at element {i}: interp {} jit {}",
                        a.get_f64(i),
                        b.get_f64(i)
                    );
                }
            }
        }
    }
}

/// Parse a text-IR graph and compare on seeded inputs (quantized: bits; float: rtol).
pub fn check_text(src: &str, rtol: f32) {
    let g = qc_ir::text::parse(src).unwrap_or_else(|e| panic!("parse: {e}\n{src}"));
    for seed in [1, 2] {
        let ins = inputs_for(&g, seed);
        compare(&g, &ins, Contract::Float, rtol, src);
    }
}

// ---- graph building ----

pub fn node(g: &mut Graph, op: Op, inputs: &[ValueId]) -> ValueId {
    let tys: Vec<&TensorType> = inputs.iter().map(|&v| g.ty(v)).collect();
    let mut out = qc_ir::infer::infer(&op, &tys).expect("inference");
    out.truncate(1);
    let id = g.add_node(op, inputs.to_vec(), out, "n");
    g.node(id).outputs[0]
}

pub fn node_q(g: &mut Graph, op: Op, inputs: &[ValueId], q: QuantParams) -> ValueId {
    let tys: Vec<&TensorType> = inputs.iter().map(|&v| g.ty(v)).collect();
    let mut out = qc_ir::infer::infer(&op, &tys).expect("inference");
    out.truncate(1);
    out[0] = TensorType::quantized(out[0].shape.clone(), q);
    let id = g.add_node(op, inputs.to_vec(), out, "nq");
    g.node(id).outputs[0]
}

pub fn qconst(g: &mut Graph, t: Tensor, q: Option<QuantParams>) -> ValueId {
    let c = g.add_const_tensor(std::sync::Arc::new(t));
    g.add_const_value(c, q)
}

pub fn pt(q: QType, scale: f32, zp: i32) -> QuantParams {
    QuantParams::per_tensor(q, scale, zp)
}
