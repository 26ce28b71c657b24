//! Helpers shared by the model-level integration tests: fixture paths, loading `.npy`
//! and `.pb` tensors, importing and running through qc, and comparing outputs.
//!
//! Comparison follows the ONNX backend tests: integer and bool tensors must be equal,
//! float tensors must satisfy `|got - exp| <= atol + rtol * |exp|` element-wise (NaN
//! matches NaN), and shapes and element types must match exactly.

#![allow(dead_code)] // each test binary uses a different subset
#![allow(clippy::panic)] // test code: a panic is how a test fails

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use qc_ir::{Graph, Tensor, TensorData};

/// `fixtures/` at the repository root.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fixtures")
}

pub fn read_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A serialized ONNX `TensorProto` (`input_0.pb`, `output_0.pb`, ...).
pub fn read_pb(path: &Path) -> Result<Tensor, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    qc_onnx::tensor_from_pb(&bytes).map_err(|e| format!("decoding {}: {e}", path.display()))
}

/// A little-endian `.npy` file of a plain numeric dtype, C order.
pub fn read_npy(path: &Path) -> Tensor {
    let bytes = read_bytes(path);
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        npy.order(),
        npyz::Order::C,
        "{}: Fortran order",
        path.display()
    );
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let npyz::DType::Plain(ts) = npy.dtype() else {
        panic!("{}: not a plain dtype", path.display())
    };
    fn vec<T: npyz::Deserialize>(npy: npyz::NpyFile<&[u8]>, path: &Path) -> Vec<T> {
        npy.into_vec()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
    use npyz::TypeChar as C;
    let data = match (ts.type_char(), ts.size_field()) {
        (C::Float, 4) => TensorData::F32(vec(npy, path)),
        (C::Float, 8) => TensorData::F64(vec(npy, path)),
        (C::Int, 1) => TensorData::I8(vec(npy, path)),
        (C::Uint, 1) => TensorData::U8(vec(npy, path)),
        (C::Int, 4) => TensorData::I32(vec(npy, path)),
        (C::Int, 8) => TensorData::I64(vec(npy, path)),
        (c, n) => panic!("{}: unsupported npy dtype {c:?}{n}", path.display()),
    };
    Tensor::new(shape, data).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Tolerances of a float comparison: `|got - exp| <= atol + rtol * |exp|`.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub rtol: f64,
    pub atol: f64,
}

/// The ONNX backend tests' default.
pub const ONNX_TOL: Tol = Tol {
    rtol: 1e-3,
    atol: 1e-7,
};

/// What a successful comparison saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Agreement {
    pub n: usize,
    pub identical: usize,
    pub max_abs: f64,
    /// Largest `|got - exp| / |exp|` over elements with `exp != 0`.
    pub max_rel: f64,
}

/// Compare `got` with `exp`; `Err` describes the first mismatches.
pub fn compare(got: &Tensor, exp: &Tensor, tol: Tol) -> Result<Agreement, String> {
    if got.dtype() != exp.dtype() {
        return Err(format!("dtype {} != expected {}", got.dtype(), exp.dtype()));
    }
    if got.dims() != exp.dims() {
        return Err(format!("shape {} != expected {}", got.shape(), exp.shape()));
    }
    let mut a = Agreement {
        n: got.len(),
        ..Agreement::default()
    };
    let mut bad = Vec::new();
    let mut n_bad = 0usize;
    if got.dtype().is_float() {
        let (g, e) = (got.to_f64_vec(), exp.to_f64_vec());
        for (i, (&g, &e)) in g.iter().zip(&e).enumerate() {
            if g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan()) {
                a.identical += 1;
                continue;
            }
            let d = (g - e).abs();
            if d.is_finite() {
                a.max_abs = a.max_abs.max(d);
                if e != 0.0 {
                    a.max_rel = a.max_rel.max(d / e.abs());
                }
            }
            // Negated so that NaN against a number, or inf against a different value, fails.
            #[allow(clippy::neg_cmp_op_on_partial_ord)]
            let out_of_tol = !(d <= tol.atol + tol.rtol * e.abs());
            if out_of_tol {
                n_bad += 1;
                if bad.len() < 5 {
                    bad.push(format!("[{i}] {g} vs {e}"));
                }
            }
        }
    } else {
        // Exact for every integer type: u64 -> i64 is a bijection, so no two values alias.
        let (g, e) = (got.to_i64_vec(), exp.to_i64_vec());
        for (i, (&g, &e)) in g.iter().zip(&e).enumerate() {
            if g == e {
                a.identical += 1;
            } else {
                a.max_abs = a.max_abs.max((g as f64 - e as f64).abs());
                n_bad += 1;
                if bad.len() < 5 {
                    bad.push(format!("[{i}] {g} vs {e}"));
                }
            }
        }
    }
    if n_bad > 0 {
        return Err(format!(
            "{n_bad} of {} elements differ (max abs {:.3e}, max rel {:.3e}): {}",
            a.n,
            a.max_abs,
            a.max_rel,
            bad.join(", ")
        ));
    }
    Ok(a)
}

/// Import ONNX bytes whose inputs all have static shapes (no external data).
pub fn import(bytes: &[u8]) -> Result<Graph, String> {
    qc_onnx::import(
        bytes,
        &qc_onnx::ImportOptions::default(),
        &qc_onnx::NoExternalData,
    )
    .map_err(|e| format!("import: {e}"))
}

/// Run `g` with `inputs` given by graph-input name; returns outputs by graph-output name.
pub fn run_named(
    g: &Graph,
    inputs: &HashMap<String, Tensor>,
) -> Result<Vec<(String, Tensor)>, String> {
    let mut args = Vec::with_capacity(g.inputs.len());
    for p in &g.inputs {
        let t = inputs
            .get(&p.name)
            .ok_or_else(|| format!("no value for graph input '{}'", p.name))?;
        args.push(t.clone());
    }
    let outs = run(g, &args)?;
    Ok(g.outputs.iter().map(|p| p.name.clone()).zip(outs).collect())
}

/// Run `g` on positional inputs with the default interpreter options.
pub fn run(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, String> {
    let outs = qc_interp::run(g, inputs, &qc_interp::Options::default())
        .map_err(|e| format!("run: {e}"))?;
    if outs.len() != g.outputs.len() {
        return Err(format!(
            "run returned {} outputs for {} graph outputs",
            outs.len(),
            g.outputs.len()
        ));
    }
    Ok(outs)
}

/// The single f32 output of a single-input model.
pub fn run1(g: &Graph, x: &Tensor) -> Tensor {
    assert_eq!(g.inputs.len(), 1, "model has {} inputs", g.inputs.len());
    let mut outs = run(g, std::slice::from_ref(x)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outs.len(), 1, "model has {} outputs", outs.len());
    outs.remove(0)
}

/// Check `parse(print(g)) == g` on the compacted graph, resolving weights by digest.
pub fn check_text_roundtrip(g: &Graph) -> Result<(), String> {
    let mut g = g.clone();
    g.compact();
    let text = qc_ir::text::print(&g);
    let by_digest: HashMap<u64, Arc<Tensor>> =
        g.consts.iter().map(|t| (t.digest(), t.clone())).collect();
    let lookup = |d: u64, ty: &qc_ir::TensorType| -> Option<Arc<Tensor>> {
        by_digest
            .get(&d)
            .filter(|t| t.dtype() == ty.dtype && t.shape() == &ty.shape)
            .cloned()
    };
    let back = qc_ir::text::parse_with_consts(&text, &lookup)
        .map_err(|e| format!("re-parse: {e}\n{text}"))?;
    if back != g {
        let again = qc_ir::text::print(&back);
        let first_diff = text
            .lines()
            .zip(again.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("line {}:\n  printed: {a}\n  re-printed: {b}", i + 1))
            .unwrap_or_else(|| {
                "texts equal, graphs differ (in something the text does not show)".into()
            });
        return Err(format!("parse(print(g)) != g; {first_diff}"));
    }
    Ok(())
}

// ---- ONNX backend node-test cases (`fixtures/onnx-node/<case>/`) ----

/// Sorted subdirectories of `dir` whose names start with `prefix`.
pub fn subdirs(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    v.sort();
    v
}

/// `<prefix>_0.pb`, `<prefix>_1.pb`, ... up to the first missing index.
pub fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    (0..)
        .map(|j| dir.join(format!("{prefix}_{j}.pb")))
        .take_while(|p| p.exists())
        .collect()
}

/// Names of the model's graph inputs and outputs, in order.
pub fn io_names(model: &[u8]) -> Result<(Vec<String>, Vec<String>), String> {
    let m = <onnx_protobuf::ModelProto as protobuf::Message>::parse_from_bytes(model)
        .map_err(|e| format!("parsing model.onnx: {e}"))?;
    let g = m.graph.as_ref().ok_or("model.onnx has no graph")?;
    Ok((
        g.input.iter().map(|v| v.name.clone()).collect(),
        g.output.iter().map(|v| v.name.clone()).collect(),
    ))
}

/// The `input_*.pb` tensors of one `test_data_set_*`, by the model's input names.
pub fn read_set_inputs(set: &Path, in_names: &[String]) -> Result<HashMap<String, Tensor>, String> {
    let mut inputs = HashMap::new();
    for (j, p) in numbered(set, "input").iter().enumerate() {
        let name = in_names.get(j).ok_or_else(|| {
            format!(
                "{}: input_{j}.pb but the model has {} inputs",
                set.display(),
                in_names.len()
            )
        })?;
        inputs.insert(name.clone(), read_pb(p)?);
    }
    Ok(inputs)
}

/// Import, moving inputs the importer needs as constants into `const_inputs`.
pub fn import_case(model: &[u8], inputs: &HashMap<String, Tensor>) -> Result<Graph, String> {
    let mut opts = qc_onnx::ImportOptions::default();
    for (name, t) in inputs {
        opts.input_shapes.insert(name.clone(), t.dims().to_vec());
    }
    loop {
        match qc_onnx::import(model, &opts, &qc_onnx::NoExternalData) {
            Ok(g) => return Ok(g),
            Err(qc_onnx::Error::InputMustBeConstant { node, op, input }) => {
                let t = inputs.get(&input).ok_or_else(|| {
                    format!(
                        "{op} '{node}' needs input '{input}' constant, and the test has no value"
                    )
                })?;
                if opts.const_inputs.insert(input.clone(), t.clone()).is_some() {
                    return Err(format!(
                        "import asked again for constant input '{input}' ({op} '{node}')"
                    ));
                }
                opts.input_shapes.remove(&input);
            }
            Err(e) => return Err(format!("import: {e}")),
        }
    }
}

/// Executes a graph on positional inputs, returning outputs in graph-output order.
pub type Exec<'a> = &'a dyn Fn(&Graph, &[Tensor]) -> Result<Vec<Tensor>, String>;

/// Run every `test_data_set_*` of a case through `exec` (the graph and its remaining
/// inputs in graph order → outputs in graph-output order) and compare each
/// `output_*.pb` with `tol`.
pub fn check_node_case(case: &Path, tol: Tol, exec: Exec<'_>) -> Result<(), String> {
    let model =
        std::fs::read(case.join("model.onnx")).map_err(|e| format!("reading model.onnx: {e}"))?;
    let (in_names, out_names) = io_names(&model)?;
    let sets = subdirs(case, "test_data_set_");
    if sets.is_empty() {
        return Err("no test_data_set_*".into());
    }
    for set in sets {
        let set_name = set
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        let inputs = read_set_inputs(&set, &in_names)?;
        let g = import_case(&model, &inputs)?;
        let args: Vec<Tensor> = g
            .inputs
            .iter()
            .map(|p| {
                inputs
                    .get(&p.name)
                    .cloned()
                    .ok_or_else(|| format!("graph input '{}' has no test value", p.name))
            })
            .collect::<Result<_, _>>()?;
        let got = exec(&g, &args)?;
        for (j, p) in numbered(&set, "output").iter().enumerate() {
            let name = out_names.get(j).ok_or_else(|| {
                format!(
                    "{set_name}: output_{j}.pb but the model has {} outputs",
                    out_names.len()
                )
            })?;
            let k = g
                .outputs
                .iter()
                .position(|o| &o.name == name)
                .ok_or_else(|| format!("output '{name}' missing from qc's graph outputs"))?;
            let t = got
                .get(k)
                .ok_or_else(|| format!("output '{name}' not computed"))?;
            let exp = read_pb(p)?;
            compare(t, &exp, tol).map_err(|e| format!("{set_name} output '{name}': {e}"))?;
        }
    }
    Ok(())
}
