//! qc-interp: the reference interpreter of the qc IR — the oracle every backend is
//! checked against.
//!
//! Kernels are plain loops (ordered for the cache, so whole ImageNet models run in
//! tests), written for obvious correctness rather than speed.
//!
//! **Values.** Every value flows as a [`Tensor`] holding its *stored* data: a
//! quantized value (type with `quant: Some(p)`) is a tensor of its integer storage
//! dtype meaning `scale * (q - zero_point)` (per axis: the channel's scale and zero
//! point along `p.axis`).
//!
//! **Invariants of [`run`].**
//! - Inputs are checked against the graph's input types; constants against their
//!   value types; every node result against the type stored on the result value
//!   (dtype and shape). So every tensor a kernel sees has exactly its value's type.
//! - Intermediates are dropped after their last use (use counts are computed once,
//!   per operand occurrence), so peak memory is that of the live activations.
//! - A node whose combination of types is not meaningful yields [`Error::Node`]
//!   naming the node; nothing a graph contains makes the interpreter panic.
//!
//! **Dispatch** (per node, on the operand and result types):
//! 1. conversions (`quantize`, `dequantize`, `requantize`, `dynamic_quantize`,
//!    `cast`) and raw integer products (`conv_integer`, `matmul_integer`);
//! 2. `conv`, `conv_transpose`, `gemm`, `matmul` with quantized `x` and `w`: integer
//!    accumulation and per-channel requantization (module `qops`);
//! 3. data movement without quantized types: moved bit-exactly for every dtype;
//! 4. any other op touching a quantized or float type: every quantized operand is
//!    dequantized, the float kernel runs in f32 (f64/f16/bf16 operands are converted
//!    to f32 too), and each result is quantized with its own params (or converted to
//!    its float dtype). This one wrapper is how every op gets its quantized form;
//! 5. everything else runs on raw integers (module `int`).
//!
//! Before all of these, under the `float` contract, an 8-bit quantized `add`,
//! `softmax` or whole-image average pool takes onnxruntime's fused arithmetic instead
//! of step 4 (module `fused`; `qc_ir::fused` says which nodes).
//!
//! On quantized types, real-valued attributes stay real: `clip` bounds, the `pad`
//! value and fused activation bounds apply to the dequantized values (a quantized pad
//! with value 0 writes the zero point).
//!
//! **Precision.** Float kernels compute in f32; f64 operands are rounded to f32 first
//! (data movement and `cast` stay exact for every dtype). Reductions over many
//! elements (global average pool, reduce_mean) accumulate in f64.

mod conv;
mod float;
mod fused;
mod gemm;
mod int;
mod movement;
mod pool;
mod qm;
mod qops;
mod util;

use std::borrow::Cow;

use qc_ir::{Graph, NodeId, Op, Tensor, TensorData, TensorType, ValueDef, ValueId};

pub use qm::Contract;

use crate::float::{Out, FT};
use crate::util::{same_variant, KResult};

/// Interpreter options.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The rounding contract of requantization in integer-accumulating ops.
    pub contract: Contract,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("graph has {expected} inputs, {got} tensors given")]
    InputCount { expected: usize, got: usize },
    #[error("input {index} ('{name}'): expected {expected}, got {got}")]
    InputMismatch {
        index: usize,
        name: String,
        expected: String,
        got: String,
    },
    #[error("node {node} ({op} '{name}'): {msg}")]
    Node {
        node: NodeId,
        op: &'static str,
        name: String,
        msg: String,
    },
    /// A malformed graph (dangling ids, a value used before it is defined).
    #[error("graph: {0}")]
    Graph(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn type_str(dtype: qc_ir::DType, shape: &[usize]) -> String {
    format!("{dtype}{}", util::fmt_dims(shape))
}

/// A live value: borrowed (graph input, constant) or produced by a node.
enum Held<'a> {
    Borrowed(&'a Tensor),
    Owned(Tensor),
}

impl Held<'_> {
    fn get(&self) -> &Tensor {
        match self {
            Held::Borrowed(t) => t,
            Held::Owned(t) => t,
        }
    }
}

/// Run `g` on `inputs` (in `g.inputs` order); results in `g.outputs` order.
pub fn run(g: &Graph, inputs: &[Tensor], opts: &Options) -> Result<Vec<Tensor>> {
    if inputs.len() != g.inputs.len() {
        return Err(Error::InputCount {
            expected: g.inputs.len(),
            got: inputs.len(),
        });
    }
    let mut env: Vec<Option<Held>> = (0..g.values.len()).map(|_| None).collect();
    let mut uses = use_counts(g);
    for (index, (port, t)) in g.inputs.iter().zip(inputs).enumerate() {
        let ty = value_ty(g, port.value)?;
        if t.dtype() != ty.dtype || t.dims() != ty.shape.dims() {
            return Err(Error::InputMismatch {
                index,
                name: port.name.clone(),
                expected: type_str(ty.dtype, ty.shape.dims()),
                got: type_str(t.dtype(), t.dims()),
            });
        }
        if let Some(slot) = env.get_mut(port.value.index()) {
            *slot = Some(Held::Borrowed(t));
        }
    }

    for (id, node) in g.iter_nodes() {
        let node_err = |msg: String| Error::Node {
            node: id,
            op: node.op.name(),
            name: node.name.clone(),
            msg,
        };
        let results = {
            let mut ins: Vec<&Tensor> = Vec::with_capacity(node.inputs.len());
            let mut in_tys: Vec<&TensorType> = Vec::with_capacity(node.inputs.len());
            for &v in &node.inputs {
                in_tys.push(value_ty(g, v)?);
                ins.push(operand(g, &env, v).map_err(node_err)?);
            }
            let out_tys = node
                .outputs
                .iter()
                .map(|&v| value_ty(g, v))
                .collect::<Result<Vec<_>>>()?;
            let results = exec(&node.op, &ins, &in_tys, &out_tys, opts).map_err(node_err)?;
            if results.len() != out_tys.len() {
                return Err(node_err(format!(
                    "{} results for {} result values",
                    results.len(),
                    out_tys.len()
                )));
            }
            for (i, (t, ty)) in results.iter().zip(&out_tys).enumerate() {
                if t.dtype() != ty.dtype || t.dims() != ty.shape.dims() {
                    return Err(node_err(format!(
                        "result {i} computed as {} but typed {}",
                        type_str(t.dtype(), t.dims()),
                        type_str(ty.dtype, ty.shape.dims())
                    )));
                }
            }
            results
        };
        for &v in &node.inputs {
            if let Some(u) = uses.get_mut(v.index()) {
                *u = u.saturating_sub(1);
                if *u == 0 {
                    if let Some(slot) = env.get_mut(v.index()) {
                        *slot = None;
                    }
                }
            }
        }
        for (&v, t) in node.outputs.iter().zip(results) {
            if uses.get(v.index()).is_some_and(|&u| u > 0) {
                if let Some(slot) = env.get_mut(v.index()) {
                    *slot = Some(Held::Owned(t));
                }
            }
        }
    }

    let mut outs = Vec::with_capacity(g.outputs.len());
    for port in &g.outputs {
        let v = port.value;
        let last = uses.get(v.index()).is_some_and(|&u| u <= 1);
        let owned = match env.get_mut(v.index()) {
            Some(slot @ Some(Held::Owned(_))) if last => slot.take(),
            _ => None,
        };
        let t = match owned {
            Some(Held::Owned(t)) => t,
            _ => operand(g, &env, v)
                .map_err(|m| Error::Graph(format!("output '{}': {m}", port.name)))?
                .clone(),
        };
        if let Some(u) = uses.get_mut(v.index()) {
            *u = u.saturating_sub(1);
        }
        outs.push(t);
    }
    Ok(outs)
}

/// Uses of every value as an operand or output, once per occurrence. (Not
/// `Graph::use_counts`, which indexes without checking: a malformed graph must give
/// an error later, not a panic here.)
fn use_counts(g: &Graph) -> Vec<usize> {
    let mut uses = vec![0usize; g.values.len()];
    let all = g
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter())
        .chain(g.outputs.iter().map(|p| &p.value));
    for v in all {
        if let Some(u) = uses.get_mut(v.index()) {
            *u += 1;
        }
    }
    uses
}

fn value_ty(g: &Graph, v: ValueId) -> Result<&TensorType> {
    g.values
        .get(v.index())
        .map(|x| &x.ty)
        .ok_or_else(|| Error::Graph(format!("value {v} does not exist")))
}

/// The tensor of value `v`: a constant from the graph, or a live entry of `env`.
fn operand<'a>(g: &'a Graph, env: &'a [Option<Held<'a>>], v: ValueId) -> KResult<&'a Tensor> {
    let val = g
        .values
        .get(v.index())
        .ok_or_else(|| format!("value {v} does not exist"))?;
    match val.def {
        ValueDef::Const(c) => {
            let t = g
                .consts
                .get(c.index())
                .ok_or_else(|| format!("constant {c} does not exist"))?;
            if t.dtype() != val.ty.dtype || t.dims() != val.ty.shape.dims() {
                return Err(format!(
                    "constant {c} is {} but its value {v} is typed {}",
                    type_str(t.dtype(), t.dims()),
                    type_str(val.ty.dtype, val.ty.shape.dims())
                ));
            }
            Ok(t)
        }
        _ => match env.get(v.index()) {
            Some(Some(h)) => Ok(h.get()),
            _ => Err(format!("value {v} is used before it is defined")),
        },
    }
}

/// Execute one op on its operands; results in the node's result order.
fn exec(
    op: &Op,
    ins: &[&Tensor],
    in_tys: &[&TensorType],
    out_tys: &[&TensorType],
    opts: &Options,
) -> KResult<Vec<Tensor>> {
    for ty in in_tys.iter().chain(out_tys) {
        util::check_quant(ty)?;
    }
    let q = |i: usize| in_tys.get(i).is_some_and(|t| t.is_quantized());
    let out0 = || {
        out_tys
            .first()
            .copied()
            .ok_or_else(|| "node has no result".to_string())
    };
    let one = |t: Tensor| Ok(vec![t]);
    let tensor = |shape: &[usize], d| Tensor::new(shape.to_vec(), d).map_err(|e| e.to_string());
    if opts.contract == Contract::Float {
        let fused = match (op, ins, in_tys, out_tys) {
            (Op::Add { act }, [a, b], [ta, tb], [ty]) => fused::add(a, b, (ta, tb, ty), *act),
            (Op::Softmax { axis }, [x], [tx], [ty]) => fused::softmax(x, (tx, ty), *axis),
            (Op::GlobalAveragePool | Op::AveragePool { .. }, [x], [tx], [ty]) => {
                fused::mean(op, x, (tx, ty))
            }
            _ => None,
        };
        if let Some(t) = fused {
            return one(t?);
        }
    }
    match op {
        Op::Quantize => {
            let (x, y) = (single(ins)?, out0()?);
            if q(0) || !x.dtype().is_float() {
                return Err(format!(
                    "quantize takes a float operand, got {}",
                    in_tys[0].dtype
                ));
            }
            let p = y
                .quant
                .as_ref()
                .ok_or("quantize needs a quantized result type")?;
            let v = to_f32(x)?;
            one(tensor(x.dims(), qops::quant(x.dims(), &v, p)?)?)
        }
        Op::Dequantize => {
            let (x, y) = (single(ins)?, out0()?);
            let p = in_tys[0]
                .quant
                .as_ref()
                .ok_or("dequantize needs a quantized operand")?;
            if y.is_quantized() {
                return Err("dequantize needs a float result type".into());
            }
            let v = qops::dequant(x, p)?;
            one(tensor(x.dims(), util::data_from_f32(y.dtype, v)?)?)
        }
        Op::Requantize => {
            let (x, y) = (single(ins)?, out0()?);
            let px = in_tys[0]
                .quant
                .as_ref()
                .ok_or("requantize needs a quantized operand")?;
            let py = y
                .quant
                .as_ref()
                .ok_or("requantize needs a quantized result type")?;
            let v = qops::dequant(x, px)?;
            one(tensor(x.dims(), qops::quant(x.dims(), &v, py)?)?)
        }
        Op::DynamicQuantize => {
            let x = single(ins)?;
            if q(0) || !x.dtype().is_float() {
                return Err(format!(
                    "dynamic_quantize takes a float operand, got {}",
                    in_tys[0].dtype
                ));
            }
            qops::dynamic_quantize(&to_f32(x)?, x.dims())
        }
        Op::Cast { to } => {
            let x = single(ins)?;
            if q(0) || out0()?.is_quantized() {
                return Err("cast is defined on raw tensors only (use quantize/dequantize)".into());
            }
            one(tensor(x.dims(), x.data().cast(*to))?)
        }
        Op::ConvInteger(a) => {
            if (0..ins.len()).any(q) {
                return Err("conv_integer takes raw integer operands".into());
            }
            one(qops::conv_integer(a, ins)?)
        }
        Op::MatMulInteger => {
            if (0..ins.len()).any(q) {
                return Err("matmul_integer takes raw integer operands".into());
            }
            one(qops::matmul_integer(ins)?)
        }
        Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm(_) | Op::MatMul { .. } if q(0) && q(1) => {
            one(qops::linear(op, ins, in_tys, out0()?, opts.contract)?)
        }
        _ => {
            let any_q = in_tys.iter().chain(out_tys).any(|t| t.is_quantized());
            let any_float = in_tys.iter().chain(out_tys).any(|t| t.dtype.is_float());
            if movement::is_movement(op) && !any_q {
                one(move_raw(op, ins)?)
            } else if any_q || any_float {
                float_wrapper(op, ins, in_tys, out_tys)
            } else {
                int::run(op, ins, out_tys.len())
            }
        }
    }
}

fn single<'a>(ins: &[&'a Tensor]) -> KResult<&'a Tensor> {
    match ins {
        [x] => Ok(x),
        _ => Err(format!("expects 1 operand, got {}", ins.len())),
    }
}

/// A raw float tensor's elements as f32.
fn to_f32(t: &Tensor) -> KResult<Vec<f32>> {
    if !t.dtype().is_float() {
        return Err(format!("expected a float tensor, got {}", t.dtype()));
    }
    Ok(t.to_f32_vec())
}

/// Data movement on raw tensors of any dtype, moving stored elements unchanged.
fn move_raw(op: &Op, ins: &[&Tensor]) -> KResult<Tensor> {
    let shapes: Vec<&[usize]> = ins.iter().map(|t| t.dims()).collect();
    let out = movement::shape(op, &shapes)?;
    let mut datas: Vec<&qc_ir::TensorData> = ins.iter().map(|t| t.data()).collect();
    // The pad value rides along as a one-element operand of the same variant.
    let fill;
    if let (Op::Pad { value, .. }, Some(first)) = (op, ins.first()) {
        fill = TensorData::scalar(*value, first.dtype());
        datas.push(&fill);
    }
    let n_moved = ins.len();
    let d = same_variant!(&datas, vs => {
        let f = vs.get(n_moved).and_then(|f| f.first()).copied();
        movement::data(op, &vs[..n_moved], &shapes, f)
    });
    Tensor::new(out, d).map_err(|e| e.to_string())
}

/// The generic form of every op on float and quantized types: dequantize, compute
/// in f32, quantize (or convert) each result to its own type.
fn float_wrapper(
    op: &Op,
    ins: &[&Tensor],
    in_tys: &[&TensorType],
    out_tys: &[&TensorType],
) -> KResult<Vec<Tensor>> {
    let mut fts = Vec::with_capacity(ins.len());
    for (t, ty) in ins.iter().zip(in_tys) {
        let data: Cow<[f32]> = match (&ty.quant, t.data()) {
            (Some(p), _) => Cow::Owned(qops::dequant(t, p)?),
            (None, qc_ir::TensorData::F32(v)) => Cow::Borrowed(v.as_slice()),
            (None, _) if t.dtype().is_float() => Cow::Owned(t.to_f32_vec()),
            (None, _) => {
                return Err(format!(
                    "raw {} operand where a float or quantized value is expected",
                    t.dtype()
                ))
            }
        };
        fts.push(FT {
            shape: t.dims(),
            data,
        });
    }
    let outs = float::run(op, &fts, out_tys.len())?;
    if outs.len() != out_tys.len() {
        return Err(format!(
            "{} results for {} result values",
            outs.len(),
            out_tys.len()
        ));
    }
    outs.into_iter()
        .zip(out_tys)
        .map(|(o, ty)| match o {
            Out::T(t) => Ok(t),
            Out::F(shape, v) => {
                let d = match &ty.quant {
                    Some(p) => qops::quant(&shape, &v, p)?,
                    None if ty.dtype.is_float() => util::data_from_f32(ty.dtype, v)?,
                    None => {
                        return Err(format!("float computation cannot produce raw {}", ty.dtype))
                    }
                };
                Tensor::new(shape, d).map_err(|e| e.to_string())
            }
        })
        .collect()
}
