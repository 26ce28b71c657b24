//! The native matrix-vector kernel of quantized gemm with one row of activations (the
//! classifier head): the pair-form weight rows times one activation vector.
//!
//! **Contract.** `entry(a, row, x, rows, out)`: `a` at `rows · row` i16 (row `r` is
//! the weights `w - zw` of output `r`, in the pair form's packing, which is plain
//! row-major with `row = 2·kp`), `x` at `row` i16 (`x - zx`, zero past `k`), `out` at
//! `rows` i32. It sets `out[r] = Σ_i a[r·row + i] · x[i]`, wrapping in i32.
//!
//! **Exactness.** Every operand lies in `[-255, 255]`: `vpmaddwd` multiplies i16 pairs
//! exactly and adds each pair into i32 exactly (|sum| ≤ 2 · 65025), and `vpaddd`
//! wraps like the interpreter's i32 sum; order is immaterial modulo 2^32.

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU has AVX-512F and AVX-512BW; the pointers satisfy the module contract.
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn gemv512(a: *const i16, row: usize, x: *const i16, rows: usize, out: *mut i32) {
        let full = row / 32;
        let rest = row % 32;
        let mask: __mmask32 = if rest == 0 { 0 } else { (1u32 << rest) - 1 };
        // SAFETY: loads at `r·row + 32c` (c < full) and the masked tail stay inside
        // row `r` of `a` and inside `x`; `out` has `rows` entries.
        unsafe {
            for r in 0..rows {
                let ar = a.add(r * row);
                let mut acc0 = _mm512_setzero_si512();
                let mut acc1 = _mm512_setzero_si512();
                let mut c = 0;
                while c + 2 <= full {
                    let x0 = _mm512_loadu_si512(x.add(32 * c).cast());
                    let x1 = _mm512_loadu_si512(x.add(32 * c + 32).cast());
                    let a0 = _mm512_loadu_si512(ar.add(32 * c).cast());
                    let a1 = _mm512_loadu_si512(ar.add(32 * c + 32).cast());
                    acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(a0, x0));
                    acc1 = _mm512_add_epi32(acc1, _mm512_madd_epi16(a1, x1));
                    c += 2;
                }
                if c < full {
                    let x0 = _mm512_loadu_si512(x.add(32 * c).cast());
                    let a0 = _mm512_loadu_si512(ar.add(32 * c).cast());
                    acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(a0, x0));
                }
                if rest > 0 {
                    let x0 = _mm512_maskz_loadu_epi16(mask, x.add(32 * full));
                    let a0 = _mm512_maskz_loadu_epi16(mask, ar.add(32 * full));
                    acc1 = _mm512_add_epi32(acc1, _mm512_madd_epi16(a0, x0));
                }
                *out.add(r) = _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
            }
        }
    }

    /// # Safety
    /// The CPU has AVX-512F/BW/VNNI; the pointers satisfy the quad contract.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn quad512(a: *const u8, row: usize, x: *const u8, rows: usize, out: *mut i32) {
        let full = row / 64;
        let rest = row % 64;
        let mask: __mmask64 = if rest == 0 { 0 } else { (1u64 << rest) - 1 };
        // SAFETY: loads at `r·row + 64c` (c < full) and the masked tail stay inside
        // row `r` of `a` and inside `x`; `out` has `rows` entries.
        unsafe {
            for r in 0..rows {
                let ar = a.add(r * row);
                let mut acc0 = _mm512_setzero_si512();
                let mut acc1 = _mm512_setzero_si512();
                let mut c = 0;
                while c + 2 <= full {
                    let x0 = _mm512_loadu_si512(x.add(64 * c).cast());
                    let x1 = _mm512_loadu_si512(x.add(64 * c + 64).cast());
                    let a0 = _mm512_loadu_si512(ar.add(64 * c).cast());
                    let a1 = _mm512_loadu_si512(ar.add(64 * c + 64).cast());
                    acc0 = _mm512_dpbusd_epi32(acc0, x0, a0);
                    acc1 = _mm512_dpbusd_epi32(acc1, x1, a1);
                    c += 2;
                }
                if c < full {
                    let x0 = _mm512_loadu_si512(x.add(64 * c).cast());
                    let a0 = _mm512_loadu_si512(ar.add(64 * c).cast());
                    acc0 = _mm512_dpbusd_epi32(acc0, x0, a0);
                }
                if rest > 0 {
                    let x0 = _mm512_maskz_loadu_epi8(mask, x.add(64 * full).cast());
                    let a0 = _mm512_maskz_loadu_epi8(mask, ar.add(64 * full).cast());
                    acc1 = _mm512_dpbusd_epi32(acc1, x0, a0);
                }
                *out.add(r) = _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
            }
        }
    }

    /// The C-ABI entry of the quad form: `a` holds `rows` rows of `row` i8 weights
    /// `w - zw`, `x` holds `row` u8 activations (shifted as the quad form of
    /// `linear::quad_setup` says), `out[r] = Σ_i a[r·row + i] · x[i]` wrapping in i32.
    /// **Exactness:** as the quad-tile kernel's (`vpdpbusd` is exact and wraps).
    pub(crate) extern "C" fn quad_entry(
        a: *const u8,
        row: usize,
        x: *const u8,
        rows: usize,
        out: *mut i32,
    ) {
        // SAFETY: only handed out by `kernels::gemv_quad` after AVX-512F/BW/VNNI were
        // detected; the generated code passes buffers satisfying the contract.
        unsafe { quad512(a, row, x, rows, out) }
    }

    /// The C-ABI entry (see the module contract).
    pub(crate) extern "C" fn entry(
        a: *const i16,
        row: usize,
        x: *const i16,
        rows: usize,
        out: *mut i32,
    ) {
        // SAFETY: only handed out by `kernels::gemv` after AVX-512F/BW were
        // detected; the generated code passes buffers satisfying the contract.
        unsafe { gemv512(a, row, x, rows, out) }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    #[test]
    fn gemv_matches_formula() {
        if !(std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw"))
        {
            return;
        }
        let mut s = 0x9e37_79b9u32;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 511) as i16 - 255
        };
        for (rows, row) in [(1, 2), (3, 30), (7, 64), (10, 96), (5, 1282)] {
            let a: Vec<i16> = (0..rows * row).map(|_| next()).collect();
            let x: Vec<i16> = (0..row).map(|_| next()).collect();
            let want: Vec<i32> = (0..rows)
                .map(|r| {
                    (0..row)
                        .map(|i| i64::from(a[r * row + i]) * i64::from(x[i]))
                        .sum::<i64>() as i32
                })
                .collect();
            let mut got = vec![7i32; rows + 1];
            super::x86::entry(a.as_ptr(), row, x.as_ptr(), rows, got.as_mut_ptr());
            assert_eq!(&got[..rows], &want[..], "{rows}x{row}");
            assert_eq!(got[rows], 7);
        }
    }

    #[test]
    fn quad_gemv_matches_formula() {
        if !(std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni"))
        {
            return;
        }
        let mut s = 0x2545_f491u32;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        for (rows, row) in [(1, 4), (3, 60), (7, 64), (10, 192), (5, 1284)] {
            let a: Vec<u8> = (0..rows * row).map(|_| next() as u8).collect();
            let x: Vec<u8> = (0..row).map(|_| next() as u8).collect();
            let want: Vec<i32> = (0..rows)
                .map(|r| {
                    (0..row)
                        .map(|i| i64::from(a[r * row + i] as i8) * i64::from(x[i]))
                        .sum::<i64>() as i32
                })
                .collect();
            let mut got = vec![7i32; rows + 1];
            super::x86::quad_entry(a.as_ptr(), row, x.as_ptr(), rows, got.as_mut_ptr());
            assert_eq!(&got[..rows], &want[..], "{rows}x{row}");
            assert_eq!(got[rows], 7);
        }
    }
}
