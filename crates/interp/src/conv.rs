//! Convolution and transposed convolution over 1, 2 or 3 spatial dims.
//!
//! [`Geom`] is validated against the operand shapes before any loop runs: every
//! slice taken in the cores is in bounds by construction. Spatial dims are stored
//! right-aligned in 3-element arrays (1-D → `[1, 1, W]`), so one loop nest serves
//! every rank.
//!
//! The cores are generic over the accumulator element (`f32` for float convolution,
//! `Wrapping<i32>` for integer accumulation, which wraps exactly like the i32
//! kernels of real backends). Loop order: batch, output channel, input channel,
//! kernel tap, output row, and innermost a contiguous run over output columns.

// Geometry loops index several parallel per-dim arrays at once.
#![allow(clippy::needless_range_loop)]

use std::ops::{Add, Mul};

use qc_ir::{ConvAttrs, ConvTransposeAttrs};

use crate::util::{checked_numel, fmt_dims, KResult};

#[derive(Clone, Debug)]
pub(crate) struct Geom {
    pub n: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub group: usize,
    /// Number of spatial dims (1..=3).
    pub rank: usize,
    pub in_sp: [usize; 3],
    pub out_sp: [usize; 3],
    pub k: [usize; 3],
    pub stride: [usize; 3],
    pub dil: [usize; 3],
    /// Begin pads.
    pub pad: [usize; 3],
}

impl Geom {
    pub fn out_shape(&self) -> Vec<usize> {
        let mut s = vec![self.n, self.c_out];
        s.extend_from_slice(&self.out_sp[3 - self.rank..]);
        s
    }
    pub fn out_plane(&self) -> usize {
        self.out_sp.iter().product()
    }
    fn in_plane(&self) -> usize {
        self.in_sp.iter().product()
    }
    fn k_size(&self) -> usize {
        self.k.iter().product()
    }
}

/// Right-align `v` (length `rank`, or empty for `default`) into 3 slots filled with `fill`.
fn spatial(
    v: &[usize],
    rank: usize,
    default: usize,
    fill: usize,
    what: &str,
) -> KResult<[usize; 3]> {
    let mut out = [fill; 3];
    if v.is_empty() {
        for o in out.iter_mut().skip(3 - rank) {
            *o = default;
        }
        return Ok(out);
    }
    if v.len() != rank {
        return Err(format!("{what} {v:?} for {rank} spatial dims"));
    }
    out[3 - rank..].copy_from_slice(v);
    Ok(out)
}

struct Common {
    rank: usize,
    k: [usize; 3],
    stride: [usize; 3],
    dil: [usize; 3],
    pad_b: [usize; 3],
    pad_e: [usize; 3],
    in_sp: [usize; 3],
}

#[allow(clippy::too_many_arguments)]
fn common(
    x: &[usize],
    w: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
    pads: &[usize],
    group: usize,
) -> KResult<Common> {
    if x.len() < 3 || x.len() > 5 || w.len() != x.len() {
        return Err(format!(
            "needs x and w of equal rank 3..=5, got x {} and w {}",
            fmt_dims(x),
            fmt_dims(w)
        ));
    }
    if group == 0 {
        return Err("group 0".into());
    }
    let rank = x.len() - 2;
    let wk = &w[2..];
    if !kernel.is_empty() && kernel != wk {
        return Err(format!(
            "kernel {kernel:?} disagrees with weight shape {}",
            fmt_dims(w)
        ));
    }
    let k = spatial(wk, rank, 1, 1, "kernel")?;
    let stride = spatial(strides, rank, 1, 1, "strides")?;
    let dil = spatial(dilations, rank, 1, 1, "dilations")?;
    if stride.contains(&0) || dil.contains(&0) || k.contains(&0) {
        return Err(format!(
            "zero kernel, stride or dilation ({kernel:?}, {strides:?}, {dilations:?})"
        ));
    }
    let (pad_b, pad_e) = if pads.is_empty() {
        ([0; 3], [0; 3])
    } else if pads.len() == 2 * rank {
        (
            spatial(&pads[..rank], rank, 0, 0, "pads")?,
            spatial(&pads[rank..], rank, 0, 0, "pads")?,
        )
    } else {
        return Err(format!("pads {pads:?} for {rank} spatial dims"));
    };
    let in_sp = spatial(&x[2..], rank, 1, 1, "input")?;
    Ok(Common {
        rank,
        k,
        stride,
        dil,
        pad_b,
        pad_e,
        in_sp,
    })
}

/// Geometry of `conv` (and `conv_integer`): `w` is `[C_out, C_in/group, k..]`.
pub(crate) fn conv_geom(a: &ConvAttrs, x: &[usize], w: &[usize]) -> KResult<Geom> {
    let c = common(x, w, &a.kernel, &a.strides, &a.dilations, &a.pads, a.group)?;
    let (n, c_in, c_out) = (x[0], x[1], w[0]);
    if c_in % a.group != 0 || c_out % a.group != 0 || w[1] * a.group != c_in {
        return Err(format!(
            "x {} and w {} do not match group {}",
            fmt_dims(x),
            fmt_dims(w),
            a.group
        ));
    }
    let mut out_sp = [1; 3];
    for i in 3 - c.rank..3 {
        let span = c.dil[i] * (c.k[i] - 1) + 1;
        let padded = c.in_sp[i] + c.pad_b[i] + c.pad_e[i];
        if padded < span {
            return Err(format!("kernel span {span} exceeds padded input {padded}"));
        }
        out_sp[i] = (padded - span) / c.stride[i] + 1;
    }
    let g = Geom {
        n,
        c_in,
        c_out,
        group: a.group,
        rank: c.rank,
        in_sp: c.in_sp,
        out_sp,
        k: c.k,
        stride: c.stride,
        dil: c.dil,
        pad: c.pad_b,
    };
    checked_numel(&g.out_shape())?;
    Ok(g)
}

/// Geometry of `conv_transpose`: `w` is `[C_in, C_out/group, k..]`.
pub(crate) fn conv_transpose_geom(
    a: &ConvTransposeAttrs,
    x: &[usize],
    w: &[usize],
) -> KResult<Geom> {
    let c = common(x, w, &a.kernel, &a.strides, &a.dilations, &a.pads, a.group)?;
    let (n, c_in) = (x[0], x[1]);
    if w[0] != c_in || c_in % a.group != 0 {
        return Err(format!(
            "x {} and w {} do not match group {}",
            fmt_dims(x),
            fmt_dims(w),
            a.group
        ));
    }
    let c_out = w[1] * a.group;
    let opad = spatial(&a.output_padding, c.rank, 0, 0, "output_padding")?;
    let mut out_sp = [1; 3];
    for i in 3 - c.rank..3 {
        let o = (c.stride[i] as i64) * (c.in_sp[i] as i64 - 1)
            + opad[i] as i64
            + ((c.k[i] - 1) * c.dil[i] + 1) as i64
            - c.pad_b[i] as i64
            - c.pad_e[i] as i64;
        if o < 0 {
            return Err(format!("negative output size {o}"));
        }
        out_sp[i] = o as usize;
    }
    let g = Geom {
        n,
        c_in,
        c_out,
        group: a.group,
        rank: c.rank,
        in_sp: c.in_sp,
        out_sp,
        k: c.k,
        stride: c.stride,
        dil: c.dil,
        pad: c.pad_b,
    };
    checked_numel(&g.out_shape())?;
    Ok(g)
}

/// The indices `i` in `0..count` with `0 <= i * s + off < limit`, as a range.
fn valid(off: isize, s: usize, limit: usize, count: usize) -> (usize, usize) {
    let s = s as isize;
    let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
    let top = limit as isize - 1 - off;
    let hi = if top < 0 { 0 } else { top / s + 1 };
    let hi = (hi as usize).min(count);
    (lo as usize, hi.max(lo as usize))
}

/// Coordinate `o * s + k * d - p` when it lies in `0..limit`.
fn tap(o: usize, s: usize, k: usize, d: usize, p: usize, limit: usize) -> Option<usize> {
    (o * s + k * d).checked_sub(p).filter(|&i| i < limit)
}

/// Direct convolution. `x` is `[N, C_in, in..]`, `w` `[C_out, C_in/group, k..]`,
/// `init[oc]` the value each output of channel `oc` starts from (bias or zero).
/// Lengths must match `g` (checked by the caller).
pub(crate) fn conv_core<T>(g: &Geom, x: &[T], w: &[T], init: &[T]) -> Vec<T>
where
    T: Copy + Add<Output = T> + Mul<Output = T>,
{
    let [id_, ih_, iw_] = g.in_sp;
    let [od_, oh_, ow_] = g.out_sp;
    let [kd_, kh_, kw_] = g.k;
    let [sd, sh, sw] = g.stride;
    let [dd, dh, dw] = g.dil;
    let [pd, ph, pw] = g.pad;
    let cin_g = g.c_in / g.group;
    let cout_g = g.c_out / g.group;
    let (isz, osz, ksz) = (g.in_plane(), g.out_plane(), g.k_size());
    let mut y = Vec::with_capacity(g.n * g.c_out * osz);
    for n in 0..g.n {
        for oc in 0..g.c_out {
            let grp = oc / cout_g;
            let start = y.len();
            y.resize(start + osz, init[oc]);
            let out = &mut y[start..];
            for icg in 0..cin_g {
                let ic = grp * cin_g + icg;
                let xp = &x[(n * g.c_in + ic) * isz..][..isz];
                let wp = &w[(oc * cin_g + icg) * ksz..][..ksz];
                for kd in 0..kd_ {
                    for kh in 0..kh_ {
                        for kw in 0..kw_ {
                            let wv = wp[(kd * kh_ + kh) * kw_ + kw];
                            let off = (kw * dw) as isize - pw as isize;
                            let (o0, o1) = valid(off, sw, iw_, ow_);
                            if o0 >= o1 {
                                continue;
                            }
                            let x0 = (o0 * sw) as isize + off;
                            let x0 = x0 as usize;
                            for od in 0..od_ {
                                let Some(idd) = tap(od, sd, kd, dd, pd, id_) else {
                                    continue;
                                };
                                for oh in 0..oh_ {
                                    let Some(ihh) = tap(oh, sh, kh, dh, ph, ih_) else {
                                        continue;
                                    };
                                    let orow = &mut out[(od * oh_ + oh) * ow_..][o0..o1];
                                    let xrow = &xp[(idd * ih_ + ihh) * iw_..][..iw_];
                                    if sw == 1 {
                                        for (o, &xv) in
                                            orow.iter_mut().zip(&xrow[x0..x0 + (o1 - o0)])
                                        {
                                            *o = *o + xv * wv;
                                        }
                                    } else {
                                        for (o, &xv) in
                                            orow.iter_mut().zip(xrow[x0..].iter().step_by(sw))
                                        {
                                            *o = *o + xv * wv;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    y
}

/// Transposed convolution: every input pixel scatters `x * w` into the output.
/// `w` is `[C_in, C_out/group, k..]`; `init[oc]` as in [`conv_core`].
pub(crate) fn conv_transpose_core<T>(g: &Geom, x: &[T], w: &[T], init: &[T]) -> Vec<T>
where
    T: Copy + Add<Output = T> + Mul<Output = T>,
{
    let [id_, ih_, iw_] = g.in_sp;
    let [od_, oh_, ow_] = g.out_sp;
    let [kd_, kh_, kw_] = g.k;
    let [sd, sh, sw] = g.stride;
    let [dd, dh, dw] = g.dil;
    let [pd, ph, pw] = g.pad;
    let cin_g = g.c_in / g.group;
    let cout_g = g.c_out / g.group;
    let (isz, osz, ksz) = (g.in_plane(), g.out_plane(), g.k_size());
    let mut y = Vec::with_capacity(g.n * g.c_out * osz);
    for n in 0..g.n {
        for oc in 0..g.c_out {
            let (grp, ocg) = (oc / cout_g, oc % cout_g);
            let start = y.len();
            y.resize(start + osz, init[oc]);
            let out = &mut y[start..];
            for icg in 0..cin_g {
                let ic = grp * cin_g + icg;
                let xp = &x[(n * g.c_in + ic) * isz..][..isz];
                let wp = &w[(ic * cout_g + ocg) * ksz..][..ksz];
                for kd in 0..kd_ {
                    for kh in 0..kh_ {
                        for kw in 0..kw_ {
                            let wv = wp[(kd * kh_ + kh) * kw_ + kw];
                            let off = (kw * dw) as isize - pw as isize;
                            let (i0, i1) = valid(off, sw, ow_, iw_);
                            if i0 >= i1 {
                                continue;
                            }
                            let o0 = ((i0 * sw) as isize + off) as usize;
                            for idd in 0..id_ {
                                let Some(od) = tap(idd, sd, kd, dd, pd, od_) else {
                                    continue;
                                };
                                for ih in 0..ih_ {
                                    let Some(oh) = tap(ih, sh, kh, dh, ph, oh_) else {
                                        continue;
                                    };
                                    let orow = &mut out[(od * oh_ + oh) * ow_..][..ow_];
                                    let xrow = &xp[(idd * ih_ + ih) * iw_..][i0..i1];
                                    for (o, &xv) in orow[o0..].iter_mut().step_by(sw).zip(xrow) {
                                        *o = *o + xv * wv;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::valid;

    #[test]
    fn valid_range_matches_brute_force() {
        for off in -7isize..7 {
            for s in 1..4 {
                for limit in 0..9 {
                    for count in 0..9 {
                        let want: Vec<usize> = (0..count)
                            .filter(|&i| {
                                let p = (i * s) as isize + off;
                                p >= 0 && p < limit as isize
                            })
                            .collect();
                        let (lo, hi) = valid(off, s, limit, count);
                        assert_eq!(
                            (lo..hi).collect::<Vec<_>>(),
                            want,
                            "off {off} s {s} limit {limit} count {count}"
                        );
                    }
                }
            }
        }
    }
}
