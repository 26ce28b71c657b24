//! The native 2-D max pool of 8-bit quantized tensors whose input and result share
//! their quantization parameters.
//!
//! **Why raw bytes.** With equal parameters and a positive scale, dequantization is
//! strictly increasing and quantizing a dequantized code gives the code back (the
//! real `(q - zp)·s`, divided by `s` and rounded, is within an ulp of the integer
//! `q - zp`, |q - zp| ≤ 255). So the interpreter's "dequantize, take the first
//! maximum, quantize" equals the maximum of the raw codes, compared as u8 or i8; an
//! empty window (only padding taps) is real 0, the zero point.
//!
//! **Contract.** `entry(p, x, y)` with `p` at [`PARAMS`] i64
//! `[nc, ih, iw, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, signed, zp]`, `x` at
//! `nc · ih · iw` bytes, `y` at `nc · oh · ow` bytes.

/// Values in the parameter block.
pub(crate) const PARAMS: usize = 15;

/// The C-ABI entry (see the module contract).
pub(crate) extern "C" fn entry(params: *const i64, x: *const u8, y: *mut u8) {
    // SAFETY: `params` points at PARAMS i64 (contract).
    let v = unsafe { std::slice::from_raw_parts(params, PARAMS) };
    let u = |i: usize| v[i].max(0) as usize;
    let (nc, ih, iw, kh, kw) = (u(0), u(1), u(2), u(3), u(4));
    let (sh, sw, dh, dw, pt, pl, oh, ow) = (u(5), u(6), u(7), u(8), u(9), u(10), u(11), u(12));
    let signed = v[13] != 0;
    let zp = v[14] as u8;
    // SAFETY: the contract sizes both buffers.
    let (x, y) = unsafe {
        (
            std::slice::from_raw_parts(x, nc * ih * iw),
            std::slice::from_raw_parts_mut(y, nc * oh * ow),
        )
    };
    #[cfg(target_arch = "x86_64")]
    if kh == 3
        && kw == 3
        && sh == 2
        && sw == 2
        && dh == 1
        && dw == 1
        && s2k3::fits(ih, pt, oh)
        && s2k3::fits(iw, pl, ow)
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vbmi")
    {
        let g = s2k3::Geom {
            nc,
            ih,
            iw,
            pt,
            pl,
            oh,
            ow,
        };
        // SAFETY: the features were detected just above.
        unsafe {
            if signed {
                s2k3::pool::<true>(x, y, &g);
            } else {
                s2k3::pool::<false>(x, y, &g);
            }
        }
        return;
    }
    // Signed codes compare as unsigned after flipping the sign bit.
    let flip = if signed { 0x80u8 } else { 0 };
    // The valid tap range [lo, hi) of output position o along one dim.
    let range = |o: usize, s: usize, d: usize, k: usize, pad: usize, lim: usize| {
        let start = (o * s) as isize - pad as isize;
        let d = d as isize;
        let mut lo = 0isize;
        while lo < k as isize && start + lo * d < 0 {
            lo += 1;
        }
        let mut hi = k as isize;
        while hi > lo && start + (hi - 1) * d >= lim as isize {
            hi -= 1;
        }
        (start, lo as usize, hi as usize)
    };
    // Per output row: the column-wise maximum over the row's valid taps (a plain
    // loop over contiguous bytes, which the compiler vectorizes), then per output the
    // maximum of that row at the valid column taps.
    let mut tmp = vec![0u8; iw];
    // Per output column: the first tap's input column and its valid taps, computed
    // once for all rows and channels.
    let cols: Vec<(isize, usize, usize)> =
        (0..ow).map(|ox| range(ox, sw, dw, kw, pl, iw)).collect();
    // The columns whose taps are all valid form one run `[a, b)` (validity is
    // monotone in ox at each end).
    let full = |c: &(isize, usize, usize)| c.1 == 0 && c.2 == kw && kw > 0;
    let interior = match cols.iter().position(full) {
        Some(a) => (a, a + cols[a..].iter().take_while(|c| full(c)).count()),
        None => (0, 0),
    };
    for c in 0..nc {
        let xp = &x[c * ih * iw..(c + 1) * ih * iw];
        let yp = &mut y[c * oh * ow..(c + 1) * oh * ow];
        for oy in 0..oh {
            let (y0, ky0, ky1) = range(oy, sh, dh, kh, pt, ih);
            let yrow = &mut yp[oy * ow..(oy + 1) * ow];
            if ky0 >= ky1 {
                yrow.fill(zp);
                continue;
            }
            tmp.fill(0);
            for ky in ky0..ky1 {
                let r = (y0 + (ky * dh) as isize) as usize;
                let src = &xp[r * iw..(r + 1) * iw];
                for (t, &b) in tmp.iter_mut().zip(src) {
                    *t = (*t).max(b ^ flip);
                }
            }
            // Interior columns (every tap valid) tap by tap over the whole run, in
            // loops the compiler vectorizes (stride 1 and 2 spelled out); the edges
            // one by one.
            let (a, b) = interior;
            if a < b {
                let run = &mut yrow[a..b];
                for kx in 0..kw {
                    let base = (cols[a].0 + (kx * dw) as isize) as usize;
                    match sw {
                        1 => max_into(run, &tmp[base..base + (b - a)], kx == 0),
                        2 => max_into_s2(run, &tmp[base..base + 2 * (b - a) - 1], kx == 0),
                        _ => {
                            for (j, o) in run.iter_mut().enumerate() {
                                let v = tmp[base + j * sw];
                                *o = if kx == 0 { v } else { (*o).max(v) };
                            }
                        }
                    }
                }
                for o in run.iter_mut() {
                    *o ^= flip;
                }
            }
            for (ox, (out, &(x0, kx0, kx1))) in yrow.iter_mut().zip(&cols).enumerate() {
                if (a..b).contains(&ox) {
                    continue;
                }
                if kx0 >= kx1 {
                    *out = zp;
                    continue;
                }
                let first = (x0 + (kx0 * dw) as isize) as usize;
                let mut best = tmp[first];
                for kx in kx0 + 1..kx1 {
                    best = best.max(tmp[first + (kx - kx0) * dw]);
                }
                *out = best ^ flip;
            }
        }
    }
}

/// `o[j] = max(o[j], v[j])` (or `v[j]` when `first`).
fn max_into(o: &mut [u8], v: &[u8], first: bool) {
    if first {
        o.copy_from_slice(&v[..o.len()]);
    } else {
        for (a, &b) in o.iter_mut().zip(v) {
            *a = (*a).max(b);
        }
    }
}

/// `o[j] = max(o[j], v[2j])` (or `v[2j]` when `first`); `v.len() ≥ 2 o.len() - 1`.
fn max_into_s2(o: &mut [u8], v: &[u8], first: bool) {
    #[cfg(target_arch = "x86_64")]
    if o.len() >= 17 && v.len() >= 2 * o.len() - 1 {
        use std::arch::x86_64::*;
        // 16 outputs per step (SSE2, part of x86-64): the even bytes of 32 loaded, as
        // the low bytes of 16-bit lanes packed; the last 16 from the 32 bytes ending at
        // the last sample, their odd bytes (recomputing a maximum is harmless).
        let n = o.len();
        let step = |at: usize, odd: bool, j: usize, o: &mut [u8]| {
            // SAFETY: 32 bytes at `at ≤ v.len() - 32` and 16 at `j ≤ n - 16`, in
            // bounds by the callers' arithmetic below.
            unsafe {
                let a = _mm_loadu_si128(v.as_ptr().add(at).cast());
                let b = _mm_loadu_si128(v.as_ptr().add(at + 16).cast());
                let (a, b) = if odd {
                    (_mm_srli_epi16::<8>(a), _mm_srli_epi16::<8>(b))
                } else {
                    let m = _mm_set1_epi16(0xff);
                    (_mm_and_si128(a, m), _mm_and_si128(b, m))
                };
                let w = _mm_packus_epi16(a, b);
                let dst = o.as_mut_ptr().add(j);
                let r = if first {
                    w
                } else {
                    _mm_max_epu8(w, _mm_loadu_si128(dst.cast()))
                };
                _mm_storeu_si128(dst.cast(), r);
            }
        };
        let mut j = 0;
        // Even steps while their 32 bytes end at or before the last sample 2(n - 1).
        while 2 * j + 31 <= 2 * (n - 1) {
            step(2 * j, false, j, o);
            j += 16;
        }
        if j < n {
            step(2 * (n - 16) - 1, true, n - 16, o);
        }
        return;
    }
    for (j, a) in o.iter_mut().enumerate() {
        let b = v[2 * j];
        *a = if first { b } else { (*a).max(b) };
    }
}

/// The 3×3 stride-2 undilated max pool with AVX-512 (BW, VBMI): per channel, the
/// horizontal 3-maximum of each needed input row (64 outputs per step, even and odd
/// bytes split by byte permutes), then per output row the maximum of its valid rows.
/// Out-of-row taps load as the type's minimum, which never wins once every window has
/// a valid tap ([`s2k3::fits`]).
#[cfg(target_arch = "x86_64")]
mod s2k3 {
    use std::arch::x86_64::*;

    pub(super) struct Geom {
        pub nc: usize,
        pub ih: usize,
        pub iw: usize,
        pub pt: usize,
        pub pl: usize,
        pub oh: usize,
        pub ow: usize,
    }

    /// Whether along one dim (input `n`, leading pad `pad`, `o` outputs) every window
    /// `[2i - pad, 2i - pad + 2]` holds a valid tap and the pad is below the kernel.
    pub(super) fn fits(n: usize, pad: usize, o: usize) -> bool {
        n >= 1 && o >= 1 && pad <= 2 && n < (1 << 40) && 2 * (o - 1) < n + pad
    }

    /// The mask of lanes `k < 64` with `0 ≤ off + k < n`.
    fn lanes(off: isize, n: usize) -> u64 {
        let lo = (-off).clamp(0, 64) as u32;
        let hi = (n as isize - off).clamp(0, 64) as u32;
        let below = |b: u32| if b >= 64 { !0u64 } else { (1u64 << b) - 1 };
        below(hi) & !below(lo)
    }

    /// The 64 bytes at `row + off`, those off the mask `k` as `fill`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn ld(row: *const u8, k: u64, off: isize, fill: __m512i) -> __m512i {
        // SAFETY: `k = lanes(off, n)` for the row's `n` bytes; masked-off lanes are not
        // accessed.
        unsafe { _mm512_mask_loadu_epi8(fill, k, row.wrapping_offset(off).cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn max<const S: bool>(a: __m512i, b: __m512i) -> __m512i {
        if S {
            _mm512_max_epi8(a, b)
        } else {
            _mm512_max_epu8(a, b)
        }
    }

    /// Pools every channel of `x` into `y` (`nc·ih·iw` and `nc·oh·ow` bytes, [`fits`]
    /// along both dims); `S` compares as i8.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub(super) fn pool<const S: bool>(x: &[u8], y: &mut [u8], g: &Geom) {
        let &Geom {
            nc,
            ih,
            iw,
            pt,
            pl,
            oh,
            ow,
        } = g;
        if x.len() < nc * ih * iw || y.len() < nc * oh * ow {
            return;
        }
        let fill = _mm512_set1_epi8(if S { i8::MIN } else { 0 });
        let ev = _mm512_set_epi8(
            126, 124, 122, 120, 118, 116, 114, 112, 110, 108, 106, 104, 102, 100, 98, 96, 94, 92,
            90, 88, 86, 84, 82, 80, 78, 76, 74, 72, 70, 68, 66, 64, 62, 60, 58, 56, 54, 52, 50, 48,
            46, 44, 42, 40, 38, 36, 34, 32, 30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2,
            0,
        );
        let od = _mm512_add_epi8(ev, _mm512_set1_epi8(1));
        // Input rows any window reaches.
        let rows = ih.min(2 * (oh - 1) + 3 - pt.min(2 * (oh - 1) + 3));
        let mut h = vec![0u8; rows * ow];
        // Per 64-output step: its first input column and the masks of its four loads
        // and its store, the same for every row.
        let steps: Vec<(isize, [u64; 5])> = (0..ow)
            .step_by(64)
            .map(|o0| {
                let base = 2 * o0 as isize - pl as isize;
                let k = [0, 64, 2, 66].map(|d| lanes(base + d, iw));
                (base, [k[0], k[1], k[2], k[3], lanes(0, ow - o0)])
            })
            .collect();
        for c in 0..nc {
            let xp = x[c * ih * iw..].as_ptr();
            for r in 0..rows {
                // SAFETY: row `r < ih` of channel `c`; loads are masked to its `iw` bytes.
                let row = unsafe { xp.add(r * iw) };
                // Rows ahead (into the next channel) to hide the fetch latency; a
                // prefetch never faults.
                let ahead = row.wrapping_add(8 * iw);
                _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(iw - 1).cast());
                let hr = &mut h[r * ow..(r + 1) * ow];
                for (st, &(base, k)) in steps.iter().enumerate() {
                    let (a, b) = (ld(row, k[0], base, fill), ld(row, k[1], base + 64, fill));
                    let (a2, b2) = (
                        ld(row, k[2], base + 2, fill),
                        ld(row, k[3], base + 66, fill),
                    );
                    let e = _mm512_permutex2var_epi8(a, ev, b);
                    let o = _mm512_permutex2var_epi8(a, od, b);
                    let e2 = _mm512_permutex2var_epi8(a2, ev, b2);
                    let m = max::<S>(max::<S>(e, o), e2);
                    // SAFETY: the store is masked to `hr`'s `ow - 64 st` bytes left.
                    unsafe {
                        _mm512_mask_storeu_epi8(hr.as_mut_ptr().add(64 * st).cast(), k[4], m)
                    };
                }
            }
            let yp = &mut y[c * oh * ow..(c + 1) * oh * ow];
            for oy in 0..oh {
                let r0 = (2 * oy).saturating_sub(pt);
                let r1 = (2 * oy + 3).saturating_sub(pt).min(rows);
                let yr = &mut yp[oy * ow..(oy + 1) * ow];
                let mut o0 = 0;
                while o0 < ow {
                    let k = lanes(0, ow - o0);
                    let mut m = fill;
                    for r in r0..r1 {
                        // SAFETY: masked to the `ow - o0` bytes left of row `r < rows`.
                        let v = unsafe {
                            _mm512_maskz_loadu_epi8(k, h.as_ptr().add(r * ow + o0).cast())
                        };
                        m = max::<S>(m, v);
                    }
                    // SAFETY: masked to the `ow - o0` bytes left of `yr`.
                    unsafe { _mm512_mask_storeu_epi8(yr.as_mut_ptr().add(o0).cast(), k, m) };
                    o0 += 64;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// Direct definition: the maximum code (as u8 or i8) over the valid taps, the zero
    /// point for an empty window.
    #[allow(clippy::too_many_arguments)]
    fn reference(x: &[u8], p: &[i64; super::PARAMS]) -> Vec<u8> {
        let u = |i: usize| p[i] as usize;
        let (nc, ih, iw, kh, kw) = (u(0), u(1), u(2), u(3), u(4));
        let (sh, sw, dh, dw, pt, pl, oh, ow) = (u(5), u(6), u(7), u(8), u(9), u(10), u(11), u(12));
        let key = |b: u8| {
            if p[13] != 0 {
                i32::from(b as i8)
            } else {
                i32::from(b)
            }
        };
        let mut y = vec![0u8; nc * oh * ow];
        for c in 0..nc {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut best: Option<u8> = None;
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let r = (oy * sh + ky * dh) as isize - pt as isize;
                            let q = (ox * sw + kx * dw) as isize - pl as isize;
                            if r < 0 || q < 0 || r >= ih as isize || q >= iw as isize {
                                continue;
                            }
                            let b = x[c * ih * iw + r as usize * iw + q as usize];
                            if best.is_none_or(|m| key(b) > key(m)) {
                                best = Some(b);
                            }
                        }
                    }
                    y[(c * oh + oy) * ow + ox] = best.unwrap_or(p[14] as u8);
                }
            }
        }
        y
    }

    #[test]
    fn matches_direct_definition() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |n: u64| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s % n
        };
        for case in 0..600 {
            // Mostly the 3×3 stride-2 shape, some others.
            let (k, st, d) = if case % 4 == 3 {
                (1 + rnd(4) as i64, 1 + rnd(3) as i64, 1 + rnd(2) as i64)
            } else {
                (3, 2, 1)
            };
            let (ih, iw) = (1 + rnd(40) as i64, 1 + rnd(150) as i64);
            let (pt, pl, pb, pr) = (rnd(3) as i64, rnd(3) as i64, rnd(3) as i64, rnd(3) as i64);
            let out = |n: i64, a: i64, b: i64| (n + a + b - d * (k - 1) - 1).div_euclid(st) + 1;
            let (oh, ow) = (out(ih, pt, pb), out(iw, pl, pr));
            if oh < 1 || ow < 1 {
                continue;
            }
            let nc = 1 + rnd(3) as i64;
            let p = [
                nc,
                ih,
                iw,
                k,
                k,
                st,
                st,
                d,
                d,
                pt,
                pl,
                oh,
                ow,
                (case % 2) as i64,
                rnd(256) as i64,
            ];
            let x: Vec<u8> = (0..nc * ih * iw).map(|_| rnd(256) as u8).collect();
            let mut y = vec![0u8; (nc * oh * ow) as usize];
            super::entry(p.as_ptr(), x.as_ptr(), y.as_mut_ptr());
            assert_eq!(y, reference(&x, &p), "params {p:?}");
        }
    }
}
