//! Initializers stored in an external data file next to the model are loaded through
//! the facade's resolver; locations that leave the model's directory are refused.

use onnx_protobuf::{
    tensor_proto, tensor_shape_proto, type_proto, GraphProto, Message, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for &d in dims {
        let mut dim = tensor_shape_proto::Dimension::new();
        dim.set_dim_value(d);
        shape.dim.push(dim);
    }
    let mut tt = type_proto::Tensor::new();
    tt.elem_type = 1;
    tt.shape = Some(shape).into();
    let mut tp = TypeProto::new();
    tp.set_tensor_type(tt);
    let mut vi = ValueInfoProto::new();
    vi.name = name.into();
    vi.type_ = Some(tp).into();
    vi
}

fn entry(k: &str, v: &str) -> StringStringEntryProto {
    let mut e = StringStringEntryProto::new();
    e.key = k.into();
    e.value = v.into();
    e
}

/// `y = x + w` with `w` (4 floats) at `offset` in the external file `location`.
fn model(location: &str, offset: usize) -> Vec<u8> {
    let mut w = TensorProto::new();
    w.name = "w".into();
    w.data_type = 1;
    w.dims = vec![4];
    w.data_location = tensor_proto::DataLocation::EXTERNAL.into();
    w.external_data = vec![
        entry("location", location),
        entry("offset", &offset.to_string()),
        entry("length", "16"),
    ];
    let mut add = NodeProto::new();
    add.op_type = "Add".into();
    add.name = "add0".into();
    add.input = vec!["x".into(), "w".into()];
    add.output = vec!["y".into()];
    let mut g = GraphProto::new();
    g.name = "ext".into();
    g.node.push(add);
    g.initializer.push(w);
    g.input.push(value_info("x", &[4]));
    g.output.push(value_info("y", &[4]));
    let mut m = ModelProto::new();
    m.ir_version = 8;
    let mut op = OperatorSetIdProto::new();
    op.version = 13;
    m.opset_import.push(op);
    m.graph = Some(g).into();
    m.write_to_bytes().expect("serializable")
}

#[test]
fn external_initializers_load_and_run() {
    let dir = std::env::temp_dir().join(format!("qc-ext-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // 8 bytes of junk, then the four floats 1, 2, 3, 4.
    let mut bin = vec![0xAAu8; 8];
    for v in [1.0f32, 2.0, 3.0, 4.0] {
        bin.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(dir.join("weights.bin"), &bin).expect("write weights");
    std::fs::write(dir.join("m.onnx"), model("weights.bin", 8)).expect("write model");

    let g = qc::load_onnx(&dir.join("m.onnx"), &Default::default()).expect("imports");
    let x = qc::ir::Tensor::from_f32(vec![4], vec![10.0, 20.0, 30.0, 40.0]).expect("tensor");
    let y = qc::run_interp(&dir.join("m.onnx"), &g, &[x], &Default::default()).expect("runs");
    assert_eq!(y[0].as_f32(), Some(&[11.0f32, 22.0, 33.0, 44.0][..]));

    // Past the end of the file, outside the directory, absolute: all errors, no panic.
    for (loc, off) in [
        ("weights.bin", 24),
        ("../weights.bin", 8),
        ("/etc/passwd", 0),
        ("missing.bin", 0),
    ] {
        std::fs::write(dir.join("bad.onnx"), model(loc, off)).expect("write model");
        let err = qc::load_onnx(&dir.join("bad.onnx"), &Default::default()).expect_err(loc);
        assert!(
            err.to_string().contains("bad.onnx"),
            "error names the model: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
