//! The fair-metrics report of a split's scores, and the figures kept of it per epoch.

use fair_data::Prepared;
use fair_metrics::{Attribute, Bootstrap, Predictions, Report, ReportOptions};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::config::Experiment;
use crate::error::Result;

/// The figures kept per epoch and split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Overall AUC.
    pub auc: Option<f64>,
    /// Overall accuracy at the threshold.
    pub accuracy: Option<f64>,
    /// Per attribute.
    pub attributes: IndexMap<String, AttributeMetrics>,
}

/// Fairness figures of one attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeMetrics {
    /// Equity-scaled AUC.
    pub es_auc: Option<f64>,
    /// Demographic parity difference.
    pub dpd: Option<f64>,
    /// Equalized odds difference (DEOdds).
    pub deodds: Option<f64>,
    /// AUC of each group.
    pub group_auc: IndexMap<String, Option<f64>>,
}

/// The sensitive attributes of a split as fair-metrics attributes, named as the data names
/// them and their values.
pub fn attributes(data: &Prepared) -> Result<Vec<Attribute>> {
    data.attributes.columns().iter().map(|c| Ok(Attribute::from_values(&c.name, &c.labels())?)).collect()
}

/// The full fair-metrics report of scores on a split.
pub fn report(exp: &Experiment, data: &Prepared, scores: Vec<f64>, bootstrap: Option<Bootstrap>) -> Result<Report> {
    let labels: Vec<bool> = data.labels.iter().map(|&l| l == 1).collect();
    let mut opts = ReportOptions::default().with_threshold(exp.eval.threshold);
    if let Some(b) = bootstrap {
        opts = opts.with_bootstrap(b);
    }
    Ok(Report::compute(&Predictions::new(labels, scores)?, &attributes(data)?, &opts)?)
}

impl EpochMetrics {
    /// The per-epoch figures of a report.
    pub fn from_report(r: &Report) -> Self {
        let attributes = r
            .attributes
            .iter()
            .map(|(name, a)| {
                let group_auc = a.groups.iter().map(|(g, m)| (g.clone(), m.auc)).collect();
                (name.clone(), AttributeMetrics { es_auc: a.es_auc, dpd: a.dpd, deodds: a.eod, group_auc })
            })
            .collect();
        Self { auc: r.overall.auc, accuracy: r.overall.accuracy, attributes }
    }
}

/// The AUC of scores against a split's labels (`None` when a class is missing).
pub(crate) fn auc(labels: &[u8], scores: &[f64]) -> Option<f64> {
    let l: Vec<bool> = labels.iter().map(|&v| v == 1).collect();
    fair_metrics::roc_auc(&l, scores).ok().flatten()
}

/// Whether a model gave every sample the same score (more than one sample).
pub(crate) fn collapsed(scores: &[f64]) -> bool {
    scores.len() > 1 && scores.iter().all(|&s| s == scores[0])
}

#[cfg(test)]
mod collapse_tests {
    #[test]
    fn constant_scores_are_a_collapse() {
        assert!(super::collapsed(&[0.5, 0.5, 0.5]));
        assert!(!super::collapsed(&[0.5, 0.5, 0.5000001]));
        assert!(!super::collapsed(&[0.3]));
    }
}
