//! The printer. It never fails: a reference to a value outside the arena (a broken
//! graph) prints as `%N` with type `<invalid>`, which the parser rejects.

use std::fmt::Write as _;

use super::{fmt_f32, fmt_f64, fmt_half, write_string, DataMode, PrintOptions, INLINE_MAX};
use crate::{
    Activation, ConvAttrs, ConvTransposeAttrs, Graph, Op, PoolAttrs, Tensor, TensorData,
    TensorType, ValueDef, ValueId,
};

/// A signature longer than this (in bytes, newline included) prints one port per line.
const HEADER_WIDTH: usize = 100;

pub(super) fn print_graph(g: &Graph, opts: &PrintOptions) -> String {
    let mut out = String::new();
    for (i, t) in g.consts.iter().enumerate() {
        let _ = write!(out, "#{i} = const {}{} ", t.dtype(), t.shape());
        write_data(&mut out, t, opts.data);
        out.push('\n');
    }
    if !g.consts.is_empty() {
        out.push('\n');
    }

    let params: Vec<String> = g
        .inputs
        .iter()
        .map(|p| {
            let mut s = format!("{} ", p.value);
            write_string(&mut s, &p.name);
            s.push_str(": ");
            write_value_type(&mut s, g, p.value);
            s
        })
        .collect();
    let results: Vec<String> = g
        .outputs
        .iter()
        .map(|p| {
            let mut s = String::new();
            write_string(&mut s, &p.name);
            s.push_str(": ");
            write_value_type(&mut s, g, p.value);
            s
        })
        .collect();
    let one_line = format!(
        "func @main({}) -> ({}) {{\n",
        params.join(", "),
        results.join(", ")
    );
    if one_line.len() <= HEADER_WIDTH {
        out.push_str(&one_line);
    } else {
        // One port per line, so a large signature stays readable and diffable.
        let list = |items: &[String]| -> String {
            items
                .iter()
                .map(|s| format!("\n    {s},"))
                .collect::<String>()
                + "\n"
        };
        let _ = writeln!(
            out,
            "func @main({}) -> ({}) {{",
            list(&params),
            list(&results)
        );
    }

    // Definitions are emitted in the order `Graph::compact` numbers values, so that
    // the parser, allocating ids in text order, rebuilds the same arenas.
    let mut emitted = vec![false; g.values.len()];
    for p in &g.inputs {
        if let Some(e) = emitted.get_mut(p.value.index()) {
            *e = true;
        }
    }
    for n in &g.nodes {
        for &v in &n.inputs {
            write_const_value(&mut out, g, v, &mut emitted);
        }
        out.push_str("  ");
        if !n.outputs.is_empty() {
            write_value_list(&mut out, &n.outputs);
            out.push_str(" = ");
        }
        out.push_str(n.op.name());
        if !n.inputs.is_empty() {
            out.push(' ');
            write_value_list(&mut out, &n.inputs);
        }
        let attrs = attrs(&n.op);
        if !attrs.is_empty() {
            out.push_str(" {");
            for (i, (k, v)) in attrs.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{k}={v}");
            }
            out.push('}');
        }
        if !n.outputs.is_empty() {
            out.push_str(" : ");
            for (i, &v) in n.outputs.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value_type(&mut out, g, v);
            }
        }
        if !n.name.is_empty() {
            out.push_str(" loc(");
            write_string(&mut out, &n.name);
            out.push(')');
        }
        out.push('\n');
        for &v in &n.outputs {
            if let Some(e) = emitted.get_mut(v.index()) {
                *e = true;
            }
        }
    }
    // Constant values no node uses (in a compacted graph: graph outputs only, which
    // `compact` numbers last, in output order).
    for i in 0..g.values.len() {
        write_const_value(&mut out, g, ValueId::from_index(i), &mut emitted);
    }
    out.push_str("  return");
    if !g.outputs.is_empty() {
        out.push(' ');
        let vs: Vec<ValueId> = g.outputs.iter().map(|p| p.value).collect();
        write_value_list(&mut out, &vs);
    }
    out.push_str("\n}\n");
    out
}

/// `%v = const #c : type`, once per constant value, before its first use.
fn write_const_value(out: &mut String, g: &Graph, v: ValueId, emitted: &mut [bool]) {
    let (Some(val), Some(e)) = (g.values.get(v.index()), emitted.get_mut(v.index())) else {
        return;
    };
    let ValueDef::Const(c) = val.def else { return };
    if *e {
        return;
    }
    *e = true;
    let _ = write!(out, "  {v} = const {c} : ");
    write_type(out, &val.ty);
    out.push('\n');
}

fn write_value_list(out: &mut String, vs: &[ValueId]) {
    for (i, v) in vs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{v}");
    }
}

fn write_value_type(out: &mut String, g: &Graph, v: ValueId) {
    match g.values.get(v.index()) {
        Some(val) => write_type(out, &val.ty),
        None => out.push_str("<invalid>"),
    }
}

/// `u8[1,3] q(0.5, 128)`; `storage=` only when it differs from the dtype's.
pub(super) fn write_type(out: &mut String, ty: &TensorType) {
    let _ = write!(out, "{}{}", ty.dtype, ty.shape);
    let Some(q) = &ty.quant else { return };
    out.push_str(" q(");
    if ty.dtype.qtype() != Some(q.storage) {
        let _ = write!(out, "storage={}, ", q.storage.name());
    }
    match (q.axis, q.scales.as_slice(), q.zero_points.as_slice()) {
        (None, [s], [z]) => {
            let _ = write!(out, "{}, {z}", fmt_f32(*s));
        }
        (axis, scales, zps) => {
            if let Some(a) = axis {
                let _ = write!(out, "axis={a}, ");
            }
            let scales: Vec<String> = scales.iter().map(|&s| fmt_f32(s)).collect();
            let zps: Vec<String> = zps.iter().map(|z| z.to_string()).collect();
            let _ = write!(out, "[{}], [{}]", scales.join(", "), zps.join(", "));
        }
    }
    out.push(')');
}

fn write_data(out: &mut String, t: &Tensor, mode: DataMode) {
    let small = t.len() <= INLINE_MAX;
    match mode {
        DataMode::Auto | DataMode::Full if small => write_inline(out, t.data()),
        DataMode::Full => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let bytes = t.data().to_le_bytes();
            out.reserve(2 * bytes.len() + 8);
            out.push_str("hex \"");
            for b in bytes {
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
            out.push('"');
        }
        DataMode::Auto | DataMode::Digest => {
            let _ = write!(out, "digest {:016x}", t.digest());
        }
    }
}

fn write_inline(out: &mut String, d: &TensorData) {
    let items: Vec<String> = match d {
        TensorData::F32(v) => v.iter().map(|&x| fmt_f32(x)).collect(),
        TensorData::F64(v) => v.iter().map(|&x| fmt_f64(x)).collect(),
        TensorData::F16(v) => v
            .iter()
            .map(|&b| {
                fmt_half(b, half::f16::NAN.to_bits(), |b| {
                    half::f16::from_bits(b).to_f32()
                })
            })
            .collect(),
        TensorData::BF16(v) => v
            .iter()
            .map(|&b| {
                fmt_half(b, half::bf16::NAN.to_bits(), |b| {
                    half::bf16::from_bits(b).to_f32()
                })
            })
            .collect(),
        TensorData::I8(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::U8(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::I16(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::U16(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::I32(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::U32(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::I64(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::U64(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::Bool(v) => v.iter().map(|x| x.to_string()).collect(),
    };
    let _ = write!(out, "[{}]", items.join(", "));
}

fn ints(v: &[usize]) -> String {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(","))
}

fn ints_i64(v: &[i64]) -> String {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(","))
}

fn act(a: Activation) -> Option<String> {
    match a {
        Activation::None => None,
        Activation::Relu => Some("relu".into()),
        Activation::Clip { min, max } => Some(format!("clip({}, {})", fmt_f32(min), fmt_f32(max))),
    }
}

/// True when the float has exactly the bits of `d` (so `-0.0` is not `0.0`).
fn is(x: f32, d: f32) -> bool {
    x.to_bits() == d.to_bits()
}

/// Window geometry: kernel always; strides, dilations, pads when not the neutral
/// default the parser restores (see `parse::Geometry`).
fn geometry(
    a: &mut Vec<(&'static str, String)>,
    kernel: &[usize],
    strides: &[usize],
    dil: &[usize],
    pads: &[usize],
) {
    let k = kernel.len();
    a.push(("kernel", ints(kernel)));
    if strides != vec![1; k].as_slice() {
        a.push(("strides", ints(strides)));
    }
    if dil != vec![1; k].as_slice() {
        a.push(("dilations", ints(dil)));
    }
    if pads != vec![0; 2 * k].as_slice() {
        a.push(("pads", ints(pads)));
    }
}

fn conv(a: &mut Vec<(&'static str, String)>, c: &ConvAttrs) {
    geometry(a, &c.kernel, &c.strides, &c.dilations, &c.pads);
    if c.group != 1 {
        a.push(("group", c.group.to_string()));
    }
    a.extend(act(c.act).map(|s| ("act", s)));
}

fn conv_transpose(a: &mut Vec<(&'static str, String)>, c: &ConvTransposeAttrs) {
    geometry(a, &c.kernel, &c.strides, &c.dilations, &c.pads);
    if c.output_padding != vec![0; c.kernel.len()] {
        a.push(("output_padding", ints(&c.output_padding)));
    }
    if c.group != 1 {
        a.push(("group", c.group.to_string()));
    }
    a.extend(act(c.act).map(|s| ("act", s)));
}

fn pool(a: &mut Vec<(&'static str, String)>, p: &PoolAttrs) {
    geometry(a, &p.kernel, &p.strides, &p.dilations, &p.pads);
    if p.ceil_mode {
        a.push(("ceil_mode", "true".into()));
    }
}

/// The attributes of an op as `(key, value)` in a fixed order, defaults omitted.
fn attrs(op: &Op) -> Vec<(&'static str, String)> {
    let mut a = Vec::new();
    match op {
        Op::Quantize
        | Op::Dequantize
        | Op::Requantize
        | Op::DynamicQuantize
        | Op::MatMulInteger
        | Op::Sub
        | Op::Mul
        | Op::Div
        | Op::Sum
        | Op::Relu
        | Op::PRelu
        | Op::Sigmoid
        | Op::HardSwish
        | Op::Tanh
        | Op::GlobalAveragePool
        | Op::GlobalMaxPool
        | Op::Identity => {}
        Op::Cast { to } => a.push(("to", to.name().to_string())),
        Op::Conv(c) | Op::ConvInteger(c) => conv(&mut a, c),
        Op::ConvTranspose(c) => conv_transpose(&mut a, c),
        Op::Gemm(gm) => {
            if !is(gm.alpha, 1.0) {
                a.push(("alpha", fmt_f32(gm.alpha)));
            }
            if !is(gm.beta, 1.0) {
                a.push(("beta", fmt_f32(gm.beta)));
            }
            if gm.trans_a {
                a.push(("trans_a", "true".into()));
            }
            if gm.trans_b {
                a.push(("trans_b", "true".into()));
            }
            a.extend(act(gm.act).map(|s| ("act", s)));
        }
        Op::MatMul { act: ac } | Op::Add { act: ac } => a.extend(act(*ac).map(|s| ("act", s))),
        Op::BatchNorm { epsilon } => a.push(("epsilon", fmt_f32(*epsilon))),
        Op::LeakyRelu { alpha } => a.push(("alpha", fmt_f32(*alpha))),
        Op::Clip { min, max } => {
            a.extend(min.map(|m| ("min", fmt_f64(m))));
            a.extend(max.map(|m| ("max", fmt_f64(m))));
        }
        Op::HardSigmoid { alpha, beta } => {
            a.push(("alpha", fmt_f32(*alpha)));
            a.push(("beta", fmt_f32(*beta)));
        }
        Op::MaxPool {
            pool: p,
            storage_order,
        } => {
            pool(&mut a, p);
            if *storage_order != 0 {
                a.push(("storage_order", storage_order.to_string()));
            }
        }
        Op::AveragePool {
            pool: p,
            count_include_pad,
        } => {
            pool(&mut a, p);
            if *count_include_pad {
                a.push(("count_include_pad", "true".into()));
            }
        }
        Op::Flatten { axis } | Op::Concat { axis } | Op::Softmax { axis } => {
            a.push(("axis", axis.to_string()))
        }
        Op::Reshape { shape } => a.push(("shape", ints(shape))),
        Op::Squeeze { axes } | Op::Unsqueeze { axes } => a.push(("axes", ints(axes))),
        Op::Transpose { perm } => a.push(("perm", ints(perm))),
        Op::Pad { pads, value } => {
            a.push(("pads", ints_i64(pads)));
            if value.to_bits() != 0f64.to_bits() {
                a.push(("value", fmt_f64(*value)));
            }
        }
        Op::ReduceMean { axes, keepdims } => {
            a.push(("axes", ints(axes)));
            a.push(("keepdims", keepdims.to_string()));
        }
        Op::Lrn(l) => {
            a.push(("size", l.size.to_string()));
            a.push(("alpha", fmt_f32(l.alpha)));
            a.push(("beta", fmt_f32(l.beta)));
            a.push(("bias", fmt_f32(l.bias)));
        }
    }
    a
}
