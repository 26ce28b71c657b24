//! Observers: from the values a tensor takes over the calibration samples to a range
//! `[lo, hi]` that the quantization parameters then cover.
//!
//! Every observer sees the exact running minimum and maximum. The histogram observers
//! ([`Method::Percentile`], [`Method::Entropy`], [`Method::Mse`]) also keep two
//! [`BINS`]-bin histograms of magnitudes, one of the negative and one of the
//! non-negative values, over `[0, R]`.
//!
//! **Invariants.**
//! - `R` starts as the first non-zero magnitude seen and only ever doubles: when a
//!   larger magnitude arrives, adjacent bin pairs merge (bin `i` → bin `i / 2`), which is
//!   exact — every count stays in the bin covering its value — so the histogram never
//!   depends on the order of the samples beyond that choice of `R`.
//! - A result `[lo, hi]` satisfies `min <= lo <= 0 <= hi <= max` after widening to 0
//!   (the choosers in qc-qmath widen to 0 anyway): clipping methods only ever shrink
//!   the observed range, never extend it.
//! - NaNs are ignored (they carry no range); infinities are errors at
//!   [`Observer::range`] time, when the chooser rejects them.

use qc_qmath::QType;

/// Bins of each magnitude histogram (TensorRT's 2048).
pub const BINS: usize = 2048;

/// How an activation's range is chosen from its observed values.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Method {
    /// The observed minimum and maximum.
    #[default]
    MinMax,
    /// Exponential moving average of each sample's minimum and maximum:
    /// `m <- m + momentum * (m_sample - m)`, starting from the first sample's.
    MovingAverageMinMax { momentum: f32 },
    /// Clip magnitudes at the given percentile (e.g. 99.99) of `|x|`.
    Percentile(f64),
    /// TensorRT's entropy calibration: the magnitude threshold whose quantized
    /// distribution (into 128 levels for signed data, 256 for one-sided) is closest
    /// in KL divergence to the clipped observed one.
    Entropy,
    /// The magnitude threshold minimizing the expected squared quantization error
    /// (rounding noise `s^2/12` inside the range, clipping error outside) under the
    /// final parameter choice.
    Mse,
}

/// How the final parameters are derived from a range (for [`Method::Mse`], whose
/// error depends on them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scheme {
    pub storage: QType,
    pub symmetric: bool,
    pub power_of_two: bool,
}

impl Scheme {
    /// `(scale, zero_point)` covering `[lo, hi]` through qc-qmath's choosers.
    ///
    /// Power-of-two scales are symmetric, except for a one-sided range (`lo >= 0`)
    /// with asymmetric activations: then the zero point is the storage minimum and
    /// all `2^bits - 1` steps cover `[0, hi]` — the smallest `2^k` with
    /// `(qmax - qmin) 2^k >= hi`, which is `choose_power_of_two` of
    /// `hi * symmetric_max / (qmax - qmin)` (rounded up, so the range is covered).
    pub fn params(&self, lo: f32, hi: f32) -> qc_qmath::Result<(f32, i32)> {
        let q = self.storage;
        if self.power_of_two && !self.symmetric && lo >= 0.0 && hi.is_finite() {
            let steps = (q.max() - q.min()) as f64;
            let ratio = q.symmetric_max() as f64 / steps;
            let mut h = (f64::from(hi) * ratio) as f32;
            if f64::from(h) < f64::from(hi) * ratio {
                h = h.next_up();
            }
            let (s, _) = qc_qmath::choose_power_of_two(0.0, h, q)?;
            return Ok((s, q.min() as i32));
        }
        if self.power_of_two {
            qc_qmath::choose_power_of_two(lo, hi, q)
        } else if self.symmetric {
            qc_qmath::choose_symmetric(lo, hi, self.storage)
        } else {
            qc_qmath::choose_asymmetric(lo, hi, self.storage)
        }
    }
}

/// Magnitude histograms of the negative and non-negative values (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    /// Upper end of the covered magnitudes (0 until a non-zero value arrives).
    pub range: f32,
    pub neg: Vec<u64>,
    pub pos: Vec<u64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            range: 0.0,
            neg: vec![0; BINS],
            pos: vec![0; BINS],
        }
    }
}

impl Histogram {
    fn width(&self) -> f64 {
        f64::from(self.range) / BINS as f64
    }

    fn grow_to(&mut self, absmax: f32) {
        if self.range == 0.0 {
            self.range = absmax;
            return;
        }
        while self.range < absmax {
            for h in [&mut self.neg, &mut self.pos] {
                for i in 0..BINS / 2 {
                    h[i] = h[2 * i] + h[2 * i + 1];
                }
                h[BINS / 2..].fill(0);
            }
            self.range *= 2.0;
        }
    }

    fn add(&mut self, xs: &[f32]) {
        let absmax = xs
            .iter()
            .filter(|x| x.is_finite())
            .fold(0f32, |m, x| m.max(x.abs()));
        if absmax > 0.0 {
            self.grow_to(absmax);
        }
        if self.range == 0.0 {
            // Only zeros (and NaN/inf) so far: zeros are magnitude-0 counts.
            self.pos[0] += xs.iter().filter(|&&x| x == 0.0).count() as u64;
            return;
        }
        let inv = BINS as f64 / f64::from(self.range);
        for &x in xs {
            if !x.is_finite() {
                continue;
            }
            let b = ((f64::from(x.abs()) * inv) as usize).min(BINS - 1);
            if x < 0.0 {
                self.neg[b] += 1;
            } else {
                self.pos[b] += 1;
            }
        }
    }

    /// Counts of `|x|` per bin.
    pub fn magnitudes(&self) -> Vec<u64> {
        self.neg.iter().zip(&self.pos).map(|(a, b)| a + b).collect()
    }

    /// The smallest bin edge `T` with at least `p` percent of the magnitudes `<= T`.
    pub fn percentile(&self, p: f64) -> f32 {
        let m = self.magnitudes();
        let total: u64 = m.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let want = (p / 100.0).clamp(0.0, 1.0) * total as f64;
        let mut acc = 0u64;
        for (i, &c) in m.iter().enumerate() {
            acc += c;
            if acc as f64 >= want {
                return ((i + 1) as f64 * self.width()) as f32;
            }
        }
        self.range
    }

    /// TensorRT's KL-divergence threshold over the magnitude histogram, quantized into
    /// `levels` levels.
    ///
    /// The first bin's count is replaced by the second's (as NVIDIA's
    /// pytorch-quantization does): values at 0 — relu outputs, padding — are exact under
    /// every threshold, and a spike there would otherwise dominate the merged levels
    /// and push the threshold to its minimum.
    pub fn entropy_threshold(&self, levels: usize) -> f32 {
        let mut hist = self.magnitudes();
        if hist.len() > 1 {
            hist[0] = hist[1];
        }
        let levels = levels.clamp(1, BINS);
        let mut best = (f64::INFINITY, BINS);
        for i in levels..=BINS {
            // P: the first i bins, with the clipped outliers folded into the last one.
            let mut p: Vec<f64> = hist[..i].iter().map(|&c| c as f64).collect();
            let outliers: u64 = hist[i..].iter().sum();
            if let Some(last) = p.last_mut() {
                *last += outliers as f64;
            }
            // Q: the first i bins merged into `levels` groups, each group's mass spread
            // evenly over its non-empty bins (an empty bin of P stays empty in Q).
            let mut q = vec![0f64; i];
            for j in 0..levels {
                let start = j * i / levels;
                let end = ((j + 1) * i / levels).max(start + 1).min(i);
                let bins = &hist[start..end];
                let mass: u64 = bins.iter().sum();
                let nonzero = bins.iter().filter(|&&c| c > 0).count();
                if nonzero == 0 {
                    continue;
                }
                for (k, &c) in bins.iter().enumerate() {
                    if c > 0 {
                        q[start + k] = mass as f64 / nonzero as f64;
                    }
                }
            }
            let kl = kl_divergence(&p, &q);
            if kl < best.0 {
                best = (kl, i);
            }
        }
        (best.1 as f64 * self.width()) as f32
    }

    /// The clipped range `[max(min, -T), min(max, T)]` over candidate thresholds `T`
    /// that minimizes the expected squared quantization error under `scheme`.
    pub fn mse_range(&self, min: f32, max: f32, scheme: &Scheme) -> (f32, f32) {
        let w = self.width();
        let mut best = (f64::INFINITY, (min, max));
        // 128 candidates from range/128 to the full range, plus the exact extremes.
        let steps = 128;
        for k in 1..=steps {
            let t = (f64::from(self.range) * k as f64 / steps as f64) as f32;
            let (lo, hi) = if k == steps {
                (min, max)
            } else {
                (min.max(-t), max.min(t))
            };
            let Ok((s, zp)) = scheme.params(lo.min(0.0), hi.max(0.0)) else {
                continue;
            };
            // The representable real interval of these parameters.
            let qlo = (scheme.storage.min() - i64::from(zp)) as f64 * f64::from(s);
            let qhi = (scheme.storage.max() - i64::from(zp)) as f64 * f64::from(s);
            let noise = f64::from(s) * f64::from(s) / 12.0;
            let mut err = 0.0;
            for (sign, h) in [(-1.0, &self.neg), (1.0, &self.pos)] {
                for (i, &c) in h.iter().enumerate() {
                    if c == 0 {
                        continue;
                    }
                    let x = sign * (i as f64 + 0.5) * w;
                    let e = if x < qlo {
                        (qlo - x).powi(2)
                    } else if x > qhi {
                        (x - qhi).powi(2)
                    } else {
                        noise
                    };
                    err += c as f64 * e;
                }
            }
            if err < best.0 {
                best = (err, (lo, hi));
            }
        }
        best.1
    }
}

/// `sum p log(p / q)` over normalized `p` and `q`; a bin where `p > 0` and `q == 0` costs
/// as if `q` were tiny (TensorRT smooths the same way), so such candidates lose.
fn kl_divergence(p: &[f64], q: &[f64]) -> f64 {
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    if sp == 0.0 || sq == 0.0 {
        return f64::INFINITY;
    }
    let eps = 1e-10;
    p.iter()
        .zip(q)
        .filter(|(&a, _)| a > 0.0)
        .map(|(&a, &b)| {
            let (a, b) = (a / sp, (b / sq).max(eps));
            a * (a / b).ln()
        })
        .sum()
}

/// The running statistics of one tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Observer {
    pub method: Method,
    /// Exact extremes over everything seen (finite values only).
    pub min: f32,
    pub max: f32,
    /// Moving-average extremes ([`Method::MovingAverageMinMax`]).
    ema: Option<(f32, f32)>,
    /// Present for the histogram methods.
    pub hist: Option<Histogram>,
    pub count: u64,
}

impl Observer {
    pub fn new(method: Method) -> Observer {
        let hist = matches!(
            method,
            Method::Percentile(_) | Method::Entropy | Method::Mse
        )
        .then(Histogram::default);
        Observer {
            method,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            ema: None,
            hist,
            count: 0,
        }
    }

    /// Record one sample's values of the tensor.
    pub fn observe(&mut self, xs: &[f32]) {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for &x in xs {
            if x.is_finite() {
                lo = lo.min(x);
                hi = hi.max(x);
            }
        }
        if lo > hi {
            return;
        }
        self.min = self.min.min(lo);
        self.max = self.max.max(hi);
        self.count += xs.len() as u64;
        if let Method::MovingAverageMinMax { momentum } = self.method {
            self.ema = Some(match self.ema {
                None => (lo, hi),
                Some((a, b)) => (a + momentum * (lo - a), b + momentum * (hi - b)),
            });
        }
        if let Some(h) = &mut self.hist {
            h.add(xs);
        }
    }

    /// The chosen range (see [`Method`]); `[0, 0]` when nothing was observed.
    /// `scheme` only matters for [`Method::Mse`] and [`Method::Entropy`].
    pub fn range(&self, scheme: &Scheme) -> (f32, f32) {
        if self.min > self.max {
            return (0.0, 0.0);
        }
        let (min, max) = (self.min, self.max);
        let clip = |t: f32| (min.max(-t), max.min(t));
        match (self.method, &self.hist) {
            (Method::MinMax, _) => (min, max),
            (Method::MovingAverageMinMax { .. }, _) => self.ema.unwrap_or((min, max)),
            (Method::Percentile(p), Some(h)) => clip(h.percentile(p)),
            (Method::Entropy, Some(h)) => {
                let one_sided = min >= 0.0 || max <= 0.0;
                let bits = scheme.storage.bits();
                let levels = 1usize << (if one_sided { bits } else { bits - 1 }).min(16);
                clip(h.entropy_threshold(levels))
            }
            (Method::Mse, Some(h)) => h.mse_range(min, max, scheme),
            (_, None) => (min, max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U8: Scheme = Scheme {
        storage: QType::U8,
        symmetric: false,
        power_of_two: false,
    };

    #[test]
    fn power_of_two_one_sided_uses_the_whole_range() {
        let p2 = |storage, symmetric| Scheme {
            storage,
            symmetric,
            power_of_two: true,
        };
        // [0, 10] in u8: 255 * 2^-4 = 15.9 covers, 255 * 2^-5 = 7.97 does not.
        assert_eq!(p2(QType::U8, false).params(0.0, 10.0), Ok((0.0625, 0)));
        assert_eq!(p2(QType::I8, false).params(0.0, 10.0), Ok((0.0625, -128)));
        // 255 * 2^-5 = 7.96875 exactly: covered by 2^-5, not by 2^-6.
        assert_eq!(
            p2(QType::U8, false).params(0.0, 7.968_75),
            Ok((0.031_25, 0))
        );
        // Symmetric (or signed data): 127 * 2^k >= 10 -> 2^-3.
        assert_eq!(p2(QType::U8, true).params(0.0, 10.0), Ok((0.125, 128)));
        assert_eq!(p2(QType::U8, false).params(-1.0, 10.0), Ok((0.125, 128)));
    }

    #[test]
    fn min_max_is_the_extremes() {
        let mut o = Observer::new(Method::MinMax);
        o.observe(&[1.0, -2.0, f32::NAN]);
        o.observe(&[3.5, 0.0]);
        assert_eq!(o.range(&U8), (-2.0, 3.5));
    }

    #[test]
    fn moving_average_follows_the_formula() {
        let mut o = Observer::new(Method::MovingAverageMinMax { momentum: 0.5 });
        o.observe(&[0.0, 4.0]);
        o.observe(&[-2.0, 8.0]);
        // min: 0 + 0.5 (-2 - 0) = -1; max: 4 + 0.5 (8 - 4) = 6.
        assert_eq!(o.range(&U8), (-1.0, 6.0));
        // The exact extremes are still kept.
        assert_eq!((o.min, o.max), (-2.0, 8.0));
    }

    #[test]
    fn histogram_doubling_is_exact() {
        let mut h = Histogram::default();
        h.add(&[1.0, 0.25]);
        // range 1: 0.25 is bin 512, 1.0 the last bin.
        assert_eq!((h.pos[512], h.pos[BINS - 1]), (1, 1));
        h.add(&[3.0, -0.5]);
        // range doubled twice to 4: 0.25 -> bin 128, 1.0 (bin 2047 of range 1) -> 511,
        // 3.0 -> 1536; -0.5 -> neg bin 256.
        assert_eq!(h.range, 4.0);
        assert_eq!(
            (h.pos[128], h.pos[511], h.pos[1536], h.neg[256]),
            (1, 1, 1, 1)
        );
        assert_eq!(h.magnitudes().iter().sum::<u64>(), 4);
    }

    #[test]
    fn percentile_clips_the_outlier() {
        // 9999 values uniform on [0, 1) and one at 100: the 99.99th percentile of the
        // magnitudes is at most 1 (plus one bin), so the outlier is clipped.
        let mut xs: Vec<f32> = (0..9999).map(|i| i as f32 / 9999.0).collect();
        xs.push(100.0);
        let mut o = Observer::new(Method::Percentile(99.99));
        o.observe(&xs);
        let (lo, hi) = o.range(&U8);
        assert_eq!(lo, 0.0);
        let bin = 100.0 / BINS as f32;
        assert!(hi >= 1.0 - bin && hi <= 1.0 + bin, "{hi}");
        // The 50th percentile of uniform [0, 1) is 0.5 within a bin.
        let mut o = Observer::new(Method::Percentile(50.0));
        o.observe(&xs);
        let (_, hi) = o.range(&U8);
        assert!((hi - 0.5).abs() <= bin, "{hi}");
        // 100% is the maximum.
        let mut o = Observer::new(Method::Percentile(100.0));
        o.observe(&xs);
        assert_eq!(o.range(&U8), (0.0, 100.0));
    }

    #[test]
    fn entropy_of_a_uniform_distribution_keeps_the_range() {
        // Uniform magnitudes: clipping only loses information, every candidate below
        // the full range folds mass into its last bin, so the full range wins.
        let xs: Vec<f32> = (0..BINS * 4)
            .map(|i| (i as f32 + 0.5) / (BINS * 4) as f32)
            .collect();
        let mut o = Observer::new(Method::Entropy);
        o.observe(&xs);
        let (lo, hi) = o.range(&U8);
        assert_eq!(lo, xs[0]);
        assert!(hi > 0.99, "{hi}");
    }

    #[test]
    fn entropy_clips_a_long_tail() {
        // A non-uniform bulk in the first 16 bins (count j + 1 in bin j) and one value
        // at 100 (the range, so bins are 100/2048 wide). At the full range, 128 levels
        // merge 16 bins each and flatten the bulk into one level; thresholds near 128
        // bins keep it resolved and only fold the one outlier: clipping must win.
        let w = 100.0 / BINS as f32;
        let mut xs: Vec<f32> = (0..16)
            .flat_map(|j| std::iter::repeat_n((j as f32 + 0.5) * w, j + 1))
            .map(|x| -x)
            .collect();
        xs.push(100.0);
        let mut o = Observer::new(Method::Entropy);
        o.observe(&xs);
        let (lo, hi) = o.range(&U8);
        assert!(hi < 25.0 && hi >= 128.0 * w * 0.999, "{hi}");
        assert_eq!(lo, -(15.5 * w));
    }

    #[test]
    fn mse_clips_a_rare_outlier_but_not_a_uniform_range() {
        let xs: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0).collect();
        let mut o = Observer::new(Method::Mse);
        o.observe(&xs);
        // Uniform data: clipping error outweighs the finer step.
        let (_, hi) = o.range(&U8);
        assert!(hi > 0.97, "{hi}");
        // 10^6 values in [0, 1) and one at 50 (bin centre 49.988): at a threshold
        // t >= 1 the expected error is 10^6 (t/255)^2/12 + (49.988 - t)^2, minimized at
        // t = 49.988 / (1 + 10^6 / (12 * 255^2)) = 21.91; candidates are multiples of 50/128.
        let mut ys: Vec<f32> = (0..1_000_000)
            .map(|i| (i % 10_000) as f32 / 10_000.0)
            .collect();
        ys.push(50.0);
        let mut o = Observer::new(Method::Mse);
        o.observe(&ys);
        let (_, hi) = o.range(&U8);
        assert!((21.4..=22.4).contains(&hi), "{hi}");
    }

    #[test]
    fn nothing_observed_is_an_empty_range() {
        let o = Observer::new(Method::Entropy);
        assert_eq!(o.range(&U8), (0.0, 0.0));
    }
}
