//! Shape/type inference cases. Every expected shape is computed by hand in the comment
//! next to it (the conv/pool formulas of the ONNX spec), never by the code under test.

#![allow(clippy::panic)] // test helpers fail by panicking

use qc_ir::infer::infer;
use qc_ir::{
    Activation, ConvAttrs, ConvTransposeAttrs, DType, Error, GemmAttrs, LrnAttrs, Op, PoolAttrs,
    QType, QuantParams, Shape, TensorType,
};

fn f32t(d: &[usize]) -> TensorType {
    TensorType::f32(d.to_vec())
}

fn t(dtype: DType, d: &[usize]) -> TensorType {
    TensorType::new(dtype, d.to_vec())
}

fn qu8(d: &[usize], scale: f32, zp: i32) -> TensorType {
    TensorType::quantized(d.to_vec(), QuantParams::per_tensor(QType::U8, scale, zp))
}

fn qi8_axis(d: &[usize], axis: usize) -> TensorType {
    let n = d[axis];
    let scales = (0..n).map(|i| 0.5 + i as f32).collect();
    TensorType::quantized(
        d.to_vec(),
        QuantParams::per_axis(QType::I8, axis, scales, vec![0; n]),
    )
}

fn run(op: &Op, ins: &[&TensorType]) -> Vec<TensorType> {
    match infer(op, ins) {
        Ok(v) => v,
        Err(e) => panic!("infer {} failed: {e}", op.name()),
    }
}

fn one(op: &Op, ins: &[&TensorType]) -> TensorType {
    let mut v = run(op, ins);
    assert_eq!(v.len(), 1, "{} returns one result", op.name());
    v.remove(0)
}

fn dims(op: &Op, ins: &[&TensorType]) -> Vec<usize> {
    one(op, ins).shape.0
}

/// The op's error message (the op name is checked too).
fn err(op: &Op, ins: &[&TensorType]) -> String {
    match infer(op, ins) {
        Ok(v) => panic!("infer {} should fail, got {v:?}", op.name()),
        Err(Error::Infer { op: name, msg }) => {
            assert_eq!(name, op.name());
            msg
        }
        Err(e) => panic!("unexpected error kind {e:?}"),
    }
}

fn conv_attrs(kernel: &[usize], strides: &[usize], pads: &[usize], group: usize) -> ConvAttrs {
    ConvAttrs {
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        dilations: vec![1; kernel.len()],
        pads: pads.to_vec(),
        group,
        act: Activation::None,
    }
}

fn pool(kernel: &[usize], strides: &[usize], pads: &[usize], ceil_mode: bool) -> PoolAttrs {
    PoolAttrs {
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        dilations: vec![1; kernel.len()],
        pads: pads.to_vec(),
        ceil_mode,
    }
}

/// Shape of a max_pool's first result.
fn pool_dims(op: &Op, ins: &[&TensorType]) -> Vec<usize> {
    run(op, ins)[0].shape.0.clone()
}

fn max_pool(p: PoolAttrs) -> Op {
    Op::MaxPool {
        pool: p,
        storage_order: 0,
    }
}

// ---- conv ----

#[test]
fn conv_stride2_pad1() {
    // (32 + 1 + 1 - 3) / 2 + 1 = 15 + 1 = 16
    let op = Op::Conv(conv_attrs(&[3, 3], &[2, 2], &[1, 1, 1, 1], 1));
    let y = one(
        &op,
        &[&f32t(&[1, 3, 32, 32]), &f32t(&[16, 3, 3, 3]), &f32t(&[16])],
    );
    assert_eq!(y, f32t(&[1, 16, 16, 16]));
}

#[test]
fn conv_1d_dilated_and_3d() {
    // 1-D: effective kernel (3-1)*2+1 = 5; (10 - 5) / 1 + 1 = 6
    let mut a = conv_attrs(&[3], &[1], &[0, 0], 1);
    a.dilations = vec![2];
    assert_eq!(
        dims(&Op::Conv(a), &[&f32t(&[1, 2, 10]), &f32t(&[4, 2, 3])]),
        vec![1, 4, 6]
    );
    // 3-D: (4 - 2) / 2 + 1 = 2 on each axis
    let a = conv_attrs(&[2, 2, 2], &[2, 2, 2], &[0; 6], 1);
    assert_eq!(
        dims(
            &Op::Conv(a),
            &[&f32t(&[2, 1, 4, 4, 4]), &f32t(&[8, 1, 2, 2, 2])]
        ),
        vec![2, 8, 2, 2, 2]
    );
    // asymmetric pads: H: (5 + 0 + 1 - 3)/1 + 1 = 4; W: (7 + 2 + 0 - 3)/3 + 1 = 3
    let a = conv_attrs(&[3, 3], &[1, 3], &[0, 2, 1, 0], 1);
    assert_eq!(
        dims(&Op::Conv(a), &[&f32t(&[1, 1, 5, 7]), &f32t(&[1, 1, 3, 3])]),
        vec![1, 1, 4, 3]
    );
}

#[test]
fn conv_grouped_and_depthwise() {
    // group 2: x has 4 channels, w [6, 2, 1, 1]
    let a = conv_attrs(&[1, 1], &[1, 1], &[0; 4], 2);
    assert_eq!(
        dims(&Op::Conv(a), &[&f32t(&[1, 4, 5, 5]), &f32t(&[6, 2, 1, 1])]),
        vec![1, 6, 5, 5]
    );
    // depthwise: 8 groups, w [8, 1, 3, 3], (6 + 2 - 3) + 1 = 6
    let a = conv_attrs(&[3, 3], &[1, 1], &[1; 4], 8);
    assert_eq!(
        dims(&Op::Conv(a), &[&f32t(&[1, 8, 6, 6]), &f32t(&[8, 1, 3, 3])]),
        vec![1, 8, 6, 6]
    );
}

#[test]
fn conv_errors() {
    let x = f32t(&[1, 4, 5, 5]);
    let a = conv_attrs(&[1, 1], &[1, 1], &[0; 4], 3);
    assert!(err(&Op::Conv(a), &[&x, &f32t(&[6, 2, 1, 1])]).contains("group 3"));
    // w channels per group inconsistent with x
    let a = conv_attrs(&[1, 1], &[1, 1], &[0; 4], 1);
    assert!(err(&Op::Conv(a), &[&x, &f32t(&[6, 2, 1, 1])]).contains("channels per group"));
    // pads length
    let a = conv_attrs(&[1, 1], &[1, 1], &[0; 2], 1);
    assert!(err(&Op::Conv(a), &[&x, &f32t(&[6, 4, 1, 1])]).contains("pads"));
    // stride 0
    let a = conv_attrs(&[1, 1], &[0, 1], &[0; 4], 1);
    assert!(err(&Op::Conv(a), &[&x, &f32t(&[6, 4, 1, 1])]).contains("strides"));
    // kernel length vs spatial rank
    let a = conv_attrs(&[1], &[1], &[0; 2], 1);
    assert!(err(&Op::Conv(a), &[&x, &f32t(&[6, 4, 1, 1])]).contains("kernel"));
    // w spatial dims differ from kernel
    let a = conv_attrs(&[3, 3], &[1, 1], &[0; 4], 1);
    assert!(err(&Op::Conv(a), &[&x, &f32t(&[6, 4, 1, 1])]).contains("kernel"));
    // kernel larger than the padded input: 5 < 7
    let a = conv_attrs(&[7, 7], &[1, 1], &[0; 4], 1);
    assert!(err(&Op::Conv(a), &[&x, &f32t(&[6, 4, 7, 7])]).contains("smaller than"));
    // bias length
    let a = conv_attrs(&[1, 1], &[1, 1], &[0; 4], 1);
    assert!(err(
        &Op::Conv(a.clone()),
        &[&x, &f32t(&[6, 4, 1, 1]), &f32t(&[4])]
    )
    .contains("operand 2"));
    // operand count
    assert!(err(&Op::Conv(a.clone()), &[&x]).contains("got 1"));
    // dtype mismatch between float operands
    assert!(err(&Op::Conv(a), &[&x, &t(DType::F64, &[6, 4, 1, 1])]).contains("dtype"));
}

#[test]
fn conv_quantized_result_is_a_choice() {
    let a = conv_attrs(&[3, 3], &[1, 1], &[1; 4], 1);
    let y = one(
        &Op::Conv(a.clone()),
        &[
            &qu8(&[1, 3, 8, 8], 0.1, 128),
            &qi8_axis(&[4, 3, 3, 3], 0),
            &t(DType::I32, &[4]),
        ],
    );
    assert_eq!(y, t(DType::U8, &[1, 4, 8, 8]));
    assert!(y.quant.is_none());
    // a quantized conv's bias is i32, not f32
    let e = err(
        &Op::Conv(a),
        &[
            &qu8(&[1, 3, 8, 8], 0.1, 128),
            &qi8_axis(&[4, 3, 3, 3], 0),
            &f32t(&[4]),
        ],
    );
    assert!(e.contains("i32"), "{e}");
}

#[test]
fn conv_integer() {
    let a = conv_attrs(&[3, 3], &[1, 1], &[0; 4], 1);
    let y = one(
        &Op::ConvInteger(a.clone()),
        &[
            &t(DType::U8, &[1, 2, 5, 5]),
            &t(DType::I8, &[3, 2, 3, 3]),
            &t(DType::U8, &[]),
            &t(DType::I8, &[3]),
        ],
    );
    assert_eq!(y, t(DType::I32, &[1, 3, 3, 3]));
    // zero point of the wrong dtype
    let e = err(
        &Op::ConvInteger(a),
        &[
            &t(DType::U8, &[1, 2, 5, 5]),
            &t(DType::I8, &[3, 2, 3, 3]),
            &t(DType::I8, &[]),
            &t(DType::I8, &[3]),
        ],
    );
    assert!(e.contains("x_zero_point"), "{e}");
}

// ---- conv_transpose ----

fn ct_attrs(
    kernel: &[usize],
    strides: &[usize],
    output_padding: &[usize],
    group: usize,
) -> ConvTransposeAttrs {
    ConvTransposeAttrs {
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        dilations: vec![1; kernel.len()],
        pads: vec![0; 2 * kernel.len()],
        output_padding: output_padding.to_vec(),
        group,
        act: Activation::None,
    }
}

#[test]
fn conv_transpose_shapes() {
    // 1 * (3 - 1) + 0 + (3 - 1) + 1 = 5, channels w[1] * group = 2
    let a = ct_attrs(&[3, 3], &[1, 1], &[0, 0], 1);
    assert_eq!(
        dims(
            &Op::ConvTranspose(a),
            &[&f32t(&[1, 1, 3, 3]), &f32t(&[1, 2, 3, 3])]
        ),
        vec![1, 2, 5, 5]
    );
    // ONNX convtranspose_pad: strides [3, 2], output_padding [1, 1]:
    // H: 3 * 2 + 1 + 3 = 10; W: 2 * 2 + 1 + 3 = 8
    let a = ct_attrs(&[3, 3], &[3, 2], &[1, 1], 1);
    assert_eq!(
        dims(
            &Op::ConvTranspose(a),
            &[&f32t(&[1, 1, 3, 3]), &f32t(&[1, 2, 3, 3])]
        ),
        vec![1, 2, 10, 8]
    );
    // pads crop: 2 * (4 - 1) + 0 + 4 - 1 - 1 = 8; group 2 -> channels 3 * 2 = 6
    let mut a = ct_attrs(&[4, 4], &[2, 2], &[0, 0], 2);
    a.pads = vec![1, 1, 1, 1];
    assert_eq!(
        dims(
            &Op::ConvTranspose(a),
            &[&f32t(&[1, 4, 4, 4]), &f32t(&[4, 3, 4, 4])]
        ),
        vec![1, 6, 8, 8]
    );
    // dilation 2: 1 * (3 - 1) + (3 - 1) * 2 + 1 = 7 (1-D)
    let mut a = ct_attrs(&[3], &[1], &[0], 1);
    a.dilations = vec![2];
    assert_eq!(
        dims(
            &Op::ConvTranspose(a),
            &[&f32t(&[1, 1, 3]), &f32t(&[1, 1, 3])]
        ),
        vec![1, 1, 7]
    );
}

#[test]
fn conv_transpose_errors() {
    // w axis 0 must be x's channels
    let a = ct_attrs(&[3, 3], &[1, 1], &[0, 0], 1);
    assert!(err(
        &Op::ConvTranspose(a),
        &[&f32t(&[1, 2, 3, 3]), &f32t(&[1, 2, 3, 3])]
    )
    .contains("channels"));
    // output_padding length
    let a = ct_attrs(&[3, 3], &[1, 1], &[0], 1);
    assert!(err(
        &Op::ConvTranspose(a),
        &[&f32t(&[1, 1, 3, 3]), &f32t(&[1, 2, 3, 3])]
    )
    .contains("output_padding"));
    // pads crop the output below zero: 1*(1-1) + 1 = 1, minus 2 + 2
    let mut a = ct_attrs(&[1], &[1], &[0], 1);
    a.pads = vec![2, 2];
    assert!(err(
        &Op::ConvTranspose(a),
        &[&f32t(&[1, 1, 1]), &f32t(&[1, 1, 1])]
    )
    .contains("crop"));
    // a huge stride overflows the element limit instead of panicking
    let a = ct_attrs(&[1, 1], &[usize::MAX / 2, usize::MAX / 2], &[0, 0], 1);
    assert!(infer(
        &Op::ConvTranspose(a),
        &[&f32t(&[1, 1, 3, 3]), &f32t(&[1, 1, 1, 1])]
    )
    .is_err());
}

// ---- pooling ----

#[test]
fn pool_ceil_mode_onnx_examples() {
    // maxpool_2d_ceil: 4x4, k3, s2: floor (4-3)/2+1 = 1; ceil ceil(1/2)+1 = 2,
    // and (2-1)*2 = 2 < 4 so the last window starts inside the input.
    let x = f32t(&[1, 1, 4, 4]);
    assert_eq!(
        pool_dims(&max_pool(pool(&[3, 3], &[2, 2], &[0; 4], true)), &[&x])[2..],
        [2, 2]
    );
    assert_eq!(
        pool_dims(&max_pool(pool(&[3, 3], &[2, 2], &[0; 4], false)), &[&x])[2..],
        [1, 1]
    );
    // maxpool_2d_ceil_output_size_reduce_by_one: 2x2, k1, s2, ceil:
    // ceil((2-1)/2)+1 = 2, but the 2nd window starts at 2 >= 2 + 0 (end padding): 1.
    let x = f32t(&[1, 1, 2, 2]);
    assert_eq!(
        pool_dims(&max_pool(pool(&[1, 1], &[2, 2], &[0; 4], true)), &[&x]),
        vec![1, 1, 1, 1]
    );
    // with end padding 1 on a 1-D input of 2, k2, s2: ceil((2+1-2)/2)+1 = 2; 2nd window
    // would start at 2 >= 2 + 0: dropped -> 1.
    let x = f32t(&[1, 1, 2]);
    assert_eq!(
        pool_dims(&max_pool(pool(&[2], &[2], &[0, 1], true)), &[&x]),
        vec![1, 1, 1]
    );
    // begin padding keeps it: input 3, k2, s2, pads (1, 0): ceil((3+1-2)/2)+1 = 2;
    // (2-1)*2 = 2 < 3 + 1: kept.
    let x = f32t(&[1, 1, 3]);
    assert_eq!(
        pool_dims(&max_pool(pool(&[2], &[2], &[1, 0], true)), &[&x]),
        vec![1, 1, 2]
    );
}

#[test]
fn pool_3d_and_average() {
    // 3-D, k2, s1, pad 0: 5 - 2 + 1 = 4; 6 - 2 + 1 = 5; 7 - 2 + 1 = 6
    let x = f32t(&[2, 3, 5, 6, 7]);
    let op = Op::AveragePool {
        pool: pool(&[2, 2, 2], &[1, 1, 1], &[0; 6], false),
        count_include_pad: false,
    };
    assert_eq!(dims(&op, &[&x]), vec![2, 3, 4, 5, 6]);
    // ONNX averagepool_2d_ceil: 4x4, k3, s2, ceil -> 2x2
    let op = Op::AveragePool {
        pool: pool(&[3, 3], &[2, 2], &[0; 4], true),
        count_include_pad: false,
    };
    assert_eq!(dims(&op, &[&f32t(&[1, 1, 4, 4])]), vec![1, 1, 2, 2]);
    // dilated pool: effective kernel (2-1)*2+1 = 3; (4 - 3)/1 + 1 = 2
    let mut p = pool(&[2, 2], &[1, 1], &[0; 4], false);
    p.dilations = vec![2, 2];
    assert_eq!(
        dims(
            &Op::AveragePool {
                pool: p,
                count_include_pad: true
            },
            &[&f32t(&[1, 1, 4, 4])]
        ),
        vec![1, 1, 2, 2]
    );
}

#[test]
fn max_pool_results_and_quant() {
    let q = qu8(&[1, 2, 4, 4], 0.05, 3);
    let r = run(&max_pool(pool(&[2, 2], &[2, 2], &[0; 4], false)), &[&q]);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0], qu8(&[1, 2, 2, 2], 0.05, 3));
    assert_eq!(r[1], t(DType::I64, &[1, 2, 2, 2]));
    // average pool's result params are a choice
    let op = Op::AveragePool {
        pool: pool(&[2, 2], &[2, 2], &[0; 4], false),
        count_include_pad: false,
    };
    assert_eq!(one(&op, &[&q]), t(DType::U8, &[1, 2, 2, 2]));
    // pool errors
    assert!(err(&max_pool(pool(&[2], &[2], &[0; 2], false)), &[&q]).contains("kernel"));
    assert!(err(
        &max_pool(pool(&[2, 2], &[2, 2], &[0; 4], false)),
        &[&f32t(&[4, 4])]
    )
    .contains("rank"));
    // a per-axis quantized spatial axis cannot be pooled
    assert!(err(
        &max_pool(pool(&[2, 2], &[2, 2], &[0; 4], false)),
        &[&qi8_axis(&[1, 2, 4, 4], 2)]
    )
    .contains("axis"));
}

#[test]
fn global_pools() {
    assert_eq!(
        dims(&Op::GlobalAveragePool, &[&f32t(&[2, 8, 7, 5])]),
        vec![2, 8, 1, 1]
    );
    assert_eq!(
        dims(&Op::GlobalAveragePool, &[&f32t(&[2, 8, 7])]),
        vec![2, 8, 1]
    );
    let q = qu8(&[1, 8, 3, 3], 0.5, 0);
    assert_eq!(one(&Op::GlobalMaxPool, &[&q]), qu8(&[1, 8, 1, 1], 0.5, 0));
    assert_eq!(one(&Op::GlobalAveragePool, &[&q]).quant, None);
    assert!(err(&Op::GlobalMaxPool, &[&f32t(&[1, 8])]).contains("rank"));
}

// ---- linear algebra ----

#[test]
fn matmul_numpy() {
    let mm = Op::MatMul {
        act: Activation::None,
    };
    assert_eq!(dims(&mm, &[&f32t(&[2, 3, 4]), &f32t(&[4])]), vec![2, 3]);
    assert_eq!(dims(&mm, &[&f32t(&[4]), &f32t(&[2, 4, 5])]), vec![2, 5]);
    assert_eq!(dims(&mm, &[&f32t(&[4]), &f32t(&[4])]), Vec::<usize>::new());
    assert_eq!(
        dims(&mm, &[&f32t(&[2, 1, 3, 4]), &f32t(&[5, 4, 6])]),
        vec![2, 5, 3, 6]
    );
    assert_eq!(dims(&mm, &[&f32t(&[3, 4]), &f32t(&[4, 6])]), vec![3, 6]);
    assert!(err(&mm, &[&f32t(&[3, 4]), &f32t(&[5, 6])]).contains("K"));
    assert!(err(&mm, &[&f32t(&[2, 3, 4]), &f32t(&[3, 4, 6])]).contains("batch"));
    assert!(err(&mm, &[&f32t(&[]), &f32t(&[3])]).contains("rank"));
    // quantized u8 x i8 operands may differ in storage; raw ones may not
    assert_eq!(
        one(&mm, &[&qu8(&[2, 4], 0.1, 0), &qi8_axis(&[4, 3], 1)]),
        t(DType::U8, &[2, 3])
    );
    assert!(err(&mm, &[&t(DType::U8, &[2, 4]), &t(DType::I8, &[4, 3])]).contains("dtype"));
}

#[test]
fn matmul_integer() {
    let y = one(
        &Op::MatMulInteger,
        &[
            &t(DType::U8, &[2, 3, 4]),
            &t(DType::I8, &[4, 5]),
            &t(DType::U8, &[3]),
            &t(DType::I8, &[5]),
        ],
    );
    assert_eq!(y, t(DType::I32, &[2, 3, 5]));
    let e = err(
        &Op::MatMulInteger,
        &[
            &t(DType::U8, &[2, 3, 4]),
            &t(DType::I8, &[4, 5]),
            &t(DType::U8, &[4]),
            &t(DType::I8, &[5]),
        ],
    );
    assert!(e.contains("a_zero_point"), "{e}");
}

#[test]
fn gemm_shapes() {
    let g = |ta, tb| {
        Op::Gemm(GemmAttrs {
            alpha: 1.0,
            beta: 1.0,
            trans_a: ta,
            trans_b: tb,
            act: Activation::None,
        })
    };
    // a^T: [4,3]^T = [3,4]; b^T: [5,4]^T = [4,5] -> [3,5]
    assert_eq!(
        dims(
            &g(true, true),
            &[&f32t(&[4, 3]), &f32t(&[5, 4]), &f32t(&[5])]
        ),
        vec![3, 5]
    );
    assert_eq!(
        dims(
            &g(false, false),
            &[&f32t(&[3, 4]), &f32t(&[4, 5]), &f32t(&[3, 1])]
        ),
        vec![3, 5]
    );
    assert_eq!(
        dims(
            &g(false, false),
            &[&f32t(&[3, 4]), &f32t(&[4, 5]), &f32t(&[])]
        ),
        vec![3, 5]
    );
    assert!(err(
        &g(false, false),
        &[&f32t(&[3, 4]), &f32t(&[4, 5]), &f32t(&[3])]
    )
    .contains("operand 2"));
    assert!(err(&g(false, true), &[&f32t(&[3, 4]), &f32t(&[4, 5])]).contains("inner"));
    assert!(err(&g(false, false), &[&f32t(&[3, 4, 1]), &f32t(&[4, 5])]).contains("2-D"));
}

#[test]
fn batch_norm() {
    let op = Op::BatchNorm { epsilon: 1e-5 };
    let p = f32t(&[3]);
    assert_eq!(
        dims(&op, &[&f32t(&[2, 3, 4, 4]), &p, &p, &p, &p]),
        vec![2, 3, 4, 4]
    );
    let e = err(&op, &[&f32t(&[2, 3, 4, 4]), &p, &p, &f32t(&[4]), &p]);
    assert!(e.contains("operand 3 (mean)"), "{e}");
    assert!(err(&op, &[&f32t(&[3]), &p, &p, &p, &p]).contains("axis 1"));
}

// ---- elementwise ----

#[test]
fn broadcasting() {
    let add = Op::Add {
        act: Activation::None,
    };
    assert_eq!(
        dims(&add, &[&f32t(&[2, 1, 5]), &f32t(&[3, 1])]),
        vec![2, 3, 5]
    );
    assert_eq!(dims(&add, &[&f32t(&[]), &f32t(&[4, 2])]), vec![4, 2]);
    assert_eq!(
        dims(&Op::Mul, &[&f32t(&[1, 0]), &f32t(&[3, 1])]),
        vec![3, 0]
    );
    assert!(err(&Op::Sub, &[&f32t(&[3]), &f32t(&[4])]).contains("broadcast"));
    assert!(err(&Op::Div, &[&f32t(&[3]), &t(DType::F64, &[3])]).contains("dtype"));
    assert_eq!(
        dims(&Op::Sum, &[&f32t(&[4, 1]), &f32t(&[1, 5]), &f32t(&[5])]),
        vec![4, 5]
    );
    assert!(err(&Op::Sum, &[]).contains("at least 1"));
    // quantized add: result params a choice
    assert_eq!(
        one(&add, &[&qu8(&[2, 3], 0.1, 1), &qu8(&[3], 0.2, 2)]),
        t(DType::U8, &[2, 3])
    );
    // prelu: slope broadcasts to x only one way
    assert_eq!(
        dims(&Op::PRelu, &[&f32t(&[1, 3, 4, 4]), &f32t(&[3, 1, 1])]),
        vec![1, 3, 4, 4]
    );
    assert!(err(&Op::PRelu, &[&f32t(&[3, 1, 1]), &f32t(&[1, 3, 4, 4])]).contains("slope"));
}

#[test]
fn unary_ops_keep_or_drop_params() {
    let q = qu8(&[2, 3], 0.25, 7);
    assert_eq!(one(&Op::Relu, &[&q]), q);
    assert_eq!(
        one(
            &Op::Clip {
                min: Some(0.0),
                max: Some(6.0)
            },
            &[&q]
        ),
        q
    );
    assert_eq!(one(&Op::Identity, &[&q]), q);
    assert_eq!(one(&Op::Sigmoid, &[&q]), t(DType::U8, &[2, 3]));
    assert_eq!(one(&Op::HardSwish, &[&f32t(&[2, 3])]), f32t(&[2, 3]));
    assert!(err(&Op::Tanh, &[&t(DType::I32, &[2])]).contains("raw i32"));
    assert_eq!(
        one(&Op::Cast { to: DType::I64 }, &[&f32t(&[2])]),
        t(DType::I64, &[2])
    );
    assert_eq!(
        dims(&Op::Softmax { axis: 1 }, &[&f32t(&[2, 3])]),
        vec![2, 3]
    );
    assert!(err(&Op::Softmax { axis: 2 }, &[&f32t(&[2, 3])]).contains("axis 2"));
    let lrn = Op::Lrn(LrnAttrs {
        size: 3,
        alpha: 1e-4,
        beta: 0.75,
        bias: 1.0,
    });
    assert_eq!(dims(&lrn, &[&f32t(&[1, 5, 2, 2])]), vec![1, 5, 2, 2]);
}

#[test]
fn conversions() {
    let x = f32t(&[2, 3]);
    assert_eq!(one(&Op::Quantize, &[&x]), t(DType::U8, &[2, 3]));
    assert!(err(&Op::Quantize, &[&t(DType::U8, &[2, 3])]).contains("float"));
    assert_eq!(one(&Op::Dequantize, &[&qu8(&[2, 3], 0.1, 0)]), x);
    assert_eq!(
        one(&Op::Requantize, &[&qu8(&[2, 3], 0.1, 0)]),
        t(DType::U8, &[2, 3])
    );
    let r = run(&Op::DynamicQuantize, &[&x]);
    assert_eq!(r, vec![t(DType::U8, &[2, 3]), f32t(&[]), t(DType::U8, &[])]);
}

// ---- data movement ----

#[test]
fn flatten_reshape() {
    assert_eq!(
        dims(&Op::Flatten { axis: 1 }, &[&f32t(&[2, 3, 4])]),
        vec![2, 12]
    );
    assert_eq!(
        dims(&Op::Flatten { axis: 0 }, &[&f32t(&[2, 3, 4])]),
        vec![1, 24]
    );
    assert_eq!(
        dims(&Op::Flatten { axis: 3 }, &[&f32t(&[2, 3, 4])]),
        vec![24, 1]
    );
    assert!(err(&Op::Flatten { axis: 4 }, &[&f32t(&[2, 3, 4])]).contains("axis 4"));
    assert_eq!(
        dims(&Op::Reshape { shape: vec![6, 4] }, &[&f32t(&[2, 3, 4])]),
        vec![6, 4]
    );
    assert!(err(&Op::Reshape { shape: vec![5, 5] }, &[&f32t(&[2, 3, 4])]).contains("25"));
    // per-tensor params follow
    let q = qu8(&[2, 3, 4], 0.1, 9);
    assert_eq!(
        one(&Op::Reshape { shape: vec![24] }, &[&q]),
        qu8(&[24], 0.1, 9)
    );
    // per-axis: axis 1 (size 3, prefix 1) -> [3, 4] axis 0
    let q = qi8_axis(&[1, 3, 4], 1);
    let y = one(&Op::Reshape { shape: vec![3, 4] }, &[&q]);
    assert_eq!(y.quant.as_ref().and_then(|p| p.axis), Some(0));
    assert_eq!(
        y.quant.as_ref().map(|p| p.scales.clone()),
        q.quant.as_ref().map(|p| p.scales.clone())
    );
    // merging the quantized axis with another fails
    assert!(err(&Op::Reshape { shape: vec![12] }, &[&q]).contains("axis 1"));
    // flatten at 2 keeps [1*3, 4]: the axis survives as axis 0; at 3 it is merged
    assert_eq!(
        one(&Op::Flatten { axis: 2 }, &[&q])
            .quant
            .and_then(|p| p.axis),
        Some(0)
    );
    assert!(err(&Op::Flatten { axis: 3 }, &[&q]).contains("axis 1"));
}

#[test]
fn squeeze_unsqueeze() {
    assert_eq!(
        dims(&Op::Squeeze { axes: vec![0, 2] }, &[&f32t(&[1, 3, 1, 4])]),
        vec![3, 4]
    );
    assert!(err(&Op::Squeeze { axes: vec![1] }, &[&f32t(&[1, 3])]).contains("size 3"));
    assert!(err(&Op::Squeeze { axes: vec![2] }, &[&f32t(&[1, 3])]).contains("out of range"));
    assert!(err(&Op::Squeeze { axes: vec![0, 0] }, &[&f32t(&[1, 3])]).contains("sorted"));
    assert_eq!(
        dims(&Op::Unsqueeze { axes: vec![0, 3] }, &[&f32t(&[3, 4])]),
        vec![1, 3, 4, 1]
    );
    assert_eq!(
        dims(&Op::Unsqueeze { axes: vec![1] }, &[&f32t(&[3, 4])]),
        vec![3, 1, 4]
    );
    assert!(err(&Op::Unsqueeze { axes: vec![3] }, &[&f32t(&[3, 4])]).contains("out of range"));
    // per-axis remapping: [1, 5] axis 1 -> squeeze 0 -> axis 0
    let q = qi8_axis(&[1, 5], 1);
    assert_eq!(
        one(&Op::Squeeze { axes: vec![0] }, &[&q])
            .quant
            .and_then(|p| p.axis),
        Some(0)
    );
    // unsqueeze [5] axis 0 at result axes [0, 2] -> [1, 5, 1], axis 1
    let q = qi8_axis(&[5], 0);
    assert_eq!(
        one(&Op::Unsqueeze { axes: vec![0, 2] }, &[&q])
            .quant
            .and_then(|p| p.axis),
        Some(1)
    );
    // a squeezed size-1 quantized axis becomes per-tensor
    let q = qi8_axis(&[1, 5], 0);
    let y = one(&Op::Squeeze { axes: vec![0] }, &[&q]);
    assert_eq!(y.quant, Some(QuantParams::per_tensor(QType::I8, 0.5, 0)));
}

#[test]
fn transpose() {
    assert_eq!(
        dims(
            &Op::Transpose {
                perm: vec![2, 0, 1]
            },
            &[&f32t(&[2, 3, 4])]
        ),
        vec![4, 2, 3]
    );
    assert!(err(
        &Op::Transpose {
            perm: vec![0, 0, 1]
        },
        &[&f32t(&[2, 3, 4])]
    )
    .contains("permutation"));
    assert!(err(&Op::Transpose { perm: vec![0, 1] }, &[&f32t(&[2, 3, 4])]).contains("rank"));
    // per-axis on axis 1 (size 3): result axis j with perm[j] == 1 is j = 2
    let q = qi8_axis(&[2, 3, 4], 1);
    let y = one(
        &Op::Transpose {
            perm: vec![2, 0, 1],
        },
        &[&q],
    );
    assert_eq!(y.shape, Shape(vec![4, 2, 3]));
    assert_eq!(y.quant.and_then(|p| p.axis), Some(2));
}

#[test]
fn concat() {
    let op = Op::Concat { axis: 1 };
    assert_eq!(
        dims(&op, &[&f32t(&[2, 3, 4]), &f32t(&[2, 5, 4])]),
        vec![2, 8, 4]
    );
    assert!(err(&op, &[&f32t(&[2, 3, 4]), &f32t(&[2, 5, 5])]).contains("operand 1"));
    assert!(err(&op, &[&f32t(&[2, 3, 4]), &t(DType::F16, &[2, 5, 4])]).contains("dtype"));
    assert!(err(&Op::Concat { axis: 3 }, &[&f32t(&[2, 3, 4])]).contains("axis 3"));
    // equal params propagate, unequal ones are a choice
    let a = qu8(&[1, 2], 0.1, 5);
    assert_eq!(one(&op, &[&a, &a]), qu8(&[1, 4], 0.1, 5));
    assert_eq!(one(&op, &[&a, &qu8(&[1, 2], 0.2, 5)]).quant, None);
    // per-axis along the concat axis: scales [0.5, 1.5] ++ [0.5, 1.5, 2.5]
    let y = one(
        &Op::Concat { axis: 0 },
        &[&qi8_axis(&[2, 4], 0), &qi8_axis(&[3, 4], 0)],
    );
    assert_eq!(
        y.quant.map(|p| p.scales),
        Some(vec![0.5, 1.5, 0.5, 1.5, 2.5])
    );
}

#[test]
fn pad() {
    // H: 4 + 1 + 2 = 7; W: 4 - 1 - 1 = 2
    let op = Op::Pad {
        pads: vec![0, 0, 1, -1, 0, 0, 2, -1],
        value: 0.0,
    };
    assert_eq!(dims(&op, &[&f32t(&[1, 3, 4, 4])]), vec![1, 3, 7, 2]);
    let op = Op::Pad {
        pads: vec![-3, -2],
        value: 0.0,
    };
    assert!(err(&op, &[&f32t(&[4])]).contains("below zero"));
    let op = Op::Pad {
        pads: vec![1, 1],
        value: 0.0,
    };
    assert!(err(&op, &[&f32t(&[4, 4])]).contains("length"));
    let q = qu8(&[2, 2], 0.1, 4);
    assert_eq!(
        one(
            &Op::Pad {
                pads: vec![1, 0, 0, 1],
                value: 0.0
            },
            &[&q]
        ),
        qu8(&[3, 3], 0.1, 4)
    );
}

#[test]
fn reduce_mean() {
    let x = f32t(&[2, 3, 4]);
    assert_eq!(
        dims(
            &Op::ReduceMean {
                axes: vec![1, 2],
                keepdims: true
            },
            &[&x]
        ),
        vec![2, 1, 1]
    );
    assert_eq!(
        dims(
            &Op::ReduceMean {
                axes: vec![1, 2],
                keepdims: false
            },
            &[&x]
        ),
        vec![2]
    );
    assert!(err(
        &Op::ReduceMean {
            axes: vec![2, 1],
            keepdims: false
        },
        &[&x]
    )
    .contains("sorted"));
}

/// Many malformed operand lists: inference must answer (Ok or Err), never panic.
#[test]
fn never_panics_on_garbage() {
    let shapes: Vec<TensorType> = vec![
        f32t(&[]),
        f32t(&[0]),
        f32t(&[1]),
        f32t(&[3]),
        f32t(&[2, 3]),
        f32t(&[1, 3, 0, 5]),
        f32t(&[1, 3, 4, 4]),
        f32t(&[1, 3, 2, 2, 2]),
        t(DType::I32, &[3]),
        t(DType::U8, &[1, 3, 4, 4]),
        qu8(&[1, 3, 4, 4], 0.1, 0),
        qi8_axis(&[3, 3, 1, 1], 0),
        f32t(&[usize::MAX, 2]),
    ];
    let big = usize::MAX;
    let ops = vec![
        Op::Quantize,
        Op::Dequantize,
        Op::Requantize,
        Op::DynamicQuantize,
        Op::Conv(conv_attrs(&[1, 1], &[1, 1], &[0; 4], 1)),
        Op::Conv(conv_attrs(&[big, 1], &[big, 1], &[big; 4], big)),
        Op::Conv(conv_attrs(&[1, 1], &[1, 1], &[0; 4], 0)),
        Op::ConvInteger(conv_attrs(&[1, 1], &[1, 1], &[0; 4], 1)),
        Op::ConvTranspose(ct_attrs(&[1, 1], &[big, big], &[big, big], 1)),
        Op::ConvTranspose(ct_attrs(&[1, 1], &[1, 1], &[0, 0], 0)),
        Op::Gemm(GemmAttrs {
            alpha: 1.0,
            beta: 1.0,
            trans_a: true,
            trans_b: false,
            act: Activation::None,
        }),
        Op::MatMul {
            act: Activation::None,
        },
        Op::MatMulInteger,
        Op::BatchNorm { epsilon: 0.0 },
        Op::Add {
            act: Activation::None,
        },
        Op::Sum,
        Op::PRelu,
        Op::Relu,
        Op::MaxPool {
            pool: pool(&[big, big], &[big, big], &[big; 4], true),
            storage_order: 0,
        },
        Op::MaxPool {
            pool: pool(&[2, 2], &[2, 2], &[0; 4], true),
            storage_order: 0,
        },
        Op::AveragePool {
            pool: pool(&[1], &[1], &[0; 2], false),
            count_include_pad: false,
        },
        Op::GlobalAveragePool,
        Op::GlobalMaxPool,
        Op::Flatten { axis: 1 },
        Op::Flatten { axis: big },
        Op::Reshape {
            shape: vec![big, big],
        },
        Op::Squeeze { axes: vec![0, big] },
        Op::Unsqueeze { axes: vec![big] },
        Op::Unsqueeze {
            axes: vec![0, 1, 2],
        },
        Op::Transpose { perm: vec![big, 0] },
        Op::Concat { axis: 0 },
        Op::Concat { axis: big },
        Op::Pad {
            pads: vec![i64::MIN, i64::MAX, i64::MAX, i64::MAX],
            value: 0.0,
        },
        Op::Softmax { axis: big },
        Op::ReduceMean {
            axes: vec![0, 1],
            keepdims: false,
        },
        Op::Lrn(LrnAttrs {
            size: 0,
            alpha: 0.0,
            beta: 0.0,
            bias: 0.0,
        }),
        Op::Identity,
    ];
    let n = shapes.len();
    for op in &ops {
        for count in 0..=4usize {
            // a deterministic spread of operand combinations
            for start in 0..n {
                let ins: Vec<&TensorType> =
                    (0..count).map(|k| &shapes[(start + k * 5) % n]).collect();
                let _ = infer(op, &ins);
            }
        }
    }
}
