//! `qc quantize`, `qc debug-accuracy`, `qc inspect --format dot` and batched `qc run`
//! through the binary, on the digits CNN (fixtures/digits).
//!
//! References are independent of the code under test: onnxruntime's outputs for the
//! QDQ model `qc quantize` wrote (`qc_int8_ort_out.npy`, from
//! `fixtures/gen/digits_qc.py`), the labels and the float / onnxruntime accuracies in
//! `reference.json`, and the text IR's node count for the dot output.

// Test code: a panic is how a test fails.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

mod common;
use common::{qc, stderr, stdout, tmpdir};

use qc::ir::Tensor;

/// Keep in sync with fixtures/gen/digits_qc.py.
const QUANTIZE_ARGS: &[&str] = &["--per-channel"];

fn digits(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/digits")
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

fn read(path: &str) -> Tensor {
    qc::npy::read_npy(Path::new(path)).unwrap()
}

/// `"key": { "correct": N` in reference.json: the first "correct" after the key.
fn reference(key: &str) -> usize {
    let s = std::fs::read_to_string(digits("reference.json")).unwrap();
    let rest = &s[s.find(&format!("\"{key}\"")).unwrap()..];
    let c = rest.find("\"correct\":").unwrap() + "\"correct\":".len();
    rest[c..]
        .trim_start()
        .split(|ch: char| !ch.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Correct predictions of `[N, 10]` logits (argmax, first index on ties).
fn correct(logits: &[f32], labels: &[i64]) -> usize {
    logits
        .chunks(10)
        .zip(labels)
        .filter(|(row, &y)| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            best as i64 == y
        })
        .count()
}

fn identical_fraction(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

fn quantize_to(dir: &Path) -> PathBuf {
    let out = dir.join("qc_int8.onnx");
    let model = digits("digits_float.onnx");
    let calib = digits("calib.npy");
    let mut args = vec![
        "quantize",
        &model,
        "--calib",
        &calib,
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(QUANTIZE_ARGS);
    let o = qc(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    // The progress bar draws only on a terminal: piped stderr stays empty.
    assert_eq!(stderr(&o), "");
    let report = stdout(&o);
    for key in [
        "samples: 200",
        "calibration_ms:",
        "bias_overflow_fixes:",
        "warnings:",
    ] {
        assert!(report.contains(key), "missing '{key}' in:\n{report}");
    }
    out
}

#[test]
fn quantized_digits_agree_with_onnxruntime_and_keep_accuracy() {
    let dir = tmpdir("quantize-cli", "agree");
    let out = quantize_to(&dir);
    let written = std::fs::read(&out).unwrap();
    let fixture = std::fs::read(digits("qc_int8.onnx")).unwrap();
    eprintln!(
        "qc quantize output byte-identical to fixtures/digits/qc_int8.onnx: {}",
        written == fixture
    );

    let model = qc::Model::load(&out).expect("the written QDQ model loads");
    let compiled = model
        .compile(&qc::Options::default())
        .expect("JIT compiles it");
    let x = read(&digits("test_x.npy"));
    let labels = read(&digits("test_y.npy")).to_i64_vec();
    let xs = x.to_f32_vec();
    let n = labels.len();
    assert_eq!(x.dims(), &[n, 1, 8, 8]);
    let mut logits = Vec::with_capacity(n * 10);
    for s in xs.chunks(64) {
        let out = compiled
            .run(&[qc::TensorRef::new(&[1, 1, 8, 8], s)])
            .unwrap();
        logits.extend(out[0].to_f32_vec());
    }
    let ort = read(&digits("qc_int8_ort_out.npy")).to_f32_vec();
    let same = identical_fraction(&logits, &ort);
    let got = correct(&logits, &labels);
    let float = reference("float");
    let ort_best = reference("ort_best_of_all");
    eprintln!(
        "qc-jit vs onnxruntime: {:.4}% of {} logits identical; accuracy {got}/{n} (float {float}, onnxruntime quantize_static best {ort_best})",
        same * 100.0,
        logits.len()
    );
    assert!(same >= 0.999, "only {:.4}% identical", same * 100.0);
    // >= float - 0.5 points, and >= onnxruntime's best.
    assert!(got * 1000 >= float * 1000 - 5 * n, "{got} vs float {float}");
    assert!(got >= ort_best, "{got} vs onnxruntime {ort_best}");
}

#[test]
fn run_takes_a_batch_and_stacks_the_outputs() {
    let dir = tmpdir("quantize-cli", "batch");
    // [540, 1, 8, 8] samples become a [540, 1, 1, 8, 8] batch for the [1, 1, 8, 8] input.
    let x = read(&digits("test_x.npy"));
    let mut dims = vec![x.dims()[0], 1];
    dims.extend_from_slice(&x.dims()[1..]);
    let batch = x.clone().reshaped(dims).unwrap();
    let input = dir.join("batch.npy");
    qc::npy::write_npy(&input, &batch).unwrap();
    let outdir = dir.join("out");
    let o = qc(&[
        "run",
        &digits("qc_int8.onnx"),
        "--input",
        input.to_str().unwrap(),
        "--target",
        "interp",
        "--output-dir",
        outdir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let files: Vec<_> = std::fs::read_dir(&outdir).unwrap().collect();
    assert_eq!(files.len(), 1);
    let y = qc::npy::read_npy(&files[0].as_ref().unwrap().path()).unwrap();
    assert_eq!(y.dims(), &[540, 1, 10]);
    // The interpreter (the oracle, `float` contract) against onnxruntime.
    let ort = read(&digits("qc_int8_ort_out.npy")).to_f32_vec();
    let same = identical_fraction(&y.to_f32_vec(), &ort);
    eprintln!(
        "qc-interp (batched run) vs onnxruntime: {:.4}% identical",
        same * 100.0
    );
    assert!(same >= 0.999, "only {:.4}% identical", same * 100.0);

    // A batch whose sample shape is wrong is one line and exit 1.
    let bad = dir.join("bad.npy");
    qc::npy::write_npy(
        &bad,
        &Tensor::from_f32([3, 1, 8, 8], vec![0.0; 192]).unwrap(),
    )
    .unwrap();
    let o = qc(&[
        "run",
        &digits("qc_int8.onnx"),
        "--input",
        bad.to_str().unwrap(),
        "--output-dir",
        outdir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).trim_end().lines().count(), 1, "{}", stderr(&o));
}

#[test]
fn calibration_from_a_directory_of_samples_matches_the_batch_file() {
    let dir = tmpdir("quantize-cli", "dir");
    let calib = read(&digits("calib.npy"));
    let samples = dir.join("samples");
    std::fs::create_dir_all(&samples).unwrap();
    // One file per sample, each without its leading 1 ([1, 8, 8]); names sort in order.
    for (i, c) in calib.to_f32_vec().chunks(64).enumerate() {
        let t = Tensor::from_f32([1, 8, 8], c.to_vec()).unwrap();
        qc::npy::write_npy(&samples.join(format!("s{i:04}.npy")), &t).unwrap();
    }
    let from_dir = dir.join("from_dir.onnx");
    let o = qc(&[
        "quantize",
        &digits("digits_float.onnx"),
        "--calib",
        &format!("x={}", samples.display()),
        "-o",
        from_dir.to_str().unwrap(),
        "--per-channel",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("samples: 200"), "{}", stdout(&o));
    let from_file = quantize_to(&dir);
    assert_eq!(
        std::fs::read(from_dir).unwrap(),
        std::fs::read(from_file).unwrap(),
        "the same samples give the same model"
    );
}

#[test]
fn bad_calibration_data_is_one_line_and_exit_1() {
    let dir = tmpdir("quantize-cli", "bad");
    let garbage = dir.join("garbage.npy");
    std::fs::write(&garbage, b"not an npy file").unwrap();
    let wrong_shape = dir.join("wrong.npy");
    qc::npy::write_npy(
        &wrong_shape,
        &Tensor::from_f32([4, 7], vec![0.5; 28]).unwrap(),
    )
    .unwrap();
    let out = dir.join("out.onnx");
    for (calib, needle) in [
        (garbage.to_str().unwrap().to_string(), "garbage.npy"),
        (wrong_shape.to_str().unwrap().to_string(), "[4,7]"),
        (
            dir.join("missing.npy").to_str().unwrap().to_string(),
            "missing.npy",
        ),
        (
            "nosuchinput=x.npy".to_string(),
            "no input named 'nosuchinput'",
        ),
    ] {
        let o = qc(&[
            "quantize",
            &digits("digits_float.onnx"),
            "--calib",
            &calib,
            "-o",
            out.to_str().unwrap(),
        ]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{calib}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{calib}: {err}");
        assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
        assert!(!out.exists(), "nothing is written on error");
    }
    let o = qc(&[
        "quantize",
        &digits("digits_float.onnx"),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--calib"), "{}", stderr(&o));
}

#[test]
fn debug_accuracy_prints_layers_worst_first_and_plots_them() {
    let dir = tmpdir("quantize-cli", "debug");
    let svg = dir.join("acc.svg");
    let o = qc(&[
        "debug-accuracy",
        &digits("digits_float.onnx"),
        "--calib",
        &digits("calib.npy"),
        "--per-channel",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["layer", "op", "sqnr_db", "cosine", "elements"]);
    let rows: Vec<(String, f64, f64)> = lines
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 5, "{l}");
            (
                f[0].to_string(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
        .collect();
    // Every quantized activation of the digits CNN: the input, three convs, the max
    // pool, global average pool, flatten and the classifier.
    assert_eq!(rows.len(), 8, "{out}");
    for name in ["x", "conv1", "conv2", "conv3", "fc"] {
        assert!(rows.iter().any(|r| r.0 == name), "no layer {name}:\n{out}");
    }
    for w in rows.windows(2) {
        assert!(w[0].1 <= w[1].1, "not sorted by SQNR:\n{out}");
    }
    for r in &rows {
        // 8-bit activations of a well-calibrated CNN: far above noise, nearly collinear.
        assert!(r.1 > 20.0 && r.2 > 0.99 && r.2 <= 1.0, "{r:?}");
    }
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.trim_end().ends_with("</svg>"));
    // Two bars per layer (SQNR and cosine) plus the background.
    assert_eq!(plot.matches("<rect").count(), 2 * rows.len() + 1);
    assert!(out.contains("plot: "), "{out}");
}

/// The accuracy table's rows: (layer, SQNR dB).
fn accuracy_rows(out: &str) -> Vec<(String, f64)> {
    out.lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[2].parse().unwrap())
        })
        .collect()
}

/// `--quantized` on the QDQ file qc wrote pairs every layer (the writer keeps node
/// names) and measures what quantizing inline measures: the same quantization seen
/// through two routes (the float QDQ graph, and the file's integer graph read back
/// through its real values).
#[test]
fn debug_accuracy_of_a_written_qdq_file_matches_the_inline_figures() {
    let inline = qc(&[
        "debug-accuracy",
        &digits("digits_float.onnx"),
        "--calib",
        &digits("calib.npy"),
        "--per-channel",
    ]);
    assert!(inline.status.success(), "{}", stderr(&inline));
    let file = qc(&[
        "debug-accuracy",
        &digits("digits_float.onnx"),
        "--calib",
        &digits("calib.npy"),
        "--quantized",
        &digits("qc_int8.onnx"),
    ]);
    assert!(file.status.success(), "{}", stderr(&file));
    let (a, b) = (
        accuracy_rows(&stdout(&inline)),
        accuracy_rows(&stdout(&file)),
    );
    for name in ["conv1", "conv2", "conv3", "fc"] {
        let x = a
            .iter()
            .find(|r| r.0 == name)
            .unwrap_or_else(|| panic!("inline {name}"));
        let y = b
            .iter()
            .find(|r| r.0 == name)
            .unwrap_or_else(|| panic!("file {name}"));
        assert!(
            (x.1 - y.1).abs() < 0.5,
            "{name}: inline {} dB, from the file {} dB",
            x.1,
            y.1
        );
    }
}

#[test]
fn inspect_dot_is_a_digraph_with_every_node_and_labelled_params() {
    let model = digits("qc_int8.onnx");
    let text = qc(&["inspect", &model]);
    assert!(text.status.success(), "{}", stderr(&text));
    let text = stdout(&text);
    let nodes: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("; nodes: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let o = qc(&["inspect", &model, "--format", "dot"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dot = stdout(&o);
    let body = dot
        .trim_end()
        .strip_prefix("digraph qc {")
        .and_then(|b| b.strip_suffix('}'))
        .unwrap_or_else(|| panic!("not a digraph:\n{dot}"));
    let mut declared = std::collections::BTreeSet::new();
    let mut edges = Vec::new();
    for l in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        assert!(l.ends_with(';'), "statement without ';': {l}");
        let head = l.split(" [").next().unwrap();
        if let Some((a, b)) = head.split_once(" -> ") {
            edges.push((a.to_string(), b.to_string()));
        } else if !matches!(head, "node" | "edge" | "rankdir=TB;") {
            assert!(declared.insert(head.to_string()), "declared twice: {head}");
        }
        // Quoted labels are closed on their line.
        assert_eq!(l.replace("\\\"", "").matches('"').count() % 2, 0, "{l}");
    }
    for (a, b) in &edges {
        assert!(declared.contains(a) && declared.contains(b), "{a} -> {b}");
    }
    let ops = declared
        .iter()
        .filter(|d| d.starts_with('n') && d[1..].chars().all(|c| c.is_ascii_digit()))
        .count();
    assert_eq!(ops, nodes, "dot op nodes vs the text IR's node count");
    assert!(declared.contains("in0") && declared.contains("out0"));
    // Quantized tensors carry their parameters: the u8 input after quantize, and
    // per-channel i8 weights.
    assert!(dot.contains("u8[1,1,8,8] q("), "{dot}");
    assert!(
        dot.contains("i8[16,1,3,3] q(per-axis 0: 16 scales"),
        "{dot}"
    );
}
