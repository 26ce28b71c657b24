//! The embedding API: `Model::load` → `compile` → `run` / `run_into`, typed errors for
//! wrong inputs, and concurrent use of one `CompiledModel`.

use std::path::Path;
use std::sync::Arc;

use qc::{Model, Options, TensorMut, TensorRef};

fn fixture(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(rel)
}

#[test]
fn compiled_model_matches_the_interpreter() {
    let model = Model::load(fixture("models/cnn_qdq.onnx")).expect("loads");
    let compiled = model.compile(&Options::default()).expect("compiles");
    let x = qc::npy::read_npy(&fixture("models/cnn_qdq.input.npy")).expect("input");
    let got = compiled
        .run(&[TensorRef::of(&x).expect("f32 input")])
        .expect("runs");

    // The oracle: the interpreter on the same optimized graph.
    let mut g = model.graph().clone();
    qc::optimize(
        Path::new("cnn_qdq"),
        &mut g,
        "default",
        Default::default(),
        |_, _| {},
    )
    .expect("passes");
    let want = qc::run_interp(
        Path::new("cnn_qdq"),
        &g,
        std::slice::from_ref(&x),
        &Default::default(),
    )
    .expect("interp");
    assert_eq!(got, want);

    // run_into writes the caller's buffer with the same values.
    let (_, out_ty) = compiled.outputs()[0].clone();
    let mut y = vec![0f32; out_ty.numel().expect("small")];
    let xs = x.as_f32().expect("f32");
    compiled
        .run_into(
            &[TensorRef::new(x.dims(), xs)],
            &mut [TensorMut::new(out_ty.shape.dims(), &mut y[..])],
        )
        .expect("run_into");
    assert_eq!(Some(&y[..]), want[0].as_f32());
}

#[test]
fn wrong_inputs_are_typed_errors() {
    let compiled = Model::load(fixture("models/cnn_float.onnx"))
        .expect("loads")
        .compile(&Options::default())
        .expect("compiles");
    let x = vec![0f32; 3 * 16 * 16];
    let xi = vec![0i32; 3 * 16 * 16];
    let cases: Vec<(Vec<TensorRef<'_>>, &str)> = vec![
        (vec![], "inputs"),
        (
            vec![
                TensorRef::new(&[1, 3, 16, 16], &x[..]),
                TensorRef::new(&[1, 3, 16, 16], &x[..]),
            ],
            "inputs",
        ),
        (vec![TensorRef::new(&[1, 3, 16, 15], &x[..])], "input 0"),
        (vec![TensorRef::new(&[1, 3, 16, 16], &x[..10])], "input 0"),
        (vec![TensorRef::new(&[1, 3, 16, 16], &xi[..])], "input 0"),
    ];
    for (inputs, needle) in cases {
        let err = compiled.run(&inputs).expect_err("must be rejected");
        assert!(
            matches!(err, qc::Error::Count { .. } | qc::Error::Mismatch { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(needle), "{err}");
    }
    // A wrong output buffer.
    let mut y = [0f32; 9];
    let err = compiled
        .run_into(
            &[TensorRef::new(&[1, 3, 16, 16], &x[..])],
            &mut [TensorMut::new(&[1, 9], &mut y[..])],
        )
        .expect_err("wrong output shape");
    assert!(err.to_string().contains("output 0"), "{err}");
}

#[test]
fn one_compiled_model_serves_many_threads() {
    let compiled = Arc::new(
        Model::load(fixture("models/mobilenetv2_qdq.onnx"))
            .expect("loads")
            .compile(&Options::default())
            .expect("compiles"),
    );
    let (_, in_ty) = compiled.inputs()[0].clone();
    let n = in_ty.numel().expect("small");
    let inputs: Vec<Vec<f32>> = (0..4)
        .map(|t| {
            (0..n)
                .map(|i| ((i * 31 + t * 7) % 17) as f32 / 17.0 - 0.5)
                .collect()
        })
        .collect();
    let shape = in_ty.shape.0.clone();
    let serial: Vec<Vec<qc::ir::Tensor>> = inputs
        .iter()
        .map(|x| {
            compiled
                .run(&[TensorRef::new(&shape, &x[..])])
                .expect("runs")
        })
        .collect();
    let handles: Vec<_> = inputs
        .into_iter()
        .map(|x| {
            let (c, shape) = (Arc::clone(&compiled), shape.clone());
            std::thread::spawn(move || {
                (0..20)
                    .map(|_| c.run(&[TensorRef::new(&shape, &x[..])]).expect("runs"))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for (h, want) in handles.into_iter().zip(serial) {
        for got in h.join().expect("thread") {
            assert_eq!(got, want);
        }
    }
}
