//! The native depthwise kernel over expanded byte rows with `vpdpbusd`: each output
//! a sum of four-tap dot products, the `float` contract's epilogue fused; one call per
//! image.
//!
//! `dw16` keeps 16 channels in the lanes and so transposes every input and result
//! between NCHW and pixel-major order. Here a vector holds 16 consecutive outputs of
//! one row of one channel, so both stay in NCHW. Per input channel, in *bands* of
//! output rows whose expanded rows stay in L1 (`BAND_BYTES`):
//! 1. each padded input row is *expanded* (u8, or `x ^ 0x80` = `x + 128` for i8
//!    input; padding columns and rows read the zero point): position `c` becomes the
//!    i32 holding padded columns `sw · c .. sw · c + 4`, straight from masked loads of
//!    the input row with one `vpermt2b` per 16 positions. The rows are stored by *row
//!    phase* (phase `qy` holds padded rows `qy, qy + sh, …`, `hq` rows of pitch `wq`),
//!    so output row `oy`'s kernel row `ky` is row `oy + ky · dh / sh` of phase
//!    `ky · dh % sh`;
//! 2. the taps are grouped into [`Window`]s: up to four taps of one kernel row within
//!    four consecutive padded columns. For output `(oy, ox)` a window is one expanded
//!    element at a fixed offset from `oy · wq + ox`, and one `vpdpbusd` with the
//!    window's four weights (zero for empty slots) adds its taps for 16 outputs
//!    (a 3×3 kernel: three windows, for stride 1 and 2 alike);
//! 3. each output channel of the input channel takes its band's rows 64 columns at a
//!    time: sums in registers, requantized, packed to bytes in order and written with
//!    one masked store.
//!
//! Rows narrower than [`MIN_OW`] stay with `dw16` (measured faster there).
//!
//! **Contract.** `entry(p, x, w, bias, rec, out, scratch)`: `p` at [`PARAMS`] i64
//! (`dw_plane::PARAMS` values, then `c_out`, `mult`); `x` at the image's `c_in` input
//! planes (`ih · iw` bytes each; output channel `oc` reads plane `oc / mult`); `w` at
//! `c_out` rows of `windows(p).len()` i32, the four i8 weights of each window ([`pack`]);
//! `bias` at `c_out` i32 *folded* by [`pack`]; `rec` at `c_out` epilogue records
//! (`linear::RECORD` bytes: `[m as f32 bits, zp, lo, hi, …]`); `out` at `c_out` planes of
//! `oh · ow` bytes; `scratch` at [`scratch_bytes`] bytes.
//!
//! **Exactness.** With `xu = x + 128` for i8 input (else `x`) and `zu` the zero point
//! shifted alike, the interpreter's sum is `Σ (x - zx) · w = Σ xu · w - zu · Σ w` over
//! all taps, padding taps reading `xu = zu` (they add 0 there, as `x - zx` of the
//! padding value does). [`pack`] folds `-zu · Σ w` into the bias (wrapping, as the
//! interpreter's i32 sum wraps); `vpdpbusd` multiplies u8 by i8 exactly and adds in
//! i32 without saturation, so the kernel's `bias' + Σ xu · w` equals the interpreter's
//! `bias + Σ (x - zx) · w` modulo 2^32, the same i32. The weights must fit i8 ([`pack`]
//! refuses others). The epilogue is `kernels::requant`'s, one channel per vector.
//!
//! **Reads.** Only the input plane's `ih · iw` bytes are read from `x` (masked loads);
//! all other reads stay inside the scratch, whose padding slack is initialized.

use super::dw16::Block;
use super::dw_plane::Plane;

/// Values in the parameter block (`dw16`'s, decoded by [`Block`]).
pub(crate) const PARAMS: usize = super::dw16::PARAMS;

/// The narrowest output rows taken: narrower rows leave too many lanes idle, and
/// per-channel costs dominate (`dw16`, channels in the lanes, is faster there;
/// measured on MobileNetV2's 28- and 14-wide planes).
pub(crate) const MIN_OW: usize = 16;

/// Output columns per step (four vectors of 16).
const BLOCK: usize = 64;

/// Up to four taps of one row of phase `phase` (padded rows `phase, phase + sh, …`)
/// at padded columns `sw · pcol .. sw · pcol + 4` (relative to an output's first):
/// `taps[s]` is the tap (`ky · kw + kx`) at column `sw · pcol + s`, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub phase: usize,
    pub prow: usize,
    pub pcol: usize,
    pub taps: [Option<usize>; 4],
}

/// Sizes derived from the plane geometry.
#[derive(Clone, Copy, Debug)]
struct Geo {
    /// Phase columns (the row pitch) and rows.
    wq: usize,
    hq: usize,
    /// Output rows per band: the band's expanded rows stay in L1.
    band: usize,
    /// Expanded positions per phase (i32) of a band's rows with the slack of reads.
    e: usize,
}

/// Expanded bytes a band aims at (all phases).
const BAND_BYTES: usize = 16 * 1024;

impl Geo {
    fn of(p: &Plane) -> Geo {
        let wq = p.ow + (p.kw.saturating_sub(1) * p.dw) / p.sw.max(1);
        let hq = p.oh + (p.kh.saturating_sub(1) * p.dh) / p.sh.max(1);
        let halo = hq - p.oh;
        let per_row = 4 * Geo::phases(p) * wq.max(1);
        let band = (BAND_BYTES / per_row)
            .saturating_sub(halo)
            .clamp(1, p.oh.max(1));
        // A band's `band + halo` rows, then room for reads up to 63 and writes up to
        // 15 positions past them.
        let e = ((band + halo) * wq + BLOCK).div_ceil(16) * 16;
        Geo { wq, hq, band, e }
    }

    fn phases(p: &Plane) -> usize {
        p.sh
    }
}

/// The windows of `p`'s taps, in the order of the packed weights: grouped by phase
/// and phase row, each group's taps by column, a new window where a tap lies four or
/// more columns past the window's first.
pub(crate) fn windows(p: &Plane) -> Vec<Window> {
    let (sh, sw) = (p.sh.max(1), p.sw.max(1));
    let mut taps: Vec<(usize, usize, usize, usize)> = Vec::with_capacity(p.kh * p.kw);
    for ky in 0..p.kh {
        for kx in 0..p.kw {
            let (ry, rx) = (ky * p.dh, kx * p.dw);
            taps.push((ry % sh, ry / sh, rx, ky * p.kw + kx));
        }
    }
    taps.sort_unstable();
    let mut out: Vec<Window> = Vec::new();
    for (phase, prow, rx, tap) in taps {
        match out.last_mut() {
            Some(w) if w.phase == phase && w.prow == prow && rx < w.pcol * sw + 4 => {
                w.taps[rx - w.pcol * sw] = Some(tap);
            }
            _ => {
                let pcol = rx / sw;
                let mut t = [None; 4];
                t[rx - pcol * sw] = Some(tap);
                out.push(Window {
                    phase,
                    prow,
                    pcol,
                    taps: t,
                });
            }
        }
    }
    out
}

/// Scratch bytes for `p`: one band's expanded rows, every row phase.
pub(crate) fn scratch_bytes(p: &Plane) -> usize {
    let g = Geo::of(p);
    let ph = Geo::phases(p);
    4 * ph * g.e
}

/// Whether the kernel applies: the plane kernel's shape limits, a non-empty result,
/// row strides up to 4 and column strides up to 2, offsets that fit i32.
pub(crate) fn applies(p: &Plane, c_in: usize) -> bool {
    super::dw_plane::applies(p)
        && p.oh > 0
        && p.ow > 0
        && p.sh <= 4
        && p.sw <= 2
        && c_in
            .checked_mul(p.ih * p.iw)
            .is_some_and(|b| b < (i32::MAX as usize) / 2)
        && scratch_bytes(p) < (i32::MAX as usize) / 2
}

/// The packed weights (`c_out` rows of one i32 per window: its four weights as i8
/// bytes, 0 in empty slots) and the folded bias `bias - zu · Σ w`, from `w - zw` as
/// `[c_out][kh · kw]` and the input zero point `zx` (`zu = zx + 128` for i8 input).
/// `None` when some weight does not fit i8 or the sizes disagree.
pub(crate) fn pack(
    p: &Plane,
    wv: &[i32],
    bias: &[i32],
    c_out: usize,
    zx: i32,
    signed: bool,
) -> Option<(Vec<i32>, Vec<i32>)> {
    let k = p.kh * p.kw;
    if wv.len() != c_out * k || bias.len() != c_out {
        return None;
    }
    if wv.iter().any(|&w| i8::try_from(w).is_err()) {
        return None;
    }
    let zu = if signed { zx + 128 } else { zx };
    let wins = windows(p);
    let mut packed = Vec::with_capacity(c_out * wins.len());
    let mut folded = Vec::with_capacity(c_out);
    for (c, &b) in bias.iter().enumerate() {
        let row = wv.get(c * k..(c + 1) * k)?;
        for w in &wins {
            let mut bytes = [0u8; 4];
            for (d, t) in bytes.iter_mut().zip(w.taps) {
                if let Some(t) = t {
                    *d = *row.get(t)? as i8 as u8;
                }
            }
            packed.push(i32::from_le_bytes(bytes));
        }
        let sw: i32 = row.iter().sum();
        folded.push(b.wrapping_sub(zu.wrapping_mul(sw)));
    }
    Some((packed, folded))
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use super::*;
    use crate::kernels::requant::x86::{requant16, Lanes};
    use std::arch::x86_64::*;

    /// Vector `k`, byte `4 · j + t` selects byte `32 · k + 2 · j + t` of a 128-byte
    /// pair: the quad of stride-2 position `16 · k + j` (`vpermt2b`).
    static QUAD2_IDX: [u8; 128] = {
        let mut a = [0u8; 128];
        let mut i = 0;
        while i < 128 {
            a[i] = (32 * (i / 64) + 2 * ((i % 64) / 4) + i % 4) as u8;
            i += 1;
        }
        a
    };

    /// Vector `k`, byte `4 · j + t` selects byte `16 · k + j + t` of a 128-byte pair:
    /// the quad of position `16 · k + j` (`vpermt2b`).
    static QUAD_IDX: [u8; 256] = {
        let mut a = [0u8; 256];
        let mut i = 0;
        while i < 256 {
            a[i] = (16 * (i / 64) + (i % 64) / 4 + i % 4) as u8;
            i += 1;
        }
        a
    };

    /// 64 bytes of an input row from input column `base` where `m` allows (`zraw`
    /// elsewhere), XORed with `flip`.
    ///
    /// # Safety
    /// `m` selects only readable bytes of the row at `src_row`.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    unsafe fn load_row(
        src_row: *const u8,
        base: isize,
        m: __mmask64,
        zraw: __m512i,
        flip: __m512i,
    ) -> __m512i {
        // SAFETY: masked to readable bytes (caller).
        let v = unsafe { _mm512_mask_loadu_epi8(zraw, m, src_row.wrapping_offset(base).cast()) };
        _mm512_xor_si512(v, flip)
    }

    /// One expanded row for column stride 1: position `c < wq` (rounded up to 16)
    /// becomes padded columns `c .. c + 4`.
    ///
    /// # Safety
    /// `masks` (`ncx + 1` chunks) select readable bytes of the row at `src_row`;
    /// `dst` has `⌈wq / 16⌉ · 16` writable i32.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    #[inline]
    unsafe fn expand_row1(
        src_row: *const u8,
        masks: &[(isize, __mmask64, __mmask64)],
        dst: *mut i32,
        wq: usize,
        zraw: __m512i,
        flip: __m512i,
        qidx: &[__m512i; 4],
    ) {
        // SAFETY: the caller's bounds.
        unsafe {
            let (b, la, _) = masks[0];
            let mut cur = load_row(src_row, b, la, zraw, flip);
            for m in 0..masks.len() - 1 {
                let (b, la, _) = masks[m + 1];
                let next = load_row(src_row, b, la, zraw, flip);
                for (k, idx) in qidx.iter().enumerate() {
                    let c = 64 * m + 16 * k;
                    if c >= wq {
                        break;
                    }
                    _mm512_storeu_si512(
                        dst.add(c).cast(),
                        _mm512_permutex2var_epi8(cur, *idx, next),
                    );
                }
                cur = next;
            }
        }
    }

    /// One expanded row for column stride 2: position `c < wq` (rounded up to 16)
    /// becomes padded columns `2c .. 2c + 4`; chunk `m` holds padded columns
    /// `128m ..` in two vectors.
    ///
    /// # Safety
    /// As [`expand_row1`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    #[inline]
    unsafe fn expand_row2(
        src_row: *const u8,
        masks: &[(isize, __mmask64, __mmask64)],
        dst: *mut i32,
        wq: usize,
        zraw: __m512i,
        flip: __m512i,
        qidx2: &[__m512i; 2],
    ) {
        // SAFETY: the caller's bounds.
        unsafe {
            let (b, la, lb) = masks[0];
            let mut lo = load_row(src_row, b, la, zraw, flip);
            let mut hi = load_row(src_row, b + 64, lb, zraw, flip);
            for m in 0..masks.len() - 1 {
                let (b, la, lb) = masks[m + 1];
                let next = load_row(src_row, b, la, zraw, flip);
                let halves = [(lo, hi), (lo, hi), (hi, next), (hi, next)];
                for (k, &(u, v)) in halves.iter().enumerate() {
                    let c = 64 * m + 16 * k;
                    if c >= wq {
                        break;
                    }
                    _mm512_storeu_si512(
                        dst.add(c).cast(),
                        _mm512_permutex2var_epi8(u, qidx2[k % 2], v),
                    );
                }
                lo = next;
                hi = load_row(src_row, b + 64, lb, zraw, flip);
            }
        }
    }

    /// The mask of the first `n` bytes (all 64 when `n ≥ 64`).
    #[inline(always)]
    fn bytes_mask(n: usize) -> __mmask64 {
        if n >= 64 {
            !0
        } else {
            (1u64 << n) - 1
        }
    }

    /// # Safety
    /// The CPU has AVX-512F/BW/VL/VNNI/VBMI; the pointers satisfy the module contract;
    /// `applies(p, ⌈c_out / mult⌉)`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn dwq(
        blk: &Block,
        x: *const u8,
        w: *const i32,
        bias: *const i32,
        rec: *const i32,
        out: *mut u8,
        scratch: *mut u8,
    ) {
        let Block {
            ref p,
            zx,
            signed,
            c_out,
            mult,
        } = *blk;
        let g = Geo::of(p);
        let (sh, sw) = (p.sh, p.sw);
        let ph = Geo::phases(p);
        let (isz, n) = (p.ih * p.iw, p.oh * p.ow);
        let wins = windows(p);
        let nw = wins.len();
        // Window offsets into the expanded planes, in i32 elements.
        let offs: Vec<usize> = wins
            .iter()
            .map(|w| w.phase * g.e + w.prow * g.wq + w.pcol)
            .collect();
        let flip_byte = if signed { 0x80u8 } else { 0 };
        let zu = (if signed { zx + 128 } else { zx }) as u8;
        let flip = _mm512_set1_epi8(flip_byte as i8);
        // Padding lanes of a masked load take `zraw`, which the flip turns into `zu`.
        let zraw = _mm512_set1_epi8((zu ^ flip_byte) as i8);
        let zquad = _mm512_set1_epi8(zu as i8);
        // Loaded through `black_box`: with constant indices LLVM rewrites the byte
        // permutes into longer unpack sequences.
        // SAFETY: statics of 64 and 256 bytes.
        let (qidx, qidx2) = unsafe {
            let q = std::hint::black_box(QUAD_IDX.as_ptr());
            let q2 = std::hint::black_box(QUAD2_IDX.as_ptr());
            (
                [0, 1, 2, 3].map(|k| _mm512_loadu_si512(q.add(64 * k).cast())),
                [0, 1].map(|k| _mm512_loadu_si512(q2.add(64 * k).cast())),
            )
        };
        // Chunks of 64 positions (`64 · sw` padded columns): `ncx` cover a row, one
        // more is read for the quads of its last positions. Per chunk: the input
        // column of its first padded column and the masks of the valid input bytes
        // among the first and (`sw = 2`) second 64.
        let ncx = g.wq.div_ceil(64);
        let valid = |base: isize| -> __mmask64 {
            let lo = (-base).clamp(0, 64) as usize;
            let hi = (p.iw as isize - base).clamp(0, 64) as usize;
            if hi <= lo {
                0
            } else {
                bytes_mask(hi) & !bytes_mask(lo)
            }
        };
        let masks: Vec<(isize, __mmask64, __mmask64)> = (0..=ncx)
            .map(|m| {
                let base = (64 * m * sw) as isize - p.pl as isize;
                let lb = if sw == 2 { valid(base + 64) } else { 0 };
                (base, valid(base), lb)
            })
            .collect();
        // After the packs, dword `4 · l + k` holds vector `k`'s lanes `4 · l ..`:
        // result dword `D` takes dword `4 · (D % 4) + D / 4`.
        let order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
        let rec_words = crate::linear::RECORD / 4;
        // SAFETY (whole body): the scratch holds ph · e i32 (`scratch_bytes`); the
        // offsets below stay inside it as argued at each step; `x`, `w`, `bias`,
        // `rec`, `out` as the module contract sizes them.
        unsafe {
            let exp = scratch as *mut i32;
            // Positions past a band's rows are read only for discarded columns;
            // zeroed once so that every read is initialized.
            std::ptr::write_bytes(exp, 0, ph * g.e);
            for ic in 0..c_out.div_ceil(mult) {
                let xp = x.add(ic * isz);
                let ocs = ic * mult..((ic + 1) * mult).min(c_out);
                let mut b0 = 0;
                while b0 < p.oh {
                    let b1 = (b0 + g.band).min(p.oh);
                    // 1–2. The band's expanded phase rows (local row `pr - b0`)
                    // straight from the input rows: 64 padded phase columns per chunk
                    // (masked loads, padding lanes `zu`), the quads of 16 positions
                    // from two consecutive chunks. A row writes at most
                    // `⌈wq / 16⌉ · 16` positions: below `(band + halo) · wq + 16 ≤ e`.
                    for pr in b0..(b1 + g.hq - p.oh) {
                        for qy in 0..sh {
                            let iy = (pr * sh + qy) as isize - p.pt as isize;
                            let dst = exp.add(qy * g.e + (pr - b0) * g.wq);
                            if iy < 0 || iy as usize >= p.ih {
                                let mut c = 0;
                                while c < g.wq {
                                    _mm512_storeu_si512(dst.add(c).cast(), zquad);
                                    c += 16;
                                }
                                continue;
                            }
                            let src_row = xp.add(iy as usize * p.iw);
                            if sw == 1 {
                                expand_row1(src_row, &masks, dst, g.wq, zraw, flip, &qidx);
                            } else {
                                expand_row2(src_row, &masks, dst, g.wq, zraw, flip, &qidx2);
                            }
                        }
                    }
                    // 3. Sums and epilogue of the band's rows for each output channel
                    // of this input, 64 columns at a time: four vectors of 16 (those
                    // with columns below `ow`), requantized, packed to bytes in order
                    // and stored with one masked store. Reads: window offset
                    // `≤ halo · wq + wq - ow` plus `(oy - b0) · wq + x0 + 63` with
                    // `x0 < ow`: below `(band + halo) · wq + 63 ≤ e`.
                    for oc in ocs.clone() {
                        let rr = rec.add(oc * rec_words);
                        let lanes = Lanes::of_record(rr);
                        // Results below 0 only for a signed result type (the clamp's
                        // bound).
                        let signed_out = *rr.add(2) < 0;
                        let bv = _mm512_set1_epi32(*bias.add(oc));
                        let wrow = w.add(oc * nw);
                        let dst = out.add(oc * n);
                        for oy in b0..b1 {
                            let mut x0 = 0;
                            while x0 < p.ow {
                                let cols = (p.ow - x0).min(BLOCK);
                                let i = (oy - b0) * g.wq + x0;
                                let acc = match cols.div_ceil(16) {
                                    4 => sums::<4>(&offs, wrow, exp.add(i), bv),
                                    3 => sums::<3>(&offs, wrow, exp.add(i), bv),
                                    2 => sums::<2>(&offs, wrow, exp.add(i), bv),
                                    _ => sums::<1>(&offs, wrow, exp.add(i), bv),
                                };
                                let r = [
                                    requant16(acc[0], &lanes),
                                    requant16(acc[1], &lanes),
                                    requant16(acc[2], &lanes),
                                    requant16(acc[3], &lanes),
                                ];
                                let v = pack64(r, signed_out, order);
                                _mm512_mask_storeu_epi8(
                                    dst.add(oy * p.ow + x0).cast(),
                                    bytes_mask(cols),
                                    v,
                                );
                                x0 += BLOCK;
                            }
                        }
                    }
                    b0 = b1;
                }
            }
        }
    }

    /// The sums of `NA` vectors of 16 consecutive positions from `src`: `bv` plus,
    /// per window `t`, the expanded quads at `src + offs[t]` times its weights
    /// `wrow[t]` (vectors past `NA` stay `bv`).
    ///
    /// # Safety
    /// `wrow` holds `offs.len()` i32; `src + offs[t] + 16 · NA` stays inside the
    /// expanded planes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    unsafe fn sums<const NA: usize>(
        offs: &[usize],
        wrow: *const i32,
        src: *const i32,
        bv: __m512i,
    ) -> [__m512i; 4] {
        let mut acc = [bv; 4];
        for (t, &off) in offs.iter().enumerate() {
            // SAFETY: the caller's bounds.
            unsafe {
                let wv = _mm512_set1_epi32(*wrow.add(t));
                let sp = src.add(off);
                for (k, a) in acc.iter_mut().enumerate().take(NA) {
                    let v = _mm512_loadu_si512(sp.add(16 * k).cast());
                    *a = _mm512_dpbusd_epi32(*a, v, wv);
                }
            }
        }
        acc
    }

    /// Four vectors of 16 results (each already inside the 8-bit range) as 64 bytes in
    /// order: saturating packs (exact on in-range values; signed to bytes when
    /// `signed`), then `order` undoes the packs' per-128-bit-lane interleave.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    fn pack64(r: [__m512i; 4], signed: bool, order: __m512i) -> __m512i {
        let lo = _mm512_packs_epi32(r[0], r[1]);
        let hi = _mm512_packs_epi32(r[2], r[3]);
        let b = if signed {
            _mm512_packs_epi16(lo, hi)
        } else {
            _mm512_packus_epi16(lo, hi)
        };
        _mm512_permutexvar_epi32(order, b)
    }

    /// The C-ABI entry (see the module contract).
    #[allow(clippy::too_many_arguments)]
    pub(crate) extern "C" fn entry(
        params: *const i64,
        x: *const u8,
        w: *const i32,
        bias: *const i32,
        rec: *const i32,
        out: *mut u8,
        scratch: *mut u8,
    ) {
        // SAFETY: `params` points at PARAMS i64 (contract).
        let v = unsafe { &*params.cast::<[i64; PARAMS]>() };
        let blk = Block::decode(v);
        if blk.c_out == 0 || !applies(&blk.p, blk.c_out.div_ceil(blk.mult)) {
            return;
        }
        // SAFETY: only handed out by `kernels::dwq` after AVX-512F/BW/VL/VNNI/VBMI were
        // detected; the generated code passes buffers satisfying the contract.
        unsafe { dwq(&blk, x, w, bias, rec, out, scratch) }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    fn host() -> bool {
        use std::arch::is_x86_feature_detected as f;
        f!("avx512f") && f!("avx512bw") && f!("avx512vl") && f!("avx512vnni") && f!("avx512vbmi")
    }

    /// Every tap lands in exactly one window slot, at its phase, row and column.
    #[test]
    fn windows_cover_every_tap_once() {
        for (kh, kw, sh, sw, dh, dw) in [
            (3, 3, 1, 1, 1, 1),
            (3, 3, 2, 2, 1, 1),
            (5, 7, 2, 3, 1, 2),
            (1, 9, 1, 1, 1, 1),
        ] {
            let p = Plane {
                ih: 9,
                iw: 9,
                kh,
                kw,
                sh,
                sw,
                dh,
                dw,
                pt: 0,
                pl: 0,
                oh: 1,
                ow: 1,
            };
            let mut seen = vec![0; kh * kw];
            for w in windows(&p) {
                for (s, t) in w.taps.iter().enumerate() {
                    if let Some(t) = *t {
                        seen[t] += 1;
                        let (ry, rx) = ((t / kw) * dh, (t % kw) * dw);
                        assert_eq!(w.phase, ry % sh);
                        assert_eq!(w.prow, ry / sh);
                        assert_eq!(w.pcol * sw + s, rx);
                    }
                }
            }
            assert!(seen.iter().all(|&s| s == 1), "{seen:?}");
        }
    }

    /// The kernel against `dw_plane::reference` per channel plus the requantization
    /// written out in scalar code (round half to even), over strides 1–3, dilations,
    /// paddings, channel multipliers, small and wide planes, u8 and i8 input.
    #[test]
    fn dwq_matches_reference() {
        if !host() {
            return;
        }
        use super::super::dw_plane::testing::{case, geo, Rng};
        let mut rng = Rng(0x2545_f491);
        let cases = [
            (
                geo([7, 7], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
                5usize,
                1usize,
            ),
            (geo([70, 131], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]), 2, 1),
            (geo([33, 150], [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]), 3, 1),
            (geo([17, 33], [3, 3], [2, 2], [1, 1], [0, 0, 1, 1]), 4, 1),
            (geo([9, 12], [5, 3], [2, 1], [1, 2], [2, 1, 2, 3]), 6, 2),
            (geo([2, 2], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]), 3, 1),
            (geo([6, 40], [1, 7], [3, 2], [1, 1], [0, 3, 0, 3]), 6, 3),
            (geo([6, 80], [1, 7], [3, 2], [1, 1], [0, 3, 0, 3]), 6, 3),
            (geo([13, 200], [3, 3], [1, 2], [2, 1], [2, 1, 2, 1]), 2, 1),
            (geo([12, 12], [5, 5], [1, 1], [1, 1], [2, 2, 2, 2]), 3, 1),
            (geo([16, 40], [5, 5], [1, 1], [1, 1], [2, 2, 2, 2]), 3, 1),
            (geo([9, 30], [5, 3], [2, 1], [1, 2], [2, 1, 2, 3]), 6, 2),
            (geo([20, 64], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]), 2, 1),
            (geo([60, 100], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]), 4, 2),
            (geo([10, 65], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]), 2, 1),
            (geo([8, 129], [3, 3], [2, 2], [1, 1], [0, 1, 0, 1]), 2, 1),
        ];
        for (p, c_out, mult) in cases {
            for (signed, zx) in [(false, 0), (false, 133), (true, -5), (true, 127)] {
                let c_in = c_out.div_ceil(mult);
                let n = p.oh * p.ow;
                let cs = case(&mut rng, &p, c_out, mult, (signed, zx), (-128, 256));
                let (x, wv, bias, rec, want) = (cs.x, cs.wv, cs.bias, cs.rec, cs.want);
                assert!(applies(&p, c_in), "{p:?}");
                let (wq, bq) = pack(&p, &wv, &bias, c_out, zx, signed).expect("i8 weights");
                let mut got = vec![0xa5u8; c_out * n + 1];
                let prm = super::super::dw16::params(&p, zx, signed, c_out, mult);
                let mut scratch = vec![0x5au8; scratch_bytes(&p) + 4096];
                x86::entry(
                    prm.as_ptr(),
                    x.as_ptr(),
                    wq.as_ptr(),
                    bq.as_ptr(),
                    rec.as_ptr(),
                    got.as_mut_ptr(),
                    scratch.as_mut_ptr(),
                );
                assert_eq!(
                    &got[..c_out * n],
                    &want[..],
                    "{p:?} c_out {c_out} mult {mult} signed {signed} zx {zx}"
                );
                assert_eq!(got[c_out * n], 0xa5, "wrote past the result: {p:?}");
                assert!(
                    scratch[scratch_bytes(&p)..].iter().all(|&b| b == 0x5a),
                    "wrote past the scratch: {p:?}"
                );
            }
        }
    }

    /// Weights outside i8 are refused (the caller falls back).
    #[test]
    fn pack_refuses_wide_weights() {
        let p = Plane {
            ih: 4,
            iw: 4,
            kh: 1,
            kw: 2,
            sh: 1,
            sw: 1,
            dh: 1,
            dw: 1,
            pt: 0,
            pl: 0,
            oh: 4,
            ow: 3,
        };
        assert!(pack(&p, &[1, 128], &[0], 1, 0, false).is_none());
        assert!(pack(&p, &[-128, 127], &[0], 1, 0, false).is_some());
    }
}
