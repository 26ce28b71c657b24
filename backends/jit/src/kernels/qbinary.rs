//! The native same-shape add/sub/mul of 8-bit quantized tensors (the residual adds),
//! 16 elements per step with AVX-512, the tail masked.
//!
//! **Contract.** `entry(p, a, b, y, n)`: `p` at [`PARAMS`] u32 (`[sa, za, sb, zb, sy,
//! zy, op, act, lo, hi, a_signed, b_signed, y_signed]`; scales and clip bounds as f32
//! bits, zero points as i32 bits; `op` 0 add, 1 sub, 2 mul, 3 the `float` contract's
//! fused add ([`fused_add_params`]); `act` 0 none, 1 relu, 2 clip to `[lo, hi]`), `a`,
//! `b` at `n` operand bytes, `y` at `n` result bytes.
//!
//! **Exactness.** Lane by lane the interpreter's definition, dequantize → f32 op →
//! quantize, with the same operations in the same order: `(q - zp)` exact in i32,
//! converted exactly, times the scale (one rounding); the op (one rounding); the
//! activation as max/min — the operands are finite, where max/min differ from the
//! interpreter's select only in the sign of a zero, which quantizes alike; division by
//! the result scale (one rounding, `vdivps` is IEEE); round half to even
//! (`vrndscaleps`); then `sat(r + zp)`: `r` is first clamped to ±2^24, which changes no
//! 8-bit result and keeps the conversion in range.

/// Values in the parameter block.
pub(crate) const PARAMS: usize = 13;

/// The parameter block.
#[allow(clippy::too_many_arguments)]
pub(crate) fn params(
    (sa, za, a_signed): (f32, i32, bool),
    (sb, zb, b_signed): (f32, i32, bool),
    (sy, zy, y_signed): (f32, i32, bool),
    op: u32,
    act: u32,
    (lo, hi): (f32, f32),
) -> [u32; PARAMS] {
    [
        sa.to_bits(),
        za as u32,
        sb.to_bits(),
        zb as u32,
        sy.to_bits(),
        zy as u32,
        op,
        act,
        lo.to_bits(),
        hi.to_bits(),
        u32::from(a_signed),
        u32::from(b_signed),
        u32::from(y_signed),
    ]
}

/// The parameter block of the `float` contract's fused add (`op` 3): `[x_ratio, 0,
/// y_ratio, 0, fixed, 0, 3, 0, lo, hi, s, s, s]` with the code bounds as i32 bits; the
/// operands are not swapped (same shape).
pub(crate) fn fused_add_params(f: &qc_qmath::FusedAdd, signed: bool) -> [u32; PARAMS] {
    let s = u32::from(signed);
    [
        f.x_ratio.to_bits(),
        0,
        f.y_ratio.to_bits(),
        0,
        f.fixed.to_bits(),
        0,
        3,
        0,
        f.lo as u32,
        f.hi as u32,
        s,
        s,
        s,
    ]
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    /// The `m` lanes of 16 codes at `ptr`, widened to i32 (a function, not a closure:
    /// closures do not inherit target features and may stay out of line).
    ///
    /// # Safety
    /// The CPU has AVX-512F/BW/VL; the masked bytes at `ptr` are readable.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[inline]
    unsafe fn load16(ptr: *const u8, m: __mmask16, signed: bool) -> __m512i {
        // SAFETY: the caller's bound; masked lanes are not read.
        let v = unsafe { _mm_maskz_loadu_epi8(m, ptr.cast()) };
        if signed {
            _mm512_cvtepi8_epi32(v)
        } else {
            _mm512_cvtepu8_epi32(v)
        }
    }

    /// # Safety
    /// The CPU has AVX-512F/BW/VL; the pointers satisfy the module contract.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn run(p: &[u32; super::PARAMS], a: *const u8, b: *const u8, y: *mut u8, n: usize) {
        let f = |i: usize| _mm512_set1_ps(f32::from_bits(p[i]));
        let z = |i: usize| _mm512_set1_epi32(p[i] as i32);
        let (sa, za, sb, zb, sy, zy) = (f(0), z(1), f(2), z(3), f(4), z(5));
        let (op, act) = (p[6], p[7]);
        let (lo, hi) = (f(8), f(9));
        let (a_signed, b_signed, y_signed) = (p[10] != 0, p[11] != 0, p[12] != 0);
        let (qmin, qmax) = if y_signed {
            (_mm512_set1_epi32(-128), _mm512_set1_epi32(127))
        } else {
            (_mm512_set1_epi32(0), _mm512_set1_epi32(255))
        };
        let lim = _mm512_set1_ps(16_777_216.0);
        let nlim = _mm512_set1_ps(-16_777_216.0);
        let zero = _mm512_setzero_ps();

        if op == 3 {
            // SAFETY: the same contract, the fused add's parameter block.
            unsafe { fused_add(p, a, b, y, n) };
            return;
        }
        let mut i = 0;
        while i < n {
            let cnt = (n - i).min(16);
            let m: __mmask16 = if cnt == 16 { 0xffff } else { (1u16 << cnt) - 1 };
            // SAFETY: offsets i..i + cnt lie inside the n elements.
            let (pa, pb, py) = unsafe { (a.add(i), b.add(i), y.add(i)) };
            // SAFETY: masked lanes are not read; the rest lie inside the n bytes.
            let (va, vb) = unsafe { (load16(pa, m, a_signed), load16(pb, m, b_signed)) };
            let fa = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(va, za)), sa);
            let fb = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(vb, zb)), sb);
            let mut v = match op {
                1 => _mm512_sub_ps(fa, fb),
                2 => _mm512_mul_ps(fa, fb),
                _ => _mm512_add_ps(fa, fb),
            };
            v = match act {
                1 => _mm512_max_ps(v, zero),
                2 => _mm512_min_ps(_mm512_max_ps(v, lo), hi),
                _ => v,
            };
            let d = _mm512_div_ps(v, sy);
            let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(d);
            let r = _mm512_min_ps(_mm512_max_ps(r, nlim), lim);
            let q = _mm512_add_epi32(_mm512_cvtps_epi32(r), zy);
            let q = _mm512_min_epi32(_mm512_max_epi32(q, qmin), qmax);
            // SAFETY: masked store of the cnt elements at i.
            unsafe { _mm_mask_storeu_epi8(py.cast(), m, _mm512_cvtepi32_epi8(q)) };
            i += 16;
        }
    }

    /// `FusedAdd::apply` lane by lane: codes convert exactly, two `vfmadd` (one
    /// rounding each, as `f32::mul_add`), `vcvtps2dq` rounding half to even with NaN
    /// and out-of-range lanes giving `i32::MIN` (as `FusedAdd::finish`), the clamp.
    ///
    /// # Safety
    /// As [`run`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn fused_add(
        p: &[u32; super::PARAMS],
        a: *const u8,
        b: *const u8,
        y: *mut u8,
        n: usize,
    ) {
        let f = |i: usize| _mm512_set1_ps(f32::from_bits(p[i]));
        let (xr, yr, fixed) = (f(0), f(2), f(4));
        let (lo, hi) = (
            _mm512_set1_epi32(p[8] as i32),
            _mm512_set1_epi32(p[9] as i32),
        );
        let signed = p[12] != 0;

        let mut i = 0;
        while i < n {
            let cnt = (n - i).min(16);
            let m: __mmask16 = if cnt == 16 { 0xffff } else { (1u16 << cnt) - 1 };
            // SAFETY: offsets i..i + cnt lie inside the n elements.
            let (pa, pb, py) = unsafe { (a.add(i), b.add(i), y.add(i)) };
            // SAFETY: masked lanes are not read; the rest lie inside the n bytes.
            let (va, vb) = unsafe { (load16(pa, m, signed), load16(pb, m, signed)) };
            let (fa, fb) = (_mm512_cvtepi32_ps(va), _mm512_cvtepi32_ps(vb));
            let t = _mm512_fmadd_ps(fa, xr, _mm512_fmadd_ps(fb, yr, fixed));
            let r =
                _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
            let q = _mm512_min_epi32(_mm512_max_epi32(r, lo), hi);
            // SAFETY: masked store of the cnt elements at i.
            unsafe { _mm_mask_storeu_epi8(py.cast(), m, _mm512_cvtepi32_epi8(q)) };
            i += 16;
        }
    }

    /// The C-ABI entry (see the module contract).
    pub(crate) extern "C" fn entry(
        p: *const u32,
        a: *const u8,
        b: *const u8,
        y: *mut u8,
        n: usize,
    ) {
        // SAFETY: `p` points at PARAMS u32 (contract).
        let p: &[u32; super::PARAMS] = unsafe { &*p.cast() };
        // SAFETY: only handed out by `kernels::qbinary` after AVX-512F/BW/VL were
        // detected; the generated code passes buffers satisfying the contract.
        unsafe { run(p, a, b, y, n) }
    }
}
