//! Raw integer arithmetic, data movement on every dtype, and cast.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::excessive_precision,
    clippy::cloned_ref_to_slice_refs,
    clippy::too_many_arguments
)]

mod common;

use common::*;
use qc_ir::{Activation, DType, Graph, Op, PoolAttrs, TensorData, TensorType};

fn binary(
    op: Op,
    dt: DType,
    a: TensorData,
    ash: &[usize],
    b: TensorData,
    bsh: &[usize],
) -> qc_interp::Result<Vec<qc_ir::Tensor>> {
    let mut g = Graph::new();
    let av = g.add_input("a", TensorType::new(dt, ash.to_vec()));
    let bv = g.add_input("b", TensorType::new(dt, bsh.to_vec()));
    let y = node(&mut g, op, &[av, bv])[0];
    g.add_output("y", y);
    qc_interp::run(&g, &[t(ash, a), t(bsh, b)], &Default::default())
}

fn bin_ok(op: Op, dt: DType, a: TensorData, b: TensorData) -> TensorData {
    let n = a.len();
    binary(op, dt, a, &[n], b, &[n])
        .expect("run")
        .remove(0)
        .into_data()
}

const ADD: Op = Op::Add {
    act: Activation::None,
};

#[test]
fn add_sub_mul_wrap_like_numpy() {
    assert_eq!(
        bin_ok(
            ADD,
            DType::U8,
            TensorData::U8(vec![250, 5]),
            TensorData::U8(vec![10, 5])
        ),
        TensorData::U8(vec![4, 10])
    );
    assert_eq!(
        bin_ok(
            ADD,
            DType::I8,
            TensorData::I8(vec![127, -128]),
            TensorData::I8(vec![1, -1])
        ),
        TensorData::I8(vec![-128, 127])
    );
    assert_eq!(
        bin_ok(
            Op::Sub,
            DType::U8,
            TensorData::U8(vec![3]),
            TensorData::U8(vec![5])
        ),
        TensorData::U8(vec![254])
    );
    assert_eq!(
        bin_ok(
            Op::Mul,
            DType::U8,
            TensorData::U8(vec![16, 3]),
            TensorData::U8(vec![16, 7])
        ),
        TensorData::U8(vec![0, 21])
    );
    assert_eq!(
        bin_ok(
            ADD,
            DType::U64,
            TensorData::U64(vec![u64::MAX, 1 << 63]),
            TensorData::U64(vec![2, 1 << 63])
        ),
        TensorData::U64(vec![1, 0])
    );
    assert_eq!(
        bin_ok(
            Op::Mul,
            DType::I64,
            TensorData::I64(vec![i64::MAX]),
            TensorData::I64(vec![2])
        ),
        TensorData::I64(vec![-2])
    );
    assert_eq!(
        bin_ok(
            Op::Mul,
            DType::U32,
            TensorData::U32(vec![65536]),
            TensorData::U32(vec![65537])
        ),
        TensorData::U32(vec![65536])
    );
    assert_eq!(
        bin_ok(
            Op::Sub,
            DType::I16,
            TensorData::I16(vec![i16::MIN]),
            TensorData::I16(vec![1])
        ),
        TensorData::I16(vec![i16::MAX])
    );
}

#[test]
fn integer_broadcast_add() {
    let r = binary(
        ADD,
        DType::I32,
        TensorData::I32(vec![1, 2]),
        &[2, 1],
        TensorData::I32(vec![10, 20, 30]),
        &[3],
    )
    .expect("run");
    assert_eq!(r[0].dims(), &[2, 3]);
    assert_eq!(r[0].data(), &TensorData::I32(vec![11, 21, 31, 12, 22, 32]));
}

#[test]
fn integer_div_truncates_toward_zero() {
    assert_eq!(
        bin_ok(
            Op::Div,
            DType::I32,
            TensorData::I32(vec![7, -7, 7, -7, 6]),
            TensorData::I32(vec![2, 2, -2, -2, 3])
        ),
        TensorData::I32(vec![3, -3, -3, 3, 2])
    );
    assert_eq!(
        bin_ok(
            Op::Div,
            DType::U8,
            TensorData::U8(vec![200, 5]),
            TensorData::U8(vec![3, 10])
        ),
        TensorData::U8(vec![66, 0])
    );
    assert_eq!(
        bin_ok(
            Op::Div,
            DType::U64,
            TensorData::U64(vec![u64::MAX]),
            TensorData::U64(vec![2])
        ),
        TensorData::U64(vec![u64::MAX / 2])
    );
}

#[test]
fn integer_div_by_zero_is_a_node_error() {
    let e = binary(
        Op::Div,
        DType::I32,
        TensorData::I32(vec![1, 2]),
        &[2],
        TensorData::I32(vec![1, 0]),
        &[2],
    )
    .unwrap_err();
    match e {
        qc_interp::Error::Node { op, msg, .. } => {
            assert_eq!(op, "div");
            assert!(msg.contains("division by zero"), "{msg}");
        }
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn integer_relu_clip_pools() {
    let x = t(&[4], TensorData::I8(vec![-5, -1, 0, 9]));
    assert_eq!(
        run1(&unary_graph(Op::Relu, &x), &[x.clone()]).data(),
        &TensorData::I8(vec![0, 0, 0, 9])
    );
    let x = t(&[4], TensorData::I16(vec![-500, -1, 7, 900]));
    let y = run1(
        &unary_graph(
            Op::Clip {
                min: Some(-2.0),
                max: Some(100.0),
            },
            &x,
        ),
        &[x.clone()],
    );
    assert_eq!(y.data(), &TensorData::I16(vec![-2, -1, 7, 100]));
    // Bounds outside the type's range do not bind.
    let x = t(&[2], TensorData::U8(vec![0, 255]));
    let y = run1(
        &unary_graph(
            Op::Clip {
                min: Some(-1e9),
                max: Some(1e9),
            },
            &x,
        ),
        &[x.clone()],
    );
    assert_eq!(y.data(), &TensorData::U8(vec![0, 255]));

    // ONNX "maxpool_2d_uint8": 5x5 of 1..25, kernel 5, pads 2.
    let x = t(&[1, 1, 5, 5], TensorData::U8((1..=25).collect()));
    let p = PoolAttrs {
        kernel: vec![5, 5],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: vec![2; 4],
        ceil_mode: false,
    };
    let y = run1(
        &unary_graph(
            Op::MaxPool {
                pool: p,
                storage_order: 0,
            },
            &x,
        ),
        &[x.clone()],
    );
    let want: Vec<u8> = vec![
        13, 14, 15, 15, 15, 18, 19, 20, 20, 20, 23, 24, 25, 25, 25, 23, 24, 25, 25, 25, 23, 24, 25,
        25, 25,
    ];
    assert_eq!(y.data(), &TensorData::U8(want));

    let x = t(&[1, 2, 2], TensorData::I32(vec![-7, -3, 4, 2]));
    let y = run1(&unary_graph(Op::GlobalMaxPool, &x), &[x.clone()]);
    assert_eq!(y.dims(), &[1, 2, 1]);
    assert_eq!(y.data(), &TensorData::I32(vec![-3, 4]));
}

#[test]
fn data_movement_on_every_dtype() {
    let cases = [
        TensorData::Bool(vec![true, false, false, true, true, false]),
        TensorData::I64(vec![1, -2, 3, i64::MIN, 5, i64::MAX]),
        TensorData::F16(vec![0x3c00, 0x4000, 0x4200, 0x4400, 0x4500, 0xfc00]),
        TensorData::BF16(vec![1, 2, 3, 4, 5, 6]),
        TensorData::F64(vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
        TensorData::U16(vec![1, 2, 3, 4, 5, 65535]),
    ];
    for d in cases {
        let x = t(&[2, 3], d.clone());
        // Transpose [[a b c] [d e f]] → [[a d] [b e] [c f]].
        let y = run1(
            &unary_graph(Op::Transpose { perm: vec![1, 0] }, &x),
            &[x.clone()],
        );
        let idx = [0, 3, 1, 4, 2, 5];
        let pick = |ix: &[usize]| -> TensorData {
            let one = |i: usize| match &d {
                TensorData::Bool(v) => TensorData::Bool(vec![v[i]]),
                TensorData::I64(v) => TensorData::I64(vec![v[i]]),
                TensorData::F16(v) => TensorData::F16(vec![v[i]]),
                TensorData::BF16(v) => TensorData::BF16(vec![v[i]]),
                TensorData::F64(v) => TensorData::F64(vec![v[i]]),
                TensorData::U16(v) => TensorData::U16(vec![v[i]]),
                _ => unreachable!(),
            };
            let parts: Vec<TensorData> = ix.iter().map(|&i| one(i)).collect();
            let mut bytes = vec![];
            for p in &parts {
                bytes.extend(p.to_le_bytes());
            }
            TensorData::from_le_bytes(d.dtype(), &bytes).expect("bytes")
        };
        assert_eq!(y.data(), &pick(&idx), "{}", d.dtype());
        // Reshape, flatten, squeeze/unsqueeze keep the order.
        let y = run1(
            &unary_graph(
                Op::Reshape {
                    shape: vec![3, 1, 2],
                },
                &x,
            ),
            &[x.clone()],
        );
        assert_eq!(y.data(), &d);
        let y = run1(&unary_graph(Op::Identity, &x), &[x.clone()]);
        assert_eq!(y.data(), &d);
        // Concat with itself along axis 1.
        let mut g = Graph::new();
        let a = g.add_input("a", TensorType::new(d.dtype(), vec![2, 3]));
        let c = node(&mut g, Op::Concat { axis: 1 }, &[a, a])[0];
        g.add_output("c", c);
        assert_eq!(
            run1(&g, &[x.clone()]).data(),
            &pick(&[0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5])
        );
    }
    // Pad on integers uses the value; on bool nonzero is true.
    let x = t(&[2], TensorData::I32(vec![5, 6]));
    let y = run1(
        &unary_graph(
            Op::Pad {
                pads: vec![1, 1],
                value: -3.0,
            },
            &x,
        ),
        &[x.clone()],
    );
    assert_eq!(y.data(), &TensorData::I32(vec![-3, 5, 6, -3]));
    let x = t(&[1], TensorData::Bool(vec![false]));
    let y = run1(
        &unary_graph(
            Op::Pad {
                pads: vec![0, 1],
                value: 1.0,
            },
            &x,
        ),
        &[x.clone()],
    );
    assert_eq!(y.data(), &TensorData::Bool(vec![false, true]));
}

fn cast_graph(from: DType, to: DType, n: usize) -> Graph {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::new(from, vec![n]));
    let y = node(&mut g, Op::Cast { to }, &[x])[0];
    g.add_output("y", y);
    g
}

#[test]
fn cast_f32_f16_f32_rounds_to_nearest_even() {
    // f16 spacing is 2 in [2048, 4096): 2049 ties to 2048 (even), 2051 to 2052 (even);
    // 0.1 → 0.0999755859375; 70000 overflows to inf; 1e-8 underflows to 0.
    let xs = vec![1.0, 0.1, 65504.0, 70000.0, 1e-8, 2049.0, 2051.0, -2.5];
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32(vec![8]));
    let h = node(&mut g, Op::Cast { to: DType::F16 }, &[x])[0];
    let y = node(&mut g, Op::Cast { to: DType::F32 }, &[h])[0];
    g.add_output("h", h);
    g.add_output("y", y);
    let r = run(&g, &[f32t(&[8], xs)]);
    assert_eq!(r[0].dtype(), DType::F16);
    let want = [
        1.0,
        0.0999755859375,
        65504.0,
        f32::INFINITY,
        0.0,
        2048.0,
        2052.0,
        -2.5,
    ];
    assert_eq!(f32s(&r[1]), want);
    // Bits of 1.0 and -2.5 in f16: 0x3c00, 0xc100.
    let TensorData::F16(bits) = r[0].data() else {
        panic!("f16")
    };
    assert_eq!((bits[0], bits[7]), (0x3c00, 0xc100));
}

#[test]
fn cast_to_bf16_rounds_to_nearest_even() {
    // bf16 has 7 fraction bits: 1 + 2^-8 ties to 1.0; 1 + 3·2^-8 ties to 1 + 2^-6.
    let g = cast_graph(DType::F32, DType::BF16, 2);
    let r = run1(
        &g,
        &[f32t(&[2], vec![1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0])],
    );
    assert_eq!(r.data(), &TensorData::BF16(vec![0x3f80, 0x3f82]));
}

#[test]
fn cast_float_to_int_and_bool() {
    let x = f32t(&[5], vec![-1.7, 1.7, 300.0, -300.0, f32::NAN]);
    assert_eq!(
        run1(&cast_graph(DType::F32, DType::I8, 5), &[x.clone()]).data(),
        &TensorData::I8(vec![-1, 1, 127, -128, 0])
    );
    assert_eq!(
        run1(&cast_graph(DType::F32, DType::U8, 5), &[x.clone()]).data(),
        &TensorData::U8(vec![0, 1, 255, 0, 0])
    );
    let x = f32t(&[4], vec![0.0, -0.0, 0.5, f32::NAN]);
    assert_eq!(
        run1(&cast_graph(DType::F32, DType::Bool, 4), &[x]).data(),
        &TensorData::Bool(vec![false, false, true, true])
    );
    let x = t(&[3], TensorData::Bool(vec![true, false, true]));
    assert_close(
        &f32s(&run1(&cast_graph(DType::Bool, DType::F32, 3), &[x])),
        &[1.0, 0.0, 1.0],
        0.0,
    );
}

#[test]
fn cast_int_to_int_wraps_and_int_to_float_is_exact() {
    let x = t(&[3], TensorData::I32(vec![300, -1, 255]));
    assert_eq!(
        run1(&cast_graph(DType::I32, DType::U8, 3), &[x]).data(),
        &TensorData::U8(vec![44, 255, 255])
    );
    let x = t(&[2], TensorData::I64(vec![(1 << 53) + 1, -7]));
    assert_eq!(
        run1(&cast_graph(DType::I64, DType::F64, 2), &[x.clone()]).data(),
        &TensorData::F64(vec![9007199254740992.0, -7.0])
    );
    // i64 → f32 rounds once: 2^24 + 1 ties to 2^24.
    let x = t(&[1], TensorData::I64(vec![(1 << 24) + 1]));
    assert_eq!(
        run1(&cast_graph(DType::I64, DType::F32, 1), &[x]).data(),
        &TensorData::F32(vec![16777216.0])
    );
    let x = t(&[1], TensorData::U64(vec![u64::MAX]));
    assert_eq!(
        run1(&cast_graph(DType::U64, DType::I64, 1), &[x]).data(),
        &TensorData::I64(vec![-1])
    );
}
