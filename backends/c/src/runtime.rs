//! The C helper functions and kernels the emitter can put into a model's `.c` file.
//!
//! Every piece is a `static` C99 function (or a `typedef`) that depends only on
//! `<stdint.h>`/`<stddef.h>`; the emitter includes a piece only when a node needs it
//! ([`Piece::deps`] pulls in what it calls), so a model's `.text` holds only the
//! kernels it uses. Kernels are shared and parameterized by a `static const` struct
//! per node, not specialized per node, to keep the code small on microcontrollers.
//!
//! **Invariants.**
//! - Integer pieces use only integer arithmetic; the float pieces (`Quant*`, `Dequant*`,
//!   `RqFloat`) are emitted only where the model or the `float` contract computes in f32.
//! - Requantization reproduces `qc_qmath::Requantizer::requantize` bit for bit for
//!   the contract the piece is named after (`RqFixed`: gemmlowp double rounding,
//!   `RqSingle`: one 64-bit round-half-up, `RqFloat`: f32 product rounded half to even).
//! - `F32Add`/`F32Div` are integer-only IEEE-754 binary32 operations (round to nearest,
//!   ties to even) on finite normal or zero operands whose results are normal or zero;
//!   the emitter checks at compile time that every value they can see is of that kind.
//!   They exist so that ops the interpreter defines through f32 arithmetic (average
//!   pool, softmax) are reproduced bit for bit without a floating-point unit.
//! - Signed overflow never happens in C: wrapping sums are done in `uint32_t`, and
//!   negative values are never left-shifted (multiplied by a power of two instead).

/// A named piece of C runtime code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Piece {
    Rne,
    RqFixed,
    RqSingle,
    RqFloat,
    Thresh32,
    Thresh64,
    Round24,
    F32Key,
    F32Add,
    F32Div,
    ConvParams,
    GemmParams,
    PoolParams,
    EwParams,
    SoftmaxParams,
    FusedAdd,
    FusedSoftmax,
    FusedMean,
    Print,
    Smlad,
}

impl Piece {
    /// Pieces this one calls.
    pub(crate) fn deps(self) -> &'static [Piece] {
        match self {
            Piece::RqFloat => &[Piece::Rne],
            Piece::F32Div | Piece::F32Add => &[Piece::F32Key],
            Piece::FusedAdd => &[Piece::Rne, Piece::EwParams],
            Piece::FusedMean => &[Piece::Rne],
            _ => &[],
        }
    }

    pub(crate) fn source(self) -> &'static str {
        match self {
            Piece::RqFixed => RQ_FIXED,
            Piece::RqSingle => RQ_SINGLE,
            Piece::RqFloat => RQ_FLOAT,
            Piece::Rne => RNE,
            Piece::Thresh32 => THRESH32,
            Piece::Thresh64 => THRESH64,
            Piece::Round24 => ROUND24,
            Piece::F32Key => F32_KEY,
            Piece::F32Add => F32_ADD,
            Piece::F32Div => F32_DIV,
            Piece::ConvParams => CONV_PARAMS,
            Piece::GemmParams => GEMM_PARAMS,
            Piece::PoolParams => POOL_PARAMS,
            Piece::EwParams => EW_PARAMS,
            Piece::SoftmaxParams => SOFTMAX_PARAMS,
            Piece::FusedAdd => FUSED_ADD,
            Piece::FusedSoftmax => FUSED_SOFTMAX,
            Piece::FusedMean => FUSED_MEAN,
            Piece::Print => PRINT,
            Piece::Smlad => SMLAD,
        }
    }
}

const RQ_FIXED: &str = r#"
/* The `fixed` contract: gemmlowp SaturatingRoundingDoublingHighMul, then
 * RoundingDivideByPOT (ties away from zero). m in [2^30, 2^31) or 0, shift in
 * [-31, 30]; the left shift wraps like TFLite's (done in uint32_t, no UB). Right
 * shifts of negative values are arithmetic (GCC, Clang, Arm Compiler all define it). */
static inline int64_t qc_rq(int32_t acc, int32_t m, int32_t shift)
{
    int32_t left = shift > 0 ? shift : 0;
    int32_t right = shift > 0 ? 0 : -shift;
    int32_t x = (int32_t)((uint32_t)acc << left);
    int32_t hi, fl;
    uint32_t rem, half;
    if (x == INT32_MIN && m == INT32_MIN) {
        hi = INT32_MAX;
    } else {
        hi = (int32_t)(((int64_t)x * (int64_t)m + ((int64_t)1 << 30)) >> 31);
    }
    if (right <= 0) {
        return hi;
    }
    fl = hi >> right;
    rem = (uint32_t)hi & (((uint32_t)1 << right) - 1u);
    half = (uint32_t)1 << (right - 1);
    if (rem > half || (rem == half && hi > 0)) {
        fl += 1;
    }
    return fl;
}
"#;

const RQ_SINGLE: &str = r#"
/* The `fixed-single` contract: (acc * m + 2^(s-1)) >> s with s = 31 - shift in
 * [1, 62], one round-half-up in 64 bits (arithmetic right shift). */
static inline int64_t qc_rq(int32_t acc, int32_t m, int32_t shift)
{
    int32_t s = 31 - shift;
    return ((int64_t)acc * (int64_t)m + ((int64_t)1 << (s - 1))) >> s;
}
"#;

const RNE: &str = r#"
/* Round an f32 to the nearest integer, ties to even, saturated to +-2^40 (every
 * storage type saturates long before). Adding and subtracting 1.5 * 2^23 rounds in
 * the default rounding mode; values at or beyond 2^23 are integers already. */
static int64_t qc_rne(float v)
{
    float r;
    if (v != v) {
        return 0;
    }
    if (v >= 1099511627776.0f) {
        return (int64_t)1099511627776LL;
    }
    if (v <= -1099511627776.0f) {
        return -(int64_t)1099511627776LL;
    }
    if (v >= 8388608.0f || v <= -8388608.0f) {
        return (int64_t)v;
    }
    r = (v + 12582912.0f) - 12582912.0f;
    return (int64_t)r;
}
"#;

const RQ_FLOAT: &str = r#"
/* The `float` contract: round_half_even((float)acc * m). */
static int64_t qc_rq_float(int32_t acc, float m)
{
    volatile float v = (float)acc * m;
    return qc_rne(v);
}
"#;

const THRESH32: &str = r#"
/* Number of thresholds t[0..n) (sorted ascending) that are <= key. */
static int32_t qc_thresh32(const int32_t *t, int32_t n, int32_t key)
{
    int32_t lo = 0, hi = n;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (t[mid] <= key) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}
"#;

const ROUND24: &str = r#"
/* An exact fixed-point integer rounded to 24 significant bits, ties to even: the
 * f32 rounding of the real value s * 2^l when that value is a normal f32 (the
 * emitter checks it). |s| < 2^62, so negation and the shifted result stay in range. */
static int64_t qc_round24(int64_t s)
{
    uint64_t m = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    uint64_t q, rem, half;
    int32_t sh = 0;
    while ((m >> sh) >= ((uint64_t)1 << 24)) {
        sh++;
    }
    if (sh == 0) {
        return s;
    }
    q = m >> sh;
    rem = m & (((uint64_t)1 << sh) - 1u);
    half = (uint64_t)1 << (sh - 1);
    if (rem > half || (rem == half && (q & 1u) != 0)) {
        q += 1;
    }
    m = q << sh;
    return s < 0 ? -(int64_t)m : (int64_t)m;
}
"#;

const THRESH64: &str = r#"
/* Number of thresholds t[0..n) (sorted ascending) that are <= key. */
static int32_t qc_thresh64(const int64_t *t, int32_t n, int64_t key)
{
    int32_t lo = 0, hi = n;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (t[mid] <= key) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}
"#;

const F32_KEY: &str = r#"
/* The bits of an f32 mapped to an int32 with the same order as the float values
 * (both zeros map to 0). */
static int32_t qc_f32_key(uint32_t b)
{
    return (b & 0x80000000u) ? -(int32_t)(b & 0x7fffffffu) : (int32_t)b;
}
"#;

const F32_ADD: &str = r#"
/* IEEE binary32 a + b (ties to even) on the bits of finite normal or zero operands
 * with a normal or zero result, in integers only. */
static uint32_t qc_f32_add(uint32_t a, uint32_t b)
{
    uint32_t t, ea, eb, d, sa, sb;
    uint64_t ma, mb, m, keep, rem, half;
    int32_t p, shift, e;
    if ((a & 0x7fffffffu) < (b & 0x7fffffffu)) {
        t = a; a = b; b = t;
    }
    if ((b & 0x7fffffffu) == 0) {
        /* x + 0 = x, except +0 + -0 = +0 */
        return (a & 0x7fffffffu) == 0 ? (a & b) : a;
    }
    ea = (a >> 23) & 0xffu;
    eb = (b >> 23) & 0xffu;
    sa = a >> 31;
    sb = b >> 31;
    d = ea - eb;
    ma = ((uint64_t)((a & 0x7fffffu) | 0x800000u)) << 32;
    mb = ((uint64_t)((b & 0x7fffffu) | 0x800000u)) << 32;
    if (d > 32) {
        /* bits fall off: the exact value lies strictly between two integers, and
           an odd representative keeps every rounding decision (all ties are even). */
        uint64_t tr = d >= 63 ? 0 : (mb >> d);
        m = sa == sb ? ma + tr : ma - tr - 1;
        m |= 1;
    } else {
        mb >>= d;
        m = sa == sb ? ma + mb : ma - mb;
    }
    if (m == 0) {
        return 0;
    }
    p = 63;
    while (((m >> p) & 1u) == 0) {
        p--;
    }
    shift = p - 23;
    if (shift > 0) {
        keep = m >> shift;
        rem = m - (keep << shift);
        half = (uint64_t)1 << (shift - 1);
        if (rem > half || (rem == half && (keep & 1u))) {
            keep++;
            if (keep == ((uint64_t)1 << 24)) {
                keep >>= 1;
                shift++;
            }
        }
    } else {
        keep = m << (-shift);
    }
    e = (int32_t)ea + shift - 32;
    return (sa << 31) | ((uint32_t)e << 23) | ((uint32_t)keep & 0x7fffffu);
}
"#;

const F32_DIV: &str = r#"
/* IEEE binary32 a / b (ties to even) on the bits of positive normal operands with
 * a normal result, in integers only. */
static uint32_t qc_f32_div(uint32_t a, uint32_t b)
{
    uint64_t ma = (uint64_t)((a & 0x7fffffu) | 0x800000u) << 39;
    uint64_t mb = (uint64_t)((b & 0x7fffffu) | 0x800000u);
    uint64_t q = ma / mb, r = ma - q * mb, keep, rem, half;
    int32_t p = 63, shift, e;
    q = (q << 1) | (r != 0);
    while (((q >> p) & 1u) == 0) {
        p--;
    }
    shift = p - 23;
    keep = q >> shift;
    rem = q - (keep << shift);
    half = (uint64_t)1 << (shift - 1);
    if (rem > half || (rem == half && (keep & 1u))) {
        keep++;
        if (keep == ((uint64_t)1 << 24)) {
            keep >>= 1;
            shift++;
        }
    }
    e = shift + (int32_t)((a >> 23) & 0xffu) - (int32_t)((b >> 23) & 0xffu) - 40 + 150;
    return ((uint32_t)e << 23) | ((uint32_t)keep & 0x7fffffu);
}
"#;

const CONV_PARAMS: &str = r#"
/* Geometry and epilogue of one quantized convolution (NCHW; 1-D convs have h = 1).
 * mult/shift (fixed contracts) or fmult (float contract), lo/hi (the storage range
 * intersected with the fused activation's quantized bounds) are per output channel;
 * zw is NULL when every weight zero point is 0. */
typedef struct {
    int32_t n, cin, h, w, cout, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw, group;
    int32_t zx, zy;
    const int32_t *bias;
    const int32_t *zw;
    const int32_t *mult;
    const int8_t *shift;
    const float *fmult;
    const int32_t *lo;
    const int32_t *hi;
} qc_conv_t;
"#;

const GEMM_PARAMS: &str = r#"
/* One quantized gemm Y[m, n] = sum_k (A - za)(B - zb[n]) + C; B is [k, n] or, with
 * trans_b, [n, k]; C (raw i32) has cn elements: 0 (none), 1, n or m * n. Epilogue
 * per column as in qc_conv_t. */
typedef struct {
    int32_t m, k, n, trans_a, trans_b, cn;
    int32_t za, zy;
    const int32_t *c;
    const int32_t *zb;
    const int32_t *mult;
    const int8_t *shift;
    const float *fmult;
    const int32_t *lo;
    const int32_t *hi;
} qc_gemm_t;
"#;

const POOL_PARAMS: &str = r#"
/* Pooling window geometry over NCHW planes (1-D pools have h = 1); 3-D pools add
 * a depth z (output oz, window kz, stride sz, begin pad pz, dilation dz), which is
 * 1 (window 1) otherwise. */
typedef struct {
    int32_t nc, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
    int32_t z, oz, kz, sz, pz, dz;
} qc_pool_t;
"#;

const EW_PARAMS: &str = r#"
/* A broadcasting binary elementwise op over at most 4 dims: output dims and the
 * element strides of both operands (0 along broadcast dims). */
typedef struct {
    int32_t d[4];
    int32_t sa[4];
    int32_t sb[4];
} qc_ew_t;
"#;

const SOFTMAX_PARAMS: &str = r#"
/* One quantized softmax: rows of dim elements (stride inner); deq = f32 bits of each
 * code's real value; for each code distance d, keys[start[d] .. start[d + 1]) are
 * the keys of the differences x_a - x_b that occur and exp[] their exponentials;
 * thr/nthr/base map the f32 quotient's key to the result code. */
typedef struct {
    int32_t outer, dim, inner;
    const uint32_t *deq;
    const uint16_t *start;
    const int32_t *keys;
    const uint32_t *exp;
    const int32_t *thr;
    int32_t nthr, base;
} qc_softmax_t;
"#;

const FUSED_ADD: &str = r#"
/* The float contract's fused add: ratios of the operands' scales to the result's
 * (x is the operand applied last), the constant term and the result code range. */
typedef struct {
    float xr, yr, fixed;
    int32_t lo, hi;
} qc_fadd_t;

/* The value before rounding to a code: half to even into int32 (INT32_MIN when NaN
 * or out of range), clamped to [lo, hi]. */
static int32_t qc_fadd_code(const qc_fadd_t *f, float t)
{
    int32_t i = (t >= -2147483648.0f && t < 2147483648.0f) ? (int32_t)qc_rne(t) : INT32_MIN;
    return i < f->lo ? f->lo : (i > f->hi ? f->hi : i);
}
"#;

const FUSED_SOFTMAX: &str = r#"
/* The float contract's fused softmax: rows of dim elements (stride inner); exp[k]
 * for k = row max - code; yf = floor(1 / y_scale); zy the result's zero point. */
typedef struct {
    int32_t outer, dim, inner;
    const float *exp;
    float yf;
    int32_t zy;
} qc_fsoftmax_t;

/* Round half to even at any magnitude (NaN and infinities pass through). */
static float qc_rne_f32(float v)
{
    if (!(v > -8388608.0f && v < 8388608.0f)) {
        return v;
    }
    if (v < 0.0f) {
        return -((-v + 8388608.0f) - 8388608.0f);
    }
    return (v + 8388608.0f) - 8388608.0f;
}
"#;

const FUSED_MEAN: &str = r#"
/* The float contract's fused global average: nc channels of n codes; bias = -zx * n;
 * scale = sx / (sy * n); lo/hi the result range minus the zero point zy. */
typedef struct {
    int32_t nc, n, bias;
    float scale, lo, hi;
    int32_t zy;
} qc_fmean_t;
"#;

const SMLAD: &str = r#"
/* The DSP extension's dual 16-bit multiply-accumulate (acc + lo(a) * lo(b) +
 * hi(a) * hi(b), wrapping) and byte-pair extensions (bytes 0 and 2 of x to two
 * halfwords, sign- or zero-extended), by ACLE intrinsics where the compiler targets
 * the extension, else the same arithmetic in portable C (so the host tests run these
 * kernels too). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
static inline int32_t qc_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlad(a, b, acc);
}
static inline uint32_t qc_sxtb16(uint32_t x)
{
    return (uint32_t)__sxtb16((int32_t)x);
}
static inline uint32_t qc_uxtb16(uint32_t x)
{
    return (uint32_t)__uxtb16(x);
}
#else
static inline int32_t qc_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    int32_t lo = (int32_t)(int16_t)(uint16_t)(a & 0xffffu) * (int32_t)(int16_t)(uint16_t)(b & 0xffffu);
    int32_t hi = (int32_t)(int16_t)(uint16_t)(a >> 16) * (int32_t)(int16_t)(uint16_t)(b >> 16);
    return (int32_t)((uint32_t)acc + (uint32_t)lo + (uint32_t)hi);
}
static inline uint32_t qc_sxtb16(uint32_t x)
{
    return (uint32_t)(uint16_t)(int16_t)(int8_t)(uint8_t)(x & 0xffu)
        | ((uint32_t)(uint16_t)(int16_t)(int8_t)(uint8_t)((x >> 16) & 0xffu) << 16);
}
static inline uint32_t qc_uxtb16(uint32_t x)
{
    return x & 0x00ff00ffu;
}
#endif
static inline uint32_t qc_ror8(uint32_t x)
{
    return (x >> 8) | (x << 24);
}
/* Four bytes as one little-endian word (compilers turn this into one load on
 * little-endian CPUs that allow unaligned access, such as the Cortex-M4). */
static inline uint32_t qc_ld32(const void *p)
{
    const uint8_t *b = (const uint8_t *)p;
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}
"#;

const PRINT: &str = r#"
/* Print n elements of esize bytes each, one per line, as lowercase hex of their
 * little-endian bytes (byte 0 first). */
static void qc_print_hex(const void *data, size_t n, size_t esize)
{
    static const char digits[] = "0123456789abcdef";
    static const uint16_t one = 1;
    const int little = *(const unsigned char *)&one == 1;
    const unsigned char *p = (const unsigned char *)data;
    char line[20];
    size_t i, j;
    for (i = 0; i < n; i++) {
        for (j = 0; j < esize; j++) {
            unsigned char byte = p[i * esize + (little ? j : esize - 1 - j)];
            line[2 * j] = digits[byte >> 4];
            line[2 * j + 1] = digits[byte & 15u];
        }
        line[2 * esize] = 0;
        printf("%s\n", line);
    }
}
"#;
