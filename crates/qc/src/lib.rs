//! qc — a compiler for quantized neural networks.
//!
//! This facade crate ties the pipeline together for the `qc` binary and for programs
//! that embed qc: [`Model`] loads an ONNX model, [`Model::compile`] optimizes it and
//! compiles it to host machine code ([`CompiledModel`], `Send + Sync`); lower-level
//! helpers load into the IR ([`load_onnx`]), run the reference interpreter
//! ([`run_interp`]) and read and write `.npy` tensors ([`npy`]).
//!
//! **API boundary:** this is the only crate that touches files; the crates below it
//! take bytes and return values.

use std::path::{Component, Path, PathBuf};

pub use qc_interp as interp;
pub use qc_ir as ir;
pub use qc_jit as jit;
pub use qc_onnx as onnx;
pub use qc_passes as passes;
pub use qc_qmath as qmath;

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
    fn external_data_stays_in_its_directory() {
        let ext = DirExternalData::new(std::env::temp_dir());
        assert!(ext.load("../etc/passwd", 0, None).is_err());
        assert!(ext.load("/etc/passwd", 0, None).is_err());
    }
}
