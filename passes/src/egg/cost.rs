//! The cost model of extraction.
//!
//! The cost of an op e-node is `1 + bytes moved + MACs * w`, where bytes moved is the
//! size of its operands and results (from their types), MACs the multiply-accumulates
//! (or elementwise operations) its type implies, and `w` is [`FLOAT_WORK`] when the op
//! computes in float and 1 when it computes on integers — so the same work done in
//! float where it could be integer is penalized, and a fused activation or a folded
//! BatchNorm is cheaper than the separate op. Leaves cost 0; helper e-nodes cost
//! `u128::MAX` (never extracted); costs add up saturating.
//!
//! **Invariant.** egg's `Extractor` scores trees: a class shared by several consumers
//! is counted once per path. Costs are exact integers (`u128`), so the choice between
//! two alternatives of one class still compares their exact difference as long as
//! nothing saturates (a ResNet-50 costs about 2^16 times its MACs as a tree; DenseNet
//! blocks about 2^58, still far below 2^128). The graph is then rebuilt from the
//! choices memoized per e-class, so shared subgraphs are computed once.

use egg::{CostFunction, Id, Language};
use qc_ir::{Op, TensorType};

use super::analysis::{attr_of, type_of, EGraph};
use super::lang::Qc;

/// Weight of one float MAC relative to one integer MAC.
pub const FLOAT_WORK: u128 = 4;

/// Cost function over an e-graph (reads types and attributes from the analysis).
pub struct QcCost<'a> {
    eg: &'a EGraph,
}

impl<'a> QcCost<'a> {
    pub fn new(eg: &'a EGraph) -> QcCost<'a> {
        QcCost { eg }
    }

    /// The cost of the node itself, without its children.
    pub fn local(&self, n: &Qc) -> u128 {
        if n.is_helper() {
            return u128::MAX;
        }
        let Some((attr, ty, operands)) = n.op_parts() else {
            return 0;
        };
        let (Some(a), Some(outs)) = (
            attr_of(self.eg, attr),
            self.eg[ty]
                .data
                .ty_leaf
                .and_then(|k| self.eg.analysis.types(k)),
        ) else {
            return u128::MAX;
        };
        let ins: Vec<&TensorType> = operands
            .iter()
            .filter_map(|&o| type_of(self.eg, o))
            .collect();
        let bytes: u128 = ins
            .iter()
            .copied()
            .chain(outs.iter())
            .map(|t| t.size_bytes().map_or(u128::MAX, |b| b as u128))
            .fold(0, u128::saturating_add);
        let float = outs
            .first()
            .is_some_and(|t| t.dtype.is_float() && t.quant.is_none())
            || ins
                .first()
                .is_some_and(|t| t.dtype.is_float() && t.quant.is_none());
        let w = if float { FLOAT_WORK } else { 1 };
        let work = macs(&a.op, &ins, outs).saturating_mul(w);
        1u128.saturating_add(bytes).saturating_add(work)
    }
}

fn numel(t: Option<&TensorType>) -> u128 {
    t.and_then(|t| t.numel().ok()).map_or(0, |n| n as u128)
}

fn dim(t: Option<&&TensorType>, i: usize) -> u128 {
    t.and_then(|t| t.shape.dims().get(i))
        .map_or(1, |&d| d as u128)
}

/// Multiply-accumulates (or elementwise operations) of one op.
fn macs(op: &Op, ins: &[&TensorType], outs: &[TensorType]) -> u128 {
    let out = numel(outs.first());
    let x = numel(ins.first().copied());
    let w = ins.get(1);
    // Weight elements per output channel (w is [M, C/g, k..] for conv).
    let per_out = |w: Option<&&TensorType>| numel(w.copied()) / dim(w, 0).max(1);
    match op {
        Op::Conv(_) | Op::ConvInteger(_) => out.saturating_mul(per_out(w)),
        Op::ConvTranspose(_) => x.saturating_mul(per_out(w)),
        Op::Gemm(a) => {
            let k = dim(ins.first(), if a.trans_a { 0 } else { 1 });
            out.saturating_mul(k)
        }
        Op::MatMul { .. } | Op::MatMulInteger => {
            let k = ins
                .first()
                .and_then(|t| t.shape.dims().last())
                .map_or(1, |&d| d as u128);
            out.saturating_mul(k)
        }
        Op::BatchNorm { .. } => out.saturating_mul(2),
        Op::Softmax { .. } => out.saturating_mul(3),
        Op::MaxPool { pool, .. } | Op::AveragePool { pool, .. } => {
            out.saturating_mul(pool.kernel.iter().map(|&k| k as u128).product())
        }
        Op::GlobalAveragePool | Op::GlobalMaxPool | Op::ReduceMean { .. } => x,
        Op::Lrn(l) => out.saturating_mul(l.size as u128),
        // (n - 1) additions, plus one: the n-ary op is never cheaper than the binary
        // add that expresses the same (the extractor keeps the first of equal costs).
        Op::Sum => out
            .saturating_mul(ins.len().saturating_sub(1).max(1) as u128)
            .saturating_add(1),
        Op::Reshape { .. }
        | Op::Flatten { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Transpose { .. }
        | Op::Concat { .. }
        | Op::Pad { .. }
        | Op::Identity => 0,
        _ => out,
    }
}

impl CostFunction<Qc> for QcCost<'_> {
    type Cost = u128;

    fn cost<C>(&mut self, enode: &Qc, mut costs: C) -> u128
    where
        C: FnMut(Id) -> u128,
    {
        let own = self.local(enode);
        enode.fold(own, |sum, id| sum.saturating_add(costs(id)))
    }
}
