//! The rewrite tables and what they share: rule constructors, the node builder that
//! only adds nodes the verifier accepts, and the exactness predicates of quantized
//! arithmetic that several rules rely on.
//!
//! **Invariants.**
//! - Every rule name is unique kebab-case; `all()` is the table the pass runs.
//! - A rule only ever unions a class with an expression that computes the same values
//!   as the interpreter defines them (quantized results bit-identical, float results
//!   up to reassociation); the comment above each rule states the identity and the
//!   condition that makes it exact, and the applier checks that condition.
//! - Every op e-node a rule adds has passed `qc_ir::verify::verify_node` on its
//!   operand and result types ([`add_op`]), so extraction only ever builds valid nodes.
//! - Rules that move work into a producer (fusion, folding) only fire when the
//!   producer has no other user ([`single_use`]), so no work is duplicated.

pub mod fusion;
pub mod qdq;
pub mod requant;

use egg::{Applier, Id, Pattern, PatternAst, Rewrite, SearchMatches, Searcher, Subst, Symbol, Var};
use qc_ir::{Activation, Graph, Op, QuantParams, TensorType};

use super::analysis::{attr_of, type_of, Attr, EGraph, QcAnalysis};
use super::lang::{enode, op_enode, Qc};

/// A rewrite of this language and analysis.
pub type Rw = Rewrite<Qc, QcAnalysis>;

/// Every rule of the pass, in table order (fusion, qdq, requant).
pub fn all() -> Vec<Rw> {
    let mut r = fusion::rules();
    r.extend(qdq::rules());
    r.extend(requant::rules());
    r
}

/// The rules named in `names`, in table order (for tests and `--passes`-style
/// experiments); unknown names are ignored.
pub fn by_name(names: &[&str]) -> Vec<Rw> {
    all()
        .into_iter()
        .filter(|r| names.contains(&r.name.as_str()))
        .collect()
}

/// One match handed to an applier function.
pub(crate) struct Match<'a> {
    pub eg: &'a mut EGraph,
    /// The matched class.
    pub class: Id,
    pub subst: &'a Subst,
    /// The rule's argument (e.g. the producer op of an activation fusion).
    pub arg: &'static str,
}

impl Match<'_> {
    /// The class bound to pattern variable `v` (`"?x"`).
    pub fn var(&self, v: &str) -> Option<Id> {
        let var: Var = v.parse().ok()?;
        self.subst.get(var).copied()
    }

    /// The classes bound to several variables.
    pub fn vars<const N: usize>(&self, vs: [&str; N]) -> Option<[Id; N]> {
        let mut out = [Id::from(0usize); N];
        for (o, v) in out.iter_mut().zip(vs) {
            *o = self.var(v)?;
        }
        Some(out)
    }
}

/// An applier: the id to union with the matched class, or `None` (no rewrite).
pub(crate) type ApplyFn = fn(&mut Match) -> Option<Id>;

struct FnApplier {
    f: ApplyFn,
    arg: &'static str,
}

impl Applier<Qc, QcAnalysis> for FnApplier {
    fn apply_one(
        &self,
        eg: &mut EGraph,
        eclass: Id,
        subst: &Subst,
        _searcher_ast: Option<&PatternAst<Qc>>,
        _rule_name: Symbol,
    ) -> Vec<Id> {
        let mut m = Match {
            eg,
            class: eclass,
            subst,
            arg: self.arg,
        };
        match (self.f)(&mut m) {
            Some(id) if m.eg.union(eclass, id) => vec![eclass],
            _ => vec![],
        }
    }
}

/// A rule: an egg pattern and an applier function.
pub(crate) fn rw(name: &'static str, pattern: &str, f: ApplyFn) -> Rw {
    rw_arg(name, pattern, "", f)
}

/// A rule whose applier also receives `arg`.
pub(crate) fn rw_arg(name: &'static str, pattern: &str, arg: &'static str, f: ApplyFn) -> Rw {
    let pat: Pattern<Qc> = pattern
        .parse()
        .expect("invariant: rule patterns are valid s-expressions of the language");
    Rewrite::new(name, pat, FnApplier { f, arg })
        .expect("invariant: function appliers bind no pattern variables")
}

/// Matches every class holding an e-node that satisfies a predicate (for variadic
/// ops, which a fixed-arity pattern cannot match). Binds no variables.
struct KindSearcher(fn(&Qc) -> bool);

impl Searcher<Qc, QcAnalysis> for KindSearcher {
    fn search_eclass_with_limit(
        &self,
        eg: &EGraph,
        eclass: Id,
        limit: usize,
    ) -> Option<SearchMatches<'_, Qc>> {
        (limit > 0 && eg[eclass].nodes.iter().any(|n| (self.0)(n))).then(|| SearchMatches {
            eclass,
            substs: vec![Subst::default()],
            ast: None,
        })
    }

    fn vars(&self) -> Vec<Var> {
        vec![]
    }
}

/// A rule over every class holding an e-node of one kind.
pub(crate) fn rw_kind(name: &'static str, kind: fn(&Qc) -> bool, f: ApplyFn) -> Rw {
    Rewrite::new(name, KindSearcher(kind), FnApplier { f, arg: "" })
        .expect("invariant: function appliers bind no pattern variables")
}

// ---------------------------------------------------------------------------------
// reading the e-graph

/// The attribute of an attribute-leaf class (cloned: appliers then mutate the graph).
pub(crate) fn attr(eg: &EGraph, id: Id) -> Option<Attr> {
    attr_of(eg, id).cloned()
}

/// The single type of a tensor class.
pub(crate) fn ty(eg: &EGraph, id: Id) -> Option<TensorType> {
    type_of(eg, id).cloned()
}

/// The single type named by a type-leaf class.
pub(crate) fn leaf_ty(eg: &EGraph, id: Id) -> Option<TensorType> {
    eg.analysis.tensor_type(eg[id].data.ty_leaf?).cloned()
}

pub(crate) fn is_absent(eg: &EGraph, id: Id) -> bool {
    eg[id].nodes.iter().any(|n| matches!(n, Qc::Absent))
}

/// No consumer besides the one being rewritten is known (see `analysis`).
pub(crate) fn single_use(eg: &EGraph, id: Id) -> bool {
    eg[id].data.uses <= 1
}

/// The class of the e-node `name(children)`, if it is in the e-graph.
pub(crate) fn class_of(eg: &EGraph, name: &str, children: Vec<Id>) -> Option<Id> {
    eg.lookup(enode(name, children)?)
}

/// The e-nodes of a class that satisfy `pred` (cloned).
pub(crate) fn nodes_where(eg: &EGraph, id: Id, pred: impl Fn(&Qc) -> bool) -> Vec<Qc> {
    eg[id].nodes.iter().filter(|n| pred(n)).cloned().collect()
}

/// `(dequantize attr, x)` of a `dequantize x` e-node in the class, if any.
pub(crate) fn dequantized(eg: &EGraph, id: Id) -> Option<(Id, Id)> {
    eg[id].nodes.iter().find_map(|n| match n {
        Qc::Dequantize([a, _, x]) => Some((*a, *x)),
        _ => None,
    })
}

/// The operands of an op e-node without the `Absent` padding.
pub(crate) fn present_operands(eg: &EGraph, operands: &[Id]) -> Vec<Id> {
    operands
        .iter()
        .copied()
        .filter(|&o| !is_absent(eg, o))
        .collect()
}

// ---------------------------------------------------------------------------------
// building

pub(crate) fn attr_leaf(eg: &mut EGraph, op: Op, name: &str) -> Id {
    let k = eg.analysis.intern_attr(op, name);
    eg.add(Qc::Attr(k))
}

pub(crate) fn type_leaf(eg: &mut EGraph, ty: TensorType) -> Id {
    let k = eg.analysis.intern_types(vec![ty]);
    eg.add(Qc::Ty(k))
}

/// Whether the verifier accepts one node `op(operands) -> result`.
pub(crate) fn node_is_valid(op: &Op, operands: &[TensorType], result: &TensorType) -> bool {
    let mut g = Graph::new();
    let ins = operands
        .iter()
        .enumerate()
        .map(|(i, t)| g.add_input(i.to_string(), t.clone()))
        .collect();
    let n = g.add_node(op.clone(), ins, vec![result.clone()], "");
    qc_ir::verify::verify_node(&g, n).is_ok()
}

/// Add `op` (named `name`) on `operands` (absent ones left out) with result type `ty`,
/// if the verifier accepts the node; returns its class.
pub(crate) fn add_op(
    eg: &mut EGraph,
    op: Op,
    name: &str,
    operands: &[Id],
    ty: TensorType,
) -> Option<Id> {
    let tys: Vec<TensorType> = operands
        .iter()
        .map(|&o| type_of(eg, o).cloned())
        .collect::<Option<_>>()?;
    if !node_is_valid(&op, &tys, &ty) {
        return None;
    }
    let a = attr_leaf(eg, op.clone(), name);
    let t = type_leaf(eg, ty);
    let absent = eg.add(Qc::Absent);
    let n = op_enode(&op, a, t, operands, absent)?;
    Some(eg.add(n))
}

/// [`add_op`] with the result type inferred: only for ops whose inference determines
/// the result completely (raw results, or quantization params implied by the
/// operands); `None` where the params of a quantized result would be a choice.
pub(crate) fn add_inferred(eg: &mut EGraph, op: Op, name: &str, operands: &[Id]) -> Option<Id> {
    let tys: Vec<TensorType> = operands
        .iter()
        .map(|&o| type_of(eg, o).cloned())
        .collect::<Option<_>>()?;
    let refs: Vec<&TensorType> = tys.iter().collect();
    let out = qc_ir::infer::infer(&op, &refs).ok()?;
    let first = out.into_iter().next()?;
    if first.quant.is_none() && tys.iter().any(TensorType::is_quantized) && !first.dtype.is_float()
    {
        return None;
    }
    add_op(eg, op, name, operands, first)
}

/// Whether inference leaves the quantization params of `op`'s (quantized) result to
/// the builder, i.e. the result type may be changed without changing the operands.
pub(crate) fn result_params_are_a_choice(op: &Op, operands: &[TensorType]) -> bool {
    let refs: Vec<&TensorType> = operands.iter().collect();
    qc_ir::infer::infer(op, &refs).is_ok_and(|out| out.len() == 1 && out[0].quant.is_none())
}

// ---------------------------------------------------------------------------------
// exactness of quantized arithmetic

/// `quantize(dequantize(q)) == q` for every code `q` of `p`, so re-quantizing a
/// dequantized value with its own params (what every quantized data-movement op,
/// max-pool and relu does in the interpreter) changes nothing.
///
/// With `k = q - zp`, dequantize is `s * k` rounded once, quantize divides by `s` and
/// rounds to nearest: `(s * k) / s` is within `2^-23 * |k|` of `k`, below 1/2 for
/// `|k| < 2^16`, so storage of at most 16 bits is exact, provided `s * (qmax - qmin)`
/// does not overflow f32 (then the product is finite and the relative error bound
/// holds; `s` subnormal keeps `s * k` exact). i32 storage is not.
pub(crate) fn roundtrip_exact(p: &QuantParams) -> bool {
    let range = (p.storage.max() - p.storage.min()) as f32;
    p.storage.bits() <= 16
        && !p.scales.is_empty()
        && p.scales
            .iter()
            .all(|&s| s.is_finite() && s > 0.0 && (s * range).is_finite())
}

/// Per channel `(scale, zero point)` pairs of two params of the same layout.
fn channels<'a>(
    a: &'a QuantParams,
    b: &'a QuantParams,
) -> Option<impl Iterator<Item = ((f32, i32), (f32, i32))> + 'a> {
    (a.axis == b.axis
        && a.len() == b.len()
        && a.scales.len() == a.zero_points.len()
        && b.scales.len() == b.zero_points.len())
    .then(|| {
        a.scales
            .iter()
            .zip(&a.zero_points)
            .zip(b.scales.iter().zip(&b.zero_points))
            .map(|((&sa, &za), (&sb, &zb))| ((sa, za), (sb, zb)))
    })
}

/// At most this many codes (over all channels) are re-encoded by
/// [`reencodes_exactly`]; beyond it nothing is claimed.
const MAX_CHECKED_CODES: i64 = 1 << 20;

/// Re-encoding every code of `from` in `to` keeps its real value bit for bit:
/// `dequantize_to(requantize_to(q)) == dequantize_from(q)` for every code `q` of every
/// channel of `from` (same layout: per tensor, or per axis on the same axis with as
/// many channels). Then whatever reads the re-encoded value through a dequantize (a
/// requantize, any op on quantized types) sees the same reals as from `q` itself.
///
/// Checked exhaustively (storage of at most 16 bits, at most [`MAX_CHECKED_CODES`]
/// codes in all), so no float error analysis is needed. It holds when `to`'s grid
/// contains `from`'s: `s_from = k * s_to` exactly for an integer `k >= 1`, the zero
/// points map (`q' = z_to + k (q - z_from)`) and no code saturates — e.g. u8 q(0.5, 0)
/// → u16 q(0.25, 0) is `q' = 2q`, u8 zp 128 → i8 zp 0 at one scale is `q' = q - 128`.
pub(crate) fn reencodes_exactly(from: &QuantParams, to: &QuantParams) -> bool {
    let codes = from.storage.max() - from.storage.min() + 1;
    if from.storage.bits() > 16 || codes.saturating_mul(from.len() as i64) > MAX_CHECKED_CODES {
        return false;
    }
    channels(from, to).is_some()
        && (0..from.len()).all(|c| {
            (from.storage.min()..=from.storage.max()).all(|q| {
                let r = from.dequantize(q, c);
                to.dequantize(to.quantize(r, c), c).to_bits() == r.to_bits()
            })
        })
}

/// `to` has `from`'s scales (bitwise) and, relative to its zero point, a storage range
/// inside `from`'s in every channel: `[min_to - z_to, max_to - z_to] ⊆
/// [min_from - z_from, max_from - z_from]` (i16 zp 0 → u8 zp 0 narrows, u8 zp 128 ↔
/// i8 zp 0 only moves the storage; u8 → i16 widens and is not this).
///
/// Why computing a result directly in `to` then equals `requantize_to(result in
/// from)`: every quantized producer ends in `sat(k + z)` with the same rounded
/// `k = round(real / s)` whatever the zero point (qmath adds the zero point after
/// rounding), possibly clamped to the quantized images of a fused activation's
/// bounds, which relative to the zero point are `clamp_R(round(bound / s))`. The
/// requantize (with [`roundtrip_exact`] of `from`) maps a code `q` to
/// `sat_to(q - z_from + z_to)`. Relative to the zero points every step is a clamp
/// of `k` to an interval, and clamping to `R_from` and then to `R_to ⊆ R_from` is
/// clamping to `R_to`: `sat_to(sat_from(v)) = sat_to(v)`. When `to` is wider, values
/// saturated in `from` would not saturate in `to`, so this does not hold.
pub(crate) fn narrowing(from: &QuantParams, to: &QuantParams) -> bool {
    roundtrip_exact(from)
        && channels(from, to).is_some_and(|mut it| {
            it.all(|((sf, zf), (st, zt))| {
                let (zf, zt) = (i64::from(zf), i64::from(zt));
                sf.to_bits() == st.to_bits()
                    && to.storage.min() - zt >= from.storage.min() - zf
                    && to.storage.max() - zt <= from.storage.max() - zf
            })
        })
}

/// Clamping codes of params `p` to the quantized images of `[lo, hi]` changes no code:
/// in every channel `quantize(lo)` is the storage minimum and `quantize(hi)` the
/// maximum (quantize saturates, so a bound beyond the range maps to its end). Since
/// quantize is monotone, `quantize(clamp(r, lo, hi)) = clamp(quantize(r), quantize(lo),
/// quantize(hi))` for `lo <= hi`; so then a relu/clip on `p` is the identity (given
/// [`roundtrip_exact`]) and a fused activation with these bounds clamps nothing.
/// (A relu whose zero point is the storage minimum, a relu6 on a u8 range inside
/// [0, 6].)
pub(crate) fn clamp_is_noop(lo: f32, hi: f32, p: &QuantParams) -> bool {
    lo <= hi
        && !p.is_empty()
        && (0..p.len())
            .all(|c| p.quantize(lo, c) <= p.storage.min() && p.quantize(hi, c) >= p.storage.max())
}

/// The clamp bounds of a fused activation as the kernels apply them (absent bounds
/// infinite).
pub(crate) fn act_bounds(a: Activation) -> (f32, f32) {
    match a {
        Activation::None => (f32::NEG_INFINITY, f32::INFINITY),
        Activation::Relu => (0.0, f32::INFINITY),
        Activation::Clip { min, max } => (min, max),
    }
}

/// The clamp bounds of a `relu` or `clip` op as the interpreter applies them (f32,
/// absent bounds infinite); `None` for any other op.
pub(crate) fn clamp_bounds(op: &Op) -> Option<(f32, f32)> {
    match op {
        Op::Relu => Some((0.0, f32::INFINITY)),
        Op::Clip { min, max } => Some((
            min.map_or(f32::NEG_INFINITY, |v| v as f32),
            max.map_or(f32::INFINITY, |v| v as f32),
        )),
        _ => None,
    }
}

/// `dequantize(quantize(v))` is `v` (bitwise) in every channel of `p`.
pub(crate) fn representable(v: f32, p: &QuantParams) -> bool {
    (0..p.len()).all(|c| p.dequantize(p.quantize(v, c), c).to_bits() == v.to_bits())
}

#[cfg(test)]
mod tests {
    use super::*;
    use qc_ir::QType;

    #[test]
    fn rule_names_are_unique_kebab_case() {
        let rules = all();
        let mut names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        for n in &names {
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{n}"
            );
        }
        let before = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(before, names.len(), "duplicate rule names");
    }

    #[test]
    fn roundtrip_exactness_by_brute_force() {
        // Check the claim on every code of a few params, independently of the proof.
        for p in [
            QuantParams::per_tensor(QType::U8, 0.0235294, 128),
            QuantParams::per_tensor(QType::I8, 3.0e-5, -7),
            QuantParams::per_tensor(QType::U8, 1.0e30, 0),
            QuantParams::per_tensor(QType::I16, 0.1, 3),
            QuantParams::per_tensor(QType::U8, 1.0e-44, 17),
        ] {
            assert!(roundtrip_exact(&p), "{p:?}");
            for q in p.storage.min()..=p.storage.max() {
                assert_eq!(p.quantize(p.dequantize(q, 0), 0), q, "{p:?} code {q}");
            }
        }
        // Overflowing products and i32 storage are not claimed.
        assert!(!roundtrip_exact(&QuantParams::per_tensor(
            QType::U8,
            3.0e36,
            0
        )));
        assert!(!roundtrip_exact(&QuantParams::per_tensor(
            QType::I32,
            0.5,
            0
        )));
    }

    #[test]
    fn reencoding_exactness() {
        let u8z = QuantParams::per_tensor(QType::U8, 0.5, 128);
        let i8z = QuantParams::per_tensor(QType::I8, 0.5, 0);
        let i16z = QuantParams::per_tensor(QType::I16, 0.5, 0);
        assert!(reencodes_exactly(&u8z, &i8z));
        assert!(reencodes_exactly(&u8z, &i16z));
        // A finer grid by an integer factor, without saturation.
        let u8h = QuantParams::per_tensor(QType::U8, 0.5, 0);
        let u16q = QuantParams::per_tensor(QType::U16, 0.25, 0);
        assert!(reencodes_exactly(&u8h, &u16q));
        // k = 4 with zero points mapping 10 -> 7: q' = 7 + 4 (q - 10), inside i16.
        let k4 = QuantParams::per_tensor(QType::U8, 0.5, 10);
        assert!(reencodes_exactly(
            &k4,
            &QuantParams::per_tensor(QType::I16, 0.125, 7)
        ));
        // The same into u8 saturates (4 * 245 + 7 > 255).
        assert!(!reencodes_exactly(
            &k4,
            &QuantParams::per_tensor(QType::U8, 0.125, 7)
        ));
        // Saturation or a coarser grid loses codes.
        assert!(!reencodes_exactly(
            &u8z,
            &QuantParams::per_tensor(QType::I8, 0.5, 1)
        ));
        assert!(!reencodes_exactly(
            &u8h,
            &QuantParams::per_tensor(QType::U8, 0.25, 0)
        ));
        assert!(!reencodes_exactly(
            &u8z,
            &QuantParams::per_tensor(QType::I8, 0.25, 0)
        ));
        assert!(!reencodes_exactly(
            &u8h,
            &QuantParams::per_tensor(QType::U8, 1.0, 0)
        ));
        // Every code survives u8 q(0.5, 0) -> u16 q(0.25, 0) as 2q.
        for q in 0..=255i64 {
            let v = u8h.dequantize(q, 0);
            assert_eq!(u16q.quantize(v, 0), 2 * q);
            assert_eq!(u16q.dequantize(2 * q, 0).to_bits(), v.to_bits());
        }
    }

    #[test]
    fn narrowing_ranges() {
        let q = |t, z| QuantParams::per_tensor(t, 0.0625, z);
        assert!(narrowing(&q(QType::I16, 0), &q(QType::U8, 0)));
        assert!(narrowing(&q(QType::U8, 128), &q(QType::I8, 0)));
        assert!(narrowing(&q(QType::I8, 0), &q(QType::U8, 128)));
        assert!(narrowing(&q(QType::I16, -100), &q(QType::I8, -5)));
        // Wider, or shifted outside: no.
        assert!(!narrowing(&q(QType::U8, 0), &q(QType::I16, 0)));
        assert!(!narrowing(&q(QType::U8, 128), &q(QType::U8, 0)));
        assert!(!narrowing(&q(QType::U8, 0), &q(QType::I8, 0)));
        // Another scale: no.
        assert!(!narrowing(
            &q(QType::I16, 0),
            &QuantParams::per_tensor(QType::U8, 0.125, 0)
        ));
        // The claim, by brute force: sat_to(sat_from(k + z_from) - z_from + z_to) is
        // sat_to(k + z_to) for every k, when the ranges nest.
        let cases = [
            (q(QType::I16, 0), q(QType::U8, 0)),
            (q(QType::I16, -100), q(QType::I8, -5)),
            (q(QType::U8, 128), q(QType::I8, 0)),
        ];
        for (a, b) in cases {
            let (za, zb) = (i64::from(a.zero_points[0]), i64::from(b.zero_points[0]));
            for k in -70_000i64..70_000 {
                let via_a = b.storage.saturate(a.storage.saturate(k + za) - za + zb);
                assert_eq!(via_a, b.storage.saturate(k + zb), "{a:?} -> {b:?} at {k}");
            }
        }
    }

    #[test]
    fn noop_clamps() {
        let u8z0 = QuantParams::per_tensor(QType::U8, 0.01, 0);
        let u8z128 = QuantParams::per_tensor(QType::U8, 0.01, 128);
        // relu at the storage minimum; relu6 above the range top 2.55.
        assert!(clamp_is_noop(0.0, f32::INFINITY, &u8z0));
        assert!(clamp_is_noop(0.0, 6.0, &u8z0));
        assert!(!clamp_is_noop(0.0, 2.0, &u8z0));
        assert!(!clamp_is_noop(0.0, f32::INFINITY, &u8z128));
        // A lower bound that rounds to the minimum still changes no code.
        assert!(clamp_is_noop(0.004, 6.0, &u8z0));
        assert!(!clamp_is_noop(0.006, 6.0, &u8z0));
    }
}
