//! Float ops against hand-computed values (most from the ONNX operator docs) or
//! against naive formulas written independently of the interpreter's loop nests.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::excessive_precision,
    clippy::cloned_ref_to_slice_refs,
    clippy::too_many_arguments
)]

mod common;

use common::*;
use qc_ir::{
    Activation, ConvAttrs, ConvTransposeAttrs, DType, GemmAttrs, Graph, LrnAttrs, Op, PoolAttrs,
    TensorData, TensorType,
};

fn conv_attrs(
    kernel: &[usize],
    strides: &[usize],
    dil: &[usize],
    pads: &[usize],
    group: usize,
) -> ConvAttrs {
    ConvAttrs {
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        dilations: dil.to_vec(),
        pads: pads.to_vec(),
        group,
        act: Activation::None,
    }
}

/// Graph `y = op(x, w[, b])` with `w`, `b` constants.
fn conv_graph(op: Op, x: &[usize], w: qc_ir::Tensor, b: Option<qc_ir::Tensor>) -> Graph {
    let mut g = Graph::new();
    let xv = g.add_input("x", TensorType::f32(x.to_vec()));
    let wv = g.add_const(w);
    let mut ins = vec![xv, wv];
    if let Some(b) = b {
        ins.push(g.add_const(b));
    }
    let y = node(&mut g, op, &ins)[0];
    g.add_output("y", y);
    g
}

/// Unravel a flat row-major index.
fn unravel(mut i: usize, dims: &[usize]) -> Vec<usize> {
    let mut c = vec![0; dims.len()];
    for d in (0..dims.len()).rev() {
        c[d] = i % dims[d];
        i /= dims[d];
    }
    c
}

fn ravel(c: &[usize], dims: &[usize]) -> usize {
    c.iter().zip(dims).fold(0, |acc, (&i, &d)| acc * d + i)
}

/// Naive N-d convolution: for each output, gather every (input channel, tap).
#[allow(clippy::too_many_arguments)]
fn naive_conv(
    x: &[f32],
    xd: &[usize],
    w: &[f32],
    wd: &[usize],
    b: Option<&[f32]>,
    s: &[usize],
    dil: &[usize],
    pads: &[usize],
    group: usize,
) -> (Vec<usize>, Vec<f32>) {
    let r = xd.len() - 2;
    let mut yd = vec![xd[0], wd[0]];
    for i in 0..r {
        yd.push((xd[2 + i] + pads[i] + pads[r + i] - dil[i] * (wd[2 + i] - 1) - 1) / s[i] + 1);
    }
    let cin_g = wd[1];
    let cout_g = wd[0] / group;
    let n_out: usize = yd.iter().product();
    let n_k: usize = wd[2..].iter().product();
    let mut y = vec![0f32; n_out];
    for (oi, yv) in y.iter_mut().enumerate() {
        let oc = unravel(oi, &yd);
        let (n, m) = (oc[0], oc[1]);
        let grp = m / cout_g;
        let mut acc = b.map_or(0.0, |b| b[m]);
        for c in 0..cin_g {
            for ki in 0..n_k {
                let kc = unravel(ki, &wd[2..]);
                let mut xc = vec![n, grp * cin_g + c];
                let mut inside = true;
                for i in 0..r {
                    let p = (oc[2 + i] * s[i] + kc[i] * dil[i]) as i64 - pads[i] as i64;
                    if p < 0 || p >= xd[2 + i] as i64 {
                        inside = false;
                    }
                    xc.push(p.max(0) as usize);
                }
                if inside {
                    let mut wc = vec![m, c];
                    wc.extend(&kc);
                    acc += x[ravel(&xc, xd)] * w[ravel(&wc, wd)];
                }
            }
        }
        *yv = acc;
    }
    (yd, y)
}

#[test]
fn conv_strides_padding_onnx_example() {
    // ONNX Conv doc, "conv_with_strides_padding": x = arange(35) as 7x5, 3x3 ones.
    let x = f32t(&[1, 1, 7, 5], (0..35).map(|v| v as f32).collect());
    let w = f32t(&[1, 1, 3, 3], vec![1.0; 9]);
    let g = conv_graph(
        Op::Conv(conv_attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1, 1, 1], 1)),
        &[1, 1, 7, 5],
        w,
        None,
    );
    let y = run1(&g, &[x]);
    assert_eq!(y.dims(), &[1, 1, 4, 3]);
    let want = [
        12., 27., 24., 63., 108., 81., 123., 198., 141., 112., 177., 124.,
    ];
    assert_close(&f32s(&y), &want, 0.0);
}

#[test]
fn conv_asymmetric_padding_onnx_example() {
    // ONNX "conv_with_strides_and_asymmetric_padding": pads [1, 0, 1, 0].
    let x = f32t(&[1, 1, 7, 5], (0..35).map(|v| v as f32).collect());
    let w = f32t(&[1, 1, 3, 3], vec![1.0; 9]);
    let g = conv_graph(
        Op::Conv(conv_attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 0, 1, 0], 1)),
        &[1, 1, 7, 5],
        w,
        None,
    );
    let y = run1(&g, &[x]);
    assert_eq!(y.dims(), &[1, 1, 4, 2]);
    assert_close(
        &f32s(&y),
        &[21., 33., 99., 117., 189., 207., 171., 183.],
        0.0,
    );
}

#[test]
fn conv_2d_matches_naive_with_stride_dilation_groups_bias() {
    // group 2, 4 in channels, 6 out channels, dilation 2, stride (2,1), asymmetric pads.
    let (xd, wd) = ([2usize, 4, 9, 8], [6usize, 2, 3, 2]);
    let x = rand_vec(xd.iter().product(), 1);
    let w = rand_vec(wd.iter().product(), 2);
    let b = rand_vec(6, 3);
    let (s, dil, pads) = ([2, 1], [2, 2], [1, 2, 0, 1]);
    let g = conv_graph(
        Op::Conv(conv_attrs(&[3, 2], &s, &dil, &pads, 2)),
        &xd,
        f32t(&wd, w.clone()),
        Some(f32t(&[6], b.clone())),
    );
    let y = run1(&g, &[f32t(&xd, x.clone())]);
    let (yd, want) = naive_conv(&x, &xd, &w, &wd, Some(&b), &s, &dil, &pads, 2);
    assert_eq!(y.dims(), &yd[..]);
    assert_close(&f32s(&y), &want, 1e-5);
}

#[test]
fn conv_depthwise_matches_naive() {
    let (xd, wd) = ([1usize, 5, 7, 7], [5usize, 1, 3, 3]);
    let x = rand_vec(245, 4);
    let w = rand_vec(45, 5);
    let g = conv_graph(
        Op::Conv(conv_attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1, 1, 1], 5)),
        &xd,
        f32t(&wd, w.clone()),
        None,
    );
    let y = run1(&g, &[f32t(&xd, x.clone())]);
    let (yd, want) = naive_conv(&x, &xd, &w, &wd, None, &[2, 2], &[1, 1], &[1, 1, 1, 1], 5);
    assert_eq!(y.dims(), &yd[..]);
    assert_close(&f32s(&y), &want, 1e-5);
}

#[test]
fn conv_1d_and_3d_match_naive() {
    let (xd, wd) = ([2usize, 3, 11], [4usize, 3, 3]);
    let (x, w) = (rand_vec(66, 6), rand_vec(36, 7));
    let g = conv_graph(
        Op::Conv(conv_attrs(&[3], &[3], &[2], &[2, 1], 1)),
        &xd,
        f32t(&wd, w.clone()),
        None,
    );
    let y = run1(&g, &[f32t(&xd, x.clone())]);
    let (yd, want) = naive_conv(&x, &xd, &w, &wd, None, &[3], &[2], &[2, 1], 1);
    assert_eq!(y.dims(), &yd[..]);
    assert_close(&f32s(&y), &want, 1e-5);

    let (xd, wd) = ([1usize, 2, 5, 6, 4], [2usize, 1, 2, 3, 2]);
    let (x, w) = (rand_vec(240, 8), rand_vec(24, 9));
    let (s, dil, pads) = ([1, 2, 1], [2, 1, 1], [0, 1, 1, 1, 0, 0]);
    let g = conv_graph(
        Op::Conv(conv_attrs(&[2, 3, 2], &s, &dil, &pads, 2)),
        &xd,
        f32t(&wd, w.clone()),
        None,
    );
    let y = run1(&g, &[f32t(&xd, x.clone())]);
    let (yd, want) = naive_conv(&x, &xd, &w, &wd, None, &s, &dil, &pads, 2);
    assert_eq!(y.dims(), &yd[..]);
    assert_close(&f32s(&y), &want, 1e-5);
}

#[test]
fn conv_fused_relu_and_clip() {
    // 1x1 conv with weight -1 then relu: negatives of x clamped at 0.
    let x = f32t(&[1, 1, 1, 4], vec![-2.0, -0.5, 0.5, 3.0]);
    let mut a = conv_attrs(&[1, 1], &[1, 1], &[1, 1], &[0, 0, 0, 0], 1);
    a.act = Activation::Relu;
    let g = conv_graph(
        Op::Conv(a.clone()),
        &[1, 1, 1, 4],
        f32t(&[1, 1, 1, 1], vec![-1.0]),
        None,
    );
    assert_close(&f32s(&run1(&g, &[x.clone()])), &[2.0, 0.5, 0.0, 0.0], 0.0);
    a.act = Activation::Clip { min: 0.0, max: 1.0 };
    let g = conv_graph(
        Op::Conv(a),
        &[1, 1, 1, 4],
        f32t(&[1, 1, 1, 1], vec![-1.0]),
        None,
    );
    assert_close(&f32s(&run1(&g, &[x])), &[1.0, 0.5, 0.0, 0.0], 0.0);
}

fn ct_attrs(
    kernel: &[usize],
    strides: &[usize],
    dil: &[usize],
    pads: &[usize],
    opad: &[usize],
    group: usize,
) -> ConvTransposeAttrs {
    ConvTransposeAttrs {
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        dilations: dil.to_vec(),
        pads: pads.to_vec(),
        output_padding: if opad.is_empty() {
            vec![0; kernel.len()]
        } else {
            opad.to_vec()
        },
        group,
        act: Activation::None,
    }
}

#[test]
fn conv_transpose_onnx_example() {
    // ONNX ConvTranspose doc: x = arange(9) as 3x3, W = ones(1, 2, 3, 3).
    let x = f32t(&[1, 1, 3, 3], (0..9).map(|v| v as f32).collect());
    let w = f32t(&[1, 2, 3, 3], vec![1.0; 18]);
    let g = conv_graph(
        Op::ConvTranspose(ct_attrs(&[3, 3], &[1, 1], &[1, 1], &[0, 0, 0, 0], &[], 1)),
        &[1, 1, 3, 3],
        w,
        None,
    );
    let y = run1(&g, &[x]);
    assert_eq!(y.dims(), &[1, 2, 5, 5]);
    let plane = [
        0., 1., 3., 3., 2., 3., 8., 15., 12., 7., 9., 21., 36., 27., 15., 9., 20., 33., 24., 13.,
        6., 13., 21., 15., 8.,
    ];
    let want: Vec<f32> = plane.iter().chain(plane.iter()).copied().collect();
    assert_close(&f32s(&y), &want, 0.0);
}

#[test]
fn conv_transpose_matches_naive_gather() {
    // Strides, dilation, pads, output padding and 2 groups, against the definition
    // y[o] = sum over (i, k) with i*s + k*d - p == o of x[i] * w[k].
    let (xd, wd) = ([2usize, 4, 3, 4], [4usize, 3, 2, 3]);
    let (x, w, b) = (rand_vec(96, 10), rand_vec(72, 11), rand_vec(6, 12));
    let (s, dil, pads, opad) = ([2usize, 3], [1usize, 2], [1usize, 0, 0, 2], [1usize, 0]);
    let g = conv_graph(
        Op::ConvTranspose(ct_attrs(&[2, 3], &s, &dil, &pads, &opad, 2)),
        &xd,
        f32t(&wd, w.clone()),
        Some(f32t(&[6], b.clone())),
    );
    let y = run1(&g, &[f32t(&xd, x.clone())]);
    let oh = s[0] * (xd[2] - 1) + opad[0] + (wd[2] - 1) * dil[0] + 1 - pads[0] - pads[2];
    let ow = s[1] * (xd[3] - 1) + opad[1] + (wd[3] - 1) * dil[1] + 1 - pads[1] - pads[3];
    let yd = [2, 6, oh, ow];
    assert_eq!(y.dims(), &yd);
    let mut want = vec![0f32; yd.iter().product()];
    for (oi, v) in want.iter_mut().enumerate() {
        let c = unravel(oi, &yd);
        let (n, m) = (c[0], c[1]);
        let (grp, mg) = (m / 3, m % 3);
        let mut acc = b[m];
        for icg in 0..2 {
            let ic = grp * 2 + icg;
            for ih in 0..xd[2] {
                for iw in 0..xd[3] {
                    for kh in 0..wd[2] {
                        for kw in 0..wd[3] {
                            let hh = (ih * s[0] + kh * dil[0]) as i64 - pads[0] as i64;
                            let ww = (iw * s[1] + kw * dil[1]) as i64 - pads[1] as i64;
                            if hh == c[2] as i64 && ww == c[3] as i64 {
                                acc += x[ravel(&[n, ic, ih, iw], &xd)]
                                    * w[ravel(&[ic, mg, kh, kw], &wd)];
                            }
                        }
                    }
                }
            }
        }
        *v = acc;
    }
    assert_close(&f32s(&y), &want, 1e-5);
}

fn pool(kernel: &[usize], strides: &[usize], pads: &[usize], ceil_mode: bool) -> PoolAttrs {
    let pads = if pads.is_empty() {
        vec![0; 2 * kernel.len()]
    } else {
        pads.to_vec()
    };
    PoolAttrs {
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        dilations: vec![1; kernel.len()],
        pads,
        ceil_mode,
    }
}

fn x4x4() -> qc_ir::Tensor {
    f32t(&[1, 1, 4, 4], (1..=16).map(|v| v as f32).collect())
}

fn x5x5() -> qc_ir::Tensor {
    f32t(&[1, 1, 5, 5], (1..=25).map(|v| v as f32).collect())
}

#[test]
fn max_pool_ceil_mode_onnx_example() {
    let op = Op::MaxPool {
        pool: pool(&[3, 3], &[2, 2], &[0, 0, 0, 0], true),
        storage_order: 0,
    };
    let y = run1(&unary_graph(op, &x4x4()), &[x4x4()]);
    assert_eq!(y.dims(), &[1, 1, 2, 2]);
    assert_close(&f32s(&y), &[11., 12., 15., 16.], 0.0);
}

#[test]
fn average_pool_ceil_mode_onnx_example() {
    let op = Op::AveragePool {
        pool: pool(&[3, 3], &[2, 2], &[0, 0, 0, 0], true),
        count_include_pad: false,
    };
    let y = run1(&unary_graph(op, &x4x4()), &[x4x4()]);
    assert_close(&f32s(&y), &[6., 7.5, 12., 13.5], 0.0);
}

#[test]
fn average_pool_pads_with_and_without_count_include_pad() {
    // ONNX "averagepool_2d_precomputed_pads" (5x5 kernel, pads 2).
    let p = pool(&[5, 5], &[1, 1], &[2, 2, 2, 2], false);
    let op = Op::AveragePool {
        pool: p.clone(),
        count_include_pad: false,
    };
    let y = run1(&unary_graph(op, &x5x5()), &[x5x5()]);
    let want = [
        7., 7.5, 8., 8.5, 9., 9.5, 10., 10.5, 11., 11.5, 12., 12.5, 13., 13.5, 14., 14.5, 15.,
        15.5, 16., 16.5, 17., 17.5, 18., 18.5, 19.,
    ];
    assert_close(&f32s(&y), &want, 1e-6);
    let op = Op::AveragePool {
        pool: p,
        count_include_pad: true,
    };
    let y = run1(&unary_graph(op, &x5x5()), &[x5x5()]);
    let want = [
        2.52, 3.6, 4.8, 4.08, 3.24, 4.56, 6.4, 8.4, 7.04, 5.52, 7.2, 10., 13., 10.8, 8.4, 6.96,
        9.6, 12.4, 10.24, 7.92, 6.12, 8.4, 10.8, 8.88, 6.84,
    ];
    assert_close(&f32s(&y), &want, 1e-6);
}

#[test]
fn pools_1d_ceil_window_clipped_past_end_padding() {
    // x = [1..5], kernel 3, stride 2, pads [1, 0], ceil: windows (input coords)
    // {-1,0,1}, {1,2,3}, {3,4,5}; -1 is padding, 5 lies past the end padding.
    let x = f32t(&[1, 1, 5], vec![1., 2., 3., 4., 5.]);
    let p = pool(&[3], &[2], &[1, 0], true);
    let avg = |cip| {
        run1(
            &unary_graph(
                Op::AveragePool {
                    pool: p.clone(),
                    count_include_pad: cip,
                },
                &x,
            ),
            &[x.clone()],
        )
    };
    // include pad: (0+1+2)/3, (2+3+4)/3, (4+5)/2 (position 5 is not counted).
    assert_close(&f32s(&avg(true)), &[1.0, 3.0, 4.5], 1e-6);
    // exclude pad: (1+2)/2, 9/3, 9/2.
    assert_close(&f32s(&avg(false)), &[1.5, 3.0, 4.5], 1e-6);
    let y = run1(
        &unary_graph(
            Op::MaxPool {
                pool: p.clone(),
                storage_order: 0,
            },
            &x,
        ),
        &[x.clone()],
    );
    assert_close(&f32s(&y), &[2., 4., 5.], 0.0);
}

#[test]
fn max_pool_dilated_3d_matches_naive() {
    let xd = [1usize, 2, 5, 4, 6];
    let x = rand_vec(240, 13);
    let p = PoolAttrs {
        kernel: vec![2, 2, 3],
        strides: vec![2, 1, 2],
        dilations: vec![2, 1, 1],
        pads: vec![1, 0, 1, 0, 1, 1],
        ceil_mode: false,
    };
    let y = run1(
        &unary_graph(
            Op::MaxPool {
                pool: p,
                storage_order: 0,
            },
            &f32t(&xd, x.clone()),
        ),
        &[f32t(&xd, x.clone())],
    );
    // Output dims: floor((5+1-3)/2)+1 = 2, floor((4+1-2)/1)+1 = 4, floor((6+2-3)/2)+1 = 3.
    let yd = [1usize, 2, 2, 4, 3];
    assert_eq!(y.dims(), &yd);
    let mut want = Vec::new();
    for c in 0..2 {
        for od in 0..2 {
            for oh in 0..4 {
                for ow in 0..3 {
                    let mut m = f32::NEG_INFINITY;
                    for kd in 0..2 {
                        for kh in 0..2 {
                            for kw in 0..3 {
                                let d = (od * 2 + kd * 2) as i64 - 1;
                                let h = (oh + kh) as i64;
                                let w = (ow * 2 + kw) as i64 - 1;
                                if (0..5).contains(&d) && (0..4).contains(&h) && (0..6).contains(&w)
                                {
                                    m = m.max(
                                        x[ravel(&[0, c, d as usize, h as usize, w as usize], &xd)],
                                    );
                                }
                            }
                        }
                    }
                    want.push(m);
                }
            }
        }
    }
    assert_close(&f32s(&y), &want, 0.0);
}

fn argmax_graph(p: PoolAttrs, storage_order: u8, x: &qc_ir::Tensor) -> Graph {
    let mut g = Graph::new();
    let xv = g.add_input("x", TensorType::f32(x.dims().to_vec()));
    let outs = node(
        &mut g,
        Op::MaxPool {
            pool: p,
            storage_order,
        },
        &[xv],
    );
    g.add_output("y", outs[0]);
    g.add_output("i", outs[1]);
    g
}

#[test]
fn max_pool_indices_onnx_examples() {
    // ONNX "maxpool_with_argmax_2d_precomputed_pads".
    let g = argmax_graph(pool(&[5, 5], &[1, 1], &[2, 2, 2, 2], false), 0, &x5x5());
    let r = run(&g, &[x5x5()]);
    let y = [
        13., 14., 15., 15., 15., 18., 19., 20., 20., 20., 23., 24., 25., 25., 25., 23., 24., 25.,
        25., 25., 23., 24., 25., 25., 25.,
    ];
    assert_close(&f32s(&r[0]), &y, 0.0);
    let z: Vec<i64> = vec![
        12, 13, 14, 14, 14, 17, 18, 19, 19, 19, 22, 23, 24, 24, 24, 22, 23, 24, 24, 24, 22, 23, 24,
        24, 24,
    ];
    assert_eq!(r[1].data(), &TensorData::I64(z));

    // ONNX "maxpool_with_argmax_2d_precomputed_strides": column-major indices.
    let g = argmax_graph(pool(&[2, 2], &[2, 2], &[], false), 1, &x5x5());
    let r = run(&g, &[x5x5()]);
    assert_close(&f32s(&r[0]), &[7., 9., 17., 19.], 0.0);
    assert_eq!(r[1].data(), &TensorData::I64(vec![6, 16, 8, 18]));
}

#[test]
fn max_pool_indices_include_batch_and_channel_offsets() {
    // Two channels of 2x2, global window: the max of channel 1 (at (0,1)) is flat
    // index 4 + 1 = 5 row-major, 4 + 2 = 6 column-major.
    let x = f32t(&[1, 2, 2, 2], vec![1., 0., 0., 0., 0., 9., 0., 0.]);
    for (order, want) in [(0u8, vec![0i64, 5]), (1, vec![0, 6])] {
        let g = argmax_graph(pool(&[2, 2], &[1, 1], &[], false), order, &x);
        let r = run(&g, &[x.clone()]);
        assert_eq!(r[1].data(), &TensorData::I64(want));
    }
}

#[test]
fn global_pools() {
    let x = f32t(&[1, 2, 2, 2], vec![1., 2., 3., 4., -1., -5., -3., -2.]);
    let y = run1(&unary_graph(Op::GlobalAveragePool, &x), &[x.clone()]);
    assert_eq!(y.dims(), &[1, 2, 1, 1]);
    assert_close(&f32s(&y), &[2.5, -2.75], 0.0);
    let y = run1(&unary_graph(Op::GlobalMaxPool, &x), &[x.clone()]);
    assert_close(&f32s(&y), &[4.0, -1.0], 0.0);
}

fn gemm_graph(a: &[usize], b: &[usize], c: Option<qc_ir::Tensor>, attrs: GemmAttrs) -> Graph {
    let mut g = Graph::new();
    let av = g.add_input("a", TensorType::f32(a.to_vec()));
    let bv = g.add_input("b", TensorType::f32(b.to_vec()));
    let mut ins = vec![av, bv];
    if let Some(c) = c {
        ins.push(g.add_const(c));
    }
    let y = node(&mut g, Op::Gemm(attrs), &ins)[0];
    g.add_output("y", y);
    g
}

#[test]
fn gemm_trans_alpha_beta_broadcast_c() {
    let (m, k, n) = (3, 4, 5);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let ad = if ta { [k, m] } else { [m, k] };
        let bd = if tb { [n, k] } else { [k, n] };
        let (a, b, c) = (rand_vec(12, 20), rand_vec(20, 21), rand_vec(n, 22));
        let attrs = GemmAttrs {
            alpha: 0.5,
            beta: -2.0,
            trans_a: ta,
            trans_b: tb,
            act: Activation::None,
        };
        let g = gemm_graph(&ad, &bd, Some(f32t(&[n], c.clone())), attrs);
        let y = run1(&g, &[f32t(&ad, a.clone()), f32t(&bd, b.clone())]);
        assert_eq!(y.dims(), &[m, n]);
        let mut want = vec![];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f32;
                for kk in 0..k {
                    let av = if ta { a[kk * m + i] } else { a[i * k + kk] };
                    let bv = if tb { b[j * k + kk] } else { b[kk * n + j] };
                    s += av * bv;
                }
                want.push(0.5 * s - 2.0 * c[j]);
            }
        }
        assert_close(&f32s(&y), &want, 1e-5);
    }
}

#[test]
fn gemm_by_hand_with_column_c_and_relu() {
    // [[1,2],[3,4]] · [[1,0],[0,-1]] = [[1,-2],[3,-4]]; + c [[10],[-10]] (shape [2,1])
    // = [[11, 8], [-7, -14]]; relu → [[11, 8], [0, 0]].
    let attrs = GemmAttrs {
        alpha: 1.0,
        beta: 1.0,
        trans_a: false,
        trans_b: false,
        act: Activation::Relu,
    };
    let g = gemm_graph(
        &[2, 2],
        &[2, 2],
        Some(f32t(&[2, 1], vec![10., -10.])),
        attrs,
    );
    let y = run1(
        &g,
        &[
            f32t(&[2, 2], vec![1., 2., 3., 4.]),
            f32t(&[2, 2], vec![1., 0., 0., -1.]),
        ],
    );
    assert_close(&f32s(&y), &[11., 8., 0., 0.], 0.0);
}

fn matmul_graph(a: &[usize], b: &[usize]) -> Graph {
    let mut g = Graph::new();
    let av = g.add_input("a", TensorType::f32(a.to_vec()));
    let bv = g.add_input("b", TensorType::f32(b.to_vec()));
    let y = node(
        &mut g,
        Op::MatMul {
            act: Activation::None,
        },
        &[av, bv],
    )[0];
    g.add_output("y", y);
    g
}

#[test]
fn matmul_batched_broadcast_matches_naive() {
    let (ad, bd) = ([2usize, 1, 3, 4], [3usize, 4, 5]);
    let (a, b) = (rand_vec(24, 30), rand_vec(60, 31));
    let y = run1(
        &matmul_graph(&ad, &bd),
        &[f32t(&ad, a.clone()), f32t(&bd, b.clone())],
    );
    assert_eq!(y.dims(), &[2, 3, 3, 5]);
    let mut want = vec![];
    for p in 0..2 {
        for q in 0..3 {
            for i in 0..3 {
                for j in 0..5 {
                    let s: f32 = (0..4)
                        .map(|kk| a[ravel(&[p, 0, i, kk], &ad)] * b[ravel(&[q, kk, j], &bd)])
                        .sum();
                    want.push(s);
                }
            }
        }
    }
    assert_close(&f32s(&y), &want, 1e-5);
}

#[test]
fn matmul_1d_operands() {
    // [1,2,3] · [[1,2],[3,4],[5,6]] = [22, 28]; [[1,2],[3,4]] · [1,1] = [3, 7]; 1-D·1-D = scalar.
    let y = run1(
        &matmul_graph(&[3], &[3, 2]),
        &[
            f32t(&[3], vec![1., 2., 3.]),
            f32t(&[3, 2], vec![1., 2., 3., 4., 5., 6.]),
        ],
    );
    assert_eq!(y.dims(), &[2]);
    assert_close(&f32s(&y), &[22., 28.], 0.0);
    let y = run1(
        &matmul_graph(&[2, 2], &[2]),
        &[
            f32t(&[2, 2], vec![1., 2., 3., 4.]),
            f32t(&[2], vec![1., 1.]),
        ],
    );
    assert_eq!(y.dims(), &[2]);
    assert_close(&f32s(&y), &[3., 7.], 0.0);
    let y = run1(
        &matmul_graph(&[3], &[3]),
        &[f32t(&[3], vec![1., 2., 3.]), f32t(&[3], vec![4., 5., 6.])],
    );
    assert_eq!(y.dims(), &[] as &[usize]);
    assert_close(&f32s(&y), &[32.], 0.0);
}

fn binary_graph(op: Op, a: &[usize], b: &[usize], dt: DType) -> Graph {
    let mut g = Graph::new();
    let av = g.add_input("a", TensorType::new(dt, a.to_vec()));
    let bv = g.add_input("b", TensorType::new(dt, b.to_vec()));
    let y = node(&mut g, op, &[av, bv])[0];
    g.add_output("y", y);
    g
}

#[test]
fn broadcast_add_sub_mul_div() {
    let a = f32t(&[2, 3], vec![1., 2., 3., 4., 5., 6.]);
    let b = f32t(&[3], vec![10., 20., 30.]);
    let y = run1(
        &binary_graph(
            Op::Add {
                act: Activation::None,
            },
            &[2, 3],
            &[3],
            DType::F32,
        ),
        &[a.clone(), b.clone()],
    );
    assert_close(&f32s(&y), &[11., 22., 33., 14., 25., 36.], 0.0);
    // [2,1] - [1,3] → [2,3]
    let c = f32t(&[2, 1], vec![1., 2.]);
    let d = f32t(&[1, 3], vec![1., 2., 3.]);
    let y = run1(
        &binary_graph(Op::Sub, &[2, 1], &[1, 3], DType::F32),
        &[c.clone(), d.clone()],
    );
    assert_eq!(y.dims(), &[2, 3]);
    assert_close(&f32s(&y), &[0., -1., -2., 1., 0., -1.], 0.0);
    let y = run1(
        &binary_graph(Op::Mul, &[2, 1], &[1, 3], DType::F32),
        &[c.clone(), d.clone()],
    );
    assert_close(&f32s(&y), &[1., 2., 3., 2., 4., 6.], 0.0);
    let y = run1(&binary_graph(Op::Div, &[2, 3], &[3], DType::F32), &[a, b]);
    assert_close(&f32s(&y), &[0.1, 0.1, 0.1, 0.4, 0.25, 0.2], 1e-7);
    // Fused relu on add.
    let y = run1(
        &binary_graph(
            Op::Add {
                act: Activation::Relu,
            },
            &[2, 1],
            &[1, 3],
            DType::F32,
        ),
        &[f32t(&[2, 1], vec![-2., 0.]), d],
    );
    assert_close(&f32s(&y), &[0., 0., 1., 1., 2., 3.], 0.0);
}

#[test]
fn sum_of_three_broadcast() {
    let mut g = Graph::new();
    let a = g.add_input("a", TensorType::f32(vec![2, 1]));
    let b = g.add_input("b", TensorType::f32(vec![3]));
    let c = g.add_input("c", TensorType::f32(vec![]));
    let y = node(&mut g, Op::Sum, &[a, b, c])[0];
    g.add_output("y", y);
    let y = run1(
        &g,
        &[
            f32t(&[2, 1], vec![1., 2.]),
            f32t(&[3], vec![10., 20., 30.]),
            f32t(&[], vec![100.]),
        ],
    );
    assert_close(&f32s(&y), &[111., 121., 131., 112., 122., 132.], 0.0);
}

#[test]
fn softmax_rows() {
    let x = f32t(&[2, 3], vec![1., 2., 3., 1., 1., 1.]);
    let y = run1(&unary_graph(Op::Softmax { axis: 1 }, &x), &[x.clone()]);
    let (e1, e2) = ((-2f64).exp(), (-1f64).exp());
    let s = e1 + e2 + 1.0;
    let want = [e1 / s, e2 / s, 1.0 / s, 1. / 3., 1. / 3., 1. / 3.].map(|v| v as f32);
    assert_close(&f32s(&y), &want, 1e-6);
    // Axis 0 of the same tensor: columns [1,1], [2,1], [3,1].
    let y = run1(&unary_graph(Op::Softmax { axis: 0 }, &x), &[x]);
    let sig = |d: f64| (1.0 / (1.0 + (-d).exp())) as f32;
    assert_close(
        &f32s(&y),
        &[0.5, sig(1.0), sig(2.0), 0.5, 1.0 - sig(1.0), 1.0 - sig(2.0)],
        1e-6,
    );
    // Large values do not overflow (max subtracted).
    let x = f32t(&[2], vec![1000., 1000.]);
    assert_close(
        &f32s(&run1(&unary_graph(Op::Softmax { axis: 0 }, &x), &[x])),
        &[0.5, 0.5],
        0.0,
    );
}

#[test]
fn lrn_matches_formula() {
    let xd = [2usize, 5, 2, 3];
    let x = rand_vec(60, 40);
    let (size, alpha, beta, bias) = (3usize, 0.3f32, 0.75f32, 2.0f32);
    let op = Op::Lrn(LrnAttrs {
        size,
        alpha,
        beta,
        bias,
    });
    let y = run1(
        &unary_graph(op, &f32t(&xd, x.clone())),
        &[f32t(&xd, x.clone())],
    );
    let mut want = vec![];
    for i in 0..60 {
        let c = unravel(i, &xd);
        // Window [c - 1, c + 1] for size 3.
        let lo = c[1].saturating_sub(1);
        let hi = (c[1] + 1).min(4);
        let sq: f64 = (lo..=hi)
            .map(|cc| f64::from(x[ravel(&[c[0], cc, c[2], c[3]], &xd)]).powi(2))
            .sum();
        want.push((f64::from(x[i]) / (2.0 + 0.3 / 3.0 * sq).powf(0.75)) as f32);
    }
    assert_close(&f32s(&y), &want, 1e-5);

    // Even size 4: window [c - 1, c + 2].
    let x1 = f32t(&[1, 4, 1, 1], vec![1., 2., 3., 4.]);
    let op = Op::Lrn(LrnAttrs {
        size: 4,
        alpha: 4.0,
        beta: 1.0,
        bias: 1.0,
    });
    let y = run1(&unary_graph(op, &x1), &[x1]);
    // square sums: c0: 1+4+9 = 14, c1: 1+4+9+16 = 30, c2: 4+9+16 = 29, c3: 9+16 = 25.
    assert_close(&f32s(&y), &[1. / 15., 2. / 31., 3. / 30., 4. / 26.], 1e-6);
}

#[test]
fn batch_norm_inference() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32(vec![1, 2, 1, 2]));
    let s = g.add_const(f32t(&[2], vec![2.0, 1.0]));
    let b = g.add_const(f32t(&[2], vec![1.0, 0.0]));
    let m = g.add_const(f32t(&[2], vec![1.0, -1.0]));
    let v = g.add_const(f32t(&[2], vec![4.0, 0.25]));
    let y = node(&mut g, Op::BatchNorm { epsilon: 0.0 }, &[x, s, b, m, v])[0];
    g.add_output("y", y);
    // c0: 2 * (x - 1) / 2 + 1 = x; c1: (x + 1) / 0.5.
    let y = run1(&g, &[f32t(&[1, 2, 1, 2], vec![3., 5., 1., -1.])]);
    assert_close(&f32s(&y), &[3., 5., 4., 0.], 1e-6);
}

#[test]
fn activations() {
    let v = vec![-3.0, -1.0, 0.0, 0.5, 4.0];
    let x = f32t(&[5], v.clone());
    let go = |op: Op| f32s(&run1(&unary_graph(op, &x), &[x.clone()]));
    assert_close(&go(Op::Relu), &[0., 0., 0., 0.5, 4.], 0.0);
    assert_close(
        &go(Op::LeakyRelu { alpha: 0.1 }),
        &[-0.3, -0.1, 0., 0.5, 4.],
        1e-7,
    );
    assert_close(
        &go(Op::Clip {
            min: Some(-1.5),
            max: Some(1.0),
        }),
        &[-1.5, -1., 0., 0.5, 1.],
        0.0,
    );
    assert_close(
        &go(Op::Clip {
            min: None,
            max: Some(0.0),
        }),
        &[-3., -1., 0., 0., 0.],
        0.0,
    );
    // min > max: numpy clip gives max everywhere.
    assert_close(
        &go(Op::Clip {
            min: Some(2.0),
            max: Some(1.0),
        }),
        &[1.; 5],
        0.0,
    );
    let sig: Vec<f32> = v
        .iter()
        .map(|&x: &f32| (1.0 / (1.0 + (-f64::from(x)).exp())) as f32)
        .collect();
    assert_close(&go(Op::Sigmoid), &sig, 1e-6);
    let th: Vec<f32> = v
        .iter()
        .map(|&x: &f32| f64::from(x).tanh() as f32)
        .collect();
    assert_close(&go(Op::Tanh), &th, 1e-6);
    // hard_sigmoid(0.2, 0.5): 0.2x + 0.5 clamped: -0.1→0, 0.3, 0.5, 0.6, 1.3→1.
    assert_close(
        &go(Op::HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        }),
        &[0., 0.3, 0.5, 0.6, 1.],
        1e-6,
    );
    // hard_swish: x * clamp(x/6 + 0.5): -3→0, -1·(1/3), 0, 0.5·(7/12), 4·1.
    assert_close(
        &go(Op::HardSwish),
        &[0., -1. / 3., 0., 0.5 * 7. / 12., 4.],
        1e-6,
    );
    assert!(go(Op::Relu).iter().all(|v| !v.is_nan()));
    let nan = f32t(&[1], vec![f32::NAN]);
    assert!(f32s(&run1(&unary_graph(Op::Relu, &nan), &[nan.clone()]))[0].is_nan());
}

#[test]
fn prelu_slope_broadcast() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32(vec![1, 2, 2]));
    let s = g.add_const(f32t(&[2, 1], vec![0.5, 2.0]));
    let y = node(&mut g, Op::PRelu, &[x, s])[0];
    g.add_output("y", y);
    let y = run1(&g, &[f32t(&[1, 2, 2], vec![-2., 3., -2., 3.])]);
    assert_close(&f32s(&y), &[-1., 3., -4., 3.], 0.0);
}

#[test]
fn reduce_mean_axes_keepdims() {
    let x = f32t(&[2, 3, 2], (0..12).map(|v| v as f32).collect());
    let y = run1(
        &unary_graph(
            Op::ReduceMean {
                axes: vec![1],
                keepdims: true,
            },
            &x,
        ),
        &[x.clone()],
    );
    assert_eq!(y.dims(), &[2, 1, 2]);
    assert_close(&f32s(&y), &[2., 3., 8., 9.], 0.0);
    let y = run1(
        &unary_graph(
            Op::ReduceMean {
                axes: vec![0, 2],
                keepdims: false,
            },
            &x,
        ),
        &[x.clone()],
    );
    assert_eq!(y.dims(), &[3]);
    // (0+1+6+7)/4, (2+3+8+9)/4, (4+5+10+11)/4
    assert_close(&f32s(&y), &[3.5, 5.5, 7.5], 0.0);
}

#[test]
fn data_movement_float() {
    let x = f32t(&[2, 3], vec![1., 2., 3., 4., 5., 6.]);
    let y = run1(
        &unary_graph(Op::Transpose { perm: vec![1, 0] }, &x),
        &[x.clone()],
    );
    assert_eq!(y.dims(), &[3, 2]);
    assert_close(&f32s(&y), &[1., 4., 2., 5., 3., 6.], 0.0);
    // Pad [begin0, begin1, end0, end1] = [1, -1, 0, 1]: one row on top, crop the first
    // column, one column of 9 on the right.
    let y = run1(
        &unary_graph(
            Op::Pad {
                pads: vec![1, -1, 0, 1],
                value: 9.0,
            },
            &x,
        ),
        &[x.clone()],
    );
    assert_eq!(y.dims(), &[3, 3]);
    assert_close(&f32s(&y), &[9., 9., 9., 2., 3., 9., 5., 6., 9.], 0.0);
    let y = run1(&unary_graph(Op::Flatten { axis: 0 }, &x), &[x.clone()]);
    assert_eq!(y.dims(), &[1, 6]);
    let y = run1(
        &unary_graph(Op::Unsqueeze { axes: vec![0, 3] }, &x),
        &[x.clone()],
    );
    assert_eq!(y.dims(), &[1, 2, 3, 1]);
    let mut g = Graph::new();
    let a = g.add_input("a", TensorType::f32(vec![2, 1]));
    let b = g.add_input("b", TensorType::f32(vec![2, 2]));
    let y = node(&mut g, Op::Concat { axis: 1 }, &[a, b])[0];
    g.add_output("y", y);
    let y = run1(
        &g,
        &[
            f32t(&[2, 1], vec![0., 1.]),
            f32t(&[2, 2], vec![7., 8., 9., 10.]),
        ],
    );
    assert_close(&f32s(&y), &[0., 7., 8., 1., 9., 10.], 0.0);
}

#[test]
fn transpose_3d_matches_index_formula() {
    let xd = [2usize, 3, 4];
    let x: Vec<f32> = (0..24).map(|v| v as f32).collect();
    let y = run1(
        &unary_graph(
            Op::Transpose {
                perm: vec![2, 0, 1],
            },
            &f32t(&xd, x.clone()),
        ),
        &[f32t(&xd, x.clone())],
    );
    assert_eq!(y.dims(), &[4, 2, 3]);
    let mut want = vec![];
    for k in 0..4 {
        for i in 0..2 {
            for j in 0..3 {
                want.push(x[ravel(&[i, j, k], &xd)]);
            }
        }
    }
    assert_close(&f32s(&y), &want, 0.0);
}

#[test]
fn intermediate_used_twice_and_as_output() {
    // t = relu(x); y = t + t; outputs (y, t): t must survive its uses.
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32(vec![3]));
    let t = node(&mut g, Op::Relu, &[x])[0];
    let y = node(
        &mut g,
        Op::Add {
            act: Activation::None,
        },
        &[t, t],
    )[0];
    g.add_output("y", y);
    g.add_output("t", t);
    g.add_output("t_again", t);
    let r = run(&g, &[f32t(&[3], vec![-1., 2., 3.])]);
    assert_close(&f32s(&r[0]), &[0., 4., 6.], 0.0);
    assert_close(&f32s(&r[1]), &[0., 2., 3.], 0.0);
    assert_close(&f32s(&r[2]), &[0., 2., 3.], 0.0);
}
