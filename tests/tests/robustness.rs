//! No input file can make qc panic: truncated and byte-mutated versions of every
//! fixture model go through import; each must give an `Err` or a graph that passes
//! the verifier, never a panic. Absurd sizes are rejected before allocation.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use protobuf::Message;
use qc_onnx::{import, ImportOptions, NoExternalData};

/// xorshift64*: a fixed-seed generator so every run tests the same cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn fixture_models() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "onnx") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Import `bytes`; a panic is reported as `Err(message)`.
fn import_no_panic(bytes: &[u8]) -> Result<(), String> {
    let r = catch_unwind(AssertUnwindSafe(|| {
        if let Ok(g) = import(bytes, &ImportOptions::default(), &NoExternalData) {
            if let Err(e) = qc_ir::verify::verify(&g) {
                return Err(format!("import returned a graph the verifier rejects: {e}"));
            }
        }
        Ok(())
    }));
    match r {
        Ok(r) => r,
        Err(p) => Err(p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())),
    }
}

#[test]
fn truncated_and_mutated_models_never_panic() {
    let models = fixture_models();
    assert!(
        models.len() >= 50,
        "expected the fixture models, found {}",
        models.len()
    );
    // Quiet the default hook so the log shows our summary, not thousands of traces.
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut cases = 0usize;
    let mut failures = Vec::new();
    for path in &models {
        let bytes = std::fs::read(path).expect("fixture readable");
        // Big models cost more per import: fewer cases for them.
        let (cuts, muts) = if bytes.len() > 64 * 1024 {
            (6, 12)
        } else {
            (12, 40)
        };
        let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
        for _ in 0..cuts {
            let n = rng.below(bytes.len());
            variants.push((format!("truncated to {n}"), bytes[..n].to_vec()));
        }
        for _ in 0..muts {
            let mut b = bytes.clone();
            let k = 1 + rng.below(8);
            let mut what = Vec::new();
            for _ in 0..k {
                let i = rng.below(b.len());
                let v = match rng.below(4) {
                    0 => 0xff,
                    1 => 0x00,
                    2 => b[i] ^ (1 << rng.below(8)),
                    _ => rng.next() as u8,
                };
                what.push(format!("[{i}]={v:#04x}"));
                b[i] = v;
            }
            variants.push((format!("mutated {}", what.join(",")), b));
        }
        for (desc, b) in variants {
            cases += 1;
            if let Err(msg) = import_no_panic(&b) {
                failures.push(format!("{} {desc}: {msg}", path.display()));
            }
        }
    }
    let _ = std::panic::take_hook();
    println!(
        "robustness: {cases} cases over {} models, {} failures",
        models.len(),
        failures.len()
    );
    assert!(cases >= 2000, "only {cases} cases");
    assert!(
        failures.is_empty(),
        "{} cases panicked or broke the verifier:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A model whose initializer claims 2^40 elements must be rejected without allocating.
#[test]
fn absurd_sizes_are_rejected_before_allocation() {
    use onnx_protobuf::{
        GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, ValueInfoProto,
    };
    let mut w = TensorProto::new();
    w.name = "w".into();
    w.data_type = 1; // FLOAT
    w.dims = vec![1 << 20, 1 << 20];
    w.raw_data = vec![0u8; 16];
    let mut node = NodeProto::new();
    node.op_type = "Add".into();
    node.input = vec!["x".into(), "w".into()];
    node.output = vec!["y".into()];
    let mut x = ValueInfoProto::new();
    x.name = "x".into();
    let mut tt = onnx_protobuf::type_proto::Tensor::new();
    tt.elem_type = 1;
    let mut shape = onnx_protobuf::TensorShapeProto::new();
    let mut d = onnx_protobuf::tensor_shape_proto::Dimension::new();
    d.set_dim_value(1);
    shape.dim.push(d);
    tt.shape = Some(shape).into();
    let mut tp = onnx_protobuf::TypeProto::new();
    tp.set_tensor_type(tt);
    x.type_ = Some(tp).into();
    let mut y = ValueInfoProto::new();
    y.name = "y".into();
    let mut g = GraphProto::new();
    g.node.push(node);
    g.initializer.push(w);
    g.input.push(x);
    g.output.push(y);
    let mut m = ModelProto::new();
    m.ir_version = 8;
    let mut op = OperatorSetIdProto::new();
    op.version = 13;
    m.opset_import.push(op);
    m.graph = Some(g).into();
    let bytes = m.write_to_bytes().expect("serializable");
    let err = import(&bytes, &ImportOptions::default(), &NoExternalData)
        .expect_err("2^40 elements must be rejected");
    let msg = err.to_string();
    assert!(
        msg.contains('w') || msg.contains("element"),
        "error should name the tensor: {msg}"
    );
}
