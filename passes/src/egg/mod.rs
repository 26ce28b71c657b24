//! The e-graph pass `egg`: fusion, Q/DQ propagation and requantize folding by
//! equality saturation.
//!
//! The graph goes into an e-graph ([`convert::to_egraph`]), the rules of
//! [`rules::all`] run under the limits of [`crate::EggLimits`] (nodes, iterations,
//! time), and the cheapest equivalent graph by [`cost::QcCost`] comes back out
//! ([`convert::extract`]), rebuilt memoized on e-classes so shared subgraphs stay
//! shared.
//!
//! **Invariants.**
//! - Every union a rule makes is an equality of the interpreter's semantics
//!   (quantized results bit-identical, float results up to reassociation); so the
//!   e-graph is sound at any point, and stopping at a limit still yields a correct
//!   graph — just a less optimized one.
//! - Every class has one type; a union of classes of different types is a rule bug
//!   and fails the pass with [`crate::Error::Pass`] instead of producing a graph.
//! - The result is a compacted graph that passes `qc_ir::verify::verify` (checked
//!   before it replaces the input); when it is the same graph the pass reports
//!   `Changed::No` and leaves the input untouched.
//!
//! Statistics (`cx.stat`): `e-nodes`, `e-classes`, `iterations`, `stop-reason`,
//! `rules-fired` (`name×count, ..`), `float-ops-between-qdq`. Each float op left
//! between a dequantize and a quantize is also a remark.

pub mod analysis;
pub mod convert;
pub mod cost;
pub mod fold;
pub mod lang;
pub mod rules;

use std::collections::BTreeMap;

use egg::{Runner, SimpleScheduler};
use qc_ir::{Graph, Op, ValueDef};

use crate::{Changed, EggLimits, Error, Pass, PassCx, Result};
use analysis::QcAnalysis;
use rules::Rw;

/// Why saturation stopped.
#[derive(Clone, Debug, PartialEq)]
pub enum Stop {
    /// No rule changed anything: every rewrite the rules know has been found.
    Saturated,
    IterationLimit(usize),
    NodeLimit(usize),
    /// Seconds elapsed when the limit was noticed.
    TimeLimit(f64),
    Other(String),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Saturated => f.write_str("saturated"),
            Stop::IterationLimit(n) => write!(f, "iteration-limit ({n} iterations)"),
            Stop::NodeLimit(n) => write!(f, "node-limit ({n} e-nodes)"),
            Stop::TimeLimit(s) => write!(f, "time-limit ({s:.3} s)"),
            Stop::Other(s) => write!(f, "other ({s})"),
        }
    }
}

/// What one run of the e-graph did.
#[derive(Clone, Debug)]
pub struct EggReport {
    pub e_nodes: usize,
    pub e_classes: usize,
    pub iterations: usize,
    pub stop: Stop,
    /// Rule name → number of times it changed the e-graph.
    pub fired: BTreeMap<String, usize>,
    /// Float ops of the result that read a dequantize and feed a quantize
    /// (`"op 'name'"`).
    pub float_ops_between_qdq: Vec<String>,
}

impl EggReport {
    /// `rules-fired` as printed: `name×count` by name.
    pub fn fired_summary(&self) -> String {
        if self.fired.is_empty() {
            return "none".to_string();
        }
        self.fired
            .iter()
            .map(|(k, v)| format!("{k}×{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The optimized graph and the report.
#[derive(Clone, Debug)]
pub struct EggOutcome {
    pub graph: Graph,
    pub report: EggReport,
}

/// Run every rule on `g` (see the module docs).
pub fn optimize(g: &Graph, limits: &EggLimits) -> Result<EggOutcome> {
    optimize_with(g, limits, &rules::all())
}

/// Run the given rules on `g`.
pub fn optimize_with(g: &Graph, limits: &EggLimits, rules: &[Rw]) -> Result<EggOutcome> {
    let conv = convert::to_egraph(g)?;
    let runner: Runner<lang::Qc, QcAnalysis> = Runner::new(QcAnalysis::default())
        .with_egraph(conv.egraph)
        .with_node_limit(limits.node_limit)
        .with_iter_limit(limits.iter_limit)
        .with_time_limit(limits.time_limit)
        .with_scheduler(SimpleScheduler)
        .run(rules);
    let mut fired = BTreeMap::new();
    for it in &runner.iterations {
        for (name, n) in &it.applied {
            *fired.entry(name.to_string()).or_insert(0) += *n;
        }
    }
    let stop = match &runner.stop_reason {
        Some(egg::StopReason::Saturated) | None => Stop::Saturated,
        Some(egg::StopReason::IterationLimit(n)) => Stop::IterationLimit(*n),
        Some(egg::StopReason::NodeLimit(n)) => Stop::NodeLimit(*n),
        Some(egg::StopReason::TimeLimit(s)) => Stop::TimeLimit(*s),
        Some(egg::StopReason::Other(s)) => Stop::Other(s.clone()),
    };
    let iterations = runner.iterations.len();
    let mut eg = runner.egraph;
    eg.rebuild();
    if let Some(c) = eg.analysis.conflicts.first() {
        return Err(Error::Pass {
            pass: "egg",
            msg: format!("a rewrite {c} (a rule bug; the graph is left unchanged)"),
        });
    }
    let graph = convert::extract(&eg, g, &conv.roots, &conv.positions)?;
    qc_ir::verify::verify(&graph).map_err(|source| Error::Verify {
        pass: "egg",
        source,
    })?;
    let report = EggReport {
        e_nodes: eg.total_number_of_nodes(),
        e_classes: eg.number_of_classes(),
        iterations,
        stop,
        fired,
        float_ops_between_qdq: float_ops_between_qdq(&graph),
    };
    Ok(EggOutcome { graph, report })
}

/// Float ops that read a `dequantize` result and whose result feeds a `quantize`.
pub fn float_ops_between_qdq(g: &Graph) -> Vec<String> {
    let producer_op = |v: qc_ir::ValueId| match g.values.get(v.index()).map(|x| x.def) {
        Some(ValueDef::Node { node, .. }) => g.nodes.get(node.index()).map(|n| &n.op),
        _ => None,
    };
    let mut quantized_by: Vec<bool> = vec![false; g.values.len()];
    for n in &g.nodes {
        if matches!(n.op, Op::Quantize) {
            for &v in &n.inputs {
                if let Some(q) = quantized_by.get_mut(v.index()) {
                    *q = true;
                }
            }
        }
    }
    g.nodes
        .iter()
        .filter(|n| !matches!(n.op, Op::Quantize | Op::Dequantize))
        .filter(|n| {
            n.outputs.iter().any(|&v| {
                quantized_by.get(v.index()).copied().unwrap_or(false)
                    && g.values
                        .get(v.index())
                        .is_some_and(|x| x.ty.dtype.is_float() && x.ty.quant.is_none())
            })
        })
        .filter(|n| {
            n.inputs
                .iter()
                .any(|&v| matches!(producer_op(v), Some(Op::Dequantize)))
        })
        .map(|n| format!("{} '{}'", n.op.name(), n.name))
        .collect()
}

/// The e-graph pass (`egg`): all rules of [`rules::all`] under `cx.options.egg`.
#[derive(Clone, Copy, Debug, Default)]
pub struct EggPass;

impl Pass for EggPass {
    fn name(&self) -> &'static str {
        "egg"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed> {
        let out = optimize(g, &cx.options.egg)?;
        let r = &out.report;
        cx.stat("e-nodes", r.e_nodes);
        cx.stat("e-classes", r.e_classes);
        cx.stat("iterations", r.iterations);
        cx.stat("stop-reason", &r.stop);
        cx.stat("rules-fired", r.fired_summary());
        cx.stat("float-ops-between-qdq", r.float_ops_between_qdq.len());
        for op in &r.float_ops_between_qdq {
            cx.remark(format!(
                "egg: float {op} stays between a dequantize and a quantize (no quantized form is known to be exact)"
            ));
        }
        if convert::same_graph(g, &out.graph) {
            return Ok(Changed::No);
        }
        *g = out.graph;
        Ok(Changed::Yes)
    }
}
