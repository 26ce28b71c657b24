//! The parser: a hand-written recursive-descent reader over bytes.
//!
//! Positions are byte offsets into the source, always on a character boundary (the
//! scanner only steps over ASCII bytes or whole characters); they become 1-based
//! line/column only when an error is reported. Every lookup into the source is
//! checked, so no input makes the parser panic. Ids are allocated in the order
//! definitions appear in the text (see the module docs of [`super`]).

use std::collections::HashMap;
use std::sync::Arc;

use super::{parse_error, parse_f32, parse_f64, parse_half, parse_hex_u64};
use crate::{
    Activation, ConstId, ConvAttrs, ConvTransposeAttrs, DType, GemmAttrs, Graph, LrnAttrs, Op,
    PoolAttrs, QType, QuantParams, Result, Shape, Tensor, TensorData, TensorType, Value, ValueDef,
    ValueId,
};

/// A parse error at a byte offset.
struct PErr {
    pos: usize,
    msg: String,
}

type PResult<T> = std::result::Result<T, PErr>;

fn perr<T>(pos: usize, msg: impl Into<String>) -> PResult<T> {
    Err(PErr {
        pos,
        msg: msg.into(),
    })
}

pub(super) fn parse_graph(
    src: &str,
    resolve: &dyn Fn(u64, &TensorType) -> Option<Arc<Tensor>>,
) -> Result<Graph> {
    let mut p = Parser {
        src,
        b: src.as_bytes(),
        pos: 0,
        resolve,
        g: Graph::new(),
        values: HashMap::new(),
        consts: HashMap::new(),
    };
    match p.module() {
        Ok(()) => Ok(p.g),
        Err(e) => Err(parse_error(src, e.pos, e.msg)),
    }
}

fn is_atom_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'+' | b'-')
}

fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.')
}

fn type_string(ty: &TensorType) -> String {
    let mut s = String::new();
    super::print::write_type(&mut s, ty);
    s
}

/// One entry of the signature's result list.
struct ResultDecl {
    name: Option<String>,
    ty: TensorType,
}

struct Parser<'a> {
    src: &'a str,
    b: &'a [u8],
    pos: usize,
    resolve: &'a dyn Fn(u64, &TensorType) -> Option<Arc<Tensor>>,
    g: Graph,
    values: HashMap<&'a str, ValueId>,
    consts: HashMap<&'a str, ConstId>,
}

impl<'a> Parser<'a> {
    // ---------------------------------------------------------------- scanning

    /// Skip whitespace (newlines included) and `//` comments.
    fn ws(&mut self) {
        loop {
            match self.b.get(self.pos) {
                Some(b' ' | b'\t' | b'\r' | b'\n') => self.pos += 1,
                Some(b'/') if self.b.get(self.pos + 1) == Some(&b'/') => {
                    while self.b.get(self.pos).is_some_and(|&c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                _ => return,
            }
        }
    }

    /// Skip spaces on the current line; true if an operand (`%` or `#`) follows on it.
    fn operand_on_this_line(&mut self) -> bool {
        while matches!(self.b.get(self.pos), Some(b' ' | b'\t' | b'\r')) {
            self.pos += 1;
        }
        matches!(self.b.get(self.pos), Some(b'%' | b'#'))
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8, what: &str) -> PResult<()> {
        if self.eat(c) {
            Ok(())
        } else {
            self.unexpected(what)
        }
    }

    fn expect_arrow(&mut self) -> PResult<()> {
        self.ws();
        if self.b.get(self.pos..self.pos + 2) == Some(b"->".as_slice()) {
            self.pos += 2;
            Ok(())
        } else {
            self.unexpected("'->'")
        }
    }

    /// What is at the current position, for messages: a whole atom, or one character.
    fn found(&self) -> String {
        let rest = self.src.get(self.pos..).unwrap_or("");
        let atom_len = rest.bytes().take_while(|&c| is_atom_byte(c)).count();
        match rest.chars().next() {
            None => "end of input".to_string(),
            Some(_) if atom_len > 0 => {
                let a = rest.get(..atom_len.min(32)).unwrap_or("");
                format!("'{a}'")
            }
            Some(c) => format!("'{}'", c.escape_debug()),
        }
    }

    fn unexpected<T>(&mut self, expected: &str) -> PResult<T> {
        self.ws();
        perr(
            self.pos,
            format!("expected {expected}, found {}", self.found()),
        )
    }

    /// A non-empty run of `[A-Za-z0-9_.+-]` (numbers, keywords, op names) and its position.
    fn atom(&mut self, what: &str) -> PResult<(&'a str, usize)> {
        self.ws();
        let start = self.pos;
        while self.b.get(self.pos).is_some_and(|&c| is_atom_byte(c)) {
            self.pos += 1;
        }
        if self.pos == start {
            return self.unexpected(what);
        }
        Ok((self.src.get(start..self.pos).unwrap_or(""), start))
    }

    /// Consume the keyword `kw` if it is the next atom.
    fn keyword(&mut self, kw: &str) -> bool {
        let save = self.pos;
        match self.atom("") {
            Ok((a, _)) if a == kw => true,
            _ => {
                self.pos = save;
                false
            }
        }
    }

    fn expect_keyword(&mut self, kw: &str, what: &str) -> PResult<()> {
        if self.keyword(kw) {
            Ok(())
        } else {
            self.unexpected(what)
        }
    }

    /// `%name`, `#name` or `@name`; returns the name without its sigil and the sigil's position.
    fn sigil_name(&mut self, sigil: u8, what: &str) -> PResult<(&'a str, usize)> {
        self.ws();
        let start = self.pos;
        if self.b.get(self.pos) != Some(&sigil) {
            return self.unexpected(what);
        }
        self.pos += 1;
        let name_start = self.pos;
        while self.b.get(self.pos).is_some_and(|&c| is_name_byte(c)) {
            self.pos += 1;
        }
        if self.pos == name_start {
            return perr(
                name_start,
                format!(
                    "expected a name after '{}', found {}",
                    char::from(sigil),
                    self.found()
                ),
            );
        }
        Ok((self.src.get(name_start..self.pos).unwrap_or(""), start))
    }

    /// A double-quoted string with the escapes `\" \\ \n \r \t \0 \u{X}`.
    fn string(&mut self, what: &str) -> PResult<String> {
        self.ws();
        let start = self.pos;
        if self.b.get(self.pos) != Some(&b'"') {
            return self.unexpected(what);
        }
        self.pos += 1;
        let mut out = String::new();
        loop {
            let at = self.pos;
            let Some(c) = self.src.get(at..).and_then(|r| r.chars().next()) else {
                return perr(start, "unterminated string");
            };
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\n' => return perr(start, "unterminated string (strings cannot span lines)"),
                '\\' => {
                    let Some(e) = self.src.get(self.pos..).and_then(|r| r.chars().next()) else {
                        return perr(start, "unterminated string");
                    };
                    self.pos += e.len_utf8();
                    match e {
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        '0' => out.push('\0'),
                        'u' => out.push(self.unicode_escape(at)?),
                        _ => return perr(at, format!("unknown escape '\\{}'", e.escape_debug())),
                    }
                }
                c => out.push(c),
            }
        }
    }

    /// The `{X}` of a `\u{X}` escape starting at `at`.
    fn unicode_escape(&mut self, at: usize) -> PResult<char> {
        if self.b.get(self.pos) != Some(&b'{') {
            return perr(at, "expected '{' after '\\u'");
        }
        self.pos += 1;
        let start = self.pos;
        while self.b.get(self.pos).is_some_and(|c| c.is_ascii_hexdigit()) {
            self.pos += 1;
        }
        let digits = self.src.get(start..self.pos).unwrap_or("");
        if self.b.get(self.pos) != Some(&b'}') {
            return perr(at, "expected 1 to 6 hex digits and '}' in '\\u{...}'");
        }
        self.pos += 1;
        parse_hex_u64(digits, 6)
            .and_then(|c| char::from_u32(c as u32))
            .map_or_else(
                || perr(at, format!("'\\u{{{digits}}}' is not a character")),
                Ok,
            )
    }

    /// A double-quoted run of hex digit pairs, decoded to bytes.
    fn hex_string(&mut self) -> PResult<Vec<u8>> {
        self.ws();
        let start = self.pos;
        if self.b.get(self.pos) != Some(&b'"') {
            return self.unexpected("'\"' opening hex data");
        }
        self.pos += 1;
        let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let mut out = Vec::new();
        loop {
            match self.b.get(self.pos).copied() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                None => return perr(start, "unterminated hex data"),
                Some(h) => {
                    let Some(hi) = digit(h) else {
                        return perr(
                            self.pos,
                            format!("expected a hex digit or '\"', found {}", self.found()),
                        );
                    };
                    self.pos += 1;
                    let Some(lo) = self.b.get(self.pos).copied().and_then(digit) else {
                        return perr(
                            self.pos,
                            "expected a second hex digit (hex data is whole bytes)",
                        );
                    };
                    self.pos += 1;
                    out.push(hi << 4 | lo);
                }
            }
        }
    }

    /// `open` already peeked: `open (atom (, atom)*)? close`.
    fn atom_list(&mut self, open: u8, close: u8, what: &str) -> PResult<Vec<(&'a str, usize)>> {
        self.expect(open, &format!("'{}'", char::from(open)))?;
        let mut items = Vec::new();
        if self.eat(close) {
            return Ok(items);
        }
        loop {
            items.push(self.atom(what)?);
            if self.eat(b',') {
                continue;
            }
            self.expect(close, &format!("',' or '{}'", char::from(close)))?;
            return Ok(items);
        }
    }

    // ---------------------------------------------------------------- types

    fn dtype(&mut self) -> PResult<(DType, usize)> {
        let (a, p) = self.atom("an element type (f32, u8, ...)")?;
        match DType::from_name(a) {
            Some(d) => Ok((d, p)),
            None => perr(p, format!("unknown element type '{a}'")),
        }
    }

    fn shape(&mut self) -> PResult<Shape> {
        let dims = self.atom_list(b'[', b']', "a dimension")?;
        let dims = dims
            .into_iter()
            .map(|(d, p)| {
                d.parse::<usize>().map_or_else(
                    |_| perr(p, format!("expected a dimension, found '{d}'")),
                    Ok,
                )
            })
            .collect::<PResult<Vec<usize>>>()?;
        Ok(Shape(dims))
    }

    fn ty(&mut self) -> PResult<TensorType> {
        let (dtype, dpos) = self.dtype()?;
        let shape = self.shape()?;
        let save = self.pos;
        let quant = if self.keyword("q") && self.peek() == Some(b'(') {
            Some(self.quant(dtype, dpos)?)
        } else {
            self.pos = save;
            None
        };
        Ok(TensorType {
            dtype,
            shape,
            quant,
        })
    }

    /// `(storage=T, axis=A, s, z)` or with lists `[s..], [z..]`; storage defaults to the dtype's.
    fn quant(&mut self, dtype: DType, dpos: usize) -> PResult<QuantParams> {
        self.expect(b'(', "'('")?;
        let mut storage = None;
        let mut axis = None;
        loop {
            let save = self.pos;
            let key = self.atom("").ok();
            if !matches!(key, Some(("storage" | "axis", _))) || !self.eat(b'=') {
                self.pos = save;
                break;
            }
            let (v, vp) = self.atom("a value")?;
            match key {
                Some(("storage", _)) => {
                    storage = Some(
                        qtype_from_name(v)
                            .map_or_else(|| perr(vp, format!("unknown storage type '{v}'")), Ok)?,
                    )
                }
                _ => {
                    axis =
                        Some(v.parse::<usize>().map_or_else(
                            |_| perr(vp, format!("expected an axis, found '{v}'")),
                            Ok,
                        )?)
                }
            }
            self.expect(b',', "','")?;
        }
        let (scales, zero_points) = if self.peek() == Some(b'[') {
            let s = self.atom_list(b'[', b']', "a scale")?;
            self.expect(b',', "','")?;
            let z = self.atom_list(b'[', b']', "a zero point")?;
            (s, z)
        } else {
            let s = self.atom("a scale")?;
            self.expect(b',', "','")?;
            let z = self.atom("a zero point")?;
            (vec![s], vec![z])
        };
        self.expect(b')', "')'")?;
        let scales = scales
            .into_iter()
            .map(|(s, p)| {
                parse_f32(s).map_or_else(|| perr(p, format!("expected a scale, found '{s}'")), Ok)
            })
            .collect::<PResult<Vec<f32>>>()?;
        let zero_points = zero_points
            .into_iter()
            .map(|(z, p)| {
                z.parse::<i32>().map_or_else(
                    |_| perr(p, format!("expected a zero point, found '{z}'")),
                    Ok,
                )
            })
            .collect::<PResult<Vec<i32>>>()?;
        let Some(storage) = storage.or(dtype.qtype()) else {
            return perr(
                dpos,
                format!("{dtype} has no quantized storage type; write q(storage=..., ...)"),
            );
        };
        Ok(QuantParams {
            storage,
            axis,
            scales,
            zero_points,
        })
    }

    // ---------------------------------------------------------------- module

    fn module(&mut self) -> PResult<()> {
        while self.peek() == Some(b'#') {
            self.const_def()?;
        }
        self.expect_keyword("func", "'func' or a constant '#N = const ...'")?;
        self.sigil_name(b'@', "a function name '@main'")?;
        self.expect(b'(', "'('")?;
        if !self.eat(b')') {
            // A trailing comma is allowed: long signatures print one port per line.
            loop {
                self.param()?;
                let comma = self.eat(b',');
                if self.eat(b')') {
                    break;
                }
                if !comma {
                    return self.unexpected("',' or ')'");
                }
            }
        }
        self.expect_arrow()?;
        let results = self.result_decls()?;
        self.expect(b'{', "'{' opening the body")?;
        loop {
            self.ws();
            let at = self.pos;
            if self.keyword("return") {
                self.ret(&results, at)?;
                break;
            }
            self.stmt()?;
        }
        self.expect(b'}', "'}' after 'return'")?;
        self.ws();
        if self.pos < self.b.len() {
            return self.unexpected("end of input after the function");
        }
        Ok(())
    }

    /// `#name = const dtype[shape] data`.
    fn const_def(&mut self) -> PResult<()> {
        let (name, npos) = self.sigil_name(b'#', "a constant '#N'")?;
        if self.consts.contains_key(name) {
            return perr(npos, format!("constant #{name} defined twice"));
        }
        self.expect(b'=', "'='")?;
        self.expect_keyword("const", "'const'")?;
        let (dtype, _) = self.dtype()?;
        let shape = self.shape()?;
        self.ws();
        let dpos = self.pos;
        let tensor_err = |e: crate::Error| PErr {
            pos: dpos,
            msg: format!("constant #{name}: {e}"),
        };
        let t = if self.peek() == Some(b'[') {
            let items = self.atom_list(b'[', b']', "an element")?;
            let data = parse_elems(dtype, &items)?;
            Arc::new(Tensor::new(shape, data).map_err(tensor_err)?)
        } else if self.keyword("hex") {
            let bytes = self.hex_string()?;
            let data = TensorData::from_le_bytes(dtype, &bytes).map_err(tensor_err)?;
            Arc::new(Tensor::new(shape, data).map_err(tensor_err)?)
        } else if self.keyword("digest") {
            let (h, hpos) = self.atom("a hex digest")?;
            let Some(d) = parse_hex_u64(h, 16) else {
                return perr(
                    hpos,
                    format!("expected a digest of 1 to 16 hex digits, found '{h}'"),
                );
            };
            let ty = TensorType::new(dtype, shape.clone());
            let Some(t) = (self.resolve)(d, &ty) else {
                return perr(
                    dpos,
                    format!("constant #{name} ({dtype}{shape}) has digest {d:016x} but no data, and no resolver provides it"),
                );
            };
            if t.dtype() != dtype || t.shape() != &shape || t.digest() != d {
                return perr(
                    dpos,
                    format!(
                        "constant #{name}: the resolver gave a {}{} tensor with digest {:016x}, expected {dtype}{shape} with digest {d:016x}",
                        t.dtype(),
                        t.shape(),
                        t.digest()
                    ),
                );
            }
            t
        } else {
            return self.unexpected("constant data ('[...]', 'hex \"...\"' or 'digest ...')");
        };
        let id = self.g.add_const_tensor(t);
        self.consts.insert(name, id);
        Ok(())
    }

    fn define(&mut self, name: &'a str, pos: usize, v: ValueId) -> PResult<()> {
        if self.values.insert(name, v).is_some() {
            return perr(pos, format!("value %{name} defined twice"));
        }
        Ok(())
    }

    fn lookup(&self, name: &str, pos: usize) -> PResult<ValueId> {
        self.values
            .get(name)
            .copied()
            .map_or_else(|| perr(pos, format!("undefined value %{name}")), Ok)
    }

    fn lookup_const(&self, name: &str, pos: usize) -> PResult<ConstId> {
        self.consts
            .get(name)
            .copied()
            .map_or_else(|| perr(pos, format!("undefined constant #{name}")), Ok)
    }

    /// `%name "port": type`.
    fn param(&mut self) -> PResult<()> {
        let (name, pos) = self.sigil_name(b'%', "a parameter '%N'")?;
        let port = if self.peek() == Some(b'"') {
            self.string("a port name")?
        } else {
            name.to_string()
        };
        self.expect(b':', "':' before the parameter type")?;
        let ty = self.ty()?;
        let v = self.g.add_input(port, ty);
        self.define(name, pos, v)
    }

    fn result_decls(&mut self) -> PResult<Vec<ResultDecl>> {
        if !self.eat(b'(') {
            return Ok(vec![self.result_decl()?]);
        }
        let mut decls = Vec::new();
        if self.eat(b')') {
            return Ok(decls);
        }
        loop {
            decls.push(self.result_decl()?);
            let comma = self.eat(b',');
            if self.eat(b')') {
                return Ok(decls);
            }
            if !comma {
                return self.unexpected("',' or ')'");
            }
        }
    }

    fn result_decl(&mut self) -> PResult<ResultDecl> {
        let name = if self.peek() == Some(b'"') {
            let s = self.string("a port name")?;
            self.expect(b':', "':' before the result type")?;
            Some(s)
        } else {
            None
        };
        Ok(ResultDecl {
            name,
            ty: self.ty()?,
        })
    }

    /// `return %a, %b` (after the keyword at `at`), checked against the signature.
    fn ret(&mut self, decls: &[ResultDecl], at: usize) -> PResult<()> {
        let mut vals = Vec::new();
        if self.peek() == Some(b'%') {
            loop {
                vals.push(self.sigil_name(b'%', "a value '%N'")?);
                if !self.eat(b',') {
                    break;
                }
            }
        }
        if vals.len() != decls.len() {
            return perr(
                at,
                format!(
                    "return gives {} values, the signature declares {}",
                    vals.len(),
                    decls.len()
                ),
            );
        }
        for (d, &(name, pos)) in decls.iter().zip(&vals) {
            let v = self.lookup(name, pos)?;
            let ty = self.g.ty(v);
            if ty != &d.ty {
                return perr(
                    pos,
                    format!(
                        "%{name} has type {}, the signature declares {}",
                        type_string(ty),
                        type_string(&d.ty)
                    ),
                );
            }
            let port = d.name.clone().unwrap_or_else(|| name.to_string());
            self.g.add_output(port, v);
        }
        Ok(())
    }

    /// A `const` value line or a node.
    fn stmt(&mut self) -> PResult<()> {
        let mut results = Vec::new();
        if self.peek() == Some(b'%') {
            loop {
                results.push(self.sigil_name(b'%', "a result '%N'")?);
                if !self.eat(b',') {
                    break;
                }
            }
            self.expect(b'=', "'=' after the results")?;
        }
        let (op, op_pos) = self.atom("an op name or 'return'")?;
        if op == "const" {
            return self.const_value(&results, op_pos);
        }

        let mut inputs = Vec::new();
        if self.operand_on_this_line() {
            loop {
                inputs.push(self.operand()?);
                if !self.eat(b',') {
                    break;
                }
            }
        }
        let mut attrs = Attrs {
            op,
            op_pos,
            items: Vec::new(),
        };
        if self.peek() == Some(b'{') {
            self.attrs(&mut attrs)?;
        }
        let mut types = Vec::new();
        if self.eat(b':') {
            loop {
                types.push(self.ty()?);
                if !self.eat(b',') {
                    break;
                }
            }
        }
        if types.len() != results.len() {
            return perr(
                op_pos,
                format!(
                    "{op}: {} results but {} result types",
                    results.len(),
                    types.len()
                ),
            );
        }
        let name = if self.keyword("loc") {
            self.expect(b'(', "'(' after 'loc'")?;
            let s = self.string("a node name")?;
            self.expect(b')', "')'")?;
            s
        } else {
            String::new()
        };
        let op = build_op(attrs)?;
        let node = self.g.add_node(op, inputs, types, name);
        let outputs = self.g.node(node).outputs.clone();
        for (&(name, pos), v) in results.iter().zip(outputs) {
            self.define(name, pos, v)?;
        }
        Ok(())
    }

    /// `%v = const #c (: type)?`; without a type, the tensor's own (unquantized).
    fn const_value(&mut self, results: &[(&'a str, usize)], op_pos: usize) -> PResult<()> {
        let &[(name, pos)] = results else {
            return perr(op_pos, "'const' defines exactly one value");
        };
        let (cname, cpos) = self.sigil_name(b'#', "a constant '#N'")?;
        let c = self.lookup_const(cname, cpos)?;
        let ty = if self.eat(b':') {
            self.ty()?
        } else {
            self.const_type(c)
        };
        let v = ValueId::from_index(self.g.values.len());
        // Pushed directly (not `add_const_value`) so the printed type is kept as is.
        self.g.values.push(Value {
            ty,
            def: ValueDef::Const(c),
        });
        self.define(name, pos, v)
    }

    fn const_type(&self, c: ConstId) -> TensorType {
        let t = self
            .g
            .consts
            .get(c.index())
            .expect("invariant: constant ids come from the parsed header");
        TensorType::new(t.dtype(), t.shape().clone())
    }

    /// `%v`, or `#c`: a new unquantized value of constant `c`.
    fn operand(&mut self) -> PResult<ValueId> {
        if self.peek() == Some(b'#') {
            let (cname, cpos) = self.sigil_name(b'#', "a constant '#N'")?;
            let c = self.lookup_const(cname, cpos)?;
            let ty = self.const_type(c);
            let v = ValueId::from_index(self.g.values.len());
            self.g.values.push(Value {
                ty,
                def: ValueDef::Const(c),
            });
            return Ok(v);
        }
        let (name, pos) = self.sigil_name(b'%', "an operand '%N' or '#N'")?;
        self.lookup(name, pos)
    }

    /// `{key=value, ...}`: values kept as text until the op says what they are.
    fn attrs(&mut self, attrs: &mut Attrs<'a>) -> PResult<()> {
        self.expect(b'{', "'{'")?;
        if self.eat(b'}') {
            return Ok(());
        }
        loop {
            let (key, kpos) = self.atom("an attribute name")?;
            if attrs.items.iter().any(|it| it.key == key) {
                return perr(kpos, format!("attribute '{key}' given twice"));
            }
            self.expect(b'=', "'=' after the attribute name")?;
            self.ws();
            let vpos = self.pos;
            let val = if self.peek() == Some(b'[') {
                AttrVal::List(self.atom_list(b'[', b']', "a list element")?)
            } else {
                let (a, _) = self.atom("an attribute value")?;
                if self.peek() == Some(b'(') {
                    AttrVal::Call(a, self.atom_list(b'(', b')', "an argument")?)
                } else {
                    AttrVal::Atom(a)
                }
            };
            attrs.items.push(AttrItem {
                key,
                kpos,
                vpos,
                val,
            });
            if self.eat(b',') {
                continue;
            }
            self.expect(b'}', "',' or '}'")?;
            return Ok(());
        }
    }
}

fn qtype_from_name(s: &str) -> Option<QType> {
    [QType::U8, QType::I8, QType::U16, QType::I16, QType::I32]
        .into_iter()
        .find(|q| q.name() == s)
}

fn parse_elems(dtype: DType, items: &[(&str, usize)]) -> PResult<TensorData> {
    fn all<T>(
        items: &[(&str, usize)],
        dtype: DType,
        f: impl Fn(&str) -> Option<T>,
    ) -> PResult<Vec<T>> {
        items
            .iter()
            .map(|&(s, p)| {
                f(s).map_or_else(
                    || perr(p, format!("expected a value of type {dtype}, found '{s}'")),
                    Ok,
                )
            })
            .collect()
    }
    fn int<T: std::str::FromStr>(s: &str) -> Option<T> {
        s.parse().ok()
    }
    let f16 = |s: &str| {
        parse_half(
            s,
            half::f16::NAN.to_bits(),
            |x| half::f16::from_f32(x).to_bits(),
            |b| half::f16::from_bits(b).is_nan(),
        )
    };
    let bf16 = |s: &str| {
        parse_half(
            s,
            half::bf16::NAN.to_bits(),
            |x| half::bf16::from_f32(x).to_bits(),
            |b| half::bf16::from_bits(b).is_nan(),
        )
    };
    Ok(match dtype {
        DType::F32 => TensorData::F32(all(items, dtype, parse_f32)?),
        DType::F64 => TensorData::F64(all(items, dtype, parse_f64)?),
        DType::F16 => TensorData::F16(all(items, dtype, f16)?),
        DType::BF16 => TensorData::BF16(all(items, dtype, bf16)?),
        DType::I8 => TensorData::I8(all(items, dtype, int)?),
        DType::U8 => TensorData::U8(all(items, dtype, int)?),
        DType::I16 => TensorData::I16(all(items, dtype, int)?),
        DType::U16 => TensorData::U16(all(items, dtype, int)?),
        DType::I32 => TensorData::I32(all(items, dtype, int)?),
        DType::U32 => TensorData::U32(all(items, dtype, int)?),
        DType::I64 => TensorData::I64(all(items, dtype, int)?),
        DType::U64 => TensorData::U64(all(items, dtype, int)?),
        DType::Bool => TensorData::Bool(all(items, dtype, parse_bool)?),
    })
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn parse_usize(s: &str) -> Option<usize> {
    s.parse().ok()
}

// ---------------------------------------------------------------- attributes → ops

enum AttrVal<'a> {
    Atom(&'a str),
    List(Vec<(&'a str, usize)>),
    Call(&'a str, Vec<(&'a str, usize)>),
}

struct AttrItem<'a> {
    key: &'a str,
    kpos: usize,
    vpos: usize,
    val: AttrVal<'a>,
}

/// The attributes of one node, consumed key by key as the op is built; any left over
/// are unknown to that op.
struct Attrs<'a> {
    op: &'a str,
    op_pos: usize,
    items: Vec<AttrItem<'a>>,
}

const UINTS: &str = "a list of unsigned integers";

impl<'a> Attrs<'a> {
    fn take(&mut self, key: &str) -> Option<(usize, AttrVal<'a>)> {
        let i = self.items.iter().position(|it| it.key == key)?;
        let it = self.items.remove(i);
        Some((it.vpos, it.val))
    }

    fn wrong<T>(&self, pos: usize, key: &str, what: &str) -> PResult<T> {
        perr(
            pos,
            format!("{}: attribute '{key}' expects {what}", self.op),
        )
    }

    fn scalar<T>(
        &mut self,
        key: &str,
        what: &str,
        conv: impl Fn(&str) -> Option<T>,
    ) -> PResult<Option<T>> {
        match self.take(key) {
            None => Ok(None),
            Some((p, AttrVal::Atom(a))) => match conv(a) {
                Some(v) => Ok(Some(v)),
                None => self.wrong(p, key, &format!("{what}, found '{a}'")),
            },
            Some((p, _)) => self.wrong(p, key, what),
        }
    }

    fn list<T>(
        &mut self,
        key: &str,
        what: &str,
        conv: impl Fn(&str) -> Option<T>,
    ) -> PResult<Option<Vec<T>>> {
        match self.take(key) {
            None => Ok(None),
            Some((_, AttrVal::List(items))) => {
                let mut out = Vec::with_capacity(items.len());
                for (s, p) in items {
                    match conv(s) {
                        Some(v) => out.push(v),
                        None => return self.wrong(p, key, &format!("{what}, found '{s}'")),
                    }
                }
                Ok(Some(out))
            }
            Some((p, _)) => self.wrong(p, key, what),
        }
    }

    fn required<T>(&self, v: Option<T>, key: &str) -> PResult<T> {
        v.map_or_else(
            || {
                perr(
                    self.op_pos,
                    format!("{}: missing attribute '{key}'", self.op),
                )
            },
            Ok,
        )
    }

    fn req_usize(&mut self, key: &str) -> PResult<usize> {
        let v = self.scalar(key, "an unsigned integer", parse_usize)?;
        self.required(v, key)
    }

    fn req_f32(&mut self, key: &str) -> PResult<f32> {
        let v = self.scalar(key, "a float", parse_f32)?;
        self.required(v, key)
    }

    fn opt_f32(&mut self, key: &str, default: f32) -> PResult<f32> {
        Ok(self.scalar(key, "a float", parse_f32)?.unwrap_or(default))
    }

    fn opt_bool(&mut self, key: &str) -> PResult<bool> {
        Ok(self
            .scalar(key, "true or false", parse_bool)?
            .unwrap_or(false))
    }

    fn req_uints(&mut self, key: &str) -> PResult<Vec<usize>> {
        let v = self.list(key, UINTS, parse_usize)?;
        self.required(v, key)
    }

    /// `act=none|relu|clip(min, max)`, absent meaning none.
    fn act(&mut self) -> PResult<Activation> {
        const WHAT: &str = "none, relu or clip(min, max)";
        match self.take("act") {
            None | Some((_, AttrVal::Atom("none"))) => Ok(Activation::None),
            Some((_, AttrVal::Atom("relu"))) => Ok(Activation::Relu),
            Some((p, AttrVal::Call("clip", args))) => match args.as_slice() {
                &[(lo, lp), (hi, hp)] => {
                    let Some(min) = parse_f32(lo) else {
                        return self.wrong(lp, "act", "a float clip bound");
                    };
                    let Some(max) = parse_f32(hi) else {
                        return self.wrong(hp, "act", "a float clip bound");
                    };
                    Ok(Activation::Clip { min, max })
                }
                _ => self.wrong(p, "act", WHAT),
            },
            Some((p, _)) => self.wrong(p, "act", WHAT),
        }
    }

    /// Window geometry with the defaults the printer omits: unit strides and
    /// dilations, zero pads (`2 * rank` of them).
    fn geometry(&mut self) -> PResult<Geometry> {
        let kernel = self.req_uints("kernel")?;
        let k = kernel.len();
        let strides = self
            .list("strides", UINTS, parse_usize)?
            .unwrap_or_else(|| vec![1; k]);
        let dilations = self
            .list("dilations", UINTS, parse_usize)?
            .unwrap_or_else(|| vec![1; k]);
        let pads = self
            .list("pads", UINTS, parse_usize)?
            .unwrap_or_else(|| vec![0; 2 * k]);
        Ok(Geometry {
            kernel,
            strides,
            dilations,
            pads,
        })
    }

    fn conv(&mut self) -> PResult<ConvAttrs> {
        let Geometry {
            kernel,
            strides,
            dilations,
            pads,
        } = self.geometry()?;
        let group = self
            .scalar("group", "an unsigned integer", parse_usize)?
            .unwrap_or(1);
        Ok(ConvAttrs {
            kernel,
            strides,
            dilations,
            pads,
            group,
            act: self.act()?,
        })
    }

    fn conv_transpose(&mut self) -> PResult<ConvTransposeAttrs> {
        let Geometry {
            kernel,
            strides,
            dilations,
            pads,
        } = self.geometry()?;
        let output_padding = self
            .list("output_padding", UINTS, parse_usize)?
            .unwrap_or_else(|| vec![0; kernel.len()]);
        let group = self
            .scalar("group", "an unsigned integer", parse_usize)?
            .unwrap_or(1);
        Ok(ConvTransposeAttrs {
            kernel,
            strides,
            dilations,
            pads,
            output_padding,
            group,
            act: self.act()?,
        })
    }

    fn pool(&mut self) -> PResult<PoolAttrs> {
        let Geometry {
            kernel,
            strides,
            dilations,
            pads,
        } = self.geometry()?;
        Ok(PoolAttrs {
            kernel,
            strides,
            dilations,
            pads,
            ceil_mode: self.opt_bool("ceil_mode")?,
        })
    }

    fn finish(&self) -> PResult<()> {
        match self.items.first() {
            Some(it) => perr(
                it.kpos,
                format!("{}: unknown attribute '{}'", self.op, it.key),
            ),
            None => Ok(()),
        }
    }
}

struct Geometry {
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    pads: Vec<usize>,
}

/// The op named `a.op` with its attributes; the inverse of `print::attrs`.
fn build_op(mut a: Attrs<'_>) -> PResult<Op> {
    let op = match a.op {
        "quantize" => Op::Quantize,
        "dequantize" => Op::Dequantize,
        "requantize" => Op::Requantize,
        "dynamic_quantize" => Op::DynamicQuantize,
        "cast" => {
            let to = a.scalar("to", "an element type", DType::from_name)?;
            Op::Cast {
                to: a.required(to, "to")?,
            }
        }
        "conv" => Op::Conv(a.conv()?),
        "conv_integer" => Op::ConvInteger(a.conv()?),
        "conv_transpose" => Op::ConvTranspose(a.conv_transpose()?),
        "gemm" => Op::Gemm(GemmAttrs {
            alpha: a.opt_f32("alpha", 1.0)?,
            beta: a.opt_f32("beta", 1.0)?,
            trans_a: a.opt_bool("trans_a")?,
            trans_b: a.opt_bool("trans_b")?,
            act: a.act()?,
        }),
        "matmul" => Op::MatMul { act: a.act()? },
        "matmul_integer" => Op::MatMulInteger,
        "batch_norm" => Op::BatchNorm {
            epsilon: a.req_f32("epsilon")?,
        },
        "add" => Op::Add { act: a.act()? },
        "sub" => Op::Sub,
        "mul" => Op::Mul,
        "div" => Op::Div,
        "sum" => Op::Sum,
        "relu" => Op::Relu,
        "leaky_relu" => Op::LeakyRelu {
            alpha: a.req_f32("alpha")?,
        },
        "prelu" => Op::PRelu,
        "clip" => Op::Clip {
            min: a.scalar("min", "a float", parse_f64)?,
            max: a.scalar("max", "a float", parse_f64)?,
        },
        "sigmoid" => Op::Sigmoid,
        "hard_sigmoid" => Op::HardSigmoid {
            alpha: a.req_f32("alpha")?,
            beta: a.req_f32("beta")?,
        },
        "hard_swish" => Op::HardSwish,
        "tanh" => Op::Tanh,
        "max_pool" => Op::MaxPool {
            pool: a.pool()?,
            storage_order: a
                .scalar("storage_order", "0 or 1", |s| s.parse::<u8>().ok())?
                .unwrap_or(0),
        },
        "average_pool" => Op::AveragePool {
            pool: a.pool()?,
            count_include_pad: a.opt_bool("count_include_pad")?,
        },
        "global_average_pool" => Op::GlobalAveragePool,
        "global_max_pool" => Op::GlobalMaxPool,
        "flatten" => Op::Flatten {
            axis: a.req_usize("axis")?,
        },
        "reshape" => Op::Reshape {
            shape: a.req_uints("shape")?,
        },
        "squeeze" => Op::Squeeze {
            axes: a.req_uints("axes")?,
        },
        "unsqueeze" => Op::Unsqueeze {
            axes: a.req_uints("axes")?,
        },
        "transpose" => Op::Transpose {
            perm: a.req_uints("perm")?,
        },
        "concat" => Op::Concat {
            axis: a.req_usize("axis")?,
        },
        "pad" => {
            let pads = a.list("pads", "a list of integers", |s| s.parse::<i64>().ok())?;
            Op::Pad {
                pads: a.required(pads, "pads")?,
                value: a.scalar("value", "a float", parse_f64)?.unwrap_or(0.0),
            }
        }
        "softmax" => Op::Softmax {
            axis: a.req_usize("axis")?,
        },
        "reduce_mean" => {
            let axes = a.req_uints("axes")?;
            let keepdims = a.scalar("keepdims", "true or false", parse_bool)?;
            Op::ReduceMean {
                axes,
                keepdims: a.required(keepdims, "keepdims")?,
            }
        }
        "lrn" => Op::Lrn(LrnAttrs {
            size: a.req_usize("size")?,
            alpha: a.req_f32("alpha")?,
            beta: a.req_f32("beta")?,
            bias: a.req_f32("bias")?,
        }),
        "identity" => Op::Identity,
        other => return perr(a.op_pos, format!("unknown op '{other}'")),
    };
    a.finish()?;
    Ok(op)
}
