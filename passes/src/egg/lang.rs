//! The e-graph language: one e-node variant per IR op, leaves for everything else.
//!
//! egg 0.11's `define_language!` cannot give a variant both data and children, so an
//! op's attributes and result type(s) are *leaf children*: every op e-node has the
//! children `[attr, ty, operands..]`, where `attr` is an [`Qc::Attr`] leaf (an interned
//! `(Op, node name)`) and `ty` a [`Qc::Ty`] leaf (the interned result types). Two ops
//! that differ only in an attribute or in their output scale are different e-nodes and
//! never merge.
//!
//! **Invariants.**
//! - Variant names are [`qc_ir::Op::name`], so [`op_enode`] builds an e-node for any
//!   `Op` through `FromOp`, and rule patterns read like the text form
//!   (`(relu ?ra ?rt (conv ?a ?t ?x ?w ?b))`).
//! - Optional trailing operands (the bias of `conv`, `conv_transpose`, `gemm`) are
//!   padded with the [`Qc::Absent`] leaf, so those ops have a fixed arity and one
//!   pattern matches them with and without bias. `sum` and `concat` are variadic.
//! - A node with several results (`max_pool` with indices, `dynamic_quantize`) is one
//!   op e-node whose type leaf holds all result types (a tuple class), read through
//!   [`Qc::Proj`] e-nodes `[slot, ty, tuple]`. Rules never rewrite through tuples.
//! - The `*-fold-*` variants are helper e-nodes that the analysis evaluates to a new
//!   constant (BatchNorm and per-channel folding). They are never extracted: the cost
//!   function gives them infinite cost, and the analysis puts a constant leaf in
//!   their class.

use std::fmt;
use std::str::FromStr;

use egg::{define_language, FromOp, Id};
use qc_ir::Op;

macro_rules! leaf_key {
    ($(#[$m:meta])* $name:ident, $prefix:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u32);

        impl $name {
            pub fn index(self) -> usize {
                self.0 as usize
            }
            pub fn from_index(i: usize) -> Self {
                $name(u32::try_from(i).expect("invariant: fewer than 2^32 interned entries"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                s.strip_prefix($prefix)
                    .and_then(|d| d.parse().ok())
                    .map($name)
                    .ok_or_else(|| format!("'{s}' is not a {}", stringify!($name)))
            }
        }
    };
}

leaf_key!(
    /// Index of a graph input.
    InputKey, "input:");
leaf_key!(
    /// A constant value (tensor and type) in the analysis' constant table.
    ConstKey, "const:");
leaf_key!(
    /// An `(Op, name)` in the analysis' attribute table.
    AttrKey, "attr:");
leaf_key!(
    /// Result type(s) in the analysis' type table.
    TyKey, "type:");
leaf_key!(
    /// The result slot a [`Qc::Proj`] reads.
    SlotKey, "slot:");

define_language! {
    /// The qc op set as an egg language (see the module docs for the child layout).
    pub enum Qc {
        "none" = Absent,
        "proj" = Proj([Id; 3]),

        "quantize" = Quantize([Id; 3]),
        "dequantize" = Dequantize([Id; 3]),
        "requantize" = Requantize([Id; 3]),
        "dynamic_quantize" = DynamicQuantize([Id; 3]),
        "cast" = Cast([Id; 3]),
        "conv" = Conv([Id; 5]),
        "conv_integer" = ConvInteger([Id; 6]),
        "conv_transpose" = ConvTranspose([Id; 5]),
        "gemm" = Gemm([Id; 5]),
        "matmul" = MatMul([Id; 4]),
        "matmul_integer" = MatMulInteger([Id; 6]),
        "batch_norm" = BatchNorm([Id; 7]),
        "add" = Add([Id; 4]),
        "sub" = Sub([Id; 4]),
        "mul" = Mul([Id; 4]),
        "div" = Div([Id; 4]),
        "sum" = Sum(Box<[Id]>),
        "relu" = Relu([Id; 3]),
        "leaky_relu" = LeakyRelu([Id; 3]),
        "prelu" = PRelu([Id; 4]),
        "clip" = Clip([Id; 3]),
        "sigmoid" = Sigmoid([Id; 3]),
        "hard_sigmoid" = HardSigmoid([Id; 3]),
        "hard_swish" = HardSwish([Id; 3]),
        "tanh" = Tanh([Id; 3]),
        "max_pool" = MaxPool([Id; 3]),
        "average_pool" = AveragePool([Id; 3]),
        "global_average_pool" = GlobalAveragePool([Id; 3]),
        "global_max_pool" = GlobalMaxPool([Id; 3]),
        "flatten" = Flatten([Id; 3]),
        "reshape" = Reshape([Id; 3]),
        "squeeze" = Squeeze([Id; 3]),
        "unsqueeze" = Unsqueeze([Id; 3]),
        "transpose" = Transpose([Id; 3]),
        "concat" = Concat(Box<[Id]>),
        "pad" = Pad([Id; 3]),
        "softmax" = Softmax([Id; 3]),
        "reduce_mean" = ReduceMean([Id; 3]),
        "lrn" = Lrn([Id; 3]),
        "identity" = Identity([Id; 3]),

        // Helpers evaluated by the analysis (children documented in `analysis`).
        "bn-fold-weight" = BnFoldWeight([Id; 5]),
        "bn-fold-bias" = BnFoldBias([Id; 7]),
        "mul-fold-weight" = MulFoldWeight([Id; 3]),
        "mul-fold-bias" = MulFoldBias([Id; 3]),
        "add-fold-bias" = AddFoldBias([Id; 3]),

        Input(InputKey),
        Const(ConstKey),
        Attr(AttrKey),
        Ty(TyKey),
        Slot(SlotKey),
    }
}

impl Qc {
    /// A helper e-node (never extracted).
    pub fn is_helper(&self) -> bool {
        matches!(
            self,
            Qc::BnFoldWeight(_)
                | Qc::BnFoldBias(_)
                | Qc::MulFoldWeight(_)
                | Qc::MulFoldBias(_)
                | Qc::AddFoldBias(_)
        )
    }

    /// A leaf that is not a tensor (attribute, type, slot, absent operand).
    pub fn is_meta_leaf(&self) -> bool {
        matches!(self, Qc::Absent | Qc::Attr(_) | Qc::Ty(_) | Qc::Slot(_))
    }

    /// An op e-node: `[attr, ty, operands..]`.
    pub fn is_op(&self) -> bool {
        !(self.is_helper()
            || self.is_meta_leaf()
            || matches!(self, Qc::Proj(_) | Qc::Input(_) | Qc::Const(_)))
    }

    /// `(attr, ty, operands)` of an op e-node (operands include `Absent` padding).
    pub fn op_parts(&self) -> Option<(Id, Id, &[Id])> {
        if !self.is_op() {
            return None;
        }
        match egg::Language::children(self) {
            [attr, ty, operands @ ..] => Some((*attr, *ty, operands)),
            _ => None,
        }
    }
}

/// Number of operand slots of ops with optional trailing operands (padded with
/// `Absent`); `None` for every other op (its arity is its operand count).
fn padded_arity(op: &Op) -> Option<usize> {
    match op {
        Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm(_) => Some(3),
        _ => None,
    }
}

/// The e-node of `op` with attribute leaf `attr`, type leaf `ty` and `operands`,
/// padding optional operands with `absent`. `None` if the operand count does not fit
/// the op (a malformed node).
pub fn op_enode(op: &Op, attr: Id, ty: Id, operands: &[Id], absent: Id) -> Option<Qc> {
    let mut children = Vec::with_capacity(operands.len() + 3);
    children.push(attr);
    children.push(ty);
    children.extend_from_slice(operands);
    if let Some(n) = padded_arity(op) {
        if operands.len() > n {
            return None;
        }
        children.resize(n + 2, absent);
    }
    Qc::from_op(op.name(), children).ok()
}

/// The e-node named `name` (an op name or a helper name) with `children`.
pub fn enode(name: &str, children: Vec<Id>) -> Option<Qc> {
    Qc::from_op(name, children).ok()
}
