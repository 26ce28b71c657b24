//! qc-jit: the Cranelift JIT backend. A [`qc_ir::Graph`] becomes host machine code.
//!
//! **Structure of the generated code.** [`compile`] emits one Cranelift function per
//! node (its *kernel*, specialized to the node's static shapes and quantization
//! parameters) and one *entry* function that calls the kernels in node order. A
//! kernel takes one pointer per operand, one per result and one scratch pointer; the
//! entry computes them from the caller's input/output pointer tables, the arena base
//! (plus the offsets of the memory plan, `qc_passes::memplan`) and the addresses of
//! constant data owned by the [`CompiledModel`].
//!
//! **Invariants.**
//! - The graph is verified before lowering, so every type's shape is the one
//!   inference gives; kernels index within those shapes only.
//! - Node results live in the arena at their planned offset, except graph outputs,
//!   which the kernel writes straight into the caller's output buffer. A node's
//!   scratch (packed operands, padded inputs) is arena space live only during that
//!   node. No result aliases an operand.
//! - Quantized results equal `qc-interp`'s bit for bit under the same rounding
//!   contract; float results equal them up to summation order (conv, gemm, matmul)
//!   and are otherwise computed by the same operations in the same order.
//! - Conv, gemm and matmul share one GEMM engine (`linear`): weights packed at
//!   compile time, activations packed (im2col) per call into scratch, 4×8 register
//!   tiles of 128-bit vectors (int8: i16 pairs through the `pmaddwd` pattern; f32:
//!   `fmul` + `fadd` in k order), scalar tails for sizes that are not multiples of
//!   the tile. Everything else is scalar generated code (module `lower`).
//! - [`KernelSet::Auto`] lets quantized GEMM tiles call native `std::arch`
//!   micro-kernels (module `kernels`; AVX-512 VNNI, AVX2) chosen by run-time feature
//!   detection; [`KernelSet::Cranelift`] keeps everything in generated code. Both
//!   give the same bits.
//! - Every op is matched exhaustively (no `_ =>` arm); an op or type combination
//!   without a lowering is [`Error::Unsupported`] naming the node and op.
//! - [`CompiledModel`] is `Send + Sync`: the code and constants are immutable after
//!   compilation, and each call takes an arena from a pool behind a mutex, so
//!   concurrent calls never share mutable memory. After the first call per thread of
//!   concurrency, [`CompiledModel::run_into`] allocates nothing.

mod emit;
mod funcs;
mod kernels;
mod linear;
mod lower;
mod mem;
mod ops;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use cranelift_codegen::ir::{types, AbiParam, InstBuilder, Signature, Value};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module};
use qc_ir::{Graph, NodeId, Tensor, TensorData, TensorType, ValueDef, ValueId};
use qc_passes::memplan::{self, Lifetime, Request};

use crate::emit::{mf, E, I64};
use crate::funcs::Callback;
use crate::mem::{Arena, ConstPool};

pub use qc_qmath::Contract;

/// Which implementation the innermost GEMM/conv tiles use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelSet {
    /// The best available: native micro-kernels chosen by CPU feature detection for
    /// quantized tiles (AVX-512 VNNI, AVX2), generated code elsewhere.
    #[default]
    Auto,
    /// Everything in Cranelift-generated code (128-bit SIMD).
    Cranelift,
}

/// Compilation options.
#[derive(Clone, Debug, Default)]
pub struct JitOptions {
    /// Rounding contract of requantization (default `float`).
    pub contract: Contract,
    pub kernels: KernelSet,
    /// Time every kernel: the entry function records a time stamp before each node
    /// (see [`CompiledModel::profile`]). Costs a call per node; off for production.
    pub profile: bool,
}

/// What compilation produced and how long it took.
#[derive(Clone, Debug, Default)]
pub struct CompileStats {
    pub compile_time: Duration,
    /// Machine code bytes of all kernels and the entry function.
    pub code_bytes: usize,
    /// Bytes of the arena (activations and scratch) one call needs.
    pub arena_bytes: usize,
    /// The arena's lower bound: the most bytes live at one node.
    pub arena_lower_bound: usize,
    /// Bytes of constant data (weights as packed, tables).
    pub const_bytes: usize,
    /// Number of kernels (nodes).
    pub kernels: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("node {node} ({op} '{name}'): not supported by the JIT: {msg}")]
    Unsupported {
        node: NodeId,
        op: &'static str,
        name: String,
        msg: String,
    },
    /// A Cranelift failure: always a compiler bug or an unsupported host.
    #[error("code generation: {0}")]
    Codegen(String),
    #[error("graph: {0}")]
    Graph(String),
    #[error("model has {expected} inputs, {got} given")]
    InputCount { expected: usize, got: usize },
    #[error("input {index} ('{name}'): expected {expected}, got {got}")]
    InputMismatch {
        index: usize,
        name: String,
        expected: String,
        got: String,
    },
    #[error("model has {expected} outputs, {got} buffers given")]
    OutputCount { expected: usize, got: usize },
    #[error("output {index} ('{name}'): expected a buffer of {expected} bytes, got {got}")]
    OutputMismatch {
        index: usize,
        name: String,
        expected: usize,
        got: usize,
    },
    #[error(transparent)]
    Passes(#[from] qc_passes::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn cg<E: std::fmt::Display>(e: E) -> Error {
    Error::Codegen(e.to_string())
}

/// Where a value's bytes are at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loc {
    /// Offset in the arena.
    Arena(usize),
    /// The caller's buffer of graph input `i`.
    Input(usize),
    /// The caller's buffer of graph output `i`.
    Output(usize),
    /// An address of constant data owned by the model.
    Const(usize),
}

/// The generated code, kept alive (and freed) with the model.
struct Code {
    module: Option<JITModule>,
}

impl Drop for Code {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: the only pointers into this module's memory are the entry
            // pointer of the `CompiledModel` that owns this `Code`; it is being
            // dropped, so no call can be running or start after this.
            unsafe { m.free_memory() };
        }
    }
}

/// A compiled model. `Send + Sync`; see the crate invariants.
pub struct CompiledModel {
    entry: usize,
    // Kept for their addresses, baked into the code.
    _consts: ConstPool,
    _code: Mutex<Code>,
    arenas: Mutex<Vec<Arena>>,
    arena_bytes: usize,
    input_types: Vec<TensorType>,
    input_names: Vec<String>,
    output_types: Vec<TensorType>,
    output_names: Vec<String>,
    input_bytes: Vec<usize>,
    output_bytes: Vec<usize>,
    stats: CompileStats,
    /// Per node: (op name, node name), kept for profiles.
    node_labels: Vec<(&'static str, String)>,
    profiled: bool,
}

/// Time spent in one node's kernel during a profiled run.
#[derive(Clone, Debug)]
pub struct NodeTime {
    pub node: usize,
    pub op: &'static str,
    pub name: String,
    pub time: Duration,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CompiledModel>();
};

type EntryFn = extern "C" fn(*const usize, *const usize, *mut u8);

fn type_str(t: &TensorType) -> String {
    format!("{}{}", t.dtype, t.shape)
}

impl CompiledModel {
    pub fn input_types(&self) -> &[TensorType] {
        &self.input_types
    }

    pub fn output_types(&self) -> &[TensorType] {
        &self.output_types
    }

    pub fn stats(&self) -> &CompileStats {
        &self.stats
    }

    /// Run on tensors (in graph input order); results in graph output order.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        if inputs.len() != self.input_types.len() {
            return Err(Error::InputCount {
                expected: self.input_types.len(),
                got: inputs.len(),
            });
        }
        let mut bytes = Vec::with_capacity(inputs.len());
        for (index, (t, ty)) in inputs.iter().zip(&self.input_types).enumerate() {
            if t.dtype() != ty.dtype || t.dims() != ty.shape.dims() {
                return Err(Error::InputMismatch {
                    index,
                    name: self.input_names[index].clone(),
                    expected: type_str(ty),
                    got: format!("{}{}", t.dtype(), t.shape()),
                });
            }
            bytes.push(t.data().to_le_bytes());
        }
        let ins: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
        let mut outs: Vec<Vec<u8>> = self.output_bytes.iter().map(|&n| vec![0u8; n]).collect();
        {
            let mut refs: Vec<&mut [u8]> = outs.iter_mut().map(|b| b.as_mut_slice()).collect();
            self.run_into(&ins, &mut refs)?;
        }
        outs.into_iter()
            .zip(&self.output_types)
            .map(|(b, ty)| {
                let d = TensorData::from_le_bytes(ty.dtype, &b).map_err(cg)?;
                Tensor::new(ty.shape.clone(), d).map_err(cg)
            })
            .collect()
    }

    /// Run once on tensors and return, beside the outputs, the time each node's kernel
    /// took (in node order). Needs a model compiled with [`JitOptions::profile`].
    pub fn profile(&self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Vec<NodeTime>)> {
        if !self.profiled {
            return Err(Error::Codegen(
                "profile: the model was compiled without JitOptions::profile".into(),
            ));
        }
        funcs::MARKS.with(|m| {
            if let Ok(mut m) = m.try_borrow_mut() {
                m.clear();
            }
        });
        let outs = self.run(inputs)?;
        let marks = funcs::MARKS.with(|m| m.try_borrow().map(|m| m.clone()).unwrap_or_default());
        let mut times = Vec::with_capacity(self.node_labels.len());
        for w in marks.windows(2) {
            let (i, t0) = w[0];
            let (_, t1) = w[1];
            let Some((op, name)) = usize::try_from(i)
                .ok()
                .and_then(|i| self.node_labels.get(i))
            else {
                continue;
            };
            times.push(NodeTime {
                node: i as usize,
                op,
                name: name.clone(),
                time: t1.saturating_duration_since(t0),
            });
        }
        Ok((outs, times))
    }

    /// Run on raw little-endian element bytes: `inputs[i]` must hold exactly the bytes
    /// of input `i`'s type, `outputs[j]` exactly those of output `j`'s type. No
    /// allocation in steady state.
    pub fn run_into(&self, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<()> {
        if inputs.len() != self.input_bytes.len() {
            return Err(Error::InputCount {
                expected: self.input_bytes.len(),
                got: inputs.len(),
            });
        }
        if outputs.len() != self.output_bytes.len() {
            return Err(Error::OutputCount {
                expected: self.output_bytes.len(),
                got: outputs.len(),
            });
        }
        for (index, (b, &n)) in inputs.iter().zip(&self.input_bytes).enumerate() {
            if b.len() != n {
                return Err(Error::InputMismatch {
                    index,
                    name: self.input_names[index].clone(),
                    expected: format!("{} ({n} bytes)", type_str(&self.input_types[index])),
                    got: format!("{} bytes", b.len()),
                });
            }
        }
        for (index, (b, &n)) in outputs.iter().zip(&self.output_bytes).enumerate() {
            if b.len() != n {
                return Err(Error::OutputMismatch {
                    index,
                    name: self.output_names[index].clone(),
                    expected: n,
                    got: b.len(),
                });
            }
        }
        let popped = self.arenas.lock().ok().and_then(|mut v| v.pop());
        let mut arena = match popped {
            Some(a) => a,
            None => Arena::new(self.arena_bytes, inputs.len(), outputs.len()),
        };
        for (slot, b) in arena.inputs.iter_mut().zip(inputs) {
            *slot = b.as_ptr() as usize;
        }
        for (slot, b) in arena.outputs.iter_mut().zip(outputs.iter_mut()) {
            *slot = b.as_mut_ptr() as usize;
        }
        // SAFETY: `entry` is the address of the finalized entry function, whose
        // signature is `EntryFn` (three pointer arguments, the host's C calling
        // convention, no result); the module holding it lives as long as `self`.
        let f: EntryFn = unsafe { std::mem::transmute::<usize, EntryFn>(self.entry) };
        // The code reads exactly `input_bytes[i]` bytes behind input pointer `i`,
        // writes exactly `output_bytes[j]` bytes behind output pointer `j` (both
        // checked above), and uses `arena_bytes` bytes of the arena, which is that
        // large: every index in the kernels is within the static shapes they were
        // compiled for.
        f(
            arena.inputs.as_ptr(),
            arena.outputs.as_ptr(),
            arena.mem.as_mut_ptr().cast::<u8>(),
        );
        if let Ok(mut v) = self.arenas.lock() {
            v.push(arena);
        }
        Ok(())
    }
}

/// Compile `g` to host machine code.
pub fn compile(g: &Graph, opts: &JitOptions) -> Result<CompiledModel> {
    let t0 = Instant::now();
    qc_ir::verify::verify(g).map_err(|e| Error::Graph(e.to_string()))?;

    let mut flags = settings::builder();
    for (k, v) in [
        ("opt_level", "speed"),
        ("use_colocated_libcalls", "false"),
        ("is_pic", "false"),
    ] {
        flags.set(k, v).map_err(cg)?;
    }
    let isa = cranelift_native::builder()
        .map_err(|m| Error::Codegen(format!("host not supported: {m}")))?
        .finish(settings::Flags::new(flags))
        .map_err(cg)?;
    if isa.pointer_type() != types::I64 {
        return Err(Error::Codegen("the JIT needs a 64-bit host".into()));
    }
    let mut jb = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    for (name, addr) in funcs::symbols() {
        jb.symbol(name, addr);
    }
    let mut module = JITModule::new(jb);
    let call_conv = module.isa().default_call_conv();

    let mut cb_sig = Signature::new(call_conv);
    cb_sig.params.push(AbiParam::new(types::F32));
    cb_sig.returns.push(AbiParam::new(types::F32));
    let mut cb_ids = Vec::new();
    for cb in Callback::ALL {
        cb_ids.push(
            module
                .declare_function(cb.symbol(), Linkage::Import, &cb_sig)
                .map_err(cg)?,
        );
    }

    let mut pool = ConstPool::default();
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    let mut code_bytes = 0usize;

    // Constant values passed to kernels as raw operands: one copy per constant.
    let mut const_addr: Vec<Option<usize>> = vec![None; g.consts.len()];

    // ---- kernels ----
    let mut kernels: Vec<(FuncId, usize)> = Vec::with_capacity(g.nodes.len());
    for (id, node) in g.iter_nodes() {
        let n_params = node.inputs.len() + node.outputs.len() + 1;
        let mut sig = Signature::new(call_conv);
        for _ in 0..n_params {
            sig.params.push(AbiParam::new(I64));
        }
        let fid = module
            .declare_function(&format!("k{}", id.0), Linkage::Local, &sig)
            .map_err(cg)?;
        ctx.func.signature = sig;
        let cbs = cb_ids
            .iter()
            .map(|&c| module.declare_func_in_func(c, &mut ctx.func))
            .collect::<Vec<_>>();
        let cbs: [_; funcs::SYMBOLS] = cbs
            .try_into()
            .map_err(|_| Error::Codegen("callback table".into()))?;
        let scratch = {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let blk = b.create_block();
            b.append_block_params_for_function_params(blk);
            b.switch_to_block(blk);
            let params: Vec<Value> = b.block_params(blk).to_vec();
            let mut e = E {
                b,
                cbs,
                cfg: module.target_config(),
            };
            let n_in = node.inputs.len();
            let ptrs = lower::Ptrs {
                ins: params[..n_in].to_vec(),
                outs: params[n_in..n_params - 1].to_vec(),
                scratch: params[n_params - 1],
            };
            let mut cx = lower::Cx {
                g,
                id,
                node,
                opts,
                pool: &mut pool,
            };
            let scratch = lower::lower(&mut cx, &mut e, &ptrs)?;
            e.b.ins().return_(&[]);
            e.b.seal_all_blocks();
            e.b.finalize(module.target_config());
            scratch
        };
        module
            .define_function(fid, &mut ctx)
            .map_err(|e| Error::Codegen(format!("node {id} ({}): {e:?}", node.op.name())))?;
        code_bytes += ctx.compiled_code().map_or(0, |c| c.code_buffer().len());
        module.clear_context(&mut ctx);
        kernels.push((fid, scratch));
    }

    // ---- memory plan: values plus per-node scratch ----
    let mut reqs: Vec<(Option<ValueId>, Request)> = memplan::requests(g)?
        .into_iter()
        .map(|(v, r)| (Some(v), r))
        .collect();
    for (i, &(_, s)) in kernels.iter().enumerate() {
        if s > 0 {
            reqs.push((
                None,
                Request {
                    life: Lifetime { first: i, last: i },
                    size: s,
                },
            ));
        }
    }
    let only: Vec<Request> = reqs.iter().map(|(_, r)| *r).collect();
    let packing = memplan::pack(&only)?;
    let mut loc: Vec<Option<Loc>> = vec![None; g.values.len()];
    let mut scratch_off: Vec<usize> = vec![0; g.nodes.len()];
    for ((v, r), &off) in reqs.iter().zip(&packing.offsets) {
        match v {
            Some(v) => loc[v.index()] = Some(Loc::Arena(off)),
            None => scratch_off[r.life.first] = off,
        }
    }
    for (i, p) in g.inputs.iter().enumerate() {
        loc[p.value.index()] = Some(Loc::Input(i));
    }
    let mut out_copies: Vec<(usize, ValueId)> = Vec::new();
    for (i, p) in g.outputs.iter().enumerate() {
        let v = p.value;
        match g.value(v).def {
            ValueDef::Node { .. } if loc[v.index()].is_none() => {
                loc[v.index()] = Some(Loc::Output(i))
            }
            _ => out_copies.push((i, v)),
        }
    }

    // ---- entry ----
    let mut sig = Signature::new(call_conv);
    for _ in 0..3 {
        sig.params.push(AbiParam::new(I64));
    }
    let entry_id = module
        .declare_function("qc_entry", Linkage::Local, &sig)
        .map_err(cg)?;
    ctx.func.signature = sig;
    let krefs: Vec<_> = kernels
        .iter()
        .map(|&(f, _)| module.declare_func_in_func(f, &mut ctx.func))
        .collect();
    let mark_ref = if opts.profile {
        let mut msig = Signature::new(call_conv);
        msig.params.push(AbiParam::new(I64));
        let id = module
            .declare_function(funcs::PROFILE_MARK, Linkage::Import, &msig)
            .map_err(cg)?;
        Some(module.declare_func_in_func(id, &mut ctx.func))
    } else {
        None
    };
    {
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let blk = b.create_block();
        b.append_block_params_for_function_params(blk);
        b.switch_to_block(blk);
        let p = b.block_params(blk).to_vec();
        let (in_tab, out_tab, arena) = (p[0], p[1], p[2]);
        let mut ptr_of =
            |b: &mut FunctionBuilder, pool: &mut ConstPool, v: ValueId| -> Result<Value> {
                let l = match loc[v.index()] {
                    Some(l) => l,
                    None => match g.value(v).def {
                        ValueDef::Const(c) => {
                            let addr = match const_addr[c.index()] {
                                Some(a) => a,
                                None => {
                                    let t = g
                                        .consts
                                        .get(c.index())
                                        .ok_or_else(|| Error::Graph(format!("constant {c}")))?;
                                    let a = pool.add(&t.data().to_le_bytes());
                                    const_addr[c.index()] = Some(a);
                                    a
                                }
                            };
                            Loc::Const(addr)
                        }
                        _ => return Err(Error::Graph(format!("value {v} has no location"))),
                    },
                };
                Ok(match l {
                    Loc::Arena(off) => b.ins().iadd_imm_s(arena, off as i64),
                    Loc::Input(i) => b.ins().load(I64, mf(), in_tab, (8 * i) as i32),
                    Loc::Output(i) => b.ins().load(I64, mf(), out_tab, (8 * i) as i32),
                    Loc::Const(a) => b.ins().iconst(I64, a as i64),
                })
            };
        for (i, node) in g.nodes.iter().enumerate() {
            let mut args = Vec::with_capacity(node.inputs.len() + node.outputs.len() + 1);
            for &v in node.inputs.iter().chain(&node.outputs) {
                args.push(ptr_of(&mut b, &mut pool, v)?);
            }
            args.push(b.ins().iadd_imm_s(arena, scratch_off[i] as i64));
            if let Some(m) = mark_ref {
                let k = b.ins().iconst(I64, i as i64);
                b.ins().call(m, &[k]);
            }
            b.ins().call(krefs[i], &args);
        }
        if let Some(m) = mark_ref {
            let k = b.ins().iconst(I64, g.nodes.len() as i64);
            b.ins().call(m, &[k]);
        }
        for &(i, v) in &out_copies {
            let src = ptr_of(&mut b, &mut pool, v)?;
            let dst = b.ins().load(I64, mf(), out_tab, (8 * i) as i32);
            let bytes = g
                .value(v)
                .ty
                .size_bytes()
                .map_err(|e| Error::Graph(e.to_string()))?;
            if bytes > 0 {
                let n = b.ins().iconst(I64, bytes as i64);
                b.call_memcpy(module.target_config(), dst, src, n);
            }
        }
        b.ins().return_(&[]);
        b.seal_all_blocks();
        b.finalize(module.target_config());
    }
    module
        .define_function(entry_id, &mut ctx)
        .map_err(|e| Error::Codegen(format!("entry: {e:?}")))?;
    code_bytes += ctx.compiled_code().map_or(0, |c| c.code_buffer().len());
    module.clear_context(&mut ctx);
    module.finalize_definitions().map_err(cg)?;
    let entry = module.get_finalized_function(entry_id) as usize;

    let tys = |ports: &[qc_ir::Port]| -> Vec<TensorType> {
        ports.iter().map(|p| g.value(p.value).ty.clone()).collect()
    };
    let input_types = tys(&g.inputs);
    let output_types = tys(&g.outputs);
    let bytes = |ts: &[TensorType]| -> Result<Vec<usize>> {
        ts.iter()
            .map(|t| t.size_bytes().map_err(|e| Error::Graph(e.to_string())))
            .collect()
    };
    let input_bytes = bytes(&input_types)?;
    let output_bytes = bytes(&output_types)?;
    let stats = CompileStats {
        compile_time: t0.elapsed(),
        code_bytes,
        arena_bytes: packing.arena_bytes,
        arena_lower_bound: packing.lower_bound,
        const_bytes: pool.total_bytes(),
        kernels: g.nodes.len(),
    };
    Ok(CompiledModel {
        entry,
        _consts: pool,
        _code: Mutex::new(Code {
            module: Some(module),
        }),
        arenas: Mutex::new(Vec::new()),
        arena_bytes: packing.arena_bytes,
        input_types,
        input_names: g.inputs.iter().map(|p| p.name.clone()).collect(),
        output_types,
        output_names: g.outputs.iter().map(|p| p.name.clone()).collect(),
        input_bytes,
        output_bytes,
        stats,
        node_labels: g
            .nodes
            .iter()
            .map(|n| (n.op.name(), n.name.clone()))
            .collect(),
        profiled: opts.profile,
    })
}
