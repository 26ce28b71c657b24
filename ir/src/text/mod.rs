//! The text form of a graph: a deterministic printer and its parser.
//!
//! ```text
//! #0 = const i8[16,3,3,3] digest 5b1f0c9e2a7d4e11
//! #1 = const i32[4] [-7, 12, 0, 3]
//!
//! func @main(%0 "gpu_0/data_0": f32[1,3,32,32]) -> ("prob": u8[1,16,32,32] q(0.0413, 0)) {
//!   %1 = quantize %0 : u8[1,3,32,32] q(0.0235294, 128)
//!   %2 = const #0 : i8[16,3,3,3] q(axis=0, [0.01, 0.02, ...], [0, 0, ...])
//!   %3 = const #1 : i32[16]
//!   %4 = conv %1, %2, %3 {kernel=[3,3], pads=[1,1,1,1], act=relu} : u8[1,16,32,32] q(0.0413, 0) loc("conv1")
//!   return %4
//! }
//! ```
//!
//! Grammar (whitespace, newlines and `// comments` are free between tokens, except
//! that a node's operands start on the line of its op name). A signature longer than
//! 100 characters prints one port per line, with trailing commas:
//!
//! ```text
//! module  := const* 'func' '@' NAME '(' (param (',' param)* ','?)? ')' '->' results '{' stmt* ret '}'
//! const   := '#' NAME '=' 'const' DTYPE shape data
//! data    := '[' (elem (',' elem)*)? ']'          // inline, row-major
//!          | 'digest' HEX16                       // Tensor::digest, data elsewhere
//!          | 'hex' STRING                         // little-endian bytes
//! param   := '%' NAME STRING? ':' type            // port name defaults to NAME
//! results := '(' (result (',' result)* ','?)? ')' | result
//! result  := (STRING ':')? type                   // port name defaults to the returned value's NAME
//! stmt    := '%' NAME '=' 'const' '#' NAME (':' type)?
//!          | ('%' NAME (',' '%' NAME)* '=')? OP (operand (',' operand)*)? attrs? (':' type (',' type)*)? loc?
//! operand := '%' NAME | '#' NAME                  // `#c`: a new plain value of constant c
//! attrs   := '{' (KEY '=' attr (',' KEY '=' attr)*)? '}'
//! loc     := 'loc' '(' STRING ')'                 // Node::name, omitted when empty
//! ret     := 'return' ('%' NAME (',' '%' NAME)*)?
//! type    := DTYPE '[' (INT (',' INT)*)? ']' quant?
//! quant   := 'q' '(' ('storage=' QTYPE ',')? ('axis=' INT ',')? (FLOAT ',' INT | '[' FLOATS ']' ',' '[' INTS ']') ')'
//! ```
//!
//! **Invariants.**
//! - *Determinism*: the printed text is a function of the graph alone.
//! - *Round trip*: for a compacted graph `g` ([`Graph::compact`]),
//!   `parse(&print_with(g, &PrintOptions::full())) == g` and
//!   `parse_with_consts(&print(g), &digest_resolver(&g.consts)) == g`. The parser
//!   allocates ids in the order definitions appear (inputs; then per statement, inline
//!   `#c` operands, then results; constants in header order), and the printer emits
//!   definitions in the arena order `compact` produces: a constant value's `const` line
//!   comes right before the first node using it, output-only constant values just
//!   before `return`. Printed `%N` are value indices; the parser treats them as names.
//! - *Exact numbers*: floats print with Rust's shortest round-tripping `{:?}` (`inf`,
//!   `-inf`, `-0.0` included); the canonical NaN prints `NaN`, any other NaN its bits
//!   (`NaN_0xffc00000`), so every float re-parses to the same bits. f16/bf16 elements
//!   print as their exact f32 value. Strings (port and node names) are quoted with
//!   Rust-like escapes, so any name round-trips.
//! - Attributes equal to the neutral default (unit strides and dilations, zero pads and
//!   output padding, group 1, no activation, `ceil_mode=false`, `storage_order=0`,
//!   `count_include_pad=false`, gemm `alpha=beta=1.0` and no transposes, pad `value=0.0`,
//!   absent clip bounds) are omitted; the parser restores exactly these defaults.
//! - The parser never panics: any input gives a graph or [`Error::Parse`] with a
//!   1-based line and column (in characters).

mod parse;
mod print;

use std::collections::HashMap;
use std::sync::Arc;

use crate::{Error, Graph, Result, Tensor, TensorType};

/// Constants with at most this many elements print their data inline in
/// [`DataMode::Auto`] and [`DataMode::Full`].
pub const INLINE_MAX: usize = 16;

/// How constant tensors are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DataMode {
    /// Inline values for tensors of at most [`INLINE_MAX`] elements, a digest otherwise.
    #[default]
    Auto,
    /// A digest for every tensor.
    Digest,
    /// Every tensor's data: inline values when small, hex of little-endian bytes
    /// otherwise. The text then stands alone.
    Full,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrintOptions {
    pub data: DataMode,
}

impl PrintOptions {
    /// Options that print all constant data ([`DataMode::Full`]).
    pub fn full() -> PrintOptions {
        PrintOptions {
            data: DataMode::Full,
        }
    }
}

/// Print a graph in the text form, small constants inline and large ones as digests.
pub fn print(g: &Graph) -> String {
    print::print_graph(g, &PrintOptions::default())
}

/// Print a graph in the text form with explicit options.
pub fn print_with(g: &Graph, opts: &PrintOptions) -> String {
    print::print_graph(g, opts)
}

/// Parse the text form. A constant printed as a digest only is an error here; use
/// [`parse_with_consts`] to supply its data.
pub fn parse(s: &str) -> Result<Graph> {
    parse::parse_graph(s, &|_, _| None)
}

/// Parse the text form, asking `resolve(digest, type)` for the data of every constant
/// printed as a digest. The tensor returned must have that dtype, shape and digest.
pub fn parse_with_consts(
    s: &str,
    resolve: &dyn Fn(u64, &TensorType) -> Option<Arc<Tensor>>,
) -> Result<Graph> {
    parse::parse_graph(s, resolve)
}

/// A resolver for [`parse_with_consts`] that looks digests up in `consts` (e.g. the
/// constants of the graph that was printed).
pub fn digest_resolver(consts: &[Arc<Tensor>]) -> impl Fn(u64, &TensorType) -> Option<Arc<Tensor>> {
    let by_digest: HashMap<u64, Arc<Tensor>> =
        consts.iter().map(|t| (t.digest(), t.clone())).collect();
    move |d, _| by_digest.get(&d).cloned()
}

/// Convert a byte offset into a 1-based (line, column-in-characters) error.
fn parse_error(src: &str, pos: usize, msg: String) -> Error {
    let mut pos = pos.min(src.len());
    while !src.is_char_boundary(pos) {
        pos -= 1;
    }
    let before = src.get(..pos).unwrap_or("");
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Error::Parse { line, col, msg }
}

// ---- number and string spelling shared by printer and parser ----

const NAN_PREFIX: &str = "NaN_0x";

fn fmt_f32(x: f32) -> String {
    if !x.is_nan() {
        format!("{x:?}")
    } else if x.to_bits() == f32::NAN.to_bits() {
        "NaN".to_string()
    } else {
        format!("{NAN_PREFIX}{:08x}", x.to_bits())
    }
}

fn fmt_f64(x: f64) -> String {
    if !x.is_nan() {
        format!("{x:?}")
    } else if x.to_bits() == f64::NAN.to_bits() {
        "NaN".to_string()
    } else {
        format!("{NAN_PREFIX}{:016x}", x.to_bits())
    }
}

/// A 16-bit float (`decode` gives its exact f32 value) spelled like an f32, NaNs by bits.
fn fmt_half(bits: u16, canonical_nan: u16, decode: impl Fn(u16) -> f32) -> String {
    let x = decode(bits);
    if !x.is_nan() {
        format!("{x:?}")
    } else if bits == canonical_nan {
        "NaN".to_string()
    } else {
        format!("{NAN_PREFIX}{bits:04x}")
    }
}

fn parse_f32(s: &str) -> Option<f32> {
    if let Some(h) = s.strip_prefix(NAN_PREFIX) {
        let x = f32::from_bits(parse_hex_u64(h, 8)? as u32);
        return x.is_nan().then_some(x);
    }
    if s == "NaN" {
        return Some(f32::NAN);
    }
    s.parse().ok()
}

fn parse_f64(s: &str) -> Option<f64> {
    if let Some(h) = s.strip_prefix(NAN_PREFIX) {
        let x = f64::from_bits(parse_hex_u64(h, 16)?);
        return x.is_nan().then_some(x);
    }
    if s == "NaN" {
        return Some(f64::NAN);
    }
    s.parse().ok()
}

/// Bits of a 16-bit float: `encode` rounds an f32 (exact for a printed value).
fn parse_half(
    s: &str,
    canonical_nan: u16,
    encode: impl Fn(f32) -> u16,
    is_nan: impl Fn(u16) -> bool,
) -> Option<u16> {
    if let Some(h) = s.strip_prefix(NAN_PREFIX) {
        let b = parse_hex_u64(h, 4)? as u16;
        return is_nan(b).then_some(b);
    }
    if s == "NaN" {
        return Some(canonical_nan);
    }
    s.parse::<f32>().ok().map(encode)
}

/// 1 to `max_digits` hex digits (no sign, no prefix).
fn parse_hex_u64(s: &str, max_digits: usize) -> Option<u64> {
    if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// A double-quoted string with Rust-like escapes; control characters are escaped so
/// a printed string never spans lines.
fn write_string(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
