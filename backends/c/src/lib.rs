//! qc-cgen: the C99 emitter for bare-metal targets.
//!
//! [`emit`] turns an optimized [`Graph`] into one header and one source file:
//!
//! - `int NAME_run(inputs..., outputs...)` takes the model's inputs, then its outputs, as
//!   pointers of their element types in model order (with `external_arena`, one more
//!   trailing `void *arena`). When every input feeds only a `quantize` and every output
//!   is a `dequantize` ("quantized boundaries"), `int NAME_run_quantized(...)` takes
//!   and returns the quantized buffers instead and skips those conversions. Both
//!   return 0, or 1 for a NULL pointer, 2 for a misaligned external arena, 3 when an
//!   integer `div` meets a zero divisor (where the interpreter fails the run).
//! - The header defines `NAME_ARENA_BYTES`, and per input/output `NAME_<IN|OUT>k_NUMEL`,
//!   `NAME_<IN|OUT>k_RANK`, `NAME_<IN|OUT>k_SHAPE` and, for quantized boundaries,
//!   `NAME_<IN|OUT>k_SCALE` / `NAME_<IN|OUT>k_ZERO_POINT`.
//! - Every node-computed value lives in one arena at the offset
//!   `qc_passes::memplan::plan_with` gives it, results of elementwise kernels reusing
//!   their operand's buffer where the planner allows it (`ops::in_place_operands`
//!   names the kernels; a reshape then copies nothing); weights are `static const`
//!   arrays.
//!
//! **Invariants of the emitted C.**
//! - C99, no heap, no recursion, no VLAs; it includes only `<stdint.h>`, `<stddef.h>`
//!   and `<string.h>` and calls only `memcpy` from them.
//! - Bit-exact with `qc_interp::run` under the same contract. Conv and gemm accumulate
//!   in integers and requantize with the contract's arithmetic (`runtime`). Every
//!   other quantized op — which the interpreter defines as dequantize → f32 → quantize —
//!   is reformulated at compile time into integer tables (`exact`), so under the
//!   `fixed` and `fixed-single` contracts the code contains no floating-point
//!   arithmetic at all, boundaries included (`quantize` compares the input's bits with
//!   thresholds, `dequantize` is a table of f32 bit patterns). Only the `float`
//!   contract computes in floating point: its requantization multiplies in f32, and
//!   its fused 8-bit add, softmax and global average (`qc_qmath::FusedAdd`,
//!   `FusedSoftmax`, `FusedMean`, which replace the generic definition for the nodes
//!   `qc_ir::fused` names) are onnxruntime's f32 arithmetic, the add's fused
//!   multiply-adds done in `double` on exact products (the sum rounded to odd where
//!   plain double rounding would differ for some pair of codes, checked when
//!   emitting).
//! - An op or type combination without a kernel is an [`Error::Unsupported`] naming the
//!   node, never wrong code.
//! - A kernel whose result shares its operand's buffer (in-place) reads element `i`
//!   of that operand before writing element `i` of the result and never reads an
//!   element after writing it; every other kernel's result is disjoint from all its
//!   operands (the memory plan's invariant).
//! - Float appears only where the model computes in float: f32 kernels, casts from or
//!   to f32, `dynamic_quantize`, and f32 `reduce_mean`, which sums in `double` as the
//!   interpreter does.
//! - Float kernels (`float_ops`: f32 models and float parts) repeat the interpreter's
//!   f32 operations in its order; they need the C compiler not to contract `a * b + c`
//!   (GCC's default in ISO modes such as `-std=c99`). Their exponential, logarithm
//!   and tanh are qc's own (`qc_ir::real`, emitted by `cmath` as the same f32
//!   operation sequence), since the C may not use libm.
//! - [`Cpu::CortexM4`] (and M7/M33) selects kernels built on the DSP extension's dual
//!   16-bit MAC (`qc_smlad`: the ACLE intrinsic when `__ARM_FEATURE_DSP`, portable C
//!   otherwise, so the host tests run them too) for 1x1, depthwise, channel-pair and
//!   even-width convolutions and fully connected layers; they compute the same
//!   wrapping 32-bit sums as the generic kernels (zero points folded modulo 2^32).
//!
//! Kernels are shared `static` functions parameterized by a `static const` block per
//! node, and only the kernels a model uses are emitted: the keyword-spotting model's
//! code is about 3-5 KiB on a Cortex-M4.

mod cmath;
mod emit;
pub(crate) mod exact;
mod float_ops;
mod ops;
pub(crate) mod runtime;
mod testmain;

use qc_ir::{Graph, NodeId};

pub use qc_qmath::Contract;
pub use testmain::{parse_test_output, test_main};

/// The CPU the C is compiled for. Selects kernel variants; today every CPU gets the
/// generic C kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Cpu {
    #[default]
    Generic,
    CortexM4,
    CortexM7,
    CortexM33,
}

/// Options of [`emit`].
#[derive(Clone, Debug, PartialEq)]
pub struct CgenOptions {
    /// The C identifier prefixing every exported name (see [`c_identifier`]).
    pub name: String,
    /// The rounding contract of requantization (must match the interpreter's to be
    /// bit-exact with it).
    pub contract: qc_qmath::Contract,
    pub cpu: Cpu,
    /// The arena is a `void *` the caller passes (8-byte aligned, at least
    /// `NAME_ARENA_BYTES`) instead of a `static` buffer.
    pub external_arena: bool,
}

impl Default for CgenOptions {
    fn default() -> Self {
        CgenOptions {
            name: "model".into(),
            contract: qc_qmath::Contract::Fixed,
            cpu: Cpu::Generic,
            external_arena: false,
        }
    }
}

/// The emitted model.
#[derive(Clone, Debug, PartialEq)]
pub struct CSource {
    pub name: String,
    /// Contents of `NAME.h`.
    pub header: String,
    /// Contents of `NAME.c` (includes `"NAME.h"`).
    pub source: String,
    /// Bytes of the arena (`NAME_ARENA_BYTES`).
    pub arena_bytes: usize,
    /// The memory planner's lower bound (largest sum of bytes live at one node).
    pub arena_lower_bound: usize,
    /// Whether `NAME_run_quantized` exists.
    pub has_run_quantized: bool,
}

/// Errors of the C emitter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("node {node} ({op} '{name}'): not supported by the C backend: {msg}")]
    Unsupported {
        node: NodeId,
        op: &'static str,
        name: String,
        msg: String,
    },
    #[error("graph: {0}")]
    Graph(String),
    #[error("invalid option: {0}")]
    Options(String),
    #[error("memory plan: {0}")]
    Plan(#[from] qc_passes::Error),
    #[error(transparent)]
    Quant(#[from] qc_qmath::Error),
    #[error("test driver: {0}")]
    TestDriver(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Emit C for the optimized graph `g` (the `qc_passes` default pipeline already run).
pub fn emit(g: &Graph, opts: &CgenOptions) -> Result<CSource> {
    emit::emit(g, opts)
}

/// A model file stem made a C identifier: characters other than ASCII letters, digits
/// and `_` become `_`, a leading digit (or an empty stem) gets a `m_` prefix, and
/// names that C reserves (`_X...`, `__...`, keywords) get the prefix too.
pub fn c_identifier(stem: &str) -> String {
    let mut s: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    const KEYWORDS: [&str; 37] = [
        "auto",
        "break",
        "case",
        "char",
        "const",
        "continue",
        "default",
        "do",
        "double",
        "else",
        "enum",
        "extern",
        "float",
        "for",
        "goto",
        "if",
        "inline",
        "int",
        "long",
        "register",
        "restrict",
        "return",
        "short",
        "signed",
        "sizeof",
        "static",
        "struct",
        "switch",
        "typedef",
        "union",
        "unsigned",
        "void",
        "volatile",
        "while",
        "_Bool",
        "_Complex",
        "_Imaginary",
    ];
    let reserved = s.starts_with("__")
        || (s.starts_with('_') && s.chars().nth(1).is_some_and(|c| c.is_ascii_uppercase()));
    if s.is_empty()
        || s.starts_with(|c: char| c.is_ascii_digit())
        || reserved
        || KEYWORDS.contains(&s.as_str())
    {
        s.insert_str(0, "m_");
    }
    s
}

/// The quantized boundary types of `g`, if it has quantized boundaries: the result
/// type of each input's `quantize` and the operand type of each output's
/// `dequantize`, in model order. These are the element types of
/// `NAME_run_quantized`'s buffers (and of [`test_main`]'s inputs and
/// [`parse_test_output`]'s results when `quantized` is true).
pub fn quantized_boundaries(g: &Graph) -> Option<(Vec<qc_ir::TensorType>, Vec<qc_ir::TensorType>)> {
    let b = emit::Boundaries::find(g)?;
    let ins = b
        .in_q
        .iter()
        .map(|&v| g.values.get(v.index()).map(|x| x.ty.clone()));
    let outs = b
        .out_q
        .iter()
        .map(|&v| g.values.get(v.index()).map(|x| x.ty.clone()));
    Some((ins.collect::<Option<_>>()?, outs.collect::<Option<_>>()?))
}

/// The operands whose buffer the C kernel of `node` may overwrite with its result:
/// the callback [`emit`] passes to `qc_passes::memplan::plan_with`. Not a stable API
/// (for tests and reports).
#[doc(hidden)]
pub fn in_place_operands(g: &Graph, node: NodeId) -> Vec<usize> {
    ops::in_place_operands(g, node)
}

/// The integer soft-float and requantization helpers as C source, for the host
/// tests that check them against the host's IEEE arithmetic. Not a stable API.
#[doc(hidden)]
pub fn runtime_helpers_for_tests() -> String {
    use runtime::Piece;
    [
        Piece::F32Key,
        Piece::F32Add,
        Piece::F32Div,
        Piece::Thresh32,
        Piece::Round24,
    ]
    .iter()
    .map(|p| p.source())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use qc_ir::{Op, QType, QuantParams, TensorType};

    #[test]
    fn c_identifiers() {
        for (stem, want) in [
            ("kws_dscnn_int8", "kws_dscnn_int8"),
            ("ic-resnet8.v2", "ic_resnet8_v2"),
            ("8bit", "m_8bit"),
            ("", "m_"),
            ("int", "m_int"),
            ("_Model", "m__Model"),
            ("__x", "m___x"),
            ("_model", "_model"),
            ("modèle", "mod_le"),
        ] {
            assert_eq!(c_identifier(stem), want, "{stem}");
        }
    }

    fn q(shape: &[usize]) -> TensorType {
        TensorType::quantized(shape.to_vec(), QuantParams::per_tensor(QType::U8, 0.1, 3))
    }

    #[test]
    fn unsupported_ops_name_the_node() {
        let mut g = Graph::new();
        let x = g.add_input("x", q(&[1, 4]));
        let n = g.add_node(
            Op::Lrn(qc_ir::LrnAttrs {
                size: 3,
                alpha: 1.0,
                beta: 0.5,
                bias: 1.0,
            }),
            vec![x],
            vec![q(&[1, 4])],
            "my_lrn",
        );
        let y = g.node(n).outputs[0];
        g.add_output("y", y);
        let e = emit(&g, &CgenOptions::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("lrn") && e.contains("my_lrn") && e.contains("n0"),
            "{e}"
        );
    }

    #[test]
    fn names_must_be_identifiers() {
        let g = Graph::new();
        let opts = CgenOptions {
            name: "not an identifier".into(),
            ..Default::default()
        };
        assert!(matches!(emit(&g, &opts), Err(Error::Options(_))));
    }

    #[test]
    fn quantized_boundaries_are_found() {
        let mut g = Graph::new();
        let x = g.add_input("x", TensorType::f32(vec![1, 4]));
        let n = g.add_node(Op::Quantize, vec![x], vec![q(&[1, 4])], "q");
        let xq = g.node(n).outputs[0];
        let n = g.add_node(Op::Relu, vec![xq], vec![q(&[1, 4])], "r");
        let r = g.node(n).outputs[0];
        let n = g.add_node(
            Op::Dequantize,
            vec![r],
            vec![TensorType::f32(vec![1, 4])],
            "dq",
        );
        let y = g.node(n).outputs[0];
        g.add_output("y", y);
        let (ins, outs) = quantized_boundaries(&g).expect("boundaries");
        assert_eq!(
            (ins[0].dtype, outs[0].dtype),
            (qc_ir::DType::U8, qc_ir::DType::U8)
        );
        let src = emit(&g, &CgenOptions::default()).expect("emit");
        assert!(src.has_run_quantized);
        assert!(src
            .source
            .contains("int model_run_quantized(const uint8_t *in0, uint8_t *out0)"));
        // Under a fixed contract the float boundaries are bit manipulations and
        // tables: no f32 arithmetic helper is emitted.
        for helper in ["qc_rne", "qc_rq_float"] {
            assert!(!src.source.contains(helper), "{helper} in:\n{}", src.source);
        }
        let rq = src
            .source
            .split("int model_run_quantized")
            .nth(1)
            .unwrap_or_default();
        assert!(!rq.contains("float"), "{rq}");
    }
}
