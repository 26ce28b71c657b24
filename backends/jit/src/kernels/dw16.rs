//! The native depthwise kernel over blocks of 16 channels, channels in the vector
//! lanes, with the `float` contract's epilogue fused: one call per image.
//!
//! The plane kernel (`dw_plane`) vectorizes along a channel's pixels, so small or
//! narrow planes leave lanes idle and pay per-channel overheads. Here each vector holds
//! one pixel of 16 channels: input rows are gathered into a ring of padded rows
//! (pixel-major, `x - zx` as f32), every output pixel is `Σ_taps w[tap] · row[col]`
//! with per-lane weights, 16 pixels at a time (16 independent accumulators), then
//! requantized per lane and transposed back to the NCHW result. Narrow planes
//! ([`flat`]) instead gather the whole padded plane, transposing 16 consecutive input
//! pixels at a time, and take their output pixels 16 at a time in row-major order.
//!
//! **Contract.** `entry(p, x, w, bias, rec, out, scratch)`: `p` at [`PARAMS`] i64
//! (`dw_plane::PARAMS` values, then `c_out`, `mult`); `x` at the image's `c_in` input
//! planes (`ih · iw` bytes each; output channel `oc` reads plane `oc / mult`); `w` at
//! `⌈c_out / 16⌉` blocks of `kh · kw` vectors of 16 f32 (`w - zw` of the block's
//! channels, zero for lanes past `c_out`); `bias` at `c_out` i32; `rec` at `c_out`
//! epilogue records (`linear::RECORD` bytes: `[m as f32 bits, zp, lo, hi, …]`); `out`
//! at `c_out` planes of `oh · ow` bytes; `scratch` at [`scratch_bytes`] bytes.
//!
//! **Exactness.** The sums are those of `dw_plane` (integers below 2^24 in f32, exact in
//! any order; padding taps read zeros, as `x - zx` of the padding value is 0). The
//! epilogue is `kernels::requant`'s, lane by lane: the exact sum converted to i32, the
//! bias added wrapping, then `f32 · m`, clamp ±2^24, round half to even, clamp to
//! `[lo - zp, hi - zp]`, `+ zp`, truncated to the byte (already in range).
//!
//! **Reads.** Input rows are read 16 bytes per lane with masked loads that stop at the
//! row's last used column, so no read leaves the input.

use super::dw_plane::Plane;

/// Values in the parameter block.
pub(crate) const PARAMS: usize = super::dw_plane::PARAMS + 2;

/// Columns of a ring row: every column the last (padded) 16-pixel group reads.
fn row_cols(p: &Plane) -> usize {
    (p.ow.div_ceil(16) * 16 - 1) * p.sw + (p.kw - 1) * p.dw + 1
}

/// Rows of the ring: the rows one output row reads.
fn ring_rows(p: &Plane) -> usize {
    (p.kh - 1) * p.dh + 1
}

/// Padded rows of the whole plane (every row any output reads).
fn plane_rows(p: &Plane) -> usize {
    (p.oh - 1) * p.sh + (p.kh - 1) * p.dh + 1
}

/// Whether the plane is computed *flat*: narrow outputs (a row shorter than a 16-pixel
/// group) take their groups over the whole plane in row-major order, which needs every
/// padded row at once; small enough planes only (the rows stay in L1/L2).
fn flat(p: &Plane) -> bool {
    p.ow < 16 && 4 * 16 * plane_rows(p) * row_cols(p) <= 256 * 1024
}

/// Columns of a padded row when [`flat`]: only the columns some output reads (flat
/// groups address each pixel's taps on their own, not as 16 consecutive columns).
fn flat_cols(p: &Plane) -> usize {
    (p.ow - 1) * p.sw + (p.kw - 1) * p.dw + 1
}

/// Scratch bytes: the ring of padded rows, or all of them when [`flat`] (16 f32 per
/// column).
pub(crate) fn scratch_bytes(p: &Plane) -> usize {
    if flat(p) {
        4 * 16 * plane_rows(p) * flat_cols(p)
    } else {
        4 * 16 * ring_rows(p) * row_cols(p)
    }
}

/// Whether the kernel applies (the shape limits of `dw_plane`, a non-empty result, and
/// plane offsets that fit i32).
pub(crate) fn applies(p: &Plane, c_in: usize) -> bool {
    super::dw_plane::applies(p)
        && p.oh > 0
        && p.ow > 0
        && c_in
            .checked_mul(p.ih * p.iw)
            .is_some_and(|b| b < (i32::MAX as usize) / 2)
}

/// The parameter block.
pub(crate) fn params(p: &Plane, zx: i32, signed: bool, c_out: usize, mult: usize) -> [i64; PARAMS] {
    let mut v = [0i64; PARAMS];
    v[..super::dw_plane::PARAMS].copy_from_slice(&p.params(zx, signed));
    v[PARAMS - 2] = c_out as i64;
    v[PARAMS - 1] = mult as i64;
    v
}

/// A decoded parameter block (this kernel's and `dwq`'s): the plane, the input zero
/// point and signedness, the output channels and the channel multiplier.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Block {
    pub p: Plane,
    pub zx: i32,
    pub signed: bool,
    pub c_out: usize,
    pub mult: usize,
}

impl Block {
    /// The block of [`PARAMS`] values `v` (negative counts read as 0, the multiplier
    /// as at least 1).
    pub(crate) fn decode(v: &[i64; PARAMS]) -> Block {
        let u = |i: usize| v[i].max(0) as usize;
        Block {
            p: Plane::from_params(v),
            zx: v[12] as i32,
            signed: v[13] != 0,
            c_out: u(PARAMS - 2),
            mult: u(PARAMS - 1).max(1),
        }
    }
}

/// Weight blocks in the kernel's layout from `w - zw` as `[c_out][k]`.
pub(crate) fn weight_blocks(wv: &[i32], c_out: usize, k: usize) -> Vec<f32> {
    let blocks = c_out.div_ceil(16);
    let mut out = vec![0f32; blocks * k * 16];
    for c in 0..c_out {
        for t in 0..k {
            out[((c / 16) * k + t) * 16 + c % 16] = wv[c * k + t] as f32;
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use super::*;
    use crate::kernels::requant::x86::{requant16, Lanes};
    use std::arch::x86_64::*;

    /// 16×16 byte transpose: `a[j]` byte `c` becomes `out[c]` byte `j`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn transpose16(a: [__m128i; 16]) -> [__m128i; 16] {
        let mut b = a;
        for i in 0..8 {
            b[2 * i] = _mm_unpacklo_epi8(a[2 * i], a[2 * i + 1]);
            b[2 * i + 1] = _mm_unpackhi_epi8(a[2 * i], a[2 * i + 1]);
        }
        let mut c = b;
        for i in 0..4 {
            c[4 * i] = _mm_unpacklo_epi16(b[4 * i], b[4 * i + 2]);
            c[4 * i + 1] = _mm_unpackhi_epi16(b[4 * i], b[4 * i + 2]);
            c[4 * i + 2] = _mm_unpacklo_epi16(b[4 * i + 1], b[4 * i + 3]);
            c[4 * i + 3] = _mm_unpackhi_epi16(b[4 * i + 1], b[4 * i + 3]);
        }
        let mut d = c;
        for i in 0..2 {
            for j in 0..4 {
                d[8 * i + 2 * j] = _mm_unpacklo_epi32(c[8 * i + j], c[8 * i + j + 4]);
                d[8 * i + 2 * j + 1] = _mm_unpackhi_epi32(c[8 * i + j], c[8 * i + j + 4]);
            }
        }
        let mut e = d;
        for j in 0..8 {
            e[2 * j] = _mm_unpacklo_epi64(d[j], d[j + 8]);
            e[2 * j + 1] = _mm_unpackhi_epi64(d[j], d[j + 8]);
        }
        e
    }

    /// Finish one group of 16 pixels (`acc[j]`: pixel j's sums of the block's 16
    /// channels): bias, requantize per lane, transpose to channel rows and store the
    /// first `cnt` pixels of the first `nch` channels at `dst + ch · n`.
    ///
    /// The results are already in the storage range, so narrowing them with saturating
    /// packs is exact: dwords to words, then words to bytes, unsigned when no lane's
    /// smallest code is negative (`signed` false: codes in 0..=255), signed otherwise
    /// (codes in -128..=127). Two packing levels leave, in 128-bit lane `L` of vector
    /// `k`, pixels `4k..4k + 4` × channels `4L..4L + 4`; a 4×4 transpose of lanes, a
    /// byte shuffle inside each lane and a dword permutation then give channel rows of
    /// 16 pixels, four per vector.
    ///
    /// # Safety
    /// The CPU has AVX-512F/BW/VL; `dst + ch · n + j` for `ch < nch`, `j < cnt` is
    /// inside the result.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn store_group(
        acc: [__m512; 16],
        bias: __m512i,
        lanes: &Lanes,
        signed: bool,
        dst: *mut u8,
        n: usize,
        nch: usize,
        cnt: usize,
    ) {
        // Plain loops, not closures, in the kernels: a closure does not inherit the
        // function's target features, and left out of line its intrinsics become calls.
        let mut q = [_mm512_setzero_si512(); 16];
        for (o, &a) in q.iter_mut().zip(&acc) {
            let s = _mm512_add_epi32(_mm512_cvtps_epi32(a), bias);
            *o = requant16(s, lanes);
        }
        let mut w = [_mm512_setzero_si512(); 8];
        for (i, o) in w.iter_mut().enumerate() {
            *o = _mm512_packs_epi32(q[2 * i], q[2 * i + 1]);
        }
        let mut b = [_mm512_setzero_si512(); 4];
        for (k, o) in b.iter_mut().enumerate() {
            *o = if signed {
                _mm512_packs_epi16(w[2 * k], w[2 * k + 1])
            } else {
                _mm512_packus_epi16(w[2 * k], w[2 * k + 1])
            };
        }
        // t[L] lane k = b[k] lane L.
        let u0 = _mm512_shuffle_i32x4::<0x44>(b[0], b[1]);
        let u1 = _mm512_shuffle_i32x4::<0xEE>(b[0], b[1]);
        let u2 = _mm512_shuffle_i32x4::<0x44>(b[2], b[3]);
        let u3 = _mm512_shuffle_i32x4::<0xEE>(b[2], b[3]);
        let t = [
            _mm512_shuffle_i32x4::<0x88>(u0, u2),
            _mm512_shuffle_i32x4::<0xDD>(u0, u2),
            _mm512_shuffle_i32x4::<0x88>(u1, u3),
            _mm512_shuffle_i32x4::<0xDD>(u1, u3),
        ];
        // Inside a lane, byte 4p + c (pixel p, channel c) to 4c + p; then dword 4k + c
        // (lane k, channel c) to 4c + k: channel c's 16 pixels in lane c.
        let bytes = _mm512_set_epi8(
            15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0, 15, 11, 7, 3, 14, 10, 6, 2, 13,
            9, 5, 1, 12, 8, 4, 0, 15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0, 15, 11, 7,
            3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0,
        );
        let dwords = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
        let m: __mmask16 = if cnt == 16 { 0xffff } else { (1u16 << cnt) - 1 };
        for (l, &tl) in t.iter().enumerate() {
            let rows = _mm512_permutexvar_epi32(dwords, _mm512_shuffle_epi8(tl, bytes));
            let rs = [
                _mm512_castsi512_si128(rows),
                _mm512_extracti32x4_epi32::<1>(rows),
                _mm512_extracti32x4_epi32::<2>(rows),
                _mm512_extracti32x4_epi32::<3>(rows),
            ];
            for (c, v) in rs.iter().enumerate() {
                let ch = 4 * l + c;
                if ch < nch {
                    // SAFETY: the caller's bound.
                    unsafe { _mm_mask_storeu_epi8(dst.add(ch * n).cast(), m, *v) };
                }
            }
        }
    }

    #[cfg(test)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(crate) fn transpose16_for_tests(a: [__m128i; 16]) -> [__m128i; 16] {
        transpose16(a)
    }

    /// # Safety
    /// The CPU has AVX-512F/BW/VL; the pointers satisfy the module contract.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn dw16(
        blk: &Block,
        x: *const u8,
        w: *const f32,
        bias: *const i32,
        rec: *const i32,
        out: *mut u8,
        scratch: *mut f32,
    ) {
        let Block {
            ref p,
            zx,
            signed,
            c_out,
            mult,
        } = *blk;
        let (isz, n, k) = (p.ih * p.iw, p.oh * p.ow, p.kh * p.kw);
        let flat = flat(p);
        // Flat: the "ring" holds every padded row (slot = row), filled up front per
        // block; its padding is zeroed once here (blocks overwrite only input pixels).
        let (span, wa) = if flat {
            (plane_rows(p), flat_cols(p))
        } else {
            (ring_rows(p), row_cols(p))
        };
        if flat {
            for i in 0..span * wa {
                // SAFETY: span · wa vectors of 16 f32 are the flat scratch.
                unsafe { _mm512_storeu_ps(scratch.add(16 * i), _mm512_setzero_ps()) };
            }
        }
        let rec_words = crate::linear::RECORD / 4;
        let mut held = vec![usize::MAX; span];
        // Flat: each output pixel's first tap, in floats, for whole groups of 16
        // (past-the-end pixels repeat the last one; their results are not stored).
        let mut bases = Vec::new();
        if flat {
            bases.reserve(n.div_ceil(16) * 16);
            for oy in 0..p.oh {
                for ox in 0..p.ow {
                    bases.push((oy * p.sh * wa + ox * p.sw) * 16);
                }
            }
            let last = bases.last().copied().unwrap_or(0);
            bases.resize(n.div_ceil(16) * 16, last);
        }
        let zxv = _mm512_set1_epi32(zx);
        // SAFETY (whole body): offsets stay inside the buffers the contract sizes; the
        // gather reads argued in the module docs.
        unsafe {
            for blk in 0..c_out.div_ceil(16) {
                let oc0 = blk * 16;
                let nch = (c_out - oc0).min(16);
                // Per lane: its channel (lanes past c_out repeat the last one).
                let mut offs = [0usize; 16];
                let (mut mv, mut zpv, mut lov, mut hiv, mut bv) =
                    ([0f32; 16], [0i32; 16], [0i32; 16], [0i32; 16], [0i32; 16]);
                for l in 0..16 {
                    let ch = oc0 + l.min(nch - 1);
                    offs[l] = (ch / mult) * isz;
                    let r = rec.add(ch * rec_words);
                    mv[l] = f32::from_bits(*r as u32);
                    zpv[l] = *r.add(1);
                    lov[l] = *r.add(2) - zpv[l];
                    hiv[l] = *r.add(3) - zpv[l];
                    bv[l] = *bias.add(ch);
                }
                // Whether some result code may be negative (the clamp's lower bound).
                let signed_out = lov.iter().zip(&zpv).any(|(&lo, &zp)| lo + zp < 0);
                let offs_u = offs;
                let lanes = Lanes {
                    m: _mm512_loadu_ps(mv.as_ptr()),
                    lo: _mm512_cvtepi32_ps(_mm512_loadu_si512(lov.as_ptr().cast())),
                    hi: _mm512_cvtepi32_ps(_mm512_loadu_si512(hiv.as_ptr().cast())),
                    zp: _mm512_loadu_si512(zpv.as_ptr().cast()),
                };
                let bv = _mm512_loadu_si512(bv.as_ptr().cast());
                let blk_out = out.add(oc0 * n);
                let wb = w.add(blk * k * 16);
                // Which padded row each slot holds (one slot per ring row).
                held.fill(usize::MAX);
                if flat {
                    // The input plane 16 consecutive pixels at a time (one transpose
                    // per 16 pixels, whatever the row width), each pixel to its padded
                    // row and column.
                    let mut i0 = 0;
                    // Row and column of pixel i0 + j (counted, not divided: a
                    // division per pixel cost as much as the rest).
                    let (mut iy, mut ix) = (0usize, 0usize);
                    while i0 < isz {
                        let cnt = (isz - i0).min(16);
                        let m: __mmask16 = if cnt == 16 { 0xffff } else { (1u16 << cnt) - 1 };
                        let mut rows = [_mm_setzero_si128(); 16];
                        for (r, &o) in rows.iter_mut().zip(&offs_u) {
                            *r = _mm_maskz_loadu_epi8(m, x.add(o + i0).cast());
                        }
                        let px = transpose16(rows);
                        for b in px.iter().take(cnt) {
                            let (py, col) = (iy + p.pt, ix + p.pl);
                            ix += 1;
                            if ix == p.iw {
                                ix = 0;
                                iy += 1;
                            }
                            if py >= span || col >= wa {
                                continue;
                            }
                            let v = if signed {
                                _mm512_cvtepi8_epi32(*b)
                            } else {
                                _mm512_cvtepu8_epi32(*b)
                            };
                            let f = _mm512_cvtepi32_ps(_mm512_sub_epi32(v, zxv));
                            _mm512_storeu_ps(scratch.add((py * wa + col) * 16), f);
                        }
                        i0 += 16;
                    }
                }
                for oy in 0..p.oh {
                    if flat {
                        break;
                    }
                    // Fill the ring rows this output row reads.
                    let (first, count, step) = (oy * p.sh, p.kh, p.dh);
                    for i in 0..count {
                        let py = first + i * step;
                        let slot = py % span;
                        if held[slot] == py {
                            continue;
                        }
                        held[slot] = py;
                        let row = scratch.add(slot * wa * 16);
                        let iy = py as isize - p.pt as isize;
                        if iy < 0 || iy >= p.ih as isize {
                            for c in 0..wa {
                                _mm512_storeu_ps(row.add(16 * c), _mm512_setzero_ps());
                            }
                            continue;
                        }
                        // Columns without input: zeros.
                        let used = p.iw.min(wa.saturating_sub(p.pl));
                        for c in (0..p.pl.min(wa)).chain(p.pl + used..wa) {
                            _mm512_storeu_ps(row.add(16 * c), _mm512_setzero_ps());
                        }
                        // Columns with input: 16 lanes' rows of 16 bytes, transposed into
                        // 16 pixels of 16 channels, then x - zx as f32.
                        let rbase = iy as usize * p.iw;
                        let mut ix0 = 0;
                        while ix0 < used {
                            let cnt = (used - ix0).min(16);
                            let m: __mmask16 = if cnt == 16 { 0xffff } else { (1u16 << cnt) - 1 };
                            let mut rows = [_mm_setzero_si128(); 16];
                            for (r, &o) in rows.iter_mut().zip(&offs_u) {
                                *r = _mm_maskz_loadu_epi8(m, x.add(o + rbase + ix0).cast());
                            }
                            let px = transpose16(rows);
                            for (j, b) in px.iter().enumerate().take(cnt) {
                                let v = if signed {
                                    _mm512_cvtepi8_epi32(*b)
                                } else {
                                    _mm512_cvtepu8_epi32(*b)
                                };
                                let f = _mm512_cvtepi32_ps(_mm512_sub_epi32(v, zxv));
                                _mm512_storeu_ps(row.add(16 * (p.pl + ix0 + j)), f);
                            }
                            ix0 += 16;
                        }
                    }
                    let orow = oy * p.ow;
                    let mut ox0 = 0;
                    while ox0 < p.ow {
                        let mut acc = [_mm512_setzero_ps(); 16];
                        for ky in 0..p.kh {
                            let py = oy * p.sh + ky * p.dh;
                            let row = scratch.add((py % span) * wa * 16);
                            for kx in 0..p.kw {
                                let wv = _mm512_loadu_ps(wb.add((ky * p.kw + kx) * 16));
                                let base = row.add((ox0 * p.sw + kx * p.dw) * 16);
                                for (j, a) in acc.iter_mut().enumerate() {
                                    let v = _mm512_loadu_ps(base.add(j * p.sw * 16));
                                    *a = _mm512_fmadd_ps(wv, v, *a);
                                }
                            }
                        }
                        let cnt = (p.ow - ox0).min(16);
                        store_group(
                            acc,
                            bv,
                            &lanes,
                            signed_out,
                            blk_out.add(orow + ox0),
                            n,
                            nch,
                            cnt,
                        );
                        ox0 += 16;
                    }
                }
                if flat {
                    // Groups of 16 consecutive output pixels over the whole plane.
                    let mut p0 = 0;
                    while p0 < n {
                        let cnt = (n - p0).min(16);
                        // Each pixel's first tap, in floats (past-the-end pixels
                        // repeat the last one; their results are not stored).
                        let mut base = [0usize; 16];
                        base.copy_from_slice(&bases[p0..p0 + 16]);
                        let mut acc = [_mm512_setzero_ps(); 16];
                        for ky in 0..p.kh {
                            for kx in 0..p.kw {
                                let wv = _mm512_loadu_ps(wb.add((ky * p.kw + kx) * 16));
                                let tap = scratch.add((ky * p.dh * wa + kx * p.dw) * 16);
                                for (a, &b) in acc.iter_mut().zip(&base) {
                                    let v = _mm512_loadu_ps(tap.add(b));
                                    *a = _mm512_fmadd_ps(wv, v, *a);
                                }
                            }
                        }
                        store_group(acc, bv, &lanes, signed_out, blk_out.add(p0), n, nch, cnt);
                        p0 += 16;
                    }
                }
            }
        }
    }

    /// The C-ABI entry (see the module contract).
    #[allow(clippy::too_many_arguments)]
    pub(crate) extern "C" fn entry(
        params: *const i64,
        x: *const u8,
        w: *const f32,
        bias: *const i32,
        rec: *const i32,
        out: *mut u8,
        scratch: *mut f32,
    ) {
        // SAFETY: `params` points at PARAMS i64 (contract).
        let v = unsafe { &*params.cast::<[i64; PARAMS]>() };
        let blk = Block::decode(v);
        if blk.c_out == 0 || !applies(&blk.p, blk.c_out.div_ceil(blk.mult)) {
            return;
        }
        // SAFETY: only handed out by `kernels::dw16` after AVX-512F/BW/VL were
        // detected; the generated code passes buffers satisfying the contract.
        unsafe { dw16(&blk, x, w, bias, rec, out, scratch) }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    fn avx512() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
    }

    #[test]
    fn transpose16_transposes() {
        if !avx512() {
            return;
        }
        use std::arch::x86_64::*;
        let mut a = [[0u8; 16]; 16];
        for (j, r) in a.iter_mut().enumerate() {
            for (c, b) in r.iter_mut().enumerate() {
                *b = (j * 16 + c) as u8;
            }
        }
        // SAFETY: AVX-512 was detected; loads/stores of 16-byte arrays.
        let got = unsafe {
            let v: [__m128i; 16] = std::array::from_fn(|j| _mm_loadu_si128(a[j].as_ptr().cast()));
            let t = x86_transpose(v);
            let mut o = [[0u8; 16]; 16];
            for (c, r) in o.iter_mut().enumerate() {
                _mm_storeu_si128(r.as_mut_ptr().cast(), t[c]);
            }
            o
        };
        for c in 0..16 {
            for j in 0..16 {
                assert_eq!(got[c][j], a[j][c], "out[{c}][{j}]");
            }
        }
    }

    /// Calls the private transpose through a wrapper with the same features.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn x86_transpose(v: [std::arch::x86_64::__m128i; 16]) -> [std::arch::x86_64::__m128i; 16] {
        x86::transpose16_for_tests(v)
    }

    /// The kernel against `dw_plane::reference` per channel plus the requantization
    /// written out in scalar code (round half to even), over strides, dilations,
    /// paddings, channel multipliers, channel counts that leave partial blocks and
    /// widths that leave partial pixel groups.
    #[test]
    fn dw16_matches_reference() {
        if !avx512() {
            return;
        }
        use super::super::dw_plane::testing::{case, geo, Rng};
        let mut rng = Rng(0x9e37_79b9);
        let cases = [
            (
                geo([7, 7], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
                37usize,
                1usize,
            ),
            (geo([25, 5], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]), 16, 1),
            (geo([17, 33], [3, 3], [2, 2], [1, 1], [0, 0, 1, 1]), 20, 1),
            (geo([9, 12], [5, 3], [2, 1], [1, 2], [2, 1, 2, 3]), 12, 2),
            (geo([2, 2], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]), 5, 1),
            (geo([6, 40], [1, 7], [1, 3], [1, 1], [0, 3, 0, 3]), 33, 3),
        ];
        for (p, c_out, mult) in cases {
            for (signed, zx) in [(false, 0), (false, 133), (true, -5)] {
                let k = p.kh * p.kw;
                let n = p.oh * p.ow;
                let cs = case(&mut rng, &p, c_out, mult, (signed, zx), (-127, 255));
                let (x, wv, bias, rec, want) = (cs.x, cs.wv, cs.bias, cs.rec, cs.want);
                let mut got = vec![0xa5u8; c_out * n + 1];
                let wb = weight_blocks(&wv, c_out, k);
                let prm = params(&p, zx, signed, c_out, mult);
                let mut scratch = vec![0f32; scratch_bytes(&p) / 4];
                x86::entry(
                    prm.as_ptr(),
                    x.as_ptr(),
                    wb.as_ptr(),
                    bias.as_ptr(),
                    rec.as_ptr(),
                    got.as_mut_ptr(),
                    scratch.as_mut_ptr(),
                );
                assert_eq!(
                    &got[..c_out * n],
                    &want[..],
                    "{p:?} c_out {c_out} mult {mult} signed {signed}"
                );
                assert_eq!(got[c_out * n], 0xa5, "wrote past the result: {p:?}");
            }
        }
    }
}
