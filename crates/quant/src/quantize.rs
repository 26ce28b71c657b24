//! Calibration and Q/DQ insertion.
//!
//! [`quantize`] runs, in order:
//! 1. qc's default pipeline on a copy of the float graph (BatchNorm folded into conv,
//!    relu/clip fused), unless [`QuantizeOptions::optimize`] is off;
//! 2. cross-layer equalization ([`crate::cle`]) when asked;
//! 3. calibration: a copy of the graph with every observed activation added as an
//!    extra graph output runs once per sample through the [`Executor`], feeding one
//!    [`Observer`] per activation;
//! 4. parameter choice and Q/DQ insertion (see [`Quantized::qdq`]);
//! 5. bias correction when asked.
//!
//! **What is quantized.** Every f32 graph input and every f32 node result (the
//! *activations*) gets a `quantize → dequantize` pair right after its definition, with
//! parameters from its observed range. Data-movement ops whose output values are a
//! subset of their input's (`reshape`, `flatten`, `squeeze`, `unsqueeze`, `transpose`,
//! `identity`, `max_pool`, `global_max_pool`, `pad` by 0) reuse their operand's
//! parameters, so their Q/DQ pairs cancel (as onnxruntime and TFLite require). A conv
//! or gemm with a fused relu is quantized after the activation (its range is then
//! `>= 0`), as onnxruntime does. Constants: the weights of `conv` (axis 0),
//! `conv_transpose` (axis 1, group 1), `gemm` (axis 0 with `transB`, else 1) and a
//! constant 2-D `matmul` operand (axis 1) are symmetric i8 per channel (or per tensor);
//! biases of conv/conv_transpose/gemm are i32 with scale `s_x * s_w[c]` and zero
//! point 0; other f32 constants of arithmetic ops are symmetric i8 per tensor;
//! `batch_norm` parameters stay float.
//!
//! **Invariants.** The QDQ graph computes the same function as the float graph up to
//! quantization; it passes the IR verifier; its non-Q/DQ nodes are the float graph's
//! nodes in the same order with the same names, ops and result types. No bias
//! quantizes out of the int32 range: a weight scale too small for its bias is widened
//! (see [`BiasOverflow`]) before the weights are quantized.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qc_ir::{
    Activation, DType, Graph, NodeId, Op, QType, QuantParams, Tensor, TensorData, TensorType,
    ValueDef, ValueId,
};

use crate::observer::{Method, Observer, Scheme};
use crate::{Error, Executor, Result};

/// Options of [`quantize`].
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizeOptions {
    /// How activation ranges are chosen (weights always use their exact range).
    pub method: Method,
    /// Per-channel weight scales (else one per tensor).
    pub per_channel: bool,
    /// Activation storage: `U8` or `I8`.
    pub activations: QType,
    /// Symmetric activations (zero point 0 for i8, 128 for u8).
    pub symmetric_activations: bool,
    /// Power-of-two scales everywhere (weights, activations, hence biases), so every
    /// requantization is a shift. Symmetric, except one-sided activations (`>= 0`)
    /// when `symmetric_activations` is off: their zero point is the storage minimum
    /// (see [`Scheme::params`]).
    pub power_of_two: bool,
    /// Node names (or graph input names) whose result is quantized as symmetric i16.
    pub int16: Vec<String>,
    /// Node names whose results stay float (no Q/DQ after them).
    pub exclude: Vec<String>,
    /// Cross-layer equalization before calibration.
    pub cle: bool,
    /// Bias correction after quantization (one more pass over the samples).
    pub bias_correction: bool,
    /// Run qc's default pass pipeline on the float graph first.
    pub optimize: bool,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        QuantizeOptions {
            method: Method::MinMax,
            per_channel: false,
            activations: QType::U8,
            symmetric_activations: false,
            power_of_two: false,
            int16: Vec::new(),
            exclude: Vec::new(),
            cle: false,
            bias_correction: false,
            optimize: true,
        }
    }
}

/// One quantized activation, for diagnostics.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// The defining node's name (or the graph input's).
    pub name: String,
    /// The defining op (`input` for graph inputs).
    pub op: &'static str,
    /// The activation in [`Quantized::float`].
    pub float: ValueId,
    /// Its quantized-then-dequantized counterpart in [`Quantized::qdq`].
    pub quant: ValueId,
    pub params: QuantParams,
}

/// A bias that would not fit int32 with the calibrated scales, and the fix applied.
#[derive(Clone, Debug, PartialEq)]
pub struct BiasOverflow {
    pub node: String,
    pub channel: usize,
    pub bias: f32,
    /// `s_x * s_w` before and after widening the weight scale.
    pub old_scale: f32,
    pub new_scale: f32,
}

/// The shift bias correction applied to one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct BiasCorrection {
    pub node: String,
    /// Mean over channels of `|mean(float - quantized)|` of the pre-activation output,
    /// before the correction.
    pub mean_abs_error: f64,
}

/// What [`quantize`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuantReport {
    /// One line per thing a user should know (bias overflows, ops left float).
    pub warnings: Vec<String>,
    pub bias_overflows: Vec<BiasOverflow>,
    pub cle: Option<crate::CleReport>,
    pub bias_corrections: Vec<BiasCorrection>,
    pub samples: usize,
    /// Wall time of the calibration runs.
    pub calibration_time: Duration,
}

/// The result of [`quantize`].
#[derive(Clone, Debug)]
pub struct Quantized {
    /// The float graph that was calibrated (after the pipeline and CLE).
    pub float: Graph,
    /// The QDQ graph: float inputs and outputs, `quantize → dequantize` pairs on
    /// activations, quantized constants behind `dequantize`.
    pub qdq: Graph,
    /// Every quantized activation, in graph order.
    pub layers: Vec<Layer>,
    pub report: QuantReport,
}

/// Quantize a float graph (see the module docs). `samples[i]` holds one tensor per
/// graph input; `progress(stage, done, total)` is called after every sample run.
pub fn quantize(
    float: &Graph,
    samples: &[Vec<Tensor>],
    opts: &QuantizeOptions,
    exec: &dyn Executor,
    progress: &mut dyn FnMut(&'static str, usize, usize),
) -> Result<Quantized> {
    if !matches!(opts.activations, QType::U8 | QType::I8) {
        return Err(Error::Options(format!(
            "activations must be u8 or i8, not {}",
            opts.activations.name()
        )));
    }
    if samples.is_empty() {
        return Err(Error::NoSamples);
    }
    let mut g = float.clone();
    if opts.optimize {
        let p = qc_passes::Pipeline::parse("default")?;
        p.run(&mut g, &mut qc_passes::PassCx::default())?;
    }
    let mut report = QuantReport {
        samples: samples.len(),
        ..Default::default()
    };
    if opts.cle {
        report.cle = Some(crate::cle::equalize(&mut g));
    }
    if opts.bias_correction {
        add_zero_biases(&mut g)?;
    }

    let plan = Plan::new(&g, opts);
    let t0 = Instant::now();
    let mut observers: Vec<Observer> = plan
        .roots
        .iter()
        .map(|_| Observer::new(opts.method))
        .collect();
    run_observed(
        &g,
        &plan.roots,
        samples,
        exec,
        "calibration",
        progress,
        |_, obs| {
            for (o, t) in observers.iter_mut().zip(obs) {
                o.observe(&t.to_f32_vec());
            }
        },
    )?;
    report.calibration_time = t0.elapsed();

    let mut params: HashMap<ValueId, QuantParams> = HashMap::new();
    for (&v, o) in plan.roots.iter().zip(&observers) {
        let scheme = plan.scheme(&g, v, opts);
        let (lo, hi) = o.range(&scheme);
        let (s, z) = scheme.params(lo, hi)?;
        params.insert(v, QuantParams::per_tensor(scheme.storage, s, z));
    }
    for (v, root) in plan.shared.iter() {
        if let Some(p) = params.get(root).cloned() {
            params.insert(*v, p);
        }
    }

    let mut built = build_qdq(&g, &params, opts)?;
    // The calibrated float graph is the reference; bias correction edits a copy.
    let float_ref = g.clone();
    if opts.bias_correction {
        report.bias_corrections = bias_correction(&mut g, &built, samples, exec, progress)?;
        built = build_qdq(&g, &params, opts)?;
    }
    report.bias_overflows = built.overflows;
    for o in &report.bias_overflows {
        report.warnings.push(format!(
            "node '{}' channel {}: bias {} overflows int32 with scale {:e}; weight scale widened to give bias scale {:e}",
            o.node, o.channel, o.bias, o.old_scale, o.new_scale
        ));
    }
    let layers = built
        .layers
        .into_iter()
        .map(|(v, q)| {
            let (name, op) = value_label(&float_ref, v);
            Layer {
                name,
                op,
                float: v,
                quant: q,
                params: params
                    .get(&v)
                    .cloned()
                    .unwrap_or_else(|| QuantParams::per_tensor(opts.activations, 1.0, 0)),
            }
        })
        .collect();
    Ok(Quantized {
        float: float_ref,
        qdq: built.graph,
        layers,
        report,
    })
}

/// A value's label: its defining node's name and op, or the graph input's name.
fn value_label(g: &Graph, v: ValueId) -> (String, &'static str) {
    match g.value(v).def {
        ValueDef::Input(i) => (
            g.inputs
                .get(i as usize)
                .map_or_else(String::new, |p| p.name.clone()),
            "input",
        ),
        ValueDef::Node { node, slot } => {
            let n = g.node(node);
            let name = if n.name.is_empty() {
                format!("{node}")
            } else if slot > 0 {
                format!("{}:{slot}", n.name)
            } else {
                n.name.clone()
            };
            (name, n.op.name())
        }
        ValueDef::Const(c) => (format!("{c}"), "const"),
    }
}

/// Which activations are observed (`roots`) and which reuse another's parameters.
struct Plan {
    roots: Vec<ValueId>,
    shared: Vec<(ValueId, ValueId)>,
    int16: Vec<bool>,
}

/// Ops whose result values are a subset of their first operand's (so its parameters
/// represent them exactly).
fn is_movement(op: &Op) -> bool {
    match op {
        Op::Reshape { .. }
        | Op::Flatten { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Transpose { .. }
        | Op::Identity
        | Op::MaxPool { .. }
        | Op::GlobalMaxPool => true,
        Op::Pad { value, .. } => *value == 0.0,
        _ => false,
    }
}

impl Plan {
    fn new(g: &Graph, opts: &QuantizeOptions) -> Plan {
        let mut root_of: HashMap<ValueId, ValueId> = HashMap::new();
        let mut roots = Vec::new();
        let mut shared = Vec::new();
        let mut int16 = vec![false; g.values.len()];
        let wants16 = |name: &str| !name.is_empty() && opts.int16.iter().any(|n| n == name);
        for p in &g.inputs {
            if g.ty(p.value).dtype == DType::F32 {
                roots.push(p.value);
                root_of.insert(p.value, p.value);
                if wants16(&p.name) {
                    int16[p.value.index()] = true;
                }
            }
        }
        for (_, n) in g.iter_nodes() {
            if !n.name.is_empty() && opts.exclude.contains(&n.name) {
                continue;
            }
            for (slot, &v) in n.outputs.iter().enumerate() {
                if g.ty(v).dtype != DType::F32 {
                    continue;
                }
                let src = n.inputs.first().and_then(|x| root_of.get(x)).copied();
                match src {
                    Some(r) if slot == 0 && is_movement(&n.op) => {
                        shared.push((v, r));
                        root_of.insert(v, r);
                    }
                    _ => {
                        roots.push(v);
                        root_of.insert(v, v);
                        if wants16(&n.name) {
                            int16[v.index()] = true;
                        }
                    }
                }
            }
        }
        Plan {
            roots,
            shared,
            int16,
        }
    }

    fn scheme(&self, _g: &Graph, v: ValueId, opts: &QuantizeOptions) -> Scheme {
        if self.int16.get(v.index()).copied().unwrap_or(false) {
            return Scheme {
                storage: QType::I16,
                symmetric: true,
                power_of_two: opts.power_of_two,
            };
        }
        Scheme {
            storage: opts.activations,
            symmetric: opts.symmetric_activations,
            power_of_two: opts.power_of_two,
        }
    }
}

/// Run `g` with `values` as extra outputs on every sample; `f(sample, observed)` sees
/// the extra outputs in `values` order.
pub(crate) fn run_observed(
    g: &Graph,
    values: &[ValueId],
    samples: &[Vec<Tensor>],
    exec: &dyn Executor,
    what: &'static str,
    progress: &mut dyn FnMut(&'static str, usize, usize),
    mut f: impl FnMut(usize, &[Tensor]),
) -> Result<()> {
    let mut og = g.clone();
    let base = og.outputs.len();
    for (i, &v) in values.iter().enumerate() {
        og.add_output(format!("__observe{i}"), v);
    }
    let mut prepared = exec
        .prepare(&og)
        .map_err(|source| Error::Prepare { what, source })?;
    for (i, s) in samples.iter().enumerate() {
        check_sample(g, i, s)?;
        let outs = prepared.run(s).map_err(|source| Error::Run {
            what,
            sample: i,
            source,
        })?;
        let obs = outs.get(base..).ok_or_else(|| Error::Sample {
            sample: i,
            msg: format!(
                "the executor returned {} results, expected {}",
                outs.len(),
                og.outputs.len()
            ),
        })?;
        f(i, obs);
        progress(what, i + 1, samples.len());
    }
    Ok(())
}

fn check_sample(g: &Graph, i: usize, s: &[Tensor]) -> Result<()> {
    if s.len() != g.inputs.len() {
        return Err(Error::Sample {
            sample: i,
            msg: format!("{} tensors for {} graph inputs", s.len(), g.inputs.len()),
        });
    }
    for (p, t) in g.inputs.iter().zip(s) {
        let ty = g.ty(p.value);
        if t.dtype() != ty.dtype || t.shape() != &ty.shape {
            return Err(Error::Sample {
                sample: i,
                msg: format!(
                    "input '{}' is {}{}, the model wants {}{}",
                    p.name,
                    t.dtype(),
                    t.shape(),
                    ty.dtype,
                    ty.shape
                ),
            });
        }
    }
    Ok(())
}

/// Symmetric quantization of a float weight tensor: per channel along `axis`, or per
/// tensor. `min_scales[c]` (per channel, or one value) floors the chosen scales — the
/// bias-overflow fix. Returns the stored tensor and its params.
pub fn quantize_weights(
    w: &Tensor,
    axis: Option<usize>,
    storage: QType,
    power_of_two: bool,
    min_scales: &[f32],
) -> Result<(Tensor, QuantParams)> {
    let x = w.to_f32_vec();
    let dims = w.dims();
    let (channels, inner) = match axis {
        Some(a) if a < dims.len() => (dims[a], dims[a + 1..].iter().product::<usize>()),
        Some(a) => {
            return Err(Error::Options(format!(
                "weight axis {a} out of range for shape {}",
                w.shape()
            )))
        }
        None => (1, x.len()),
    };
    let chan = |i: usize| {
        if axis.is_some() {
            (i / inner.max(1)) % channels.max(1)
        } else {
            0
        }
    };
    let mut absmax = vec![0f32; channels.max(1)];
    for (i, &v) in x.iter().enumerate() {
        if v.is_finite() {
            let c = chan(i);
            absmax[c] = absmax[c].max(v.abs());
        }
    }
    let mut scales = Vec::with_capacity(absmax.len());
    for (c, &m) in absmax.iter().enumerate() {
        let floor = min_scales
            .get(c)
            .or(min_scales.first())
            .copied()
            .unwrap_or(0.0);
        // Widening the range to floor * qmax widens the scale to at least floor.
        let m = m.max(floor * storage.symmetric_max() as f32);
        let (s, _) = if power_of_two {
            qc_qmath::choose_power_of_two(-m, m, storage)?
        } else {
            qc_qmath::choose_symmetric(-m, m, storage)?
        };
        scales.push(s.max(floor));
    }
    let zp = storage.symmetric_zero_point();
    let q: Vec<i64> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| qc_qmath::quantize(v, scales[chan(i)], zp, storage))
        .collect();
    let data = match storage {
        QType::I8 => TensorData::I8(q.iter().map(|&v| v as i8).collect()),
        QType::U8 => TensorData::U8(q.iter().map(|&v| v as u8).collect()),
        QType::I16 => TensorData::I16(q.iter().map(|&v| v as i16).collect()),
        QType::U16 => TensorData::U16(q.iter().map(|&v| v as u16).collect()),
        QType::I32 => TensorData::I32(q.iter().map(|&v| v as i32).collect()),
    };
    let params = match axis {
        Some(a) => QuantParams::per_axis(storage, a, scales, vec![zp; channels]),
        None => QuantParams::per_tensor(storage, scales[0], zp),
    };
    Ok((Tensor::new(w.shape().clone(), data)?, params))
}

/// The role of a node's constant operand.
enum Role {
    /// Weights quantized along this axis (when per channel).
    Weight(Option<usize>),
    Bias,
    /// Stays float.
    Keep,
    /// Symmetric i8 per tensor.
    Generic,
}

fn role(op: &Op, i: usize, ty: &TensorType) -> Role {
    match (op, i) {
        (Op::Conv(_), 1) => Role::Weight(Some(0)),
        (Op::ConvTranspose(a), 1) => Role::Weight((a.group == 1).then_some(1)),
        (Op::Gemm(a), 1) => Role::Weight(Some(if a.trans_b { 0 } else { 1 })),
        (Op::MatMul { .. }, 1) if ty.rank() == 2 => Role::Weight(Some(1)),
        (Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm(_), 2) => Role::Bias,
        (
            Op::Add { .. }
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Sum
            | Op::PRelu
            | Op::Concat { .. }
            | Op::MatMul { .. },
            _,
        ) => Role::Generic,
        _ => Role::Keep,
    }
}

pub(crate) struct Built {
    pub graph: Graph,
    /// (float activation, its dequantized counterpart in `graph`).
    pub layers: Vec<(ValueId, ValueId)>,
    /// Float node → node in `graph`.
    pub node_map: Vec<Option<NodeId>>,
    pub overflows: Vec<BiasOverflow>,
}

fn node_err(g: &Graph, n: NodeId, msg: impl Into<String>) -> Error {
    let node = g.node(n);
    Error::Node {
        node: n,
        op: node.op.name(),
        name: node.name.clone(),
        msg: msg.into(),
    }
}

/// Insert Q/DQ pairs after the activations in `params` and quantize constants.
pub(crate) fn build_qdq(
    g: &Graph,
    params: &HashMap<ValueId, QuantParams>,
    opts: &QuantizeOptions,
) -> Result<Built> {
    let mut h = Graph::new();
    let mut map: Vec<Option<ValueId>> = vec![None; g.values.len()];
    let mut layers = Vec::new();
    let mut overflows = Vec::new();
    let mut node_map = vec![None; g.nodes.len()];

    let qdq = |h: &mut Graph, v: ValueId, p: &QuantParams, name: &str| -> ValueId {
        let shape = h.ty(v).shape.clone();
        let q = h.add_node(
            Op::Quantize,
            vec![v],
            vec![TensorType::quantized(shape.clone(), p.clone())],
            format!("{name}/quantize"),
        );
        let qv = h.node(q).outputs[0];
        let d = h.add_node(
            Op::Dequantize,
            vec![qv],
            vec![TensorType::f32(shape)],
            format!("{name}/dequantize"),
        );
        h.node(d).outputs[0]
    };

    for p in &g.inputs {
        let v = h.add_input(p.name.clone(), g.ty(p.value).clone());
        map[p.value.index()] = Some(match params.get(&p.value) {
            Some(q) => {
                let d = qdq(&mut h, v, q, &p.name);
                layers.push((p.value, d));
                d
            }
            None => v,
        });
    }

    for (nid, n) in g.iter_nodes() {
        // Params of the first operand, for biases.
        let x_params = n.inputs.first().and_then(|x| params.get(x)).cloned();
        let mut weight_scales: Option<QuantParams> = None;
        let mut ins = Vec::with_capacity(n.inputs.len());
        // Bias-overflow fix: the smallest weight scale per channel that keeps the
        // bias in int32, computed before the weights are quantized.
        let min_w_scales = match (&x_params, n.inputs.get(2).and_then(|&b| g.const_of(b))) {
            (Some(xp), Some(b))
                if matches!(n.op, Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm(_)) =>
            {
                let sx = f64::from(xp.scale(0));
                b.to_f32_vec()
                    .iter()
                    .map(|&bv| (f64::from(bv.abs()) / (sx * 2_147_483_000.0)) as f32)
                    .collect::<Vec<f32>>()
            }
            _ => Vec::new(),
        };
        for (i, &v) in n.inputs.iter().enumerate() {
            if let Some(m) = map[v.index()] {
                ins.push(m);
                continue;
            }
            let Some(t) = g.const_of(v) else {
                return Err(node_err(g, nid, format!("operand {i} is not defined")));
            };
            let ty = g.ty(v);
            if ty.dtype != DType::F32 || ty.is_quantized() {
                let c = h.add_const_tensor(t.clone());
                ins.push(h.add_const_value(c, ty.quant.clone()));
                continue;
            }
            let new = match (role(&n.op, i, ty), &x_params) {
                (Role::Weight(axis), Some(_)) => {
                    let axis = if opts.per_channel { axis } else { None };
                    // Bias channels index output channels: fold them onto the axis
                    // (per tensor: the largest floor).
                    let floors: Vec<f32> = if axis.is_some() {
                        let ch = axis.and_then(|a| t.dims().get(a)).copied().unwrap_or(0);
                        if min_w_scales.len() == ch {
                            min_w_scales.clone()
                        } else {
                            Vec::new()
                        }
                    } else {
                        vec![min_w_scales.iter().fold(0f32, |a, &b| a.max(b))]
                    };
                    let (_, p0) = quantize_weights(t, axis, QType::I8, opts.power_of_two, &[])?;
                    let (qt, p) = quantize_weights(t, axis, QType::I8, opts.power_of_two, &floors)?;
                    if p != p0 {
                        let sx = x_params.as_ref().map_or(1.0, |x| x.scale(0));
                        let bias = n
                            .inputs
                            .get(2)
                            .and_then(|&b| g.const_of(b))
                            .map(|b| b.to_f32_vec())
                            .unwrap_or_default();
                        for c in 0..p.len() {
                            if p.scale(c) != p0.scale(c) {
                                let bv = if p.len() == 1 {
                                    bias.iter()
                                        .fold(0f32, |a, &b| if b.abs() > a.abs() { b } else { a })
                                } else {
                                    bias.get(c).copied().unwrap_or(0.0)
                                };
                                overflows.push(BiasOverflow {
                                    node: n.name.clone(),
                                    channel: c,
                                    bias: bv,
                                    old_scale: sx * p0.scale(c),
                                    new_scale: sx * p.scale(c),
                                });
                            }
                        }
                    }
                    weight_scales = Some(p.clone());
                    let c = h.add_const_tensor(Arc::new(qt));
                    let qv = h.add_const_value(c, Some(p));
                    dequantize(&mut h, qv, &format!("{}/w", n.name))
                }
                (Role::Bias, Some(xp)) => {
                    match &weight_scales {
                        Some(wp) => {
                            let b = t.to_f32_vec();
                            let sx = xp.scale(0);
                            let per_axis = !wp.is_per_tensor();
                            let last = t.dims().last().copied().unwrap_or(1);
                            let mut q = Vec::with_capacity(b.len());
                            for (k, &bv) in b.iter().enumerate() {
                                let c = if per_axis { k % last.max(1) } else { 0 };
                                q.push(qc_qmath::quantize_bias(bv, sx, wp.scale(c)).map_err(
                                    |e| node_err(g, nid, format!("bias channel {c}: {e}")),
                                )?);
                            }
                            let bp = if per_axis && wp.len() == last {
                                QuantParams::per_axis(
                                    QType::I32,
                                    t.dims().len().saturating_sub(1),
                                    wp.scales.iter().map(|&s| sx * s).collect(),
                                    vec![0; last],
                                )
                            } else {
                                QuantParams::per_tensor(QType::I32, sx * wp.scale(0), 0)
                            };
                            let qt = Tensor::new(t.shape().clone(), TensorData::I32(q))?;
                            let c = h.add_const_tensor(Arc::new(qt));
                            let qv = h.add_const_value(c, Some(bp));
                            dequantize(&mut h, qv, &format!("{}/b", n.name))
                        }
                        None => float_const(&mut h, t),
                    }
                }
                (Role::Generic, Some(_)) => {
                    let (qt, p) = quantize_weights(t, None, QType::I8, opts.power_of_two, &[])?;
                    let c = h.add_const_tensor(Arc::new(qt));
                    let qv = h.add_const_value(c, Some(p));
                    dequantize(&mut h, qv, &format!("{}/c{i}", n.name))
                }
                _ => float_const(&mut h, t),
            };
            ins.push(new);
        }
        let tys = n.outputs.iter().map(|&o| g.ty(o).clone()).collect();
        let new_n = h.add_node(n.op.clone(), ins, tys, n.name.clone());
        node_map[nid.index()] = Some(new_n);
        let outs = h.node(new_n).outputs.clone();
        for (&o, no) in n.outputs.iter().zip(outs) {
            map[o.index()] = Some(match params.get(&o) {
                Some(q) => {
                    let d = qdq(&mut h, no, q, &n.name);
                    layers.push((o, d));
                    d
                }
                None => no,
            });
        }
    }
    for p in &g.outputs {
        let v = map[p.value.index()]
            .ok_or_else(|| Error::Options(format!("graph output '{}' is not defined", p.name)))?;
        h.add_output(p.name.clone(), v);
    }
    qc_ir::verify::verify(&h)?;
    Ok(Built {
        graph: h,
        layers,
        node_map,
        overflows,
    })
}

fn float_const(h: &mut Graph, t: &Arc<Tensor>) -> ValueId {
    let c = h.add_const_tensor(t.clone());
    h.add_const_value(c, None)
}

fn dequantize(h: &mut Graph, qv: ValueId, name: &str) -> ValueId {
    let shape = h.ty(qv).shape.clone();
    let d = h.add_node(
        Op::Dequantize,
        vec![qv],
        vec![TensorType::f32(shape)],
        format!("{name}/dequantize"),
    );
    h.node(d).outputs[0]
}

/// Give every conv / gemm without a bias a zero bias, so bias correction has one to shift.
fn add_zero_biases(g: &mut Graph) -> Result<()> {
    for i in 0..g.nodes.len() {
        let n = &g.nodes[i];
        let channels = match &n.op {
            Op::Conv(_) if n.inputs.len() == 2 => n
                .inputs
                .get(1)
                .and_then(|&w| g.ty(w).shape.dims().first().copied()),
            Op::Gemm(a) if n.inputs.len() == 2 => {
                let Some(&y) = n.outputs.first() else {
                    continue;
                };
                if a.beta != 1.0 {
                    continue;
                }
                g.ty(y).shape.dims().last().copied()
            }
            _ => None,
        };
        let Some(c) = channels else { continue };
        let b = g.add_const(Tensor::from_f32([c], vec![0.0; c])?);
        g.nodes[i].inputs.push(b);
    }
    Ok(())
}

/// The pre-activation result of every conv / gemm: a copy of `g` where each fused
/// activation is split into its own node; returns the copy and, per node of `g`, the
/// pre-activation value in the copy.
fn split_activations(g: &Graph) -> (Graph, Vec<Option<ValueId>>) {
    let mut h = g.clone();
    let mut pre = vec![None; g.nodes.len()];
    let mut new_nodes = Vec::with_capacity(h.nodes.len());
    let old = std::mem::take(&mut h.nodes);
    // Splitting appends nodes, which would break topological order; instead rebuild
    // the node list, moving the activation into a new node right after its op and
    // renaming the op's result.
    let mut rename: HashMap<ValueId, ValueId> = HashMap::new();
    for (i, mut n) in old.into_iter().enumerate() {
        for v in &mut n.inputs {
            if let Some(&r) = rename.get(v) {
                *v = r;
            }
        }
        let act = n.op.activation().unwrap_or_default();
        let linear = matches!(n.op, Op::Conv(_) | Op::Gemm(_) | Op::ConvTranspose(_));
        let Some(&y) = n.outputs.first() else {
            new_nodes.push(n);
            continue;
        };
        if !linear {
            new_nodes.push(n);
            continue;
        }
        pre[i] = Some(y);
        if act == Activation::None {
            new_nodes.push(n);
            continue;
        }
        match &mut n.op {
            Op::Conv(a) => a.act = Activation::None,
            Op::ConvTranspose(a) => a.act = Activation::None,
            Op::Gemm(a) => a.act = Activation::None,
            _ => {}
        }
        let nid = NodeId::from_index(new_nodes.len() + 1);
        let ty = h.ty(y).clone();
        let post = ValueId::from_index(h.values.len());
        h.values.push(qc_ir::Value {
            ty,
            def: ValueDef::Node { node: nid, slot: 0 },
        });
        rename.insert(y, post);
        let op = match act {
            Activation::Relu => Op::Relu,
            Activation::Clip { min, max } => Op::Clip {
                min: Some(f64::from(min)),
                max: Some(f64::from(max)),
            },
            Activation::None => Op::Identity,
        };
        let name = n.name.clone();
        new_nodes.push(n);
        new_nodes.push(qc_ir::Node {
            op,
            inputs: vec![y],
            outputs: vec![post],
            name: format!("{name}/act"),
        });
    }
    // Re-number the definitions of every node result after the insertions.
    for (i, n) in new_nodes.iter().enumerate() {
        for (slot, &o) in n.outputs.iter().enumerate() {
            h.values[o.index()].def = ValueDef::Node {
                node: NodeId::from_index(i),
                slot: slot as u32,
            };
        }
    }
    h.nodes = new_nodes;
    for p in &mut h.outputs {
        if let Some(&r) = rename.get(&p.value) {
            p.value = r;
        }
    }
    (h, pre)
}

/// Shift every conv / gemm bias of `g` by the mean (over samples and positions) of
/// `float - quantized` of its pre-activation output per channel.
fn bias_correction(
    g: &mut Graph,
    built: &Built,
    samples: &[Vec<Tensor>],
    exec: &dyn Executor,
    progress: &mut dyn FnMut(&'static str, usize, usize),
) -> Result<Vec<BiasCorrection>> {
    let (fg, fpre) = split_activations(g);
    let (qg, qpre) = split_activations(&built.graph);
    // (float node, float pre value, qdq pre value, channel axis)
    let mut targets = Vec::new();
    for (i, n) in g.nodes.iter().enumerate() {
        let Some(fv) = fpre.get(i).copied().flatten() else {
            continue;
        };
        let Some(qn) = built.node_map.get(i).copied().flatten() else {
            continue;
        };
        let Some(qv) = qpre.get(qn.index()).copied().flatten() else {
            continue;
        };
        let has_bias = n.inputs.get(2).is_some_and(|&b| g.const_of(b).is_some());
        if !has_bias {
            continue;
        }
        let axis = if matches!(n.op, Op::Gemm(_)) {
            fg.ty(fv).rank().saturating_sub(1)
        } else {
            1
        };
        targets.push((i, fv, qv, axis));
    }
    let fvals: Vec<ValueId> = targets.iter().map(|t| t.1).collect();
    let qvals: Vec<ValueId> = targets.iter().map(|t| t.2).collect();
    let mut fsum: Vec<Vec<f64>> = Vec::new();
    let mut counts: Vec<Vec<u64>> = Vec::new();
    for &(_, fv, _, axis) in &targets {
        let c = fg.ty(fv).shape.dims().get(axis).copied().unwrap_or(1);
        fsum.push(vec![0.0; c]);
        counts.push(vec![0; c]);
    }
    let mut qsum = fsum.clone();
    let accumulate = |sums: &mut Vec<Vec<f64>>,
                      counts: Option<&mut Vec<Vec<u64>>>,
                      obs: &[Tensor],
                      g: &Graph| {
        let mut counts = counts;
        for (k, t) in obs.iter().enumerate() {
            let (_, v, _, axis) = targets[k];
            let dims = g.ty(v).shape.dims().to_vec();
            let c = dims.get(axis).copied().unwrap_or(1).max(1);
            let inner: usize = dims.get(axis + 1..).map_or(1, |d| d.iter().product());
            for (i, x) in t.to_f32_vec().iter().enumerate() {
                let ch = (i / inner.max(1)) % c;
                sums[k][ch] += f64::from(*x);
                if let Some(cn) = counts.as_deref_mut() {
                    cn[k][ch] += 1;
                }
            }
        }
    };
    run_observed(
        &fg,
        &fvals,
        samples,
        exec,
        "bias correction (float)",
        progress,
        |_, obs| accumulate(&mut fsum, Some(&mut counts), obs, &fg),
    )?;
    let qtargets: Vec<(usize, ValueId, ValueId, usize)> = targets
        .iter()
        .map(|&(i, _, qv, a)| (i, qv, qv, a))
        .collect();
    let accumulate_q = |sums: &mut Vec<Vec<f64>>, obs: &[Tensor]| {
        for (k, t) in obs.iter().enumerate() {
            let (_, v, _, axis) = qtargets[k];
            let dims = qg.ty(v).shape.dims().to_vec();
            let c = dims.get(axis).copied().unwrap_or(1).max(1);
            let inner: usize = dims.get(axis + 1..).map_or(1, |d| d.iter().product());
            for (i, x) in t.to_f32_vec().iter().enumerate() {
                sums[k][(i / inner.max(1)) % c] += f64::from(*x);
            }
        }
    };
    run_observed(
        &qg,
        &qvals,
        samples,
        exec,
        "bias correction (quantized)",
        progress,
        |_, obs| accumulate_q(&mut qsum, obs),
    )?;
    let mut out = Vec::new();
    for (k, &(i, _, _, _)) in targets.iter().enumerate() {
        let shift: Vec<f64> = fsum[k]
            .iter()
            .zip(&qsum[k])
            .zip(&counts[k])
            .map(|((f, q), &n)| if n > 0 { (f - q) / n as f64 } else { 0.0 })
            .collect();
        let Some(&b) = g.nodes[i].inputs.get(2) else {
            continue;
        };
        let Some(t) = g.const_of(b) else { continue };
        let mut bv = t.to_f32_vec();
        let last = t.dims().last().copied().unwrap_or(1).max(1);
        for (j, x) in bv.iter_mut().enumerate() {
            if let Some(s) = shift.get(j % last) {
                *x += *s as f32;
            }
        }
        let nb = g.add_const(Tensor::from_f32(t.shape().clone(), bv)?);
        g.nodes[i].inputs[2] = nb;
        let mean_abs_error = shift.iter().map(|s| s.abs()).sum::<f64>() / shift.len().max(1) as f64;
        out.push(BiasCorrection {
            node: g.nodes[i].name.clone(),
            mean_abs_error,
        });
    }
    Ok(out)
}
