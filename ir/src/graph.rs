//! The graph: arenas of nodes, values and constants addressed by typed ids.
//!
//! **Invariants** (checked by [`crate::verify`]):
//! - `nodes` are in topological order: every operand of node `n` is a graph input, a
//!   constant, or a result of a node before `n`. (This is the order of egg's
//!   `RecExpr`, so graph ↔ e-graph is a linear walk.)
//! - every value has exactly one definition ([`ValueDef`]), and a node's `outputs[i]`
//!   is defined as `ValueDef::Node { node, slot: i }`.
//! - every value has a static [`TensorType`]; a constant value's dtype and shape are
//!   those of its tensor.
//!
//! ONNX node names are kept in [`Node::name`] for messages only, never as identity.

use std::sync::Arc;

use crate::{Op, Tensor, TensorType};

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident, $prefix:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);

        impl $name {
            pub fn index(self) -> usize {
                self.0 as usize
            }
            pub fn from_index(i: usize) -> Self {
                $name(u32::try_from(i).expect("invariant: fewer than 2^32 entities"))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(/// Index of a node in [`Graph::nodes`].
    NodeId, "n");
id_type!(/// Index of a value in [`Graph::values`].
    ValueId, "%");
id_type!(/// Index of a constant tensor in [`Graph::consts`].
    ConstId, "#");

/// Where a value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueDef {
    /// The `i`-th graph input.
    Input(u32),
    /// Result `slot` of `node`.
    Node { node: NodeId, slot: u32 },
    /// A constant tensor. Several values may share one tensor (e.g. with different
    /// quantization parameters on the same bytes).
    Const(ConstId),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub ty: TensorType,
    pub def: ValueDef,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// The source node's name (ONNX), for messages. May be empty.
    pub name: String,
}

/// A named graph input or output.
#[derive(Clone, Debug, PartialEq)]
pub struct Port {
    pub name: String,
    pub value: ValueId,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub values: Vec<Value>,
    pub consts: Vec<Arc<Tensor>>,
    pub inputs: Vec<Port>,
    pub outputs: Vec<Port>,
}

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }

    fn push_value(&mut self, ty: TensorType, def: ValueDef) -> ValueId {
        let id = ValueId::from_index(self.values.len());
        self.values.push(Value { ty, def });
        id
    }

    /// Append a graph input.
    pub fn add_input(&mut self, name: impl Into<String>, ty: TensorType) -> ValueId {
        let i = u32::try_from(self.inputs.len()).expect("invariant: fewer than 2^32 inputs");
        let v = self.push_value(ty, ValueDef::Input(i));
        self.inputs.push(Port {
            name: name.into(),
            value: v,
        });
        v
    }

    /// Store a tensor in the constant arena (no value yet).
    pub fn add_const_tensor(&mut self, t: Arc<Tensor>) -> ConstId {
        let id = ConstId::from_index(self.consts.len());
        self.consts.push(t);
        id
    }

    /// A new value for an existing constant tensor, with optional quantization params.
    pub fn add_const_value(&mut self, c: ConstId, quant: Option<qc_qmath::QuantParams>) -> ValueId {
        let t = &self.consts[c.index()];
        let ty = TensorType {
            dtype: t.dtype(),
            shape: t.shape().clone(),
            quant,
        };
        self.push_value(ty, ValueDef::Const(c))
    }

    /// Store a tensor and return a plain (unquantized) value for it.
    pub fn add_const(&mut self, t: impl Into<Arc<Tensor>>) -> ValueId {
        let c = self.add_const_tensor(t.into());
        self.add_const_value(c, None)
    }

    /// Append a node with results of the given types; returns its id. The caller
    /// keeps the topological order by only using already defined operands.
    pub fn add_node(
        &mut self,
        op: Op,
        inputs: Vec<ValueId>,
        output_types: Vec<TensorType>,
        name: impl Into<String>,
    ) -> NodeId {
        let node = NodeId::from_index(self.nodes.len());
        let outputs = output_types
            .into_iter()
            .enumerate()
            .map(|(slot, ty)| {
                let slot = u32::try_from(slot).expect("invariant: fewer than 2^32 results");
                self.push_value(ty, ValueDef::Node { node, slot })
            })
            .collect();
        self.nodes.push(Node {
            op,
            inputs,
            outputs,
            name: name.into(),
        });
        node
    }

    /// Append a graph output.
    pub fn add_output(&mut self, name: impl Into<String>, value: ValueId) {
        self.outputs.push(Port {
            name: name.into(),
            value,
        });
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id.index()]
    }

    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.index()]
    }

    pub fn value_mut(&mut self, id: ValueId) -> &mut Value {
        &mut self.values[id.index()]
    }

    pub fn ty(&self, id: ValueId) -> &TensorType {
        &self.values[id.index()].ty
    }

    /// The constant tensor behind a value, if the value is a constant.
    pub fn const_of(&self, id: ValueId) -> Option<&Arc<Tensor>> {
        match self.values.get(id.index())?.def {
            ValueDef::Const(c) => self.consts.get(c.index()),
            _ => None,
        }
    }

    /// Iterate nodes with their ids, in (topological) order.
    pub fn iter_nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (NodeId::from_index(i), n))
    }

    /// Number of uses of every value (as node operands and graph outputs).
    pub fn use_counts(&self) -> Vec<usize> {
        let mut uses = vec![0usize; self.values.len()];
        for n in &self.nodes {
            for &v in &n.inputs {
                uses[v.index()] += 1;
            }
        }
        for o in &self.outputs {
            uses[o.value.index()] += 1;
        }
        uses
    }

    /// Remove nodes whose results are all unused (transitively), then renumber nodes,
    /// values and constants densely in order of first appearance (inputs, then each
    /// node's operands and results in node order). Graph inputs are always kept.
    /// After this, printing is independent of arena holes.
    pub fn compact(&mut self) {
        // Liveness, walking nodes backwards.
        let mut live_v = vec![false; self.values.len()];
        for o in &self.outputs {
            live_v[o.value.index()] = true;
        }
        let mut live_n = vec![false; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate().rev() {
            if n.outputs.iter().any(|o| live_v[o.index()]) {
                live_n[i] = true;
                for &v in &n.inputs {
                    live_v[v.index()] = true;
                }
            }
        }

        let mut vmap: Vec<Option<ValueId>> = vec![None; self.values.len()];
        let mut cmap: Vec<Option<ConstId>> = vec![None; self.consts.len()];
        let mut values = Vec::new();
        let mut consts: Vec<Arc<Tensor>> = Vec::new();
        let old_values = std::mem::take(&mut self.values);
        let old_consts = std::mem::take(&mut self.consts);

        let mut map_value = |v: ValueId,
                             def_override: Option<ValueDef>,
                             values: &mut Vec<Value>,
                             consts: &mut Vec<Arc<Tensor>>|
         -> ValueId {
            if let Some(n) = vmap[v.index()] {
                return n;
            }
            let old = &old_values[v.index()];
            let def = match (def_override, old.def) {
                (Some(d), _) => d,
                (None, ValueDef::Const(c)) => {
                    let nc = *cmap[c.index()].get_or_insert_with(|| {
                        consts.push(old_consts[c.index()].clone());
                        ConstId::from_index(consts.len() - 1)
                    });
                    ValueDef::Const(nc)
                }
                (None, d) => d,
            };
            let id = ValueId::from_index(values.len());
            values.push(Value {
                ty: old.ty.clone(),
                def,
            });
            vmap[v.index()] = Some(id);
            id
        };

        for p in &mut self.inputs {
            p.value = map_value(p.value, None, &mut values, &mut consts);
        }
        let old_nodes = std::mem::take(&mut self.nodes);
        for (i, mut n) in old_nodes.into_iter().enumerate() {
            if !live_n[i] {
                continue;
            }
            let nid = NodeId::from_index(self.nodes.len());
            n.inputs = n
                .inputs
                .iter()
                .map(|&v| map_value(v, None, &mut values, &mut consts))
                .collect();
            n.outputs = n
                .outputs
                .iter()
                .enumerate()
                .map(|(slot, &v)| {
                    let def = ValueDef::Node {
                        node: nid,
                        slot: slot as u32,
                    };
                    map_value(v, Some(def), &mut values, &mut consts)
                })
                .collect();
            self.nodes.push(n);
        }
        for p in &mut self.outputs {
            p.value = map_value(p.value, None, &mut values, &mut consts);
        }
        self.values = values;
        self.consts = consts;
    }
}
