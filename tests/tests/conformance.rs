//! The ONNX backend node tests (`fixtures/onnx-node/<case>/`) through qc's importer and
//! interpreter, held to `tests/conformance.manifest`.
//!
//! Each case is `model.onnx` plus `test_data_set_*/input_<j>.pb` (the value of the
//! model's `j`-th graph input) and `output_<j>.pb` (of its `j`-th graph output). Inputs
//! are runtime values, except those the importer reports as `InputMustBeConstant`: those
//! move into `ImportOptions::const_inputs` (with the test data's value) and the import is
//! retried. Outputs are compared as the ONNX backend tests do (see `common`).
//!
//! The manifest stays honest in both directions: a `pass` case that fails, an
//! `unsupported` case that passes, and a case directory without a manifest line (or the
//! reverse) all fail the test. `QC_CONFORMANCE_FILTER=<substring>` runs only the cases
//! whose name contains it (the completeness check is then skipped);
//! `QC_CONFORMANCE_VERBOSE=1` also prints why each `unsupported` case fails.

// Test code: a panic is how a test fails.
#![allow(clippy::panic, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use common::{fixtures, import_case, io_names, read_set_inputs, subdirs, ONNX_TOL};

#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Pass,
    Unsupported(String),
}

fn manifest_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance.manifest")
}

/// Parse the manifest; malformed or duplicate lines are an error.
fn parse_manifest(text: &str) -> Result<BTreeMap<String, Expect>, String> {
    let mut m = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (case, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        let expect = if rest == "pass" {
            Expect::Pass
        } else if let Some(reason) = rest.strip_prefix("unsupported:") {
            let reason = reason.trim();
            if reason.is_empty() {
                return Err(format!(
                    "manifest line {}: 'unsupported' needs a reason",
                    i + 1
                ));
            }
            Expect::Unsupported(reason.to_string())
        } else {
            return Err(format!(
                "manifest line {}: expected 'pass' or 'unsupported: <reason>', got '{rest}'",
                i + 1
            ));
        };
        if m.insert(case.to_string(), expect).is_some() {
            return Err(format!("manifest line {}: duplicate case {case}", i + 1));
        }
    }
    Ok(m)
}

fn run_case(case: &Path) -> Result<(), String> {
    common::check_node_case(case, ONNX_TOL, &common::run)
}

#[test]
fn manifest_parser_rejects_malformed_lines() {
    assert!(parse_manifest("test_a pass\n# c\n\ntest_b unsupported: int4 element type\n").is_ok());
    assert!(parse_manifest("test_a pas\n").is_err());
    assert!(parse_manifest("test_a unsupported:\n").is_err());
    assert!(parse_manifest("test_a pass\ntest_a pass\n").is_err());
    assert_eq!(
        parse_manifest("test_b unsupported: blocked quantization")
            .ok()
            .and_then(|m| m.get("test_b").cloned()),
        Some(Expect::Unsupported("blocked quantization".into()))
    );
}

#[test]
fn onnx_node_conformance() {
    let text =
        std::fs::read_to_string(manifest_path()).expect("reading tests/conformance.manifest");
    let manifest = parse_manifest(&text).unwrap_or_else(|e| panic!("{e}"));
    let filter = std::env::var("QC_CONFORMANCE_FILTER").ok();
    let verbose = std::env::var_os("QC_CONFORMANCE_VERBOSE").is_some();
    let cases: BTreeMap<String, PathBuf> = subdirs(&fixtures().join("onnx-node"), "test_")
        .into_iter()
        .filter_map(|p| Some((p.file_name()?.to_str()?.to_string(), p)))
        .collect();

    let mut problems = Vec::new();
    if filter.is_none() {
        for c in cases.keys().filter(|c| !manifest.contains_key(*c)) {
            problems.push(format!("{c}: case directory has no manifest line"));
        }
        for c in manifest.keys().filter(|c| !cases.contains_key(*c)) {
            problems.push(format!("{c}: manifest line has no case directory"));
        }
    }

    let (mut pass, mut unsupported, mut failed) = (0usize, 0usize, 0usize);
    for (name, dir) in &cases {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let Some(expect) = manifest.get(name) else {
            continue;
        };
        let outcome = match catch_unwind(AssertUnwindSafe(|| run_case(dir))) {
            Ok(r) => r,
            Err(p) => Err(format!(
                "panicked: {}",
                p.downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| p.downcast_ref::<&str>().copied())
                    .unwrap_or("?")
            )),
        };
        match (expect, outcome) {
            (Expect::Pass, Ok(())) => pass += 1,
            (Expect::Pass, Err(e)) => {
                failed += 1;
                problems.push(format!("{name}: FAILED: {e}"));
            }
            (Expect::Unsupported(why), Err(e)) => {
                unsupported += 1;
                if verbose {
                    println!("  {name}: unsupported ({why}): {e}");
                }
            }
            (Expect::Unsupported(why), Ok(())) => {
                problems.push(format!(
                    "{name}: marked unsupported ({why}) but passes: mark it pass"
                ));
            }
        }
    }
    println!("conformance: {pass} pass, {unsupported} unsupported ({failed} marked pass fail)");
    for p in &problems {
        println!("  {p}");
    }
    assert!(
        problems.is_empty(),
        "{} conformance problems (listed above)",
        problems.len()
    );
}

/// `parse(print(g)) == g` on every `pass` case that imports (import failures are the
/// conformance test's business).
#[test]
fn text_form_round_trips_imported_cases() {
    let text =
        std::fs::read_to_string(manifest_path()).expect("reading tests/conformance.manifest");
    let manifest = parse_manifest(&text).unwrap_or_else(|e| panic!("{e}"));
    let (mut ok, mut failures) = (0usize, Vec::new());
    for (name, expect) in &manifest {
        if *expect != Expect::Pass {
            continue;
        }
        let case = fixtures().join("onnx-node").join(name);
        let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<Option<()>, String> {
            let model = std::fs::read(case.join("model.onnx")).map_err(|e| e.to_string())?;
            let (in_names, _) = io_names(&model)?;
            let Some(set) = subdirs(&case, "test_data_set_").into_iter().next() else {
                return Ok(None);
            };
            let inputs = read_set_inputs(&set, &in_names)?;
            let Ok(g) = import_case(&model, &inputs) else {
                return Ok(None);
            };
            common::check_text_roundtrip(&g).map(Some)
        }));
        match outcome {
            Ok(Ok(Some(()))) => ok += 1,
            Ok(Ok(None)) => {}
            Ok(Err(e)) => failures.push(format!("{name}: {e}")),
            Err(_) => failures.push(format!("{name}: panicked")),
        }
    }
    println!(
        "text round-trip: {ok} imported cases ok, {} failed",
        failures.len()
    );
    for f in &failures {
        println!("  {f}");
    }
    assert!(
        failures.is_empty(),
        "{} cases do not round-trip (listed above)",
        failures.len()
    );
}
