//! The embedding API: load a model, compile it for the host, run it.
//!
//! ```no_run
//! use qc::{Model, Options, TensorRef};
//!
//! # fn main() -> Result<(), qc::Error> {
//! let model = Model::load("fixtures/models/cnn_float.onnx")?;
//! let compiled = model.compile(&Options::default())?;
//! let x = vec![0.5f32; 3 * 16 * 16];
//! let outputs = compiled.run(&[TensorRef::new(&[1, 3, 16, 16], &x[..])])?;
//! println!("{:?}", outputs[0].dims());
//! # Ok(())
//! # }
//! ```
//!
//! **API boundary:** [`CompiledModel`] is `Send + Sync`; [`CompiledModel::run_into`]
//! writes caller buffers and allocates nothing per call once warm.

use std::path::{Path, PathBuf};

use qc_ir::{DType, Graph, Tensor, TensorData, TensorType};
use qc_onnx::ImportOptions;

use crate::{Error, Result};

/// How to compile a model.
#[derive(Clone, Debug)]
pub struct Options {
    /// Pass pipeline: `default`, `none`, or a comma-separated list of pass names.
    pub passes: String,
    /// Rounding contract of requantization.
    pub contract: qc_qmath::Contract,
    /// Which kernels the JIT uses for the innermost GEMM/conv tiles.
    pub kernels: qc_jit::KernelSet,
    /// Run the IR verifier after every pass.
    pub verify: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            passes: "default".into(),
            contract: qc_qmath::Contract::default(),
            kernels: qc_jit::KernelSet::default(),
            verify: false,
        }
    }
}

/// A model imported into qc's IR.
#[derive(Clone, Debug)]
pub struct Model {
    graph: Graph,
    /// Names the model in errors (the file, or `<bytes>`).
    source: PathBuf,
}

impl Model {
    /// Import an ONNX file (external data resolved next to it).
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Model::load_with(path, &ImportOptions::default())
    }

    /// Import an ONNX file with import options (input shapes, frozen inputs).
    pub fn load_with(path: impl AsRef<Path>, opts: &ImportOptions) -> Result<Model> {
        let path = path.as_ref();
        Ok(Model {
            graph: crate::load_onnx(path, opts)?,
            source: path.to_path_buf(),
        })
    }

    /// Import an ONNX model from memory (no external data).
    pub fn from_bytes(bytes: &[u8], opts: &ImportOptions) -> Result<Model> {
        let source = PathBuf::from("<bytes>");
        let graph =
            qc_onnx::import(bytes, opts, &qc_onnx::NoExternalData).map_err(|e| Error::Import {
                path: source.clone(),
                source: e,
            })?;
        Ok(Model { graph, source })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Optimize with the pass pipeline and compile to host machine code.
    pub fn compile(&self, opts: &Options) -> Result<CompiledModel> {
        let mut g = self.graph.clone();
        let pass_opts = qc_passes::PassOptions {
            verify: opts.verify,
            ..Default::default()
        };
        crate::optimize(&self.source, &mut g, &opts.passes, pass_opts, |_, _| {})?;
        let jit_opts = qc_jit::JitOptions {
            contract: opts.contract,
            kernels: opts.kernels,
            profile: false,
        };
        let jit = qc_jit::compile(&g, &jit_opts).map_err(|e| Error::Jit {
            path: self.source.clone(),
            source: e,
        })?;
        let ports = |ps: &[qc_ir::Port]| -> Vec<(String, TensorType)> {
            ps.iter()
                .map(|p| (p.name.clone(), g.ty(p.value).clone()))
                .collect()
        };
        Ok(CompiledModel {
            inputs: ports(&g.inputs),
            outputs: ports(&g.outputs),
            jit,
            source: self.source.clone(),
        })
    }
}

macro_rules! elem_enums {
    ($($v:ident($t:ty) = $d:ident),* $(,)?) => {
        /// Borrowed elements of one input, typed.
        #[derive(Clone, Copy, Debug)]
        pub enum DataRef<'a> { $($v(&'a [$t])),* }
        /// Mutable borrowed elements of one output buffer, typed.
        #[derive(Debug)]
        pub enum DataMut<'a> { $($v(&'a mut [$t])),* }
        $(
            impl<'a> From<&'a [$t]> for DataRef<'a> {
                fn from(v: &'a [$t]) -> Self { DataRef::$v(v) }
            }
            impl<'a> From<&'a mut [$t]> for DataMut<'a> {
                fn from(v: &'a mut [$t]) -> Self { DataMut::$v(v) }
            }
        )*
        impl DataRef<'_> {
            pub fn dtype(&self) -> DType { match self { $(DataRef::$v(_) => DType::$d),* } }
            fn bytes(&self) -> &[u8] { match self { $(DataRef::$v(v) => bytemuck::cast_slice(v)),* } }
        }
        impl DataMut<'_> {
            pub fn dtype(&self) -> DType { match self { $(DataMut::$v(_) => DType::$d),* } }
            fn bytes_mut(&mut self) -> &mut [u8] { match self { $(DataMut::$v(v) => bytemuck::cast_slice_mut(v)),* } }
        }
        fn data_ref(t: &TensorData) -> Option<DataRef<'_>> {
            match t { $(TensorData::$d(v) => Some(DataRef::$v(v)),)* _ => None }
        }
        fn data_mut(t: &mut TensorData) -> Option<DataMut<'_>> {
            match t { $(TensorData::$d(v) => Some(DataMut::$v(v)),)* _ => None }
        }
    };
}

elem_enums!(
    F32(f32) = F32,
    F64(f64) = F64,
    I8(i8) = I8,
    U8(u8) = U8,
    I16(i16) = I16,
    U16(u16) = U16,
    I32(i32) = I32,
    U32(u32) = U32,
    I64(i64) = I64,
    U64(u64) = U64,
);

/// A borrowed input tensor: shape and typed elements (row-major).
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    pub shape: &'a [usize],
    pub data: DataRef<'a>,
}

impl<'a> TensorRef<'a> {
    pub fn new(shape: &'a [usize], data: impl Into<DataRef<'a>>) -> Self {
        TensorRef {
            shape,
            data: data.into(),
        }
    }

    /// View a [`Tensor`] (`None` for element types the API does not take: bool, f16, bf16).
    pub fn of(t: &'a Tensor) -> Option<Self> {
        Some(TensorRef {
            shape: t.dims(),
            data: data_ref(t.data())?,
        })
    }
}

/// A borrowed output buffer: shape and typed elements (row-major).
#[derive(Debug)]
pub struct TensorMut<'a> {
    pub shape: &'a [usize],
    pub data: DataMut<'a>,
}

impl<'a> TensorMut<'a> {
    pub fn new(shape: &'a [usize], data: impl Into<DataMut<'a>>) -> Self {
        TensorMut {
            shape,
            data: data.into(),
        }
    }
}

/// A model compiled to host machine code. `Send + Sync`: run it from any thread.
pub struct CompiledModel {
    jit: qc_jit::CompiledModel,
    inputs: Vec<(String, TensorType)>,
    outputs: Vec<(String, TensorType)>,
    source: PathBuf,
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<CompiledModel>();
};

fn check(
    what: &str,
    ports: &[(String, TensorType)],
    index: usize,
    dtype: DType,
    shape: &[usize],
    len: usize,
) -> Result<()> {
    let (name, ty) = &ports[index];
    let numel: usize = shape.iter().product();
    if dtype != ty.dtype || shape != ty.shape.dims() || len != numel {
        return Err(Error::Mismatch {
            what: format!("{what} {index} ('{name}')"),
            expected: format!("{}{}", ty.dtype, ty.shape),
            got: format!(
                "{dtype}{} with {len} elements",
                qc_ir::Shape(shape.to_vec())
            ),
        });
    }
    Ok(())
}

impl CompiledModel {
    /// Names and types of the inputs, in order.
    pub fn inputs(&self) -> &[(String, TensorType)] {
        &self.inputs
    }

    /// Names and types of the outputs, in order.
    pub fn outputs(&self) -> &[(String, TensorType)] {
        &self.outputs
    }

    /// Compile time, code size, arena size.
    pub fn stats(&self) -> &qc_jit::CompileStats {
        self.jit.stats()
    }

    fn check_inputs<'a>(&self, inputs: &'a [TensorRef<'a>]) -> Result<()> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Count {
                what: "inputs",
                expected: self.inputs.len(),
                got: inputs.len(),
            });
        }
        for (i, t) in inputs.iter().enumerate() {
            check(
                "input",
                &self.inputs,
                i,
                t.data.dtype(),
                t.shape,
                t.data.bytes().len() / t.data.dtype().size(),
            )?;
        }
        Ok(())
    }

    /// Run; allocates the output tensors.
    pub fn run(&self, inputs: &[TensorRef<'_>]) -> Result<Vec<Tensor>> {
        self.check_inputs(inputs)?;
        let mut outs: Vec<Tensor> = self
            .outputs
            .iter()
            .map(|(_, ty)| Tensor::zeros(ty.dtype, ty.shape.clone()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Usage(e.to_string()))?;
        let ins: Vec<&[u8]> = inputs.iter().map(|t| t.data.bytes()).collect();
        let mut bufs: Vec<&mut [u8]> = Vec::with_capacity(outs.len());
        for (j, t) in outs.iter_mut().enumerate() {
            let Some(d) = data_mut(t.data_mut()) else {
                return Err(Error::Usage(format!(
                    "output {j} ('{}') has element type {}, which the embedding API does not return",
                    self.outputs[j].0, self.outputs[j].1.dtype
                )));
            };
            bufs.push(match d {
                DataMut::F32(v) => bytemuck::cast_slice_mut(v),
                DataMut::F64(v) => bytemuck::cast_slice_mut(v),
                DataMut::I8(v) => bytemuck::cast_slice_mut(v),
                DataMut::U8(v) => v,
                DataMut::I16(v) => bytemuck::cast_slice_mut(v),
                DataMut::U16(v) => bytemuck::cast_slice_mut(v),
                DataMut::I32(v) => bytemuck::cast_slice_mut(v),
                DataMut::U32(v) => bytemuck::cast_slice_mut(v),
                DataMut::I64(v) => bytemuck::cast_slice_mut(v),
                DataMut::U64(v) => bytemuck::cast_slice_mut(v),
            });
        }
        self.jit.run_into(&ins, &mut bufs).map_err(|e| Error::Jit {
            path: self.source.clone(),
            source: e,
        })?;
        drop(bufs);
        Ok(outs)
    }

    /// Run into caller buffers; no allocation per call once warm.
    pub fn run_into(&self, inputs: &[TensorRef<'_>], outputs: &mut [TensorMut<'_>]) -> Result<()> {
        self.check_inputs(inputs)?;
        if outputs.len() != self.outputs.len() {
            return Err(Error::Count {
                what: "outputs",
                expected: self.outputs.len(),
                got: outputs.len(),
            });
        }
        for (j, t) in outputs.iter_mut().enumerate() {
            let dt = t.data.dtype();
            let len = t.data.bytes_mut().len() / dt.size();
            check("output", &self.outputs, j, dt, t.shape, len)?;
        }
        let run = |ins: &[&[u8]], outs: &mut [&mut [u8]]| {
            self.jit.run_into(ins, outs).map_err(|e| Error::Jit {
                path: self.source.clone(),
                source: e,
            })
        };
        // The byte views live on the stack for models with few ports (all real ones).
        const PORTS: usize = 16;
        if inputs.len() <= PORTS && outputs.len() <= PORTS {
            let mut ins: [&[u8]; PORTS] = [&[]; PORTS];
            for (slot, t) in ins.iter_mut().zip(inputs) {
                *slot = t.data.bytes();
            }
            let mut outs: [&mut [u8]; PORTS] = Default::default();
            let n = outputs.len();
            for (slot, t) in outs.iter_mut().zip(outputs.iter_mut()) {
                *slot = t.data.bytes_mut();
            }
            run(&ins[..inputs.len()], &mut outs[..n])
        } else {
            let ins: Vec<&[u8]> = inputs.iter().map(|t| t.data.bytes()).collect();
            let mut outs: Vec<&mut [u8]> = outputs.iter_mut().map(|t| t.data.bytes_mut()).collect();
            run(&ins, &mut outs)
        }
    }
}
