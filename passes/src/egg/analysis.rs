//! The e-class analysis: result types, constants, use counts, and the side tables
//! the leaves point into.
//!
//! **Side tables** (in [`QcAnalysis`], append-only, interned):
//! - attributes: `(Op, node name)` keyed by their `Debug` text, so equal attributes
//!   share a leaf and the node name survives extraction with its op;
//! - types: the result type(s) of a node, keyed by their `Debug` text (`TensorType`
//!   has f32 fields and is not `Hash`; the text of an f32 is exact);
//! - constants: `(tensor, type)`, keyed by the tensor's `Arc` address and the type
//!   (folded constants are fresh tensors, each its own entry);
//! - the types of the graph inputs.
//!
//! **Per-class data** ([`Data`]): the class's type, if it holds tensors (from the type
//! leaf of its op e-nodes, or its input/constant leaf); its constant value if known;
//! its number of uses in the original graph. Merging requires equal types: a rule that
//! unions two classes of different types is a bug, recorded in
//! [`QcAnalysis::conflicts`] and reported as an error by the pass.
//!
//! **Constant folding, the egg idiom:** `make` evaluates the `*-fold-*` helper e-nodes
//! (BatchNorm and per-channel folding, see [`crate::egg::fold`]) and data movement
//! (`reshape`, `flatten`, `squeeze`, `unsqueeze`) of constants; `modify` then adds a
//! [`Qc::Const`] leaf to any class with a known constant that has none, so the
//! extractor can pick the constant (helpers themselves are never extractable).
//!
//! **Use counts** are those of the original graph (graph outputs count as uses); a
//! class created by a rewrite starts at 0 and merged classes add up. Rules that must
//! not duplicate work ("fuse only into a producer that has no other user") read them:
//! `uses <= 1` means no other consumer is known.

use std::collections::HashMap;
use std::sync::Arc;

use egg::{Analysis, DidMerge, Id};
use qc_ir::{DType, Op, Tensor, TensorType};

use super::fold;
use super::lang::{AttrKey, ConstKey, Qc, TyKey};

/// The e-graph type of this pass.
pub type EGraph = egg::EGraph<Qc, QcAnalysis>;

/// An interned attribute: the op with its attributes, and the node name it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Attr {
    pub op: Op,
    pub name: String,
}

/// Side tables of the leaves, and the conflicts seen while merging.
#[derive(Debug, Default)]
pub struct QcAnalysis {
    attrs: Vec<Attr>,
    attr_index: HashMap<String, AttrKey>,
    types: Vec<Vec<TensorType>>,
    type_index: HashMap<String, TyKey>,
    consts: Vec<(Arc<Tensor>, TyKey)>,
    const_index: HashMap<(usize, TyKey), ConstKey>,
    inputs: Vec<TyKey>,
    /// Unions of classes whose types differ (each a rule bug), as messages.
    pub conflicts: Vec<String>,
}

impl QcAnalysis {
    pub fn intern_attr(&mut self, op: Op, name: &str) -> AttrKey {
        let key = format!("{op:?}\u{0}{name}");
        if let Some(&k) = self.attr_index.get(&key) {
            return k;
        }
        let k = AttrKey::from_index(self.attrs.len());
        self.attrs.push(Attr {
            op,
            name: name.to_string(),
        });
        self.attr_index.insert(key, k);
        k
    }

    pub fn intern_types(&mut self, tys: Vec<TensorType>) -> TyKey {
        let key = format!("{tys:?}");
        if let Some(&k) = self.type_index.get(&key) {
            return k;
        }
        let k = TyKey::from_index(self.types.len());
        self.types.push(tys);
        self.type_index.insert(key, k);
        k
    }

    pub fn intern_const(&mut self, t: Arc<Tensor>, ty: TyKey) -> ConstKey {
        let key = (Arc::as_ptr(&t) as usize, ty);
        if let Some(&k) = self.const_index.get(&key) {
            return k;
        }
        let k = ConstKey::from_index(self.consts.len());
        self.consts.push((t, ty));
        self.const_index.insert(key, k);
        k
    }

    /// Register graph input `i` (inputs are registered in order).
    pub fn push_input(&mut self, ty: TensorType) {
        let k = self.intern_types(vec![ty]);
        self.inputs.push(k);
    }

    pub fn attr(&self, k: AttrKey) -> Option<&Attr> {
        self.attrs.get(k.index())
    }

    pub fn types(&self, k: TyKey) -> Option<&[TensorType]> {
        self.types.get(k.index()).map(Vec::as_slice)
    }

    /// The one type of a single-result key.
    pub fn tensor_type(&self, k: TyKey) -> Option<&TensorType> {
        match self.types(k)? {
            [t] => Some(t),
            _ => None,
        }
    }

    pub fn konst(&self, k: ConstKey) -> Option<&(Arc<Tensor>, TyKey)> {
        self.consts.get(k.index())
    }
}

/// What is known about one e-class.
#[derive(Clone, Debug, Default)]
pub struct Data {
    /// The result type(s) of the class's tensors (`None` for meta leaves).
    pub ty: Option<TyKey>,
    /// Set on an attribute leaf's class.
    pub attr: Option<AttrKey>,
    /// Set on a type leaf's class.
    pub ty_leaf: Option<TyKey>,
    /// Set on a slot leaf's class.
    pub slot: Option<u32>,
    /// The value, when it is a known constant (stored data, of the class's type).
    pub konst: Option<Arc<Tensor>>,
    /// Uses in the original graph (see the module docs).
    pub uses: usize,
}

impl Analysis<Qc> for QcAnalysis {
    type Data = Data;

    fn make(eg: &mut EGraph, n: &Qc, _id: Id) -> Data {
        match n {
            Qc::Absent => Data::default(),
            Qc::Input(k) => Data {
                ty: eg.analysis.inputs.get(k.index()).copied(),
                ..Data::default()
            },
            Qc::Const(k) => match eg.analysis.konst(*k) {
                Some((t, ty)) => Data {
                    ty: Some(*ty),
                    konst: Some(t.clone()),
                    ..Data::default()
                },
                None => Data::default(),
            },
            Qc::Attr(k) => Data {
                attr: Some(*k),
                ..Data::default()
            },
            Qc::Ty(k) => Data {
                ty_leaf: Some(*k),
                ..Data::default()
            },
            Qc::Slot(k) => Data {
                slot: Some(k.0),
                ..Data::default()
            },
            Qc::Proj([_, ty, _]) => Data {
                ty: eg[*ty].data.ty_leaf,
                ..Data::default()
            },
            _ if n.is_helper() => match eval_helper(eg, n) {
                Some(t) => {
                    let ty = TensorType::new(t.dtype(), t.shape().clone());
                    Data {
                        ty: Some(eg.analysis.intern_types(vec![ty])),
                        konst: Some(Arc::new(t)),
                        ..Data::default()
                    }
                }
                None => Data::default(),
            },
            _ => {
                let Some((attr, ty, operands)) = n.op_parts() else {
                    return Data::default();
                };
                let ty = eg[ty].data.ty_leaf;
                let konst = fold_movement(eg, attr, ty, operands).map(Arc::new);
                Data {
                    ty,
                    konst,
                    ..Data::default()
                }
            }
        }
    }

    fn merge(&mut self, a: &mut Data, b: Data) -> DidMerge {
        let (mut to_a, mut to_b) = (false, false);
        for (what, d) in [
            ("types", merge_key(&mut a.ty, b.ty)),
            ("attributes", merge_key(&mut a.attr, b.attr)),
            ("type leaves", merge_key(&mut a.ty_leaf, b.ty_leaf)),
            ("slots", merge_key(&mut a.slot, b.slot)),
        ] {
            match d {
                Merged::Unchanged => {}
                Merged::TookB => to_a = true,
                Merged::KeptA => to_b = true,
                Merged::Conflict(msg) => self
                    .conflicts
                    .push(format!("merged classes with different {what}: {msg}")),
            }
        }
        // Two constants of one class are equal by construction (every union is an
        // equality); comparing their data would cost a pass over the weights.
        match (&a.konst, b.konst) {
            (None, Some(t)) => {
                a.konst = Some(t);
                to_a = true;
            }
            (Some(_), None) => to_b = true,
            _ => {}
        }
        if b.uses > 0 {
            to_a = true;
        }
        if a.uses > 0 {
            to_b = true;
        }
        a.uses += b.uses;
        DidMerge(to_a, to_b)
    }

    fn modify(eg: &mut EGraph, id: Id) {
        let (Some(t), Some(ty)) = (eg[id].data.konst.clone(), eg[id].data.ty) else {
            return;
        };
        if eg[id].nodes.iter().any(|n| matches!(n, Qc::Const(_))) {
            return;
        }
        let fits = eg
            .analysis
            .tensor_type(ty)
            .is_some_and(|tt| tt.dtype == t.dtype() && &tt.shape == t.shape());
        if !fits {
            return;
        }
        let k = eg.analysis.intern_const(t, ty);
        let leaf = eg.add(Qc::Const(k));
        eg.union(id, leaf);
    }
}

enum Merged {
    Unchanged,
    TookB,
    KeptA,
    Conflict(String),
}

/// Merge one optional key: `None` takes the other's value; two values must agree.
fn merge_key<T: PartialEq + std::fmt::Debug>(a: &mut Option<T>, b: Option<T>) -> Merged {
    match (&*a, b) {
        (None, None) => Merged::Unchanged,
        (None, Some(y)) => {
            *a = Some(y);
            Merged::TookB
        }
        (Some(_), None) => Merged::KeptA,
        (Some(x), Some(y)) if *x != y => Merged::Conflict(format!("{x:?} and {y:?}")),
        (Some(_), Some(_)) => Merged::Unchanged,
    }
}

/// The attribute of an attribute leaf's class.
pub fn attr_of(eg: &EGraph, id: Id) -> Option<&Attr> {
    eg.analysis.attr(eg[id].data.attr?)
}

/// The single type of a tensor class.
pub fn type_of(eg: &EGraph, id: Id) -> Option<&TensorType> {
    eg.analysis.tensor_type(eg[id].data.ty?)
}

/// A raw f32 constant (not quantized) of a class.
pub fn f32_const(eg: &EGraph, id: Id) -> Option<Arc<Tensor>> {
    let t = eg[id].data.konst.clone()?;
    let ty = type_of(eg, id)?;
    (ty.quant.is_none() && ty.dtype == DType::F32 && t.dtype() == DType::F32).then_some(t)
}

/// The optional f32 constant in an operand slot: `Some(None)` for an absent operand,
/// `None` when the slot holds something that is not a raw f32 constant.
pub fn optional_f32_const(eg: &EGraph, id: Id) -> Option<Option<Arc<Tensor>>> {
    if eg[id].nodes.iter().any(|n| matches!(n, Qc::Absent)) {
        return Some(None);
    }
    f32_const(eg, id).map(Some)
}

/// The output-channel axis of a producer's weight: conv 0; gemm 1, or 0 with `trans_b`.
pub fn weight_out_axis(op: &Op) -> Option<usize> {
    match op {
        Op::Conv(_) => Some(0),
        Op::Gemm(a) => Some(if a.trans_b { 0 } else { 1 }),
        _ => None,
    }
}

/// Evaluate a helper e-node (children as documented on each arm).
fn eval_helper(eg: &EGraph, n: &Qc) -> Option<Tensor> {
    let eps = |id: Id| match attr_of(eg, id)?.op {
        Op::BatchNorm { epsilon } => Some(epsilon),
        _ => None,
    };
    let op = |id: Id| attr_of(eg, id).map(|a| a.op.clone());
    match n {
        // [bn attr, producer attr, w, scale, var]: w scaled along the producer's
        // output-channel axis by scale / sqrt(var + eps).
        Qc::BnFoldWeight([bn, prod, w, scale, var]) => {
            let k = fold::bn_factors(&*f32_const(eg, *scale)?, &*f32_const(eg, *var)?, eps(*bn)?)?;
            fold::scale_axis(&*f32_const(eg, *w)?, weight_out_axis(&op(*prod)?)?, &k)
        }
        // [bn attr, producer attr, b | none, scale, bias, mean, var]: the new bias.
        Qc::BnFoldBias([bn, prod, b, scale, bias, mean, var]) => {
            let k = fold::bn_factors(&*f32_const(eg, *scale)?, &*f32_const(eg, *var)?, eps(*bn)?)?;
            let b = optional_f32_const(eg, *b)?;
            let (bias, mean) = (f32_const(eg, *bias)?, f32_const(eg, *mean)?);
            match op(*prod)? {
                Op::Conv(_) => fold::bn_bias(b.as_deref(), &k, &bias, &mean),
                Op::Gemm(a) => fold::gemm_bn_bias(b.as_deref(), a.beta, &k, &bias, &mean),
                _ => None,
            }
        }
        // [conv attr, w, c]: w scaled per output channel by the constant c.
        Qc::MulFoldWeight([prod, w, c]) => {
            let w = f32_const(eg, *w)?;
            let k = fold::channel_vector(&*f32_const(eg, *c)?, w.dims().len(), *w.dims().first()?)?;
            matches!(op(*prod)?, Op::Conv(_)).then_some(())?;
            fold::scale_axis(&w, 0, &k)
        }
        // [result type, b, c]: b (one value per channel of the result, axis 1)
        // scaled per channel by c.
        Qc::MulFoldBias([t, b, c]) => {
            let b = f32_const(eg, *b)?;
            let (rank, m) = rank_and_channels(eg, *t)?;
            let k = fold::channel_vector(&*f32_const(eg, *c)?, rank, m)?;
            (b.len() == m).then_some(())?;
            fold::scale_vec(&b, &k)
        }
        // [result type, b | none, c]: b shifted per channel by c.
        Qc::AddFoldBias([t, b, c]) => {
            let (rank, m) = rank_and_channels(eg, *t)?;
            let k = fold::channel_vector(&*f32_const(eg, *c)?, rank, m)?;
            let b = optional_f32_const(eg, *b)?;
            fold::shift_vec(b.as_deref(), &k)
        }
        _ => None,
    }
}

/// Rank and channel count (axis 1) of the type named by a type leaf.
fn rank_and_channels(eg: &EGraph, ty_leaf: Id) -> Option<(usize, usize)> {
    let t = eg.analysis.tensor_type(eg[ty_leaf].data.ty_leaf?)?;
    Some((t.rank(), *t.shape.dims().get(1)?))
}

/// Data movement of a constant: the same elements with the result's shape.
fn fold_movement(eg: &EGraph, attr: Id, ty: Option<TyKey>, operands: &[Id]) -> Option<Tensor> {
    let op = &attr_of(eg, attr)?.op;
    if !matches!(
        op,
        Op::Reshape { .. } | Op::Flatten { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. }
    ) {
        return None;
    }
    let [x] = operands else { return None };
    let t = eg[*x].data.konst.as_ref()?;
    let out = eg.analysis.tensor_type(ty?)?;
    let x_ty = type_of(eg, *x)?;
    // Quantized movement re-quantizes its dequantized values; fold only raw data,
    // where the stored elements move unchanged.
    if x_ty.quant.is_some() || out.quant.is_some() || out.dtype != t.dtype() {
        return None;
    }
    fold::reshaped(t, &out.shape)
}
