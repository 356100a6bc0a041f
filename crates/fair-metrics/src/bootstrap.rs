//! Bootstrap intervals: resample all rows with replacement (as fairlearn's MetricFrame and
//! FairVision's `bootstrap_performance` do), recompute the report, and summarise each metric
//! by percentile quantiles (fairlearn) and mean +- std (FairVision).
//!
//! A replicate is a multiplicity per row (how often the row was drawn), so the rows keep the
//! one sort of the full data and every replicate costs one linear pass.

use indexmap::IndexMap;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::report::{BootstrapInfo, Report, ATTRIBUTE_METRICS, GROUP_METRICS};
use crate::rng::Rng;

/// Bootstrap settings.
///
/// ```
/// use fair_metrics::{Bootstrap, Predictions, Report, ReportOptions, Attribute};
/// let p = Predictions::new(vec![true, false, true, false], vec![0.9, 0.4, 0.6, 0.5])?;
/// let g = Attribute::from_values("g", &["a", "a", "b", "b"])?;
/// let opts = ReportOptions::default().with_bootstrap(Bootstrap::new(200, 7));
/// let r = Report::compute(&p, &[g], &opts)?;
/// let ci = &r.overall.ci.as_ref().unwrap()["accuracy"];
/// assert!(ci.low <= ci.mean && ci.mean <= ci.high);
/// # Ok::<(), fair_metrics::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Bootstrap {
    /// Number of replicates.
    pub replicates: usize,
    /// Seed of the resampling; the same seed gives the same intervals.
    pub seed: u64,
    /// Lower and upper quantile of the percentile interval. Default [0.025, 0.975].
    pub quantiles: [f64; 2],
}

/// The most metric values (replicates x scalars of the report) a bootstrap keeps: the
/// intervals need all of them at once, 16 bytes each, so this is about 4 GiB.
const MAX_VALUES: usize = 1 << 28;

impl Bootstrap {
    /// The most replicates a bootstrap may ask for. Every replicate keeps a value of every
    /// metric of the report until the intervals are computed, so far more would only exhaust
    /// the memory (100,000 replicates already pin down a 95% interval's bounds to about 0.1%).
    pub const MAX_REPLICATES: usize = 1_000_000;

    /// `replicates` resamples with the given seed and a 95% percentile interval.
    pub fn new(replicates: usize, seed: u64) -> Self {
        Self { replicates, seed, quantiles: [0.025, 0.975] }
    }

    /// Sets the quantiles of the interval.
    pub fn with_quantiles(mut self, low: f64, high: f64) -> Self {
        self.quantiles = [low, high];
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.replicates == 0 {
            return Err(Error::Invalid("bootstrap needs at least one replicate".into()));
        }
        if self.replicates > Self::MAX_REPLICATES {
            return Err(Error::Invalid(format!("bootstrap of {} replicates; at most {} are supported", self.replicates, Self::MAX_REPLICATES)));
        }
        let [lo, hi] = self.quantiles;
        if !(0.0 < lo && lo < hi && hi < 1.0) {
            return Err(Error::Invalid(format!("bootstrap quantiles [{lo}, {hi}] must satisfy 0 < low < high < 1")));
        }
        Ok(())
    }

    /// The multiplicity of each of `n` rows in replicate `r`.
    pub(crate) fn draw(&self, r: usize, n: usize) -> Vec<u32> {
        let mut rng = Rng::for_stream(self.seed, r as u64);
        let mut mult = vec![0u32; n];
        for _ in 0..n {
            mult[rng.below(n as u64) as usize] += 1;
        }
        mult
    }
}

/// Summary of one metric over the replicates in which it was defined.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ci {
    /// Mean over replicates.
    pub mean: f64,
    /// Population standard deviation over replicates (numpy's default, as FairVision).
    pub std: f64,
    /// Lower quantile (numpy's linear interpolation).
    pub low: f64,
    /// Upper quantile.
    pub high: f64,
    /// Replicates in which the metric was defined (a group may be absent or single-class).
    pub replicates: usize,
}

impl Ci {
    fn of(mut v: Vec<f64>, q: [f64; 2]) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let std = (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt();
        Some(Self { mean, std, low: quantile(&v, q[0]), high: quantile(&v, q[1]), replicates: v.len() })
    }
}

/// numpy's default ("linear") quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Where a scalar of the report lives.
enum Slot {
    Overall(&'static str),
    Group(usize, String, &'static str),
    Attribute(usize, &'static str),
}

impl Slot {
    fn read(&self, r: &Report) -> Option<f64> {
        match self {
            Slot::Overall(m) => r.overall.get(m),
            Slot::Group(a, g, m) => r.attributes.get_index(*a)?.1.groups.get(g)?.get(m),
            Slot::Attribute(a, m) => r.attributes.get_index(*a)?.1.get(m),
        }
    }
}

/// Computes `b.replicates` reports with `replicate(multiplicities)` and attaches intervals.
/// Refuses, before computing anything, a bootstrap whose values would not fit in memory.
pub(crate) fn attach(report: &mut Report, b: &Bootstrap, n: usize, replicate: impl Fn(&[u32]) -> Report + Sync) -> Result<()> {
    let mut slots: Vec<Slot> = GROUP_METRICS.iter().map(|m| Slot::Overall(m)).collect();
    for (ai, (_, a)) in report.attributes.iter().enumerate() {
        for g in a.groups.keys() {
            slots.extend(GROUP_METRICS.iter().map(|m| Slot::Group(ai, g.clone(), m)));
        }
        slots.extend(ATTRIBUTE_METRICS.iter().map(|m| Slot::Attribute(ai, m)));
    }
    match b.replicates.checked_mul(slots.len()) {
        Some(v) if v <= MAX_VALUES => {}
        _ => {
            return Err(Error::Invalid(format!(
                "bootstrap of {} replicates x {} metrics (the groups' and attributes') would keep more than {MAX_VALUES} values in memory; use fewer replicates (at most {})",
                b.replicates,
                slots.len(),
                MAX_VALUES / slots.len()
            )))
        }
    }
    let values: Vec<Vec<Option<f64>>> = (0..b.replicates)
        .into_par_iter()
        .map(|r| {
            let rep = replicate(&b.draw(r, n));
            slots.iter().map(|s| s.read(&rep)).collect()
        })
        .collect();
    let cis = slots.iter().enumerate().map(|(k, s)| {
        let v: Vec<f64> = values.iter().filter_map(|row| row[k]).collect();
        (s, Ci::of(v, b.quantiles))
    });
    let put = |map: &mut Option<IndexMap<&'static str, Ci>>, m: &'static str, ci: Option<Ci>| {
        if let Some(ci) = ci {
            map.get_or_insert_with(IndexMap::new).insert(m, ci);
        }
    };
    for (s, ci) in cis {
        match s {
            Slot::Overall(m) => put(&mut report.overall.ci, m, ci),
            Slot::Group(a, g, m) => {
                if let Some(gm) = report.attributes[*a].groups.get_mut(g) {
                    put(&mut gm.ci, m, ci);
                }
            }
            Slot::Attribute(a, m) => put(&mut report.attributes[*a].ci, m, ci),
        }
    }
    report.bootstrap = Some(BootstrapInfo { replicates: b.replicates, seed: b.seed, quantiles: b.quantiles });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_linear_quantile() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.5);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert!((quantile(&v, 0.975) - 3.925).abs() < 1e-12);
        assert_eq!(quantile(&[5.0], 0.3), 5.0);
    }

    #[test]
    fn draws_are_seeded_and_sum_to_n() {
        let b = Bootstrap::new(3, 42);
        let a = b.draw(1, 1000);
        assert_eq!(a.iter().map(|&x| x as usize).sum::<usize>(), 1000);
        assert_eq!(a, b.draw(1, 1000));
        assert_ne!(a, b.draw(2, 1000));
    }

    #[test]
    fn invalid_settings() {
        assert!(Bootstrap::new(0, 1).validate().is_err());
        assert!(Bootstrap::new(5, 1).with_quantiles(0.9, 0.1).validate().is_err());
        assert!(Bootstrap::new(5, 1).with_quantiles(0.0, 0.5).validate().is_err());
        assert!(Bootstrap::new(5, 1).with_quantiles(0.5, 1.0).validate().is_err());
        assert!(Bootstrap::new(5, 1).with_quantiles(f64::NAN, 0.5).validate().is_err());
        assert!(Bootstrap::new(5, 1).with_quantiles(0.1, 0.9).validate().is_ok());
    }

    /// A huge replicate count aborted on allocating its values; it is an error instead, and
    /// so is a count within the cap whose values (replicates x metrics) would not fit.
    #[test]
    fn huge_bootstraps_are_refused_before_allocating() {
        assert!(Bootstrap::new(Bootstrap::MAX_REPLICATES, 1).validate().is_ok());
        for n in [Bootstrap::MAX_REPLICATES + 1, 100_000_000_000, usize::MAX] {
            let e = Bootstrap::new(n, 1).validate().unwrap_err().to_string();
            assert_eq!(e, format!("invalid input: bootstrap of {n} replicates; at most 1000000 are supported"));
        }
        let p = crate::Predictions::new(vec![true, false, true, false], vec![0.9, 0.4, 0.6, 0.5]).unwrap();
        let attrs: Vec<crate::Attribute> = (0..100).map(|k| crate::Attribute::from_values(format!("a{k}"), &["x", "y", "x", "y"]).unwrap()).collect();
        // 9 + 100 x (2 x 9 + 13) = 3109 metrics x 1,000,000 replicates is past the cap.
        let opts = crate::ReportOptions::default().with_bootstrap(Bootstrap::new(Bootstrap::MAX_REPLICATES, 1));
        let e = crate::Report::compute(&p, &attrs, &opts).unwrap_err().to_string();
        assert!(e.contains("1000000 replicates x 3109 metrics") && e.contains("at most 86341"), "{e}");
    }
}
