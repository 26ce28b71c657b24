//! Named pipelines and the pass registry.

use std::time::{Duration, Instant};

use qc_ir::Graph;

use crate::canonicalize::CanonicalizeQdq;
use crate::dce::{Compact, Dce};
use crate::egg::EggPass;
use crate::fold::FoldConstants;
use crate::{Changed, Error, Pass, PassCx, Result};

/// The passes a pipeline can name, in no particular order.
fn registry() -> Vec<Box<dyn Pass>> {
    vec![
        Box::new(CanonicalizeQdq),
        Box::new(FoldConstants),
        Box::new(EggPass),
        Box::new(Dce),
        Box::new(Compact),
    ]
}

/// The `default` pipeline, in order. `dce` compacts, so no `compact` follows it.
///
/// `canonicalize-qdq` runs once, before `egg`: it absorbs a relu/clip (and a
/// per-channel mul) between a dequantized op and its quantize itself (see its module
/// docs), so `egg` never sees a float conv that a later canonicalization would still
/// have to quantize. That is one node of look-ahead in a linear pass, where running
/// `canonicalize-qdq, egg` a second time would double the cost of the most
/// expensive pass on every model.
pub const DEFAULT: &[&str] = &["canonicalize-qdq", "fold-constants", "egg", "dce"];

/// What one pass did: for `--print-after-all` and tests.
#[derive(Clone, Debug)]
pub struct PassReport {
    pub pass: &'static str,
    pub changed: Changed,
    pub time: Duration,
    pub stats: Vec<(String, String)>,
}

/// An explicit list of passes.
pub struct Pipeline {
    passes: Vec<Box<dyn Pass>>,
}

impl Pipeline {
    /// `default`, `none`, or a comma-separated list of pass names.
    pub fn parse(spec: &str) -> Result<Pipeline> {
        let names: Vec<&str> = match spec.trim() {
            "default" => DEFAULT.to_vec(),
            "none" | "" => Vec::new(),
            list => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect(),
        };
        let mut passes = Vec::new();
        for name in names {
            let pass = registry()
                .into_iter()
                .find(|p| p.name() == name)
                .ok_or_else(|| Error::UnknownPass {
                    name: name.to_string(),
                    known: registry()
                        .iter()
                        .map(|p| p.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            passes.push(pass);
        }
        Ok(Pipeline { passes })
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name()).collect()
    }

    /// Run every pass in order; `after` sees the graph after each pass.
    pub fn run_with(
        &self,
        g: &mut Graph,
        cx: &mut PassCx,
        mut after: impl FnMut(&PassReport, &Graph),
    ) -> Result<Vec<PassReport>> {
        let mut reports = Vec::new();
        for pass in &self.passes {
            cx.stats.clear();
            let t0 = Instant::now();
            let changed = pass.run(g, cx)?;
            let time = t0.elapsed();
            if cx.options.verify || cfg!(debug_assertions) {
                qc_ir::verify::verify(g).map_err(|source| Error::Verify {
                    pass: pass.name(),
                    source,
                })?;
            }
            let report = PassReport {
                pass: pass.name(),
                changed,
                time,
                stats: std::mem::take(&mut cx.stats),
            };
            after(&report, g);
            reports.push(report);
        }
        Ok(reports)
    }

    pub fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Vec<PassReport>> {
        self.run_with(g, cx, |_, _| {})
    }
}
