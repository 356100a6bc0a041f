//! The report: per-group metrics, fairness gaps per attribute, and their serialisation.

use indexmap::IndexMap;
use rayon::prelude::*;
use serde::Serialize;

use crate::bootstrap::{self, Bootstrap, Ci};
use crate::engine::{Codes, GroupCounts, Sorted};
use crate::error::{Error, Result};
use crate::input::{Attribute, Predictions};

/// How a group whose AUC is undefined (a single class) enters ES-AUC and the between-group
/// AUC disparities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UndefinedAuc {
    /// Leave the group out (MultiFair's evaluation code). The default.
    #[default]
    Skip,
    /// The result is undefined (`null`), as NaN propagates in FairCLIP's evaluation code.
    Null,
}

/// Options of a report.
///
/// ```
/// use fair_metrics::{ReportOptions, UndefinedAuc};
/// let opts = ReportOptions::default().with_threshold(0.4).with_undefined_auc(UndefinedAuc::Null);
/// assert_eq!(opts.alpha, 1.0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOptions {
    /// Hard prediction is `score >= threshold` when no predictions are given. Default 0.5.
    pub threshold: f64,
    /// The alpha of ES-AUC and ES-Accuracy. Default 1.
    pub alpha: f64,
    /// Single-class groups in ES-AUC. Default [`UndefinedAuc::Skip`].
    pub undefined_auc: UndefinedAuc,
    /// Bootstrap intervals, if wanted.
    pub bootstrap: Option<Bootstrap>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self { threshold: 0.5, alpha: 1.0, undefined_auc: UndefinedAuc::Skip, bootstrap: None }
    }
}

impl ReportOptions {
    /// Sets the decision threshold.
    pub fn with_threshold(mut self, t: f64) -> Self {
        self.threshold = t;
        self
    }
    /// Sets ES-AUC's alpha.
    pub fn with_alpha(mut self, a: f64) -> Self {
        self.alpha = a;
        self
    }
    /// Sets how single-class groups enter ES-AUC.
    pub fn with_undefined_auc(mut self, u: UndefinedAuc) -> Self {
        self.undefined_auc = u;
        self
    }
    /// Asks for bootstrap intervals.
    pub fn with_bootstrap(mut self, b: Bootstrap) -> Self {
        self.bootstrap = Some(b);
        self
    }

    fn validate(&self) -> Result<()> {
        if !self.threshold.is_finite() {
            return Err(Error::Invalid(format!("threshold {} is not a finite number", self.threshold)));
        }
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return Err(Error::Invalid(format!("alpha {} must be a finite number >= 0", self.alpha)));
        }
        if let Some(b) = &self.bootstrap {
            b.validate()?;
        }
        Ok(())
    }
}

/// Metrics of one group (or of all rows). Rates follow fairlearn: a rate whose denominator is
/// zero is 0 and is listed under `undefined`; an AUC of a single-class group is `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupMetrics {
    /// Rows.
    pub n: u64,
    /// Rows with a positive label.
    pub positives: u64,
    /// Sum of sample weights (only when weights were given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// ROC AUC exactly as `sklearn.metrics.roc_auc_score`.
    pub auc: Option<f64>,
    /// Share of correct hard predictions.
    pub accuracy: Option<f64>,
    /// Mean recall over the classes present (`sklearn.metrics.balanced_accuracy_score`).
    pub balanced_accuracy: Option<f64>,
    /// Share of positive hard predictions (fairlearn `selection_rate`).
    pub selection_rate: Option<f64>,
    /// True positive rate (recall).
    pub tpr: f64,
    /// False positive rate.
    pub fpr: f64,
    /// True negative rate (specificity).
    pub tnr: f64,
    /// False negative rate.
    pub fnr: f64,
    /// Positive predictive value; 0 when nothing is predicted positive (sklearn's zero_division).
    pub precision: f64,
    /// Bootstrap intervals of the metrics above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci: Option<IndexMap<&'static str, Ci>>,
}

/// The per-group metric names, in report order.
pub const GROUP_METRICS: [&str; 9] = ["auc", "accuracy", "balanced_accuracy", "selection_rate", "tpr", "fpr", "tnr", "fnr", "precision"];

impl GroupMetrics {
    /// The value of a per-group metric by name (see [`GROUP_METRICS`]).
    pub fn get(&self, metric: &str) -> Option<f64> {
        match metric {
            "auc" => self.auc,
            "accuracy" => self.accuracy,
            "balanced_accuracy" => self.balanced_accuracy,
            "selection_rate" => self.selection_rate,
            "tpr" => Some(self.tpr),
            "fpr" => Some(self.fpr),
            "tnr" => Some(self.tnr),
            "fnr" => Some(self.fnr),
            "precision" => Some(self.precision),
            _ => None,
        }
    }

    fn from_counts(c: &GroupCounts, weighted: bool, group: &str, undefined: &mut Vec<Undefined>) -> Self {
        let mut flag = |metric: &'static str, reason: &'static str, reported_as: Option<f64>| {
            undefined.push(Undefined { group: group.to_owned(), metric, reason, reported_as });
        };
        // Denominators as scikit-learn forms them: confusion-matrix row and column sums.
        let pos = c.tp + c.fn_;
        let neg = c.fp + c.tn;
        let pred_pos = c.tp + c.fp;
        let rate = |num: f64, den: f64| if den > 0.0 { num / den } else { 0.0 };
        if pos <= 0.0 {
            flag("tpr", "no positive labels", Some(0.0));
            flag("fnr", "no positive labels", Some(0.0));
        }
        if neg <= 0.0 {
            flag("fpr", "no negative labels", Some(0.0));
            flag("tnr", "no negative labels", Some(0.0));
        }
        if pred_pos <= 0.0 {
            flag("precision", "no positive predictions", Some(0.0));
        }
        let auc = if c.wp > 0.0 && c.wn > 0.0 {
            Some(c.auc2 / (2.0 * c.wp * c.wn))
        } else {
            flag("auc", "single class", None);
            None
        };
        let (accuracy, selection_rate) = if c.w > 0.0 {
            (Some((c.tp + c.tn) / c.w), Some(pred_pos / c.w))
        } else {
            flag("accuracy", "zero total weight", None);
            flag("selection_rate", "zero total weight", None);
            (None, None)
        };
        // balanced_accuracy_score drops the recall of a class with no (weighted) rows.
        let recalls: Vec<f64> = [(c.tp, pos), (c.tn, neg)].into_iter().filter(|&(_, d)| d > 0.0).map(|(x, d)| x / d).collect();
        let balanced_accuracy = match recalls.len() {
            0 => None,
            k => Some(recalls.iter().sum::<f64>() / k as f64),
        };
        Self {
            n: c.n,
            positives: c.n_pos,
            weight: weighted.then_some(c.w),
            auc,
            accuracy,
            balanced_accuracy,
            selection_rate,
            tpr: rate(c.tp, pos),
            fpr: rate(c.fp, neg),
            tnr: rate(c.tn, neg),
            fnr: rate(c.fn_, pos),
            precision: rate(c.tp, pred_pos),
            ci: None,
        }
    }
}

/// A metric of a group that has no value of its own (zero denominator) and how it is reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Undefined {
    /// The group's value (`overall` for all rows).
    pub group: String,
    /// The metric's name.
    pub metric: &'static str,
    /// Why it is undefined.
    pub reason: &'static str,
    /// The value reported in its place (fairlearn's 0 for rates), or `null`.
    pub reported_as: Option<f64>,
}

/// MetricFrame-style aggregates of one per-group metric over the groups of an attribute.
/// Undefined group values are skipped, as pandas skips NaN.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Aggregates {
    /// `MetricFrame.group_min()`.
    pub min: Option<f64>,
    /// `MetricFrame.group_max()`.
    pub max: Option<f64>,
    /// `difference(method="between_groups")`: max - min.
    pub difference: Option<f64>,
    /// `difference(method="to_overall")`: max over groups of |group - overall|.
    pub difference_to_overall: Option<f64>,
    /// `ratio(method="between_groups")`: min / max.
    pub ratio: Option<f64>,
    /// `ratio(method="to_overall")`: min over groups of group/overall, inverted where above 1.
    pub ratio_to_overall: Option<f64>,
}

impl Aggregates {
    /// Aggregates per-group values (`None` = undefined) against the overall value.
    ///
    /// ```
    /// use fair_metrics::Aggregates;
    /// let a = Aggregates::of(&[Some(0.2), None, Some(0.5)], Some(0.4));
    /// assert_eq!(a.difference, Some(0.3));
    /// assert_eq!(a.ratio, Some(0.4));
    /// assert_eq!(a.ratio_to_overall, Some(0.5));
    /// ```
    pub fn of(values: &[Option<f64>], overall: Option<f64>) -> Self {
        let defined = || values.iter().flatten().copied();
        let min = defined().reduce(f64::min);
        let max = defined().reduce(f64::max);
        let difference = min.and_then(|m| defined().map(|v| (v - m).abs()).reduce(f64::max));
        let difference_to_overall = overall.and_then(|o| defined().map(|v| (v - o).abs()).reduce(f64::max));
        let ratio = min.zip(max).map(|(a, b)| a / b).filter(|r| !r.is_nan());
        let ratio_to_overall = overall.and_then(|o| defined().map(|v| v / o).map(|r| if r > 1.0 { 1.0 / r } else { r }).filter(|r| !r.is_nan()).reduce(f64::min));
        Self { min, max, difference, difference_to_overall, ratio, ratio_to_overall }
    }
}

/// Fairness of one attribute.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeReport {
    /// Metrics of each group present, keyed by the value as written.
    pub groups: IndexMap<String, GroupMetrics>,
    /// Equity-scaled AUC (FairCLIP): AUC / (1 + alpha * sum_g |AUC - AUC_g|).
    pub es_auc: Option<f64>,
    /// Equity-scaled accuracy, the same form over accuracy.
    pub es_accuracy: Option<f64>,
    /// Demographic parity difference (fairlearn): max - min selection rate.
    pub dpd: Option<f64>,
    /// Demographic parity ratio: min / max selection rate.
    pub dpr: Option<f64>,
    /// Equalized odds difference (DEOdds), worst case: max(TPR difference, FPR difference).
    /// Not equal opportunity, which AIF360 abbreviates "EOD" too: that is `eopd`.
    pub eod: Option<f64>,
    /// The same value as `eod` under fairlearn's unambiguous name.
    pub equalized_odds_difference: Option<f64>,
    /// Equalized odds difference, mean aggregation: (TPR difference + FPR difference) / 2.
    pub eod_mean: Option<f64>,
    /// Equalized odds ratio, worst case: min(TPR ratio, FPR ratio).
    pub eor: Option<f64>,
    /// Equalized odds ratio, mean aggregation.
    pub eor_mean: Option<f64>,
    /// Equal opportunity difference: max - min TPR.
    pub eopd: Option<f64>,
    /// Equal opportunity ratio: min / max TPR.
    pub eopr: Option<f64>,
    /// False positive rate parity ratio: min / max FPR.
    pub fpr_ratio: Option<f64>,
    /// Between-group AUC disparity (FairCLIP): population std of group AUCs / overall AUC.
    pub auc_std: Option<f64>,
    /// Between-group AUC disparity (FairCLIP): (max - min group AUC) / overall AUC.
    pub auc_range: Option<f64>,
    /// The worst group of each metric (lowest; highest for fpr and fnr).
    pub worst: IndexMap<&'static str, String>,
    /// MetricFrame aggregates of every per-group metric.
    pub metric_frame: IndexMap<&'static str, Aggregates>,
    /// Group metrics without a value of their own.
    pub undefined: Vec<Undefined>,
    /// Bootstrap intervals of the scalar fairness metrics above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci: Option<IndexMap<&'static str, Ci>>,
}

/// The fairness metrics of an attribute that get bootstrap intervals, in report order.
pub const ATTRIBUTE_METRICS: [&str; 13] = ["es_auc", "es_accuracy", "dpd", "dpr", "eod", "eod_mean", "eor", "eor_mean", "eopd", "eopr", "fpr_ratio", "auc_std", "auc_range"];

impl AttributeReport {
    /// A scalar fairness metric by name (see [`ATTRIBUTE_METRICS`]).
    pub fn get(&self, metric: &str) -> Option<f64> {
        match metric {
            "es_auc" => self.es_auc,
            "es_accuracy" => self.es_accuracy,
            "dpd" => self.dpd,
            "dpr" => self.dpr,
            "eod" => self.eod,
            "eod_mean" => self.eod_mean,
            "eor" => self.eor,
            "eor_mean" => self.eor_mean,
            "eopd" => self.eopd,
            "eopr" => self.eopr,
            "fpr_ratio" => self.fpr_ratio,
            "auc_std" => self.auc_std,
            "auc_range" => self.auc_range,
            _ => None,
        }
    }
}

/// Bootstrap settings as written into the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BootstrapInfo {
    /// Number of replicates.
    pub replicates: usize,
    /// The seed.
    pub seed: u64,
    /// The quantiles of `low` and `high`.
    pub quantiles: [f64; 2],
}

/// A full report: overall metrics and the fairness of each attribute.
///
/// ```
/// use fair_metrics::{Attribute, Predictions, Report, ReportOptions};
/// let p = Predictions::new(
///     vec![true, false, true, false, true, false],
///     vec![0.9, 0.3, 0.6, 0.7, 0.4, 0.1],
/// )?;
/// let sex = Attribute::from_values("sex", &["F", "F", "F", "M", "M", "M"])?;
/// let r = Report::compute(&p, &[sex], &ReportOptions::default())?;
/// assert_eq!(r.overall.auc, Some(7.0 / 9.0));
/// let sex = &r.attributes["sex"];
/// assert_eq!(sex.groups["F"].auc, Some(1.0));
/// assert_eq!(sex.dpd, Some(2.0 / 3.0 - 1.0 / 3.0));
/// // `eod` is equalized odds; the JSON also names it in full.
/// assert_eq!(sex.equalized_odds_difference, sex.eod);
/// # Ok::<(), fair_metrics::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Rows.
    pub n: usize,
    /// The decision threshold (`null` when hard predictions were given).
    pub threshold: Option<f64>,
    /// ES-AUC's alpha.
    pub alpha: f64,
    /// How single-class groups enter ES-AUC.
    pub undefined_auc: UndefinedAuc,
    /// Metrics over all rows.
    pub overall: GroupMetrics,
    /// Overall metrics without a value of their own.
    pub undefined: Vec<Undefined>,
    /// Fairness per attribute, in the order given.
    pub attributes: IndexMap<String, AttributeReport>,
    /// Bootstrap settings, when intervals were computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapInfo>,
}

impl Report {
    /// Computes the report. Every attribute must have one value per row.
    pub fn compute(p: &Predictions, attrs: &[Attribute], opts: &ReportOptions) -> Result<Self> {
        opts.validate()?;
        if p.is_empty() {
            return Err(Error::Invalid("no rows".into()));
        }
        if p.len() > u32::MAX as usize {
            return Err(Error::Invalid(format!("{} rows; at most {} are supported", p.len(), u32::MAX)));
        }
        for a in attrs {
            if a.len() != p.len() {
                return Err(Error::Invalid(format!("attribute '{}' has {} values for {} rows", a.name, a.len(), p.len())));
            }
        }
        for (i, a) in attrs.iter().enumerate() {
            if attrs[..i].iter().any(|b| b.name == a.name) {
                return Err(Error::Invalid(format!("attribute '{}' given twice", a.name)));
            }
        }
        let sorted = Sorted::new(p, opts.threshold);
        let codes: Vec<Codes> = attrs.par_iter().map(|a| sorted.gather_codes(&a.codes, a.levels.len())).collect();
        let engine = Prepared { sorted: &sorted, attrs, codes: &codes, weighted: p.weights.is_some() };
        let mut report = engine.report(None, opts);
        report.threshold = p.preds.is_none().then_some(opts.threshold);
        if let Some(b) = &opts.bootstrap {
            bootstrap::attach(&mut report, b, p.len(), |mult| engine.report(Some(mult), opts))?;
        }
        Ok(report)
    }
}

/// Everything a report needs once the rows are sorted; computes reports for any multiplicity.
struct Prepared<'a> {
    sorted: &'a Sorted,
    attrs: &'a [Attribute],
    codes: &'a [Codes],
    weighted: bool,
}

impl Prepared<'_> {
    /// `mult`: multiplicity of each row in the original order (bootstrap), else one each.
    fn report(&self, mult: Option<&[u32]>, opts: &ReportOptions) -> Report {
        let mult_sorted = mult.map(|m| self.sorted.gather(m));
        let ms = mult_sorted.as_deref();
        // Overall and each attribute are independent passes.
        let counts: Vec<Vec<GroupCounts>> = (0..=self.attrs.len())
            .into_par_iter()
            .map(|k| match k {
                0 => self.sorted.count(None, 1, ms),
                _ => self.sorted.count(Some(&self.codes[k - 1]), self.attrs[k - 1].levels.len(), ms),
            })
            .collect();
        let mut undefined = Vec::new();
        let overall = GroupMetrics::from_counts(&counts[0][0], self.weighted, "overall", &mut undefined);
        let attributes = self.attrs.iter().zip(&counts[1..]).map(|(a, c)| (a.name.clone(), attribute_report(a, c, &overall, self.weighted, opts))).collect();
        Report { n: overall.n as usize, threshold: None, alpha: opts.alpha, undefined_auc: opts.undefined_auc, overall, undefined, attributes, bootstrap: None }
    }
}

fn attribute_report(a: &Attribute, counts: &[GroupCounts], overall: &GroupMetrics, weighted: bool, opts: &ReportOptions) -> AttributeReport {
    let mut undefined = Vec::new();
    let groups: IndexMap<String, GroupMetrics> =
        a.levels.iter().zip(counts).filter(|(_, c)| c.n > 0).map(|(level, c)| (level.clone(), GroupMetrics::from_counts(c, weighted, level, &mut undefined))).collect();
    let metric_frame: IndexMap<&'static str, Aggregates> = GROUP_METRICS
        .iter()
        .map(|&m| {
            let values: Vec<Option<f64>> = groups.values().map(|g| g.get(m)).collect();
            (m, Aggregates::of(&values, overall.get(m)))
        })
        .collect();
    let agg = |m: &str| &metric_frame[m];
    let (tpr, fpr) = (agg("tpr"), agg("fpr"));

    let aucs: Vec<Option<f64>> = groups.values().map(|g| g.auc).collect();
    let group_aucs: Option<Vec<f64>> = match opts.undefined_auc {
        UndefinedAuc::Skip => Some(aucs.iter().flatten().copied().collect()),
        UndefinedAuc::Null => aucs.iter().copied().collect(),
    };
    let accs: Option<Vec<f64>> = groups.values().map(|g| g.accuracy).collect();
    let es_auc = equity_scaled(overall.auc, group_aucs.as_deref(), opts.alpha);
    let es_accuracy = equity_scaled(overall.accuracy, accs.as_deref(), opts.alpha);
    let (auc_std, auc_range) = match (overall.auc, group_aucs.as_deref()) {
        (Some(o), Some(v)) if !v.is_empty() => {
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / v.len() as f64;
            let range = v.iter().copied().fold(f64::MIN, f64::max) - v.iter().copied().fold(f64::MAX, f64::min);
            (finite(var.sqrt() / o), finite(range / o))
        }
        _ => (None, None),
    };

    let worst = GROUP_METRICS
        .iter()
        .filter(|&&m| m != "selection_rate")
        .filter_map(|&m| {
            let higher_is_worse = matches!(m, "fpr" | "fnr");
            let mut best: Option<(&String, f64)> = None;
            for (k, g) in &groups {
                if let Some(v) = g.get(m) {
                    let worse = match best {
                        None => true,
                        Some((_, b)) => {
                            if higher_is_worse {
                                v > b
                            } else {
                                v < b
                            }
                        }
                    };
                    if worse {
                        best = Some((k, v));
                    }
                }
            }
            best.map(|(k, _)| (m, k.clone()))
        })
        .collect();

    AttributeReport {
        es_auc,
        es_accuracy,
        dpd: agg("selection_rate").difference,
        dpr: agg("selection_rate").ratio,
        eod: py_max(tpr.difference, fpr.difference),
        equalized_odds_difference: py_max(tpr.difference, fpr.difference),
        eod_mean: nan_mean(tpr.difference, fpr.difference),
        eor: py_min(tpr.ratio, fpr.ratio),
        eor_mean: nan_mean(tpr.ratio, fpr.ratio),
        eopd: tpr.difference,
        eopr: tpr.ratio,
        fpr_ratio: fpr.ratio,
        auc_std,
        auc_range,
        worst,
        groups,
        metric_frame,
        undefined,
        ci: None,
    }
}

/// overall / (1 + alpha * sum_g |overall - m_g|); undefined when `groups` is.
pub fn equity_scaled(overall: Option<f64>, groups: Option<&[f64]>, alpha: f64) -> Option<f64> {
    let (o, g) = (overall?, groups?);
    finite(o / (1.0 + alpha * g.iter().map(|x| (o - x).abs()).sum::<f64>()))
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Python's built-in `max([a, b])` on floats where NaN is `None`: a NaN first wins, a NaN
/// second loses. fairlearn's worst-case equalized odds aggregates this way.
fn py_max(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > a => Some(b),
        (a, _) => a,
    }
}

/// Python's built-in `min([a, b])`, see [`py_max`].
fn py_min(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b < a => Some(b),
        (a, _) => a,
    }
}

/// pandas `Series.mean()`: NaN skipped.
fn nan_mean(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some((a + b) / 2.0),
        (Some(x), None) | (None, Some(x)) => Some(x),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> (Predictions, Vec<Attribute>) {
        let p = Predictions::new(vec![true, false, true, false, true, true, false, false], vec![0.9, 0.2, 0.6, 0.6, 0.3, 0.8, 0.7, 0.1]).unwrap();
        let g = Attribute::from_values("g", &["a", "a", "a", "b", "b", "b", "c", "c"]).unwrap();
        (p, vec![g])
    }

    #[test]
    fn single_class_group_is_undefined_and_skipped() {
        let (p, a) = toy();
        let r = Report::compute(&p, &a, &ReportOptions::default()).unwrap();
        let g = &r.attributes["g"];
        assert_eq!(g.groups["c"].auc, None);
        assert_eq!(g.groups["c"].tpr, 0.0);
        assert!(g.undefined.iter().any(|u| u.group == "c" && u.metric == "auc"));
        assert!(g.undefined.iter().any(|u| u.group == "c" && u.metric == "tpr" && u.reported_as == Some(0.0)));
        let o = r.overall.auc.unwrap();
        let (a_, b_) = (g.groups["a"].auc.unwrap(), g.groups["b"].auc.unwrap());
        let expect = o / (1.0 + (o - a_).abs() + (o - b_).abs());
        assert_eq!(g.es_auc, Some(expect));
        let strict = Report::compute(&p, &a, &ReportOptions::default().with_undefined_auc(UndefinedAuc::Null)).unwrap();
        assert_eq!(strict.attributes["g"].es_auc, None);
        assert_eq!(strict.attributes["g"].auc_std, None);
    }

    #[test]
    fn hard_predictions_override_threshold() {
        let (p, a) = toy();
        let p = p.with_preds(vec![false; 8]).unwrap();
        let r = Report::compute(&p, &a, &ReportOptions::default()).unwrap();
        assert_eq!(r.threshold, None);
        assert_eq!(r.overall.selection_rate, Some(0.0));
        assert_eq!(r.attributes["g"].dpr, None); // 0 / 0, as fairlearn
        assert_eq!(r.attributes["g"].dpd, Some(0.0));
    }

    #[test]
    fn python_min_max_quirk() {
        assert_eq!(py_max(None, Some(1.0)), None);
        assert_eq!(py_max(Some(1.0), None), Some(1.0));
        assert_eq!(py_min(Some(0.5), Some(0.2)), Some(0.2));
        assert_eq!(nan_mean(None, Some(0.4)), Some(0.4));
    }

    #[test]
    fn bad_options_and_lengths_are_errors() {
        let (p, a) = toy();
        assert!(Report::compute(&p, &a, &ReportOptions::default().with_threshold(f64::NAN)).is_err());
        assert!(Report::compute(&p, &a, &ReportOptions::default().with_alpha(-1.0)).is_err());
        let short = Attribute::from_values("s", &["x"]).unwrap();
        assert!(Report::compute(&p, &[short], &ReportOptions::default()).is_err());
        let twice = vec![a[0].clone(), a[0].clone()];
        assert!(Report::compute(&p, &twice, &ReportOptions::default()).is_err());
    }

    #[test]
    fn worst_groups() {
        let (p, a) = toy();
        let r = Report::compute(&p, &a, &ReportOptions::default()).unwrap();
        let g = &r.attributes["g"];
        assert_eq!(g.worst["fpr"], "b");
        assert!(!g.worst.contains_key("selection_rate"));
    }
}
