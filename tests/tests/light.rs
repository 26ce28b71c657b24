//! The nine ImageNet models of the onnx package's `backend/test/data/light`
//! (`fixtures/light/`), whole, through qc's importer and interpreter.
//!
//! Two checks per model, each its own `#[test]` so the harness runs them in parallel:
//! - `<m>_constant`: the model as shipped (every weight a `ConstantOfShape` of 0.02) on
//!   the backend tests' input `arange(n) / n`, against the official
//!   `light_<m>_output_0.pb` at the ONNX tolerances. Uniform weights make every channel
//!   equal (the softmax outputs are all 0.001), so this mainly proves the model imports
//!   and runs end to end. The imported graph must also survive `parse(print(g)) == g`.
//! - `<m>_random`: the `ConstantOfShape` weights replaced by seeded random tensors
//!   (`<m>.random.txt` gives each tensor's centre and half-width, the values come from
//!   the counter-based PRNG below, the same as `fixtures/gen/light.py`), the final
//!   Softmax removed, against onnxruntime's logits `<m>.random_logits.npy`.

// Test code: a panic is how a test fails.
#![allow(clippy::panic, clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::{compare, fixtures, read_npy, read_pb, Tol, ONNX_TOL};
use onnx_protobuf::{
    tensor_shape_proto, type_proto, ModelProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use protobuf::{Message, MessageField};
use qc_ir::{Tensor, TensorData};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn splitmix64(x: u64) -> u64 {
    let x = x.wrapping_add(GOLDEN);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Tensor `k` of a sidecar: element `i` is `center + halfwidth * (2u - 1)` with
/// `u = (splitmix64(seed_k + i) >> 40) / 2^24`, `seed_k = (k + 1) * GOLDEN`, computed in
/// f64 and rounded once to f32.
fn prng_tensor(k: u64, n: usize, center: f64, halfwidth: f64) -> Vec<f32> {
    let seed = (k + 1).wrapping_mul(GOLDEN);
    // A plain loop: this crate is built without optimization and VGG19 has 143M weights.
    let mut v = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let u = (splitmix64(seed.wrapping_add(i)) >> 40) as f64 / (1u64 << 24) as f64;
        v.push((center + halfwidth * (2.0 * u - 1.0)) as f32);
    }
    v
}

#[test]
fn prng_matches_python() {
    // splitmix64 from state 0 (reference sequence of Vigna's splitmix64.c): the state
    // after one step is GOLDEN, so our tensor 0 element 0 is the reference's 2nd output.
    assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
    // Printed by fixtures/gen/light.py (numpy uint64 implementation).
    let z: Vec<u64> = (0..3).map(|i| splitmix64(GOLDEN + i)).collect();
    assert_eq!(
        z,
        [
            0x6e78_9e6a_a1b9_65f4,
            0xbeeb_8da1_658e_ec67,
            0xbfc8_4610_0bfc_1e42
        ]
    );
    let bits: Vec<u32> = prng_tensor(0, 6, 0.0, 1.0)
        .iter()
        .map(|v| v.to_bits())
        .collect();
    assert_eq!(
        bits,
        [0xbe0c3b10, 0x3efbae34, 0x3eff2118, 0x3ecd19bc, 0x3f48e98c, 0x3f012e62]
    );
    let bits: Vec<u32> = prng_tensor(3, 4, 0.25, 0.125)
        .iter()
        .map(|v| v.to_bits())
        .collect();
    assert_eq!(bits, [0x3e1b3989, 0x3e71bb54, 0x3e4fc446, 0x3e37688d]);
}

fn light_dir() -> PathBuf {
    fixtures().join("light")
}

/// The backend tests' input for a `[1, 3, 224, 224]` model: `arange(n) / n` in f64, then
/// f32 (`generate_dummy_data(random=False)`), checked against the committed `.npy`.
fn input() -> Tensor {
    let shape = [1usize, 3, 224, 224];
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| (i as f64 / n as f64) as f32).collect();
    let t = Tensor::from_f32(shape, v).expect("invariant: shape matches data");
    let npy = read_npy(&light_dir().join("input_1x3x224x224.npy"));
    assert_eq!(npy, t, "input_1x3x224x224.npy is not arange(n)/n");
    t
}

fn int_data(t: &TensorProto) -> Vec<i64> {
    let bytes = t.write_to_bytes().expect("serializing a parsed tensor");
    qc_onnx::tensor_from_pb(&bytes)
        .unwrap_or_else(|e| panic!("initializer '{}': {e}", t.name))
        .to_i64_vec()
}

fn float_input(name: &str, dims: &[i64]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for &d in dims {
        let mut dim = tensor_shape_proto::Dimension::new();
        dim.set_dim_value(d);
        shape.dim.push(dim);
    }
    let mut tt = type_proto::Tensor::new();
    tt.elem_type = 1; // FLOAT
    tt.shape = MessageField::some(shape);
    let mut ty = TypeProto::new();
    ty.set_tensor_type(tt);
    let mut v = ValueInfoProto::new();
    v.name = name.to_string();
    v.type_ = MessageField::some(ty);
    v
}

/// Apply `<model>.random.txt` to the shipped model: every ConstantOfShape listed becomes
/// an initializer (and, as IR version 3 requires, a graph input) with PRNG data, and a
/// final Softmax is removed so the output is the logits.
fn random_variant(model: &str) -> Vec<u8> {
    let dir = light_dir();
    let bytes = common::read_bytes(&dir.join(format!("light_{model}.onnx")));
    let sidecar =
        std::fs::read_to_string(dir.join(format!("{model}.random.txt"))).expect("reading sidecar");
    let mut m = ModelProto::parse_from_bytes(&bytes).expect("parsing model");
    drop(bytes);
    let g = m.graph.as_mut().expect("model has a graph");
    for (k, line) in sidecar.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [name, center, halfwidth] = f[..] else {
            panic!("sidecar line {}: '{line}'", k + 1)
        };
        let (center, halfwidth): (f64, f64) = (
            center.parse().expect("center"),
            halfwidth.parse().expect("halfwidth"),
        );
        let pos = g
            .node
            .iter()
            .position(|n| {
                n.op_type == "ConstantOfShape" && n.output.first().map(String::as_str) == Some(name)
            })
            .unwrap_or_else(|| panic!("no ConstantOfShape producing '{name}'"));
        let node = g.node.remove(pos);
        let shape_name = &node.input[0];
        let init = g
            .initializer
            .iter()
            .find(|t| &t.name == shape_name)
            .expect("shape initializer");
        let dims = int_data(init);
        let n = dims.iter().product::<i64>() as usize;
        let mut t = TensorProto::new();
        t.name = name.to_string();
        t.dims = dims.clone();
        t.data_type = 1; // FLOAT
        t.raw_data = prng_tensor(k as u64, n, center, halfwidth)
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        g.initializer.push(t);
        g.input.push(float_input(name, &dims));
    }
    assert!(
        g.node.iter().all(|n| n.op_type != "ConstantOfShape"),
        "sidecar misses a ConstantOfShape"
    );
    let last = g.node.last().expect("graph has nodes");
    if last.op_type == "Softmax" {
        assert_eq!(g.output.len(), 1);
        assert_eq!(g.output[0].name, last.output[0]);
        g.output[0].name = last.input[0].clone();
        g.node.pop();
    }
    m.write_to_bytes().expect("serializing model")
}

fn check_constant(model: &str) {
    let x = input();
    let dir = light_dir();
    let t0 = Instant::now();
    let g = common::import(&common::read_bytes(
        &dir.join(format!("light_{model}.onnx")),
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let t1 = Instant::now();
    let y = common::run1(&g, &x);
    let t2 = Instant::now();
    let exp =
        read_pb(&dir.join(format!("light_{model}_output_0.pb"))).unwrap_or_else(|e| panic!("{e}"));
    let a =
        compare(&y, &exp, ONNX_TOL).unwrap_or_else(|e| panic!("{model} (constant weights): {e}"));
    common::check_text_roundtrip(&g).unwrap_or_else(|e| panic!("{model}: text form: {e}"));
    println!(
        "light {model:14} constant: import {:6.2}s run {:6.2}s  {}/{} identical, max abs {:.2e}, max rel {:.2e}",
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64(),
        a.identical,
        a.n,
        a.max_abs,
        a.max_rel
    );
}

fn check_random(model: &str) {
    let x = input();
    let t0 = Instant::now();
    let bytes = random_variant(model);
    let tm = Instant::now();
    let g = common::import(&bytes).unwrap_or_else(|e| panic!("{e}"));
    drop(bytes);
    let t1 = Instant::now();
    let y = common::run1(&g, &x);
    drop(g);
    let t2 = Instant::now();
    let exp = read_npy(&light_dir().join(format!("{model}.random_logits.npy")));
    let max = exp.to_f64_vec().iter().fold(0.0f64, |m, v| m.max(v.abs()));
    // A logit is a long sum of products of O(1) activations and weights, so its rounding
    // error (f32, different summation order from onnxruntime's) scales with the size of
    // the terms, i.e. with the logits' overall magnitude, not with the logit itself: a
    // logit near 0 is a cancellation. 1e-4 * max|logit| is ~100x the f32 error of such
    // sums yet ~1e4x below what a wrong weight, op or layout does to the logits (O(std)).
    let tol = Tol {
        rtol: 1e-3,
        atol: 1e-4 * max,
    };
    let a = compare(&y, &exp, tol).unwrap_or_else(|e| panic!("{model} (random weights): {e}"));
    println!(
        "light {model:14} random:   weights {:6.2}s import {:6.2}s run {:6.2}s  {}/{} identical, max abs {:.2e} (max |logit| {max:.3}), max rel {:.2e}",
        (tm - t0).as_secs_f64(),
        (t1 - tm).as_secs_f64(),
        (t2 - t1).as_secs_f64(),
        a.identical,
        a.n,
        a.max_abs,
        a.max_rel
    );
}

macro_rules! light_tests {
    ($($model:ident),* $(,)?) => {
        mod constant {
            $(#[test] fn $model() { super::check_constant(stringify!($model)); })*
        }
        mod random {
            $(#[test] fn $model() { super::check_random(stringify!($model)); })*
        }
    };
}

light_tests!(
    bvlc_alexnet,
    densenet121,
    inception_v1,
    inception_v2,
    resnet50,
    shufflenet,
    squeezenet,
    vgg19,
    zfnet512
);

#[test]
fn fixture_files_are_consistent() {
    // Independent of qc: the committed input is what the backend runner generates.
    let _ = input();
    // Every light model has a sidecar and a golden.
    for m in [
        "bvlc_alexnet",
        "densenet121",
        "inception_v1",
        "inception_v2",
        "resnet50",
        "shufflenet",
        "squeezenet",
        "vgg19",
        "zfnet512",
    ] {
        let logits = read_npy(&light_dir().join(format!("{m}.random_logits.npy")));
        assert_eq!(logits.len(), 1000, "{m}");
        assert!(matches!(logits.data(), TensorData::F32(_)), "{m}");
    }
}
