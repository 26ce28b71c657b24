#![allow(clippy::unwrap_used)]
mod egg_support;
use egg_support::op_counts;
use qc_passes::{Pipeline, PassCx};
#[test]
fn mnv2() {
    for m in ["mobilenetv2_qdq", "mobilenetv2_qop", "mobilenetv2_float"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../fixtures/models/{m}.onnx"));
        let bytes = std::fs::read(&path).unwrap();
        let g = qc_onnx::import(&bytes, &qc_onnx::ImportOptions::default(), &qc_onnx::NoExternalData).unwrap();
        println!("{m} import: {:?}", op_counts(&g));
        let mut h = g.clone();
        let mut cx = PassCx::default();
        let p = Pipeline::parse("canonicalize-qdq,fold-constants").unwrap();
        p.run(&mut h, &mut cx).unwrap();
        println!("  canon: {:?}", op_counts(&h));
        let mut k = h.clone();
        let p = Pipeline::parse("egg,dce").unwrap();
        let reps = p.run(&mut k, &mut cx).unwrap();
        println!("  egg:   {:?}", op_counts(&k));
        for r in &reps { println!("   {} {:?} {:?}", r.pass, r.time, r.stats); }
        println!("  remarks {:?}", cx.remarks);
        let x = egg_support::seeded_inputs(&h, 3);
        let y0 = qc_interp::run(&h, &x, &Default::default()).unwrap();
        let y1 = qc_interp::run(&k, &x, &Default::default()).unwrap();
        for (a, b) in y0.iter().zip(&y1) { egg_support::assert_outputs_close(a, b, 1e-4, m); }
        if m == "mobilenetv2_qdq" { std::fs::write("/tmp/mnv2_egg.txt", qc_ir::text::print(&k)).unwrap(); std::fs::write("/tmp/mnv2_canon.txt", qc_ir::text::print(&h)).unwrap(); }
    }
}
