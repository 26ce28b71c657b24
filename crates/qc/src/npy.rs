//! `.npy` files ↔ [`Tensor`]: the file format of `qc run`'s inputs and outputs.
//!
//! Little- and big-endian numeric arrays and bools in C order are read; Fortran order,
//! structured and object arrays are rejected with an error naming the file.

use std::io::{BufReader, BufWriter, Read};
use std::path::Path;

use npyz::{TypeChar, WriterBuilder};
use qc_ir::{Tensor, TensorData};

use crate::{Error, Result};

fn npy_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Npy {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Read a `.npy` file into a tensor.
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let file = std::fs::File::open(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    read_npy_from(BufReader::new(file), path)
}

/// Read `.npy` bytes from any reader; `path` only names the source in errors.
pub fn read_npy_from(reader: impl Read, path: &Path) -> Result<Tensor> {
    let npy = npyz::NpyFile::new(reader)
        .map_err(|e| npy_err(path, format!("not a valid .npy file: {e}")))?;
    if npy.order() != npyz::Order::C {
        return Err(npy_err(
            path,
            "Fortran-order arrays are not supported; save with np.ascontiguousarray",
        ));
    }
    let shape: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| npy_err(path, "dimension too large")))
        .collect::<Result<_>>()?;
    let numel = qc_ir::Shape(shape.clone())
        .numel()
        .map_err(|e| npy_err(path, e.to_string()))?;
    let dtype = npy.dtype();
    let npyz::DType::Plain(ts) = &dtype else {
        return Err(npy_err(
            path,
            format!("unsupported dtype {}", dtype.descr()),
        ));
    };
    let bad = |msg: String| npy_err(path, msg);
    let read_err = |e: std::io::Error| npy_err(path, format!("truncated or unreadable data: {e}"));
    let data = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => TensorData::F32(npy.into_vec::<f32>().map_err(read_err)?),
        (TypeChar::Float, 8) => TensorData::F64(npy.into_vec::<f64>().map_err(read_err)?),
        (TypeChar::Float, 2) => TensorData::F16(
            npy.into_vec::<half::f16>()
                .map_err(read_err)?
                .into_iter()
                .map(|h| h.to_bits())
                .collect(),
        ),
        (TypeChar::Int, 1) => TensorData::I8(npy.into_vec::<i8>().map_err(read_err)?),
        (TypeChar::Int, 2) => TensorData::I16(npy.into_vec::<i16>().map_err(read_err)?),
        (TypeChar::Int, 4) => TensorData::I32(npy.into_vec::<i32>().map_err(read_err)?),
        (TypeChar::Int, 8) => TensorData::I64(npy.into_vec::<i64>().map_err(read_err)?),
        (TypeChar::Uint, 1) => TensorData::U8(npy.into_vec::<u8>().map_err(read_err)?),
        (TypeChar::Uint, 2) => TensorData::U16(npy.into_vec::<u16>().map_err(read_err)?),
        (TypeChar::Uint, 4) => TensorData::U32(npy.into_vec::<u32>().map_err(read_err)?),
        (TypeChar::Uint, 8) => TensorData::U64(npy.into_vec::<u64>().map_err(read_err)?),
        (TypeChar::Bool, 1) => TensorData::Bool(npy.into_vec::<bool>().map_err(read_err)?),
        _ => return Err(bad(format!("unsupported dtype {}", ts))),
    };
    if data.len() != numel {
        return Err(bad(format!(
            "header says {numel} elements, file holds {}",
            data.len()
        )));
    }
    Tensor::new(shape, data).map_err(|e| npy_err(path, e.to_string()))
}

/// Write a tensor as a little-endian C-order `.npy` file.
pub fn write_npy(path: &Path, t: &Tensor) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut w = BufWriter::new(file);
    write_npy_to(&mut w, t).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    std::io::Write::flush(&mut w).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Write `.npy` bytes to any writer.
pub fn write_npy_to(w: &mut impl std::io::Write, t: &Tensor) -> std::io::Result<()> {
    let shape: Vec<u64> = t.dims().iter().map(|&d| d as u64).collect();
    macro_rules! put {
        ($ty:ty, $iter:expr) => {{
            let mut writer = npyz::WriteOptions::<$ty>::new()
                .default_dtype()
                .shape(&shape)
                .writer(w)
                .begin_nd()?;
            writer.extend($iter)?;
            writer.finish()
        }};
    }
    match t.data() {
        TensorData::F32(v) => put!(f32, v.iter().copied()),
        TensorData::F64(v) => put!(f64, v.iter().copied()),
        TensorData::F16(v) => put!(half::f16, v.iter().map(|&b| half::f16::from_bits(b))),
        // numpy has no bfloat16: widen to f32 exactly.
        TensorData::BF16(v) => put!(f32, v.iter().map(|&b| half::bf16::from_bits(b).to_f32())),
        TensorData::I8(v) => put!(i8, v.iter().copied()),
        TensorData::U8(v) => put!(u8, v.iter().copied()),
        TensorData::I16(v) => put!(i16, v.iter().copied()),
        TensorData::U16(v) => put!(u16, v.iter().copied()),
        TensorData::I32(v) => put!(i32, v.iter().copied()),
        TensorData::U32(v) => put!(u32, v.iter().copied()),
        TensorData::I64(v) => put!(i64, v.iter().copied()),
        TensorData::U64(v) => put!(u64, v.iter().copied()),
        TensorData::Bool(v) => put!(bool, v.iter().copied()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_numpy_dtype() {
        let cases = vec![
            Tensor::new(
                vec![2, 2],
                TensorData::F32(vec![1.5, -0.0, f32::INFINITY, 3.25]),
            ),
            Tensor::new(vec![3], TensorData::I8(vec![-128, 0, 127])),
            Tensor::new(vec![1, 3], TensorData::U8(vec![0, 128, 255])),
            Tensor::new(vec![2], TensorData::I64(vec![i64::MIN, 7])),
            Tensor::new(vec![], TensorData::I32(vec![42])),
            Tensor::new(vec![2], TensorData::Bool(vec![true, false])),
            Tensor::new(vec![1], TensorData::F16(vec![0x3c00])),
        ];
        for t in cases {
            let t = t.expect("valid test tensor");
            let mut buf = Vec::new();
            write_npy_to(&mut buf, &t).expect("write to memory");
            let back = read_npy_from(&buf[..], Path::new("mem.npy")).expect("read back");
            assert_eq!(back, t);
        }
    }

    #[test]
    fn reads_a_file_numpy_wrote() {
        // np.save of np.array([[1, 2, 3]], dtype='<i2'), bytes written out by hand:
        // magic, version 1.0, header length 118 (0x76), then the header dict padded to 64.
        let header = "{'descr': '<i2', 'fortran_order': False, 'shape': (1, 3), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let pad = 64 - (10 + header.len() + 1) % 64;
        let hlen = (header.len() + pad + 1) as u16;
        bytes.extend_from_slice(&hlen.to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend(std::iter::repeat_n(b' ', pad));
        bytes.push(b'\n');
        bytes.extend_from_slice(&[1, 0, 2, 0, 3, 0]);
        let t = read_npy_from(&bytes[..], Path::new("x.npy")).expect("valid npy");
        assert_eq!(t.dims(), &[1, 3]);
        assert_eq!(t.data(), &TensorData::I16(vec![1, 2, 3]));
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        assert!(read_npy_from(&b"not an npy"[..], Path::new("g.npy")).is_err());
        let t = Tensor::new(vec![4], TensorData::F32(vec![1.0; 4])).expect("valid");
        let mut buf = Vec::new();
        write_npy_to(&mut buf, &t).expect("write");
        for cut in [1, 9, buf.len() / 2, buf.len() - 1] {
            assert!(
                read_npy_from(&buf[..cut], Path::new("t.npy")).is_err(),
                "cut at {cut}"
            );
        }
    }
}
