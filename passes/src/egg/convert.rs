//! Graph ↔ e-graph.
//!
//! **Into the e-graph** ([`to_egraph`]): one linear walk over the nodes (they are in
//! topological order, like a `RecExpr`). Graph inputs become `input` leaves, constant
//! values `const` leaves, each node an op e-node `[attr, ty, operands..]` (a node with
//! several results a tuple class read by `proj` e-nodes). Identical nodes (same op,
//! attributes, name, types and operands) hash-cons into one class. Use counts of the
//! graph become the classes' `uses`.
//!
//! **Out of the e-graph** ([`extract`]): egg's `Extractor` chooses one e-node per
//! class by [`QcCost`]; the graph is rebuilt from those choices *memoized on the
//! e-class*, so a class used by several consumers (a residual branch) becomes one
//! node whatever the tree cost counted. Nodes are emitted in the original graph's
//! order where they survive (a class keeps the position of the first original node
//! in it; a new class is placed just before its first consumer), so an unchanged
//! graph comes back identical. Node names travel with the attribute leaf. A chosen
//! helper e-node or a cycle is an internal error, never a panic.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use egg::{Extractor, Id};
use qc_ir::{ConstId, Graph, NodeId, Tensor, ValueDef, ValueId};

use super::analysis::{EGraph, QcAnalysis};
use super::cost::QcCost;
use super::lang::{op_enode, AttrKey, InputKey, Qc, SlotKey};
use crate::{Error, Result};

fn err(msg: impl Into<String>) -> Error {
    Error::Pass {
        pass: "egg",
        msg: msg.into(),
    }
}

/// A graph in an e-graph: the classes of its outputs and of its nodes.
pub struct Converted {
    pub egraph: EGraph,
    /// The class of each graph output, in order.
    pub roots: Vec<Id>,
    /// `(class, node index)` of every node of the graph (the tuple class for a node
    /// with several results).
    pub positions: Vec<(Id, usize)>,
}

/// Put `g` into a new e-graph (see the module docs).
pub fn to_egraph(g: &Graph) -> Result<Converted> {
    let mut eg = EGraph::new(QcAnalysis::default());
    let absent = eg.add(Qc::Absent);
    let mut class: Vec<Option<Id>> = vec![None; g.values.len()];
    let value_err = |v: ValueId| err(format!("value {v} does not exist"));

    for (i, p) in g.inputs.iter().enumerate() {
        let ty = g
            .values
            .get(p.value.index())
            .ok_or_else(|| value_err(p.value))?
            .ty
            .clone();
        eg.analysis.push_input(ty);
        let id = eg.add(Qc::Input(InputKey::from_index(i)));
        *class
            .get_mut(p.value.index())
            .ok_or_else(|| value_err(p.value))? = Some(id);
    }

    let mut positions = Vec::with_capacity(g.nodes.len());
    for (ni, node) in g.iter_nodes() {
        let mut operands = Vec::with_capacity(node.inputs.len());
        for &v in &node.inputs {
            operands.push(value_class(g, &mut eg, &mut class, v)?);
        }
        let node_err = |msg: &str| {
            err(format!(
                "node {ni} ({} '{}'): {msg}",
                node.op.name(),
                node.name
            ))
        };
        let tys = node
            .outputs
            .iter()
            .map(|&v| g.values.get(v.index()).map(|x| x.ty.clone()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| node_err("a result value does not exist"))?;
        let attr = eg.analysis.intern_attr(node.op.clone(), &node.name);
        let attr = eg.add(Qc::Attr(attr));
        let single = tys.len() == 1;
        let tkey = eg.analysis.intern_types(tys.clone());
        let ty = eg.add(Qc::Ty(tkey));
        let n = op_enode(&node.op, attr, ty, &operands, absent)
            .ok_or_else(|| node_err("operand count does not fit the op"))?;
        let id = eg.add(n);
        positions.push((id, ni.index()));
        if single {
            if let Some(c) = node.outputs.first().and_then(|v| class.get_mut(v.index())) {
                *c = Some(id);
            }
        } else {
            for (slot, (&v, t)) in node.outputs.iter().zip(tys).enumerate() {
                let s = eg.add(Qc::Slot(SlotKey::from_index(slot)));
                let tk = eg.analysis.intern_types(vec![t]);
                let tl = eg.add(Qc::Ty(tk));
                let p = eg.add(Qc::Proj([s, tl, id]));
                *class.get_mut(v.index()).ok_or_else(|| value_err(v))? = Some(p);
            }
        }
    }

    let mut roots = Vec::with_capacity(g.outputs.len());
    for p in &g.outputs {
        roots.push(value_class(g, &mut eg, &mut class, p.value)?);
    }

    // Uses of every value, as operands and as graph outputs.
    let mut uses = vec![0usize; g.values.len()];
    for v in g
        .nodes
        .iter()
        .flat_map(|n| &n.inputs)
        .chain(g.outputs.iter().map(|p| &p.value))
    {
        if let Some(u) = uses.get_mut(v.index()) {
            *u += 1;
        }
    }
    for (v, c) in class.iter().enumerate() {
        if let (Some(c), Some(&u)) = (c, uses.get(v)) {
            let c = eg.find(*c);
            eg[c].data.uses += u;
        }
    }
    eg.rebuild();
    Ok(Converted {
        egraph: eg,
        roots,
        positions,
    })
}

/// The class of value `v`, adding a `const` leaf for a constant seen the first time.
fn value_class(g: &Graph, eg: &mut EGraph, class: &mut [Option<Id>], v: ValueId) -> Result<Id> {
    let missing = || err(format!("value {v} is used before it is defined"));
    if let Some(id) = class.get(v.index()).copied().flatten() {
        return Ok(id);
    }
    let value = g.values.get(v.index()).ok_or_else(missing)?;
    let ValueDef::Const(c) = value.def else {
        return Err(missing());
    };
    let t = g
        .consts
        .get(c.index())
        .ok_or_else(|| err(format!("constant {c} does not exist")))?;
    let tk = eg.analysis.intern_types(vec![value.ty.clone()]);
    let k = eg.analysis.intern_const(t.clone(), tk);
    let id = eg.add(Qc::Const(k));
    if let Some(slot) = class.get_mut(v.index()) {
        *slot = Some(id);
    }
    Ok(id)
}

/// A class ready to be emitted: `(emission key, DFS index, class)`, smallest first.
type Ready = ((usize, u8), usize, Id);

/// What a class became in the new graph.
#[derive(Clone, Copy)]
enum Built {
    Value(ValueId),
    Tuple(NodeId),
}

/// The tensor classes a chosen e-node reads (operands without padding; a proj's tuple).
fn deps(eg: &EGraph, n: &Qc) -> Vec<Id> {
    match n {
        Qc::Proj([_, _, tuple]) => vec![eg.find(*tuple)],
        _ => match n.op_parts() {
            Some((_, _, operands)) => operands
                .iter()
                .map(|&o| eg.find(o))
                .filter(|&o| !eg[o].nodes.iter().any(|x| matches!(x, Qc::Absent)))
                .collect(),
            None => Vec::new(),
        },
    }
}

/// Rebuild a graph from the e-graph: `g0` gives the input and output ports, `roots`
/// the output classes, `positions` the original node order.
pub fn extract(eg: &EGraph, g0: &Graph, roots: &[Id], positions: &[(Id, usize)]) -> Result<Graph> {
    let ex = Extractor::new(eg, QcCost::new(eg));

    // 1. The chosen e-node of every reachable class, in DFS post-order (operands
    //    first); a class met again while still open is a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    let mut mark: HashMap<Id, Mark> = HashMap::new();
    let mut chosen: HashMap<Id, Qc> = HashMap::new();
    let mut post: Vec<Id> = Vec::new();
    let mut stack: Vec<(Id, bool)> = roots.iter().rev().map(|&r| (eg.find(r), false)).collect();
    while let Some((c, exit)) = stack.pop() {
        if exit {
            mark.insert(c, Mark::Done);
            post.push(c);
            continue;
        }
        match mark.get(&c) {
            Some(Mark::Done) => continue,
            Some(Mark::Open) => {
                return Err(err(format!("extraction found a cycle through class {c}")))
            }
            None => {}
        }
        mark.insert(c, Mark::Open);
        let n = ex.find_best_node(c).clone();
        if n.is_helper() || n.is_meta_leaf() {
            return Err(err(format!(
                "extraction chose {n} for a tensor (class {c})"
            )));
        }
        stack.push((c, true));
        for d in deps(eg, &n).into_iter().rev() {
            if mark.get(&d) != Some(&Mark::Done) {
                stack.push((d, false));
            }
        }
        chosen.insert(c, n);
    }

    // 2. Emission keys: (position of the class's first original node, 1), or for a
    //    class new to the graph (its first consumer's position, 0).
    let mut key: HashMap<Id, (usize, u8)> = HashMap::new();
    for &(c, pos) in positions {
        let c = eg.find(c);
        if chosen.contains_key(&c) {
            let k = key.entry(c).or_insert((pos, 1));
            *k = (*k).min((pos, 1));
        }
    }
    let original: HashSet<Id> = key.keys().copied().collect();
    for &c in post.iter().rev() {
        let kc = *key.entry(c).or_insert((usize::MAX, 0));
        for d in deps(eg, &chosen[&c]) {
            if !original.contains(&d) {
                let e = key.entry(d).or_insert((kc.0, 0));
                *e = (*e).min((kc.0, 0));
            }
        }
    }

    // 3. Kahn's algorithm, smallest key first (ties in DFS order).
    let index: HashMap<Id, usize> = post.iter().enumerate().map(|(i, &c)| (c, i)).collect();
    let mut pending: HashMap<Id, usize> = HashMap::new();
    let mut consumers: HashMap<Id, Vec<Id>> = HashMap::new();
    for &c in &post {
        let mut ds = deps(eg, &chosen[&c]);
        ds.sort_unstable();
        ds.dedup();
        pending.insert(c, ds.len());
        for d in ds {
            consumers.entry(d).or_default().push(c);
        }
    }
    let mut ready: BinaryHeap<Reverse<Ready>> = post
        .iter()
        .filter(|c| pending[c] == 0)
        .map(|&c| Reverse((key[&c], index[&c], c)))
        .collect();

    let mut g = Graph::new();
    let mut input_values: Vec<ValueId> = Vec::with_capacity(g0.inputs.len());
    for p in &g0.inputs {
        let ty = g0
            .values
            .get(p.value.index())
            .ok_or_else(|| err(format!("input '{}' has no value", p.name)))?
            .ty
            .clone();
        input_values.push(g.add_input(p.name.clone(), ty));
    }
    let mut built: HashMap<Id, Built> = HashMap::new();
    let mut const_ids: HashMap<usize, ConstId> = HashMap::new();
    while let Some(Reverse((_, _, c))) = ready.pop() {
        let b = emit(
            eg,
            &chosen[&c],
            &built,
            &input_values,
            &mut const_ids,
            &mut g,
        )?;
        built.insert(c, b);
        for &u in consumers.get(&c).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(p) = pending.get_mut(&u) {
                *p -= 1;
                if *p == 0 {
                    ready.push(Reverse((key[&u], index[&u], u)));
                }
            }
        }
    }

    for (p, &r) in g0.outputs.iter().zip(roots) {
        match built.get(&eg.find(r)) {
            Some(Built::Value(v)) => g.add_output(p.name.clone(), *v),
            _ => return Err(err(format!("output '{}' was not rebuilt", p.name))),
        }
    }
    g.compact();
    Ok(g)
}

/// Create the value (or tuple node) of one chosen e-node whose operands are built.
fn emit(
    eg: &EGraph,
    n: &Qc,
    built: &HashMap<Id, Built>,
    inputs: &[ValueId],
    const_ids: &mut HashMap<usize, ConstId>,
    g: &mut Graph,
) -> Result<Built> {
    let value = |id: Id| match built.get(&eg.find(id)) {
        Some(Built::Value(v)) => Ok(*v),
        _ => Err(err(format!("class {id} is used before it is built"))),
    };
    match n {
        Qc::Input(k) => inputs
            .get(k.index())
            .map(|&v| Built::Value(v))
            .ok_or_else(|| err(format!("input {k} does not exist"))),
        Qc::Const(k) => {
            let (t, tk) = eg
                .analysis
                .konst(*k)
                .ok_or_else(|| err(format!("{k} does not exist")))?;
            let ty = eg
                .analysis
                .tensor_type(*tk)
                .ok_or_else(|| err(format!("{k} has no single type")))?;
            let c = *const_ids
                .entry(Arc::as_ptr(t) as usize)
                .or_insert_with(|| g.add_const_tensor(Arc::<Tensor>::clone(t)));
            Ok(Built::Value(g.add_const_value(c, ty.quant.clone())))
        }
        Qc::Proj([slot, _, tuple]) => {
            let s = eg[*slot]
                .data
                .slot
                .ok_or_else(|| err("proj without a slot"))?;
            match built.get(&eg.find(*tuple)) {
                Some(Built::Tuple(node)) => g
                    .node(*node)
                    .outputs
                    .get(s as usize)
                    .map(|&v| Built::Value(v))
                    .ok_or_else(|| err(format!("proj of missing slot {s}"))),
                _ => Err(err("proj of a class that is not a tuple")),
            }
        }
        _ => {
            let (attr, ty, operands) = n
                .op_parts()
                .ok_or_else(|| err(format!("cannot emit {n}")))?;
            let a = eg[attr]
                .data
                .attr
                .and_then(|k: AttrKey| eg.analysis.attr(k))
                .ok_or_else(|| err(format!("{n} has no attribute leaf")))?;
            let tys = eg[ty]
                .data
                .ty_leaf
                .and_then(|k| eg.analysis.types(k))
                .ok_or_else(|| err(format!("{n} has no type leaf")))?;
            let mut ins = Vec::with_capacity(operands.len());
            for &o in operands {
                if !eg[o].nodes.iter().any(|x| matches!(x, Qc::Absent)) {
                    ins.push(value(o)?);
                }
            }
            let node = g.add_node(a.op.clone(), ins, tys.to_vec(), a.name.clone());
            if tys.len() == 1 {
                Ok(Built::Value(g.node(node).outputs[0]))
            } else {
                Ok(Built::Tuple(node))
            }
        }
    }
}

/// Whether two graphs are the same (constants compared by identity, not by data).
pub fn same_graph(a: &Graph, b: &Graph) -> bool {
    a.nodes == b.nodes
        && a.values == b.values
        && a.inputs == b.inputs
        && a.outputs == b.outputs
        && a.consts.len() == b.consts.len()
        && a.consts
            .iter()
            .zip(&b.consts)
            .all(|(x, y)| Arc::ptr_eq(x, y))
}
