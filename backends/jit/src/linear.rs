//! Conv, gemm and matmul as one GEMM engine.
//!
//! Every op here becomes `C[m][n] = init + Σ_k A[m][k] · B[k][n]` followed by an
//! epilogue per element, where rows `m` are output channels (weights, packed at
//! compile time into `A`) and columns `n` are output positions (activations, packed
//! at run time into `B` in the kernel's scratch — im2col for conv).
//!
//! **Quantized** (8-bit `x` per tensor, 8-bit `w` per tensor or per output channel):
//! `A` holds `w - zw[c]` and `B` holds `x - zx` (zero for padding taps), both as i16 in
//! *pairs along k*: `A[m][k/2][2]`, `B[k/2][n][2]`. Accumulation is wrapping i32, as in
//! the interpreter; `(x - zx)` and `(w - zw)` lie in `[-255, 255]`, so every product
//! and every pair sum is exact, and the SIMD kernel's `pmaddwd` (i16 pairs multiplied
//! and added into i32) computes the same sums. The epilogue requantizes with the
//! per-channel `qc_qmath::Requantizer` parameters (stored in a table of
//! [`RECORD`]-byte records) under the chosen contract, then clamps to the fused
//! activation's quantized bounds.
//!
//! **Float**: `A` is `f32[m][k]`, `B` is `f32[k][n]`; each output starts from its
//! init (conv bias) and adds `a * b` in k order — the interpreter's order for conv
//! and matmul — so only gemm with `trans_b` (the interpreter's dot product uses 8
//! partial sums) differs by rounding.
//!
//! **Tiles.** The innermost tile is either Cranelift code ([`MR`]×[`NR`], 128-bit) or,
//! under `KernelSet::Auto` on a host that has one, a native micro-kernel from
//! `kernels` (chosen once per compilation, passed around as data): the generated loop
//! nest calls it per `mr × nr` tile through `call_indirect` on its address, the kernel
//! leaves the tile's i32 sums in scratch, and the generated epilogue finishes them —
//! the same epilogue either way, so both paths produce the same bits. Quantized conv
//! on a host with `vpdpbusd` uses the *quad* form (u8 × i8 quads, zero-point
//! correction folded into the bias; exactness argued at `quad_setup`) when every
//! `w - zw` fits i8 and the bias is constant; otherwise the pair form above.
//! Depthwise 2-D conv (one input channel and at most 4 outputs per group) with the
//! native plane kernel skips the GEMM: the kernel sums every tap of a channel from
//! the input plane (exactness argued in `kernels::dw_plane`), groups of channels per
//! call, and the epilogue finishes them.
//!
//! `B`'s columns are padded to a multiple of the tile width (and of 16); padding
//! columns (zero or stale scratch) only feed accumulators whose stores are skipped.
//! Quantized conv packs `B` without per-element bounds checks (see `im2col_raw`),
//! and a 1×1, stride-1, unpadded conv reads its input directly (no im2col).

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, Endianness, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::Variable;
use qc_ir::{Activation, ConvAttrs, GemmAttrs, QType, QuantParams, Tensor, TensorType};
use qc_qmath::{Contract, Requantizer};

use crate::emit::{mf, E, F32, I32, I64};
use crate::kernels::{self, PairTile};
use crate::lower::{numel, Cx, Ptrs};
use crate::Result;

/// Columns per tile (two 128-bit vectors of i32 or f32).
pub(crate) const NR: usize = 8;
/// Rows per tile.
pub(crate) const MR: usize = 4;
/// Bytes of one per-channel epilogue record: eight i32 words `[m as f32 bits, zp, lo,
/// hi, …]` where `lo`, `hi` are the clamp bounds of the fused activation (inside the
/// storage range). Words 4–7 depend on the contract: the fixed contracts' `[fixed
/// multiplier, left shift, right shift, rounding half]`; under `float`, the native
/// fused epilogue's precomputed `[(hi - zp) as f32 bits, zp, lo, hi]` with the last
/// three as i16 pairs (`v | v << 16`, each half the 16-bit `v`).
pub(crate) const RECORD: usize = 32;

/// `v` in both i16 halves of a record word.
fn i16_pair(v: i32) -> i32 {
    let h = v as u16 as u32;
    (h | h << 16) as i32
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Quantized: activations of storage `xq` with zero point `zx`.
    Q {
        xq: QType,
        zx: i32,
    },
    F,
}

/// What happens to the accumulators.
#[derive(Clone, Copy, Debug)]
enum Epi {
    /// Requantize (records at `table`), store as `q`.
    Q {
        table: usize,
        q: QType,
        contract: Contract,
    },
    /// Float result of quantized operands: `acc as f32 * scale[c]`, activation.
    QF { scales: usize, act: Activation },
    /// Float: `acc * alpha`, `+ c * beta`, activation.
    F {
        alpha: f32,
        beta: f32,
        act: Activation,
    },
}

/// A strided element source: pointer, row stride, column stride (elements).
#[derive(Clone, Copy, Debug)]
struct Strided {
    ptr: Value,
    sm: i64,
    sn: i64,
}

/// One GEMM: sizes, packed operands, output mapping.
struct Job {
    m: usize,
    n: usize,
    kp: usize,
    k: usize,
    np: usize,
    /// Address of packed `A` for these rows.
    a: usize,
    /// Packed `B` (scratch).
    b: Value,
    out: Strided,
    /// Added before the epilogue: the bias (i32 quantized / f32 float init).
    init: Option<Strided>,
    /// Float gemm's `C` (added after alpha).
    post: Option<Strided>,
    /// Channel index of row 0 in the epilogue tables.
    row0: usize,
    /// The native tile kernel and its output buffer (scratch), if one is used.
    native: Option<(PairTile, Value)>,
    /// `B` packed in panels of the native tile's width (`quad_pack` with a panel): the
    /// `kp` steps of one tile's columns are contiguous, `nr · 4` bytes apart, instead of
    /// `np · 4` bytes apart (one page apart for wide images).
    b_panel: bool,
    /// Implicit-GEMM convolution (`kernels::quad_taps`): the tap offset table's address,
    /// the tap count, the quads per tap and the kernel's address. `kp` is then
    /// `taps · quads per tap`.
    taps: Option<(usize, usize, usize, usize)>,
}

fn round_up(x: usize, m: usize) -> usize {
    x.div_ceil(m) * m
}

/// The epilogue of a quantized-operand op (the interpreter's `Epilogue::new`).
fn make_epi(
    cx: &mut Cx,
    sx: f32,
    sw: &[f32],
    y: &TensorType,
    y_axis: usize,
    act: Activation,
) -> Result<Epi> {
    let n = sw.len();
    match &y.quant {
        Some(p) => {
            if p.len() > 1 && p.axis != Some(y_axis) {
                return Err(cx.unsupported("result quantized per a non-channel axis"));
            }
            let (sy, zy) = per_channel(cx, p, n)?;
            let q = p.storage;
            let contract = cx.opts.contract;
            let mut rec: Vec<i32> = Vec::with_capacity(8 * n);
            for c in 0..n {
                let r = Requantizer::new(contract, sx, sw[c], sy[c])
                    .map_err(|e| cx.unsupported(e.to_string()))?;
                let (lo, hi) = match act {
                    Activation::None => (q.min(), q.max()),
                    Activation::Relu => (qc_qmath::quantize(0.0, sy[c], zy[c], q), q.max()),
                    Activation::Clip { min, max } => (
                        qc_qmath::quantize(min, sy[c], zy[c], q),
                        qc_qmath::quantize(max, sy[c], zy[c], q),
                    ),
                };
                // `max(lo).min(hi)` after saturation; with lo > hi that is hi.
                let lo = if lo > hi { hi } else { lo };
                let fm = r.fixed_multiplier();
                let shift = fm.shift.clamp(-31, 30);
                let (left, right) = (shift.max(0), (-shift).max(0));
                let half = if right > 0 { 1i32 << (right - 1) } else { 1 };
                let (zp, lo, hi) = (zy[c], lo as i32, hi as i32);
                let tail = match contract {
                    // In i64: a 32-bit result's `hi - zp` may leave i32 (those
                    // records never reach the native kernels, which are 8-bit).
                    Contract::Float => [
                        ((i64::from(hi) - i64::from(zp)) as f32).to_bits() as i32,
                        i16_pair(zp),
                        i16_pair(lo),
                        i16_pair(hi),
                    ],
                    _ => [fm.m, left, right, half],
                };
                rec.extend([r.float_multiplier().to_bits() as i32, zp, lo, hi]);
                rec.extend(tail);
            }
            let table = cx.pool.add_i32(&rec);
            Ok(Epi::Q { table, q, contract })
        }
        None if y.dtype == qc_ir::DType::F32 => {
            let m: Vec<f32> = sw.iter().map(|&s| sx * s).collect();
            Ok(Epi::QF {
                scales: cx.pool.add_f32(&m),
                act,
            })
        }
        None => Err(cx.unsupported(format!("{} result of quantized operands", y.dtype))),
    }
}

fn per_channel(cx: &Cx, p: &QuantParams, n: usize) -> Result<(Vec<f32>, Vec<i32>)> {
    if p.len() == 1 {
        Ok((vec![p.scales[0]; n], vec![p.zero_points[0]; n]))
    } else if p.len() == n {
        Ok((p.scales.clone(), p.zero_points.clone()))
    } else {
        Err(cx.unsupported(format!(
            "{} quantization parameters for {n} channels",
            p.len()
        )))
    }
}

/// Activation params: per tensor, 8-bit.
fn act_params(cx: &Cx, t: &TensorType) -> Result<(QType, f32, i32)> {
    let p = t
        .quant
        .as_ref()
        .ok_or_else(|| cx.unsupported("x not quantized"))?;
    if p.len() != 1 || !matches!(p.storage, QType::U8 | QType::I8) {
        return Err(cx.unsupported("x must be 8-bit, quantized per tensor"));
    }
    Ok((p.storage, p.scales[0], p.zero_points[0]))
}

/// Weights minus their zero points (channel along `axis`), as i32, checked 8-bit.
fn shifted_weights(cx: &Cx, t: &Tensor, p: &QuantParams, axis: usize) -> Result<Vec<i32>> {
    if !matches!(p.storage, QType::U8 | QType::I8) {
        return Err(cx.unsupported("weights must be 8-bit"));
    }
    if p.len() > 1 && p.axis != Some(axis) {
        return Err(cx.unsupported("weights quantized per a non-channel axis"));
    }
    let v = t.to_i64_vec();
    let d = t.dims();
    let (inner, dim) = if p.len() > 1 {
        (numel(&d[axis + 1..]), d[axis])
    } else {
        (1, 1)
    };
    Ok(v.iter()
        .enumerate()
        .map(|(i, &w)| (w - i64::from(p.zero_point((i / inner.max(1)) % dim.max(1)))) as i32)
        .collect())
}

/// Pack `A` (rows `m`, `k`): quantized pairs or f32, from `get(row, k)`.
fn pack_a_q(m: usize, k: usize, get: impl Fn(usize, usize) -> i32) -> Vec<i16> {
    let kp = k.div_ceil(2);
    let mut a = vec![0i16; m * kp * 2];
    for r in 0..m {
        for kk in 0..k {
            a[(r * kp + kk / 2) * 2 + kk % 2] = get(r, kk) as i16;
        }
    }
    a
}

fn pack_a_f(m: usize, k: usize, get: impl Fn(usize, usize) -> f32) -> Vec<f32> {
    let mut a = vec![0f32; m * k];
    for r in 0..m {
        for kk in 0..k {
            a[r * k + kk] = get(r, kk);
        }
    }
    a
}

/// Store one activation element into packed `B` at (k, col).
fn store_b(e: &mut E, mode: Mode, b: Value, np: usize, k: Value, col: Value, v: Value) {
    match mode {
        Mode::Q { .. } => {
            // i16 index ((k >> 1) * np + col) * 2 + (k & 1).
            let kh = e.b.ins().ushr_imm_s(k, 1);
            let kl = e.b.ins().band_imm_s(k, 1);
            let r = e.muli(kh, np as i64);
            let r = e.add(r, col);
            let r = e.muli(r, 2);
            let r = e.add(r, kl);
            let a = e.addr(b, r, 2, 0);
            e.b.ins().istore16(mf(), v, a, 0);
        }
        Mode::F => {
            let r = e.muli(k, np as i64);
            let r = e.add(r, col);
            let a = e.addr(b, r, 4, 0);
            e.store(v, a, 0);
        }
    }
}

/// Load one activation element (as stored) and shift it: i32 `x - zx` or f32.
fn load_x(e: &mut E, mode: Mode, x: Value, idx: Value) -> Value {
    match mode {
        Mode::Q { xq, zx } => {
            let a = e.add(x, idx);
            let v = e.load_q(xq, a, 0);
            e.b.ins().iadd_imm_s(v, -i64::from(zx))
        }
        Mode::F => {
            let a = e.addr(x, idx, 4, 0);
            e.load_f32(a, 0)
        }
    }
}

fn zero_of(e: &mut E, mode: Mode) -> Value {
    match mode {
        Mode::Q { .. } => e.i32c(0),
        Mode::F => e.f32c(0.0),
    }
}

fn b_bytes(mode: Mode, k: usize, np: usize) -> usize {
    match mode {
        Mode::Q { .. } => k.div_ceil(2) * np * 4,
        Mode::F => k * np * 4,
    }
}

/// The native tile kernel for an op in `mode`, if the options and the host allow one.
fn native_for(cx: &Cx, mode: Mode) -> Option<PairTile> {
    match mode {
        Mode::Q { .. } => kernels::pair_tile(cx.opts.kernels),
        Mode::F => None,
    }
}

/// Columns of packed `B`: `n` padded to the tile width, and to 16 (the width of one
/// `pair_pack` step).
fn pad_cols(n: usize, native: Option<PairTile>) -> usize {
    round_up(n.max(1), native.map_or(NR, |t| t.nr).max(16))
}

/// Byte offset in scratch of the native tile's output buffer (after packed `B`).
fn tile_buf_offset(mode: Mode, k: usize, np: usize) -> usize {
    round_up(b_bytes(mode, k, np), 64)
}

/// Scratch bytes of one GEMM: packed `B`, plus the native tile buffer if used.
fn scratch_bytes(mode: Mode, k: usize, np: usize, native: Option<PairTile>) -> usize {
    match native {
        Some(t) => tile_buf_offset(mode, k, np) + t.mr * t.nr * 4,
        None => b_bytes(mode, k, np),
    }
}

/// The native tile buffer's address, if `native` is used.
fn native_buf(
    e: &mut E,
    mode: Mode,
    scratch: Value,
    k: usize,
    np: usize,
    native: Option<PairTile>,
) -> Option<(PairTile, Value)> {
    native.map(|t| (t, e.addi(scratch, tile_buf_offset(mode, k, np) as i64)))
}

/// Zero the packed `B` where it is padding (the odd last k, columns past `n`).
fn zero_b(e: &mut E, mode: Mode, b: Value, k: usize, n: usize, np: usize) {
    if (matches!(mode, Mode::Q { .. }) && k % 2 == 1) || np != n {
        let bytes = b_bytes(mode, k, np);
        let z = e.b.ins().iconst(types::I8, 0);
        let nb = e.ic(bytes as i64);
        e.b.call_memset(e.cfg, b, z, nb);
    }
}

// ---------------------------------------------------------------- the GEMM kernel

fn pmaddwd(e: &mut E, a: Value, b: Value) -> Value {
    let al = e.b.ins().swiden_low(a);
    let bl = e.b.ins().swiden_low(b);
    let ah = e.b.ins().swiden_high(a);
    let bh = e.b.ins().swiden_high(b);
    let lo = e.b.ins().imul(al, bl);
    let hi = e.b.ins().imul(ah, bh);
    e.b.ins().iadd_pairwise(lo, hi)
}

fn le() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

/// Emit the whole GEMM of `job` with epilogue `epi`, for rows
/// `row_start..row_start + job.m` (absolute rows of `A`, the tables and the output).
fn emit_gemm(e: &mut E, mode: Mode, job: &Job, epi: Epi, row_start: Value) -> Result<()> {
    if let (Mode::Q { .. }, Some((t, buf))) = (mode, job.native) {
        return emit_gemm_native(e, mode, job, epi, row_start, t, buf);
    }
    let mr_full = job.m / MR;
    let m_rem = job.m % MR;
    let nt_full = job.n / NR;
    let n_rem = job.n % NR;
    if mr_full > 0 {
        e.for_n(mr_full, |e, mt| {
            let mi = e.muli(mt, MR as i64);
            let mi = e.add(mi, row_start);
            tiles(e, mode, job, epi, mi, MR, nt_full, n_rem)
        })?;
    }
    if m_rem > 0 {
        let mi = e.addi(row_start, (mr_full * MR) as i64);
        tiles(e, mode, job, epi, mi, m_rem, nt_full, n_rem)?;
    }
    Ok(())
}

/// All column tiles of the rows `mi..mi+mr`.
#[allow(clippy::too_many_arguments)]
fn tiles(
    e: &mut E,
    mode: Mode,
    job: &Job,
    epi: Epi,
    mi: Value,
    mr: usize,
    nt_full: usize,
    n_rem: usize,
) -> Result<()> {
    // The rows' epilogue constants, once for all their column tiles.
    let consts: Option<Vec<Rq>> = vector_epilogue(mode, job, epi).map(|(table, _)| {
        (0..mr)
            .map(|r| {
                let row = e.addi(mi, r as i64);
                requant_setup(e, job, table, row)
            })
            .collect()
    });
    let consts = consts.as_deref();
    e.for_n(nt_full, |e, nt| {
        let ni = e.muli(nt, NR as i64);
        tile(e, mode, job, epi, mi, mr, ni, NR, consts)
    })?;
    if n_rem > 0 {
        let ni = e.ic((nt_full * NR) as i64);
        tile(e, mode, job, epi, mi, mr, ni, n_rem, consts)?;
    }
    Ok(())
}

/// One `mr × NR` tile at (`mi`, `ni`), storing its first `cols` columns.
#[allow(clippy::too_many_arguments)]
fn tile(
    e: &mut E,
    mode: Mode,
    job: &Job,
    epi: Epi,
    mi: Value,
    mr: usize,
    ni: Value,
    cols: usize,
    consts: Option<&[Rq]>,
) -> Result<()> {
    let vty = match mode {
        Mode::Q { .. } => types::I32X4,
        Mode::F => types::F32X4,
    };
    // Accumulators: mr rows × 2 vectors.
    let mut accs: Vec<[Variable; 2]> = Vec::with_capacity(mr);
    for r in 0..mr {
        let init = match (mode, job.init) {
            (Mode::F, Some(s)) => {
                // Float conv: start from the bias (column stride 0) so the sum order
                // is the interpreter's.
                let row = e.addi(mi, r as i64);
                let idx = e.muli(row, s.sm);
                let a = e.addr(s.ptr, idx, 4, 0);
                let v = e.load_f32(a, 0);
                e.b.ins().splat(vty, v)
            }
            (Mode::F, None) => {
                let z = e.f32c(0.0);
                e.b.ins().splat(vty, z)
            }
            (Mode::Q { .. }, _) => match consts.and_then(|c| c.get(r)).and_then(|c| c.bias) {
                // The row's bias as the start: i32 addition wraps, so the sum is
                // the same in either order.
                Some(b) => b,
                None => {
                    let z = e.i32c(0);
                    e.b.ins().splat(vty, z)
                }
            },
        };
        accs.push([e.var(vty, init), e.var(vty, init)]);
    }
    let a_base = e.ic(job.a as i64);
    // Row pointers into packed A.
    let a_row_bytes = match mode {
        Mode::Q { .. } => (job.kp * 4) as i64,
        Mode::F => (job.k * 4) as i64,
    };
    let a0 = e.muli(mi, a_row_bytes);
    let a0 = e.add(a_base, a0);
    let b0 = e.muli(ni, 4);
    let b0 = e.add(job.b, b0);
    let (steps, b_step) = match mode {
        Mode::Q { .. } => (job.kp, (job.np * 4) as i64),
        Mode::F => (job.k, (job.np * 4) as i64),
    };
    // Vectors of columns computed: a tail of at most 4 columns takes one (the other
    // accumulators keep their start value; the epilogue reads only the first).
    let nv = if cols <= 4 { 1 } else { 2 };
    let (lane_ty, vec_ty) = match mode {
        Mode::Q { .. } => (I32, types::I32X4),
        Mode::F => (F32, types::F32X4),
    };
    // One step `kk`: B's vectors, then per row the A value `a(e, r)` in every lane
    // times them, added into the row's accumulators.
    let step = |e: &mut E, kk: Value, a: &dyn Fn(&mut E, usize) -> Value| {
        let boff = e.muli(kk, b_step);
        let bp = e.add(b0, boff);
        let mut bvs = vec![e.b.ins().load(vec_ty, mf(), bp, 0)];
        if nv == 2 {
            bvs.push(e.b.ins().load(vec_ty, mf(), bp, 16));
        }
        for (r, acc) in accs.iter().enumerate() {
            let av = a(e, r);
            for (j, &bv) in bvs.iter().enumerate() {
                let c = e.b.use_var(acc[j]);
                let s = match mode {
                    Mode::Q { .. } => {
                        let av = e.b.ins().bitcast(types::I16X8, le(), av);
                        let bv = e.b.ins().bitcast(types::I16X8, le(), bv);
                        let p = pmaddwd(e, av, bv);
                        e.b.ins().iadd(c, p)
                    }
                    Mode::F => {
                        let p = e.b.ins().fmul(av, bv);
                        e.b.ins().fadd(c, p)
                    }
                };
                e.b.def_var(acc[j], s);
            }
        }
    };
    // Groups of 4 steps: one 16-byte load of A per row, its lanes broadcast by
    // `pshufd`-style shuffles (a scalar load and splat per step cost a GPR-to-vector
    // move and a broadcast, both on the one shuffle port).
    let lane_masks: Vec<_> = (0..4u8)
        .map(|l| {
            let m: [u8; 16] = std::array::from_fn(|i| 4 * l + (i % 4) as u8);
            shuffle_mask(e, m)
        })
        .collect();
    e.for_n(steps / 4, |e, g| {
        let aoff = e.muli(g, 16);
        let ap = e.add(a0, aoff);
        let a4: Vec<Value> = (0..accs.len())
            .map(|r| {
                let v =
                    e.b.ins()
                        .load(vec_ty, mf(), ap, (r as i64 * a_row_bytes) as i32);
                e.b.ins().bitcast(types::I8X16, le(), v)
            })
            .collect();
        let k0 = e.muli(g, 4);
        for (l, &mask) in lane_masks.iter().enumerate() {
            let kk = e.addi(k0, l as i64);
            step(e, kk, &|e: &mut E, r: usize| {
                let v = e.b.ins().shuffle(a4[r], a4[r], mask);
                e.b.ins().bitcast(vec_ty, le(), v)
            });
        }
        Ok(())
    })?;
    // The last `steps % 4` steps: lanes of the 16 bytes ending at the row's last
    // step (overlapping the last group), or scalar splats when a row is shorter.
    for k in steps / 4 * 4..steps {
        let kk = e.ic(k as i64);
        if steps >= 4 {
            let first = steps - 4;
            let mask = lane_masks[k - first];
            step(e, kk, &|e: &mut E, r: usize| {
                let off = (r * a_row_bytes as usize + 4 * first) as i32;
                let v = e.b.ins().load(vec_ty, mf(), a0, off);
                let v = e.b.ins().bitcast(types::I8X16, le(), v);
                let v = e.b.ins().shuffle(v, v, mask);
                e.b.ins().bitcast(vec_ty, le(), v)
            });
        } else {
            step(e, kk, &|e: &mut E, r: usize| {
                let off = (r * a_row_bytes as usize + 4 * k) as i32;
                let v = e.b.ins().load(lane_ty, mf(), a0, off);
                e.b.ins().splat(vec_ty, v)
            });
        }
    }
    for (r, acc) in accs.iter().enumerate() {
        let row = e.addi(mi, r as i64);
        let vecs = [e.b.use_var(acc[0]), e.b.use_var(acc[1])];
        // The bias is in the accumulators already.
        let c = consts
            .and_then(|c| c.get(r))
            .map(|&c| Rq { bias: None, ..c });
        finish_row(e, mode, job, epi, row, ni, vecs, cols, c.as_ref())?;
    }
    Ok(())
}

/// The epilogue table and result type when the `float` contract's vector epilogue
/// applies: a quantized result of at most 16 bits (so `hi - zp`, `lo - zp` and the
/// cap of [`Rq`] are exact in i32 and f32, far inside the i32 range; wider results
/// take the element-wise epilogue, which works in i64), bias constant along a row.
fn vector_epilogue(mode: Mode, job: &Job, epi: Epi) -> Option<(usize, QType)> {
    match (mode, epi) {
        (
            Mode::Q { .. },
            Epi::Q {
                table,
                q,
                contract: Contract::Float,
            },
        ) if job.init.is_none_or(|s| s.sn == 0) && crate::emit::qsize(q) <= 2 => Some((table, q)),
        _ => None,
    }
}

/// The epilogue of `cols` (at most [`NR`]) accumulators of one row at column `ni`,
/// given as two i32x4 / f32x4 vectors; `consts`, when given, are the row's
/// [`vector_epilogue`] constants, already set up.
#[allow(clippy::too_many_arguments)]
fn finish_row(
    e: &mut E,
    mode: Mode,
    job: &Job,
    epi: Epi,
    row: Value,
    ni: Value,
    vecs: [Value; 2],
    cols: usize,
    consts: Option<&Rq>,
) -> Result<()> {
    if let Some((table, q)) = vector_epilogue(mode, job, epi) {
        let c = match consts {
            Some(&c) => c,
            None => requant_setup(e, job, table, row),
        };
        return vector_requant(e, job, &c, q, row, ni, vecs, cols);
    }
    // The general epilogue, one element at a time.
    for c in 0..cols {
        let lane = e.b.ins().extractlane(vecs[c / 4], (c % 4) as u8);
        let col = e.addi(ni, c as i64);
        epilogue(e, mode, job, epi, row, col, lane)?;
    }
    Ok(())
}

/// [`emit_gemm`] through a native tile kernel: the generated loops walk the
/// `t.mr × t.nr` tiles, call the kernel for each (it leaves the tile's i32 sums in
/// `buf`), then run the same epilogue as the Cranelift tiles on those sums.
#[allow(clippy::too_many_arguments)]
fn emit_gemm_native(
    e: &mut E,
    mode: Mode,
    job: &Job,
    epi: Epi,
    row_start: Value,
    t: PairTile,
    buf: Value,
) -> Result<()> {
    let full = job.m / t.mr;
    let rem = job.m % t.mr;
    // Loop order: with `A` small enough to stay in L2, columns outside and row tiles
    // inside, so each panel of `B` is read from L1 by every row tile and `A` from L2
    // (rows outside would stream all of `B` once per row tile, which misses L2 for a
    // large im2col); otherwise rows outside, keeping the rows' `A` in L1.
    if job.m * job.kp * 4 <= COL_OUTER_A_BYTES && job.n > t.nr {
        let rows = |e: &mut E, ni: Value, cols: usize| -> Result<()> {
            if full > 0 {
                e.for_n(full, |e, mt| {
                    let mi = e.muli(mt, t.mr as i64);
                    let mi = e.add(mi, row_start);
                    native_tile(e, mode, job, epi, mi, t.mr, ni, cols, t, buf)
                })?;
            }
            if rem > 0 {
                let mi = e.addi(row_start, (full * t.mr) as i64);
                native_tile(e, mode, job, epi, mi, rem, ni, cols, t, buf)?;
            }
            Ok(())
        };
        let (nt_full, n_rem) = (job.n / t.nr, job.n % t.nr);
        e.for_n(nt_full, |e, nt| {
            let ni = e.muli(nt, t.nr as i64);
            rows(e, ni, t.nr)
        })?;
        if n_rem > 0 {
            let ni = e.ic((nt_full * t.nr) as i64);
            rows(e, ni, n_rem)?;
        }
        return Ok(());
    }
    if full > 0 {
        e.for_n(full, |e, mt| {
            let mi = e.muli(mt, t.mr as i64);
            let mi = e.add(mi, row_start);
            native_tiles(e, mode, job, epi, mi, t.mr, t, buf)
        })?;
    }
    if rem > 0 {
        let mi = e.addi(row_start, (full * t.mr) as i64);
        native_tiles(e, mode, job, epi, mi, rem, t, buf)?;
    }
    Ok(())
}

/// The largest packed `A` (bytes) for which native GEMMs run columns outside.
const COL_OUTER_A_BYTES: usize = 512 * 1024;

#[allow(clippy::too_many_arguments)]
fn native_tiles(
    e: &mut E,
    mode: Mode,
    job: &Job,
    epi: Epi,
    mi: Value,
    mr: usize,
    t: PairTile,
    buf: Value,
) -> Result<()> {
    let nt_full = job.n / t.nr;
    let n_rem = job.n % t.nr;
    e.for_n(nt_full, |e, nt| {
        let ni = e.muli(nt, t.nr as i64);
        native_tile(e, mode, job, epi, mi, mr, ni, t.nr, t, buf)
    })?;
    if n_rem > 0 {
        let ni = e.ic((nt_full * t.nr) as i64);
        native_tile(e, mode, job, epi, mi, mr, ni, n_rem, t, buf)?;
    }
    Ok(())
}

/// One native tile at (`mi`, `ni`), `mr` rows, storing its first `cols` columns.
///
/// The kernel reads rows `mi..mi + mr` of packed `A` (all exist: `mr` is clipped to
/// the rows left) and columns `ni..ni + t.nr` of packed `B` (all exist: `B`'s columns
/// are padded to a multiple of `t.nr` by [`pad_cols`]), `kp` pair steps each.
#[allow(clippy::too_many_arguments)]
fn native_tile(
    e: &mut E,
    mode: Mode,
    job: &Job,
    epi: Epi,
    mi: Value,
    mr: usize,
    ni: Value,
    cols: usize,
    t: PairTile,
    buf: Value,
) -> Result<()> {
    let a_row = (job.kp * 4) as i64;
    let a_base = e.ic(job.a as i64);
    let ap = e.muli(mi, a_row);
    let ap = e.add(a_base, ap);
    // Panels: tile column ni (a multiple of nr) starts panel ni / nr, kp · nr · 4 bytes
    // each, so at ni · kp · 4.
    let (bp, b_step) = if job.b_panel {
        (e.muli(ni, (job.kp * 4) as i64), (t.nr * 4) as i64)
    } else {
        (e.muli(ni, 4), (job.np * 4) as i64)
    };
    let bp = e.add(job.b, bp);
    // Every tile kernel's leading arguments; the tap kernel takes the quads per tap as
    // the step count, then (after its output) its offset table and tap count.
    let (steps, taps) = match job.taps {
        Some((toff, ntaps, kq_t, ft)) => (kq_t, Some((toff as i64, ntaps as i64, ft))),
        None => (job.kp, None),
    };
    let mut args = vec![
        ap,
        e.ic(a_row),
        bp,
        e.ic(b_step),
        e.ic(steps as i64),
        e.ic(mr as i64),
    ];
    // The 32-column quad tile with the `float` epilogue fused, straight to the result
    // (over taps, on the tap kernels' interleaved A).
    let quad = kernels::quad_tile(crate::KernelSet::Auto).map(|q| q.addr);
    let fused = if taps.is_some() {
        kernels::quad_requant_taps(crate::KernelSet::Auto)
    } else {
        kernels::quad_requant(crate::KernelSet::Auto)
    };
    if let (Some(fq), true) = (fused, quad == Some(t.addr)) {
        if let Some(ep) = requant_args(e, mode, job, epi, mi, ni) {
            let (toff, ntaps) = taps.map_or((0, 1), |(toff, ntaps, _)| (toff, ntaps));
            args.push(e.ic(toff));
            args.push(e.ic(ntaps));
            args.extend(ep);
            args.push(e.ic(cols as i64));
            e.call_addr(fq, &args);
            return Ok(());
        }
    }
    args.push(buf);
    let addr = match taps {
        Some((toff, ntaps, ft)) => {
            args.push(e.ic(toff));
            args.push(e.ic(ntaps));
            ft
        }
        None => t.addr,
    };
    e.call_addr(addr, &args);
    // Native tiles imply `KernelSet::Auto`, so the native epilogue may be used too.
    let rq = kernels::requant_tile(crate::KernelSet::Auto);
    if native_requant(e, rq, mode, job, epi, mi, ni, buf, t.nr, mr, cols) {
        return Ok(());
    }
    for r in 0..mr {
        let row = e.addi(mi, r as i64);
        if let Some((table, q)) = vector_epilogue(mode, job, epi) {
            row_requant(e, job, table, q, row, ni, buf, (r * t.nr * 4) as i32, cols);
            continue;
        }
        for ch in 0..cols.div_ceil(NR) {
            let c = (cols - ch * NR).min(NR);
            let off = ((r * t.nr + ch * NR) * 4) as i32;
            let v0 = e.b.ins().load(types::I32X4, mf(), buf, off);
            let v1 = e.b.ins().load(types::I32X4, mf(), buf, off + 16);
            let nc = e.addi(ni, (ch * NR) as i64);
            finish_row(e, mode, job, epi, row, nc, [v0, v1], c, None)?;
        }
    }
    Ok(())
}

/// Call the native `float`-contract epilogue (`kernels::requant`) on `rows × cols`
/// sums at `buf` (row stride `buf_stride` i32) for output rows `row..row + rows`
/// starting at column `col`, when it applies: quantized operands, the `float` contract,
/// an 8-bit result with contiguous columns, a bias constant along a row. Returns
/// whether it was emitted.
#[allow(clippy::too_many_arguments)]
fn native_requant(
    e: &mut E,
    native: Option<usize>,
    mode: Mode,
    job: &Job,
    epi: Epi,
    row: Value,
    col: Value,
    buf: Value,
    buf_stride: usize,
    rows: usize,
    cols: usize,
) -> bool {
    let Some(f) = native else {
        return false;
    };
    let Some([rec, bias, bias_stride, out, out_stride]) = requant_args(e, mode, job, epi, row, col)
    else {
        return false;
    };
    let args = [
        buf,
        e.ic(buf_stride as i64),
        e.ic(rows as i64),
        e.ic(cols as i64),
        rec,
        bias,
        bias_stride,
        out,
        out_stride,
    ];
    e.call_addr(f, &args);
    true
}

/// The native `float`-contract epilogue's arguments for output rows from `row` and
/// columns from `col` — `[rec, bias, bias_stride, out, out_stride]` — when it applies
/// (8-bit results, unit column stride, a bias constant along columns).
fn requant_args(
    e: &mut E,
    mode: Mode,
    job: &Job,
    epi: Epi,
    row: Value,
    col: Value,
) -> Option<[Value; 5]> {
    let (
        Mode::Q { .. },
        Epi::Q {
            table,
            q,
            contract: Contract::Float,
        },
    ) = (mode, epi)
    else {
        return None;
    };
    if crate::emit::qsize(q) != 1 || job.out.sn != 1 || job.init.is_some_and(|s| s.sn != 0) {
        return None;
    }
    let ch = e.addi(row, job.row0 as i64);
    let t = e.ic(table as i64);
    let rec = e.addr(t, ch, RECORD as i64, 0);
    let (bias, bias_stride) = match job.init {
        Some(s) => {
            let i = e.muli(row, s.sm);
            (e.addr(s.ptr, i, 4, 0), s.sm)
        }
        None => (e.ic(0), 0),
    };
    let oi = e.muli(row, job.out.sm);
    let oi = e.add(oi, col);
    let out = e.add(job.out.ptr, oi);
    let bias_stride = e.ic(bias_stride);
    let out_stride = e.ic(job.out.sm);
    Some([rec, bias, bias_stride, out, out_stride])
}

/// The `float` contract's epilogue on whole vectors: `acc (+ bias) → f32 → × m →
/// round half even → + zp → clamp [lo, hi]`, then narrow and store `cols` elements.
///
/// Equal to the scalar sequence: for integers, `clamp(r + zp, lo, hi) =
/// clamp(r, lo - zp, hi - zp) + zp`, so the vector code clamps the rounded `r` to
/// `[lo - zp, hi - zp]` (bounds of at most 17 bits) and then adds `zp`, which cannot
/// overflow. Before rounding, the product `f` is capped at `cap = max(hi - zp, 0)`
/// (as f32, exact): `f > cap ≥ hi - zp` gives `round(f) ≥ hi - zp` (an integer), and
/// so does `cap`, so both clamp to `hi - zp`. The cap is one signed i32 `min` on the
/// f32 bit patterns: `cap`'s pattern is non-negative, and against a non-negative
/// pattern, signed integer order is float order for `f ≥ 0` and puts every `f < 0`
/// (sign bit set) below. `f` is never NaN (an integer times a finite `m`). After the
/// cap the conversion cannot overflow upwards; downwards (`f < -2³¹`) x64's
/// `cvttps2dq` (on the already rounded value) gives `i32::MIN` and the portable
/// saturating conversion `i32::MIN` too, both below `lo - zp` like the true value.
/// `lo`/`hi` lie inside the storage range, so clamping to them after saturation is
/// clamping to them alone.
#[derive(Clone, Copy)]
struct Rq {
    bias: Option<Value>,
    m: Value,
    zp: Value,
    /// `lo - zp`, `hi - zp`.
    lo_z: Value,
    hi_z: Value,
    /// The bit pattern of `max(hi - zp, 0) as f32` in every lane.
    cap: Value,
    /// `zp` in i16 lanes; `lo`, `hi` in 8-bit lanes (their storage bytes).
    zp16: Value,
    lo8: Value,
    hi8: Value,
}

fn requant_setup(e: &mut E, job: &Job, table: usize, row: Value) -> Rq {
    let ch = e.addi(row, job.row0 as i64);
    let t = e.ic(table as i64);
    let rec = e.addr(t, ch, RECORD as i64, 0);
    // The table is constant: pure loads, so that a loop over columns computes the
    // row's constants once, outside it.
    let ro = mf().with_readonly().with_can_move();
    let m = e.b.ins().load(F32, ro, rec, 0);
    let zp = e.b.ins().load(I32, ro, rec, 4);
    let lo = e.b.ins().load(I32, ro, rec, 8);
    let hi = e.b.ins().load(I32, ro, rec, 12);
    let bias = job.init.map(|s| {
        let i = e.muli(row, s.sm);
        let a = e.addr(s.ptr, i, 4, 0);
        let b = e.b.ins().load(I32, mf(), a, 0);
        e.b.ins().splat(types::I32X4, b)
    });
    let lo_z = e.b.ins().isub(lo, zp);
    let hi_z = e.b.ins().isub(hi, zp);
    let zero = e.i32c(0);
    let cap = e.b.ins().smax(hi_z, zero);
    let cap = e.b.ins().fcvt_from_sint(F32, cap);
    let cap = e.b.ins().bitcast(I32, MemFlagsData::new(), cap);
    Rq {
        bias,
        m: e.b.ins().splat(types::F32X4, m),
        zp: e.b.ins().splat(types::I32X4, zp),
        lo_z: e.b.ins().splat(types::I32X4, lo_z),
        hi_z: e.b.ins().splat(types::I32X4, hi_z),
        cap: e.b.ins().splat(types::I32X4, cap),
        zp16: {
            let v = e.b.ins().ireduce(types::I16, zp);
            e.b.ins().splat(types::I16X8, v)
        },
        lo8: {
            let v = e.b.ins().ireduce(types::I8, lo);
            e.b.ins().splat(types::I8X16, v)
        },
        hi8: {
            let v = e.b.ins().ireduce(types::I8, hi);
            e.b.ins().splat(types::I8X16, v)
        },
    }
}

/// One vector of accumulators to clamped i32 results (see [`vector_requant`]).
fn requant_vec(e: &mut E, c: &Rq, acc: Value) -> Value {
    let i = scale_round(e, c, acc);
    let i = e.b.ins().smax(i, c.lo_z);
    let i = e.b.ins().smin(i, c.hi_z);
    e.b.ins().iadd(i, c.zp)
}

/// Eight results from two vectors of [`scale_round`] values `v`, in the low 8 bytes:
/// `clamp(v + zp, lo, hi)` by saturating steps — `v` to i16, `+ zp` saturating, to
/// the 8-bit storage range, then the 8-bit clamp to `[lo, hi]`. Where `v` or the sum
/// saturates, the true `v + zp` is below `-2¹⁵ + 255`, so below `lo` like the
/// saturated value (`v ≤ max(hi - zp, 0)` rules out the top); the 8-bit
/// saturation is a clamp to a range holding `[lo, hi]`.
fn narrow8(e: &mut E, c: &Rq, q: QType, v0: Value, v1: Value) -> Value {
    let h = e.b.ins().snarrow(v0, v1);
    let h = e.b.ins().sadd_sat(h, c.zp16);
    if q == QType::U8 {
        let b = e.b.ins().unarrow(h, h);
        let b = e.b.ins().umax(b, c.lo8);
        e.b.ins().umin(b, c.hi8)
    } else {
        let b = e.b.ins().snarrow(h, h);
        let b = e.b.ins().smax(b, c.lo8);
        e.b.ins().smin(b, c.hi8)
    }
}

/// One vector of accumulators to `round_half_even(min((acc + bias) as f32 · m,
/// cap))` as i32 (`i32::MIN` below the range; see [`Rq`]).
fn scale_round(e: &mut E, c: &Rq, acc: Value) -> Value {
    let acc = match c.bias {
        Some(b) => e.b.ins().iadd(acc, b),
        None => acc,
    };
    let f = e.b.ins().fcvt_from_sint(types::F32X4, acc);
    let f = e.b.ins().fmul(f, c.m);
    let bits = e.b.ins().bitcast(types::I32X4, le(), f);
    let bits = e.b.ins().smin(bits, c.cap);
    let f = e.b.ins().bitcast(types::F32X4, le(), bits);
    let r = e.b.ins().nearest(f);
    if cfg!(target_arch = "x86_64") {
        e.b.ins().x86_cvtt2dq(types::I32X4, r)
    } else {
        e.b.ins().fcvt_to_sint_sat(types::I32X4, r)
    }
}

#[allow(clippy::too_many_arguments)]
/// Store the first `lanes` of clamped results `i` at `base + off` (element stride
/// `step` bytes, element size `esize`).
fn store_lanes(
    e: &mut E,
    q: QType,
    i: Value,
    base: Value,
    off: i64,
    step: i64,
    esize: i64,
    lanes: usize,
) {
    if lanes == 4 && step == 1 && esize == 1 {
        // Contiguous 8-bit: narrow i32x4 -> i16x8 -> i8x16 (values already in
        // range, so the saturating narrows are exact) and store 4 bytes.
        let h = e.b.ins().snarrow(i, i);
        let b = if q == QType::U8 {
            e.b.ins().unarrow(h, h)
        } else {
            e.b.ins().snarrow(h, h)
        };
        let w = e.b.ins().bitcast(types::I32X4, le(), b);
        let w = e.b.ins().extractlane(w, 0);
        e.b.ins().store(mf(), w, base, off as i32);
    } else {
        for l in 0..lanes {
            let v = e.b.ins().extractlane(i, l as u8);
            e.store_q(q, v, base, (off + l as i64 * step) as i32);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn vector_requant(
    e: &mut E,
    job: &Job,
    c: &Rq,
    q: QType,
    row: Value,
    ni: Value,
    vecs: [Value; 2],
    cols: usize,
) -> Result<()> {
    let oi = e.muli(row, job.out.sm);
    let t = e.muli(ni, job.out.sn);
    let oi = e.add(oi, t);
    let esize = crate::emit::qsize(q);
    let base = e.addr(job.out.ptr, oi, esize, 0);
    let step = job.out.sn * esize;
    if cols == 8 && step == 1 && esize == 1 {
        // Eight contiguous 8-bit results: both vectors narrow into one 8-byte store.
        let v0 = scale_round(e, c, vecs[0]);
        let v1 = scale_round(e, c, vecs[1]);
        let b = narrow8(e, c, q, v0, v1);
        let w = e.b.ins().bitcast(types::I64X2, le(), b);
        let w = e.b.ins().extractlane(w, 0);
        e.b.ins().store(mf(), w, base, 0);
        return Ok(());
    }
    for (vi, &acc) in vecs.iter().enumerate() {
        let lanes = cols.saturating_sub(4 * vi).min(4);
        if lanes == 0 {
            break;
        }
        let i = requant_vec(e, c, acc);
        store_lanes(e, q, i, base, 4 * vi as i64 * step, step, esize, lanes);
    }
    Ok(())
}

/// [`vector_requant`] of a whole native-tile row (`cols` sums at `src`), the row's
/// constants set up once; 16 contiguous 8-bit results narrow into one 16-byte store.
#[allow(clippy::too_many_arguments)]
fn row_requant(
    e: &mut E,
    job: &Job,
    table: usize,
    q: QType,
    row: Value,
    ni: Value,
    src: Value,
    src_off: i32,
    cols: usize,
) {
    let c = requant_setup(e, job, table, row);
    let oi = e.muli(row, job.out.sm);
    let t = e.muli(ni, job.out.sn);
    let oi = e.add(oi, t);
    let esize = crate::emit::qsize(q);
    let base = e.addr(job.out.ptr, oi, esize, 0);
    let step = job.out.sn * esize;
    let mut col = 0;
    while col < cols {
        if cols - col >= 16 && step == 1 && esize == 1 {
            let mut v = [src; 4];
            for (j, v) in v.iter_mut().enumerate() {
                let off = src_off + (4 * (col + 4 * j)) as i32;
                let acc = e.b.ins().load(types::I32X4, mf(), src, off);
                *v = requant_vec(e, &c, acc);
            }
            let h0 = e.b.ins().snarrow(v[0], v[1]);
            let h1 = e.b.ins().snarrow(v[2], v[3]);
            let b = if q == QType::U8 {
                e.b.ins().unarrow(h0, h1)
            } else {
                e.b.ins().snarrow(h0, h1)
            };
            e.b.ins().store(mf(), b, base, col as i32);
            col += 16;
        } else {
            let lanes = (cols - col).min(4);
            let acc =
                e.b.ins()
                    .load(types::I32X4, mf(), src, src_off + (4 * col) as i32);
            let i = requant_vec(e, &c, acc);
            store_lanes(e, q, i, base, col as i64 * step, step, esize, lanes);
            col += 4;
        }
    }
}

/// Finish one accumulator at (row, col) and store it.
fn epilogue(
    e: &mut E,
    mode: Mode,
    job: &Job,
    epi: Epi,
    row: Value,
    col: Value,
    acc: Value,
) -> Result<()> {
    let oi = e.muli(row, job.out.sm);
    let t = e.muli(col, job.out.sn);
    let oi = e.add(oi, t);
    let mut acc = acc;
    if let (Mode::Q { .. }, Some(s)) = (mode, job.init) {
        let i = e.muli(row, s.sm);
        let t = e.muli(col, s.sn);
        let i = e.add(i, t);
        let a = e.addr(s.ptr, i, 4, 0);
        let b = e.b.ins().load(I32, mf(), a, 0);
        acc = e.b.ins().iadd(acc, b);
    }
    let ch = e.addi(row, job.row0 as i64);
    match epi {
        Epi::Q { table, q, contract } => {
            let t = e.ic(table as i64);
            let rec = e.addr(t, ch, RECORD as i64, 0);
            let ld = |e: &mut E, off: i32| e.b.ins().load(I32, mf(), rec, off);
            let zp = ld(e, 4);
            let lo = ld(e, 8);
            let hi = ld(e, 12);
            let scaled = match contract {
                Contract::Float => {
                    let m = e.b.ins().load(F32, mf(), rec, 0);
                    let f = e.b.ins().fcvt_from_sint(F32, acc);
                    let f = e.b.ins().fmul(f, m);
                    let r = e.b.ins().nearest(f);
                    let i = e.b.ins().fcvt_to_sint_sat(I64, r);
                    e.clamp_i64(i, -(1 << 40), 1 << 40)
                }
                Contract::Fixed => {
                    let m = ld(e, 16);
                    let left = ld(e, 20);
                    let right = ld(e, 24);
                    let half = ld(e, 28);
                    // multiply_by_quantized_multiplier: the left shift wraps in i32.
                    let sh = e.b.ins().ishl(acc, left);
                    let s64 = e.b.ins().sextend(I64, sh);
                    let m64 = e.b.ins().sextend(I64, m);
                    let ab = e.b.ins().imul(s64, m64);
                    // SRDHM: (ab + 2^30) >> 31; m is never i32::MIN, so no saturation case.
                    let ab = e.b.ins().iadd_imm_s(ab, 1 << 30);
                    let x = e.b.ins().sshr_imm_s(ab, 31);
                    // RDBP by `right`: floor, remainder, round half away from zero.
                    let r64 = e.b.ins().sextend(I64, right);
                    let floor = e.b.ins().sshr(x, r64);
                    let one = e.ic(1);
                    let mask = e.b.ins().ishl(one, r64);
                    let mask = e.b.ins().iadd_imm_s(mask, -1);
                    let rem = e.b.ins().band(x, mask);
                    let h64 = e.b.ins().sextend(I64, half);
                    let gt = e.b.ins().icmp(IntCC::SignedGreaterThan, rem, h64);
                    let eq = e.b.ins().icmp(IntCC::Equal, rem, h64);
                    let pos = e.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, x, 0);
                    let eqp = e.b.ins().band(eq, pos);
                    let up = e.b.ins().bor(gt, eqp);
                    let up = e.b.ins().uextend(I64, up);
                    e.b.ins().iadd(floor, up)
                }
                Contract::FixedSingle => {
                    let m = ld(e, 16);
                    let left = ld(e, 20);
                    let right = ld(e, 24);
                    // s = 31 - shift = 31 - left + right, in [1, 62].
                    let s = e.b.ins().isub(right, left);
                    let s = e.b.ins().iadd_imm_s(s, 31);
                    let s64 = e.b.ins().sextend(I64, s);
                    let a64 = e.b.ins().sextend(I64, acc);
                    let m64 = e.b.ins().sextend(I64, m);
                    let prod = e.b.ins().imul(a64, m64);
                    let one = e.ic(1);
                    let sm1 = e.b.ins().iadd_imm_s(s64, -1);
                    let rnd = e.b.ins().ishl(one, sm1);
                    let prod = e.b.ins().iadd(prod, rnd);
                    let v = e.b.ins().sshr(prod, s64);
                    e.clamp_i64(v, -(1 << 40), 1 << 40)
                }
            };
            let z64 = e.b.ins().sextend(I64, zp);
            let v = e.b.ins().iadd(scaled, z64);
            let v = e.clamp_i64(v, q.min(), q.max());
            let v = e.b.ins().ireduce(I32, v);
            let v = e.b.ins().smax(v, lo);
            let v = e.b.ins().smin(v, hi);
            let a = e.addr(job.out.ptr, oi, crate::emit::qsize(q), 0);
            e.store_q(q, v, a, 0);
        }
        Epi::QF { scales, act } => {
            let t = e.ic(scales as i64);
            let sa = e.addr(t, ch, 4, 0);
            let m = e.load_f32(sa, 0);
            let f = e.b.ins().fcvt_from_sint(F32, acc);
            let f = e.b.ins().fmul(f, m);
            let f = e.act(act, f);
            let a = e.addr(job.out.ptr, oi, 4, 0);
            e.store(f, a, 0);
        }
        Epi::F { alpha, beta, act } => {
            let mut f = acc;
            if alpha != 1.0 {
                let al = e.f32c(alpha);
                f = e.b.ins().fmul(f, al);
            }
            if let (Some(s), true) = (job.post, beta != 0.0) {
                let i = e.muli(row, s.sm);
                let t = e.muli(col, s.sn);
                let i = e.add(i, t);
                let a = e.addr(s.ptr, i, 4, 0);
                let c = e.load_f32(a, 0);
                let bt = e.f32c(beta);
                let c = e.b.ins().fmul(c, bt);
                f = e.b.ins().fadd(f, c);
            }
            let f = e.act(act, f);
            let a = e.addr(job.out.ptr, oi, 4, 0);
            e.store(f, a, 0);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- conv

/// Conv geometry right-aligned into 3 spatial dims.
struct ConvGeom {
    batch: usize,
    c_in: usize,
    c_out: usize,
    group: usize,
    in_sp: [usize; 3],
    out_sp: [usize; 3],
    k: [usize; 3],
    stride: [usize; 3],
    dil: [usize; 3],
    pad: [usize; 3],
}

fn sp3(v: &[usize], rank: usize, default: usize) -> Option<[usize; 3]> {
    let mut out = [1; 3];
    if v.is_empty() {
        for o in out.iter_mut().skip(3 - rank) {
            *o = default;
        }
    } else if v.len() == rank {
        out[3 - rank..].copy_from_slice(v);
    } else {
        return None;
    }
    Some(out)
}

fn conv_geom(a: &ConvAttrs, x: &[usize], w: &[usize], y: &[usize]) -> Option<ConvGeom> {
    if x.len() < 3 || x.len() > 5 || w.len() != x.len() || y.len() != x.len() || a.group == 0 {
        return None;
    }
    let rank = x.len() - 2;
    let pads = if a.pads.is_empty() {
        [0; 3]
    } else if a.pads.len() == 2 * rank {
        sp3(&a.pads[..rank], rank, 0)?
    } else {
        return None;
    };
    let pads = {
        let mut p = pads;
        if a.pads.is_empty() {
            p = [0; 3];
        } else {
            for (i, v) in p.iter_mut().enumerate() {
                if i < 3 - rank {
                    *v = 0;
                }
            }
        }
        p
    };
    let g = ConvGeom {
        batch: x[0],
        c_in: x[1],
        c_out: w[0],
        group: a.group,
        in_sp: sp3(&x[2..], rank, 1)?,
        out_sp: sp3(&y[2..], rank, 1)?,
        k: sp3(&w[2..], rank, 1)?,
        stride: sp3(&a.strides, rank, 1)?,
        dil: sp3(&a.dilations, rank, 1)?,
        pad: pads,
    };
    if !g.c_in.is_multiple_of(g.group)
        || !g.c_out.is_multiple_of(g.group)
        || w[1] * g.group != g.c_in
    {
        return None;
    }
    Some(g)
}

/// im2col of one (batch, group) into packed `B`.
fn im2col(e: &mut E, mode: Mode, g: &ConvGeom, x: Value, b: Value, np: usize) -> Result<()> {
    let cin_g = g.c_in / g.group;
    let [id_, ih_, iw_] = g.in_sp;
    let [od_, oh_, ow_] = g.out_sp;
    let [kd_, kh_, kw_] = g.k;
    let ksz = kd_ * kh_ * kw_;
    let isz = id_ * ih_ * iw_;
    let zero = zero_of(e, mode);
    e.for_n(cin_g, |e, icg| {
        let xc = e.muli(icg, isz as i64);
        e.for_n(kd_, |e, kd| {
            e.for_n(kh_, |e, kh| {
                e.for_n(kw_, |e, kw| {
                    let k = e.muli(icg, ksz as i64);
                    let t = e.muli(kd, (kh_ * kw_) as i64);
                    let k = e.add(k, t);
                    let t = e.muli(kh, kw_ as i64);
                    let k = e.add(k, t);
                    let k = e.add(k, kw);
                    e.for_n(od_, |e, od| {
                        let dd = coord(e, od, kd, 0, g);
                        let vd =
                            e.b.ins()
                                .icmp_imm_s(IntCC::UnsignedLessThan, dd, id_ as i64);
                        e.for_n(oh_, |e, oh| {
                            let hh = coord(e, oh, kh, 1, g);
                            let vh =
                                e.b.ins()
                                    .icmp_imm_s(IntCC::UnsignedLessThan, hh, ih_ as i64);
                            let vdh = e.b.ins().band(vd, vh);
                            let row = e.muli(dd, ih_ as i64);
                            let row = e.add(row, hh);
                            let row = e.muli(row, iw_ as i64);
                            let row = e.add(row, xc);
                            let col0 = e.muli(od, (oh_ * ow_) as i64);
                            let t = e.muli(oh, ow_ as i64);
                            let col0 = e.add(col0, t);
                            e.for_n(ow_, |e, ow| {
                                let ww = coord(e, ow, kw, 2, g);
                                let vw =
                                    e.b.ins()
                                        .icmp_imm_s(IntCC::UnsignedLessThan, ww, iw_ as i64);
                                let ok = e.b.ins().band(vdh, vw);
                                let idx = e.add(row, ww);
                                let z = e.ic(0);
                                let idx = e.b.ins().select(ok, idx, z);
                                let v = load_x(e, mode, x, idx);
                                let v = e.b.ins().select(ok, v, zero);
                                let col = e.add(col0, ow);
                                store_b(e, mode, b, np, k, col, v);
                                Ok(())
                            })
                        })
                    })
                })
            })
        })
    })
}

// ---------------------------------------------------------------- quantized im2col
//
// Quantized conv packs `B` in two phases, both free of per-element bounds checks:
// 1. `im2col_raw`: row `k` of a byte matrix `R[k][n]` holds the input bytes that tap
//    `k` reads at each output position, the zero point's byte where it reads padding.
//    The in-bounds output range of every tap is computed at compile time (taps are
//    unrolled), so the interior is straight copies (16-byte vectors at stride 1).
//    A 1×1, stride-1, unpadded conv skips this phase: `R` is the input itself.
// 2. `pair_pack`: rows `2q`, `2q+1` of `R` become pair step `q` of `B`: widened to
//    i16, minus the zero point, interleaved, 16 columns per iteration. The padding
//    byte minus the zero point is 0, the value the interpreter uses for padding; an
//    odd last row pairs with zeros. `B`'s columns from `n` to `np` are not written:
//    they only feed accumulator columns that are never stored.

/// Output positions `o` in `0..out` whose input coordinate `o * s + off` lies in
/// `0..inp`, as a half-open range (empty when `lo == hi`).
fn valid_range(out: usize, inp: usize, s: usize, off: i64) -> (usize, usize) {
    let (s, inp) = (s as i64, inp as i64);
    let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
    let hi = if inp - 1 - off < 0 {
        0
    } else {
        (inp - 1 - off) / s + 1
    };
    let lo = lo.clamp(0, out as i64) as usize;
    let hi = hi.clamp(0, out as i64) as usize;
    (lo, hi.max(lo))
}

/// Store `len` (static) bytes of `v` (an i8x16 splat) at `dst`.
fn fill_static(e: &mut E, dst: Value, len: usize, v: Value, byte: Value) {
    if len >= 16 {
        let full = len / 16;
        if full > 8 {
            let _ = e.for_n(full, |e, i| {
                let o = e.muli(i, 16);
                let a = e.add(dst, o);
                e.b.ins().store(mf(), v, a, 0);
                Ok(())
            });
        } else {
            for i in 0..full {
                e.b.ins().store(mf(), v, dst, (16 * i) as i32);
            }
        }
        if !len.is_multiple_of(16) {
            // The last 16 bytes, overlapping what is already filled.
            e.b.ins().store(mf(), v, dst, (len - 16) as i32);
        }
    } else {
        for i in 0..len {
            e.b.ins().istore8(mf(), byte, dst, i as i32);
        }
    }
}

/// Copy `len` (static) contiguous bytes from `src` to `dst` (not overlapping).
fn copy_static(e: &mut E, dst: Value, src: Value, len: usize) {
    let v16 = |e: &mut E, off: i32| {
        let v = e.b.ins().load(types::I8X16, mf(), src, off);
        e.b.ins().store(mf(), v, dst, off);
    };
    if len >= 16 {
        let full = len / 16;
        if full > 8 {
            let _ = e.for_n(full, |e, i| {
                let o = e.muli(i, 16);
                let s = e.add(src, o);
                let d = e.add(dst, o);
                let v = e.b.ins().load(types::I8X16, mf(), s, 0);
                e.b.ins().store(mf(), v, d, 0);
                Ok(())
            });
        } else {
            for i in 0..full {
                v16(e, (16 * i) as i32);
            }
        }
        if !len.is_multiple_of(16) {
            v16(e, (len - 16) as i32);
        }
    } else {
        let mut i = 0;
        for (w, ty) in [(8, I64), (4, I32), (2, types::I16), (1, types::I8)] {
            while len - i >= w {
                let v = e.b.ins().load(ty, mf(), src, i as i32);
                e.b.ins().store(mf(), v, dst, i as i32);
                i += w;
            }
        }
    }
}

/// `dst[i] = src[2 i]` for `i < len` (`len ≥ 16`; static): 16 outputs from 32 loaded
/// bytes (even lanes), the last 16 from the 32 bytes ending at the last sample `2(len -
/// 1)` (odd lanes, overlapping what is done with equal bytes). No byte past the last
/// sample is read.
fn gather_s2(e: &mut E, dst: Value, src: Value, len: usize) -> Result<()> {
    // Full steps while the last byte read, 32c + 31, is at most the last sample.
    let chunks = if 2 * (len - 1) >= 31 {
        (2 * (len - 1) - 31) / 32 + 1
    } else {
        0
    };
    let even = shuffle_mask(
        e,
        [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30],
    );
    e.for_n(chunks, |e, c| {
        let so = e.muli(c, 32);
        let sa = e.add(src, so);
        let a = e.b.ins().load(types::I8X16, mf(), sa, 0);
        let b = e.b.ins().load(types::I8X16, mf(), sa, 16);
        let v = e.b.ins().shuffle(a, b, even);
        let d = e.muli(c, 16);
        let da = e.add(dst, d);
        e.b.ins().store(mf(), v, da, 0);
        Ok(())
    })?;
    let done = chunks * 16;
    if done < len && len > 16 {
        // 32 bytes from sample 2(len - 16) - 1 ≥ 1, odd lanes.
        let odd = shuffle_mask(
            e,
            [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31],
        );
        let first = (2 * (len - 16) - 1) as i32;
        let a = e.b.ins().load(types::I8X16, mf(), src, first);
        let b = e.b.ins().load(types::I8X16, mf(), src, first + 16);
        let v = e.b.ins().shuffle(a, b, odd);
        e.b.ins().store(mf(), v, dst, (len - 16) as i32);
        return Ok(());
    }
    e.for_n(len - done, |e, i| {
        let i = e.addi(i, done as i64);
        let si = e.muli(i, 2);
        let sa = e.add(src, si);
        let v = e.b.ins().load(types::I8, mf(), sa, 0);
        let da = e.add(dst, i);
        e.b.ins().store(mf(), v, da, 0);
        Ok(())
    })
}

/// Phase 1 for one (batch, group): `R[k][n]` bytes at `raw` from the group's input at
/// `x`; `zx` is the zero point (its low byte is the storage byte).
fn im2col_raw(e: &mut E, zx: i32, g: &ConvGeom, x: Value, raw: Value) -> Result<()> {
    let cin_g = g.c_in / g.group;
    let [id_, ih_, iw_] = g.in_sp;
    let [od_, oh_, ow_] = g.out_sp;
    let [kd_, kh_, kw_] = g.k;
    let ksz = kd_ * kh_ * kw_;
    let isz = id_ * ih_ * iw_;
    let n = od_ * oh_ * ow_;
    let byte = e.i32c(zx);
    let b8 = e.b.ins().ireduce(types::I8, byte);
    let zv = e.b.ins().splat(types::I8X16, b8);
    let off = |d: usize, k: usize| (k * g.dil[d]) as i64 - g.pad[d] as i64;
    e.for_n(cin_g, |e, icg| {
        let xo = e.muli(icg, isz as i64);
        let xc = e.add(x, xo);
        let ro = e.muli(icg, (ksz * n) as i64);
        let rc = e.add(raw, ro);
        for kd in 0..kd_ {
            let (dlo, dhi) = valid_range(od_, id_, g.stride[0], off(0, kd));
            for kh in 0..kh_ {
                let (hlo, hhi) = valid_range(oh_, ih_, g.stride[1], off(1, kh));
                for kw in 0..kw_ {
                    let (wlo, whi) = valid_range(ow_, iw_, g.stride[2], off(2, kw));
                    let kidx = (kd * kh_ + kh) * kw_ + kw;
                    let krow = e.addi(rc, (kidx * n) as i64);
                    let full = dlo == 0 && dhi == od_ && hlo == 0 && hhi == oh_;
                    let full = full && wlo == 0 && whi == ow_;
                    if !full {
                        fill_static(e, krow, n, zv, byte);
                    }
                    if dhi == dlo || hhi == hlo || whi == wlo {
                        continue;
                    }
                    let len = whi - wlo;
                    e.for_n(dhi - dlo, |e, od| {
                        let od = e.addi(od, dlo as i64);
                        e.for_n(hhi - hlo, |e, oh| {
                            let oh = e.addi(oh, hlo as i64);
                            // In range by construction of the valid ranges.
                            let dd = e.muli(od, g.stride[0] as i64);
                            let dd = e.addi(dd, off(0, kd));
                            let hh = e.muli(oh, g.stride[1] as i64);
                            let hh = e.addi(hh, off(1, kh));
                            let srow = e.muli(dd, ih_ as i64);
                            let srow = e.add(srow, hh);
                            let srow = e.muli(srow, iw_ as i64);
                            let src0 = wlo as i64 * g.stride[2] as i64 + off(2, kw);
                            let src = e.add(xc, srow);
                            let src = e.addi(src, src0);
                            let drow = e.muli(od, (oh_ * ow_) as i64);
                            let t = e.muli(oh, ow_ as i64);
                            let drow = e.add(drow, t);
                            let dst = e.add(krow, drow);
                            let dst = e.addi(dst, wlo as i64);
                            if g.stride[2] == 1 {
                                copy_static(e, dst, src, len);
                                Ok(())
                            } else if g.stride[2] == 2 && len >= 16 {
                                gather_s2(e, dst, src, len)
                            } else {
                                let s = g.stride[2] as i64;
                                e.for_n(len, |e, i| {
                                    let si = e.muli(i, s);
                                    let sa = e.add(src, si);
                                    let v = e.b.ins().load(types::I8, mf(), sa, 0);
                                    let da = e.add(dst, i);
                                    e.b.ins().store(mf(), v, da, 0);
                                    Ok(())
                                })
                            }
                        })
                    })?;
                }
            }
        }
        Ok(())
    })
}

fn shuffle_mask(e: &mut E, bytes: [u8; 16]) -> cranelift_codegen::ir::Immediate {
    e.b.func
        .dfg
        .immediates
        .push(cranelift_codegen::ir::ConstantData::from(bytes.to_vec()))
}

/// Phase 2: `k` rows of `n` bytes (row `r` at `src + r * rs`) into packed `B`
/// (`np` columns per pair step).
#[allow(clippy::too_many_arguments)]
fn pair_pack(
    e: &mut E,
    xq: QType,
    zx: i32,
    src: Value,
    rs: usize,
    k: usize,
    n: usize,
    b: Value,
    np: usize,
) -> Result<()> {
    let z16 = e.b.ins().iconst(types::I16, i64::from(zx));
    let zxv = e.b.ins().splat(types::I16X8, z16);
    let zero = e.b.ins().iconst(types::I16, 0);
    let zero = e.b.ins().splat(types::I16X8, zero);
    let lo_mask = shuffle_mask(e, [0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23]);
    let hi_mask = shuffle_mask(
        e,
        [8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31],
    );
    let widen = |e: &mut E, v: Value| -> [Value; 2] {
        let (l, h) = if xq == QType::U8 {
            (e.b.ins().uwiden_low(v), e.b.ins().uwiden_high(v))
        } else {
            (e.b.ins().swiden_low(v), e.b.ins().swiden_high(v))
        };
        [e.b.ins().isub(l, zxv), e.b.ins().isub(h, zxv)]
    };
    let pair = |e: &mut E, ra: Value, rb: Option<Value>, dst: Value| -> Result<()> {
        e.for_n(n / 16, |e, c| {
            let o = e.muli(c, 16);
            let pa = e.add(ra, o);
            let va = e.b.ins().load(types::I8X16, mf(), pa, 0);
            let wa = widen(e, va);
            let wb = match rb {
                Some(rb) => {
                    let pb = e.add(rb, o);
                    let vb = e.b.ins().load(types::I8X16, mf(), pb, 0);
                    widen(e, vb)
                }
                None => [zero, zero],
            };
            let d = e.muli(c, 64);
            let d = e.add(dst, d);
            for h in 0..2 {
                let a8 = e.b.ins().bitcast(types::I8X16, le(), wa[h]);
                let b8 = e.b.ins().bitcast(types::I8X16, le(), wb[h]);
                let lo = e.b.ins().shuffle(a8, b8, lo_mask);
                let hi = e.b.ins().shuffle(a8, b8, hi_mask);
                e.b.ins().store(mf(), lo, d, (32 * h) as i32);
                e.b.ins().store(mf(), hi, d, (32 * h + 16) as i32);
            }
            Ok(())
        })?;
        for c in (n / 16) * 16..n {
            let va = e.load_q(xq, ra, c as i32);
            let va = e.b.ins().iadd_imm_s(va, -i64::from(zx));
            e.b.ins().istore16(mf(), va, dst, (4 * c) as i32);
            let vb = match rb {
                Some(rb) => {
                    let v = e.load_q(xq, rb, c as i32);
                    e.b.ins().iadd_imm_s(v, -i64::from(zx))
                }
                None => e.i32c(0),
            };
            e.b.ins().istore16(mf(), vb, dst, (4 * c + 2) as i32);
        }
        Ok(())
    };
    e.for_n(k / 2, |e, q| {
        let ro = e.muli(q, 2 * rs as i64);
        let ra = e.add(src, ro);
        let rb = e.addi(ra, rs as i64);
        let d = e.muli(q, (np * 4) as i64);
        let d = e.add(b, d);
        pair(e, ra, Some(rb), d)
    })?;
    if k % 2 == 1 {
        let ra = e.addi(src, ((k - 1) * rs) as i64);
        let d = e.addi(b, ((k / 2) * np * 4) as i64);
        pair(e, ra, None, d)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- depthwise rows

/// Tables of the depthwise plane kernel: weights `w - zw` as f32 `[c_out][k]` (exact:
/// integers in `[-255, 255]`) and the plain bias per channel (the kernel subtracts the
/// input zero point itself). `None` when the bias is not a constant.
/// Depthwise weights `w - zw` as i32 `[c_out][k]` (each in `[-255, 255]`) and the
/// constant bias per channel; `None` when the bias is not a constant.
fn dw_weights_bias(
    cx: &mut Cx,
    wt: &Tensor,
    pw: &QuantParams,
    c_out: usize,
    k: usize,
) -> Result<Option<(Vec<i32>, Vec<i32>)>> {
    let wv = shifted_weights(cx, wt, pw, 0)?;
    if wv.len() != c_out * k || wv.iter().any(|w| w.unsigned_abs() > 255) {
        return Ok(None);
    }
    let Some(bias) = const_bias(cx, c_out) else {
        return Ok(None);
    };
    let bias: Vec<i32> = bias.into_iter().map(|v| v as i32).collect();
    Ok(Some((wv, bias)))
}

/// One call per image of a channel-blocked depthwise kernel (the `dw16` / `dwq`
/// contract): `f(params, x, w, bias, rec, out, scratch)` with the tables `tabs` =
/// `[params, w, bias, rec]`, image `i`'s input at `x.0 + i · x.1` and result at
/// `y.0 + i · y.1`.
#[allow(clippy::too_many_arguments)]
fn dw_image_calls(
    e: &mut E,
    f: usize,
    batch: usize,
    x: (Value, usize),
    y: (Value, usize),
    tabs: [usize; 4],
    scratch: Value,
) -> Result<()> {
    e.for_n(batch, |e, bn| {
        let xo = e.muli(bn, x.1 as i64);
        let xb = e.add(x.0, xo);
        let yo = e.muli(bn, y.1 as i64);
        let yb = e.add(y.0, yo);
        let args = [
            e.ic(tabs[0] as i64),
            xb,
            e.ic(tabs[1] as i64),
            e.ic(tabs[2] as i64),
            e.ic(tabs[3] as i64),
            yb,
            scratch,
        ];
        e.call_addr(f, &args);
        Ok(())
    })
}

fn dw_plane_setup(
    cx: &mut Cx,
    wt: &Tensor,
    pw: &QuantParams,
    c_out: usize,
    k: usize,
) -> Result<Option<(usize, usize)>> {
    let Some((wv, init)) = dw_weights_bias(cx, wt, pw, c_out, k)? else {
        return Ok(None);
    };
    let wf: Vec<f32> = wv.iter().map(|&w| w as f32).collect();
    Ok(Some((cx.pool.add_f32(&wf), cx.pool.add_i32(&init))))
}

/// The epilogue of `n` i32 sums at `buf` for output row `row`: 16 columns per
/// iteration through the whole-vector float-contract path where it applies, else 8
/// through [`finish_row`].
#[allow(clippy::too_many_arguments)]
fn buf_requant(
    e: &mut E,
    native: Option<usize>,
    mode: Mode,
    job: &Job,
    epi: Epi,
    row: Value,
    buf: Value,
    n: usize,
) -> Result<()> {
    let z = e.ic(0);
    if native_requant(e, native, mode, job, epi, row, z, buf, n, 1, n) {
        return Ok(());
    }
    let fast = match epi {
        Epi::Q {
            table,
            q,
            contract: Contract::Float,
        } if job.init.is_none_or(|s| s.sn == 0)
            && job.out.sn == 1
            && crate::emit::qsize(q) == 1 =>
        {
            Some((table, q))
        }
        _ => None,
    };
    let mut done = 0;
    if let Some((table, q)) = fast {
        let rq = requant_setup(e, job, table, row);
        let oi = e.muli(row, job.out.sm);
        let base = e.add(job.out.ptr, oi);
        e.for_n(n / 16, |e, ci| {
            let o = e.muli(ci, 64);
            let src = e.add(buf, o);
            let mut v = [src; 4];
            for (j, v) in v.iter_mut().enumerate() {
                let acc = e.b.ins().load(types::I32X4, mf(), src, (16 * j) as i32);
                *v = requant_vec(e, &rq, acc);
            }
            let h0 = e.b.ins().snarrow(v[0], v[1]);
            let h1 = e.b.ins().snarrow(v[2], v[3]);
            let b = if q == QType::U8 {
                e.b.ins().unarrow(h0, h1)
            } else {
                e.b.ins().snarrow(h0, h1)
            };
            let o = e.muli(ci, 16);
            let dst = e.add(base, o);
            e.b.ins().store(mf(), b, dst, 0);
            Ok(())
        })?;
        done = (n / 16) * 16;
    }
    let rest = n - done;
    e.for_n(rest / NR, |e, ci| {
        let c0 = e.muli(ci, NR as i64);
        let c0 = e.addi(c0, done as i64);
        let src = e.addr(buf, c0, 4, 0);
        let v0 = e.b.ins().load(types::I32X4, mf(), src, 0);
        let v1 = e.b.ins().load(types::I32X4, mf(), src, 16);
        finish_row(e, mode, job, epi, row, c0, [v0, v1], NR, None)
    })?;
    let tail = rest % NR;
    if tail > 0 {
        let c0 = n - tail;
        let ni = e.ic(c0 as i64);
        // Whole vectors from buf: it has room (see the scratch layout in `conv`).
        let v0 = e.b.ins().load(types::I32X4, mf(), buf, (4 * c0) as i32);
        let v1 =
            e.b.ins()
                .load(types::I32X4, mf(), buf, (4 * c0 + 16) as i32);
        finish_row(e, mode, job, epi, row, ni, [v0, v1], tail, None)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- quad (u8 × i8) form
//
// With a quad-tile kernel (`vpdpbusd`), quantized conv uses a second packed form:
// `A` holds `w' = w - zw` as i8 quads along k (`A[m][k/4][4]`, used only when every
// `w'` fits i8), `B` holds the activation bytes as u8 quads (`B[k/4][np][4]`), where
// the u8 value is `x' = x` for u8 activations and `x' = x + 128` (the byte with its top
// bit flipped) for i8 ones; `zx'` is the zero point shifted the same way.
//
// **Exactness.** The kernel computes `Σ_k w'·x'` wrapping in i32, and the epilogue's
// bias is `bias - zx' · Σ_k w'` (computed at compile time, wrapped to i32). Modulo 2^32,
// `Σ w'·x' - zx'·Σ w' = Σ w'·(x' - zx') = Σ (w - zw)(x - zx)`, the interpreter's sum.
// Padding taps hold the byte of `zx` (so `x' = zx'`) and contribute 0; k padded to a
// multiple of 4 has `w' = 0` in `A`, so whatever `B` holds there contributes 0.

/// The bias of a conv/gemm as i64 per output channel: zeros without a bias input,
/// `None` when the bias is computed at run time (it cannot be folded at compile time).
fn const_bias(cx: &Cx, c_out: usize) -> Option<Vec<i64>> {
    if cx.node.inputs.len() <= 2 {
        return Some(vec![0; c_out]);
    }
    match cx.const_in(2) {
        Some(b) if b.dims().iter().product::<usize>() == c_out => Some(b.to_i64_vec()),
        _ => None,
    }
}

/// The quad form of a quantized conv, when the host and the weights allow it:
/// (kernel, packed `A` address, folded bias address).
#[allow(clippy::too_many_arguments)]
fn quad_setup(
    cx: &mut Cx,
    wt: &Tensor,
    pw: &QuantParams,
    c_out: usize,
    k: usize,
    cols: usize,
    xq: QType,
    zx: i32,
) -> Result<Option<(PairTile, usize, usize)>> {
    let Some(t) = kernels::quad_tile_for(cx.opts.kernels, cols) else {
        return Ok(None);
    };
    let wv = shifted_weights(cx, wt, pw, 0)?;
    if wv.len() != c_out * k || wv.iter().any(|&w| !(-128..=127).contains(&w)) {
        return Ok(None);
    }
    // A bias computed at run time cannot be folded: use the pair form.
    let Some(bias) = const_bias(cx, c_out) else {
        return Ok(None);
    };
    let zxp = i64::from(if xq == QType::U8 { zx } else { zx + 128 });
    let kq = k.div_ceil(4);
    let mut pa = vec![0u8; c_out * kq * 4];
    let mut init = Vec::with_capacity(c_out);
    for c in 0..c_out {
        let row = &wv[c * k..(c + 1) * k];
        for (kk, &w) in row.iter().enumerate() {
            pa[c * kq * 4 + kk] = w as i8 as u8;
        }
        let sum: i64 = row.iter().map(|&w| i64::from(w)).sum();
        // Wrapping to i32 is reduction modulo 2^32, like every other step of the sum.
        init.push((bias[c] - zxp * sum) as i32);
    }
    let a = cx.pool.add(&pa);
    let b = cx.pool.add_i32(&init);
    Ok(Some((t, a, b)))
}

/// The implicit-GEMM form of a quantized conv with one group (`kernels::quad_taps`):
/// `A` row `r` holds, tap by tap (`(ky, kx)` in order), the `kq_t` quads of `w' = w -
/// zw` over the input channels (zero past `c_in`), and the folded bias is the quad
/// form's (`bias - zx' · Σ w'`, exactness argued at [`quad_setup`]: every tap of the
/// padded input reads `zx` where the conv pads). `None` when a `w'` leaves i8 or the
/// bias is not constant. Returns (tile, packed `A`, folded bias, quads per tap).
#[allow(clippy::too_many_arguments)]
fn taps_setup(
    cx: &mut Cx,
    wt: &Tensor,
    pw: &QuantParams,
    c_out: usize,
    c_in: usize,
    taps: usize,
    xq: QType,
    zx: i32,
) -> Result<Option<(PairTile, usize, usize, usize)>> {
    let Some(t) = kernels::quad_tile(cx.opts.kernels) else {
        return Ok(None);
    };
    let k = c_in * taps;
    let wv = shifted_weights(cx, wt, pw, 0)?;
    if wv.len() != c_out * k || wv.iter().any(|&w| !(-128..=127).contains(&w)) {
        return Ok(None);
    }
    let Some(bias) = const_bias(cx, c_out) else {
        return Ok(None);
    };
    let zxp = i64::from(if xq == QType::U8 { zx } else { zx + 128 });
    let kq_t = c_in.div_ceil(4);
    let row = taps * kq_t * 4;
    // The tap kernels' interleaved A: blocks of `il` rows (zero rows pad the last),
    // quad step `s` of a block's row `i` at `4 · (il · s + i)`; row block `b` starts
    // at `b · il · row`, where row-major row `b · il` would.
    let il = kernels::QUAD_TAPS_IL;
    let mut pa = vec![0u8; round_up(c_out, il) * row];
    let mut init = Vec::with_capacity(c_out);
    for r in 0..c_out {
        // ONNX order of a row: channel, then the taps of the kernel window.
        let w = &wv[r * k..(r + 1) * k];
        let base = (r / il) * il * row + 4 * (r % il);
        for c in 0..c_in {
            for tap in 0..taps {
                let s = tap * kq_t + c / 4;
                pa[base + 4 * il * s + c % 4] = w[c * taps + tap] as i8 as u8;
            }
        }
        let sum: i64 = w.iter().map(|&v| i64::from(v)).sum();
        // Wrapping to i32 is reduction modulo 2^32, like every other step of the sum.
        init.push((bias[r] - zxp * sum) as i32);
    }
    Ok(Some((t, cx.pool.add(&pa), cx.pool.add_i32(&init), kq_t)))
}

/// Quad packing: `k` rows of `n` bytes (row `r` at `src + r * rs`) into u8 quads of
/// `B` (`np` columns per quad step); i8 bytes get their top bit flipped (`x + 128`).
#[allow(clippy::too_many_arguments)]
fn quad_pack(
    e: &mut E,
    xq: QType,
    src: Value,
    rs: usize,
    k: usize,
    n: usize,
    b: Value,
    np: usize,
    panel: Option<usize>,
) -> Result<()> {
    let kq = k.div_ceil(4);
    // Byte offset of column `c`'s quad in step 0: row-major steps of `np` columns, or
    // panels of `w` columns with the `kq` steps of a panel contiguous.
    // Panels must hold whole 16-column chunks (the vector steps below).
    let panel = panel.filter(|w| *w > 0 && w % 16 == 0);
    let (step_bytes, panel_w) = match panel {
        Some(w) => (4 * w, w),
        None => (4 * np, 0),
    };
    let z8 = e.b.ins().iconst(types::I8, 0);
    let zero = e.b.ins().splat(types::I8X16, z8);
    let f8 = e.b.ins().iconst(types::I8, 0x80);
    let flip = e.b.ins().splat(types::I8X16, f8);
    let m8lo = shuffle_mask(e, [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23]);
    let m8hi = shuffle_mask(
        e,
        [8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31],
    );
    let m16lo = shuffle_mask(e, [0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23]);
    let m16hi = shuffle_mask(
        e,
        [8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31],
    );
    let quads = |e: &mut E, rows: [Option<Value>; 4], dst: Value| -> Result<()> {
        e.for_n(n / 16, |e, c| {
            let o = e.muli(c, 16);
            let mut v = [zero; 4];
            for (j, r) in rows.iter().enumerate() {
                if let Some(r) = r {
                    let pa = e.add(*r, o);
                    let x = e.b.ins().load(types::I8X16, mf(), pa, 0);
                    v[j] = if xq == QType::U8 {
                        x
                    } else {
                        e.b.ins().bxor(x, flip)
                    };
                }
            }
            let ab_lo = e.b.ins().shuffle(v[0], v[1], m8lo);
            let ab_hi = e.b.ins().shuffle(v[0], v[1], m8hi);
            let cd_lo = e.b.ins().shuffle(v[2], v[3], m8lo);
            let cd_hi = e.b.ins().shuffle(v[2], v[3], m8hi);
            let d = if panel_w == 0 {
                e.muli(c, 64)
            } else {
                // 16 columns from 16c: panel 16c / w, at (16c % w) · 4 inside it.
                let per = (panel_w / 16) as i64;
                let pi = e.b.ins().udiv_imm_u(c, per);
                let pr = e.b.ins().urem_imm_u(c, per);
                let a = e.muli(pi, (kq * 4 * panel_w) as i64);
                let b2 = e.muli(pr, 64);
                e.add(a, b2)
            };
            let d = e.add(dst, d);
            for (h, (ab, cd)) in [(ab_lo, cd_lo), (ab_hi, cd_hi)].into_iter().enumerate() {
                let lo = e.b.ins().shuffle(ab, cd, m16lo);
                let hi = e.b.ins().shuffle(ab, cd, m16hi);
                e.b.ins().store(mf(), lo, d, (32 * h) as i32);
                e.b.ins().store(mf(), hi, d, (32 * h + 16) as i32);
            }
            Ok(())
        })?;
        for c in (n / 16) * 16..n {
            for (j, r) in rows.iter().enumerate() {
                let v = match r {
                    Some(r) => {
                        let x = e.b.ins().uload8(I32, mf(), *r, c as i32);
                        if xq == QType::U8 {
                            x
                        } else {
                            e.b.ins().bxor_imm_s(x, 0x80)
                        }
                    }
                    None => e.i32c(0),
                };
                let off = match c.checked_div(panel_w) {
                    None => 4 * c + j,
                    Some(pi) => pi * kq * 4 * panel_w + (c % panel_w) * 4 + j,
                };
                e.b.ins().istore8(mf(), v, dst, off as i32);
            }
        }
        Ok(())
    };
    e.for_n(k / 4, |e, q| {
        let ro = e.muli(q, 4 * rs as i64);
        let r0 = e.add(src, ro);
        let rows = [
            Some(r0),
            Some(e.addi(r0, rs as i64)),
            Some(e.addi(r0, 2 * rs as i64)),
            Some(e.addi(r0, 3 * rs as i64)),
        ];
        let d = e.muli(q, step_bytes as i64);
        let d = e.add(b, d);
        quads(e, rows, d)
    })?;
    if !k.is_multiple_of(4) {
        let r0 = (k / 4) * 4;
        let mut rows = [None; 4];
        for (j, r) in rows.iter_mut().enumerate().take(k % 4) {
            *r = Some(e.addi(src, ((r0 + j) * rs) as i64));
        }
        let d = e.addi(b, ((k / 4) * step_bytes) as i64);
        quads(e, rows, d)?;
    }
    Ok(())
}

/// Input coordinate `o * stride + k * dil - pad` of spatial dim `d` (may be negative).
fn coord(e: &mut E, o: Value, k: Value, d: usize, g: &ConvGeom) -> Value {
    let a = e.muli(o, g.stride[d] as i64);
    let b = e.muli(k, g.dil[d] as i64);
    let s = e.add(a, b);
    e.addi(s, -(g.pad[d] as i64))
}

pub(crate) fn conv(cx: &mut Cx, e: &mut E, p: &Ptrs, a: &ConvAttrs) -> Result<usize> {
    cx.arity(2, 3)?;
    let x = cx.in_ty(0)?.clone();
    let w = cx.in_ty(1)?.clone();
    let y = cx.out_ty(0)?.clone();
    let g = conv_geom(a, x.shape.dims(), w.shape.dims(), y.shape.dims())
        .ok_or_else(|| cx.unsupported("conv geometry"))?;
    let wt = cx
        .const_in(1)
        .cloned()
        .ok_or_else(|| cx.unsupported("conv weights must be constant"))?;
    let cin_g = g.c_in / g.group;
    let cout_g = g.c_out / g.group;
    let k = cin_g * g.k.iter().product::<usize>();
    let n = g.out_sp.iter().product::<usize>();
    let (mode, epi, a_addr) = match (&x.quant, &w.quant) {
        (Some(_), Some(pw)) => {
            let (xq, sx, zx) = act_params(cx, &x)?;
            let (sw, _) = per_channel(cx, pw, g.c_out)?;
            let wv = shifted_weights(cx, &wt, pw, 0)?;
            let pa = pack_a_q(g.c_out, k, |r, kk| wv[r * k + kk]);
            let epi = make_epi(cx, sx, &sw, &y, 1, a.act_of())?;
            (Mode::Q { xq, zx }, epi, cx.pool.add_i16(&pa))
        }
        (None, None) if x.dtype == qc_ir::DType::F32 && y.dtype == qc_ir::DType::F32 => {
            let wv = wt.to_f32_vec();
            let pa = pack_a_f(g.c_out, k, |r, kk| wv[r * k + kk]);
            let epi = Epi::F {
                alpha: 1.0,
                beta: 0.0,
                act: a.act_of(),
            };
            (Mode::F, epi, cx.pool.add_f32(&pa))
        }
        _ => return Err(cx.unsupported("operand types (float, or 8-bit quantized x and w)")),
    };
    let bias = if cx.node.inputs.len() > 2 {
        let bt = cx.in_ty(2)?;
        let ok = match mode {
            Mode::Q { .. } => bt.dtype == qc_ir::DType::I32 && !bt.is_quantized(),
            Mode::F => bt.dtype == qc_ir::DType::F32 && !bt.is_quantized(),
        };
        if !ok || numel(bt.shape.dims()) != g.c_out {
            return Err(cx.unsupported("bias type"));
        }
        Some(p.ins[2])
    } else {
        None
    };
    let esize = match mode {
        Mode::Q { .. } => 1i64,
        Mode::F => 4,
    };
    let ysize = match &y.quant {
        Some(q) => crate::emit::qsize(q.storage),
        None => 4,
    };
    let isz: usize = g.in_sp.iter().product();
    let bbuf = p.scratch;
    let direct =
        g.k == [1, 1, 1] && g.stride == [1, 1, 1] && g.pad == [0; 3] && g.in_sp == g.out_sp;
    // Depthwise 2-D conv with the native plane kernel: per output channel, all taps
    // summed in registers straight from the input plane (no im2col).
    if let (Mode::Q { xq, zx }, Some(dwf), Some(pw), 1, 1..=4) = (
        mode,
        kernels::dw_plane(cx.opts.kernels),
        &w.quant,
        cin_g,
        cout_g,
    ) {
        let plane = kernels::dw_plane::Plane {
            ih: g.in_sp[1],
            iw: g.in_sp[2],
            kh: g.k[1],
            kw: g.k[2],
            sh: g.stride[1],
            sw: g.stride[2],
            dh: g.dil[1],
            dw: g.dil[2],
            pt: g.pad[1],
            pl: g.pad[2],
            oh: g.out_sp[1],
            ow: g.out_sp[2],
        };
        let flat = g.in_sp[0] == 1 && g.out_sp[0] == 1 && g.k[0] == 1 && g.pad[0] == 0;
        // Byte planes and `vpdpbusd` quads, the `float` contract's epilogue fused: one
        // call per image (i8 weights only).
        if let (
            true,
            Some(fq),
            Epi::Q {
                table,
                q: QType::U8 | QType::I8,
                contract: Contract::Float,
            },
        ) = (
            flat && plane.ow >= kernels::dwq::MIN_OW && kernels::dwq::applies(&plane, g.c_in),
            kernels::dwq(cx.opts.kernels),
            epi,
        ) {
            let signed = xq == QType::I8;
            let packed = match dw_weights_bias(cx, &wt, pw, g.c_out, k)? {
                Some((wv, bias)) => kernels::dwq::pack(&plane, &wv, &bias, g.c_out, zx, signed),
                None => None,
            };
            if let Some((wp, bp)) = packed {
                let wtab = cx.pool.add_i32(&wp);
                let btab = cx.pool.add_i32(&bp);
                let prm = kernels::dw16::params(&plane, zx, signed, g.c_out, cout_g);
                let ptab = cx.pool.add_slice(&prm);
                dw_image_calls(
                    e,
                    fq,
                    g.batch,
                    (p.ins[0], g.c_in * isz),
                    (p.outs[0], g.c_out * n),
                    [ptab, wtab, btab, table],
                    bbuf,
                )?;
                return Ok(kernels::dwq::scratch_bytes(&plane));
            }
        }
        // Channels in the lanes, the `float` contract's epilogue fused: one call per
        // image.
        if let (
            true,
            Some(f16),
            Epi::Q {
                table,
                q: QType::U8 | QType::I8,
                contract: Contract::Float,
            },
        ) = (
            flat && kernels::dw16::applies(&plane, g.c_in),
            kernels::dw16(cx.opts.kernels),
            epi,
        ) {
            if let Some((wv, bias)) = dw_weights_bias(cx, &wt, pw, g.c_out, k)? {
                let wtab = cx
                    .pool
                    .add_f32(&kernels::dw16::weight_blocks(&wv, g.c_out, k));
                let btab = cx.pool.add_i32(&bias);
                let prm = kernels::dw16::params(&plane, zx, xq == QType::I8, g.c_out, cout_g);
                let ptab = cx.pool.add_slice(&prm);
                dw_image_calls(
                    e,
                    f16,
                    g.batch,
                    (p.ins[0], g.c_in * isz),
                    (p.outs[0], g.c_out * n),
                    [ptab, wtab, btab, table],
                    bbuf,
                )?;
                return Ok(kernels::dw16::scratch_bytes(&plane));
            }
        }
        if flat && kernels::dw_plane::applies(&plane) {
            if let Some((wtab, itab)) = dw_plane_setup(cx, &wt, pw, g.c_out, k)? {
                let ptab = cx.pool.add_slice(&plane.params(zx, xq == QType::I8));
                // Channels per kernel call: enough that small planes share one call
                // and one epilogue call, few enough that the group's sums (16 KiB)
                // stay in cache.
                let group = (4096 / n.max(1)).clamp(1, g.c_out.max(1));
                let buf_off = round_up(kernels::dw_plane::scratch_bytes(&plane), 64);
                // The sums of one group, plus room for whole-vector reads of the last 8.
                let scratch = buf_off + 4 * (group * n + NR);
                let rq = kernels::requant_tile(cx.opts.kernels);
                let (full, rest) = (g.c_out / group, g.c_out % group);
                e.for_n(g.batch, |e, bn| {
                    let yo = e.muli(bn, (g.c_out * n) as i64 * ysize);
                    let yb = e.add(p.outs[0], yo);
                    let buf = e.addi(bbuf, buf_off as i64);
                    let init = e.ic(itab as i64);
                    let job = Job {
                        m: g.c_out,
                        n,
                        kp: 0,
                        k,
                        np: n,
                        a: wtab,
                        b: bbuf,
                        out: Strided {
                            ptr: yb,
                            sm: n as i64,
                            sn: 1,
                        },
                        init: Some(Strided {
                            ptr: init,
                            sm: 1,
                            sn: 0,
                        }),
                        post: None,
                        row0: 0,
                        native: None,
                        b_panel: false,
                        taps: None,
                    };
                    let ic0 = e.muli(bn, g.c_in as i64);
                    let xo = e.muli(ic0, isz as i64);
                    let xb = e.add(p.ins[0], xo);
                    // Output channels oc0..oc0 + cnt: sums, then their epilogue.
                    let run = |e: &mut E, oc0: Value, cnt: usize| -> Result<()> {
                        let wt0 = e.ic(wtab as i64);
                        let wp = e.addr(wt0, oc0, (4 * k) as i64, 0);
                        let args = [
                            e.ic(ptab as i64),
                            xb,
                            wp,
                            buf,
                            bbuf,
                            oc0,
                            e.ic(cnt as i64),
                            e.ic(cout_g as i64),
                        ];
                        e.call_addr(dwf, &args);
                        let z = e.ic(0);
                        if native_requant(e, rq, mode, &job, epi, oc0, z, buf, n, cnt, n) {
                            return Ok(());
                        }
                        e.for_n(cnt, |e, j| {
                            let oc = e.add(oc0, j);
                            let rb = e.addr(buf, j, (4 * n) as i64, 0);
                            buf_requant(e, rq, mode, &job, epi, oc, rb, n)
                        })
                    };
                    e.for_n(full, |e, gi| {
                        let oc0 = e.muli(gi, group as i64);
                        run(e, oc0, group)
                    })?;
                    if rest > 0 {
                        let oc0 = e.ic((full * group) as i64);
                        run(e, oc0, rest)?;
                    }
                    Ok(())
                })?;
                return Ok(scratch);
            }
        }
    }
    // Stride-1 and stride-2 convs of one group with a window: implicit GEMM over the
    // taps of a zero-point-padded copy of the input (no im2col). Stride 2 splits the
    // padded input into its four phase planes (even/odd rows × even/odd columns, one
    // after another along B's columns): tap (ky, kx) then reads phase (ky % 2, kx % 2)
    // at (ky / 2, kx / 2), a stride-1 window. Outputs are computed on the plane width
    // (the extra columns discarded), then compacted.
    let flat2 = g.in_sp[0] == 1 && g.out_sp[0] == 1 && g.k[0] == 1 && g.pad[0] == 0;
    let window = g.k[1] * g.k[2] > 1;
    let st = g.stride[1];
    let taps_geom = g.stride == [1, 1, 1] || (g.stride == [1, 2, 2] && g.dil == [1, 1, 1]);
    if let (Mode::Q { xq, zx }, true, Some(ft), Some(pw), 1) = (
        mode,
        flat2 && window && g.group == 1 && taps_geom && ysize == 1,
        kernels::quad_taps(cx.opts.kernels),
        &w.quant,
        g.group,
    ) {
        let taps = g.k[1] * g.k[2];
        if let Some((t, qa, qinit, kq_t)) = taps_setup(cx, &wt, pw, g.c_out, g.c_in, taps, xq, zx)?
        {
            let (ih, iw) = (g.in_sp[1], g.in_sp[2]);
            let (oh, ow) = (g.out_sp[1], g.out_sp[2]);
            let (pt, pl) = (g.pad[1], g.pad[2]);
            // A phase plane (the padded input itself at stride 1): hp × wp, the
            // planes `plane` columns apart.
            let hp = oh + (g.k[1] - 1) * g.dil[1] / st;
            let wp = ow + (g.k[2] - 1) * g.dil[2] / st;
            let plane = hp * wp;
            let phases = st * st;
            let np_out = oh * wp;
            // Per tap, its first B column.
            let tap_col = |ky: usize, kx: usize| {
                let (ky, kx) = (ky * g.dil[1], kx * g.dil[2]);
                ((ky % st) * st + kx % st) * plane + (ky / st) * wp + kx / st
            };
            let max_off = (0..g.k[1])
                .flat_map(|ky| (0..g.k[2]).map(move |kx| (ky, kx)))
                .map(|(ky, kx)| tap_col(ky, kx))
                .max()
                .unwrap_or(0);
            // Every column a tile reads: the last tile's columns plus the farthest tap,
            // and every plane.
            let np = round_up((round_up(np_out, t.nr) + max_off).max(phases * plane), t.nr);
            // Per tap, the byte offset of its first B column.
            let toff: Vec<usize> = (0..g.k[1])
                .flat_map(|ky| (0..g.k[2]).map(move |kx| (ky, kx)))
                .map(|(ky, kx)| tap_col(ky, kx) * 4)
                .collect();
            let toff = cx.pool.add_slice(&toff);
            let kq_bytes = round_up(kq_t * np * 4, 64);
            let raw_off = kq_bytes;
            let buf_off = round_up(raw_off + g.c_in * np, 64);
            let tmp_off = round_up(buf_off + t.mr * t.nr * 4, 64);
            let scratch = tmp_off + g.c_out * np_out + 64;
            let byte = e.i32c(zx);
            let b8 = e.b.ins().ireduce(types::I8, byte);
            let zv = e.b.ins().splat(types::I8X16, b8);
            // Per phase plane and plane row: (input row, first plane column, first
            // input column, length), the in-range samples (static).
            let mut rows: Vec<(usize, usize, usize, usize)> = Vec::new();
            for (py, px) in (0..st).flat_map(|a| (0..st).map(move |b| (a, b))) {
                // Plane column j holds padded column st·j + px: input column
                // st·j + px - pl, in range for j in [jlo, jhi).
                let jlo = pl.saturating_sub(px).div_ceil(st);
                let jhi = ((iw + pl).saturating_sub(px)).div_ceil(st).min(wp);
                if jlo >= jhi {
                    continue;
                }
                for i in 0..hp {
                    let Some(iy) = (st * i + py).checked_sub(pt).filter(|&iy| iy < ih) else {
                        continue;
                    };
                    let col0 = (py * st + px) * plane + i * wp + jlo;
                    rows.push((iy, col0, st * jlo + px - pl, jhi - jlo));
                }
            }
            e.for_n(g.batch, |e, bn| {
                let xo = e.muli(bn, (g.c_in * isz) as i64);
                let xb = e.add(p.ins[0], xo);
                let raw = e.addi(bbuf, raw_off as i64);
                fill_static(e, raw, g.c_in * np, zv, byte);
                if !rows.is_empty() {
                    e.for_n(g.c_in, |e, c| {
                        let so = e.muli(c, isz as i64);
                        let src_c = e.add(xb, so);
                        let dof = e.muli(c, np as i64);
                        let dst_c = e.add(raw, dof);
                        for &(iy, col0, ix0, len) in &rows {
                            let s = e.addi(src_c, (iy * iw + ix0) as i64);
                            let d = e.addi(dst_c, col0 as i64);
                            if st == 1 {
                                copy_static(e, d, s, len);
                            } else if len >= 16 {
                                gather_s2(e, d, s, len)?;
                            } else {
                                for j in 0..len {
                                    let v = e.b.ins().load(types::I8, mf(), s, (2 * j) as i32);
                                    e.b.ins().store(mf(), v, d, j as i32);
                                }
                            }
                        }
                        Ok(())
                    })?;
                }
                quad_pack(e, xq, raw, np, g.c_in, np, bbuf, np, None)?;
                let tmp = e.addi(bbuf, tmp_off as i64);
                let buf = e.addi(bbuf, buf_off as i64);
                let init = e.ic(qinit as i64);
                let job = Job {
                    m: g.c_out,
                    n: np_out,
                    kp: taps * kq_t,
                    k: g.c_in * taps,
                    np,
                    a: qa,
                    b: bbuf,
                    out: Strided {
                        ptr: tmp,
                        sm: np_out as i64,
                        sn: 1,
                    },
                    init: Some(Strided {
                        ptr: init,
                        sm: 1,
                        sn: 0,
                    }),
                    post: None,
                    row0: 0,
                    native: Some((t, buf)),
                    b_panel: false,
                    taps: Some((toff, taps, kq_t, ft)),
                };
                let z = e.ic(0);
                emit_gemm(e, mode, &job, epi, z)?;
                // Keep the ow real columns of each row.
                let yo = e.muli(bn, (g.c_out * n) as i64);
                let yb = e.add(p.outs[0], yo);
                e.for_n(g.c_out, |e, c| {
                    let so = e.muli(c, np_out as i64);
                    let s = e.add(tmp, so);
                    let dof = e.muli(c, n as i64);
                    let d = e.add(yb, dof);
                    e.for_n(oh, |e, oy| {
                        let s2 = e.muli(oy, wp as i64);
                        let s2 = e.add(s, s2);
                        let d2 = e.muli(oy, ow as i64);
                        let d2 = e.add(d, d2);
                        copy_static(e, d2, s2, ow);
                        Ok(())
                    })
                })
            })?;
            return Ok(scratch);
        }
    }
    let quad = match (mode, &w.quant) {
        (Mode::Q { xq, zx }, Some(pw)) => quad_setup(cx, &wt, pw, g.c_out, k, n, xq, zx)?,
        _ => None,
    };
    if let (Some((t, qa, qinit)), Mode::Q { xq, zx }) = (quad, mode) {
        let kq = k.div_ceil(4);
        let np = pad_cols(n, Some(t));
        let tbuf = round_up(kq * np * 4, 64);
        let raw_off = round_up(tbuf + t.mr * t.nr * 4, 64);
        let scratch = if direct { raw_off } else { raw_off + k * n };
        e.for_n(g.batch, |e, bn| {
            e.for_n(g.group, |e, gi| {
                let ic0 = e.muli(bn, g.c_in as i64);
                let t0 = e.muli(gi, cin_g as i64);
                let ic0 = e.add(ic0, t0);
                let xo = e.muli(ic0, isz as i64);
                let xb = e.add(p.ins[0], xo);
                if direct {
                    quad_pack(e, xq, xb, isz, k, n, bbuf, np, Some(t.nr))?;
                } else {
                    let raw = e.addi(bbuf, raw_off as i64);
                    im2col_raw(e, zx, &g, xb, raw)?;
                    quad_pack(e, xq, raw, n, k, n, bbuf, np, Some(t.nr))?;
                }
                let yo = e.muli(bn, (g.c_out * n) as i64 * ysize);
                let yb = e.add(p.outs[0], yo);
                let init = e.ic(qinit as i64);
                let buf = e.addi(bbuf, tbuf as i64);
                let job = Job {
                    m: cout_g,
                    n,
                    kp: kq,
                    k,
                    np,
                    a: qa,
                    b: bbuf,
                    out: Strided {
                        ptr: yb,
                        sm: n as i64,
                        sn: 1,
                    },
                    init: Some(Strided {
                        ptr: init,
                        sm: 1,
                        sn: 0,
                    }),
                    post: None,
                    row0: 0,
                    native: Some((t, buf)),
                    b_panel: true,
                    taps: None,
                };
                let row_start = e.muli(gi, cout_g as i64);
                emit_gemm(e, mode, &job, epi, row_start)
            })
        })?;
        return Ok(scratch);
    }
    let native = native_for(cx, mode);
    let np = pad_cols(n, native);
    // The raw im2col bytes (quantized, not direct) follow everything else.
    let raw_off = round_up(scratch_bytes(mode, k, np, native), 64);
    let scratch = match mode {
        Mode::Q { .. } if !direct => raw_off + k * n,
        _ => scratch_bytes(mode, k, np, native),
    };
    e.for_n(g.batch, |e, bn| {
        e.for_n(g.group, |e, gi| {
            let ic0 = e.muli(bn, g.c_in as i64);
            let t = e.muli(gi, cin_g as i64);
            let ic0 = e.add(ic0, t);
            let xo = e.muli(ic0, (isz as i64) * esize);
            let xb = e.add(p.ins[0], xo);
            match mode {
                Mode::Q { xq, zx } if direct => pair_pack(e, xq, zx, xb, isz, k, n, bbuf, np)?,
                Mode::Q { xq, zx } => {
                    let raw = e.addi(bbuf, raw_off as i64);
                    im2col_raw(e, zx, &g, xb, raw)?;
                    pair_pack(e, xq, zx, raw, n, k, n, bbuf, np)?;
                }
                Mode::F => {
                    zero_b(e, mode, bbuf, k, n, np);
                    im2col(e, mode, &g, xb, bbuf, np)?;
                }
            }
            let yo = e.muli(bn, (g.c_out * n) as i64 * ysize);
            let yb = e.add(p.outs[0], yo);
            let job = Job {
                m: cout_g,
                n,
                kp: k.div_ceil(2),
                k,
                np,
                a: a_addr,
                b: bbuf,
                out: Strided {
                    ptr: yb,
                    sm: n as i64,
                    sn: 1,
                },
                init: bias.map(|ptr| Strided { ptr, sm: 1, sn: 0 }),
                post: None,
                row0: 0,
                native: native_buf(e, mode, bbuf, k, np, native),
                b_panel: false,
                taps: None,
            };
            let row_start = e.muli(gi, cout_g as i64);
            emit_gemm(e, mode, &job, epi, row_start)
        })
    })?;
    Ok(scratch)
}

trait ActOf {
    fn act_of(&self) -> Activation;
}

impl ActOf for ConvAttrs {
    fn act_of(&self) -> Activation {
        self.act
    }
}

impl ActOf for GemmAttrs {
    fn act_of(&self) -> Activation {
        self.act
    }
}

// ---------------------------------------------------------------- gemm / matmul

#[allow(clippy::too_many_arguments)]
/// Pack rows `0..cols` of an activation matrix (`get_idx(i, k)` = element index) into
/// packed `B`, column `i` = matrix row `i`.
fn pack_b_matrix(
    e: &mut E,
    mode: Mode,
    x: Value,
    b: Value,
    np: usize,
    rows: usize,
    k: usize,
    si: i64,
    sk: i64,
) -> Result<()> {
    e.for_n(rows, |e, i| {
        let base = e.muli(i, si);
        e.for_n(k, |e, kk| {
            let t = e.muli(kk, sk);
            let idx = e.add(base, t);
            let v = load_x(e, mode, x, idx);
            store_b(e, mode, b, np, kk, i, v);
            Ok(())
        })
    })
}

fn bcast2(sh: &[usize], m: usize, n: usize) -> Option<(i64, i64)> {
    match sh {
        [] => Some((0, 0)),
        [a] if *a == n => Some((0, 1)),
        [1] => Some((0, 0)),
        [a, b] => {
            let si = if *a == m && m != 1 {
                *b as i64
            } else if *a == 1 {
                0
            } else {
                return None;
            };
            let sj = if *b == n && n != 1 {
                1
            } else if *b == 1 {
                0
            } else {
                return None;
            };
            Some((si, sj))
        }
        _ => None,
    }
}

pub(crate) fn gemm(cx: &mut Cx, e: &mut E, p: &Ptrs, a: &GemmAttrs) -> Result<usize> {
    cx.arity(2, 3)?;
    let at = cx.in_ty(0)?.clone();
    let bt = cx.in_ty(1)?.clone();
    let y = cx.out_ty(0)?.clone();
    let (ad, bd) = (at.shape.dims().to_vec(), bt.shape.dims().to_vec());
    let (&[a0, a1], &[b0, b1]) = (ad.as_slice(), bd.as_slice()) else {
        return Err(cx.unsupported("gemm needs 2-D operands"));
    };
    let (m, k) = if a.trans_a { (a1, a0) } else { (a0, a1) };
    let (kb, n) = if a.trans_b { (b1, b0) } else { (b0, b1) };
    if k != kb {
        return Err(cx.unsupported("inner dims differ"));
    }
    let wt = cx
        .const_in(1)
        .cloned()
        .ok_or_else(|| cx.unsupported("gemm weights (b) must be constant"))?;
    // A (weights) row j, k: b[k][j] or b[j][k] (trans_b).
    let widx = |j: usize, kk: usize| if a.trans_b { j * k + kk } else { kk * n + j };
    let (mode, epi, a_addr) = match (&at.quant, &bt.quant) {
        (Some(_), Some(pw)) => {
            if a.alpha != 1.0 || (cx.node.inputs.len() > 2 && a.beta != 1.0) {
                return Err(cx.unsupported("quantized gemm needs alpha = beta = 1"));
            }
            let (xq, sx, zx) = act_params(cx, &at)?;
            let (sw, _) = per_channel(cx, pw, n)?;
            let wv = shifted_weights(cx, &wt, pw, if a.trans_b { 0 } else { 1 })?;
            let pa = pack_a_q(n, k, |j, kk| wv[widx(j, kk)]);
            let epi = make_epi(cx, sx, &sw, &y, 1, a.act)?;
            (Mode::Q { xq, zx }, epi, cx.pool.add_i16(&pa))
        }
        (None, None) if at.dtype == qc_ir::DType::F32 && y.dtype == qc_ir::DType::F32 => {
            let wv = wt.to_f32_vec();
            let pa = pack_a_f(n, k, |j, kk| wv[widx(j, kk)]);
            let epi = Epi::F {
                alpha: a.alpha,
                beta: a.beta,
                act: a.act,
            };
            (Mode::F, epi, cx.pool.add_f32(&pa))
        }
        _ => return Err(cx.unsupported("operand types (float, or 8-bit quantized a and b)")),
    };
    let c = if cx.node.inputs.len() > 2 {
        let ct = cx.in_ty(2)?.clone();
        let (si, sj) = bcast2(ct.shape.dims(), m, n)
            .ok_or_else(|| cx.unsupported("c does not broadcast to the result"))?;
        let ok = match mode {
            Mode::Q { .. } => ct.dtype == qc_ir::DType::I32 && !ct.is_quantized(),
            Mode::F => ct.dtype == qc_ir::DType::F32 && !ct.is_quantized(),
        };
        if !ok {
            return Err(cx.unsupported("c type"));
        }
        // Rows of the GEMM are gemm columns j, columns are gemm rows i.
        Some(Strided {
            ptr: p.ins[2],
            sm: sj,
            sn: si,
        })
    } else {
        None
    };
    // One row of activations (batch 1): a native matrix-vector product over the pair
    // form's weight rows, then the usual epilogue per output.
    // The quad form (u8 × i8, `vpdpbusd`) when the weights allow it: half the weight
    // bytes of the pair form, which is what a matrix-vector product is bound by.
    if let (Mode::Q { xq, zx }, 1, true, Some(gq), Some(pw)) = (
        mode,
        m,
        a.trans_b,
        kernels::gemv_quad(cx.opts.kernels),
        &bt.quant,
    ) {
        if let Some((_, qa, qinit)) = quad_setup(cx, &wt, pw, n, k, 1, xq, zx)? {
            let row = 4 * k.div_ceil(4);
            let buf_off = round_up(row, 64);
            let scratch = buf_off + 4 * (n + NR);
            let xv = p.scratch;
            // x' (u8, i8 with the top bit flipped), zero past k.
            let z32 = e.i32c(0);
            e.b.ins().store(mf(), z32, xv, (row - 4) as i32);
            e.for_n(k, |e, kk| {
                let src = e.add(p.ins[0], kk);
                let v = e.b.ins().uload8(I32, mf(), src, 0);
                let v = if xq == QType::U8 {
                    v
                } else {
                    e.b.ins().bxor_imm_s(v, 0x80)
                };
                let d = e.add(xv, kk);
                e.b.ins().istore8(mf(), v, d, 0);
                Ok(())
            })?;
            let buf = e.addi(p.scratch, buf_off as i64);
            let rq = kernels::requant_tile(cx.opts.kernels);
            let args = [e.ic(qa as i64), e.ic(row as i64), xv, e.ic(n as i64), buf];
            e.call_addr(gq, &args);
            let init = e.ic(qinit as i64);
            let job = Job {
                m: n,
                n: 1,
                kp: 0,
                k,
                np: 1,
                a: qa,
                b: p.scratch,
                // One column: its stride never applies.
                out: Strided {
                    ptr: p.outs[0],
                    sm: 1,
                    sn: 1,
                },
                init: Some(Strided {
                    ptr: init,
                    sm: 1,
                    sn: 0,
                }),
                post: None,
                row0: 0,
                native: None,
                b_panel: false,
                taps: None,
            };
            // All n outputs in one native call (n rows of one sum each), else per row.
            let z = e.ic(0);
            if !native_requant(e, rq, mode, &job, epi, z, z, buf, 1, n, 1) {
                e.for_n(n, |e, r| {
                    let b = e.addr(buf, r, 4, 0);
                    buf_requant(e, rq, mode, &job, epi, r, b, 1)
                })?;
            }
            return Ok(scratch);
        }
    }
    if let (Mode::Q { xq, zx }, 1, Some(gv)) = (mode, m, kernels::gemv(cx.opts.kernels)) {
        let row = 2 * k.div_ceil(2);
        let buf_off = round_up(2 * row, 64);
        let scratch = buf_off + 4 * (n + NR);
        let xv = p.scratch;
        // x - zx as i16, zero past k (the padded pair slot).
        let z16 = e.b.ins().iconst(types::I16, 0);
        e.store(z16, xv, (2 * (row - 1)) as i32);
        e.for_n(k, |e, kk| {
            let src = e.add(p.ins[0], kk);
            let v = if xq == QType::U8 {
                e.b.ins().uload8(I32, mf(), src, 0)
            } else {
                e.b.ins().sload8(I32, mf(), src, 0)
            };
            let v = e.b.ins().iadd_imm_s(v, -i64::from(zx));
            let v = e.b.ins().ireduce(types::I16, v);
            let d = e.addr(xv, kk, 2, 0);
            e.b.ins().store(mf(), v, d, 0);
            Ok(())
        })?;
        let buf = e.addi(p.scratch, buf_off as i64);
        let rq = kernels::requant_tile(cx.opts.kernels);
        let args = [
            e.ic(a_addr as i64),
            e.ic(row as i64),
            xv,
            e.ic(n as i64),
            buf,
        ];
        e.call_addr(gv, &args);
        let job = Job {
            m: n,
            n: 1,
            kp: k.div_ceil(2),
            k,
            np: 1,
            a: a_addr,
            b: p.scratch,
            out: Strided {
                ptr: p.outs[0],
                sm: 1,
                sn: n as i64,
            },
            init: c,
            post: None,
            row0: 0,
            native: None,
            b_panel: false,
            taps: None,
        };
        e.for_n(n, |e, r| {
            let b = e.addr(buf, r, 4, 0);
            buf_requant(e, rq, mode, &job, epi, r, b, 1)
        })?;
        return Ok(scratch);
    }
    let native = native_for(cx, mode);
    let np = pad_cols(m, native);
    let (si, sk) = if a.trans_a {
        (1, m as i64)
    } else {
        (k as i64, 1)
    };
    zero_b(e, mode, p.scratch, k, m, np);
    pack_b_matrix(e, mode, p.ins[0], p.scratch, np, m, k, si, sk)?;
    let (init, post) = match mode {
        Mode::Q { .. } => (c, None),
        Mode::F => (None, c),
    };
    let job = Job {
        m: n,
        n: m,
        kp: k.div_ceil(2),
        k,
        np,
        a: a_addr,
        b: p.scratch,
        out: Strided {
            ptr: p.outs[0],
            sm: 1,
            sn: n as i64,
        },
        init,
        post,
        row0: 0,
        native: native_buf(e, mode, p.scratch, k, np, native),
        b_panel: false,
        taps: None,
    };
    let z = e.ic(0);
    emit_gemm(e, mode, &job, epi, z)?;
    Ok(scratch_bytes(mode, k, np, native))
}

pub(crate) fn matmul(cx: &mut Cx, e: &mut E, p: &Ptrs, act: Activation) -> Result<usize> {
    cx.arity(2, 2)?;
    let at = cx.in_ty(0)?.clone();
    let bt = cx.in_ty(1)?.clone();
    let y = cx.out_ty(0)?.clone();
    let (ad, bd) = (at.shape.dims().to_vec(), bt.shape.dims().to_vec());
    if ad.is_empty() || bd.is_empty() {
        return Err(cx.unsupported("matmul of a scalar"));
    }
    let a2: Vec<usize> = if ad.len() == 1 {
        vec![1, ad[0]]
    } else {
        ad.clone()
    };
    let b2: Vec<usize> = if bd.len() == 1 {
        vec![bd[0], 1]
    } else {
        bd.clone()
    };
    let (ra, rb) = (a2.len(), b2.len());
    let (m, k) = (a2[ra - 2], a2[ra - 1]);
    let (kb, n) = (b2[rb - 2], b2[rb - 1]);
    if k != kb {
        return Err(cx.unsupported("inner dims differ"));
    }
    let (ab, bb) = (&a2[..ra - 2], &b2[..rb - 2]);
    let rbat = ab.len().max(bb.len());
    let mut batch = vec![0usize; rbat];
    for (i, o) in batch.iter_mut().enumerate() {
        let da = if i + ab.len() >= rbat {
            ab[i + ab.len() - rbat]
        } else {
            1
        };
        let db = if i + bb.len() >= rbat {
            bb[i + bb.len() - rbat]
        } else {
            1
        };
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(cx.unsupported("batch dims do not broadcast"));
        };
    }
    // Per output batch: (A block, B block) indices.
    let nb = numel(&batch);
    let mut blocks = Vec::with_capacity(nb);
    for bi in 0..nb {
        let mut rem = bi;
        let (mut ia, mut ib) = (0usize, 0usize);
        let (mut sa, mut sb) = (1usize, 1usize);
        for d in (0..rbat).rev() {
            let idx = rem % batch[d];
            rem /= batch[d];
            if d + ab.len() >= rbat {
                let dd = ab[d + ab.len() - rbat];
                if dd != 1 {
                    ia += idx * sa;
                }
                sa *= dd;
            }
            if d + bb.len() >= rbat {
                let dd = bb[d + bb.len() - rbat];
                if dd != 1 {
                    ib += idx * sb;
                }
                sb *= dd;
            }
        }
        blocks.push((ia, ib));
    }
    let wt = cx
        .const_in(1)
        .cloned()
        .ok_or_else(|| cx.unsupported("matmul b must be constant"))?;
    let (mode, epi, a_addr, a_block_bytes) = match (&at.quant, &bt.quant) {
        (Some(_), Some(pw)) => {
            let (xq, sx, zx) = act_params(cx, &at)?;
            if rb < 2 && pw.len() > 1 {
                return Err(cx.unsupported("a 1-D b must be quantized per tensor"));
            }
            let (sw, _) = per_channel(cx, pw, n)?;
            let wv = shifted_weights(cx, &wt, pw, bd.len().saturating_sub(1))?;
            let nblk = numel(bb);
            let mut all: Vec<i16> = Vec::new();
            for blk in 0..nblk {
                let off = blk * k * n;
                all.extend(pack_a_q(n, k, |j, kk| wv[off + kk * n + j]));
            }
            let ry = y.shape.rank();
            let epi = make_epi(cx, sx, &sw, &y, ry.saturating_sub(1), act)?;
            (
                Mode::Q { xq, zx },
                epi,
                cx.pool.add_i16(&all),
                n * k.div_ceil(2) * 4,
            )
        }
        (None, None) if at.dtype == qc_ir::DType::F32 && y.dtype == qc_ir::DType::F32 => {
            let wv = wt.to_f32_vec();
            let nblk = numel(bb);
            let mut all: Vec<f32> = Vec::new();
            for blk in 0..nblk {
                let off = blk * k * n;
                all.extend(pack_a_f(n, k, |j, kk| wv[off + kk * n + j]));
            }
            let epi = Epi::F {
                alpha: 1.0,
                beta: 0.0,
                act,
            };
            (Mode::F, epi, cx.pool.add_f32(&all), n * k * 4)
        }
        _ => return Err(cx.unsupported("operand types (float, or 8-bit quantized a and b)")),
    };
    let native = native_for(cx, mode);
    let np = pad_cols(m, native);
    let esize = match mode {
        Mode::Q { .. } => 1i64,
        Mode::F => 4,
    };
    let ysize = match &y.quant {
        Some(q) => crate::emit::qsize(q.storage),
        None => 4,
    };
    for (bi, &(ia, ib)) in blocks.iter().enumerate() {
        let xo = e.ic((ia * m * k) as i64 * esize);
        let xb = e.add(p.ins[0], xo);
        zero_b(e, mode, p.scratch, k, m, np);
        pack_b_matrix(e, mode, xb, p.scratch, np, m, k, k as i64, 1)?;
        let yo = e.ic((bi * m * n) as i64 * ysize);
        let yb = e.add(p.outs[0], yo);
        let job = Job {
            m: n,
            n: m,
            kp: k.div_ceil(2),
            k,
            np,
            a: a_addr + ib * a_block_bytes,
            b: p.scratch,
            out: Strided {
                ptr: yb,
                sm: 1,
                sn: n as i64,
            },
            init: None,
            post: None,
            row0: 0,
            native: native_buf(e, mode, p.scratch, k, np, native),
            b_panel: false,
            taps: None,
        };
        let z = e.ic(0);
        emit_gemm(e, mode, &job, epi, z)?;
    }
    Ok(scratch_bytes(mode, k, np, native))
}
