//! Emission helpers over Cranelift's `FunctionBuilder`: counted loops, element loads
//! and stores of every storage type, and the scalar quantize / dequantize sequences.
//!
//! **Invariants.**
//! - Indices and byte offsets are `i64`; pointers are the host's 64-bit pointer type
//!   (`compile` rejects other hosts).
//! - Memory accesses carry `notrap` only, never `aligned`: caller buffers passed to
//!   `run_into` have no alignment guarantee, and an `aligned` vector access could be
//!   folded into an instruction that faults on a misaligned address.
//! - [`E::quantize`] and [`E::dequantize`] reproduce `qc_qmath::quantize` /
//!   `qc_qmath::dequantize` bit for bit (one f32 division / multiply, round half to
//!   even, saturation, NaN to the zero point).

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, AbiParam, BlockArg, FuncRef, InstBuilder, MemFlagsData, Signature, Type, Value,
};
use cranelift_codegen::isa::TargetFrontendConfig;
use cranelift_frontend::{FunctionBuilder, Variable};
use qc_ir::QType;

use crate::funcs::{Callback, SYMBOLS};
use crate::Result;

pub(crate) const I64: Type = types::I64;
pub(crate) const I32: Type = types::I32;
pub(crate) const F32: Type = types::F32;
pub(crate) const F64: Type = types::F64;

/// Flags of every load and store (see the module invariants).
pub(crate) fn mf() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// A function body under construction.
pub(crate) struct E<'a> {
    pub b: FunctionBuilder<'a>,
    pub cbs: [FuncRef; SYMBOLS],
    pub cfg: TargetFrontendConfig,
}

/// How an elementwise kernel reads a real (f32) value from an operand.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Real {
    /// Raw f32 elements.
    F32,
    /// Quantized per tensor: `scale * (q - zero_point)`.
    Q { q: QType, scale: f32, zp: i32 },
}

impl<'a> E<'a> {
    /// Call the native function at `addr` (an `extern "C"` kernel taking only
    /// pointer-sized integer arguments and returning nothing) with `args`.
    pub fn call_addr(&mut self, addr: usize, args: &[Value]) {
        let mut sig = Signature::new(self.cfg.default_call_conv);
        for _ in args {
            sig.params.push(AbiParam::new(I64));
        }
        let sr = self.b.import_signature(sig);
        let f = self.ic(addr as i64);
        self.b.ins().call_indirect(sr, f, args);
    }

    pub fn ic(&mut self, v: i64) -> Value {
        self.b.ins().iconst(I64, v)
    }

    pub fn i32c(&mut self, v: i32) -> Value {
        self.b.ins().iconst(I32, i64::from(v))
    }

    pub fn f32c(&mut self, v: f32) -> Value {
        self.b.ins().f32const(v)
    }

    pub fn add(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().iadd(a, b)
    }

    pub fn addi(&mut self, a: Value, imm: i64) -> Value {
        if imm == 0 {
            a
        } else {
            self.b.ins().iadd_imm_s(a, imm)
        }
    }

    pub fn muli(&mut self, a: Value, imm: i64) -> Value {
        match imm {
            1 => a,
            _ => self.b.ins().imul_imm_s(a, imm),
        }
    }

    /// `base + idx * scale + off` (bytes).
    pub fn addr(&mut self, base: Value, idx: Value, scale: i64, off: i64) -> Value {
        let s = self.muli(idx, scale);
        let a = self.add(base, s);
        self.addi(a, off)
    }

    pub fn var(&mut self, ty: Type, init: Value) -> Variable {
        let v = self.b.declare_var(ty);
        self.b.def_var(v, init);
        v
    }

    /// `for i in 0..n { body(i) }` with `i: i64`. Bodies may create inner loops.
    pub fn for_n(
        &mut self,
        n: usize,
        mut body: impl FnMut(&mut Self, Value) -> Result<()>,
    ) -> Result<()> {
        match n {
            0 => Ok(()),
            1 => {
                let z = self.ic(0);
                body(self, z)
            }
            _ => {
                let zero = self.ic(0);
                let var = self.var(I64, zero);
                let lp = self.b.create_block();
                let exit = self.b.create_block();
                self.b.ins().jump(lp, &[]);
                self.b.switch_to_block(lp);
                let i = self.b.use_var(var);
                body(self, i)?;
                let next = self.b.ins().iadd_imm_s(i, 1);
                self.b.def_var(var, next);
                let c = self
                    .b
                    .ins()
                    .icmp_imm_s(IntCC::SignedLessThan, next, n as i64);
                self.b
                    .ins()
                    .brif(c, lp, &[] as &[BlockArg], exit, &[] as &[BlockArg]);
                self.b.switch_to_block(exit);
                Ok(())
            }
        }
    }

    pub fn call(&mut self, cb: Callback, x: Value) -> Value {
        let f = self.cbs[cb as usize];
        let inst = self.b.ins().call(f, &[x]);
        self.b.inst_results(inst)[0]
    }

    /// `memcpy(dst, src, bytes)`.
    pub fn memcpy(&mut self, dst: Value, src: Value, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let n = self.ic(bytes as i64);
        self.b.call_memcpy(self.cfg, dst, src, n);
    }

    // ---- element access ----

    /// Load a quantized storage element at `addr` as i32 (I32 storage as stored).
    pub fn load_q(&mut self, q: QType, addr: Value, off: i32) -> Value {
        let ins = self.b.ins();
        match q {
            QType::U8 => ins.uload8(I32, mf(), addr, off),
            QType::I8 => ins.sload8(I32, mf(), addr, off),
            QType::U16 => ins.uload16(I32, mf(), addr, off),
            QType::I16 => ins.sload16(I32, mf(), addr, off),
            QType::I32 => ins.load(I32, mf(), addr, off),
        }
    }

    /// Store the low bits of an i32 as a quantized storage element.
    pub fn store_q(&mut self, q: QType, v: Value, addr: Value, off: i32) {
        let ins = self.b.ins();
        match q {
            QType::U8 | QType::I8 => ins.istore8(mf(), v, addr, off),
            QType::U16 | QType::I16 => ins.istore16(mf(), v, addr, off),
            QType::I32 => ins.store(mf(), v, addr, off),
        };
    }

    pub fn load_f32(&mut self, addr: Value, off: i32) -> Value {
        self.b.ins().load(F32, mf(), addr, off)
    }

    pub fn store(&mut self, v: Value, addr: Value, off: i32) {
        self.b.ins().store(mf(), v, addr, off);
    }

    /// Load element `idx` of a real operand as f32.
    pub fn load_real(&mut self, r: Real, base: Value, idx: Value) -> Value {
        match r {
            Real::F32 => {
                let a = self.addr(base, idx, 4, 0);
                self.load_f32(a, 0)
            }
            Real::Q { q, scale, zp } => {
                let a = self.addr(base, idx, qsize(q), 0);
                let v = self.load_q(q, a, 0);
                self.dequantize(v, q, scale, zp)
            }
        }
    }

    /// Store an f32 as element `idx` of a real result (quantizing if needed).
    pub fn store_real(&mut self, r: Real, base: Value, idx: Value, x: Value) {
        match r {
            Real::F32 => {
                let a = self.addr(base, idx, 4, 0);
                self.store(x, a, 0);
            }
            Real::Q { q, scale, zp } => {
                let v = self.quantize(x, q, scale, zp);
                let a = self.addr(base, idx, qsize(q), 0);
                self.store_q(q, v, a, 0);
            }
        }
    }

    // ---- quantization arithmetic ----

    /// `qc_qmath::dequantize`: `(q - zp) as f32 * scale`, `q` as loaded by [`E::load_q`].
    pub fn dequantize(&mut self, v: Value, q: QType, scale: f32, zp: i32) -> Value {
        let d = if q == QType::I32 {
            // The difference may leave i32: subtract in i64, convert from i64.
            let w = self.b.ins().sextend(I64, v);
            let d = self.b.ins().iadd_imm_s(w, -i64::from(zp));
            self.b.ins().fcvt_from_sint(F32, d)
        } else {
            let d = self.b.ins().iadd_imm_s(v, -i64::from(zp));
            self.b.ins().fcvt_from_sint(F32, d)
        };
        let s = self.f32c(scale);
        self.b.ins().fmul(d, s)
    }

    /// `qc_qmath::quantize`: `sat(round_half_even(x / scale) + zp)` as an i32 storage value.
    pub fn quantize(&mut self, x: Value, q: QType, scale: f32, zp: i32) -> Value {
        let s = self.f32c(scale);
        let d = self.b.ins().fdiv(x, s);
        let r = self.b.ins().nearest(d);
        self.round_to_storage(r, q, zp)
    }

    /// An already rounded f32 to `sat(r + zp)` in `q` (NaN counts as 0, as `as i64`).
    pub fn round_to_storage(&mut self, r: Value, q: QType, zp: i32) -> Value {
        // `fcvt_to_sint_sat` saturates like Rust's `as`; clamping to ±2^40 in i64 keeps
        // `+ zp` from overflowing and changes nothing once saturated into 32 bits.
        let i = self.b.ins().fcvt_to_sint_sat(I64, r);
        let i = self.clamp_i64(i, -(1 << 40), 1 << 40);
        let i = self.b.ins().iadd_imm_s(i, i64::from(zp));
        let i = self.clamp_i64(i, q.min(), q.max());
        self.b.ins().ireduce(I32, i)
    }

    pub fn clamp_i64(&mut self, v: Value, lo: i64, hi: i64) -> Value {
        let l = self.ic(lo);
        let h = self.ic(hi);
        let v = self.b.ins().smin(v, h);
        self.b.ins().smax(v, l)
    }

    // ---- float helpers with the interpreter's comparison forms ----

    /// `if x < c { a } else { b }`.
    pub fn sel_lt(&mut self, x: Value, c: Value, a: Value, b: Value) -> Value {
        let k = self.b.ins().fcmp(FloatCC::LessThan, x, c);
        self.b.ins().select(k, a, b)
    }

    /// `if x > c { a } else { b }`.
    pub fn sel_gt(&mut self, x: Value, c: Value, a: Value, b: Value) -> Value {
        let k = self.b.ins().fcmp(FloatCC::GreaterThan, x, c);
        self.b.ins().select(k, a, b)
    }

    /// `qc_ir::real::relu`.
    pub fn relu(&mut self, x: Value) -> Value {
        let z = self.f32c(0.0);
        self.sel_lt(x, z, z, x)
    }

    /// `qc_ir::real::clip`.
    pub fn clip(&mut self, x: Value, lo: f32, hi: f32) -> Value {
        let l = self.f32c(lo);
        let h = self.f32c(hi);
        let y = self.sel_lt(x, l, l, x);
        self.sel_gt(y, h, h, y)
    }

    /// `qc_ir::real::hard_sigmoid`.
    pub fn hard_sigmoid(&mut self, x: Value, alpha: f32, beta: f32) -> Value {
        let a = self.f32c(alpha);
        let bb = self.f32c(beta);
        let v = self.b.ins().fmul(x, a);
        let v = self.b.ins().fadd(v, bb);
        let one = self.f32c(1.0);
        let v = self.sel_gt(v, one, one, v);
        let z = self.f32c(0.0);
        self.sel_lt(v, z, z, v)
    }

    /// `funcs::act`.
    pub fn act(&mut self, a: qc_ir::Activation, x: Value) -> Value {
        match a {
            qc_ir::Activation::None => x,
            qc_ir::Activation::Relu => self.relu(x),
            qc_ir::Activation::Clip { min, max } => self.clip(x, min, max),
        }
    }
}

/// Bytes of one storage element.
pub(crate) fn qsize(q: QType) -> i64 {
    match q {
        QType::U8 | QType::I8 => 1,
        QType::U16 | QType::I16 => 2,
        QType::I32 => 4,
    }
}
