//! The native epilogue of the `float` contract for a tile of i32 sums with an 8-bit
//! result: `sat(round_half_even((acc + bias) as f32 · m) + zp)` clamped to the fused
//! activation's bounds, 16 columns per step.
//!
//! **Contract.** `entry(buf, buf_stride, rows, cols, rec, bias, bias_stride, out,
//! out_stride, signed)`: row `r < rows` has `cols` sums at `buf + r·buf_stride` (i32
//! elements), the epilogue record of `linear::make_epi` at `rec + r·RECORD` bytes
//! (`[m as f32 bits, zp, lo, hi, …]`), the bias at `bias + r·bias_stride` (i32; `bias`
//! may be null: no bias) and writes `cols` bytes at `out + r·out_stride`.
//!
//! **Exactness** (against the generated vector epilogue `linear::requant_vec`, itself
//! equal to the scalar contract): the sum wraps in i32 like `iadd`; `vcvtdq2ps` and
//! `vmulps` round to nearest even like `fcvt_from_sint` and `fmul`; the product is
//! clamped to `[lo - zp, hi - zp]` *before* `vcvtps2dq` (round to nearest even, the
//! default MXCSR mode that Rust code runs in). Clamping before rounding equals
//! rounding then clamping, as the scalar contract does: rounding is monotone and the
//! bounds are integers (fixed by it), and the bounds lie far inside the i32 range, so
//! no conversion overflows (the product is never NaN: the sum is an integer and `m`
//! finite). Then `+ zp`, and a truncating narrow of values already inside the 8-bit
//! range.

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    /// The requantization parameters of 16 lanes: the multiplier `m`, the clamp bounds
    /// `lo - zp`, `hi - zp` (as f32, exact) and the zero point (per lane: one channel,
    /// or one row's value broadcast).
    #[derive(Clone, Copy)]
    pub(crate) struct Lanes {
        pub m: __m512,
        pub lo: __m512,
        pub hi: __m512,
        pub zp: __m512i,
    }

    impl Lanes {
        /// One output row's parameters in every lane, from its epilogue record.
        ///
        /// # Safety
        /// `rr` points at a record (`linear::RECORD` bytes: `[m as f32 bits, zp, lo,
        /// hi, …]`).
        #[target_feature(enable = "avx512f")]
        pub(crate) unsafe fn of_record(rr: *const i32) -> Lanes {
            // SAFETY: the caller's record.
            let (m, zp, lo, hi) = unsafe { (*rr, *rr.add(1), *rr.add(2), *rr.add(3)) };
            Lanes {
                m: _mm512_set1_ps(f32::from_bits(m as u32)),
                lo: _mm512_set1_ps((lo - zp) as f32),
                hi: _mm512_set1_ps((hi - zp) as f32),
                zp: _mm512_set1_epi32(zp),
            }
        }
    }

    /// 16 biased sums to clamped results, the module's formula lane by lane: `f32 ·
    /// m`, clamp to `[lo - zp, hi - zp]`, round half to even, `+ zp`.
    #[target_feature(enable = "avx512f")]
    pub(crate) fn requant16(s: __m512i, l: &Lanes) -> __m512i {
        let f = _mm512_mul_ps(_mm512_cvtepi32_ps(s), l.m);
        let f = _mm512_min_ps(_mm512_max_ps(f, l.lo), l.hi);
        _mm512_add_epi32(_mm512_cvtps_epi32(f), l.zp)
    }

    /// # Safety
    /// The CPU has AVX-512F/BW/VL; the pointers satisfy the module contract.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile512(
        buf: *const i32,
        buf_stride: usize,
        rows: usize,
        cols: usize,
        rec: *const i32,
        bias: *const i32,
        bias_stride: usize,
        out: *mut u8,
        out_stride: usize,
    ) {
        let rec_words = crate::linear::RECORD / 4;
        // SAFETY: every access is inside the rows and columns the contract sizes.
        unsafe {
            for r in 0..rows {
                let lanes = Lanes::of_record(rec.add(r * rec_words));
                let b = if bias.is_null() {
                    _mm512_setzero_si512()
                } else {
                    _mm512_set1_epi32(*bias.add(r * bias_stride))
                };
                let src = buf.add(r * buf_stride);
                let dst = out.add(r * out_stride);
                let mut c = 0;
                while c < cols {
                    let n = (cols - c).min(16);
                    let mask: __mmask16 = if n == 16 { 0xffff } else { (1u16 << n) - 1 };
                    let acc = _mm512_maskz_loadu_epi32(mask, src.add(c));
                    let i = requant16(_mm512_add_epi32(acc, b), &lanes);
                    _mm_mask_storeu_epi8(dst.add(c).cast(), mask, _mm512_cvtepi32_epi8(i));
                    c += 16;
                }
            }
        }
    }

    /// The C-ABI entry (see the module contract).
    #[allow(clippy::too_many_arguments)]
    pub(crate) extern "C" fn entry(
        buf: *const i32,
        buf_stride: usize,
        rows: usize,
        cols: usize,
        rec: *const i32,
        bias: *const i32,
        bias_stride: usize,
        out: *mut u8,
        out_stride: usize,
    ) {
        // SAFETY: only handed out by `kernels::requant_tile` after AVX-512F/BW/VL
        // were detected; the generated code passes buffers satisfying the contract.
        unsafe {
            tile512(
                buf,
                buf_stride,
                rows,
                cols,
                rec,
                bias,
                bias_stride,
                out,
                out_stride,
            )
        }
    }
}
