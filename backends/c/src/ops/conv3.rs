//! Quantized convolution over 3 spatial dims (NCDHW) as one inline statement with
//! literal geometry: the interpreter's wrapping i32 sum `Σ (x - zx)(w - zw[c])
//! (+ bias[c])` over (input channel, kz, ky, kx) in `uint32_t`, then the contract's
//! requantization and clamp (the same epilogue as the 2-D kernels).

use qc_ir::{ConvAttrs, DType, QType};

use super::{epilogue, epilogue_code, epilogue_data, i32c, numel, q8, weight_params, Cx};
use crate::emit::{array, ctype, Em};
use crate::runtime::Piece;
use crate::Result;

/// `v` (one value per spatial dim, or empty for `default`) as `[d, h, w]`.
fn attr3(v: &[usize], default: usize) -> Option<[usize; 3]> {
    match v {
        [] => Some([default; 3]),
        [a, b, c] => Some([*a, *b, *c]),
        _ => None,
    }
}

pub(super) fn conv3(em: &mut Em, cx: &Cx, a: &ConvAttrs) -> Result<String> {
    let (x, w, y) = (cx.input(0)?, cx.input(1)?, cx.output()?);
    let bias = cx.node.inputs.get(2).copied();
    let (tx, tw, ty) = (em.ty(x)?.clone(), em.ty(w)?.clone(), em.ty(y)?.clone());
    let Some((_, sx, zx)) = q8(&tx) else {
        return Err(cx.err("3-D conv on a float or non-8-bit operand"));
    };
    let Some(pw_) = tw
        .quant
        .as_ref()
        .filter(|p| matches!(p.storage, QType::U8 | QType::I8))
    else {
        return Err(cx.err("conv weights must be 8-bit quantized"));
    };
    let ([n, cin, id, ih, iw], [co_w, cig_w, kd, kh, kw], [yn, cout, od, oh, ow]) =
        (tx.shape.dims(), tw.shape.dims(), ty.shape.dims())
    else {
        return Err(cx.err("3-D conv needs rank-5 operand, weights and result"));
    };
    let (Some(s), Some(d)) = (attr3(&a.strides, 1), attr3(&a.dilations, 1)) else {
        return Err(cx.err("conv attributes do not match the rank"));
    };
    let (pb, pe) = match a.pads.as_slice() {
        [] => ([0; 3], [0; 3]),
        [a0, a1, a2, b0, b1, b2] => ([*a0, *a1, *a2], [*b0, *b1, *b2]),
        _ => return Err(cx.err("conv pads do not match the rank")),
    };
    let g = a.group;
    let (inp, k, out) = ([*id, *ih, *iw], [*kd, *kh, *kw], [*od, *oh, *ow]);
    if g == 0
        || k.contains(&0)
        || s.contains(&0)
        || d.contains(&0)
        || cin % g != 0
        || cout % g != 0
        || co_w != cout
        || *cig_w != cin / g
        || yn != n
    {
        return Err(cx.err("inconsistent channels, group, kernel, stride or dilation"));
    }
    for i in 0..3 {
        let span = d[i].saturating_mul(k[i] - 1).saturating_add(1);
        let want = inp[i]
            .saturating_add(pb[i])
            .saturating_add(pe[i])
            .checked_sub(span)
            .map(|r| r / s[i] + 1);
        if want != Some(out[i]) {
            return Err(cx.err("result shape disagrees with the conv geometry"));
        }
    }
    for t in [&tx, &tw, &ty] {
        i32c(cx, numel(t))?;
    }
    let (sw, zw) = weight_params(cx, pw_, *cout, 0)?;
    let epi = epilogue(cx, em.opts.contract, sx, &sw, &ty, a.act)?;
    let fields = epilogue_data(em, cx, &epi)?;
    let bias_init = match bias {
        Some(b) => {
            let tb = em.ty(b)?;
            if tb.dtype != DType::I32 || tb.is_quantized() || numel(tb) != *cout {
                return Err(cx.err("bias must be raw i32 with one value per output channel"));
            }
            format!("(uint32_t){}[c]", em.ptr(b)?)
        }
        None => "0u".to_string(),
    };
    let zwn = cx.name("zw");
    let zw_expr = if zw.iter().all(|&z| z == 0) {
        "0".to_string()
    } else {
        em.data_once(&zwn, || Ok(array("int32_t", &zwn, &zw)))?;
        format!("{zwn}[c]")
    };
    // The epilogue reads p->zy, p->mult/shift/fmult, p->lo, p->hi; the geometry
    // fields of the block are the flattened [d * h, w] view, unused here.
    em.need(Piece::ConvParams);
    let pname = cx.name("p");
    let geo: Vec<String> = [
        *n,
        *cin,
        id * ih,
        *iw,
        *cout,
        od * oh,
        *ow,
        kd * kh,
        *kw,
        s[2],
        s[2],
        0,
        0,
        1,
        1,
        g,
    ]
    .iter()
    .map(|&v| i32c(cx, v).map(|v| v.to_string()))
    .collect::<Result<_>>()?;
    let init = format!(
        "static const qc_conv_t {pname} = {{{}, {zx}, {}, NULL, NULL, {fields}}};\n",
        geo.join(", "),
        epi.zy
    );
    em.data_once(&pname, || Ok(init))?;
    let v = |x: usize| i32c(cx, x);
    let (n, cin, cout) = (v(*n)?, v(*cin)?, v(*cout)?);
    let [id, ih, iw] = [v(inp[0])?, v(inp[1])?, v(inp[2])?];
    let [od, oh, ow] = [v(out[0])?, v(out[1])?, v(out[2])?];
    let [kd, kh, kw] = [v(k[0])?, v(k[1])?, v(k[2])?];
    let [sd, sh, sw_] = [v(s[0])?, v(s[1])?, v(s[2])?];
    let [dd, dh, dw] = [v(d[0])?, v(d[1])?, v(d[2])?];
    let [pd, ph, pw] = [v(pb[0])?, v(pb[1])?, v(pb[2])?];
    let (cig, cog) = (cin / v(g)?, cout / v(g)?);
    let (px, pwt, py) = (em.ptr(x)?, em.ptr(w)?, em.ptr(y)?);
    let code = epilogue_code(em.opts.contract, epi.q);
    let yt = ctype(ty.dtype);
    Ok(format!(
        r#"    {{
        int32_t b, c, oz, oy, ox, ci, kz, ky, kx;
        size_t o = 0;
        const qc_conv_t *p = &{pname};
        for (b = 0; b < {n}; b++)
        for (c = 0; c < {cout}; c++) {{
            int32_t zw = {zw_expr};
            for (oz = 0; oz < {od}; oz++)
            for (oy = 0; oy < {oh}; oy++)
            for (ox = 0; ox < {ow}; ox++, o++) {{
                uint32_t acc = {bias_init};
                int64_t v;
                for (ci = 0; ci < {cig}; ci++) {{
                    int32_t ic = (c / {cog}) * {cig} + ci;
                    for (kz = 0; kz < {kd}; kz++) {{
                    int32_t iz = oz * {sd} + kz * {dd} - {pd};
                    if (iz < 0 || iz >= {id}) {{
                        continue;
                    }}
                    for (ky = 0; ky < {kh}; ky++) {{
                    int32_t iy = oy * {sh} + ky * {dh} - {ph};
                    if (iy < 0 || iy >= {ih}) {{
                        continue;
                    }}
                    for (kx = 0; kx < {kw}; kx++) {{
                        int32_t ix = ox * {sw_} + kx * {dw} - {pw};
                        size_t xi = ((((size_t)b * {cin} + (size_t)ic) * {id} + (size_t)iz) * {ih} + (size_t)iy) * {iw} + (size_t)ix;
                        size_t wi = ((((size_t)c * {cig} + (size_t)ci) * {kd} + (size_t)kz) * {kh} + (size_t)ky) * {kw} + (size_t)kx;
                        if (ix < 0 || ix >= {iw}) {{
                            continue;
                        }}
                        acc += ((uint32_t)(int32_t){px}[xi] - (uint32_t)({zx})) * ((uint32_t)(int32_t){pwt}[wi] - (uint32_t)zw);
                    }}
                    }}
                    }}
                }}
                {code}
                {py}[o] = ({yt})v;
            }}
        }}
    }}
"#
    ))
}
