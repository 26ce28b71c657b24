//! qc — a compiler for quantized neural networks.
//!
//! This facade crate ties the pipeline together for the `qc` binary and for programs
//! that embed qc: [`Model`] loads an ONNX model, [`Model::compile`] optimizes it and
//! compiles it to host machine code ([`CompiledModel`], `Send + Sync`); lower-level
//! helpers load into the IR ([`load_onnx`]), run the reference interpreter
//! ([`run_interp`]) and read and write `.npy` tensors ([`npy`]).
//!
//! For post-training quantization it supplies what `qc-quant` leaves to its caller:
//! the calibration data read from files ([`read_calibration`]), an executor that runs
//! calibration through the JIT ([`JitExecutor`]), and writing the result as a QDQ ONNX
//! model ([`write_qdq_onnx`]); [`write_c`] writes the C emitter's files.
//!
//! **API boundary:** this is the only crate that touches files; the crates below it
//! take bytes and return values.
//!
//! **Invariant:** every error names the file (model, data or output) it concerns.

use std::path::{Component, Path, PathBuf};

pub use qc_cgen as cgen;
pub use qc_interp as interp;
pub use qc_ir as ir;
pub use qc_jit as jit;
pub use qc_onnx as onnx;
pub use qc_passes as passes;
pub use qc_qmath as qmath;
pub use qc_quant as quant;

use qc_ir::{Graph, Tensor};
use qc_onnx::{ExternalData, ImportOptions};

pub mod model;
pub mod npy;

pub use model::{CompiledModel, DataMut, DataRef, Model, Options, TensorMut, TensorRef};

/// Errors of the facade: each names the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {msg}", path.display())]
    Npy { path: PathBuf, msg: String },
    #[error("{}: {source}", path.display())]
    Import {
        path: PathBuf,
        source: qc_onnx::Error,
    },
    #[error("{}: {source}", path.display())]
    Run {
        path: PathBuf,
        source: qc_interp::Error,
    },
    #[error("{}: {source}", path.display())]
    Pass {
        path: PathBuf,
        source: qc_passes::Error,
    },
    #[error("{}: {source}", path.display())]
    Jit {
        path: PathBuf,
        source: qc_jit::Error,
    },
    #[error("{}: {source}", path.display())]
    Quant {
        path: PathBuf,
        source: qc_quant::Error,
    },
    #[error("{}: {source}", path.display())]
    Cgen {
        path: PathBuf,
        source: qc_cgen::Error,
    },
    #[error("{}: {source}", path.display())]
    Export {
        path: PathBuf,
        source: qc_onnx::export::ExportError,
    },
    #[error("{what}: expected {expected}, got {got}")]
    Mismatch {
        what: String,
        expected: String,
        got: String,
    },
    #[error("the model has {expected} {what}, {got} given")]
    Count {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Ir(#[from] qc_ir::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Resolves ONNX external-data locations relative to the model's directory.
///
/// Locations must be relative paths without `..` components: a model file cannot make
/// qc read outside its own directory.
pub struct DirExternalData {
    dir: PathBuf,
}

impl DirExternalData {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirExternalData { dir: dir.into() }
    }
}

impl ExternalData for DirExternalData {
    fn load(&self, location: &str, offset: u64, length: Option<u64>) -> std::io::Result<Vec<u8>> {
        use std::io::{Error as E, ErrorKind, Read, Seek, SeekFrom};
        let rel = Path::new(location);
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(E::new(
                ErrorKind::InvalidInput,
                format!("external data location '{location}' must be a plain relative path"),
            ));
        }
        let path = self.dir.join(rel);
        let mut f = std::fs::File::open(&path)
            .map_err(|e| E::new(e.kind(), format!("{}: {e}", path.display())))?;
        let size = f.metadata()?.len();
        let len = match length {
            Some(l) => l,
            None => size.saturating_sub(offset),
        };
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(E::new(
                ErrorKind::UnexpectedEof,
                format!(
                    "{}: wants bytes {offset}..{offset}+{len} of a {size}-byte file",
                    path.display()
                ),
            ));
        }
        f.seek(SeekFrom::Start(offset))?;
        let mut buf =
            vec![0u8; usize::try_from(len).map_err(|_| E::new(ErrorKind::InvalidInput, "length"))?];
        f.read_exact(&mut buf)?;
        Ok(buf)
    }
}

/// Import an ONNX file into the IR, resolving external data next to it.
pub fn load_onnx(path: &Path, opts: &ImportOptions) -> Result<Graph> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    qc_onnx::import(&bytes, opts, &DirExternalData::new(dir)).map_err(|e| Error::Import {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Run a graph on the reference interpreter; `path` names the model in errors.
pub fn run_interp(
    path: &Path,
    g: &Graph,
    inputs: &[Tensor],
    opts: &qc_interp::Options,
) -> Result<Vec<Tensor>> {
    qc_interp::run(g, inputs, opts).map_err(|e| Error::Run {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Run a pass pipeline (`default`, `none`, or a comma-separated list of pass names)
/// over a graph; `after` sees the graph after each pass. `path` names the model in
/// errors.
pub fn optimize(
    path: &Path,
    g: &mut Graph,
    pipeline: &str,
    options: qc_passes::PassOptions,
    after: impl FnMut(&qc_passes::PassReport, &Graph),
) -> Result<Vec<qc_passes::PassReport>> {
    let err = |source| Error::Pass {
        path: path.to_path_buf(),
        source,
    };
    let p = qc_passes::Pipeline::parse(pipeline).map_err(err)?;
    let mut cx = qc_passes::PassCx::new(options);
    let reports = p.run_with(g, &mut cx, after).map_err(err)?;
    Ok(reports)
}

/// Runs graphs for `qc-quant` (calibration, bias correction, accuracy debugging)
/// through the JIT: each graph is compiled once in `prepare`, then run per sample.
#[derive(Clone, Debug, Default)]
pub struct JitExecutor {
    pub options: qc_jit::JitOptions,
}

struct JitPrepared(qc_jit::CompiledModel);

impl qc_quant::Prepared for JitPrepared {
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, qc_quant::BoxError> {
        Ok(self.0.run(inputs)?)
    }
}

impl qc_quant::Executor for JitExecutor {
    fn prepare<'a>(
        &'a self,
        g: &'a Graph,
    ) -> Result<Box<dyn qc_quant::Prepared + 'a>, qc_quant::BoxError> {
        Ok(Box::new(JitPrepared(qc_jit::compile(g, &self.options)?)))
    }
}

/// Calibration samples for `g` (`samples[i]` holds one tensor per graph input, in
/// `g.inputs` order) from `--calib` arguments: one `PATH` for a single-input model,
/// else `NAME=PATH` for every input. A `PATH` is either a `.npy` file whose first axis
/// indexes samples (each sample the input's shape, or that shape without its leading
/// 1), or a directory of `.npy` files, one sample each (or a batch), taken in sorted
/// file-name order.
pub fn read_calibration(g: &Graph, specs: &[String]) -> Result<Vec<Vec<Tensor>>> {
    let names: Vec<&str> = g.inputs.iter().map(|p| p.name.as_str()).collect();
    let mut paths: Vec<Option<PathBuf>> = vec![None; names.len()];
    for spec in specs {
        let (index, path) = match spec.split_once('=') {
            Some((n, p)) if names.contains(&n) => (names.iter().position(|&x| x == n), p),
            Some((n, _)) if !Path::new(spec).exists() => {
                return Err(Error::Usage(format!(
                    "--calib '{spec}': the model has no input named '{n}' (inputs: {})",
                    names.join(", ")
                )))
            }
            _ if names.len() == 1 => (Some(0), spec.as_str()),
            _ => {
                return Err(Error::Usage(format!(
                "--calib '{spec}': the model has {} inputs, give NAME=PATH for each (inputs: {})",
                names.len(),
                names.join(", ")
            )))
            }
        };
        let slot = index
            .and_then(|i| paths.get_mut(i))
            .ok_or_else(|| Error::Usage(format!("--calib '{spec}': no such input")))?;
        if slot.is_some() {
            return Err(Error::Usage(format!(
                "--calib: input '{}' is given twice",
                index.and_then(|i| names.get(i)).unwrap_or(&"")
            )));
        }
        *slot = Some(PathBuf::from(path));
    }
    let mut per_input = Vec::with_capacity(names.len());
    for (port, path) in g.inputs.iter().zip(&paths) {
        let path = path.as_ref().ok_or_else(|| {
            Error::Usage(format!("no --calib data for model input '{}'", port.name))
        })?;
        per_input.push(input_samples(&port.name, g.ty(port.value), path)?);
    }
    qc_quant::zip_inputs(g, per_input).map_err(|e| Error::Quant {
        path: paths.iter().flatten().next().cloned().unwrap_or_default(),
        source: e,
    })
}

/// The samples of one input from a `.npy` file or a directory of them.
fn input_samples(name: &str, ty: &qc_ir::TensorType, path: &Path) -> Result<Vec<Tensor>> {
    let quant_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Quant { path: p, source }
    };
    if !path.is_dir() {
        let batch = npy::read_npy(path)?;
        return qc_quant::split_samples(name, ty, &batch).map_err(quant_err(path));
    }
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(io)?;
    files.retain(|f| f.extension().is_some_and(|x| x == "npy") && f.is_file());
    files.sort();
    if files.is_empty() {
        return Err(Error::Npy {
            path: path.to_path_buf(),
            msg: "the directory holds no .npy files".into(),
        });
    }
    let want = ty.shape.dims();
    let mut out = Vec::with_capacity(files.len());
    for f in &files {
        let mut t = npy::read_npy(f)?;
        // One sample saved without its leading 1 (`x[i]` of an [N, 1, ...] batch).
        if want.first() == Some(&1) && t.dims() == want.get(1..).unwrap_or_default() {
            t = t.reshaped(ty.shape.clone())?;
        }
        out.extend(qc_quant::split_samples(name, ty, &t).map_err(quant_err(f))?);
    }
    Ok(out)
}

/// Write a QDQ graph as ONNX: opset 13, or 21 when a value is 16-bit quantized
/// (`QuantizeLinear` takes 16-bit types only from opset 21). Returns the bytes written.
pub fn write_qdq_onnx(path: &Path, g: &Graph) -> Result<usize> {
    let wide = g.values.iter().any(|v| {
        v.ty.quant
            .as_ref()
            .is_some_and(|q| matches!(q.storage, qc_qmath::QType::I16 | qc_qmath::QType::U16))
    });
    let bytes =
        qc_onnx::export::to_onnx(g, if wide { 21 } else { 13 }).map_err(|e| Error::Export {
            path: path.to_path_buf(),
            source: e,
        })?;
    std::fs::write(path, &bytes).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    Ok(bytes.len())
}

/// Emit C for the optimized graph `g` and write `DIR/NAME.h` and `DIR/NAME.c`
/// (creating `dir`). `model` names the model in errors.
pub fn write_c(
    model: &Path,
    g: &Graph,
    opts: &qc_cgen::CgenOptions,
    dir: &Path,
) -> Result<qc_cgen::CSource> {
    let c = qc_cgen::emit(g, opts).map_err(|e| Error::Cgen {
        path: model.to_path_buf(),
        source: e,
    })?;
    let io = |p: PathBuf| move |e| Error::Io { path: p, source: e };
    std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
    for (ext, text) in [("h", &c.header), ("c", &c.source)] {
        let p = dir.join(format!("{}.{ext}", c.name));
        std::fs::write(&p, text).map_err(io(p.clone()))?;
    }
    Ok(c)
}

/// Split a batch along its first axis: `[N, d...]` → N tensors of shape `[d...]`.
pub fn unstack(t: &Tensor) -> Result<Vec<Tensor>> {
    let Some((&n, inner)) = t.dims().split_first() else {
        return Err(Error::Usage("a scalar is not a batch".into()));
    };
    let bytes = t.data().to_le_bytes();
    let per = bytes.len().checked_div(n).unwrap_or(0);
    (0..n)
        .map(|i| {
            let chunk = bytes.get(i * per..(i + 1) * per).unwrap_or_default();
            let data = qc_ir::TensorData::from_le_bytes(t.dtype(), chunk)?;
            Ok(Tensor::new(inner.to_vec(), data)?)
        })
        .collect()
}

/// Stack tensors of one dtype and shape along a new first axis.
pub fn stack(ts: &[Tensor]) -> Result<Tensor> {
    let Some(first) = ts.first() else {
        return Err(Error::Usage("nothing to stack".into()));
    };
    let mut bytes = Vec::new();
    for t in ts {
        if t.dtype() != first.dtype() || t.dims() != first.dims() {
            return Err(Error::Mismatch {
                what: "stacked results".into(),
                expected: format!("{}{}", first.dtype(), first.shape()),
                got: format!("{}{}", t.dtype(), t.shape()),
            });
        }
        bytes.extend(t.data().to_le_bytes());
    }
    let mut dims = vec![ts.len()];
    dims.extend_from_slice(first.dims());
    let data = qc_ir::TensorData::from_le_bytes(first.dtype(), &bytes)?;
    Ok(Tensor::new(dims, data)?)
}

/// Parse a shape binding `NAME=D,D,...` (as `--input-shape` takes it).
pub fn parse_shape_binding(s: &str) -> Result<(String, Vec<usize>)> {
    let (name, dims) = s
        .rsplit_once('=')
        .ok_or_else(|| Error::Usage(format!("shape binding '{s}' is not NAME=D,D,...")))?;
    let dims = if dims.trim().is_empty() {
        Vec::new()
    } else {
        dims.split(',')
            .map(|d| {
                d.trim().parse::<usize>().map_err(|_| {
                    Error::Usage(format!("shape binding '{s}': '{d}' is not a dimension"))
                })
            })
            .collect::<Result<Vec<_>>>()?
    };
    Ok((name.to_string(), dims))
}

/// The file name `qc run` writes an output to: every character outside
/// `[A-Za-z0-9_.-]` replaced by `_`, plus `.npy`.
pub fn output_file_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s == "." || s == ".." {
        s = s.replace('.', "_");
        s.insert(0, '_');
    }
    s + ".npy"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_bindings() {
        assert_eq!(
            parse_shape_binding("x=1,3,48,192").ok(),
            Some(("x".into(), vec![1, 3, 48, 192]))
        );
        assert_eq!(
            parse_shape_binding("a=b=2").ok(),
            Some(("a=b".into(), vec![2]))
        );
        assert_eq!(parse_shape_binding("s=").ok(), Some(("s".into(), vec![])));
        assert!(parse_shape_binding("x").is_err());
        assert!(parse_shape_binding("x=1,-3").is_err());
    }

    #[test]
    fn output_names_are_sanitized() {
        assert_eq!(output_file_name("gpu_0/softmax_1"), "gpu_0_softmax_1.npy");
        assert_eq!(output_file_name("a b:c.d-e"), "a_b_c.d-e.npy");
        assert_eq!(output_file_name(".."), "___.npy");
        assert_eq!(output_file_name(""), "_.npy");
    }

    #[test]
    fn stack_and_unstack_are_inverse() {
        let t = Tensor::new(
            vec![3, 2],
            qc_ir::TensorData::I16(vec![1, -2, 3, -4, 5, i16::MIN]),
        )
        .expect("valid");
        let parts = unstack(&t).expect("a batch");
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2].data(), &qc_ir::TensorData::I16(vec![5, i16::MIN]));
        assert_eq!(parts[0].dims(), &[2]);
        assert_eq!(stack(&parts).ok(), Some(t));
        let odd = Tensor::from_f32([3], vec![0.0; 3]).expect("valid");
        assert!(stack(&[parts[0].clone(), odd]).is_err());
        assert!(stack(&[]).is_err());
        assert!(unstack(&Tensor::scalar_f32(1.0)).is_err());
    }

    #[test]
    fn external_data_stays_in_its_directory() {
        let ext = DirExternalData::new(std::env::temp_dir());
        assert!(ext.load("../etc/passwd", 0, None).is_err());
        assert!(ext.load("/etc/passwd", 0, None).is_err());
    }
}
