//! Paired comparisons of two methods over seeds: the difference of a test metric, method minus
//! baseline, with a hierarchical bootstrap interval, and the verdict it supports.
//!
//! Runs with the same seed see the same subjects (the synthetic benchmark follows the seed), so
//! each seed gives a paired difference on one test split. An interval must carry both sources
//! of noise: which seeds were run (initialisation, data order, the draw of the data) and which
//! subjects the test split holds. Each bootstrap replicate therefore draws seeds with
//! replacement and, within each drawn seed, test subjects with replacement (the same subjects
//! for both methods), and averages the per-seed differences; the interval is the replicates'
//! 2.5 and 97.5 percentiles.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use fair_metrics::{Attribute, Predictions, Report, ReportOptions};

/// One run's test predictions (its `predictions.csv`: label, score, one column per attribute).
#[derive(Debug, Clone, PartialEq)]
pub struct RunPredictions {
    labels: Vec<bool>,
    scores: Vec<f64>,
    /// Attribute name and each subject's group.
    attributes: Vec<(String, Vec<String>)>,
}

impl RunPredictions {
    /// Reads `<run>/predictions.csv`.
    pub fn read(run: &Path) -> Result<Self> {
        let path = run.join("predictions.csv");
        let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        Self::parse(&text).with_context(|| path.display().to_string())
    }

    fn parse(text: &str) -> Result<Self> {
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().context("empty file")?.split(',').collect();
        ensure!(header.len() >= 2, "expected label, score and attribute columns");
        let mut out = Self { labels: vec![], scores: vec![], attributes: header[2..].iter().map(|h| (h.to_string(), vec![])).collect() };
        for (i, line) in lines.enumerate() {
            let cells: Vec<&str> = line.split(',').collect();
            ensure!(cells.len() == header.len(), "line {}: {} cells, expected {}", i + 2, cells.len(), header.len());
            out.labels.push(match cells[0] {
                "1" => true,
                "0" => false,
                other => bail!("line {}: label '{other}', expected 0 or 1", i + 2),
            });
            out.scores.push(cells[1].parse().with_context(|| format!("line {}: score '{}'", i + 2, cells[1]))?);
            for ((_, groups), cell) in out.attributes.iter_mut().zip(&cells[2..]) {
                groups.push(cell.to_string());
            }
        }
        Ok(out)
    }

    fn groups(&self, attribute: &str) -> Result<&[String]> {
        self.attributes.iter().find(|(a, _)| a == attribute).map(|(_, g)| g.as_slice()).with_context(|| format!("no attribute '{attribute}' in the predictions"))
    }

    /// `metric` on the subjects `rows` (repeats allowed).
    fn metric(&self, metric: &Metric, rows: &[usize], threshold: f64) -> Result<Option<f64>> {
        let p = Predictions::new(rows.iter().map(|&r| self.labels[r]).collect(), rows.iter().map(|&r| self.scores[r]).collect())?;
        let opts = ReportOptions::default().with_threshold(threshold);
        let Some(attribute) = metric.attribute() else {
            let overall = Report::compute(&p, &[], &opts)?.overall;
            return Ok(if *metric == Metric::Accuracy { overall.accuracy } else { overall.auc });
        };
        let groups = self.groups(attribute)?;
        let attr = Attribute::from_values(attribute, &rows.iter().map(|&r| groups[r].as_str()).collect::<Vec<_>>())?;
        let report = Report::compute(&p, &[attr], &opts)?;
        let a = report.attributes.get(attribute).context("the report has the attribute")?;
        Ok(match metric {
            Metric::Auc => report.overall.auc,
            Metric::Accuracy => report.overall.accuracy,
            Metric::EsAuc(_) => a.es_auc,
            Metric::DpRatio(_) => a.dpr,
            Metric::Dpd(_) => a.dpd,
            Metric::DeOdds(_) => a.eod,
        })
    }
}

/// A test metric.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// AUC over everyone.
    Auc,
    /// Accuracy over everyone at the threshold.
    Accuracy,
    /// ES-AUC on an attribute.
    EsAuc(String),
    /// Demographic parity difference on an attribute.
    Dpd(String),
    /// Equalized odds difference on an attribute.
    DeOdds(String),
    /// Demographic parity ratio (min/max selection rate) on an attribute.
    DpRatio(String),
}

impl Metric {
    fn attribute(&self) -> Option<&str> {
        match self {
            Metric::Auc | Metric::Accuracy => None,
            Metric::EsAuc(a) | Metric::Dpd(a) | Metric::DeOdds(a) | Metric::DpRatio(a) => Some(a),
        }
    }

    /// Whether a higher value is better (AUCs) or worse (gaps).
    pub fn higher_is_better(&self) -> bool {
        !matches!(self, Metric::Dpd(_) | Metric::DeOdds(_))
    }

    /// The name in a table ("ES-AUC race").
    pub fn label(&self) -> String {
        match self {
            Metric::Auc => "AUC".into(),
            Metric::Accuracy => "accuracy".into(),
            Metric::DpRatio(a) => format!("DP ratio {a}"),
            Metric::EsAuc(a) => format!("ES-AUC {a}"),
            Metric::Dpd(a) => format!("DPD {a}"),
            Metric::DeOdds(a) => format!("DEOdds {a}"),
        }
    }
}

/// A paired difference, method minus baseline, averaged over seeds, with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
    pub seeds: usize,
}

/// What an interval says of a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The interval excludes zero in the paper's direction.
    Reproduced,
    /// The interval excludes zero in the other direction.
    NotReproduced,
    /// The interval contains zero.
    Inconclusive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Reproduced => "reproduced",
            Verdict::NotReproduced => "not reproduced (the opposite holds)",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

impl Paired {
    /// The verdict on a claim that the method improves `metric` over the baseline (a higher
    /// AUC, a smaller gap).
    pub fn verdict(&self, metric: &Metric) -> Verdict {
        let (low, high) = if metric.higher_is_better() { (self.low, self.high) } else { (-self.high, -self.low) };
        if low > 0.0 {
            Verdict::Reproduced
        } else if high < 0.0 {
            Verdict::NotReproduced
        } else {
            Verdict::Inconclusive
        }
    }

    /// "+2.31 [0.80, 3.90]" (x100).
    pub fn cell(&self) -> String {
        format!("{:+.2} [{:+.2}, {:+.2}]", 100.0 * self.mean, 100.0 * self.low, 100.0 * self.high)
    }
}

/// A small, seedable generator (SplitMix64): the intervals are reproducible without a crate.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// The paired difference of `metric`, `method[s] − baseline[s]` for each seed `s`, averaged over
/// seeds, with a hierarchical bootstrap interval of `replicates` draws (see the module's
/// documentation). The runs of one seed must have the same test subjects. A replicate in which
/// the metric is undefined (a group drawn with one class) is left out.
pub fn paired(method: &[RunPredictions], baseline: &[RunPredictions], metric: &Metric, threshold: f64, replicates: usize) -> Result<Paired> {
    ensure!(!method.is_empty() && method.len() == baseline.len(), "{} runs against {}: expected the same seeds", method.len(), baseline.len());
    for (s, (m, b)) in method.iter().zip(baseline).enumerate() {
        ensure!(m.labels == b.labels && m.attributes == b.attributes, "seed {s}: the two runs have different test subjects: not paired");
    }
    let difference = |s: usize, rows: &[usize]| -> Result<Option<f64>> {
        Ok(match (method[s].metric(metric, rows, threshold)?, baseline[s].metric(metric, rows, threshold)?) {
            (Some(a), Some(b)) => Some(a - b),
            _ => None,
        })
    };
    let all: Vec<Vec<usize>> = method.iter().map(|m| (0..m.labels.len()).collect()).collect();
    let mut point = Vec::new();
    for (s, rows) in all.iter().enumerate() {
        point.push(difference(s, rows)?.with_context(|| format!("{} is undefined for seed {s}", metric.label()))?);
    }
    let mean = point.iter().sum::<f64>() / point.len() as f64;
    let mut rng = SplitMix(0x005E_ED0F_B007);
    let mut draws = Vec::with_capacity(replicates);
    'replicate: for _ in 0..replicates {
        let mut sum = 0.0;
        for _ in 0..method.len() {
            let s = rng.below(method.len());
            let n = all[s].len();
            let rows: Vec<usize> = (0..n).map(|_| rng.below(n)).collect();
            match difference(s, &rows)? {
                Some(d) => sum += d,
                None => continue 'replicate,
            }
        }
        draws.push(sum / method.len() as f64);
    }
    ensure!(draws.len() * 2 >= replicates, "{}: undefined in {} of {replicates} bootstrap draws", metric.label(), replicates - draws.len());
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| draws[((q * (draws.len() - 1) as f64).round() as usize).min(draws.len() - 1)];
    Ok(Paired { mean, low: at(0.025), high: at(0.975), seeds: method.len() })
}

/// One claim of a paper: `method` improves `metric` over `baseline`.
pub struct Claim<'a> {
    /// Who claims it ("FairCLIP paper, Table 2").
    pub source: &'a str,
    pub method: &'a str,
    pub baseline: &'a str,
    pub metric: Metric,
}

/// One row of the verdict table: a claim, its paired difference and the verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct VerdictRow {
    /// "fair-moe over clip (Fair-MoE paper, Table 1)".
    pub claim: String,
    /// "ES-AUC race".
    pub metric: String,
    /// "+2.31 [+0.80, +3.90]" (x100).
    pub cell: String,
    pub seeds: usize,
    pub verdict: Verdict,
}

/// The "Paired differences" section of a study: one row per claim, with the runs of each
/// method (one folder per seed, the same seeds for every method) from `runs`; and the rows, for
/// the verdict table of `reproduce all`.
pub fn claims_table(title: &str, claims: &[Claim<'_>], runs: &dyn Fn(&str) -> Vec<std::path::PathBuf>, threshold: f64, replicates: usize) -> Result<(String, Vec<VerdictRow>)> {
    let mut md = format!(
        "\n## Paired differences{title}\n\nMethod minus baseline on the same seeds (the same subjects), x100, averaged over seeds, with a 95 % hierarchical bootstrap interval ({replicates} draws of seeds and, within each, of test subjects). A claim is *reproduced* when the interval excludes zero in the paper's direction (a higher AUC, ES-AUC, accuracy or parity ratio, a smaller DPD or DEOdds), *not reproduced* when it excludes zero the other way, *inconclusive* otherwise.\n\n| claim (source) | metric | difference [95 % interval] | seeds | verdict |\n|---|---|---|---|---|\n"
    );
    let mut rows = Vec::with_capacity(claims.len());
    for c in claims {
        let read = |m: &str| -> Result<Vec<RunPredictions>> { runs(m).iter().map(|r| RunPredictions::read(r)).collect() };
        let p = paired(&read(c.method)?, &read(c.baseline)?, &c.metric, threshold, replicates)?;
        let r = VerdictRow {
            claim: format!("{} over {} ({})", c.method, c.baseline, c.source),
            metric: c.metric.label(),
            cell: p.cell(),
            seeds: p.seeds,
            verdict: p.verdict(&c.metric),
        };
        md.push_str(&format!("| {} | {} | {} | {} | {} |\n", r.claim, r.metric, r.cell, r.seeds, r.verdict.as_str()));
        rows.push(r);
    }
    Ok((md, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of `n` subjects in two groups whose scores rank the labels with `quality` (the
    /// share of subjects whose score is on the right side of 0.5), varied by `seed`.
    fn run(n: usize, quality: f64, seed: u64) -> RunPredictions {
        let mut rng = SplitMix(seed);
        let mut csv = String::from("glaucoma,prob,race\n");
        for i in 0..n {
            let label = i % 2;
            let good = (rng.below(1000) as f64) < quality * 1000.0;
            let score = if good == (label == 1) { 0.6 + 0.3 * rng.below(100) as f64 / 100.0 } else { 0.1 + 0.3 * rng.below(100) as f64 / 100.0 };
            csv.push_str(&format!("{label},{score},{}\n", if i % 3 == 0 { "Black" } else { "White" }));
        }
        RunPredictions::parse(&csv).expect("csv")
    }

    #[test]
    fn a_clearly_better_method_is_reproduced_and_a_copy_is_not() {
        let better: Vec<RunPredictions> = (0..3).map(|s| run(400, 0.9, s)).collect();
        let worse: Vec<RunPredictions> = (0..3).map(|s| run(400, 0.7, s + 10)).collect();
        // Paired on subjects: the same labels and groups in both (the scores differ).
        let p = paired(&better, &worse, &Metric::Auc, 0.5, 200).expect("paired");
        assert!(p.mean > 0.1 && p.low > 0.0, "{p:?}");
        assert_eq!(p.verdict(&Metric::Auc), Verdict::Reproduced);
        assert_eq!(paired(&worse, &better, &Metric::Auc, 0.5, 200).expect("paired").verdict(&Metric::Auc), Verdict::NotReproduced);
        let same = paired(&better, &better, &Metric::EsAuc("race".into()), 0.5, 200).expect("paired");
        assert_eq!((same.mean, same.low, same.high), (0.0, 0.0, 0.0));
        assert_eq!(same.verdict(&Metric::EsAuc("race".into())), Verdict::Inconclusive);
    }

    #[test]
    fn a_smaller_gap_is_the_improvement_for_gaps() {
        let p = Paired { mean: -0.05, low: -0.08, high: -0.02, seeds: 5 };
        assert_eq!(p.verdict(&Metric::Dpd("race".into())), Verdict::Reproduced);
        assert_eq!(p.verdict(&Metric::Auc), Verdict::NotReproduced);
        assert_eq!(p.cell(), "-5.00 [-8.00, -2.00]");
    }

    #[test]
    fn runs_on_different_subjects_are_refused() {
        let a = vec![run(50, 0.9, 1)];
        let mut b = a.clone();
        b[0].labels[0] = !b[0].labels[0];
        assert!(paired(&a, &b, &Metric::Auc, 0.5, 10).unwrap_err().to_string().contains("not paired"));
        assert!(RunPredictions::parse("glaucoma,prob,race\n2,0.5,White\n").unwrap_err().to_string().contains("label '2'"));
    }
}
