//! qc-passes: graph-to-graph passes over [`qc_ir::Graph`].
//!
//! A [`Pass`] rewrites a graph in place and says whether it changed anything. Passes
//! are named in kebab-case; the names double as CLI vocabulary
//! (`--passes canonicalize-qdq,egg,dce`) and as snapshot headers. A [`Pipeline`] is an
//! explicit list of passes; [`Pipeline::parse`] knows the named pipelines `default`
//! and `none` and comma-separated lists of pass names.
//!
//! **Invariant:** every pass leaves a graph that passes `qc_ir::verify::verify` and
//! computes the same function (quantized results identical; float results up to
//! reassociation). The pipeline runs the verifier after every pass in debug builds
//! and when [`PassOptions::verify`] is set.
//!
//! Passes know no backend and no file format.

pub mod canonicalize;
pub mod dce;
pub mod egg;
pub mod fold;
pub mod memplan;
pub mod pipeline;

pub use pipeline::{PassReport, Pipeline};

use qc_ir::Graph;

/// Did a pass change the graph?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Changed {
    Yes,
    No,
}

impl Changed {
    pub fn from_bool(b: bool) -> Changed {
        if b {
            Changed::Yes
        } else {
            Changed::No
        }
    }
}

/// Limits of the e-graph pass's saturation.
#[derive(Clone, Debug, PartialEq)]
pub struct EggLimits {
    pub node_limit: usize,
    pub iter_limit: usize,
    pub time_limit: std::time::Duration,
}

impl Default for EggLimits {
    fn default() -> Self {
        EggLimits {
            node_limit: 200_000,
            iter_limit: 30,
            time_limit: std::time::Duration::from_secs(5),
        }
    }
}

/// Options every pass can read.
#[derive(Clone, Debug, Default)]
pub struct PassOptions {
    /// Run the verifier after every pass (always on in debug builds).
    pub verify: bool,
    pub egg: EggLimits,
}

/// What a pass may read and report besides the graph.
#[derive(Debug, Default)]
pub struct PassCx {
    pub options: PassOptions,
    /// Statistics of the pass being run, as (key, value) lines for `--print-after-all`
    /// (e.g. `("e-nodes", "1234")`). The pipeline clears it before each pass.
    pub stats: Vec<(String, String)>,
    /// Things a user should know (e.g. float ops left between dequantize and quantize).
    pub remarks: Vec<String>,
}

impl PassCx {
    pub fn new(options: PassOptions) -> PassCx {
        PassCx {
            options,
            ..Default::default()
        }
    }

    pub fn stat(&mut self, key: impl Into<String>, value: impl ToString) {
        self.stats.push((key.into(), value.to_string()));
    }

    pub fn remark(&mut self, msg: impl Into<String>) {
        self.remarks.push(msg.into());
    }
}

/// Errors of the pass pipeline.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("unknown pass or pipeline '{name}' (passes: {known})")]
    UnknownPass { name: String, known: String },
    /// A pass produced a graph the verifier rejects: always a compiler bug.
    #[error("after pass {pass}: {source}")]
    Verify {
        pass: &'static str,
        source: qc_ir::Error,
    },
    #[error("pass {pass}: {msg}")]
    Pass { pass: &'static str, msg: String },
    #[error(transparent)]
    Ir(#[from] qc_ir::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A graph-to-graph pass.
pub trait Pass {
    /// The kebab-case name (CLI vocabulary, snapshot header).
    fn name(&self) -> &'static str;
    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed>;
}
