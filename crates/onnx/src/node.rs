//! The context of one ONNX node being imported: its resolved operands, its attributes
//! read safely, and error constructors that name the node, op and opset.
//!
//! Attributes are read field by field after checking the declared `AttributeType`
//! (never through onnx-protobuf's `as_value`, which has `unreachable!()` paths). An
//! attribute with type `UNDEFINED` (very old exporters) is read from the field the
//! caller expects.

use onnx_protobuf::{attribute_proto::AttributeType, AttributeProto, NodeProto, TensorProto};
use qc_ir::ValueId;

use crate::{Error, Result};

pub(crate) struct Cx<'a> {
    pub node: &'a NodeProto,
    /// The node's name, or a description of it when the model gives none.
    pub label: String,
    /// The ai.onnx opset the model imports (also for `com.microsoft` nodes, whose
    /// converters share the ai.onnx ones' helpers).
    pub opset: i64,
    /// Operands by position; `None` for an empty name (an absent optional input).
    pub inputs: Vec<Option<ValueId>>,
}

impl Cx<'_> {
    pub fn op(&self) -> &str {
        &self.node.op_type
    }

    pub fn err(&self, msg: impl Into<String>) -> Error {
        Error::Node {
            node: self.label.clone(),
            op: self.node.op_type.clone(),
            opset: self.opset,
            msg: msg.into(),
        }
    }

    /// An error saying that `what` is not supported.
    pub fn unsupported(&self, what: impl std::fmt::Display) -> Error {
        self.err(format!("{what} is not supported"))
    }

    /// Operand `i` must be a constant and is not.
    pub fn must_be_const(&self, i: usize) -> Error {
        Error::InputMustBeConstant {
            node: self.label.clone(),
            op: self.node.op_type.clone(),
            input: self.input_name(i).to_string(),
        }
    }

    pub fn input_name(&self, i: usize) -> &str {
        self.node.input.get(i).map(String::as_str).unwrap_or("")
    }

    /// A required operand.
    pub fn input(&self, i: usize) -> Result<ValueId> {
        self.opt(i)
            .ok_or_else(|| self.err(format!("required input {i} is missing")))
    }

    /// An optional operand (absent when beyond the list or named "").
    pub fn opt(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }

    /// Number of results the node uses: its output list without trailing empty names.
    pub fn n_outputs(&self) -> usize {
        self.node
            .output
            .iter()
            .rposition(|o| !o.is_empty())
            .map_or(0, |i| i + 1)
    }

    /// The name of output `i`, if the node names it.
    pub fn output_name(&self, i: usize) -> Option<&str> {
        self.node
            .output
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    fn attr(&self, name: &str, want: AttributeType) -> Result<Option<&AttributeProto>> {
        let Some(a) = self.node.attribute.iter().find(|a| a.name == name) else {
            return Ok(None);
        };
        if !a.ref_attr_name.is_empty() {
            return Err(self.err(format!("attribute '{name}' refers to a function attribute")));
        }
        match a.type_.enum_value() {
            Ok(t) if t == want || t == AttributeType::UNDEFINED => Ok(Some(a)),
            Ok(t) => Err(self.err(format!(
                "attribute '{name}' has type {t:?}, expected {want:?}"
            ))),
            Err(v) => Err(self.err(format!("attribute '{name}' has unknown type {v}"))),
        }
    }

    pub fn has_attr(&self, name: &str) -> bool {
        self.node.attribute.iter().any(|a| a.name == name)
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.attr(name, AttributeType::INT)?.map(|a| a.i))
    }

    pub fn int_or(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    /// An INT attribute used as a flag: 0 or 1.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool> {
        match self.int(name)? {
            None => Ok(default),
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            Some(v) => Err(self.err(format!("attribute '{name}' must be 0 or 1, got {v}"))),
        }
    }

    pub fn float(&self, name: &str) -> Result<Option<f32>> {
        Ok(self.attr(name, AttributeType::FLOAT)?.map(|a| a.f))
    }

    pub fn float_or(&self, name: &str, default: f32) -> Result<f32> {
        Ok(self.float(name)?.unwrap_or(default))
    }

    pub fn ints(&self, name: &str) -> Result<Option<&[i64]>> {
        Ok(self
            .attr(name, AttributeType::INTS)?
            .map(|a| a.ints.as_slice()))
    }

    pub fn floats(&self, name: &str) -> Result<Option<&[f32]>> {
        Ok(self
            .attr(name, AttributeType::FLOATS)?
            .map(|a| a.floats.as_slice()))
    }

    pub fn string(&self, name: &str) -> Result<Option<String>> {
        match self.attr(name, AttributeType::STRING)? {
            None => Ok(None),
            Some(a) => String::from_utf8(a.s.clone())
                .map(Some)
                .map_err(|_| self.err(format!("attribute '{name}' is not UTF-8"))),
        }
    }

    pub fn tensor(&self, name: &str) -> Result<Option<&TensorProto>> {
        match self.attr(name, AttributeType::TENSOR)? {
            None => Ok(None),
            Some(a) => {
                a.t.as_ref()
                    .map(Some)
                    .ok_or_else(|| self.err(format!("attribute '{name}' holds no tensor")))
            }
        }
    }

    /// An INTS attribute of non-negative values (kernel shapes, strides, pads, ...).
    pub fn usizes(&self, name: &str) -> Result<Option<Vec<usize>>> {
        let Some(v) = self.ints(name)? else {
            return Ok(None);
        };
        v.iter()
            .map(|&x| {
                usize::try_from(x).map_err(|_| {
                    self.err(format!("attribute '{name}' has negative value {x}: {v:?}"))
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Normalize a possibly negative axis against `rank` (valid: `-rank..rank`).
    pub fn axis(&self, what: &str, a: i64, rank: usize) -> Result<usize> {
        let r = rank as i128;
        let v = i128::from(a);
        let n = if v < 0 { v + r } else { v };
        if n < 0 || n >= r {
            return Err(self.err(format!("{what} {a} out of range for rank {rank}")));
        }
        Ok(n as usize)
    }

    /// Normalize a list of axes, sort it, and reject duplicates.
    pub fn axes(&self, what: &str, axes: &[i64], rank: usize) -> Result<Vec<usize>> {
        let mut out = axes
            .iter()
            .map(|&a| self.axis(what, a, rank))
            .collect::<Result<Vec<_>>>()?;
        out.sort_unstable();
        if out.windows(2).any(|w| w[0] == w[1]) {
            return Err(self.err(format!("{what} {axes:?} repeats an axis")));
        }
        Ok(out)
    }
}
