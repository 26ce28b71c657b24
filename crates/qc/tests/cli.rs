//! The `qc` binary end to end: `inspect` and `run` on fixture models, the light
//! models through `qc run --target interp` against the ONNX package's expected
//! outputs, and one-line errors with a non-zero exit code.

// Test code: a panic is how a test fails; `!(x <= tol)` is deliberate so NaN fails.
#![allow(clippy::panic, clippy::neg_cmp_op_on_partial_ord)]

use std::path::Path;

mod common;
use common::{fixtures, fx, qc, stderr, stdout, tmpdir};

/// |a - e| <= atol + rtol * |e| elementwise, like the ONNX backend tests.
fn assert_close(got: &[f64], want: &[f64], rtol: f64, atol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: element count");
    let mut worst = (0usize, 0.0f64);
    for (i, (&a, &e)) in got.iter().zip(want).enumerate() {
        let excess = (a - e).abs() - (atol + rtol * e.abs());
        if !(excess <= 0.0) && (excess > worst.1 || worst.1 == 0.0) {
            worst = (i, excess.max(f64::MIN_POSITIVE));
        }
    }
    assert!(
        worst.1 == 0.0,
        "{what}: element {} is {} but expected {}",
        worst.0,
        got[worst.0],
        want[worst.0]
    );
}

#[test]
fn inspect_prints_ir_and_summary_for_a_qdq_model() {
    let o = qc(&["inspect", &fx("models/cnn_qdq.onnx")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("func @main("), "IR text:\n{out}");
    for needle in [
        "quantize",
        "dequantize",
        "conv",
        "; ops:",
        "; parameters:",
        "; MACs:",
        "; activations:",
    ] {
        assert!(out.contains(needle), "missing '{needle}' in:\n{out}");
    }
}

#[test]
fn inspect_float_conv_bn_relu_model() {
    let model = fx("models/cnn_float.onnx");
    // As imported: Conv, BatchNormalization and Relu are separate nodes.
    let o = qc(&["inspect", &model, "--no-opt"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for needle in ["= conv ", "= batch_norm ", "= relu ", "= gemm "] {
        assert!(out.contains(needle), "missing '{needle}' in:\n{out}");
    }
    // After the default pipeline: BatchNorm folded, Relu fused into the conv.
    let o = qc(&["inspect", &model]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        !out.contains("batch_norm") && !out.contains("= relu "),
        "{out}"
    );
    assert!(out.contains("act=relu"), "{out}");
    // MACs of the fixture model are fixed by its architecture; make sure they are counted.
    let macs: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("; MACs: "))
        .and_then(|s| s.trim().parse().ok())
        .expect("a MACs line");
    assert!(macs > 0);
}

#[test]
fn run_writes_outputs_matching_onnxruntime() {
    for (model, golden, rtol, atol) in [
        (
            "models/cnn_float.onnx",
            "models/cnn_float.ort.npy",
            1e-4,
            1e-5,
        ),
        (
            "models/cnn_qdq.onnx",
            "models/cnn_qdq.ort_noopt.npy",
            0.0,
            0.0,
        ),
    ] {
        let input = fx(&model.replace(".onnx", ".input.npy"));
        let dir = tmpdir("cli", &model.replace('/', "_"));
        let o = qc(&[
            "run",
            &fx(model),
            "--input",
            &input,
            "--target",
            "interp",
            "--output-dir",
            dir.to_str().expect("utf-8 temp path"),
        ]);
        assert!(o.status.success(), "{model}: {}", stderr(&o));
        let files: Vec<_> = std::fs::read_dir(&dir)
            .expect("output dir")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(files.len(), 1, "{model}: one output file, got {files:?}");
        let got = qc::npy::read_npy(&files[0]).expect("output is a valid .npy");
        let want = qc::npy::read_npy(&fixtures().join(golden)).expect("golden");
        assert_eq!(got.dims(), want.dims(), "{model}: shape");
        if rtol == 0.0 && atol == 0.0 {
            // Quantized QDQ model executed unfused: compare in units of the output's
            // quantization step (the scale of the final dequantize's operand).
            let g = qc::load_onnx(Path::new(&fx(model)), &Default::default()).expect("imports");
            let out = g.outputs[0].value;
            let qc::ir::ValueDef::Node { node, .. } = g.value(out).def else {
                panic!("output is computed")
            };
            let n = g.node(node);
            assert_eq!(
                n.op.name(),
                "dequantize",
                "{model}: output comes from a dequantize"
            );
            let step = f64::from(
                g.ty(n.inputs[0])
                    .quant
                    .as_ref()
                    .expect("quantized operand")
                    .scales[0],
            );
            let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
            let off = g
                .iter()
                .zip(&w)
                .filter(|(a, b)| (*a - *b).abs() > step * 1.01)
                .count();
            let same = g.iter().zip(&w).filter(|(a, b)| a == b).count();
            assert_eq!(off, 0, "{model}: elements more than one step ({step}) away");
            assert!(
                same * 100 >= w.len() * 99,
                "{model}: only {same} of {} identical",
                w.len()
            );
        } else {
            assert_close(&got.to_f64_vec(), &want.to_f64_vec(), rtol, atol, model);
        }
    }
}

/// The nine real-architecture models of the onnx package, constant weights, through
/// `qc run --target interp`, against the package's own expected outputs.
#[test]
fn light_models_match_expected_outputs() {
    let input = fx("light/input_1x3x224x224.npy");
    let mut names: Vec<String> = std::fs::read_dir(fixtures().join("light"))
        .expect("fixtures/light")
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| n.starts_with("light_") && n.ends_with(".onnx"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 9, "{names:?}");
    for name in names {
        let model = fx(&format!("light/{name}"));
        let dir = tmpdir("cli", &name);
        let o = qc(&[
            "run",
            &model,
            "--input",
            &input,
            "--target",
            "interp",
            "--output-dir",
            dir.to_str().expect("utf-8"),
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let files: Vec<_> = std::fs::read_dir(&dir)
            .expect("out dir")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(files.len(), 1, "{name}: {files:?}");
        let got = qc::npy::read_npy(&files[0]).expect("npy");
        let pb = std::fs::read(
            fixtures()
                .join("light")
                .join(name.replace(".onnx", "_output_0.pb")),
        )
        .expect("expected output");
        let want = qc::onnx::tensor_from_pb(&pb).expect("TensorProto");
        assert_eq!(got.dims(), want.dims(), "{name}: shape");
        assert_close(&got.to_f64_vec(), &want.to_f64_vec(), 1e-3, 1e-7, &name);
    }
}

#[test]
fn errors_are_one_line_and_exit_non_zero() {
    let dir = tmpdir("cli", "errors");
    let garbage = dir.join("garbage.onnx");
    std::fs::write(&garbage, b"\x08\x07this is not a model").expect("write");
    let wrong_input = dir.join("wrong.npy");
    qc::npy::write_npy(
        &wrong_input,
        &qc::ir::Tensor::from_f32(vec![2], vec![1.0, 2.0]).expect("tensor"),
    )
    .expect("npy");
    let out = dir.join("out");
    let out = out.to_str().expect("utf-8");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "inspect".into(),
                dir.join("missing.onnx").to_string_lossy().into(),
            ],
            "missing.onnx",
        ),
        (
            vec!["inspect".into(), garbage.to_string_lossy().into()],
            "garbage.onnx",
        ),
        (
            vec![
                "run".into(),
                fx("models/cnn_float.onnx"),
                "--input".into(),
                wrong_input.to_string_lossy().into(),
                "--output-dir".into(),
                out.into(),
            ],
            "wrong.npy",
        ),
        (
            vec![
                "run".into(),
                fx("models/cnn_float.onnx"),
                "--input".into(),
                "nosuch=x.npy".into(),
                "--output-dir".into(),
                out.into(),
            ],
            "nosuch",
        ),
        (
            vec![
                "run".into(),
                fx("models/cnn_float.onnx"),
                "--input-shape".into(),
                "x=1,3".into(),
                "--input".into(),
                fx("models/cnn_float.input.npy"),
                "--output-dir".into(),
                out.into(),
            ],
            "x",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = qc(&args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(
            err.starts_with("error: ") && err.trim_end().lines().count() == 1,
            "{args:?}: one line, got:\n{err}"
        );
        assert!(
            err.contains(needle),
            "{args:?}: '{needle}' not named in: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn pass_pipeline_flags() {
    let model = fx("models/cnn_qdq.onnx");
    // --no-opt prints the graph as imported: the QDQ encoding is still there.
    let raw = qc(&["inspect", &model, "--no-opt"]);
    assert!(raw.status.success(), "{}", stderr(&raw));
    let raw = stdout(&raw);
    assert!(raw.contains("dequantize"), "{raw}");
    let same = stdout(&qc(&["inspect", &model, "--passes", "none"]));
    assert_eq!(raw, same, "--no-opt is --passes none");

    // --print-after-all: one section per pass of the default pipeline, with its time.
    let all = qc(&["inspect", &model, "--print-after-all", "--verify"]);
    assert!(all.status.success(), "{}", stderr(&all));
    let all = stdout(&all);
    assert!(all.starts_with("// ---- imported ----"), "{all}");
    let sections = all.matches("// ---- after ").count();
    let default = qc::passes::pipeline::DEFAULT.len();
    assert_eq!(
        sections,
        default,
        "one section per pass of {:?}",
        qc::passes::pipeline::DEFAULT
    );

    // An unknown pass is a one-line error naming it and listing the known ones.
    let bad = qc(&[
        "inspect",
        &model,
        "--passes",
        "canonicalize-qdq,no-such-pass",
    ]);
    assert!(!bad.status.success());
    let err = stderr(&bad);
    assert!(
        err.contains("no-such-pass") && err.trim_end().lines().count() == 1,
        "{err}"
    );

    // qc run --no-opt runs the unoptimized graph (on the interpreter: the JIT wants
    // the constant weights the pipeline produces).
    let dir = tmpdir("cli", "noopt");
    let o = qc(&[
        "run",
        &model,
        "--target",
        "interp",
        "--no-opt",
        "--input",
        &fx("models/cnn_qdq.input.npy"),
        "--output-dir",
        dir.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn jit_target_compile_and_bench() {
    // qc run with the default target (jit) equals the interpreter bit for bit on the
    // quantized fixtures and stays within float tolerance on the float one.
    for (model, exact) in [
        ("models/cnn_qdq.onnx", true),
        ("models/mobilenetv2_qdq.onnx", true),
        ("models/cnn_float.onnx", false),
    ] {
        let input = fx(&model.replace(".onnx", ".input.npy"));
        let mut outs = Vec::new();
        for target in ["jit", "interp"] {
            let dir = tmpdir("cli", &format!("{}-{target}", model.replace('/', "_")));
            let o = qc(&[
                "run",
                &fx(model),
                "--input",
                &input,
                "--target",
                target,
                "--output-dir",
                dir.to_str().expect("utf-8"),
            ]);
            assert!(o.status.success(), "{model} {target}: {}", stderr(&o));
            let file = std::fs::read_dir(&dir)
                .expect("out")
                .flatten()
                .next()
                .expect("one output")
                .path();
            outs.push(qc::npy::read_npy(&file).expect("npy"));
        }
        if exact {
            assert_eq!(outs[0], outs[1], "{model}: jit and interp differ");
        } else {
            assert_close(
                &outs[0].to_f64_vec(),
                &outs[1].to_f64_vec(),
                1e-5,
                1e-6,
                model,
            );
        }
    }

    let o = qc(&[
        "compile",
        &fx("models/mobilenetv2_qdq.onnx"),
        "--target",
        "jit",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for key in [
        "compile_ms:",
        "code_bytes:",
        "arena_bytes:",
        "arena_lower_bound:",
    ] {
        assert!(out.contains(key), "{key} missing: {out}");
    }

    let o = qc(&[
        "bench",
        &fx("models/cnn_qdq.onnx"),
        "--iters",
        "3",
        "--warmup",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let median: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("median_ms: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("median_ms line");
    assert!(median > 0.0, "{out}");
    assert!(out.contains("gmac_per_s:"), "{out}");
}
