//! Parse errors: where they point (1-based line, column in characters) and that no
//! input, however mangled, makes the parser panic.

#![allow(clippy::panic)] // tests fail by panicking

use std::sync::Arc;

use qc_ir::text::{parse, parse_with_consts, print_with, PrintOptions};
use qc_ir::{DType, Error, Graph, Tensor, TensorType};

const BASE: &str = "func @main(%0 \"x\": f32[2]) -> (\"y\": f32[2]) {
  %1 = relu %0 : f32[2]
  return %1
}
";

/// Parse `text` and return (line, col, message) of the error it must give.
fn error_at(text: &str) -> (usize, usize, String) {
    match parse(text) {
        Err(Error::Parse { line, col, msg }) => (line, col, msg),
        other => panic!("expected a parse error for\n{text}\ngot {other:?}"),
    }
}

fn check(text: &str, line: usize, col: usize, msg_part: &str) {
    let (l, c, msg) = error_at(text);
    assert_eq!((l, c), (line, col), "{msg}\n{text}");
    assert!(msg.contains(msg_part), "message {msg:?} lacks {msg_part:?}");
}

#[test]
fn base_text_parses() {
    assert!(parse(BASE).is_ok());
}

#[test]
fn errors_point_at_the_offending_token() {
    let body = |line: &str| BASE.replace("  %1 = relu %0 : f32[2]", line);
    check(&body("  %1 = rleu %0 : f32[2]"), 2, 8, "unknown op 'rleu'");
    check(
        &body("  %1 = relu %9 : f32[2]"),
        2,
        13,
        "undefined value %9",
    );
    check(
        &body("  %1 = leaky_relu %0 : f32[2]"),
        2,
        8,
        "leaky_relu: missing attribute 'alpha'",
    );
    check(
        &body("  %1 = relu %0 {alpha=1.0} : f32[2]"),
        2,
        17,
        "relu: unknown attribute 'alpha'",
    );
    check(
        &body("  %1 = leaky_relu %0 {alpha=[1]} : f32[2]"),
        2,
        29,
        "attribute 'alpha' expects a float",
    );
    check(
        &body("  %1 = conv %0 {kernel=[3,x]} : f32[2]"),
        2,
        27,
        "expects a list of unsigned integers, found 'x'",
    );
    check(
        &body("  %1 = relu %0 : f33[2]"),
        2,
        18,
        "unknown element type 'f33'",
    );
    check(
        &body("  %1 = relu %0 : f32[2"),
        3,
        3,
        "expected ',' or ']', found 'return'",
    );
    check(
        &body("  %1 = relu %0 : f32[2], f32[2]"),
        2,
        8,
        "1 results but 2 result types",
    );
    check(
        &body("  %0 = relu %0 : f32[2]"),
        2,
        3,
        "value %0 defined twice",
    );
    check(
        &body("  %1 = relu %0 : f32[2] q(0.5, 0)"),
        2,
        18,
        "f32 has no quantized storage type",
    );
    check(
        &body("  %1 = relu %0 : u8[2] q(0.5)"),
        2,
        29,
        "expected ','",
    );
    check(
        &body("  %1 = relu %0 : f32[2] loc(\"a\\qb\")"),
        2,
        31,
        "unknown escape",
    );
    check(
        &BASE.replace("return %1", "return %1, %0"),
        3,
        3,
        "return gives 2 values, the signature declares 1",
    );
    check(
        &BASE.replace("\"y\": f32[2]", "\"y\": f32[3]"),
        3,
        10,
        "%1 has type f32[2], the signature declares f32[3]",
    );
    check(
        &body("  %1 = relu %0 : f32[2] loc(\"abc)"),
        2,
        29,
        "unterminated string",
    );
    check(
        &BASE.replace("\"x\": f32", "\"x: f32"),
        1,
        32,
        "expected ':' before the parameter type, found 'y'",
    );
    check(
        &format!("{BASE}junk"),
        5,
        1,
        "expected end of input after the function, found 'junk'",
    );
    check("", 1, 1, "expected 'func'");
    check(
        &BASE.replace("  return %1\n", ""),
        3,
        1,
        "expected an op name or 'return', found '}'",
    );
}

#[test]
fn constant_errors() {
    let with = |c: &str| format!("{c}\n{BASE}");
    check(
        &with("#0 = const f32[3] [1.0, 2.0]"),
        1,
        19,
        "shape [3] needs 3 elements, data has 2",
    );
    check(
        &with("#0 = const i8[2] [1, 200]"),
        1,
        22,
        "expected a value of type i8, found '200'",
    );
    check(
        &with("#0 = const u8[1] hex \"0g\""),
        1,
        24,
        "second hex digit",
    );
    check(
        &with("#0 = const u8[2] hex \"01\""),
        1,
        18,
        "shape [2] needs 2 elements, data has 1",
    );
    check(
        &with("#0 = const f32[1] hex \"0000\""),
        1,
        19,
        "not a whole number of f32 elements",
    );
    check(
        &with("#0 = const f32[20] digest 0123456789abcdef"),
        1,
        20,
        "no resolver provides it",
    );
    check(
        &with("#0 = const f32[1] [1.0]\n#0 = const f32[1] [1.0]"),
        2,
        1,
        "constant #0 defined twice",
    );
    check(
        &BASE.replace("relu %0", "relu %0, #3"),
        2,
        17,
        "undefined constant #3",
    );

    // A resolver must hand back the tensor the digest names.
    let zeros = Arc::new(Tensor::zeros(DType::F32, vec![20]).expect("tensor"));
    let good = zeros.digest();
    let text = with(&format!("#0 = const f32[20] digest {good:016x}"));
    let give = zeros.clone();
    assert!(parse_with_consts(&text, &move |d, _| (d == good).then(|| give.clone())).is_ok());
    let wrong = Arc::new(Tensor::zeros(DType::F32, vec![21]).expect("tensor"));
    match parse_with_consts(&text, &move |_, _| Some(wrong.clone())) {
        Err(Error::Parse {
            line: 1,
            col: 20,
            msg,
        }) => assert!(msg.contains("f32[21]"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn columns_count_characters_not_bytes() {
    // "func @main(%0 " is 14 characters, then the quoted "é🚀" (4 characters), ':' and ' '.
    check(
        &BASE.replace("\"x\": f32", "\"é🚀\": f33"),
        1,
        21,
        "unknown element type 'f33'",
    );
}

// ---------------------------------------------------------------- fuzzing

/// xorshift64: deterministic, dependency-free randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// A text that uses every construct of the grammar.
fn seed_text() -> String {
    let zeros = Tensor::zeros(DType::F32, vec![20])
        .expect("tensor")
        .digest();
    format!(
        r#"// header comment
#0 = const i8[2,1,1,1] [1, -1]
#1 = const f32[20] digest {zeros:016x}
#2 = const u8[17] hex "000102030405060708090a0b0c0d0e0f10"
#3 = const f16[2] [1.0, NaN_0x7e01]

func @main(
    %0 "gpu_0/data_0": f32[1,1,4,4],
    %1 "q \"in\" \\ é\n": u8[1,1,4,4] q(0.5, 128),
) -> (
    "y": u8[1,2,6,6] q(0.0413, 0),
    "idx": i64[1,2,3,3],
    "w": f32[20],
) {{
  %2 = quantize %0 : u8[1,1,4,4] q(0.0235294, 128) loc("q")
  %3 = const #0 : i8[2,1,1,1] q(axis=0, [0.5, 0.25], [0, 0])
  %4 = conv %2, %3 {{kernel=[1,1], pads=[1,1,1,1], act=clip(0.0, 6.0)}} : u8[1,2,6,6] q(0.0413, 0) loc("conv\t1")
  %5, %6 = max_pool %4 {{kernel=[2,2], strides=[2,2], ceil_mode=true, storage_order=1}} : u8[1,2,3,3] q(0.0413, 0), i64[1,2,3,3]
  %7 = const #2 : u8[17] q(storage=i8, axis=0, [1.0], [3])
  %8 = pad %1, %7, #3 {{pads=[0,0,-1,1,0,0,1,-1], value=-inf}} : u8[1,1,4,4] q(0.5, 128)
  %9 = gemm %0, %8 {{alpha=0.5, beta=-0.0, trans_b=true}} : f32[1]
  %10 = const #1 : f32[20]
  return %4, %6, %10
}}
"#
    )
}

/// Resolves any small digest-only constant to zeros (so the digest check runs).
fn zeros_resolver(_: u64, ty: &TensorType) -> Option<Arc<Tensor>> {
    if ty.numel().ok()? > 1000 {
        return None;
    }
    Tensor::zeros(ty.dtype, ty.shape.clone()).ok().map(Arc::new)
}

fn full(g: &Graph) -> String {
    print_with(g, &PrintOptions::full())
}

#[test]
fn seed_text_parses() {
    let g = parse_with_consts(&seed_text(), &zeros_resolver).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(g.nodes.len(), 5);
    assert_eq!(g.values.len(), 12, "%0..%10 and the inline #3 operand");
}

#[test]
fn mangled_text_never_panics() {
    const POOL: &[&str] = &[
        "%",
        "#",
        "@",
        "{",
        "}",
        "[",
        "]",
        "(",
        ")",
        ",",
        ":",
        "=",
        ".",
        "-",
        "+",
        "0",
        "1",
        "9",
        "e",
        "x",
        "q",
        "N",
        " ",
        "\n",
        "\\",
        "\"",
        "é",
        "🚀",
        "//",
        "NaN",
        "inf",
        "relu",
        "const",
        "return",
        "hex",
        "digest",
        "axis=",
        "storage=",
        "18446744073709551616",
        "\\u{",
        "loc(",
    ];
    let seed = seed_text();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let mut chars: Vec<char> = seed.chars().collect();
        for _ in 0..1 + rng.below(3) {
            let n = chars.len();
            match rng.below(5) {
                0 => chars.truncate(rng.below(n + 1)),
                1 => {
                    let at = rng.below(n + 1);
                    let len = rng.below(8).min(n - at);
                    chars.drain(at..at + len);
                }
                2 => {
                    let at = rng.below(n + 1);
                    let ins: Vec<char> = POOL[rng.below(POOL.len())].chars().collect();
                    chars.splice(at..at, ins);
                }
                3 if n > 0 => {
                    let at = rng.below(n);
                    let ins: Vec<char> = POOL[rng.below(POOL.len())].chars().collect();
                    chars.splice(at..at + 1, ins);
                }
                _ => {
                    let from = rng.below(n + 1);
                    let len = rng.below(40).min(n - from);
                    let piece: Vec<char> = chars[from..from + len].to_vec();
                    let at = rng.below(n + 1);
                    chars.splice(at..at, piece);
                }
            }
        }
        let text: String = chars.into_iter().collect();
        let _ = parse(&text);
        match parse_with_consts(&text, &zeros_resolver) {
            Err(Error::Parse { line, col, .. }) => {
                assert!(line >= 1 && col >= 1);
                assert!(
                    line <= text.lines().count().max(1) + 1,
                    "line {line} beyond the text"
                );
            }
            Err(e) => panic!("non-parse error {e:?}"),
            Ok(g) => {
                accepted += 1;
                // Whatever the parser builds, the printer writes text that parses, and
                // printing is then a fixed point.
                let t1 = full(&g);
                let g2 = parse(&t1).unwrap_or_else(|e| panic!("{e}\n{t1}\nfrom\n{text}"));
                let t2 = full(&g2);
                let g3 = parse(&t2).unwrap_or_else(|e| panic!("{e}\n{t2}"));
                assert_eq!(full(&g3), t2);
            }
        }
    }
    // The mutations must leave some texts valid, or the fixed-point check is vacuous.
    assert!(accepted > 100, "only {accepted} mutants parsed");
}
