//! ONNX `TensorProto` → [`Tensor`], and ONNX element types → [`DType`].
//!
//! Invariant: nothing is allocated for a tensor before its claimed size is checked:
//! dims are non-negative, the element count passes [`qc_ir::Shape::numel`] (at most
//! 2^31 elements), and the data present (typed field, `raw_data` or external bytes)
//! has exactly the length that count implies. A model claiming 2^40 elements is
//! rejected without allocating.

use onnx_protobuf::{tensor_proto::DataLocation, Message, TensorProto};
use qc_ir::{DType, Shape, Tensor, TensorData};

use crate::{Error, ExternalData, Result};

/// The name of an ONNX element type code (`TensorProto.DataType`), including the
/// ones newer than onnx-protobuf's enum.
pub(crate) fn onnx_type_name(code: i32) -> String {
    let s = match code {
        0 => "UNDEFINED",
        1 => "FLOAT",
        2 => "UINT8",
        3 => "INT8",
        4 => "UINT16",
        5 => "INT16",
        6 => "INT32",
        7 => "INT64",
        8 => "STRING",
        9 => "BOOL",
        10 => "FLOAT16",
        11 => "DOUBLE",
        12 => "UINT32",
        13 => "UINT64",
        14 => "COMPLEX64",
        15 => "COMPLEX128",
        16 => "BFLOAT16",
        17 => "FLOAT8E4M3FN",
        18 => "FLOAT8E4M3FNUZ",
        19 => "FLOAT8E5M2",
        20 => "FLOAT8E5M2FNUZ",
        21 => "UINT4",
        22 => "INT4",
        23 => "FLOAT4E2M1",
        24 => "FLOAT8E8M0",
        25 => "UINT2",
        26 => "INT2",
        _ => return format!("with code {code}"),
    };
    s.to_string()
}

/// The qc dtype of an ONNX element type code; `Err` carries the ONNX type's name.
pub(crate) fn dtype_from_onnx(code: i32) -> std::result::Result<DType, String> {
    Ok(match code {
        1 => DType::F32,
        2 => DType::U8,
        3 => DType::I8,
        4 => DType::U16,
        5 => DType::I16,
        6 => DType::I32,
        7 => DType::I64,
        9 => DType::Bool,
        10 => DType::F16,
        11 => DType::F64,
        12 => DType::U32,
        13 => DType::U64,
        16 => DType::BF16,
        _ => return Err(onnx_type_name(code)),
    })
}

/// A serialized TensorProto (the input_*.pb / output_*.pb files of ONNX backend tests).
pub fn tensor_from_pb(bytes: &[u8]) -> Result<Tensor> {
    let t = TensorProto::parse_from_bytes(bytes).map_err(|e| Error::Decode(e.to_string()))?;
    tensor_from_proto(&t, &crate::NoExternalData)
}

/// Decode one `TensorProto` (typed fields, `raw_data`, or external data through `ext`).
pub fn tensor_from_proto(t: &TensorProto, ext: &dyn ExternalData) -> Result<Tensor> {
    let name = if t.name.is_empty() {
        "<unnamed>"
    } else {
        t.name.as_str()
    };
    let err = |msg: String| Error::Tensor {
        name: name.to_string(),
        msg,
    };
    let dtype = dtype_from_onnx(t.data_type).map_err(|ty| Error::UnsupportedType {
        what: format!("tensor '{name}'"),
        dtype: ty,
    })?;
    if t.segment.is_some() {
        return Err(err("segmented tensors are not supported".into()));
    }
    let mut dims = Vec::with_capacity(t.dims.len().min(64));
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| err(format!("negative dim {d} in {:?}", t.dims)))?;
        dims.push(d);
    }
    let shape = Shape(dims);
    let n = shape.numel().map_err(|e| err(e.to_string()))?;
    let nbytes = n
        .checked_mul(dtype.size())
        .ok_or_else(|| err(format!("shape {shape} is too large")))?;

    let location = t
        .data_location
        .enum_value()
        .map_err(|v| err(format!("unknown data_location {v}")))?;
    let data = if location == DataLocation::EXTERNAL {
        let bytes = load_external(t, name, nbytes, ext)?;
        TensorData::from_le_bytes(dtype, &bytes).map_err(|e| err(e.to_string()))?
    } else if !t.raw_data.is_empty() {
        if typed_len(t) != 0 {
            return Err(err("has both raw_data and typed data".into()));
        }
        if t.raw_data.len() != nbytes {
            return Err(err(format!(
                "raw_data has {} bytes but shape {shape} of {dtype} needs {nbytes}",
                t.raw_data.len()
            )));
        }
        TensorData::from_le_bytes(dtype, &t.raw_data).map_err(|e| err(e.to_string()))?
    } else {
        typed_data(t, dtype, n).map_err(err)?
    };
    Tensor::new(shape, data).map_err(|e| err(e.to_string()))
}

fn typed_len(t: &TensorProto) -> usize {
    t.float_data.len()
        + t.int32_data.len()
        + t.int64_data.len()
        + t.double_data.len()
        + t.uint64_data.len()
        + t.string_data.len()
}

/// The typed field that holds `dtype`, checked to have exactly `n` elements, each in range.
fn typed_data(t: &TensorProto, dtype: DType, n: usize) -> std::result::Result<TensorData, String> {
    let (field, len) = match dtype {
        DType::F32 => ("float_data", t.float_data.len()),
        DType::F64 => ("double_data", t.double_data.len()),
        DType::I64 => ("int64_data", t.int64_data.len()),
        DType::U32 | DType::U64 => ("uint64_data", t.uint64_data.len()),
        _ => ("int32_data", t.int32_data.len()),
    };
    if len != n {
        return Err(format!(
            "{field} has {len} elements but the shape needs {n}"
        ));
    }
    // Narrow an int32_data/uint64_data element, rejecting values that do not fit.
    fn narrow<S: Copy + std::fmt::Display, T: TryFrom<S>>(
        v: &[S],
        field: &str,
        what: &str,
    ) -> std::result::Result<Vec<T>, String> {
        v.iter()
            .map(|&x| T::try_from(x).map_err(|_| format!("{field} value {x} does not fit {what}")))
            .collect()
    }
    Ok(match dtype {
        DType::F32 => TensorData::F32(t.float_data.clone()),
        DType::F64 => TensorData::F64(t.double_data.clone()),
        DType::I64 => TensorData::I64(t.int64_data.clone()),
        DType::U64 => TensorData::U64(t.uint64_data.clone()),
        DType::U32 => TensorData::U32(narrow(&t.uint64_data, field, "u32")?),
        DType::I32 => TensorData::I32(t.int32_data.clone()),
        DType::I16 => TensorData::I16(narrow(&t.int32_data, field, "i16")?),
        DType::U16 => TensorData::U16(narrow(&t.int32_data, field, "u16")?),
        DType::I8 => TensorData::I8(narrow(&t.int32_data, field, "i8")?),
        DType::U8 => TensorData::U8(narrow(&t.int32_data, field, "u8")?),
        // float16/bfloat16 are stored as their 16-bit patterns.
        DType::F16 => TensorData::F16(narrow(&t.int32_data, field, "a 16-bit pattern")?),
        DType::BF16 => TensorData::BF16(narrow(&t.int32_data, field, "a 16-bit pattern")?),
        DType::Bool => TensorData::Bool(t.int32_data.iter().map(|&x| x != 0).collect()),
    })
}

fn load_external(
    t: &TensorProto,
    name: &str,
    nbytes: usize,
    ext: &dyn ExternalData,
) -> Result<Vec<u8>> {
    let err = |msg: String| Error::Tensor {
        name: name.to_string(),
        msg,
    };
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for kv in &t.external_data {
        let num = |v: &str| {
            v.parse::<u64>().map_err(|_| {
                err(format!(
                    "external data '{}' is not a byte count: '{v}'",
                    kv.key
                ))
            })
        };
        match kv.key.as_str() {
            "location" => location = Some(kv.value.clone()),
            "offset" => offset = num(&kv.value)?,
            "length" => length = Some(num(&kv.value)?),
            _ => {}
        }
    }
    let location = location.ok_or_else(|| err("external data without a location".into()))?;
    let want = u64::try_from(nbytes).map_err(|_| err("too large".into()))?;
    if let Some(l) = length {
        if l != want {
            return Err(err(format!(
                "external data length {l} but the shape needs {nbytes} bytes"
            )));
        }
    }
    let bytes = ext
        .load(&location, offset, length)
        .map_err(|source| Error::ExternalData {
            name: name.to_string(),
            location: location.clone(),
            source,
        })?;
    if bytes.len() != nbytes {
        return Err(err(format!(
            "external data '{location}' has {} bytes but the shape needs {nbytes}",
            bytes.len()
        )));
    }
    Ok(bytes)
}
