//! Cross-layer equalization (Nagel et al., "Data-Free Quantization", 2019).
//!
//! **Identity.** For a pair `conv2(act(conv1(x)))` where `act` is the identity or relu
//! (positively homogeneous: `relu(z / s) = relu(z) / s` for `s > 0`) and `conv1`'s
//! output feeds only `conv2`, scaling output channel `i` of conv1 (weights and bias)
//! by `1 / s_i` and input channel `i` of conv2's weights by `s_i` leaves the function
//! unchanged: conv2 is linear in each input channel, and its zero padding scales to
//! zero. Choosing `s_i = sqrt(r1_i * r2_i) / r2_i`, where `r1_i` is the largest
//! magnitude of conv1's weights for output channel `i` and `r2_i` that of conv2's
//! weights reading input channel `i`, makes both ranges `sqrt(r1_i * r2_i)`, so a
//! per-tensor weight scale wastes less of its range on one channel. Exact in real
//! arithmetic; in f32 the outputs agree to rounding.
//!
//! Works for any groups (depthwise included): input channel `i` of a conv with `g`
//! groups is column `i % (C/g)` of the output channels of group `i / (C/g)`.
//!
//! **Invariants.** Only pairs whose weights and conv1's bias are constants used by
//! that node alone are touched (new constants replace them, so a shared tensor is
//! never changed under another user); clip activations (relu6) are not positively
//! homogeneous in their upper bound and are skipped.

use std::sync::Arc;

use qc_ir::{Activation, Graph, NodeId, Op, Tensor, ValueDef, ValueId};

/// What [`equalize`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CleReport {
    /// conv → conv pairs equalized.
    pub pairs: usize,
    /// Equalization rounds run over all pairs.
    pub rounds: usize,
}

const ROUNDS: usize = 4;

/// Equalize every eligible conv → (relu) → conv pair of `g` in place.
pub fn equalize(g: &mut Graph) -> CleReport {
    let pairs = find_pairs(g);
    for _ in 0..ROUNDS {
        for &(a, b) in &pairs {
            equalize_pair(g, a, b);
        }
    }
    CleReport {
        pairs: pairs.len(),
        rounds: if pairs.is_empty() { 0 } else { ROUNDS },
    }
}

fn const_used_once(g: &Graph, uses: &[usize], v: ValueId) -> bool {
    matches!(g.value(v).def, ValueDef::Const(_))
        && uses.get(v.index()) == Some(&1)
        && g.ty(v).dtype == qc_ir::DType::F32
        && !g.ty(v).is_quantized()
}

fn find_pairs(g: &Graph) -> Vec<(NodeId, NodeId)> {
    let uses = g.use_counts();
    let mut users: Vec<Vec<NodeId>> = vec![Vec::new(); g.values.len()];
    for (id, n) in g.iter_nodes() {
        for &v in &n.inputs {
            users[v.index()].push(id);
        }
    }
    let mut pairs = Vec::new();
    for (id, n) in g.iter_nodes() {
        let Op::Conv(a) = &n.op else { continue };
        if !matches!(a.act, Activation::None | Activation::Relu) {
            continue;
        }
        let (Some(&y), Some(&w1)) = (n.outputs.first(), n.inputs.get(1)) else {
            continue;
        };
        if uses[y.index()] != 1 || !const_used_once(g, &uses, w1) {
            continue;
        }
        if let Some(&b1) = n.inputs.get(2) {
            if !const_used_once(g, &uses, b1) {
                continue;
            }
        }
        let [next] = users[y.index()][..] else {
            continue;
        };
        let m = g.node(next);
        if !matches!(m.op, Op::Conv(_)) || m.inputs.first() != Some(&y) {
            continue;
        }
        let Some(&w2) = m.inputs.get(1) else { continue };
        if !const_used_once(g, &uses, w2) {
            continue;
        }
        pairs.push((id, next));
    }
    pairs
}

fn replace_const(g: &mut Graph, v: ValueId, t: Tensor) {
    let c = g.add_const_tensor(Arc::new(t));
    g.value_mut(v).def = ValueDef::Const(c);
}

fn equalize_pair(g: &mut Graph, a: NodeId, b: NodeId) {
    let (w1v, b1v) = {
        let n = g.node(a);
        (n.inputs[1], n.inputs.get(2).copied())
    };
    let (w2v, group2) = {
        let n = g.node(b);
        let Op::Conv(at) = &n.op else { return };
        (n.inputs[1], at.group.max(1))
    };
    let (Some(w1), Some(w2)) = (g.const_of(w1v), g.const_of(w2v)) else {
        return;
    };
    let (d1, d2) = (w1.dims().to_vec(), w2.dims().to_vec());
    let (mut x1, mut x2) = (w1.to_f32_vec(), w2.to_f32_vec());
    let (Some(&c1), Some(&o2), Some(&cin_g)) = (d1.first(), d2.first(), d2.get(1)) else {
        return;
    };
    // conv2 reads c1 channels in group2 groups of cin_g.
    if cin_g * group2 != c1 || c1 == 0 || o2 % group2 != 0 {
        return;
    }
    let inner1 = x1.len() / c1;
    let k2: usize = d2.get(2..).map_or(1, |d| d.iter().product());
    let out_g = o2 / group2;
    let r1: Vec<f32> = (0..c1)
        .map(|i| {
            x1[i * inner1..(i + 1) * inner1]
                .iter()
                .fold(0f32, |m, v| m.max(v.abs()))
        })
        .collect();
    // Element (o, j, k) of w2 sits at (o * cin_g + j) * k2 + k.
    let col = |i: usize| {
        let (grp, j) = (i / cin_g, i % cin_g);
        (grp * out_g..(grp + 1) * out_g).flat_map(move |o| {
            let base = (o * cin_g + j) * k2;
            base..base + k2
        })
    };
    let s: Vec<f32> = (0..c1)
        .map(|i| {
            let r2 = col(i).fold(0f32, |m, e| m.max(x2[e].abs()));
            let s = (r1[i] * r2).sqrt() / r2;
            if s.is_finite() && s > 0.0 {
                s
            } else {
                1.0
            }
        })
        .collect();
    for (i, &si) in s.iter().enumerate() {
        for v in &mut x1[i * inner1..(i + 1) * inner1] {
            *v /= si;
        }
        for e in col(i) {
            x2[e] *= si;
        }
    }
    let (Ok(t1), Ok(t2)) = (Tensor::from_f32(d1, x1), Tensor::from_f32(d2, x2)) else {
        return;
    };
    replace_const(g, w1v, t1);
    replace_const(g, w2v, t2);
    if let Some(bv) = b1v {
        if let Some(bt) = g.const_of(bv) {
            let dims = bt.dims().to_vec();
            let vals: Vec<f32> = bt
                .to_f32_vec()
                .iter()
                .enumerate()
                .map(|(i, &x)| x / s.get(i).copied().unwrap_or(1.0))
                .collect();
            if let Ok(t) = Tensor::from_f32(dims, vals) {
                replace_const(g, bv, t);
            }
        }
    }
}
