//! Manual check: import every model of the ONNX node-test corpus and the light
//! model zoo, printing one line per failure. Graph inputs are shaped like the first
//! test data set, and inputs named by `InputMustBeConstant` are bound to that data
//! (as the conformance harness does). Run with
//! `cargo test -p qc-onnx --test corpus -- --ignored --nocapture`.
#![allow(clippy::panic)]

use std::collections::HashMap;
use std::path::Path;

use onnx_protobuf::{Message, ModelProto};
use qc_onnx::{Error, ImportOptions};

fn try_import(path: &Path) -> Result<usize, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let model = ModelProto::parse_from_bytes(&bytes).map_err(|e| e.to_string())?;
    let mut data: HashMap<String, qc_ir::Tensor> = HashMap::new();
    let dir = path.parent().map(|d| d.join("test_data_set_0"));
    if let Some(dir) = dir.filter(|d| d.exists()) {
        let inits: Vec<&str> = model
            .graph
            .initializer
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        let inputs = model
            .graph
            .input
            .iter()
            .filter(|i| !inits.contains(&i.name.as_str()));
        for (j, vi) in inputs.enumerate() {
            let p = dir.join(format!("input_{j}.pb"));
            if let Ok(b) = std::fs::read(&p) {
                let t = qc_onnx::tensor_from_pb(&b).map_err(|e| format!("{}: {e}", p.display()))?;
                data.insert(vi.name.clone(), t);
            }
        }
    }
    let mut opts = ImportOptions::default();
    for (k, t) in &data {
        opts.input_shapes.insert(k.clone(), t.dims().to_vec());
    }
    loop {
        match qc_onnx::import(&bytes, &opts, &qc_onnx::NoExternalData) {
            Ok(g) => return Ok(g.nodes.len()),
            Err(Error::InputMustBeConstant { input, .. }) if data.contains_key(&input) => {
                let t = data.remove(&input).ok_or("invariant")?;
                opts.input_shapes.remove(&input);
                opts.const_inputs.insert(input, t);
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[test]
#[ignore = "reads the shared model corpus; a manual check"]
fn import_corpus() {
    let mut paths = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/work/shared/onnx-node") {
        for e in rd.flatten() {
            let p = e.path().join("model.onnx");
            if p.exists() {
                paths.push(p);
            }
        }
    }
    let light =
        "/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/onnx/backend/test/data/light";
    if let Ok(rd) = std::fs::read_dir(light) {
        for e in rd.flatten() {
            if e.path().extension().is_some_and(|x| x == "onnx") {
                paths.push(e.path());
            }
        }
    }
    paths.sort();
    let (mut ok, mut bad) = (0, 0);
    for p in &paths {
        match try_import(p) {
            Ok(_) => ok += 1,
            Err(e) => {
                bad += 1;
                println!("FAIL {}: {e}", p.display());
            }
        }
    }
    println!("imported {ok}, failed {bad}");
}
