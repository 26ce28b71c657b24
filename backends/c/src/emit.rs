//! Assembly of the model's `.h` and `.c`: the arena, constants, the runtime pieces and
//! kernels the nodes asked for, and the entry points.
//!
//! **Invariants.**
//! - A node's code is a statement calling a shared kernel with a `static const`
//!   parameter block; blocks, tables and constants are emitted once per name
//!   ([`Em::data_once`]) even though the schedule is emitted twice (once per entry
//!   point).
//! - Values resolve to pointers through [`Em::ptr`]: a binding of the entry point
//!   (graph inputs/outputs, the quantized boundary buffers), a constant array, or
//!   `arena + offset` from the memory plan. Values the plan does not place and no
//!   binding names are a [`Error::Graph`], never an out-of-bounds pointer. Two values
//!   have the same pointer only when the plan made one reuse the other in place (a
//!   copy between them is then omitted); in `NAME_run_quantized` a boundary value
//!   bound to a parameter no longer shares, so the kernels simply read one buffer and
//!   write another.
//! - The plan is the in-place one unless the plain plan packs smaller (the packing is
//!   a greedy heuristic either way).
//! - The schedule is the graph's node order, the order the plan's lifetimes are
//!   computed over.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use qc_ir::{DType, Graph, NodeId, Op, TensorType, ValueDef, ValueId};
use qc_passes::memplan::{self, MemPlan};

use crate::runtime::Piece;
use crate::{ops, CSource, CgenOptions, Error, Result};

/// C element type of a dtype (f16/bf16 as their raw bits, bool as bytes).
pub(crate) fn ctype(d: DType) -> &'static str {
    match d {
        DType::F32 => "float",
        DType::F64 => "double",
        DType::F16 | DType::BF16 | DType::U16 => "uint16_t",
        DType::I8 => "int8_t",
        DType::U8 | DType::Bool => "uint8_t",
        DType::I16 => "int16_t",
        DType::I32 => "int32_t",
        DType::U32 => "uint32_t",
        DType::I64 => "int64_t",
        DType::U64 => "uint64_t",
    }
}

/// The quantize/dequantize nodes at the model's boundaries, when every input feeds
/// exactly one per-tensor `quantize` and every output is a per-tensor `dequantize`.
#[derive(Clone, Debug)]
pub(crate) struct Boundaries {
    /// Per input: the `quantize` result.
    pub in_q: Vec<ValueId>,
    /// Per output: the `dequantize` operand.
    pub out_q: Vec<ValueId>,
    /// The boundary nodes, skipped by `NAME_run_quantized`.
    pub nodes: BTreeSet<NodeId>,
}

impl Boundaries {
    pub(crate) fn find(g: &Graph) -> Option<Boundaries> {
        if g.inputs.is_empty() && g.outputs.is_empty() {
            return None;
        }
        let per_tensor = |v: ValueId| {
            g.values
                .get(v.index())
                .and_then(|x| x.ty.quant.as_ref())
                .is_some_and(|p| p.len() == 1)
        };
        let mut consumers: HashMap<ValueId, Vec<NodeId>> = HashMap::new();
        let mut uses: HashMap<ValueId, usize> = HashMap::new();
        for (id, n) in g.iter_nodes() {
            for &v in &n.inputs {
                consumers.entry(v).or_default().push(id);
                *uses.entry(v).or_default() += 1;
            }
        }
        for p in &g.outputs {
            *uses.entry(p.value).or_default() += 1;
        }
        let mut nodes = BTreeSet::new();
        let mut in_q = Vec::new();
        for p in &g.inputs {
            let cs = consumers.get(&p.value)?;
            let [c] = cs.as_slice() else { return None };
            let n = g.nodes.get(c.index())?;
            if n.op != Op::Quantize || n.outputs.len() != 1 || uses.get(&p.value) != Some(&1) {
                return None;
            }
            let q = n.outputs[0];
            if !per_tensor(q) || g.outputs.iter().any(|o| o.value == q) {
                return None;
            }
            nodes.insert(*c);
            in_q.push(q);
        }
        let mut out_q = Vec::new();
        for p in &g.outputs {
            let ValueDef::Node { node, .. } = g.values.get(p.value.index())?.def else {
                return None;
            };
            let n = g.nodes.get(node.index())?;
            let [x] = n.inputs.as_slice() else {
                return None;
            };
            if n.op != Op::Dequantize || uses.get(&p.value) != Some(&1) || !per_tensor(*x) {
                return None;
            }
            if !matches!(g.values.get(x.index())?.def, ValueDef::Node { .. })
                || out_q.contains(x)
                || in_q.contains(x)
            {
                return None;
            }
            nodes.insert(node);
            out_q.push(*x);
        }
        Some(Boundaries { in_q, out_q, nodes })
    }
}

/// Emission state shared by all nodes.
pub(crate) struct Em<'a> {
    pub g: &'a Graph,
    pub opts: &'a CgenOptions,
    pub plan: MemPlan,
    pieces: BTreeSet<Piece>,
    kernels: BTreeMap<String, String>,
    data: String,
    data_names: BTreeSet<String>,
    /// Pointer expressions of the entry point being emitted.
    pub bind: HashMap<ValueId, String>,
    /// Values known at compile time without being graph constants (results of
    /// `dequantize` on a constant), as the interpreter would compute them.
    pub folded: HashMap<ValueId, Vec<f32>>,
}

impl<'a> Em<'a> {
    pub(crate) fn need(&mut self, p: Piece) {
        for &d in p.deps() {
            self.need(d);
        }
        self.pieces.insert(p);
    }

    /// Add a typed kernel (by name) once.
    pub(crate) fn kernel(&mut self, name: &str, make: impl FnOnce() -> String) {
        if !self.kernels.contains_key(name) {
            let src = make();
            self.kernels.insert(name.to_string(), src);
        }
    }

    /// [`Em::kernel`] when `cond` holds (so unused kernels are never emitted: a
    /// `static` function nobody calls is a warning, an error under `-Werror`).
    pub(crate) fn kernel_if(&mut self, cond: bool, name: &str, make: impl FnOnce() -> String) {
        if cond {
            self.kernel(name, make);
        }
    }

    /// Add a static definition once per name; returns whether it was new.
    pub(crate) fn data_once(
        &mut self,
        name: &str,
        make: impl FnOnce() -> Result<String>,
    ) -> Result<()> {
        if self.data_names.insert(name.to_string()) {
            let text = make()?;
            self.data.push_str(&text);
        }
        Ok(())
    }

    /// The real values of a value known at compile time: a float constant, a
    /// quantized constant dequantized (per tensor or per axis) exactly as the
    /// interpreter does, or a folded value.
    pub(crate) fn real_values(&self, v: ValueId) -> Option<Vec<f32>> {
        if let Some(f) = self.folded.get(&v) {
            return Some(f.clone());
        }
        let t = self.g.const_of(v)?;
        let ty = &self.g.values.get(v.index())?.ty;
        match &ty.quant {
            None if t.dtype().is_float() => Some(t.to_f32_vec()),
            None => None,
            Some(p) => dequant_values(t, p),
        }
    }

    pub(crate) fn ty(&self, v: ValueId) -> Result<&'a TensorType> {
        self.g
            .values
            .get(v.index())
            .map(|x| &x.ty)
            .ok_or_else(|| Error::Graph(format!("value {v} does not exist")))
    }

    /// A C pointer expression (typed by the value's dtype) for value `v`.
    pub(crate) fn ptr(&mut self, v: ValueId) -> Result<String> {
        if let Some(e) = self.bind.get(&v) {
            return Ok(e.clone());
        }
        if let Some(vals) = self.folded.get(&v) {
            let name = format!("qc_v{}", v.index());
            let items: Vec<String> = vals
                .iter()
                .map(|&x| {
                    crate::exact::c_float(x)
                        .ok_or_else(|| Error::Graph(format!("folded value {v} holds {x}")))
                })
                .collect::<Result<_>>()?;
            self.data_once(&name, || Ok(array("float", &name, &items)))?;
            return Ok(name);
        }
        let val = self
            .g
            .values
            .get(v.index())
            .ok_or_else(|| Error::Graph(format!("value {v} does not exist")))?;
        let t = ctype(val.ty.dtype);
        match val.def {
            ValueDef::Const(c) => {
                let name = format!("qc_k{}", c.index());
                let tensor = self
                    .g
                    .consts
                    .get(c.index())
                    .ok_or_else(|| Error::Graph(format!("constant {c} does not exist")))?
                    .clone();
                if tensor.dtype() != val.ty.dtype {
                    return Err(Error::Graph(format!(
                        "constant {c} is {} but value {v} is typed {}",
                        tensor.dtype(),
                        val.ty.dtype
                    )));
                }
                self.data_once(&name, || {
                    let body = const_elements(&tensor)?;
                    Ok(format!(
                        "static const {t} {name}[{}] = {{{body}}};\n",
                        tensor.len().max(1)
                    ))
                })?;
                Ok(name)
            }
            _ => match self.plan.offset(v) {
                Some(off) => Ok(format!("(({t} *)(arena + {off}))")),
                None => Err(Error::Graph(format!(
                    "value {v} has no buffer (not planned and not bound)"
                ))),
            },
        }
    }
}

/// `qops::dequant` of the interpreter: per tensor, or per axis with the channel of
/// each element along `p.axis`. `None` for non-integer data or mismatched params.
pub(crate) fn dequant_values(t: &qc_ir::Tensor, p: &qc_ir::QuantParams) -> Option<Vec<f32>> {
    if !t.dtype().is_int() {
        return None;
    }
    let q = t.to_i64_vec();
    if p.len() == 1 {
        return Some(q.iter().map(|&x| p.dequantize(x, 0)).collect());
    }
    let axis = p.axis?;
    let dims = t.dims();
    if dims.get(axis) != Some(&p.len()) {
        return None;
    }
    let inner: usize = dims[axis + 1..].iter().product();
    let dim = p.len();
    Some(
        q.iter()
            .enumerate()
            .map(|(i, &x)| p.dequantize(x, (i / inner.max(1)) % dim))
            .collect(),
    )
}

/// Comma-separated C initializers of a constant tensor's elements.
pub(crate) fn const_elements(t: &qc_ir::Tensor) -> Result<String> {
    use qc_ir::TensorData as D;
    let items: Vec<String> = match t.data() {
        D::F32(v) => v
            .iter()
            .map(|&x| {
                crate::exact::c_float(x).ok_or_else(|| {
                    Error::Graph(format!("constant holds {x}, which C99 cannot spell"))
                })
            })
            .collect::<Result<_>>()?,
        D::F64(v) => v.iter().map(|x| format!("{x:e}")).collect(),
        D::F16(v) | D::BF16(v) | D::U16(v) => v.iter().map(|x| x.to_string()).collect(),
        D::I8(v) => v.iter().map(|x| x.to_string()).collect(),
        D::U8(v) => v.iter().map(|x| x.to_string()).collect(),
        D::I16(v) => v.iter().map(|x| x.to_string()).collect(),
        D::I32(v) => v.iter().map(|&x| c_i32(x)).collect(),
        D::U32(v) => v.iter().map(|x| format!("{x}u")).collect(),
        D::I64(v) => v.iter().map(|&x| c_i64(x)).collect(),
        D::U64(v) => v.iter().map(|x| format!("{x}ull")).collect(),
        D::Bool(v) => v.iter().map(|&x| u8::from(x).to_string()).collect(),
    };
    Ok(join_wrapped(&items))
}

/// An int32 literal valid in C (INT32_MIN cannot be written directly).
pub(crate) fn c_i32(x: i32) -> String {
    if x == i32::MIN {
        "INT32_MIN".into()
    } else {
        x.to_string()
    }
}

pub(crate) fn c_i64(x: i64) -> String {
    if x == i64::MIN {
        "INT64_MIN".into()
    } else {
        format!("INT64_C({x})")
    }
}

/// Join initializers, 16 to a line; an empty list becomes `0` (C forbids empty
/// initializers, and arrays are sized at least 1).
pub(crate) fn join_wrapped(items: &[String]) -> String {
    if items.is_empty() {
        return "0".into();
    }
    let mut s = String::new();
    for (i, it) in items.iter().enumerate() {
        if i % 16 == 0 {
            s.push_str("\n    ");
        } else {
            s.push(' ');
        }
        s.push_str(it);
        if i + 1 < items.len() {
            s.push(',');
        }
    }
    s.push('\n');
    s
}

/// A `static const` array definition.
pub(crate) fn array<T: ToString>(ctype: &str, name: &str, items: &[T]) -> String {
    let v: Vec<String> = items.iter().map(|x| x.to_string()).collect();
    format!(
        "static const {ctype} {name}[{}] = {{{}}};\n",
        v.len().max(1),
        join_wrapped(&v)
    )
}

struct Port {
    ctype: &'static str,
    is_const: bool,
    param: String,
    value: ValueId,
}

fn ports(g: &Graph, quantized: Option<&Boundaries>) -> Result<Vec<Port>> {
    let mut out = Vec::new();
    let tyof = |v: ValueId| {
        g.values
            .get(v.index())
            .map(|x| x.ty.dtype)
            .ok_or_else(|| Error::Graph(format!("value {v} does not exist")))
    };
    for (i, p) in g.inputs.iter().enumerate() {
        let v = quantized.map_or(p.value, |b| b.in_q[i]);
        out.push(Port {
            ctype: ctype(tyof(v)?),
            is_const: true,
            param: format!("in{i}"),
            value: v,
        });
    }
    for (i, p) in g.outputs.iter().enumerate() {
        let v = quantized.map_or(p.value, |b| b.out_q[i]);
        out.push(Port {
            ctype: ctype(tyof(v)?),
            is_const: false,
            param: format!("out{i}"),
            value: v,
        });
    }
    Ok(out)
}

fn signature(name: &str, fname: &str, ports: &[Port], external: bool) -> String {
    let mut params: Vec<String> = ports
        .iter()
        .map(|p| {
            format!(
                "{}{} *{}",
                if p.is_const { "const " } else { "" },
                p.ctype,
                p.param
            )
        })
        .collect();
    if external {
        params.push("void *arena".into());
    }
    if params.is_empty() {
        params.push("void".into());
    }
    format!("int {name}_{fname}({})", params.join(", "))
}

/// The statements of one entry point: every scheduled node except `skip`, with the
/// ports bound to the parameters.
fn entry_body(em: &mut Em, ports: &[Port], skip: &BTreeSet<NodeId>) -> Result<String> {
    em.bind.clear();
    let mut copies = String::new();
    for p in ports {
        if p.is_const {
            em.bind.insert(p.value, p.param.clone());
        }
    }
    for p in ports.iter().filter(|p| !p.is_const) {
        let computed = matches!(
            em.g.values.get(p.value.index()).map(|v| v.def),
            Some(ValueDef::Node { .. })
        );
        if computed && !em.bind.contains_key(&p.value) {
            em.bind.insert(p.value, p.param.clone());
        } else {
            // An output that is an input, a constant or another output's value.
            let ty = em.ty(p.value)?;
            let bytes = ty.size_bytes().map_err(|e| Error::Graph(e.to_string()))?;
            let src = em.ptr(p.value)?;
            let _ = writeln!(copies, "    memcpy({}, {src}, {bytes});", p.param);
        }
    }
    let mut s = String::new();
    for (id, node) in em.g.iter_nodes() {
        if skip.contains(&id)
            || (!node.outputs.is_empty() && node.outputs.iter().all(|o| em.folded.contains_key(o)))
        {
            continue;
        }
        let stmt = ops::node(em, id, node)?;
        let _ = writeln!(
            s,
            "    /* {id} {} '{}' */",
            node.op.name(),
            sanitize_comment(&node.name)
        );
        s.push_str(&stmt);
    }
    s.push_str(&copies);
    Ok(s)
}

fn sanitize_comment(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect::<String>()
        .replace("*/", "*?")
        .replace("/*", "?*")
}

fn entry(
    em: &mut Em,
    name: &str,
    fname: &str,
    ports: &[Port],
    skip: &BTreeSet<NodeId>,
) -> Result<String> {
    let body = entry_body(em, ports, skip)?;
    let ext = em.opts.external_arena;
    let mut s = signature(name, fname, ports, ext);
    s.push_str("\n{\n");
    if ext {
        s.push_str("    unsigned char *arena = (unsigned char *)arena_;\n");
    } else {
        s.push_str("    unsigned char *arena = (unsigned char *)qc_arena;\n");
    }
    for p in ports {
        let _ = writeln!(
            s,
            "    if ({} == NULL) {{\n        return 1;\n    }}",
            p.param
        );
    }
    if ext {
        s.push_str(
            "    if (arena == NULL || ((uintptr_t)arena & 7u) != 0) {\n        return 2;\n    }\n",
        );
    }
    s.push_str("    (void)arena;\n");
    s.push_str(&body);
    s.push_str("    return 0;\n}\n");
    if ext {
        s = s.replacen("void *arena)", "void *arena_)", 1);
    }
    Ok(s)
}

fn header_port(
    h: &mut String,
    name: &str,
    tag: &str,
    ty: &TensorType,
    port_name: &str,
    quant: bool,
) {
    let up = format!("{}_{tag}", name.to_uppercase());
    let dims = ty.shape.dims();
    let numel: usize = dims.iter().product();
    let list = |d: &[usize]| {
        d.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !quant {
        let _ = writeln!(
            h,
            "/** {tag} '{}' of {name}_run: {} of shape [{}]. */",
            sanitize_comment(port_name),
            ty.dtype,
            list(dims)
        );
        let _ = writeln!(h, "#define {up}_NUMEL {numel}");
        let _ = writeln!(h, "#define {up}_RANK {}", dims.len());
        let shape = if dims.is_empty() {
            "1".to_string()
        } else {
            list(dims)
        };
        let _ = writeln!(h, "#define {up}_SHAPE {{ {shape} }}");
        return;
    }
    if let Some(p) = &ty.quant {
        let _ = writeln!(
            h,
            "/** {tag} of {name}_run_quantized: {} codes ({} elements, same shape), real value\n * = scale * (q - zero_point) with scale {} and zero point {}. */",
            p.storage.name(),
            numel,
            p.scales.first().copied().unwrap_or(0.0),
            p.zero_points.first().copied().unwrap_or(0)
        );
        let _ = writeln!(h, "#define {up}_Q_NUMEL {numel}");
        let _ = writeln!(
            h,
            "#define {up}_SCALE {}",
            crate::exact::c_float(p.scales.first().copied().unwrap_or(0.0))
                .unwrap_or_else(|| "0.0f".into())
        );
        let _ = writeln!(
            h,
            "#define {up}_ZERO_POINT {}",
            p.zero_points.first().copied().unwrap_or(0)
        );
    }
}

pub(crate) fn emit(g: &Graph, opts: &CgenOptions) -> Result<CSource> {
    if opts.name.is_empty() || crate::c_identifier(&opts.name) != opts.name {
        return Err(Error::Options(format!(
            "name '{}' is not a C identifier (use qc_cgen::c_identifier)",
            opts.name
        )));
    }
    // In-place results where the kernels allow them; the plain plan if the greedy
    // packing happens to do better without (it is a heuristic either way).
    let plain = memplan::plan(g)?;
    let shared = memplan::plan_with(g, &ops::in_place_operands)?;
    let plan = if shared.arena_bytes <= plain.arena_bytes {
        shared
    } else {
        plain
    };
    let name = opts.name.clone();
    let mut em = Em {
        g,
        opts,
        plan,
        pieces: BTreeSet::new(),
        kernels: BTreeMap::new(),
        data: String::new(),
        data_names: BTreeSet::new(),
        bind: HashMap::new(),
        folded: HashMap::new(),
    };
    // Dequantized constants are compile-time data (the interpreter's values), not
    // run-time float work.
    for n in &g.nodes {
        if let (Op::Dequantize, [x], [y]) = (&n.op, n.inputs.as_slice(), n.outputs.as_slice()) {
            let is_f32 = g
                .values
                .get(y.index())
                .is_some_and(|v| v.ty.dtype == DType::F32);
            if is_f32 && g.const_of(*x).is_some() {
                if let Some(vals) = em.real_values(*x) {
                    em.folded.insert(*y, vals);
                }
            }
        }
    }
    let bounds = Boundaries::find(g);
    let plain_ports = ports(g, None)?;
    let run = entry(&mut em, &name, "run", &plain_ports, &BTreeSet::new())?;
    let mut run_q = None;
    let mut q_ports = Vec::new();
    if let Some(b) = &bounds {
        q_ports = ports(g, Some(b))?;
        run_q = Some(entry(&mut em, &name, "run_quantized", &q_ports, &b.nodes)?);
    }

    let up = name.to_uppercase();
    let arena_bytes = em.plan.arena_bytes;
    let mut h = String::new();
    let _ = writeln!(
        h,
        "/* {name}.h: generated by qc-cgen (contract `{}`). Do not edit. */",
        opts.contract
    );
    let _ = writeln!(
        h,
        "#ifndef {up}_H\n#define {up}_H\n\n#include <stddef.h>\n#include <stdint.h>\n"
    );
    h.push_str("#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
    let _ = writeln!(
        h,
        "/** Bytes of the working memory (arena){}. */\n#define {up}_ARENA_BYTES {arena_bytes}\n",
        if opts.external_arena {
            " the caller passes to every call, 8-byte aligned"
        } else {
            ", a static buffer inside the model"
        }
    );
    let _ = writeln!(
        h,
        "#define {up}_NUM_INPUTS {}\n#define {up}_NUM_OUTPUTS {}\n",
        g.inputs.len(),
        g.outputs.len()
    );
    for (i, p) in g.inputs.iter().enumerate() {
        let ty = em.ty(p.value)?.clone();
        header_port(&mut h, &name, &format!("IN{i}"), &ty, &p.name, false);
        if let Some(b) = &bounds {
            let qt = em.ty(b.in_q[i])?.clone();
            header_port(&mut h, &name, &format!("IN{i}"), &qt, &p.name, true);
        }
        h.push('\n');
    }
    for (i, p) in g.outputs.iter().enumerate() {
        let ty = em.ty(p.value)?.clone();
        header_port(&mut h, &name, &format!("OUT{i}"), &ty, &p.name, false);
        if let Some(b) = &bounds {
            let qt = em.ty(b.out_q[i])?.clone();
            header_port(&mut h, &name, &format!("OUT{i}"), &qt, &p.name, true);
        }
        h.push('\n');
    }
    let ext = opts.external_arena;
    h.push_str(
        "/** Run the model: inputs, then outputs, in model order, as buffers of the element\n * \
         types and counts above. Returns 0 on success, 1 if a buffer pointer is NULL",
    );
    h.push_str(if ext {
        ", 2 if the arena is NULL or not 8-byte aligned. */\n"
    } else {
        ". */\n"
    });
    let _ = writeln!(h, "{};\n", signature(&name, "run", &plain_ports, ext));
    if bounds.is_some() {
        h.push_str(&format!(
            "/** Run the model on quantized buffers (the _Q_ element types above): no\n * \
             quantize/dequantize, no float work. Return codes as {name}_run. */\n"
        ));
        let _ = writeln!(h, "{};\n", signature(&name, "run_quantized", &q_ports, ext));
    }
    h.push_str("#ifdef __cplusplus\n}\n#endif\n\n");
    let _ = writeln!(h, "#endif /* {up}_H */");

    let mut c = String::new();
    let _ = writeln!(
        c,
        "/* {name}.c: generated by qc-cgen (contract `{}`). Do not edit. */",
        opts.contract
    );
    let _ = writeln!(c, "#include \"{name}.h\"\n#include <string.h>\n");
    for p in &em.pieces {
        c.push_str(p.source());
    }
    for src in em.kernels.values() {
        c.push_str(src);
    }
    c.push('\n');
    c.push_str(&em.data);
    if !ext {
        let _ = writeln!(
            c,
            "\n/* The arena: 8-byte aligned storage for every intermediate value. */\nstatic int64_t qc_arena[{}];\n",
            arena_bytes.div_ceil(8).max(1)
        );
    }
    c.push_str(&run);
    if let Some(r) = run_q {
        c.push('\n');
        c.push_str(&r);
    }
    Ok(CSource {
        name,
        header: h,
        source: c,
        arena_bytes,
        arena_lower_bound: em.plan.lower_bound,
        has_run_quantized: bounds.is_some(),
    })
}
