//! Elementwise ops. Integer `Add`/`Sub`/`Mul`/`Div` of two constants are folded
//! (shape arithmetic); everything else becomes an IR op.

use qc_ir::{Op, ValueId};

use crate::fold::{self, IntOp};
use crate::import::Importer;
use crate::node::Cx;
use crate::Result;

impl Importer<'_> {
    pub(super) fn binary(&mut self, cx: &Cx, int_op: IntOp, op: Op) -> Result<ValueId> {
        let (a, b) = (cx.input(0)?, cx.input(1)?);
        if let (Some(ta), Some(tb)) = (self.konst(a), self.konst(b)) {
            if let Some(t) = fold::int_binary(int_op, &ta, &tb) {
                return Ok(self.add_const(t));
            }
        }
        self.emit(cx, op, vec![a, b])
    }

    pub(super) fn sum(&mut self, cx: &Cx) -> Result<ValueId> {
        let inputs = (0..cx.node.input.len())
            .map(|i| cx.input(i))
            .collect::<Result<Vec<_>>>()?;
        self.emit(cx, Op::Sum, inputs)
    }

    pub(super) fn leaky_relu(&mut self, cx: &Cx) -> Result<ValueId> {
        let x = cx.input(0)?;
        let alpha = cx.float_or("alpha", 0.01)?;
        self.emit(cx, Op::LeakyRelu { alpha }, vec![x])
    }

    pub(super) fn hard_sigmoid(&mut self, cx: &Cx) -> Result<ValueId> {
        let x = cx.input(0)?;
        let (alpha, beta) = (cx.float_or("alpha", 0.2)?, cx.float_or("beta", 0.5)?);
        self.emit(cx, Op::HardSigmoid { alpha, beta }, vec![x])
    }

    pub(super) fn prelu(&mut self, cx: &Cx) -> Result<ValueId> {
        let (x, slope) = (cx.input(0)?, cx.input(1)?);
        self.emit(cx, Op::PRelu, vec![x, slope])
    }

    /// Opset < 11: `min`/`max` attributes. From 11: optional constant operands (in the
    /// element type's domain, read exactly as f64).
    pub(super) fn clip(&mut self, cx: &Cx) -> Result<ValueId> {
        let x = cx.input(0)?;
        let (min, max) = if cx.opset < 11 {
            (
                cx.float("min")?.map(f64::from),
                cx.float("max")?.map(f64::from),
            )
        } else {
            let bound = |i: usize| -> Result<Option<f64>> {
                match self.opt_const(cx, i)? {
                    None => Ok(None),
                    Some(t) if t.len() == 1 => Ok(Some(t.data().get_f64(0))),
                    Some(t) => Err(cx.err(format!(
                        "input {i} must have one element, got shape {}",
                        t.shape()
                    ))),
                }
            };
            (bound(1)?, bound(2)?)
        };
        self.emit(cx, Op::Clip { min, max }, vec![x])
    }
}
