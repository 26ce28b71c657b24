//! How qc-quant runs graphs: an [`Executor`] prepares a graph once (the JIT compiles
//! it, the interpreter just keeps it) and then runs it per calibration sample. The
//! facade fills it with the JIT or the interpreter, so this crate depends on no
//! backend beyond the reference interpreter ([`Interp`], the default and the oracle).

use qc_ir::{Graph, Tensor};

/// Any error an executor reports.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Prepares graphs for repeated runs.
pub trait Executor {
    fn prepare<'a>(&'a self, g: &'a Graph) -> Result<Box<dyn Prepared + 'a>, BoxError>;
}

/// A prepared graph: inputs in `g.inputs` order, results in `g.outputs` order.
pub trait Prepared {
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BoxError>;
}

/// The reference interpreter.
#[derive(Clone, Debug, Default)]
pub struct Interp {
    pub options: qc_interp::Options,
}

struct InterpRun<'a> {
    g: &'a Graph,
    options: qc_interp::Options,
}

impl Prepared for InterpRun<'_> {
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BoxError> {
        Ok(qc_interp::run(self.g, inputs, &self.options)?)
    }
}

impl Executor for Interp {
    fn prepare<'a>(&'a self, g: &'a Graph) -> Result<Box<dyn Prepared + 'a>, BoxError> {
        Ok(Box::new(InterpRun {
            g,
            options: self.options.clone(),
        }))
    }
}

/// An executor from a closure that runs a graph directly (no preparation step).
pub struct FnExecutor<F>(pub F);

struct FnRun<'a, F> {
    f: &'a F,
    g: &'a Graph,
}

impl<F> Prepared for FnRun<'_, F>
where
    F: Fn(&Graph, &[Tensor]) -> Result<Vec<Tensor>, BoxError>,
{
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BoxError> {
        (self.f)(self.g, inputs)
    }
}

impl<F> Executor for FnExecutor<F>
where
    F: Fn(&Graph, &[Tensor]) -> Result<Vec<Tensor>, BoxError>,
{
    fn prepare<'a>(&'a self, g: &'a Graph) -> Result<Box<dyn Prepared + 'a>, BoxError> {
        Ok(Box::new(FnRun { f: &self.0, g }))
    }
}
