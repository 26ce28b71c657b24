//! Shape and type inference for every op.
//!
//! [`infer`] computes the result types of an op from its operand types. It checks
//! everything it reads (operand counts, ranks, attribute lengths, axis ranges, element
//! counts) and never panics; a failure is `Error::Infer { op, msg }` naming the operand
//! and what was expected.
//!
//! **Results.** Every result an op can have is returned: `max_pool` returns
//! `[y, indices: i64]` (a node may use only the first), `dynamic_quantize` returns
//! `[y: u8, scale: f32[], zero_point: u8[]]` (all with `quant: None`), every other op
//! one result.
//!
//! **Quantization parameters of results** (callers rely on this split):
//! - *Implied* — the result's params are the operand's, and inference returns them:
//!   `identity`, `reshape`, `flatten`, `squeeze`, `unsqueeze`, `transpose`, `pad`,
//!   `max_pool` (result 0), `global_max_pool`, `relu`, `clip`, and `concat` when every
//!   operand has equal params (or, per-axis along the concat axis itself, params of
//!   equal storage, which are concatenated). Per-axis params follow their axis
//!   through the data movement (transpose/squeeze/unsqueeze/reshape remap it; a
//!   size-1 quantized axis that disappears becomes per-tensor); where the quantized
//!   axis cannot survive (a reshape that merges or splits it, padding or pooling
//!   along it) inference fails.
//! - *A choice* — inference returns `quant: None` and the builder supplies the params
//!   (and may then pick any quantized storage type for the result): `quantize`
//!   (dtype `u8` by default), `requantize` (dtype of the operand), and on quantized
//!   operands `conv`, `conv_transpose`, `gemm`, `matmul` (dtype of `x`/`a`), `add`,
//!   `sub`, `mul`, `div`, `sum`, `prelu`, `leaky_relu`, `sigmoid`, `hard_sigmoid`,
//!   `hard_swish`, `tanh`, `average_pool`, `global_average_pool`, `batch_norm`,
//!   `softmax`, `reduce_mean`, `lrn` (dtype of the first operand), and `concat` of
//!   unequal params.
//! - *Raw* — never quantized: `dequantize` (f32), `cast` (`to`), `dynamic_quantize`,
//!   `conv_integer` / `matmul_integer` (i32), `max_pool` indices (i64).
//!
//! **Dtypes.** Float operands of one op must agree in dtype. Quantized operands of
//! the linear ops and of elementwise ops may differ in storage (u8 activations with
//! i8 weights; a u8 + i8 add requantizes both), since their arithmetic is implied by
//! the types; raw (unquantized) operands must agree. Biases of quantized
//! conv/conv_transpose/gemm are raw i32. Whether operands are quantized at all is the
//! verifier's concern ([`crate::verify`]); inference only looks at dtypes and shapes,
//! except where params propagate.
//!
//! Geometry is computed in `i128`, so no attribute value (each at most `usize::MAX`)
//! can overflow it; results are converted back with a range check and element counts
//! are checked against [`crate::MAX_NUMEL`].

use crate::{
    ConvAttrs, ConvTransposeAttrs, DType, Error, GemmAttrs, Op, PoolAttrs, QuantParams, Result,
    Shape, TensorType,
};

/// Inference failures before the op name is attached.
type R<T> = std::result::Result<T, String>;

/// Result types of `op` applied to operands of types `inputs`.
///
/// See the module docs for which results carry quantization parameters.
pub fn infer(op: &Op, inputs: &[&TensorType]) -> Result<Vec<TensorType>> {
    let out = infer_inner(op, inputs).map_err(|msg| Error::Infer { op: op.name(), msg })?;
    for t in &out {
        t.numel().map_err(|e| Error::Infer {
            op: op.name(),
            msg: format!("result {e}"),
        })?;
    }
    Ok(out)
}

fn infer_inner(op: &Op, inputs: &[&TensorType]) -> R<Vec<TensorType>> {
    match op {
        Op::Quantize => {
            let [x] = operands(inputs, ["x"])?;
            if !x.dtype.is_float() {
                return Err(format!("operand 0 (x) must be float, got {}", x.dtype));
            }
            Ok(vec![TensorType::new(DType::U8, x.shape.clone())])
        }
        Op::Dequantize => {
            let [x] = operands(inputs, ["x"])?;
            quantizable(x, 0, "x")?;
            Ok(vec![TensorType::f32(x.shape.clone())])
        }
        Op::Requantize => {
            let [x] = operands(inputs, ["x"])?;
            quantizable(x, 0, "x")?;
            Ok(vec![TensorType::new(x.dtype, x.shape.clone())])
        }
        Op::DynamicQuantize => {
            let [x] = operands(inputs, ["x"])?;
            if x.dtype != DType::F32 {
                return Err(format!("operand 0 (x) must be f32, got {}", x.dtype));
            }
            Ok(vec![
                TensorType::new(DType::U8, x.shape.clone()),
                TensorType::f32(Shape::scalar()),
                TensorType::new(DType::U8, Shape::scalar()),
            ])
        }
        Op::Cast { to } => {
            let [x] = operands(inputs, ["x"])?;
            Ok(vec![TensorType::new(*to, x.shape.clone())])
        }

        Op::Conv(a) => conv(a, inputs, false),
        Op::ConvInteger(a) => conv(a, inputs, true),
        Op::ConvTranspose(a) => conv_transpose(a, inputs),
        Op::Gemm(a) => gemm(a, inputs),
        Op::MatMul { .. } => {
            let [a, b] = operands(inputs, ["a", "b"])?;
            linear_dtypes(a, b, "a", "b")?;
            let shape = matmul_shape(&a.shape, &b.shape)?;
            Ok(vec![TensorType::new(a.dtype, shape)])
        }
        Op::MatMulInteger => matmul_integer(inputs),
        Op::BatchNorm { epsilon } => {
            let [x, scale, bias, mean, var] =
                operands(inputs, ["x", "scale", "bias", "mean", "var"])?;
            if !(epsilon.is_finite() && *epsilon >= 0.0) {
                return Err(format!("epsilon {epsilon} must be finite and >= 0"));
            }
            float_or_quantized(x, 0, "x")?;
            let c = dim(x, 1, 0, "x")?;
            for (i, (p, name)) in [
                (scale, "scale"),
                (bias, "bias"),
                (mean, "mean"),
                (var, "var"),
            ]
            .into_iter()
            .enumerate()
            {
                if !p.dtype.is_float() {
                    return Err(format!(
                        "operand {} ({name}) must be float, got {}",
                        i + 1,
                        p.dtype
                    ));
                }
                if p.shape.dims() != [c] {
                    return Err(format!(
                        "operand {} ({name}) must have shape [{c}] (the channels of x {}), got {}",
                        i + 1,
                        x.shape,
                        p.shape
                    ));
                }
            }
            Ok(vec![TensorType::new(x.dtype, x.shape.clone())])
        }

        Op::Add { .. } | Op::Sub | Op::Mul | Op::Div => {
            let [a, b] = operands(inputs, ["a", "b"])?;
            elementwise(&[a, b])
        }
        Op::Sum => {
            if inputs.is_empty() {
                return Err("expected at least 1 operand, got 0".into());
            }
            elementwise(inputs)
        }
        Op::PRelu => {
            let [x, slope] = operands(inputs, ["x", "slope"])?;
            elementwise_dtypes(&[x, slope])?;
            if !unidirectional(&slope.shape, &x.shape) {
                return Err(format!(
                    "operand 1 (slope) of shape {} is not broadcastable to x's shape {}",
                    slope.shape, x.shape
                ));
            }
            Ok(vec![TensorType::new(x.dtype, x.shape.clone())])
        }
        Op::Relu => {
            let [x] = operands(inputs, ["x"])?;
            not_bool(x, 0, "x")?;
            Ok(vec![(*x).clone()])
        }
        Op::Clip { min, max } => {
            let [x] = operands(inputs, ["x"])?;
            not_bool(x, 0, "x")?;
            if min.is_some_and(f64::is_nan) || max.is_some_and(f64::is_nan) {
                return Err(format!(
                    "bounds must not be NaN, got min {min:?}, max {max:?}"
                ));
            }
            Ok(vec![(*x).clone()])
        }
        Op::LeakyRelu { .. } | Op::Sigmoid | Op::HardSigmoid { .. } | Op::HardSwish | Op::Tanh => {
            let [x] = operands(inputs, ["x"])?;
            float_or_quantized(x, 0, "x")?;
            Ok(vec![TensorType::new(x.dtype, x.shape.clone())])
        }

        Op::MaxPool {
            pool,
            storage_order,
        } => {
            let [x] = operands(inputs, ["x"])?;
            if *storage_order > 1 {
                return Err(format!("storage_order must be 0 or 1, got {storage_order}"));
            }
            not_bool(x, 0, "x")?;
            let shape = pool_shape(pool, x)?;
            let quant = keep_unless_spatial(x, "max_pool")?;
            let indices = TensorType::new(DType::I64, shape.clone());
            Ok(vec![
                TensorType {
                    dtype: x.dtype,
                    shape,
                    quant,
                },
                indices,
            ])
        }
        Op::AveragePool { pool, .. } => {
            let [x] = operands(inputs, ["x"])?;
            float_or_quantized(x, 0, "x")?;
            let shape = pool_shape(pool, x)?;
            Ok(vec![TensorType::new(x.dtype, shape)])
        }
        Op::GlobalAveragePool | Op::GlobalMaxPool => {
            let [x] = operands(inputs, ["x"])?;
            if x.rank() < 3 {
                return Err(format!(
                    "operand 0 (x) must have rank >= 3 ([N, C, spatial..]), got {}",
                    x.shape
                ));
            }
            let mut dims = x.shape.dims().to_vec();
            for d in dims.iter_mut().skip(2) {
                *d = 1;
            }
            if matches!(op, Op::GlobalMaxPool) {
                not_bool(x, 0, "x")?;
                let quant = keep_unless_spatial(x, "global_max_pool")?;
                Ok(vec![TensorType {
                    dtype: x.dtype,
                    shape: Shape(dims),
                    quant,
                }])
            } else {
                float_or_quantized(x, 0, "x")?;
                Ok(vec![TensorType::new(x.dtype, dims)])
            }
        }

        Op::Flatten { axis } => {
            let [x] = operands(inputs, ["x"])?;
            let dims = x.shape.dims();
            let (head, tail) = dims
                .split_at_checked(*axis)
                .ok_or_else(|| format!("axis {axis} out of range for x of rank {}", x.rank()))?;
            let shape = Shape(vec![product(head)?, product(tail)?]);
            let quant = reshape_quant(x, &shape)?;
            Ok(vec![TensorType {
                dtype: x.dtype,
                shape,
                quant,
            }])
        }
        Op::Reshape { shape } => {
            let [x] = operands(inputs, ["x"])?;
            let shape = Shape(shape.clone());
            let (n_in, n_out) = (
                x.numel().map_err(|e| e.to_string())?,
                shape.numel().map_err(|e| e.to_string())?,
            );
            if n_in != n_out {
                return Err(format!(
                    "target shape {shape} has {n_out} elements but x {} has {n_in}",
                    x.shape
                ));
            }
            let quant = reshape_quant(x, &shape)?;
            Ok(vec![TensorType {
                dtype: x.dtype,
                shape,
                quant,
            }])
        }
        Op::Squeeze { axes } => {
            let [x] = operands(inputs, ["x"])?;
            sorted_distinct(axes, x.rank(), "axes")?;
            for &a in axes {
                if x.shape.dims().get(a) != Some(&1) {
                    return Err(format!(
                        "axis {a} of x {} has size {}, not 1",
                        x.shape, x.shape.0[a]
                    ));
                }
            }
            let dims: Vec<usize> = x
                .shape
                .dims()
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect();
            let quant = remap_quant(&x.quant, |a| {
                if axes.contains(&a) {
                    Ok(None)
                } else {
                    Ok(Some(a - axes.iter().filter(|&&s| s < a).count()))
                }
            })?;
            Ok(vec![TensorType {
                dtype: x.dtype,
                shape: Shape(dims),
                quant,
            }])
        }
        Op::Unsqueeze { axes } => {
            let [x] = operands(inputs, ["x"])?;
            let rank = x.rank().checked_add(axes.len()).ok_or("too many axes")?;
            sorted_distinct(axes, rank, "axes (of the result)")?;
            let mut dims = Vec::with_capacity(rank);
            let mut old = x.shape.dims().iter();
            // `old_pos[i]` = result position of operand axis `i`.
            let mut old_pos = Vec::with_capacity(x.rank());
            for r in 0..rank {
                if axes.contains(&r) {
                    dims.push(1);
                } else {
                    dims.push(*old.next().ok_or("invariant: rank arithmetic")?);
                    old_pos.push(r);
                }
            }
            let quant = remap_quant(&x.quant, |a| {
                old_pos
                    .get(a)
                    .copied()
                    .map(Some)
                    .ok_or_else(|| format!("quantized axis {a} out of range"))
            })?;
            Ok(vec![TensorType {
                dtype: x.dtype,
                shape: Shape(dims),
                quant,
            }])
        }
        Op::Transpose { perm } => {
            let [x] = operands(inputs, ["x"])?;
            if perm.len() != x.rank() {
                return Err(format!(
                    "perm {perm:?} has length {} but x {} has rank {}",
                    perm.len(),
                    x.shape,
                    x.rank()
                ));
            }
            let mut seen = vec![false; perm.len()];
            for &p in perm {
                match seen.get_mut(p) {
                    Some(s) if !*s => *s = true,
                    _ => {
                        return Err(format!(
                            "perm {perm:?} is not a permutation of 0..{}",
                            perm.len()
                        ))
                    }
                }
            }
            let dims: Vec<usize> = perm.iter().map(|&p| x.shape.0[p]).collect();
            let quant = remap_quant(&x.quant, |a| {
                perm.iter()
                    .position(|&p| p == a)
                    .map(Some)
                    .ok_or_else(|| format!("quantized axis {a} out of range"))
            })?;
            Ok(vec![TensorType {
                dtype: x.dtype,
                shape: Shape(dims),
                quant,
            }])
        }
        Op::Concat { axis } => concat(*axis, inputs),
        Op::Pad { pads, value } => {
            let [x] = operands(inputs, ["x"])?;
            if value.is_nan() && !x.dtype.is_float() {
                return Err("pad value NaN on a non-float tensor".into());
            }
            let r = x.rank();
            if pads.len() != 2 * r {
                return Err(format!(
                    "pads has length {} but x {} needs 2 * {r}",
                    pads.len(),
                    x.shape
                ));
            }
            let mut dims = Vec::with_capacity(r);
            for (i, &d) in x.shape.dims().iter().enumerate() {
                let (b, e) = (pads[i], pads[i + r]);
                let n = d as i128 + i128::from(b) + i128::from(e);
                if n < 0 {
                    return Err(format!(
                        "axis {i}: size {d} with pads ({b}, {e}) would be {n} (cropped below zero)"
                    ));
                }
                dims.push(to_usize(n, "padded size")?);
            }
            let quant = match &x.quant {
                Some(q) => match q.axis {
                    Some(a)
                        if pads.get(a).is_some_and(|&p| p != 0)
                            || pads.get(a + r).is_some_and(|&p| p != 0) =>
                    {
                        return Err(format!("pads along the per-axis quantized axis {a} of x"));
                    }
                    _ => Some(q.clone()),
                },
                None => None,
            };
            Ok(vec![TensorType {
                dtype: x.dtype,
                shape: Shape(dims),
                quant,
            }])
        }
        Op::Softmax { axis } => {
            let [x] = operands(inputs, ["x"])?;
            float_or_quantized(x, 0, "x")?;
            if *axis >= x.rank() {
                return Err(format!(
                    "axis {axis} out of range for x {} of rank {}",
                    x.shape,
                    x.rank()
                ));
            }
            Ok(vec![TensorType::new(x.dtype, x.shape.clone())])
        }
        Op::ReduceMean { axes, keepdims } => {
            let [x] = operands(inputs, ["x"])?;
            not_bool(x, 0, "x")?;
            sorted_distinct(axes, x.rank(), "axes")?;
            let mut dims = Vec::with_capacity(x.rank());
            for (i, &d) in x.shape.dims().iter().enumerate() {
                if !axes.contains(&i) {
                    dims.push(d);
                } else if *keepdims {
                    dims.push(1);
                }
            }
            Ok(vec![TensorType::new(x.dtype, dims)])
        }
        Op::Lrn(a) => {
            let [x] = operands(inputs, ["x"])?;
            float_or_quantized(x, 0, "x")?;
            if a.size == 0 {
                return Err("size must be >= 1".into());
            }
            if x.rank() < 2 {
                return Err(format!(
                    "operand 0 (x) must have rank >= 2 ([N, C, ..]), got {}",
                    x.shape
                ));
            }
            Ok(vec![TensorType::new(x.dtype, x.shape.clone())])
        }
        Op::Identity => {
            let [x] = operands(inputs, ["x"])?;
            Ok(vec![(*x).clone()])
        }
    }
}

// ---------------------------------------------------------------------------------
// operand checks

/// Exactly `N` operands, named for messages.
fn operands<'a, const N: usize>(
    inputs: &[&'a TensorType],
    names: [&str; N],
) -> R<[&'a TensorType; N]> {
    <[&TensorType; N]>::try_from(inputs).map_err(|_| {
        format!(
            "expected {N} operands ({}), got {}",
            names.join(", "),
            inputs.len()
        )
    })
}

fn dim(t: &TensorType, axis: usize, i: usize, name: &str) -> R<usize> {
    t.shape
        .dims()
        .get(axis)
        .copied()
        .ok_or_else(|| format!("operand {i} ({name}) {} has no axis {axis}", t.shape))
}

fn quantizable(t: &TensorType, i: usize, name: &str) -> R<()> {
    if t.dtype.qtype().is_none() {
        return Err(format!("operand {i} ({name}) must have a quantized storage type (u8, i8, u16, i16, i32), got {}", t.dtype));
    }
    Ok(())
}

fn float_or_quantized(t: &TensorType, i: usize, name: &str) -> R<()> {
    if !(t.dtype.is_float() || t.is_quantized()) {
        return Err(format!(
            "operand {i} ({name}) must be float or quantized, got raw {}",
            t.dtype
        ));
    }
    Ok(())
}

fn not_bool(t: &TensorType, i: usize, name: &str) -> R<()> {
    if t.dtype == DType::Bool {
        return Err(format!("operand {i} ({name}) must be numeric, got bool"));
    }
    Ok(())
}

/// Dtypes of the two main operands of a linear op: equal, or both integer when both
/// are quantized (their storage may differ, e.g. u8 x i8).
fn linear_dtypes(a: &TensorType, b: &TensorType, an: &str, bn: &str) -> R<()> {
    not_bool(a, 0, an)?;
    if a.dtype == b.dtype || (a.is_quantized() && b.is_quantized()) {
        Ok(())
    } else {
        Err(format!(
            "operand 1 ({bn}) has dtype {} but operand 0 ({an}) has {} (only quantized operands may differ)",
            b.dtype, a.dtype
        ))
    }
}

/// Elementwise operands: not bool, and one dtype unless all are quantized.
fn elementwise_dtypes(ts: &[&TensorType]) -> R<()> {
    let Some(first) = ts.first() else {
        return Err("expected at least 1 operand".into());
    };
    not_bool(first, 0, "x0")?;
    if ts.iter().all(|t| t.is_quantized()) {
        return Ok(());
    }
    for (i, t) in ts.iter().enumerate().skip(1) {
        if t.dtype != first.dtype {
            return Err(format!(
                "operand {i} has dtype {} but operand 0 has {} (only quantized operands may differ)",
                t.dtype, first.dtype
            ));
        }
    }
    Ok(())
}

fn elementwise(ts: &[&TensorType]) -> R<Vec<TensorType>> {
    elementwise_dtypes(ts)?;
    let shapes: Vec<&Shape> = ts.iter().map(|t| &t.shape).collect();
    let shape = broadcast_r(&shapes)?;
    let dtype = ts
        .first()
        .map(|t| t.dtype)
        .ok_or("expected at least 1 operand")?;
    Ok(vec![TensorType::new(dtype, shape)])
}

/// `axes` strictly increasing and `< rank`.
fn sorted_distinct(axes: &[usize], rank: usize, what: &str) -> R<()> {
    for (i, &a) in axes.iter().enumerate() {
        if a >= rank {
            return Err(format!(
                "{what} {axes:?}: axis {a} out of range for rank {rank}"
            ));
        }
        if i > 0 && axes[i - 1] >= a {
            return Err(format!("{what} {axes:?} must be sorted and distinct"));
        }
    }
    Ok(())
}

fn to_usize(v: i128, what: &str) -> R<usize> {
    usize::try_from(v).map_err(|_| format!("{what} {v} out of range"))
}

fn product(dims: &[usize]) -> R<usize> {
    Shape(dims.to_vec()).numel().map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------
// broadcasting and matmul

/// The multidirectional (numpy) broadcast of `shapes`: the result shape of an
/// elementwise op on them.
pub fn broadcast(shapes: &[&Shape]) -> Result<Shape> {
    broadcast_r(shapes).map_err(|msg| Error::Infer {
        op: "broadcast",
        msg,
    })
}

fn broadcast_r(shapes: &[&Shape]) -> R<Shape> {
    let rank = shapes.iter().map(|s| s.rank()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for (k, o) in out.iter_mut().enumerate() {
        // `k`-th result axis; operand axes are right-aligned.
        let from_end = rank - k;
        let mut target: Option<usize> = None;
        for s in shapes {
            let Some(i) = s.rank().checked_sub(from_end) else {
                continue;
            };
            let d = s.0[i];
            if d == 1 {
                continue;
            }
            match target {
                None => target = Some(d),
                Some(t) if t == d => {}
                Some(t) => {
                    let list: Vec<String> = shapes.iter().map(|s| s.to_string()).collect();
                    return Err(format!(
                        "shapes {} do not broadcast: result axis {k} has sizes {t} and {d}",
                        list.join(", ")
                    ));
                }
            }
        }
        *o = target.unwrap_or(1);
    }
    Ok(Shape(out))
}

/// Whether `from` broadcasts to exactly `to` (ONNX unidirectional broadcasting).
pub fn unidirectional(from: &Shape, to: &Shape) -> bool {
    let Some(off) = to.rank().checked_sub(from.rank()) else {
        return false;
    };
    from.dims()
        .iter()
        .enumerate()
        .all(|(i, &d)| d == 1 || Some(&d) == to.dims().get(i + off))
}

/// numpy matmul: 1-D operands are promoted (a to `[1, K]`, b to `[K, 1]`) and the
/// promoted axis removed from the result; batch dims broadcast.
fn matmul_shape(a: &Shape, b: &Shape) -> R<Shape> {
    if a.rank() == 0 || b.rank() == 0 {
        return Err(format!("operands must have rank >= 1, got a {a} and b {b}"));
    }
    let a2: Vec<usize> = if a.rank() == 1 {
        vec![1, a.0[0]]
    } else {
        a.0.clone()
    };
    let b2: Vec<usize> = if b.rank() == 1 {
        vec![b.0[0], 1]
    } else {
        b.0.clone()
    };
    let (ra, rb) = (a2.len(), b2.len());
    let (m, ka) = (a2[ra - 2], a2[ra - 1]);
    let (kb, n) = (b2[rb - 2], b2[rb - 1]);
    if ka != kb {
        return Err(format!(
            "inner dims differ: a {a} has K = {ka}, b {b} has K = {kb}"
        ));
    }
    let batch = broadcast_r(&[&Shape(a2[..ra - 2].to_vec()), &Shape(b2[..rb - 2].to_vec())])
        .map_err(|e| format!("batch dims: {e}"))?;
    let mut dims = batch.0;
    if a.rank() > 1 {
        dims.push(m);
    }
    if b.rank() > 1 {
        dims.push(n);
    }
    Ok(Shape(dims))
}

fn gemm(attrs: &GemmAttrs, inputs: &[&TensorType]) -> R<Vec<TensorType>> {
    let (a, b, c) = match inputs {
        [a, b] => (*a, *b, None),
        [a, b, c] => (*a, *b, Some(*c)),
        _ => {
            return Err(format!(
                "expected 2 or 3 operands (a, b, [c]), got {}",
                inputs.len()
            ))
        }
    };
    linear_dtypes(a, b, "a", "b")?;
    if a.rank() != 2 || b.rank() != 2 {
        return Err(format!(
            "a and b must be 2-D, got a {} and b {}",
            a.shape, b.shape
        ));
    }
    let (m, ka) = if attrs.trans_a {
        (a.shape.0[1], a.shape.0[0])
    } else {
        (a.shape.0[0], a.shape.0[1])
    };
    let (kb, n) = if attrs.trans_b {
        (b.shape.0[1], b.shape.0[0])
    } else {
        (b.shape.0[0], b.shape.0[1])
    };
    if ka != kb {
        return Err(format!(
            "inner dims differ: op(a) is [{m},{ka}] (a {}, trans_a={}), op(b) is [{kb},{n}] (b {}, trans_b={})",
            a.shape, attrs.trans_a, b.shape, attrs.trans_b
        ));
    }
    let out = Shape(vec![m, n]);
    if let Some(c) = c {
        bias_dtype(a, c, 2, "c")?;
        if !unidirectional(&c.shape, &out) {
            return Err(format!(
                "operand 2 (c) of shape {} is not broadcastable to the result [{m},{n}]",
                c.shape
            ));
        }
    }
    Ok(vec![TensorType::new(a.dtype, out)])
}

/// A bias is the operand's float dtype, or raw i32 when the op is quantized.
fn bias_dtype(x: &TensorType, b: &TensorType, i: usize, name: &str) -> R<()> {
    let want = if x.dtype.is_float() {
        x.dtype
    } else {
        DType::I32
    };
    if b.dtype != want {
        return Err(format!(
            "operand {i} ({name}) must be {want}, got {}",
            b.dtype
        ));
    }
    Ok(())
}

fn matmul_integer(inputs: &[&TensorType]) -> R<Vec<TensorType>> {
    let [a, b, azp, bzp] = operands(inputs, ["a", "b", "a_zero_point", "b_zero_point"])?;
    for (i, (t, name)) in [(a, "a"), (b, "b")].into_iter().enumerate() {
        if !matches!(t.dtype, DType::U8 | DType::I8) {
            return Err(format!(
                "operand {i} ({name}) must be u8 or i8, got {}",
                t.dtype
            ));
        }
    }
    let shape = matmul_shape(&a.shape, &b.shape)?;
    // Per-row a zero points (length M) and per-column b zero points (length N) are allowed.
    let m = if a.rank() >= 2 {
        a.shape.0[a.rank() - 2]
    } else {
        1
    };
    let n = if b.rank() >= 2 {
        b.shape.0[b.rank() - 1]
    } else {
        1
    };
    zero_point(azp, a, 2, "a_zero_point", m)?;
    zero_point(bzp, b, 3, "b_zero_point", n)?;
    Ok(vec![TensorType::new(DType::I32, shape)])
}

/// A zero-point operand: dtype of its data operand, a scalar / one element, or 1-D of `per`.
fn zero_point(zp: &TensorType, data: &TensorType, i: usize, name: &str, per: usize) -> R<()> {
    if zp.dtype != data.dtype {
        return Err(format!(
            "operand {i} ({name}) must be {} like its data, got {}",
            data.dtype, zp.dtype
        ));
    }
    let ok = match zp.shape.dims() {
        [] | [1] => true,
        [d] => *d == per,
        _ => false,
    };
    if !ok {
        return Err(format!(
            "operand {i} ({name}) must be a scalar or 1-D of size 1 or {per}, got {}",
            zp.shape
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// convolution and pooling

/// A window geometry (conv or pool) over `k` spatial dims.
struct Window<'a> {
    kernel: &'a [usize],
    strides: &'a [usize],
    dilations: &'a [usize],
    pads: &'a [usize],
}

impl Window<'_> {
    /// Lengths match `k`, kernel/strides/dilations >= 1. Indexing below relies on it.
    fn check(&self, k: usize) -> R<()> {
        for (what, v) in [
            ("kernel", self.kernel),
            ("strides", self.strides),
            ("dilations", self.dilations),
        ] {
            if v.len() != k {
                return Err(format!(
                    "{what} {v:?} has length {} but there are {k} spatial dims",
                    v.len()
                ));
            }
            if v.contains(&0) {
                return Err(format!("{what} {v:?} must be >= 1"));
            }
        }
        if self.pads.len() != 2 * k {
            return Err(format!(
                "pads {:?} has length {} but needs 2 * {k} (begins, then ends)",
                self.pads,
                self.pads.len()
            ));
        }
        Ok(())
    }

    /// Output size of spatial axis `i` of a conv or pool. `ceil` rounds up, dropping a
    /// last window that would start in the end padding (ONNX).
    fn out(&self, i: usize, input: usize, ceil: bool) -> R<usize> {
        let k = self.kernel.len();
        let input = input as i128;
        let (kk, s, d) = (
            self.kernel[i] as i128,
            self.strides[i] as i128,
            self.dilations[i] as i128,
        );
        let (pb, pe) = (self.pads[i] as i128, self.pads[i + k] as i128);
        let eff = (kk - 1) * d + 1;
        let num = input + pb + pe - eff;
        if num < 0 {
            return Err(format!(
                "spatial axis {i}: padded input size {} is smaller than the dilated kernel {eff}",
                input + pb + pe
            ));
        }
        let mut out = if ceil {
            (num + s - 1) / s + 1
        } else {
            num / s + 1
        };
        if ceil && (out - 1) * s >= input + pb {
            out -= 1;
        }
        to_usize(out, "output size")
    }
}

fn pool_shape(p: &PoolAttrs, x: &TensorType) -> R<Shape> {
    if x.rank() < 3 {
        return Err(format!(
            "operand 0 (x) must have rank >= 3 ([N, C, spatial..]), got {}",
            x.shape
        ));
    }
    let k = x.rank() - 2;
    let win = Window {
        kernel: &p.kernel,
        strides: &p.strides,
        dilations: &p.dilations,
        pads: &p.pads,
    };
    win.check(k)?;
    let mut dims = x.shape.0[..2].to_vec();
    for (i, &input) in x.shape.0[2..].iter().enumerate() {
        dims.push(win.out(i, input, p.ceil_mode)?);
    }
    Ok(Shape(dims))
}

fn conv(a: &ConvAttrs, inputs: &[&TensorType], integer: bool) -> R<Vec<TensorType>> {
    let (x, w, b) = if integer {
        let [x, w, xzp, wzp] = operands(inputs, ["x", "w", "x_zero_point", "w_zero_point"])?;
        for (i, (t, name)) in [(x, "x"), (w, "w")].into_iter().enumerate() {
            if !matches!(t.dtype, DType::U8 | DType::I8) {
                return Err(format!(
                    "operand {i} ({name}) must be u8 or i8, got {}",
                    t.dtype
                ));
            }
        }
        zero_point(xzp, x, 2, "x_zero_point", 1)?;
        zero_point(wzp, w, 3, "w_zero_point", dim(w, 0, 1, "w")?)?;
        (x, w, None)
    } else {
        match inputs {
            [x, w] => (*x, *w, None),
            [x, w, b] => (*x, *w, Some(*b)),
            _ => {
                return Err(format!(
                    "expected 2 or 3 operands (x, w, [b]), got {}",
                    inputs.len()
                ))
            }
        }
    };
    if !integer {
        linear_dtypes(x, w, "x", "w")?;
    }
    if x.rank() < 3 {
        return Err(format!(
            "operand 0 (x) must have rank >= 3 ([N, C, spatial..]), got {}",
            x.shape
        ));
    }
    if w.rank() != x.rank() {
        return Err(format!(
            "operand 1 (w) {} must have the rank of x {} ([M, C/group, k..])",
            w.shape, x.shape
        ));
    }
    let k = x.rank() - 2;
    let win = Window {
        kernel: &a.kernel,
        strides: &a.strides,
        dilations: &a.dilations,
        pads: &a.pads,
    };
    win.check(k)?;
    let (n, c) = (x.shape.0[0], x.shape.0[1]);
    let (m, cg) = (w.shape.0[0], w.shape.0[1]);
    let g = a.group;
    if g == 0 || c % g != 0 || m % g != 0 {
        return Err(format!(
            "group {g} must be >= 1 and divide both x's channels {c} and w's filters {m}"
        ));
    }
    if cg.checked_mul(g) != Some(c) {
        return Err(format!(
            "w {} has {cg} channels per group but x has {c} channels in {g} groups",
            w.shape
        ));
    }
    if w.shape.0[2..] != a.kernel[..] {
        return Err(format!(
            "w {} spatial dims differ from kernel {:?}",
            w.shape, a.kernel
        ));
    }
    if let Some(b) = b {
        bias_dtype(x, b, 2, "b")?;
        if b.shape.dims() != [m] {
            return Err(format!(
                "operand 2 (b) must have shape [{m}] (w's filters), got {}",
                b.shape
            ));
        }
    }
    let mut dims = vec![n, m];
    for (i, &input) in x.shape.0[2..].iter().enumerate() {
        dims.push(win.out(i, input, false)?);
    }
    let dtype = if integer { DType::I32 } else { x.dtype };
    Ok(vec![TensorType::new(dtype, dims)])
}

fn conv_transpose(a: &ConvTransposeAttrs, inputs: &[&TensorType]) -> R<Vec<TensorType>> {
    let (x, w, b) = match inputs {
        [x, w] => (*x, *w, None),
        [x, w, b] => (*x, *w, Some(*b)),
        _ => {
            return Err(format!(
                "expected 2 or 3 operands (x, w, [b]), got {}",
                inputs.len()
            ))
        }
    };
    linear_dtypes(x, w, "x", "w")?;
    if x.rank() < 3 {
        return Err(format!(
            "operand 0 (x) must have rank >= 3 ([N, C, spatial..]), got {}",
            x.shape
        ));
    }
    if w.rank() != x.rank() {
        return Err(format!(
            "operand 1 (w) {} must have the rank of x {} ([C, M/group, k..])",
            w.shape, x.shape
        ));
    }
    let k = x.rank() - 2;
    Window {
        kernel: &a.kernel,
        strides: &a.strides,
        dilations: &a.dilations,
        pads: &a.pads,
    }
    .check(k)?;
    if a.output_padding.len() != k {
        return Err(format!(
            "output_padding {:?} has length {} but there are {k} spatial dims",
            a.output_padding,
            a.output_padding.len()
        ));
    }
    let (n, c) = (x.shape.0[0], x.shape.0[1]);
    let g = a.group;
    if g == 0 || c % g != 0 {
        return Err(format!(
            "group {g} must be >= 1 and divide x's channels {c}"
        ));
    }
    if w.shape.0[0] != c {
        return Err(format!(
            "w {} must have x's {c} channels in axis 0",
            w.shape
        ));
    }
    if w.shape.0[2..] != a.kernel[..] {
        return Err(format!(
            "w {} spatial dims differ from kernel {:?}",
            w.shape, a.kernel
        ));
    }
    let m = w.shape.0[1]
        .checked_mul(g)
        .ok_or("output channels overflow")?;
    if let Some(b) = b {
        bias_dtype(x, b, 2, "b")?;
        if b.shape.dims() != [m] {
            return Err(format!(
                "operand 2 (b) must have shape [{m}] (output channels), got {}",
                b.shape
            ));
        }
    }
    let mut dims = vec![n, m];
    for i in 0..k {
        let input = x.shape.0[i + 2] as i128;
        if input == 0 {
            return Err(format!("spatial axis {i} of x {} is empty", x.shape));
        }
        let (kk, s, d) = (
            a.kernel[i] as i128,
            a.strides[i] as i128,
            a.dilations[i] as i128,
        );
        let (pb, pe, op) = (
            a.pads[i] as i128,
            a.pads[i + k] as i128,
            a.output_padding[i] as i128,
        );
        let out = s * (input - 1) + op + (kk - 1) * d + 1 - pb - pe;
        if out < 0 {
            return Err(format!(
                "spatial axis {i}: pads ({pb}, {pe}) crop the output to {out}"
            ));
        }
        dims.push(to_usize(out, "output size")?);
    }
    Ok(vec![TensorType::new(x.dtype, dims)])
}

// ---------------------------------------------------------------------------------
// concat and quantization-parameter propagation

fn concat(axis: usize, inputs: &[&TensorType]) -> R<Vec<TensorType>> {
    let Some(first) = inputs.first() else {
        return Err("expected at least 1 operand, got 0".into());
    };
    if axis >= first.rank() {
        return Err(format!(
            "axis {axis} out of range for operand 0 {} of rank {}",
            first.shape,
            first.rank()
        ));
    }
    let mut total: usize = 0;
    for (i, t) in inputs.iter().enumerate() {
        if t.dtype != first.dtype {
            return Err(format!(
                "operand {i} has dtype {} but operand 0 has {}",
                t.dtype, first.dtype
            ));
        }
        let same_rest = t.rank() == first.rank()
            && t.shape
                .dims()
                .iter()
                .zip(first.shape.dims())
                .enumerate()
                .all(|(j, (a, b))| j == axis || a == b);
        if !same_rest {
            return Err(format!(
                "operand {i} {} differs from operand 0 {} outside axis {axis}",
                t.shape, first.shape
            ));
        }
        total = total
            .checked_add(t.shape.0[axis])
            .ok_or("concatenated size overflows")?;
    }
    let mut dims = first.shape.0.clone();
    dims[axis] = total;
    let quant = concat_quant(axis, inputs);
    Ok(vec![TensorType {
        dtype: first.dtype,
        shape: Shape(dims),
        quant,
    }])
}

/// Equal params propagate; per-axis params along the concat axis itself concatenate
/// (when they agree in storage); anything else is a choice (`None`).
fn concat_quant(axis: usize, inputs: &[&TensorType]) -> Option<QuantParams> {
    let qs: Vec<&QuantParams> = inputs
        .iter()
        .map(|t| t.quant.as_ref())
        .collect::<Option<_>>()?;
    let first = *qs.first()?;
    if first.axis == Some(axis) {
        if qs
            .iter()
            .all(|q| q.axis == first.axis && q.storage == first.storage)
        {
            let mut out = QuantParams::per_axis(first.storage, axis, Vec::new(), Vec::new());
            for q in &qs {
                out.scales.extend_from_slice(&q.scales);
                out.zero_points.extend_from_slice(&q.zero_points);
            }
            return Some(out);
        }
        return None;
    }
    qs.iter().all(|q| *q == first).then(|| first.clone())
}

/// Params with their axis moved by `f` (`Ok(None)`: the axis is gone, which only a
/// size-1 axis may be, and the params become per-tensor).
fn remap_quant(
    q: &Option<QuantParams>,
    f: impl Fn(usize) -> R<Option<usize>>,
) -> R<Option<QuantParams>> {
    let Some(q) = q else { return Ok(None) };
    let Some(a) = q.axis else {
        return Ok(Some(q.clone()));
    };
    let mut q = q.clone();
    match f(a)? {
        Some(b) => q.axis = Some(b),
        None => {
            if q.scales.len() != 1 || q.zero_points.len() != 1 {
                return Err(format!(
                    "quantized axis {a} is removed but has {} scales",
                    q.scales.len()
                ));
            }
            q.axis = None;
        }
    }
    Ok(Some(q))
}

/// Params of a reshape: per-tensor params propagate; per-axis params follow their
/// axis when the result has an axis of the same size at the same row-major offset.
fn reshape_quant(x: &TensorType, out: &Shape) -> R<Option<QuantParams>> {
    remap_quant(&x.quant, |a| {
        let d = *x
            .shape
            .dims()
            .get(a)
            .ok_or_else(|| format!("quantized axis {a} out of range for x {}", x.shape))?;
        if d == 1 {
            return Ok(None);
        }
        let prefix = product(&x.shape.0[..a])?;
        let mut p = 1usize;
        for (b, &od) in out.dims().iter().enumerate() {
            if p == prefix && od == d {
                return Ok(Some(b));
            }
            p = p.saturating_mul(od);
        }
        Err(format!(
            "the per-axis quantized axis {a} of x {} does not survive the reshape to {out}",
            x.shape
        ))
    })
}

/// Params of a pool result: kept, unless per-axis along a pooled (spatial) axis.
fn keep_unless_spatial(x: &TensorType, what: &str) -> R<Option<QuantParams>> {
    match &x.quant {
        Some(q) if q.axis.is_some_and(|a| a >= 2) => Err(format!(
            "{what} over the per-axis quantized spatial axis {:?}",
            q.axis
        )),
        q => Ok(q.clone()),
    }
}
