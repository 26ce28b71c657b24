//! `dce` and `compact`: dropping dead nodes and renumbering densely.
//!
//! - `dce` removes every node none of whose results reaches a graph output (through
//!   any chain of uses), then compacts. Graph inputs are kept even when unused: they
//!   are the function's signature.
//! - `compact` is [`Graph::compact`] alone (which also drops dead nodes, so the two
//!   differ only in the statistics they report).
//!
//! **Invariant.** Both leave ids dense and in first-appearance order, so printing a
//! graph after either does not depend on arena holes left by earlier passes.

use std::sync::Arc;

use qc_ir::{Graph, Node, Port, Value};

use crate::{Changed, Pass, PassCx, Result};

/// The `dce` pass.
pub struct Dce;

/// The `compact` pass.
pub struct Compact;

/// What `Graph::compact` is compared against to report a change, without comparing
/// constant data (constants are compared by pointer).
struct Before {
    nodes: Vec<Node>,
    values: Vec<Value>,
    consts: Vec<Arc<qc_ir::Tensor>>,
    inputs: Vec<Port>,
    outputs: Vec<Port>,
}

impl Before {
    fn of(g: &Graph) -> Before {
        Before {
            nodes: g.nodes.clone(),
            values: g.values.clone(),
            consts: g.consts.clone(),
            inputs: g.inputs.clone(),
            outputs: g.outputs.clone(),
        }
    }

    fn differs(&self, g: &Graph) -> bool {
        self.nodes != g.nodes
            || self.values != g.values
            || self.inputs != g.inputs
            || self.outputs != g.outputs
            || self.consts.len() != g.consts.len()
            || self
                .consts
                .iter()
                .zip(&g.consts)
                .any(|(a, b)| !Arc::ptr_eq(a, b))
    }
}

impl Pass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        let (nodes, values, consts) = (g.nodes.len(), g.values.len(), g.consts.len());
        let before = Before::of(g);
        g.compact();
        cx.stat("removed-nodes", nodes - g.nodes.len().min(nodes));
        cx.stat("removed-values", values - g.values.len().min(values));
        cx.stat("removed-consts", consts - g.consts.len().min(consts));
        Ok(Changed::from_bool(before.differs(g)))
    }
}

impl Pass for Compact {
    fn name(&self) -> &'static str {
        "compact"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        let before = Before::of(g);
        g.compact();
        cx.stat("nodes", g.nodes.len());
        cx.stat("values", g.values.len());
        cx.stat("consts", g.consts.len());
        Ok(Changed::from_bool(before.differs(g)))
    }
}
