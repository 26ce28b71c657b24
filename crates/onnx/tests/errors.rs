//! Graph structure, tensor decoding, and the errors of bad or unsupported models.
#![allow(clippy::panic)]

mod common;

use common::*;
use onnx_protobuf::{
    tensor_proto::DataLocation, Message, OperatorSetIdProto, StringStringEntryProto,
};
use qc_ir::{Op, TensorData};
use qc_onnx::{tensor_from_pb, tensor_from_proto, Error, ExternalData, NoExternalData};

#[test]
fn unsupported_op_names_node_op_domain_and_opset() {
    let err = Model::new(17)
        .input(vi("x", FLOAT, &[2]))
        .node(node("Erf", "erf_1", &["x"], &["y"], vec![]))
        .output("y")
        .import()
        .expect_err("Erf");
    match &err {
        Error::UnsupportedOp {
            op,
            domain,
            node,
            opset,
        } => {
            assert_eq!(
                (op.as_str(), domain.as_str(), node.as_str(), *opset),
                ("Erf", "", "erf_1", 17)
            );
        }
        e => panic!("wrong error {e}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("Erf") && msg.contains("erf_1") && msg.contains("17"),
        "{msg}"
    );
}

#[test]
fn other_domains_are_unsupported_with_their_opset() {
    let m = Model::new(13)
        .input(vi("x", FLOAT, &[2]))
        .node({
            let mut n = node("FusedGemm", "fg", &["x"], &["y"], vec![]);
            n.domain = "com.microsoft".into();
            n
        })
        .output("y");
    let mut proto = m.proto();
    let mut o = OperatorSetIdProto::new();
    o.domain = "com.microsoft".into();
    o.version = 1;
    proto.opset_import.push(o);
    let bytes = proto.write_to_bytes().expect("serialize");
    let err =
        qc_onnx::import(&bytes, &Default::default(), &NoExternalData).expect_err("contrib op");
    match err {
        Error::UnsupportedOp {
            op,
            domain,
            node,
            opset,
        } => {
            assert_eq!(
                (op.as_str(), domain.as_str(), node.as_str(), opset),
                ("FusedGemm", "com.microsoft", "fg", 1)
            );
        }
        e => panic!("wrong error {e}"),
    }
}

#[test]
fn opsets_outside_7_to_28_are_rejected() {
    for opset in [6, 29] {
        let err = Model::new(opset).import().expect_err("opset");
        assert!(
            matches!(err, Error::UnsupportedOpset(v) if v == opset),
            "{err}"
        );
    }
}

#[test]
fn unbound_dims_name_the_input() {
    let m = Model::new(13)
        .input(vi_dims("x", FLOAT, vec![D::N(1), D::S("batch"), D::N(0)]))
        .node(node("Relu", "", &["x"], &["y"], vec![]))
        .output("y");
    let err = m.import().expect_err("symbolic");
    match &err {
        Error::UnboundDim { input, dim } => assert_eq!((input.as_str(), *dim), ("x", 1)),
        e => panic!("wrong error {e}"),
    }
    assert!(err.to_string().contains("input_shapes"), "{err}");

    let mut opts = qc_onnx::ImportOptions::default();
    opts.input_shapes.insert("x".into(), vec![1, 4, 2]);
    let g = m.import_with(&opts).expect("bound");
    assert_eq!(g.ty(g.inputs[0].value).shape.dims(), [1, 4, 2]);

    // A bound of the wrong rank, and an option naming no input, are errors.
    opts.input_shapes.insert("x".into(), vec![4, 2]);
    assert!(m.import_with(&opts).is_err());
    let mut opts = qc_onnx::ImportOptions::default();
    opts.input_shapes.insert("nope".into(), vec![1]);
    let err = m.import_with(&opts).expect_err("unknown input");
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn nodes_out_of_order_are_sorted_and_cycles_rejected() {
    let g = Model::new(13)
        .input(vi("x", FLOAT, &[2]))
        .node(node("Sigmoid", "second", &["a"], &["y"], vec![]))
        .node(node("Relu", "first", &["x"], &["a"], vec![]))
        .output("y")
        .import()
        .expect("unsorted");
    assert_eq!(ops(&g), [&Op::Relu, &Op::Sigmoid]);
    assert_eq!(g.nodes[0].name, "first");

    let err = Model::new(13)
        .input(vi("x", FLOAT, &[2]))
        .node(node("Add", "p", &["x", "b"], &["a"], vec![]))
        .node(node("Relu", "q", &["a"], &["b"], vec![]))
        .output("b")
        .import()
        .expect_err("cycle");
    assert!(
        matches!(err, Error::Graph(ref m) if m.contains("cycle")),
        "{err}"
    );
}

#[test]
fn undefined_and_doubly_defined_names_are_errors() {
    let err = Model::new(13)
        .input(vi("x", FLOAT, &[2]))
        .node(node("Relu", "r", &["nope"], &["y"], vec![]))
        .output("y")
        .import()
        .expect_err("undefined");
    assert!(err.to_string().contains("'nope'"), "{err}");
    let err = Model::new(13)
        .input(vi("x", FLOAT, &[2]))
        .node(node("Relu", "r1", &["x"], &["y"], vec![]))
        .node(node("Relu", "r2", &["x"], &["y"], vec![]))
        .output("y")
        .import()
        .expect_err("defined twice");
    assert!(err.to_string().contains("'y'"), "{err}");
}

#[test]
fn initializer_inputs_are_constants_and_outputs_may_be_inputs_or_constants() {
    // "w" is listed among the inputs (old style) and has an initializer.
    let g = Model::new(9)
        .input(vi("x", FLOAT, &[2]))
        .input(vi("w", FLOAT, &[2]))
        .init(f32s("w", &[2], &[1.0, 2.0]))
        .output("x")
        .output("w")
        .import()
        .expect("import");
    assert_eq!(g.inputs.len(), 1);
    assert_eq!(g.outputs[0].value, g.inputs[0].value);
    assert_eq!(
        g.const_of(g.outputs[1].value)
            .expect("w")
            .as_f32()
            .expect("f32"),
        [1.0, 2.0]
    );
    assert_eq!(g.outputs[1].name, "w");
}

#[test]
fn truncated_or_garbage_bytes_are_errors() {
    let bytes = Model::new(13)
        .input(vi("x", FLOAT, &[2]))
        .init(f32s("w", &[2], &[1.0, 2.0]))
        .node(node("Add", "", &["x", "w"], &["y"], vec![]))
        .output("y")
        .bytes();
    for cut in [bytes.len() / 2, bytes.len() - 1, 3] {
        assert!(
            qc_onnx::import(&bytes[..cut], &Default::default(), &NoExternalData).is_err(),
            "truncated to {cut}"
        );
    }
    assert!(qc_onnx::import(&[0xff; 16], &Default::default(), &NoExternalData).is_err());
    assert!(matches!(
        qc_onnx::import(&[], &Default::default(), &NoExternalData),
        Err(Error::NoGraph)
    ));
}

#[test]
fn raw_data_length_must_match() {
    let mut t = tensor("w", FLOAT, &[2, 2]);
    t.raw_data = vec![0; 12];
    let err = tensor_from_proto(&t, &NoExternalData).expect_err("12 bytes for 4 floats");
    assert!(
        matches!(&err, Error::Tensor { name, msg } if name == "w" && msg.contains("12")),
        "{err}"
    );

    t.raw_data = [1.5f32, -2.0, 0.0, 8.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let ok = tensor_from_proto(&t, &NoExternalData).expect("16 bytes");
    assert_eq!(ok.as_f32().expect("f32"), [1.5, -2.0, 0.0, 8.0]);
}

#[test]
fn huge_claimed_tensors_are_rejected_without_allocating() {
    // 2^40 elements with no data: rejected by the element count check alone.
    let t = tensor("big", FLOAT, &[1 << 20, 1 << 20]);
    let err = tensor_from_proto(&t, &NoExternalData).expect_err("2^40 elements");
    assert!(err.to_string().contains("big"), "{err}");
    let t = tensor("neg", FLOAT, &[-1, 4]);
    assert!(tensor_from_proto(&t, &NoExternalData).is_err());
    // The same as an initializer of a model.
    let err = Model::new(13)
        .input(vi("x", FLOAT, &[2]))
        .init(tensor("big", FLOAT, &[1 << 20, 1 << 20]))
        .node(node("Add", "", &["x", "big"], &["y"], vec![]))
        .output("y")
        .import()
        .expect_err("huge initializer");
    assert!(err.to_string().contains("big"), "{err}");
}

#[test]
fn typed_fields_are_checked() {
    // int8 from int32_data, with a value out of range rejected.
    let t = int32_data("a", INT8, &[3], &[-128, 0, 127]);
    assert_eq!(
        tensor_from_proto(&t, &NoExternalData).expect("i8").data(),
        &TensorData::I8(vec![-128, 0, 127])
    );
    let t = int32_data("a", INT8, &[1], &[128]);
    assert!(tensor_from_proto(&t, &NoExternalData).is_err());
    // Typed length must equal the element count.
    let t = f32s("f", &[3], &[1.0, 2.0]);
    assert!(tensor_from_proto(&t, &NoExternalData).is_err());
    // Unsupported element types name the type.
    for (code, name) in [
        (17, "FLOAT8E4M3FN"),
        (22, "INT4"),
        (8, "STRING"),
        (14, "COMPLEX64"),
        (26, "INT2"),
    ] {
        let t = tensor("t", code, &[1]);
        match tensor_from_proto(&t, &NoExternalData) {
            Err(Error::UnsupportedType { dtype, .. }) => assert_eq!(dtype, name),
            r => panic!("type {code}: {r:?}"),
        }
    }
}

#[test]
fn tensor_from_pb_decodes_a_serialized_tensor() {
    let t = i64s("t", &[2, 1], &[-5, 1 << 40]);
    let bytes = t.write_to_bytes().expect("serialize");
    let got = tensor_from_pb(&bytes).expect("decode");
    assert_eq!(got.dims(), [2, 1]);
    assert_eq!(got.data(), &TensorData::I64(vec![-5, 1 << 40]));
    assert!(tensor_from_pb(&bytes[..bytes.len() - 2]).is_err());
}

struct OneFile(Vec<u8>);

impl ExternalData for OneFile {
    fn load(&self, location: &str, offset: u64, length: Option<u64>) -> std::io::Result<Vec<u8>> {
        assert_eq!(location, "weights.bin");
        let start = offset as usize;
        let end = length.map_or(self.0.len(), |l| start + l as usize);
        self.0
            .get(start..end)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short file"))
    }
}

#[test]
fn external_data_goes_through_the_resolver() {
    let file: Vec<u8> = [0u8, 0, 0, 0]
        .into_iter()
        .chain(7i32.to_le_bytes())
        .chain((-9i32).to_le_bytes())
        .collect();
    let mut t = tensor("e", INT32, &[2]);
    t.data_location = protobuf::EnumOrUnknown::new(DataLocation::EXTERNAL);
    for (k, v) in [
        ("location", "weights.bin"),
        ("offset", "4"),
        ("length", "8"),
    ] {
        let mut e = StringStringEntryProto::new();
        e.key = k.into();
        e.value = v.into();
        t.external_data.push(e);
    }
    let got = tensor_from_proto(&t, &OneFile(file.clone())).expect("external");
    assert_eq!(got.data(), &TensorData::I32(vec![7, -9]));
    // Without a resolver it is an error naming the location.
    let err = tensor_from_proto(&t, &NoExternalData).expect_err("no resolver");
    assert!(err.to_string().contains("weights.bin"), "{err}");
    // A length that does not match the shape is rejected before loading.
    t.external_data[2].value = "12".into();
    assert!(tensor_from_proto(&t, &OneFile(file)).is_err());
}

#[test]
fn unused_initializers_of_unsupported_types_do_no_harm() {
    let g = Model::new(13)
        .input(vi("x", FLOAT, &[2]))
        .init(tensor("s", 8, &[1]))
        .node(node("Relu", "", &["x"], &["y"], vec![]))
        .output("y")
        .import()
        .expect("import");
    assert_eq!(ops(&g), [&Op::Relu]);
}
