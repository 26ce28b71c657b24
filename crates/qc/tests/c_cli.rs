//! `qc compile --target c` through the binary: the files it writes, the names and
//! defines of the C API, the contract default of the C target, inline quantization
//! with `--calib`, and one-line errors.

// Test code: a panic is how a test fails.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

mod common;
use common::{fx, qc, stderr, stdout, tmpdir};

/// The `key: value` lines of a report.
fn field(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no '{key}' in:\n{out}"))
        .trim()
        .to_string()
}

/// `#define NAME value` of a header.
fn define(header: &str, name: &str) -> Option<String> {
    header.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("#define") && w.next() == Some(name))
            .then(|| w.collect::<Vec<_>>().join(" "))
    })
}

/// Compile the emitted C as the firmware would (host gcc, strict C99), when gcc is here.
fn gcc_compiles(dir: &Path, name: &str) {
    let Ok(v) = Command::new("gcc").arg("--version").output() else {
        eprintln!("gcc not found: skipping the C compile check");
        return;
    };
    assert!(v.status.success());
    let o = Command::new("gcc")
        .args([
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-c",
            "-o",
        ])
        .arg(dir.join(format!("{name}.o")))
        .arg(dir.join(format!("{name}.c")))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn qdq_model_to_c_with_default_name_and_fixed_contract() {
    let dir = tmpdir("c-cli", "qdq");
    let o = qc(&[
        "compile",
        &fx("models/cnn_qdq.onnx"),
        "--target",
        "c",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // The C target's contract defaults to fixed (no FPU needed).
    assert_eq!(field(&out, "contract"), "fixed");
    let arena: usize = field(&out, "arena_bytes").parse().unwrap();
    let bound: usize = field(&out, "arena_lower_bound").parse().unwrap();
    assert!(arena >= bound && bound > 0, "{out}");
    // NAME defaults to the file stem made a C identifier.
    let h = std::fs::read_to_string(dir.join("cnn_qdq.h")).unwrap();
    let c = std::fs::read_to_string(dir.join("cnn_qdq.c")).unwrap();
    assert_eq!(
        define(&h, "CNN_QDQ_ARENA_BYTES").as_deref(),
        Some(&*arena.to_string())
    );
    assert!(h.contains("cnn_qdq_run("), "{h}");
    assert!(c.contains("#include \"cnn_qdq.h\""));
    assert_eq!(
        field(&out, "header"),
        dir.join("cnn_qdq.h").display().to_string()
    );
    gcc_compiles(&dir, "cnn_qdq");
}

#[test]
fn float_model_quantized_inline_to_c_with_options() {
    let dir = tmpdir("c-cli", "inline");
    let o = qc(&[
        "compile",
        &fx("digits/digits_float.onnx"),
        "--calib",
        &fx("digits/calib.npy"),
        "--per-channel",
        "--target",
        "c",
        "-o",
        dir.to_str().unwrap(),
        "--name",
        "digits",
        "--requant",
        "fixed-single",
        "--cpu",
        "cortex-m4",
        "--external-arena",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(field(&out, "samples"), "200");
    assert_eq!(field(&out, "contract"), "fixed-single");
    // Quantized in line: the boundaries are quantize/dequantize, so the integer-only
    // entry point exists.
    assert_eq!(field(&out, "run_quantized"), "yes");
    let h = std::fs::read_to_string(dir.join("digits.h")).unwrap();
    assert!(define(&h, "DIGITS_ARENA_BYTES").is_some(), "{h}");
    assert!(h.contains("digits_run_quantized("), "{h}");
    // --external-arena: the caller passes the arena as the last argument.
    assert!(h.contains("void *arena"), "{h}");
    assert!(dir.join("digits.c").exists());
}

#[test]
fn c_errors_are_one_line_and_exit_1() {
    let dir = tmpdir("c-cli", "errors");
    let d = dir.to_str().unwrap();
    let model = fx("models/cnn_qdq.onnx");
    for (args, needle) in [
        (vec!["compile", &model, "--target", "c"], "-o DIR"),
        (
            vec!["compile", &model, "--target", "c", "-o", d, "--name", "1x"],
            "not a C identifier",
        ),
        (vec!["compile", &model, "-o", d], "--target c"),
    ] {
        let o = qc(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
    }
    // A model the C backend may not handle (float conv): either C comes out, or one
    // line naming the node and op.
    let o = qc(&[
        "compile",
        &fx("models/cnn_float.onnx"),
        "--target",
        "c",
        "-o",
        d,
    ]);
    if !o.status.success() {
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(
            err.contains("cnn_float.onnx") && err.contains("node"),
            "{err}"
        );
    }
}
