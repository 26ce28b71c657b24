//! The native f32 → 8-bit quantize (a model's input boundary), 16 elements per step.
//!
//! **Contract.** `entry(p, x, y, n)`: `p` at three u32 `[scale as f32 bits, zp as i32
//! bits, signed]`, `x` at `n` f32, `y` at `n` bytes.
//!
//! **Exactness** (against `qc_qmath::quantize`, the interpreter's): division by the
//! scale (`vdivps`, IEEE), round half to even (`vrndscaleps`), then `sat(r + zp)`: a
//! NaN becomes 0 first (as the scalar saturating conversion makes it), `r` is clamped
//! to ±2^24 (no 8-bit result changes; infinities saturate either way), converted, the
//! zero point added and the sum clamped to the storage range.

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU has AVX-512F/BW/VL; the pointers satisfy the module contract.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn run(p: &[u32; 3], x: *const f32, y: *mut u8, n: usize) {
        let s = _mm512_set1_ps(f32::from_bits(p[0]));
        let zp = _mm512_set1_epi32(p[1] as i32);
        let (qmin, qmax) = if p[2] != 0 {
            (_mm512_set1_epi32(-128), _mm512_set1_epi32(127))
        } else {
            (_mm512_set1_epi32(0), _mm512_set1_epi32(255))
        };
        let lim = _mm512_set1_ps(16_777_216.0);
        let nlim = _mm512_set1_ps(-16_777_216.0);
        let zero = _mm512_setzero_ps();
        let mut i = 0;
        while i < n {
            let cnt = (n - i).min(16);
            let m: __mmask16 = if cnt == 16 { 0xffff } else { (1u16 << cnt) - 1 };
            // SAFETY: masked lanes are not touched; the rest lie inside the n elements.
            let v = unsafe { _mm512_maskz_loadu_ps(m, x.add(i)) };
            let d = _mm512_div_ps(v, s);
            let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(d);
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(r, r);
            let r = _mm512_mask_mov_ps(r, nan, zero);
            let r = _mm512_min_ps(_mm512_max_ps(r, nlim), lim);
            let q = _mm512_add_epi32(_mm512_cvtps_epi32(r), zp);
            let q = _mm512_min_epi32(_mm512_max_epi32(q, qmin), qmax);
            // SAFETY: as the load.
            unsafe { _mm_mask_storeu_epi8(y.add(i).cast(), m, _mm512_cvtepi32_epi8(q)) };
            i += 16;
        }
    }

    /// The C-ABI entry (see the module contract).
    pub(crate) extern "C" fn entry(p: *const u32, x: *const f32, y: *mut u8, n: usize) {
        // SAFETY: `p` points at three u32 (contract).
        let p: &[u32; 3] = unsafe { &*p.cast() };
        // SAFETY: only handed out by `kernels::quantize` after AVX-512F/BW/VL were
        // detected; the generated code passes buffers satisfying the contract.
        unsafe { run(p, x, y, n) }
    }
}
