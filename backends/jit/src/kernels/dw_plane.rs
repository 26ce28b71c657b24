//! The native depthwise plane kernel: one channel of a 2-D depthwise conv, all taps
//! summed in registers, strides handled by splitting each input row into phases.
//!
//! **Contract.** `entry(p, x, w, out, scratch)` where `p` points at [`PARAMS`] i64
//! values `[ih, iw, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, zx, signed]` (one input
//! plane `ih × iw` of u8, or i8 when `signed != 0`; kernel `kh × kw`; strides, dilations,
//! top/left padding; output plane `oh × ow`; input zero point `zx`), `x` at the
//! plane's `ih · iw` bytes, `w` at `kh · kw` f32 weights `w - zw` (integers in
//! `[-255, 255]`), `out` at `oh · ow` i32 and `scratch` at [`scratch_bytes`] bytes
//! aligned to 64. It sets `out[oy · ow + ox] = Σ (x[iy][ix] - zx) · w[ky][kx]` over the
//! taps inside the plane (padding taps contribute 0, as the interpreter's
//! `x - zx` of a padding value `zx` does).
//!
//! **Exactness.** Every `x - zx` and `w` is an integer of magnitude ≤ 255, so every
//! product is an integer of magnitude ≤ 65025 and, with `kh · kw ≤` [`MAX_TAPS`], every
//! partial sum is an integer of magnitude < 2^24: f32 represents all of them, and a
//! fused multiply-add of exact integers below 2^24 is exact. So the f32 sums equal
//! the interpreter's i32 sums (which cannot wrap at these magnitudes) in any order.
//!
//! **Layout of the scratch.** The zero-padded input plane, as `x - zx` in f32, is
//! split into `sh · sw` *phase planes* — phase `(qy, qx)` holds padded rows
//! `qy, qy + sh, …` and columns `qx, qx + sw, …` — each `hq × wq` with the row pitch
//! `wq`. The tap `(ky, kx)` of output `(oy, ox)`, padded position
//! `(sh·oy + ky·dh, sw·ox + kx·dw)`, is element `(oy + ky·dh / sh, ox + kx·dw / sw)` of
//! phase `(ky·dh % sh, kx·dw % sw)`. So over the *flat* index `i = oy · wq + ox` every
//! tap is one fixed offset: the kernel computes `oh · wq` sums (the `wq - ow` extra
//! columns per row are discarded) as a 1-D convolution whose consecutive outputs read
//! consecutive floats, whatever the strides, several vectors at a time.

/// Flat outputs per step of the inner loop (four 16-float vectors: four independent
/// accumulation chains).
const BLOCK: usize = 64;

/// Values in the parameter block.
pub(crate) const PARAMS: usize = 14;

/// The most taps for which the f32 sums are exact (`MAX_TAPS · 255² < 2^24`).
pub(crate) const MAX_TAPS: usize = 258;

/// The widest kernel the plane kernel takes (a stack table per kernel column).
pub(crate) const MAX_KW: usize = 64;

/// Geometry of one plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plane {
    pub ih: usize,
    pub iw: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    pub pt: usize,
    pub pl: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Plane {
    /// Columns of a phase plane (its row pitch): the farthest tap of the last output.
    fn wq(&self) -> usize {
        self.ow + (self.kw.saturating_sub(1) * self.dw) / self.sw.max(1)
    }

    /// Rows of a phase plane.
    fn hq(&self) -> usize {
        self.oh + (self.kh.saturating_sub(1) * self.dh) / self.sh.max(1)
    }

    /// Floats per phase plane: the plane plus one block of whole-vector over-reads.
    fn phase_len(&self) -> usize {
        (self.hq() * self.wq() + BLOCK).div_ceil(16) * 16
    }

    /// Floats of the padded-row buffer: every phase column has a source, every input
    /// column a place; whole 32-float steps for the deinterleave.
    fn row_len(&self) -> usize {
        (self.wq() * self.sw).max(self.pl + self.iw).div_ceil(32) * 32
    }

    /// Flat sums computed (`oh · wq`, rounded up to whole blocks).
    fn flat_len(&self) -> usize {
        (self.oh * self.wq()).div_ceil(BLOCK) * BLOCK
    }

    /// The geometry from the first 12 values of a parameter block (negative values
    /// read as 0, which [`applies`] rejects where it matters).
    pub(crate) fn from_params(v: &[i64]) -> Plane {
        let u = |i: usize| v.get(i).copied().unwrap_or(0).max(0) as usize;
        Plane {
            ih: u(0),
            iw: u(1),
            kh: u(2),
            kw: u(3),
            sh: u(4),
            sw: u(5),
            dh: u(6),
            dw: u(7),
            pt: u(8),
            pl: u(9),
            oh: u(10),
            ow: u(11),
        }
    }

    /// The parameter block for [`PARAMS`].
    pub(crate) fn params(&self, zx: i32, signed: bool) -> [i64; PARAMS] {
        let v = [
            self.ih, self.iw, self.kh, self.kw, self.sh, self.sw, self.dh, self.dw, self.pt,
            self.pl, self.oh, self.ow,
        ];
        let mut p = [0i64; PARAMS];
        for (d, s) in p.iter_mut().zip(v) {
            *d = s as i64;
        }
        p[12] = i64::from(zx);
        p[13] = i64::from(signed);
        p
    }
}

/// Scratch bytes the kernel needs for `p`: the phase planes, one padded row, the
/// flat sums.
pub(crate) fn scratch_bytes(p: &Plane) -> usize {
    4 * (p.sh * p.sw * p.phase_len() + p.row_len() + p.flat_len())
}

/// Whether the kernel applies to `p` (shape limits of the exactness argument).
pub(crate) fn applies(p: &Plane) -> bool {
    p.kh * p.kw <= MAX_TAPS
        && p.kw <= MAX_KW
        && p.kh > 0
        && p.kw > 0
        && p.sh > 0
        && p.sw > 0
        && p.dh > 0
        && p.dw > 0
        && p.ih > 0
        && p.iw > 0
}

/// Depthwise test cases shared by the kernels' tests: geometry, random operands and
/// the expected 8-bit results from [`reference`] plus the `float` contract's
/// requantization written out in scalar code (round half to even).
#[cfg(test)]
pub(crate) mod testing {
    use super::{reference, Plane};

    /// The plane of input `i`, kernel `k`, strides `s`, dilations `d`, paddings
    /// `[top, left, bottom, right]`.
    pub(crate) fn geo(
        i: [usize; 2],
        k: [usize; 2],
        s: [usize; 2],
        d: [usize; 2],
        pad: [usize; 4],
    ) -> Plane {
        let out = |a: usize| (i[a] + pad[a] + pad[a + 2] - ((k[a] - 1) * d[a] + 1)) / s[a] + 1;
        Plane {
            ih: i[0],
            iw: i[1],
            kh: k[0],
            kw: k[1],
            sh: s[0],
            sw: s[1],
            dh: d[0],
            dw: d[1],
            pt: pad[0],
            pl: pad[1],
            oh: out(0),
            ow: out(1),
        }
    }

    /// A xorshift generator.
    pub(crate) struct Rng(pub u32);

    impl Rng {
        pub(crate) fn next(&mut self) -> u32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 17;
            self.0 ^= self.0 << 5;
            self.0
        }
    }

    /// One case's operands and expected results.
    pub(crate) struct Case {
        pub x: Vec<u8>,
        /// `w - zw`, `[c_out][kh · kw]`.
        pub wv: Vec<i32>,
        pub bias: Vec<i32>,
        /// Epilogue records (`linear::RECORD` bytes each).
        pub rec: Vec<i32>,
        pub want: Vec<u8>,
    }

    /// Random operands for `c_out` output channels (multiplier `mult`), weights in
    /// `[w_lo, w_lo + w_span)`, and their expected results.
    pub(crate) fn case(
        rng: &mut Rng,
        p: &Plane,
        c_out: usize,
        mult: usize,
        (signed, zx): (bool, i32),
        (w_lo, w_span): (i32, u32),
    ) -> Case {
        let words = crate::linear::RECORD / 4;
        let c_in = c_out.div_ceil(mult);
        let k = p.kh * p.kw;
        let x: Vec<u8> = (0..c_in * p.ih * p.iw).map(|_| rng.next() as u8).collect();
        let wv: Vec<i32> = (0..c_out * k)
            .map(|_| (rng.next() % w_span) as i32 + w_lo)
            .collect();
        let bias: Vec<i32> = (0..c_out)
            .map(|_| (rng.next() % 20001) as i32 - 10000)
            .collect();
        let mut rec = vec![0i32; c_out * words];
        for r in rec.chunks_mut(words) {
            let m = 1.0e-4 * (1 + rng.next() % 50) as f32;
            r[0] = m.to_bits() as i32;
            r[1] = (rng.next() % 256) as i32 - if signed { 128 } else { 0 };
            let (qmin, qmax) = if signed { (-128, 127) } else { (0, 255) };
            r[2] = qmin + (rng.next() % 3) as i32;
            r[3] = qmax - (rng.next() % 3) as i32;
        }
        let n = p.oh * p.ow;
        let mut want = vec![0u8; c_out * n];
        for c in 0..c_out {
            let ic = c / mult;
            let plane = &x[ic * p.ih * p.iw..(ic + 1) * p.ih * p.iw];
            let wf: Vec<f32> = wv[c * k..(c + 1) * k].iter().map(|&w| w as f32).collect();
            let sums = reference(p, plane, signed, zx, &wf);
            let r = &rec[c * words..(c + 1) * words];
            let m = f32::from_bits(r[0] as u32);
            for (o, &s) in want[c * n..(c + 1) * n].iter_mut().zip(&sums) {
                let v = (s.wrapping_add(bias[c]) as f32 * m).round_ties_even();
                let q = (v as i64 + i64::from(r[1])).clamp(i64::from(r[2]), i64::from(r[3]));
                *o = q as u8;
            }
        }
        Case {
            x,
            wv,
            bias,
            rec,
            want,
        }
    }
}

/// The reference: the same sums in plain i64 arithmetic (tests and non-x86 hosts).
#[cfg(test)]
pub(crate) fn reference(p: &Plane, x: &[u8], signed: bool, zx: i32, w: &[f32]) -> Vec<i32> {
    let mut out = vec![0i32; p.oh * p.ow];
    for oy in 0..p.oh {
        for ox in 0..p.ow {
            let mut s = 0i64;
            for ky in 0..p.kh {
                for kx in 0..p.kw {
                    let iy = (oy * p.sh + ky * p.dh) as i64 - p.pt as i64;
                    let ix = (ox * p.sw + kx * p.dw) as i64 - p.pl as i64;
                    if iy < 0 || ix < 0 || iy >= p.ih as i64 || ix >= p.iw as i64 {
                        continue;
                    }
                    let b = x[iy as usize * p.iw + ix as usize];
                    let v = if signed {
                        i64::from(b as i8)
                    } else {
                        i64::from(b)
                    };
                    s += (v - i64::from(zx)) * w[ky * p.kw + kx] as i64;
                }
            }
            out[oy * p.ow + ox] = s as i32;
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use super::Plane;
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU has AVX-512F/BW/VL; the pointers satisfy the module contract.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn plane512(
        p: &Plane,
        zx: i32,
        signed: bool,
        x: *const u8,
        w: *const f32,
        out: *mut i32,
        scratch: *mut f32,
    ) {
        let (sh, sw) = (p.sh, p.sw);
        let (wq, hq) = (p.wq(), p.hq());
        let plen = p.phase_len();
        let row_len = p.row_len();
        // SAFETY (whole function): offsets stay inside the buffers the contract sizes
        // (`x`: ih·iw bytes; scratch: sh·sw·plen + row_len + flat_len floats; `out`:
        // oh·ow i32). Phase writes are at rows < hq and columns < wq; flat reads at
        // `i + off` with `i < flat_len ≤ oh·wq + BLOCK - 1` and
        // `off ≤ (hq - oh)·wq + wq - 1 - ow`, so below `hq·wq + BLOCK ≤ plen`.
        unsafe {
            let row = scratch.add(sh * sw * plen);
            let flat = row.add(row_len);
            let zxv = _mm512_set1_epi32(zx);
            // The over-read tail of each phase plane feeds only discarded sums, but it
            // must hold ordinary floats: stale arena bytes read as f32 are often
            // denormals, and every FMA on a denormal takes a slow microcode assist.
            for ph in 0..sh * sw {
                let tail = scratch.add(ph * plen);
                let mut j = hq * wq;
                while j + 16 <= plen {
                    _mm512_storeu_ps(tail.add(j), _mm512_setzero_ps());
                    j += 16;
                }
                while j < plen {
                    *tail.add(j) = 0.0;
                    j += 1;
                }
            }
            let zero_row = |dst: *mut f32| {
                for j in 0..wq {
                    *dst.add(j) = 0.0;
                }
            };
            // Every padded row py < hq·sh that some phase row holds; (qy, a) =
            // (py % sh, py / sh) kept by counting (a division per row costs more than
            // a small plane's whole sum).
            let (mut qy, mut a) = (0usize, 0usize);
            for py in 0..hq * sh {
                if py > 0 {
                    qy += 1;
                    if qy == sh {
                        qy = 0;
                        a += 1;
                    }
                }
                let iy = py as isize - p.pt as isize;
                if iy < 0 || iy >= p.ih as isize {
                    for qx in 0..sw {
                        zero_row(scratch.add((qy * sw + qx) * plen + a * wq));
                    }
                    continue;
                }
                // With sw == 1 the phase row is the padded row itself: build it in
                // place (pl zeros, the values, zeros to wq); else build the padded
                // row and split it.
                let ph0 = scratch.add(qy * sw * plen + a * wq);
                let row = if sw == 1 { ph0 } else { row };
                let row_len = if sw == 1 { wq } else { row_len };
                if sw == 1 {
                    for j in 0..p.pl.min(wq) {
                        *row.add(j) = 0.0;
                    }
                    for j in (p.pl + p.iw).min(wq)..wq {
                        *row.add(j) = 0.0;
                    }
                }
                let mut j = 0;
                while sw != 1 && j < row_len {
                    _mm512_storeu_ps(row.add(j), _mm512_setzero_ps());
                    j += 16;
                }
                let src = x.add(iy as usize * p.iw);
                let dst = row.add(p.pl);
                // Input columns past the last phase column are never read.
                let iw_used = if sw == 1 {
                    p.iw.min(wq.saturating_sub(p.pl))
                } else {
                    p.iw
                };
                let mut c = 0;
                while c + 16 <= iw_used {
                    let b = _mm_loadu_si128(src.add(c).cast());
                    let v = if signed {
                        _mm512_cvtepi8_epi32(b)
                    } else {
                        _mm512_cvtepu8_epi32(b)
                    };
                    _mm512_storeu_ps(dst.add(c), _mm512_cvtepi32_ps(_mm512_sub_epi32(v, zxv)));
                    c += 16;
                }
                if c < iw_used {
                    // The tail through a masked load (no read past the plane) and a
                    // masked store.
                    let rest = iw_used - c;
                    let m: __mmask16 = (1u16 << rest) - 1;
                    let b = _mm_maskz_loadu_epi8(m, src.add(c).cast());
                    let v = if signed {
                        _mm512_cvtepi8_epi32(b)
                    } else {
                        _mm512_cvtepu8_epi32(b)
                    };
                    _mm512_mask_storeu_ps(
                        dst.add(c),
                        m,
                        _mm512_cvtepi32_ps(_mm512_sub_epi32(v, zxv)),
                    );
                }
                if sw == 1 {
                    // Built in place.
                } else if sw == 2 {
                    let even =
                        _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
                    let odd =
                        _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
                    let ph1 = ph0.add(plen);
                    let mut t = 0;
                    while t + 16 <= wq {
                        let a = _mm512_loadu_ps(row.add(2 * t));
                        let b = _mm512_loadu_ps(row.add(2 * t + 16));
                        _mm512_storeu_ps(ph0.add(t), _mm512_permutex2var_ps(a, even, b));
                        _mm512_storeu_ps(ph1.add(t), _mm512_permutex2var_ps(a, odd, b));
                        t += 16;
                    }
                    if t < wq {
                        // Reads stay in the row (row_len ≥ 2·wq rounded up to 32).
                        let m: __mmask16 = (1u16 << (wq - t)) - 1;
                        let a = _mm512_loadu_ps(row.add(2 * t));
                        let b = _mm512_loadu_ps(row.add(2 * t + 16));
                        _mm512_mask_storeu_ps(ph0.add(t), m, _mm512_permutex2var_ps(a, even, b));
                        _mm512_mask_storeu_ps(ph1.add(t), m, _mm512_permutex2var_ps(a, odd, b));
                    }
                } else {
                    for qx in 0..sw {
                        let ph = ph0.add(qx * plen);
                        for t in 0..wq {
                            *ph.add(t) = *row.add(sw * t + qx);
                        }
                    }
                }
            }
            // Per kernel column: its offset in a phase row (phase plane of the column
            // phase plus the column shift); per kernel row, likewise. A tap's flat
            // offset is their sum. (Plain stack arrays: `applies` bounds kw.)
            let mut xpart = [0usize; super::MAX_KW];
            let mut ox = 0;
            let (mut qx, mut bx) = (0usize, 0usize);
            for xp in xpart.iter_mut().take(p.kw) {
                *xp = qx * plen + bx;
                // Next column tap: ox += dw, tracked as (ox % sw, ox / sw).
                ox += p.dw;
                qx += p.dw;
                while qx >= sw {
                    qx -= sw;
                    bx += 1;
                }
            }
            let _ = ox;
            let xpart = &xpart[..p.kw];
            let flat_len = p.flat_len();
            let mut i = 0;
            while i < flat_len {
                let mut acc = [_mm512_setzero_ps(); 4];
                let base = scratch.add(i);
                let (mut qy, mut by) = (0usize, 0usize);
                for ky in 0..p.kh {
                    let rowb = base.add(qy * sw * plen + by * wq);
                    let wrow = w.add(ky * p.kw);
                    for (kx, &xo) in xpart.iter().enumerate() {
                        let wv = _mm512_set1_ps(*wrow.add(kx));
                        let s = rowb.add(xo);
                        for (j, a) in acc.iter_mut().enumerate() {
                            *a = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s.add(16 * j)), *a);
                        }
                    }
                    qy += p.dh;
                    while qy >= sh {
                        qy -= sh;
                        by += 1;
                    }
                }
                for (j, a) in acc.iter().enumerate() {
                    _mm512_storeu_ps(flat.add(i + 16 * j), *a);
                }
                i += super::BLOCK;
            }
            // Keep the ow real columns of each flat row, as i32 (exact integers).
            for oy in 0..p.oh {
                let src = flat.add(oy * wq);
                let dst = out.add(oy * p.ow);
                let mut c = 0;
                while c + 16 <= p.ow {
                    let v = _mm512_cvtps_epi32(_mm512_loadu_ps(src.add(c)));
                    _mm512_storeu_si512(dst.add(c).cast(), v);
                    c += 16;
                }
                if c < p.ow {
                    let m: __mmask16 = (1u16 << (p.ow - c)) - 1;
                    let v = _mm512_cvtps_epi32(_mm512_maskz_loadu_ps(m, src.add(c)));
                    _mm512_mask_storeu_epi32(dst.add(c).cast(), m, v);
                }
            }
        }
    }

    /// The C-ABI entry for `count` output channels `oc0..oc0 + count` of one image:
    /// output channel `oc` reads input plane `oc / mult` of `x` (planes `ih·iw` bytes
    /// apart), its weights are at `w + (oc - oc0)·kh·kw`, its sums go to `out + (oc -
    /// oc0)·oh·ow`; the scratch is reused per channel. One call per group of small
    /// planes instead of one per plane.
    #[allow(clippy::too_many_arguments)]
    pub(crate) extern "C" fn planes512_entry(
        params: *const i64,
        x: *const u8,
        w: *const f32,
        out: *mut i32,
        scratch: *mut f32,
        oc0: usize,
        count: usize,
        mult: usize,
    ) {
        // SAFETY: `params` points at PARAMS i64 (contract).
        let v = unsafe { std::slice::from_raw_parts(params, super::PARAMS) };
        let (isz, k, osz) = (
            (v[0].max(0) * v[1].max(0)) as usize,
            (v[2].max(0) * v[3].max(0)) as usize,
            (v[10].max(0) * v[11].max(0)) as usize,
        );
        let mult = mult.max(1);
        for j in 0..count {
            let ic = (oc0 + j) / mult;
            // SAFETY: the caller's buffers hold these planes (contract above).
            let (xp, wp, op) = unsafe { (x.add(ic * isz), w.add(j * k), out.add(j * osz)) };
            plane512_entry(params, xp, wp, op, scratch);
        }
    }

    /// The C-ABI entry (see the module contract).
    pub(crate) extern "C" fn plane512_entry(
        params: *const i64,
        x: *const u8,
        w: *const f32,
        out: *mut i32,
        scratch: *mut f32,
    ) {
        // SAFETY: `params` points at PARAMS i64 (contract).
        let v = unsafe { std::slice::from_raw_parts(params, super::PARAMS) };
        let p = Plane::from_params(v);
        if !super::applies(&p) || p.oh == 0 || p.ow == 0 {
            return;
        }
        // SAFETY: only handed out by `dw_plane` after AVX-512F/BW/VL were detected; the
        // generated code passes buffers satisfying the module contract.
        unsafe { plane512(&p, v[12] as i32, v[13] != 0, x, w, out, scratch) }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    fn check(p: Plane, signed: bool, zx: i32) {
        if !(std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl"))
        {
            return;
        }
        let mut s = 0x1234_5678u32;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        let x: Vec<u8> = (0..p.ih * p.iw).map(|_| next() as u8).collect();
        let w: Vec<f32> = (0..p.kh * p.kw)
            .map(|_| (next() % 511) as f32 - 255.0)
            .collect();
        let want = reference(&p, &x, signed, zx, &w);
        let mut got = vec![0x5a5a_5a5ai32; p.oh * p.ow + 1];
        let mut scratch = vec![0f32; scratch_bytes(&p) / 4];
        let params = p.params(zx, signed);
        x86::plane512_entry(
            params.as_ptr(),
            x.as_ptr(),
            w.as_ptr(),
            got.as_mut_ptr(),
            scratch.as_mut_ptr(),
        );
        assert_eq!(&got[..p.oh * p.ow], &want[..], "{p:?}");
        assert_eq!(got[p.oh * p.ow], 0x5a5a_5a5a, "wrote past the plane: {p:?}");
    }

    use super::testing::geo as plane;

    #[test]
    fn plane_matches_reference() {
        for (i, k, s, d, pad) in [
            ([7, 7], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
            ([112, 112], [3, 3], [2, 2], [1, 1], [0, 0, 1, 1]),
            ([56, 56], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
            ([13, 29], [5, 3], [2, 3], [1, 2], [2, 1, 2, 0]),
            ([1, 40], [1, 9], [1, 1], [1, 1], [0, 4, 0, 4]),
            ([9, 17], [3, 3], [3, 2], [2, 1], [0, 0, 0, 0]),
            ([15, 33], [16, 16], [1, 1], [1, 1], [8, 8, 8, 8]),
        ] {
            for (signed, zx) in [(false, 0), (false, 131), (true, -7), (true, 0)] {
                check(plane(i, k, s, d, pad), signed, zx);
            }
        }
    }
}
