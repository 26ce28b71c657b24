//! Max and average pooling over 1, 2 or 3 spatial dims (ONNX semantics).
//!
//! Window positions in the padding are skipped (max pool never sees a pad value);
//! with `ceil_mode`, windows running past the end of the padded input are clipped
//! to it, and the output size drops a last window that would start in the end
//! padding. [`Geom`] is validated against the input shape before any loop.

use qc_ir::PoolAttrs;

use crate::util::{checked_numel, fmt_dims, KResult};

#[derive(Clone, Debug)]
pub(crate) struct Geom {
    pub n: usize,
    pub c: usize,
    rank: usize,
    in_sp: [usize; 3],
    out_sp: [usize; 3],
    k: [usize; 3],
    stride: [usize; 3],
    dil: [usize; 3],
    pad_b: [usize; 3],
    pad_e: [usize; 3],
}

fn spatial(v: &[usize], rank: usize, default: usize, what: &str) -> KResult<[usize; 3]> {
    let mut out = [1; 3];
    if v.is_empty() {
        for o in out.iter_mut().skip(3 - rank) {
            *o = default;
        }
    } else if v.len() == rank {
        out[3 - rank..].copy_from_slice(v);
    } else {
        return Err(format!("{what} {v:?} for {rank} spatial dims"));
    }
    Ok(out)
}

impl Geom {
    pub fn new(a: &PoolAttrs, x: &[usize]) -> KResult<Geom> {
        if x.len() < 3 || x.len() > 5 {
            return Err(format!("pooling needs rank 3..=5, got {}", fmt_dims(x)));
        }
        let rank = x.len() - 2;
        let k = spatial(&a.kernel, rank, 0, "kernel")?;
        let stride = spatial(&a.strides, rank, 1, "strides")?;
        let dil = spatial(&a.dilations, rank, 1, "dilations")?;
        if k.contains(&0) || stride.contains(&0) || dil.contains(&0) {
            return Err(format!(
                "zero or missing kernel, stride or dilation ({:?}, {:?}, {:?})",
                a.kernel, a.strides, a.dilations
            ));
        }
        let (mut pad_b, mut pad_e) = ([0; 3], [0; 3]);
        if a.pads.len() == 2 * rank {
            pad_b[3 - rank..].copy_from_slice(&a.pads[..rank]);
            pad_e[3 - rank..].copy_from_slice(&a.pads[rank..]);
        } else if !a.pads.is_empty() {
            return Err(format!("pads {:?} for {rank} spatial dims", a.pads));
        }
        let in_sp = spatial(&x[2..], rank, 1, "input")?;
        let mut out_sp = [1; 3];
        for i in 3 - rank..3 {
            let span = dil[i] * (k[i] - 1) + 1;
            let padded = in_sp[i] + pad_b[i] + pad_e[i];
            if padded < span {
                return Err(format!("window span {span} exceeds padded input {padded}"));
            }
            let mut o = if a.ceil_mode {
                (padded - span).div_ceil(stride[i]) + 1
            } else {
                (padded - span) / stride[i] + 1
            };
            // A last window starting in the end padding is dropped.
            if a.ceil_mode && (o - 1) * stride[i] >= in_sp[i] + pad_b[i] {
                o -= 1;
            }
            out_sp[i] = o;
        }
        let g = Geom {
            n: x[0],
            c: x[1],
            rank,
            in_sp,
            out_sp,
            k,
            stride,
            dil,
            pad_b,
            pad_e,
        };
        checked_numel(&g.out_shape())?;
        Ok(g)
    }

    pub fn out_shape(&self) -> Vec<usize> {
        let mut s = vec![self.n, self.c];
        s.extend_from_slice(&self.out_sp[3 - self.rank..]);
        s
    }

    fn in_plane(&self) -> usize {
        self.in_sp.iter().product()
    }

    /// Input coordinates of the window taps of output `o` along dim `i` that lie
    /// inside the input.
    fn taps(&self, i: usize, o: usize) -> impl Iterator<Item = usize> + '_ {
        let limit = self.in_sp[i];
        let (s, d, p) = (self.stride[i], self.dil[i], self.pad_b[i]);
        (0..self.k[i]).filter_map(move |k| (o * s + k * d).checked_sub(p).filter(|&x| x < limit))
    }

    /// Number of window taps of output `o` along dim `i` inside `[-pad_b, in + pad_e)`.
    fn taps_with_pad(&self, i: usize, o: usize) -> usize {
        let end = self.in_sp[i] + self.pad_b[i] + self.pad_e[i];
        (0..self.k[i])
            .filter(|&k| o * self.stride[i] + k * self.dil[i] < end)
            .count()
    }
}

/// Max pool; with `want_idx`, also the ONNX flat index of each max in the input
/// (`storage_order` 1: spatial coordinates column-major). The first maximum wins
/// (strict `>`); an output whose window holds no input gets `empty` and index -1.
pub(crate) fn max_pool<T: Copy + PartialOrd>(
    g: &Geom,
    x: &[T],
    empty: T,
    want_idx: bool,
    storage_order: u8,
) -> (Vec<T>, Vec<i64>) {
    let [id_, ih_, iw_] = g.in_sp;
    let [od_, oh_, ow_] = g.out_sp;
    let isz = g.in_plane();
    let total = g.n * g.c * od_ * oh_ * ow_;
    let mut y = Vec::with_capacity(total);
    let mut idx = Vec::with_capacity(if want_idx { total } else { 0 });
    for nc in 0..g.n * g.c {
        let xp = &x[nc * isz..][..isz];
        for od in 0..od_ {
            for oh in 0..oh_ {
                for ow in 0..ow_ {
                    let mut best: Option<(T, usize, usize, usize)> = None;
                    for d in g.taps(0, od) {
                        for h in g.taps(1, oh) {
                            for w in g.taps(2, ow) {
                                let v = xp[(d * ih_ + h) * iw_ + w];
                                if best.is_none_or(|(b, ..)| v > b) {
                                    best = Some((v, d, h, w));
                                }
                            }
                        }
                    }
                    match best {
                        Some((v, d, h, w)) => {
                            y.push(v);
                            if want_idx {
                                let sp = if storage_order == 1 {
                                    d + h * id_ + w * id_ * ih_
                                } else {
                                    (d * ih_ + h) * iw_ + w
                                };
                                idx.push((nc * isz + sp) as i64);
                            }
                        }
                        None => {
                            y.push(empty);
                            if want_idx {
                                idx.push(-1);
                            }
                        }
                    }
                }
            }
        }
    }
    (y, idx)
}

/// Average pool in f32. The divisor counts the window taps inside the input, or with
/// `count_include_pad` those inside the explicitly padded input (never the extra
/// positions a ceil-mode window runs past).
pub(crate) fn avg_pool(g: &Geom, x: &[f32], count_include_pad: bool) -> Vec<f32> {
    let [_, ih_, iw_] = g.in_sp;
    let [od_, oh_, ow_] = g.out_sp;
    let isz = g.in_plane();
    let mut y = Vec::with_capacity(g.n * g.c * od_ * oh_ * ow_);
    for nc in 0..g.n * g.c {
        let xp = &x[nc * isz..][..isz];
        for od in 0..od_ {
            for oh in 0..oh_ {
                for ow in 0..ow_ {
                    let mut sum = 0f32;
                    let mut inside = 0usize;
                    for d in g.taps(0, od) {
                        for h in g.taps(1, oh) {
                            for w in g.taps(2, ow) {
                                sum += xp[(d * ih_ + h) * iw_ + w];
                                inside += 1;
                            }
                        }
                    }
                    let count = if count_include_pad {
                        g.taps_with_pad(0, od) * g.taps_with_pad(1, oh) * g.taps_with_pad(2, ow)
                    } else {
                        inside
                    };
                    y.push(sum / count as f32);
                }
            }
        }
    }
    y
}
