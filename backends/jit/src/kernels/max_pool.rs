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
