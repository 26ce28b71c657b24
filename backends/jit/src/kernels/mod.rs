//! Native (ahead-of-time, `std::arch`) micro-kernels that generated code calls for the
//! innermost quantized GEMM tile, chosen once per compilation by CPU feature detection.
//!
//! **Contract of a pair-tile kernel** ([`PairTile`]), called with the C ABI as
//! `f(a, a_row, b, b_step, kp, mr, out)`:
//! - `a`: packed weights, `mr` rows at `a + r * a_row` bytes, each `kp` i16 pairs;
//! - `b`: packed activations, pair step `q` at `b + q * b_step` bytes, holding `nr`
//!   columns of one i16 pair each (`4 * nr` bytes read per step);
//! - `out`: `mr × nr` i32, row-major with row stride `nr`, overwritten with
//!   `Σ_q Σ_j a[r][q][j] · b[q][c][j]`, wrapping in i32.
//!
//! The packed format is `linear`'s: every i16 is `w - zw` or `x - zx` of 8-bit values,
//! so lies in `[-255, 255]`. **Exactness:** each product is at most 255² = 65025 in
//! magnitude and a pair sum at most 130050, so `pmaddwd`/`vpdpwssd` (which multiply
//! i16 pairs exactly and add the two products in i32; the only rounding case, both
//! pairs `-32768 · -32768`, cannot occur) give the exact pair sums; the accumulation
//! wraps in i32 like the interpreter's. Sums are associative modulo 2^32, so the order
//! differs from the interpreter's without changing a bit.
//!
//! **Invariant:** a kernel is only ever returned by [`pair_tile`] after the CPU
//! features it is compiled for were detected at run time.

use crate::KernelSet;

/// A native tile kernel: its address (an `extern "C"` function of the contract above)
/// and its tile size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PairTile {
    pub addr: usize,
    /// Most rows per call.
    pub mr: usize,
    /// Columns per call (the packed `B` is padded to a multiple of this).
    pub nr: usize,
}

/// The best pair-tile kernel for this host under `ks`, if any.
pub(crate) fn pair_tile(ks: KernelSet) -> Option<PairTile> {
    match ks {
        KernelSet::Cranelift => None,
        KernelSet::Auto => detect(),
    }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Option<PairTile> {
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vnni")
    {
        return Some(PairTile {
            addr: x86::vnni512_entry as *const () as usize,
            mr: x86::MR512,
            nr: x86::NR512,
        });
    }
    if std::arch::is_x86_feature_detected!("avx2") {
        return Some(PairTile {
            addr: x86::avx2_entry as *const () as usize,
            mr: x86::MR256,
            nr: x86::NR256,
        });
    }
    None
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Option<PairTile> {
    None
}

pub(crate) mod dw16;
pub(crate) mod dw_plane;
pub(crate) mod dwq;
pub(crate) mod gemv;
pub(crate) mod max_pool;
pub(crate) mod qbinary;
pub(crate) mod quantize;
pub(crate) mod requant;

/// The AVX-512 features a native kernel needs (F always).
#[derive(Clone, Copy)]
enum Needs {
    /// AVX-512F, BW and VL (the 512-bit kernels with byte/word masks and 128-bit forms).
    BwVl,
    /// AVX-512F and BW.
    Bw,
    /// AVX-512F, BW and VNNI (`vpdpbusd`).
    Vnni,
    /// AVX-512F, BW, VL, VNNI and VBMI (`vpermb`).
    VnniVbmi,
}

#[cfg(target_arch = "x86_64")]
fn has(n: Needs) -> bool {
    use std::arch::is_x86_feature_detected as f;
    let base = f!("avx512f") && f!("avx512bw");
    match n {
        Needs::BwVl => base && f!("avx512vl"),
        Needs::Bw => base,
        Needs::Vnni => base && f!("avx512vnni"),
        Needs::VnniVbmi => base && f!("avx512vl") && f!("avx512vnni") && f!("avx512vbmi"),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn has(_: Needs) -> bool {
    false
}

/// `addr` (a native kernel's entry) when `ks` allows native kernels and the host has
/// what the kernel needs. Kernels for other hosts do not exist yet: `addr` is only
/// called on x86-64.
fn native(ks: KernelSet, n: Needs, addr: impl FnOnce() -> usize) -> Option<usize> {
    match ks {
        KernelSet::Cranelift => None,
        KernelSet::Auto => has(n).then(addr),
    }
}

/// The address of a native kernel's C-ABI entry on x86-64 (`0`, never used, elsewhere).
macro_rules! entry {
    ($($path:tt)*) => {{
        #[cfg(target_arch = "x86_64")]
        let a = $($path)* as *const () as usize;
        #[cfg(not(target_arch = "x86_64"))]
        let a = 0usize;
        a
    }};
}

/// The channel-blocked depthwise kernel with the fused `float`-contract epilogue
/// (contract in [`dw16`]).
pub(crate) fn dw16(ks: KernelSet) -> Option<usize> {
    native(ks, Needs::BwVl, || entry!(dw16::x86::entry))
}

/// The byte-plane depthwise kernel with `vpdpbusd` quads and the fused
/// `float`-contract epilogue (contract in [`dwq`]).
pub(crate) fn dwq(ks: KernelSet) -> Option<usize> {
    native(ks, Needs::VnniVbmi, || entry!(dwq::x86::entry))
}

/// The depthwise plane kernel, over groups of channels (contracts in [`dw_plane`]).
pub(crate) fn dw_plane(ks: KernelSet) -> Option<usize> {
    native(ks, Needs::BwVl, || entry!(dw_plane::x86::planes512_entry))
}

/// The f32 → 8-bit quantize (contract in [`quantize`]).
pub(crate) fn quantize(ks: KernelSet) -> Option<usize> {
    native(ks, Needs::BwVl, || entry!(quantize::x86::entry))
}

/// The same-shape quantized add/sub/mul (contract in [`qbinary`]).
pub(crate) fn qbinary(ks: KernelSet) -> Option<usize> {
    native(ks, Needs::BwVl, || entry!(qbinary::x86::entry))
}

/// The `float`-contract epilogue for 8-bit results (contract in [`requant`]).
pub(crate) fn requant_tile(ks: KernelSet) -> Option<usize> {
    native(ks, Needs::BwVl, || entry!(requant::x86::entry))
}

/// The pair-form quantized matrix-vector kernel (contract in [`gemv`]).
pub(crate) fn gemv(ks: KernelSet) -> Option<usize> {
    native(ks, Needs::Bw, || entry!(gemv::x86::entry))
}

/// The quad-form (u8 × i8) matrix-vector kernel (`gemv::x86::quad_entry`).
pub(crate) fn gemv_quad(ks: KernelSet) -> Option<usize> {
    native(ks, Needs::Vnni, || entry!(gemv::x86::quad_entry))
}

/// The best quad-tile kernel for this host under `ks`, if any.
///
/// **Contract of a quad-tile kernel**: as a pair-tile kernel (same arguments, same
/// `PairTile` fields), but a step holds *quads*: `a` rows hold `kp` quads of i8, `b`
/// steps hold `nr` columns of one u8 quad each, and `out[r][c] = Σ_q Σ_j a[r][q][j] ·
/// b[q][c][j]` (a signed, b unsigned), wrapping in i32. **Exactness:** `vpdpbusd`
/// multiplies u8 by i8 exactly (|product| ≤ 255 · 128) and adds the four products and
/// the accumulator in i32 with wrap-around (the non-saturating form), which is the
/// interpreter's wrapping i32 sum up to order, and order is immaterial modulo 2^32.
pub(crate) fn quad_tile(ks: KernelSet) -> Option<PairTile> {
    match ks {
        KernelSet::Cranelift => None,
        KernelSet::Auto => detect_quad(),
    }
}

/// The quad kernel for a GEMM of `n` columns: the 16-column tile (twice the rows per
/// call) when `n ≤ 16` (a 3×3 map computes 16 columns instead of 32; measured on
/// MobileNetV1's 6×6 maps, 48 columns of the narrow tile were no faster than 64 of the
/// wide one), else [`quad_tile`]'s.
pub(crate) fn quad_tile_for(ks: KernelSet, n: usize) -> Option<PairTile> {
    let t = quad_tile(ks)?;
    let narrow = n <= 16;
    #[cfg(target_arch = "x86_64")]
    if narrow && t.nr == x86::NR512 {
        return Some(PairTile {
            addr: x86::dpbusd512_n16_entry as *const () as usize,
            mr: x86::MR512_N16,
            nr: x86::NR512_N16,
        });
    }
    let _ = narrow;
    Some(t)
}

#[cfg(target_arch = "x86_64")]
fn detect_quad() -> Option<PairTile> {
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vnni")
    {
        return Some(PairTile {
            addr: x86::dpbusd512_entry as *const () as usize,
            mr: x86::MR512_Q,
            nr: x86::NR512,
        });
    }
    None
}

#[cfg(not(target_arch = "x86_64"))]
fn detect_quad() -> Option<PairTile> {
    None
}

/// The quad kernel over taps (implicit-GEMM convolution), when the quad kernel exists:
/// its address (`x86::dpbusd512_taps_entry`; tile shape that of [`quad_tile`]; A in
/// the interleaved layout of [`QUAD_TAPS_IL`]).
pub(crate) fn quad_taps(ks: KernelSet) -> Option<usize> {
    quad_tile(ks)?;
    #[cfg(target_arch = "x86_64")]
    {
        Some(x86::dpbusd512_taps_entry as *const () as usize)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// The quad (and tap) kernel with the `float`-contract epilogue fused: the tile's sums
/// go from registers through the `float` contract's epilogue to the result bytes (8-bit
/// results; exactness argued at `x86::dpbusd512_q`), without the i32
/// tile buffer and the separate epilogue call (`x86::dpbusd512_q_entry`). Only for the
/// 32-column tile ([`quad_tile`]'s).
pub(crate) fn quad_requant(ks: KernelSet) -> Option<usize> {
    quad_tile(ks)?;
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512vl")
            .then_some(x86::dpbusd512_q_entry::<false> as *const () as usize)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// [`quad_requant`] for the tap kernel's interleaved A ([`quad_taps`]' layout).
pub(crate) fn quad_requant_taps(ks: KernelSet) -> Option<usize> {
    quad_requant(ks)?;
    #[cfg(target_arch = "x86_64")]
    {
        Some(x86::dpbusd512_q_entry::<true> as *const () as usize)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// Rows per block of the tap kernels' interleaved A ([`quad_taps`]): quad step `s`
/// of row `r` of a block at byte `4 · (QUAD_TAPS_IL · s + r)`.
pub(crate) const QUAD_TAPS_IL: usize = 8;

// The AVX-512 intrinsics are stable since Rust 1.89, the workspace's `rust-version`.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// `f::<R>(args)` for the row count `mr` among the listed `R` (nothing for others):
    /// the C-ABI entries' dispatch to their const-generic tiles.
    macro_rules! by_rows {
        ($mr:expr, $f:ident $args:tt, [$($r:literal),*]) => {
            match $mr {
                $($r => $f::<$r> $args,)*
                _ => {}
            }
        };
        ($mr:expr, $f:ident::<_, $g:tt> $args:tt, [$($r:literal),*]) => {
            match $mr {
                $($r => $f::<$r, $g> $args,)*
                _ => {}
            }
        };
    }

    pub(super) const MR512: usize = 6;
    /// Rows of the quad (`vpdpbusd`) tiles: 16 accumulators, the two B vectors and a
    /// broadcast fit the 32 registers, and power-of-two channel counts tile exactly.
    pub(super) const MR512_Q: usize = 8;
    const _: () = assert!(MR512_Q == super::QUAD_TAPS_IL);
    /// Bytes ahead of the current step that the interleaved tap kernels prefetch A.
    const A_PREFETCH: usize = 2048;
    pub(super) const NR512: usize = 32;
    pub(super) const MR512_N16: usize = 12;
    pub(super) const NR512_N16: usize = 16;
    pub(super) const MR256: usize = 4;
    pub(super) const NR256: usize = 16;

    /// # Safety
    /// The CPU has AVX-512F/BW/VNNI; the pointers satisfy the module contract with
    /// `nr = NR512` and `R` rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn vnni512<const R: usize>(
        a: *const u8,
        a_row: usize,
        b: *const u8,
        b_step: usize,
        kp: usize,
        out: *mut i32,
    ) {
        let mut acc = [[_mm512_setzero_si512(); 2]; R];
        for q in 0..kp {
            // SAFETY: step q < kp of B: 4 * NR512 = 128 bytes at b + q * b_step are
            // inside packed B (contract); rows r < R of A hold kp pairs, so the 4
            // bytes at a + r * a_row + 4q are inside packed A.
            unsafe {
                let bp = b.add(q * b_step);
                let b0 = _mm512_loadu_si512(bp.cast());
                let b1 = _mm512_loadu_si512(bp.add(64).cast());
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av = (a.add(r * a_row + 4 * q) as *const i32).read_unaligned();
                    let av = _mm512_set1_epi32(av);
                    acc[0] = _mm512_dpwssd_epi32(acc[0], av, b0);
                    acc[1] = _mm512_dpwssd_epi32(acc[1], av, b1);
                }
            }
        }
        // SAFETY: out holds R × NR512 i32 (contract).
        unsafe { store_tile(&acc, out) }
    }

    /// Stores an `R × NR512` tile of sums, row `r` at `out + r · NR512`.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `out` holds `R · NR512` i32.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store_tile<const R: usize>(acc: &[[__m512i; 2]; R], out: *mut i32) {
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: row r of the caller's tile.
            unsafe {
                let o = out.add(r * NR512);
                _mm512_storeu_si512(o.cast(), acc[0]);
                _mm512_storeu_si512(o.add(16).cast(), acc[1]);
            }
        }
    }

    /// # Safety
    /// The CPU has AVX-512F/BW/VNNI; the pointers satisfy the quad contract.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn dpbusd512<const R: usize>(
        a: *const u8,
        a_row: usize,
        b: *const u8,
        b_step: usize,
        kq: usize,
        out: *mut i32,
    ) {
        // The quad tile is the tap kernel with one tap at offset 0.
        let zero = 0usize;
        // SAFETY: as the caller's contract; one tap at offset 0 reads exactly the
        // quad tile's steps.
        unsafe { dpbusd512_taps::<R, false>(a, a_row, b, b_step, kq, out, &zero, 1) }
    }

    /// # Safety
    /// The CPU has AVX-512F/BW/VNNI; the pointers satisfy the tap-kernel contract.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn dpbusd512_taps<const R: usize, const IL: bool>(
        a: *const u8,
        a_row: usize,
        b: *const u8,
        b_step: usize,
        kq: usize,
        out: *mut i32,
        toff: *const usize,
        ntaps: usize,
    ) {
        // SAFETY: the caller's contract.
        let zero = [_mm512_setzero_si512(); R];
        let acc = unsafe { taps_sums::<R, IL>(a, a_row, b, b_step, kq, toff, ntaps, zero) };
        // SAFETY: out holds R × NR512 i32 (contract).
        unsafe { store_tile(&acc, out) }
    }

    /// The sums of the tap kernel's `R × NR512` tile, in registers, row `r` starting
    /// from `init[r]` in every lane.
    ///
    /// # Safety
    /// The CPU has AVX-512F/BW/VNNI; tap `t`'s `kq` steps of B start `toff[t]` bytes
    /// past `b` and hold `NR512` columns of quads each; A's row `r` holds `ntaps · kq`
    /// quads (with `IL`, in the interleaved layout: [`MR512_Q`] rows per step).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn taps_sums<const R: usize, const IL: bool>(
        a: *const u8,
        a_row: usize,
        b: *const u8,
        b_step: usize,
        kq: usize,
        toff: *const usize,
        ntaps: usize,
        init: [__m512i; R],
    ) -> [[__m512i; 2]; R] {
        let mut acc = init.map(|v| [v; 2]);
        // Interleaved A: step s of row r at `4 · (MR512_Q · s + r)` (constant offsets
        // from one pointer per step); else row-major at `r · a_row + 4 · s`.
        let (row_b, step_b) = if IL { (4, 4 * MR512_Q) } else { (a_row, 4) };
        for t in 0..ntaps {
            // SAFETY: the caller's contract.
            unsafe {
                let bt = b.add(*toff.add(t));
                let at = a.add(step_b * t * kq);
                for q in 0..kq {
                    let bp = bt.add(q * b_step);
                    let b0 = _mm512_loadu_si512(bp.cast());
                    let b1 = _mm512_loadu_si512(bp.add(64).cast());
                    let aq = at.add(step_b * q);
                    if IL {
                        // One A line per two steps: fetch it well ahead (weights
                        // too large for the caches stream from memory once per tile).
                        _mm_prefetch::<_MM_HINT_T0>(aq.wrapping_add(A_PREFETCH).cast());
                    }
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let av = (aq.add(r * row_b) as *const i32).read_unaligned();
                        let av = _mm512_set1_epi32(av);
                        acc[0] = _mm512_dpbusd_epi32(acc[0], b0, av);
                        acc[1] = _mm512_dpbusd_epi32(acc[1], b1, av);
                    }
                }
            }
        }
        acc
    }

    /// The C-ABI entry of the AVX-512 quad kernel over taps (`mr` in `1..=MR512_Q`):
    /// the quad kernel's sum, with the `kq` steps of B repeated for each of `ntaps`
    /// taps, tap `t`'s steps starting `toff[t]` bytes past `b`. A is interleaved: quad
    /// step `s = t · kq + q` of row `r` at `4 · (MR512_Q · s + r)` (`a_row` unused; a
    /// tile's rows are one block of `MR512_Q` rows). Exactness as the quad kernel's.
    #[allow(clippy::too_many_arguments)]
    pub(super) extern "C" fn dpbusd512_taps_entry(
        a: *const u8,
        a_row: usize,
        b: *const u8,
        b_step: usize,
        kq: usize,
        mr: usize,
        out: *mut i32,
        toff: *const usize,
        ntaps: usize,
    ) {
        // SAFETY: only handed out by `detect_quad_taps` after AVX-512F/BW/VNNI were
        // detected; generated code passes pointers satisfying the contract.
        unsafe {
            by_rows!(
                mr,
                dpbusd512_taps::<_, true>(a, a_row, b, b_step, kq, out, toff, ntaps),
                [1, 2, 3, 4, 5, 6, 7, 8]
            )
        }
    }

    /// The quad kernel's sum on a tile of `R` rows and [`NR512_N16`] columns (one
    /// vector per row; B steps of 64 bytes). Exactness as the quad kernel's.
    ///
    /// # Safety
    /// The CPU has AVX-512F/BW/VNNI; the pointers satisfy the quad contract with
    /// `nr = NR512_N16`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn dpbusd512_n16<const R: usize>(
        a: *const u8,
        a_row: usize,
        b: *const u8,
        b_step: usize,
        kq: usize,
        out: *mut i32,
    ) {
        let mut acc = [_mm512_setzero_si512(); R];
        for q in 0..kq {
            // SAFETY: step q < kq of B: 4 · NR512_N16 = 64 bytes at b + q · b_step
            // inside packed B; rows r < R of A hold kq quads (contract).
            unsafe {
                let b0 = _mm512_loadu_si512(b.add(q * b_step).cast());
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av = (a.add(r * a_row + 4 * q) as *const i32).read_unaligned();
                    *acc = _mm512_dpbusd_epi32(*acc, b0, _mm512_set1_epi32(av));
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: out holds R × NR512_N16 i32 (contract).
            unsafe { _mm512_storeu_si512(out.add(r * NR512_N16).cast(), *acc) };
        }
    }

    /// The C-ABI entry of the 16-column AVX-512 quad kernel (`mr` in
    /// `1..=MR512_N16`).
    pub(super) extern "C" fn dpbusd512_n16_entry(
        a: *const u8,
        a_row: usize,
        b: *const u8,
        b_step: usize,
        kq: usize,
        mr: usize,
        out: *mut i32,
    ) {
        // SAFETY: only handed out by `quad_tile_for` after `detect_quad` found
        // AVX-512F/BW/VNNI; generated code passes pointers satisfying the contract.
        unsafe {
            by_rows!(
                mr,
                dpbusd512_n16(a, a_row, b, b_step, kq, out),
                [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
            )
        }
    }

    /// [`dpbusd512_taps`] then the `float`-contract epilogue of `kernels::requant` on
    /// its `R × cols` sums, straight from registers: per row `r`, the record at `rec +
    /// r · RECORD` and the bias at `bias + r · bias_stride` (none when null), results
    /// at `out + r · out_stride`.
    ///
    /// **Exactness.** The bias is the accumulators' start: i32 addition wraps, so the
    /// sum is the same in any order. Then per lane, as `kernels::requant`: `f =
    /// (sum as f32) · m` (both rounded to nearest even) and `v = round_half_even(min(f,
    /// hi - zp))` by `vcvtps2dq` — with only the upper clamp in float, `v` may be any i32
    /// below `hi - zp` (a product below −2³¹, or −∞, converts to `i32::MIN`, still
    /// below). `vpackssdw` saturates `v` to i16, `vpaddsw` adds `zp` saturating, and
    /// i16 max/min clamp to `[lo, hi]`: where `v ≥ -2¹⁵` the sum `v + zp ≤ hi ≤ 255` is
    /// exact; where `v` or the sum saturated, the true `v + zp < -2¹⁵ + 256 < lo`
    /// clamps to `lo` either way. So each i16 is `clamp(v + zp, lo, hi)`, the scalar
    /// contract's value (`clamp(round(f) + zp, lo, hi)`: `round(min(f, hi - zp)) =
    /// min(round(f), hi - zp)` because rounding is monotone and `hi - zp` an integer).
    /// Its low byte is the 8-bit result; `vpshufb` and `vpermd` gather the 32 low
    /// bytes of the two vectors back into column order.
    ///
    /// # Safety
    /// As [`dpbusd512_taps`]; `rec` holds `R` `float`-contract records, `bias` (unless
    /// null) `R` i32 at its stride, and `out + r · out_stride + c` for `r < R`, `c <
    /// cols ≤ NR512` is inside the result.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn dpbusd512_q<const R: usize, const IL: bool>(
        a: *const u8,
        a_row: usize,
        b: *const u8,
        b_step: usize,
        kq: usize,
        toff: *const usize,
        ntaps: usize,
        rec: *const i32,
        bias: *const i32,
        bias_stride: usize,
        out: *mut u8,
        out_stride: usize,
        cols: usize,
    ) {
        let rec_words = crate::linear::RECORD / 4;
        let mut init = [_mm512_setzero_si512(); R];
        if !bias.is_null() {
            for (r, v) in init.iter_mut().enumerate() {
                // SAFETY: the contract's R biases.
                *v = _mm512_set1_epi32(unsafe { *bias.add(r * bias_stride) });
            }
        }
        // SAFETY: as in `dpbusd512_taps`.
        let acc = unsafe { taps_sums::<R, IL>(a, a_row, b, b_step, kq, toff, ntaps, init) };
        let mask = if cols >= 32 {
            u32::MAX
        } else {
            (1u32 << cols) - 1
        };
        // After `vpackssdw(v0, v1)`, 128-bit lane j holds words v0[4j..4j+4] then
        // v1[4j..4j+4]: their low bytes to dwords 0 and 1 of the lane, then the dwords
        // in column order.
        let low = _mm512_broadcast_i32x4(_mm_setr_epi8(
            0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1,
        ));
        let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0);
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: the record and result rows of the contract.
            unsafe {
                let rr = rec.add(r * rec_words);
                let m = _mm512_set1_ps(f32::from_bits(*rr as u32));
                let hz = _mm512_set1_ps(f32::from_bits(*rr.add(4) as u32));
                let zp = _mm512_set1_epi32(*rr.add(5));
                let lo = _mm512_set1_epi32(*rr.add(6));
                let hi = _mm512_set1_epi32(*rr.add(7));
                let w = _mm512_packs_epi32(scale_cap(acc[0], m, hz), scale_cap(acc[1], m, hz));
                let w = _mm512_min_epi16(_mm512_max_epi16(_mm512_adds_epi16(w, zp), lo), hi);
                let y = _mm512_permutexvar_epi32(order, _mm512_shuffle_epi8(w, low));
                _mm256_mask_storeu_epi8(
                    out.add(r * out_stride).cast(),
                    mask,
                    _mm512_castsi512_si256(y),
                );
            }
        }
    }

    /// `round_half_even(min((s as f32) · m, hz))` lane by lane (`i32::MIN` where that
    /// is below the i32 range): [`dpbusd512_q`]'s float steps.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn scale_cap(s: __m512i, m: __m512, hz: __m512) -> __m512i {
        _mm512_cvtps_epi32(_mm512_min_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s), m), hz))
    }

    /// The C-ABI entries of [`dpbusd512_q`] (`mr` in `1..=MR512_Q`; a null `toff` is
    /// one tap at offset 0): `IL` false on row-major A (handed out by `quad_requant`),
    /// true over taps on interleaved A (`quad_requant_taps`).
    #[allow(clippy::too_many_arguments)]
    pub(super) extern "C" fn dpbusd512_q_entry<const IL: bool>(
        a: *const u8,
        a_row: usize,
        b: *const u8,
        b_step: usize,
        kq: usize,
        mr: usize,
        toff: *const usize,
        ntaps: usize,
        rec: *const i32,
        bias: *const i32,
        bias_stride: usize,
        out: *mut u8,
        out_stride: usize,
        cols: usize,
    ) {
        let zero = 0usize;
        let (toff, ntaps) = if toff.is_null() {
            (&zero as *const usize, 1)
        } else {
            (toff, ntaps)
        };
        let cols = cols.min(NR512);
        // SAFETY: only handed out by `quad_requant` / `quad_requant_taps` after
        // AVX-512F/BW/VL/VNNI were detected; generated code passes pointers
        // satisfying the contract.
        unsafe {
            by_rows!(
                mr,
                dpbusd512_q::<_, IL>(
                    a,
                    a_row,
                    b,
                    b_step,
                    kq,
                    toff,
                    ntaps,
                    rec,
                    bias,
                    bias_stride,
                    out,
                    out_stride,
                    cols
                ),
                [1, 2, 3, 4, 5, 6, 7, 8]
            )
        }
    }

    /// The C-ABI entry of the AVX-512 quad kernel (`mr` in `1..=MR512_Q`).
    pub(super) extern "C" fn dpbusd512_entry(
        a: *const u8,
        a_row: usize,
        b: *const u8,
        b_step: usize,
        kq: usize,
        mr: usize,
        out: *mut i32,
    ) {
        // SAFETY: only handed out by `detect_quad` after AVX-512F/BW/VNNI were
        // detected; generated code passes pointers satisfying the quad contract.
        unsafe {
            by_rows!(
                mr,
                dpbusd512(a, a_row, b, b_step, kq, out),
                [1, 2, 3, 4, 5, 6, 7, 8]
            )
        }
    }

    /// # Safety
    /// The CPU has AVX2; the pointers satisfy the module contract with `nr = NR256`.
    #[target_feature(enable = "avx2")]
    unsafe fn avx2<const R: usize>(
        a: *const u8,
        a_row: usize,
        b: *const u8,
        b_step: usize,
        kp: usize,
        out: *mut i32,
    ) {
        let mut acc = [[_mm256_setzero_si256(); 2]; R];
        for q in 0..kp {
            // SAFETY: as in `vnni512`, with 4 * NR256 = 64 bytes of B per step.
            unsafe {
                let bp = b.add(q * b_step);
                let b0 = _mm256_loadu_si256(bp.cast());
                let b1 = _mm256_loadu_si256(bp.add(32).cast());
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av = (a.add(r * a_row + 4 * q) as *const i32).read_unaligned();
                    let av = _mm256_set1_epi32(av);
                    acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(av, b0));
                    acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(av, b1));
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: out holds R × NR256 i32 (contract).
            unsafe {
                let o = out.add(r * NR256);
                _mm256_storeu_si256(o.cast(), acc[0]);
                _mm256_storeu_si256(o.add(8).cast(), acc[1]);
            }
        }
    }

    /// The C-ABI entry of the AVX-512 kernel (`mr` in `1..=MR512`; others do nothing).
    pub(super) extern "C" fn vnni512_entry(
        a: *const u8,
        a_row: usize,
        b: *const u8,
        b_step: usize,
        kp: usize,
        mr: usize,
        out: *mut i32,
    ) {
        // SAFETY: only handed out by `detect` after AVX-512F/BW/VNNI were detected;
        // generated code passes pointers satisfying the module contract.
        unsafe {
            by_rows!(
                mr,
                vnni512(a, a_row, b, b_step, kp, out),
                [1, 2, 3, 4, 5, 6]
            )
        }
    }

    /// The C-ABI entry of the AVX2 kernel (`mr` in `1..=MR256`; others do nothing).
    pub(super) extern "C" fn avx2_entry(
        a: *const u8,
        a_row: usize,
        b: *const u8,
        b_step: usize,
        kp: usize,
        mr: usize,
        out: *mut i32,
    ) {
        // SAFETY: only handed out by `detect` after AVX2 was detected; generated code
        // passes pointers satisfying the module contract.
        unsafe { by_rows!(mr, avx2(a, a_row, b, b_step, kp, out), [1, 2, 3, 4]) }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::x86;

    type Entry = extern "C" fn(*const u8, usize, *const u8, usize, usize, usize, *mut i32);

    /// Each kernel against the contract's formula, written out as plain loops over
    /// extreme and mixed values (±255, the widest the packed format holds), every row
    /// count, odd `kp`, and row/step strides with slack.
    fn check(f: Entry, mr_max: usize, nr: usize) {
        let kp = 37;
        let a_row = kp * 4 + 12;
        let b_step = nr * 4 + 20;
        let mut seed = 0x1234_5678_u64;
        let mut val = |i: usize| -> i16 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            match i % 5 {
                0 => 255,
                1 => -255,
                _ => ((seed >> 33) % 511) as i16 - 255,
            }
        };
        let a: Vec<i16> = (0..mr_max * a_row / 2).map(&mut val).collect();
        let b: Vec<i16> = (0..kp * b_step / 2).map(&mut val).collect();
        for mr in 1..=mr_max {
            let mut out = vec![0x5555_5555_i32; mr * nr];
            f(
                a.as_ptr().cast(),
                a_row,
                b.as_ptr().cast(),
                b_step,
                kp,
                mr,
                out.as_mut_ptr(),
            );
            for r in 0..mr {
                for c in 0..nr {
                    let mut want = 0i64;
                    for q in 0..kp {
                        for j in 0..2 {
                            let av = a[(r * a_row + 4 * q) / 2 + j];
                            let bv = b[(q * b_step + 4 * c) / 2 + j];
                            want += i64::from(av) * i64::from(bv);
                        }
                    }
                    assert_eq!(i64::from(out[r * nr + c]), want, "mr {mr} r {r} c {c}");
                }
            }
        }
    }

    /// The quad kernel against the contract's formula (u8 × i8 extremes included).
    #[test]
    fn avx512_quad_tile_matches_formula() {
        if !(std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni"))
        {
            return;
        }
        let (kq, nr) = (19, x86::NR512);
        let a_row = kq * 4 + 8;
        let b_step = nr * 4 + 12;
        let a: Vec<i8> = (0..x86::MR512_Q * a_row)
            .map(|i| match i % 7 {
                0 => -128,
                1 => 127,
                _ => ((i * 37) % 256) as u8 as i8,
            })
            .collect();
        let b: Vec<u8> = (0..kq * b_step)
            .map(|i| {
                if i % 5 == 0 {
                    255
                } else {
                    (i * 91 % 256) as u8
                }
            })
            .collect();
        for mr in 1..=x86::MR512_Q {
            let mut out = vec![7i32; mr * nr];
            x86::dpbusd512_entry(
                a.as_ptr().cast(),
                a_row,
                b.as_ptr(),
                b_step,
                kq,
                mr,
                out.as_mut_ptr(),
            );
            for r in 0..mr {
                for c in 0..nr {
                    let want: i64 = (0..kq * 4)
                        .map(|kk| {
                            let (q, j) = (kk / 4, kk % 4);
                            i64::from(a[r * a_row + 4 * q + j])
                                * i64::from(b[q * b_step + 4 * c + j])
                        })
                        .sum();
                    assert_eq!(i64::from(out[r * nr + c]), want, "mr {mr} r {r} c {c}");
                }
            }
        }
    }

    #[test]
    fn avx2_tile_matches_formula() {
        if std::arch::is_x86_feature_detected!("avx2") {
            check(x86::avx2_entry, x86::MR256, x86::NR256);
        }
    }

    #[test]
    fn avx512_tile_matches_formula() {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
        {
            check(x86::vnni512_entry, x86::MR512, x86::NR512);
        }
    }
}
