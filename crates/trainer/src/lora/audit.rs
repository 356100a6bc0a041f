//! The audit of a fine-tuned model: utility overall and per group, and the parity ratios
//! (fair-metrics, fairlearn's definitions).

use std::collections::BTreeMap;

use burn::prelude::*;
use fair_data::LabelledImages;
use fair_metrics::{Attribute, Predictions, Report, ReportOptions};
use serde::{Deserialize, Serialize};
use vlm_backbone::VitClassifier;

use super::model::image_batch;
use crate::error::{Error, Result};

/// The audit of a fine-tuned model on a set holding task and sensitive labels: utility
/// (accuracy, precision, recall, FPR) overall and per group, and the parity ratios.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoraAudit {
    /// Rows.
    pub n: usize,
    /// Overall accuracy.
    pub accuracy: f64,
    /// Overall precision.
    pub precision: f64,
    /// Overall recall (TPR).
    pub recall: f64,
    /// Overall false positive rate.
    pub fpr: f64,
    /// Overall ROC AUC.
    pub auc: Option<f64>,
    /// Demographic parity ratio (min / max selection rate).
    pub dp_ratio: Option<f64>,
    /// FPR-parity ratio.
    pub fpr_ratio: Option<f64>,
    /// TPR (equal-opportunity) ratio.
    pub tpr_ratio: Option<f64>,
    /// Per group: accuracy, precision, recall, FPR, selection rate.
    pub groups: BTreeMap<String, [f64; 5]>,
    /// The sensitive attribute's name, where the data names it (`parties.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
}

impl LoraAudit {
    /// The same audit with the attribute and its groups named as the data names them.
    pub fn named(mut self, labels: &fair_data::PartyLabels) -> Self {
        self.groups =
            std::mem::take(&mut self.groups).into_iter().map(|(code, v)| (code.parse::<usize>().ok().and_then(|k| labels.values.get(k)).cloned().unwrap_or(code), v)).collect();
        self.attribute = Some(labels.sensitive.clone());
        self
    }
}

/// Scores (probability of class 1) of a binary classifier on a set.
pub fn scores<B: Backend>(model: &VitClassifier<B>, set: &LabelledImages, device: &B::Device) -> Vec<f64> {
    let mut out = Vec::with_capacity(set.len());
    let all: Vec<usize> = (0..set.len()).collect();
    for idx in all.chunks(256) {
        let p = burn::tensor::activation::softmax(model.forward(image_batch(set, idx, device)), 1);
        let n = idx.len();
        out.extend(p.slice([0..n, 1..2]).into_data().convert::<f64>().to_vec::<f64>().unwrap_or_default());
    }
    out
}

/// Predicted classes (argmax) of a classifier on a set.
pub fn scores_multiclass<B: Backend>(model: &VitClassifier<B>, set: &LabelledImages, device: &B::Device) -> Vec<usize> {
    let all: Vec<usize> = (0..set.len()).collect();
    let mut out = Vec::with_capacity(set.len());
    for idx in all.chunks(256) {
        let pred = model.forward(image_batch(set, idx, device)).argmax(1);
        out.extend(pred.into_data().convert::<i64>().to_vec::<i64>().unwrap_or_default().into_iter().map(|p| p as usize));
    }
    out
}

/// A Markdown table of audits (one row per named model): utility, then the parity ratios.
pub fn audit_markdown(rows: &[(String, LoraAudit)]) -> String {
    let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
    let mut md = String::from("| model | accuracy | precision | recall | FPR | AUC | DP ratio | FPR ratio | TPR ratio |\n|---|---|---|---|---|---|---|---|---|\n");
    for (name, a) in rows {
        md.push_str(&format!(
            "| {name} | {:.4} | {:.4} | {:.4} | {:.4} | {} | {} | {} | {} |\n",
            a.accuracy,
            a.precision,
            a.recall,
            a.fpr,
            f(a.auc),
            f(a.dp_ratio),
            f(a.fpr_ratio),
            f(a.tpr_ratio)
        ));
    }
    for (name, a) in rows {
        if let Some(attr) = &a.attribute {
            md.push_str(&format!("\n{name}, groups of {attr}:\n\n| {attr} | accuracy | precision | recall | FPR | selection rate |\n|---|---|---|---|---|---|\n"));
            for (g, [acc, p, r, fpr, sel]) in &a.groups {
                md.push_str(&format!("| {g} | {acc:.4} | {p:.4} | {r:.4} | {fpr:.4} | {sel:.4} |\n"));
            }
        }
    }
    md
}

/// The audits as CSV, one value per line (`model,scope,group,metric,value`, as fair-metrics'
/// CSV): the overall metrics and ratios (scope `overall`), then each group's (scope the
/// sensitive attribute's name). An undefined value is empty.
///
/// ```
/// use trainer::lora::{audit, audit_csv};
/// let a = audit(&[0.9, 0.2, 0.7, 0.4], &[1, 0, 1, 0], &[0, 0, 1, 1])?;
/// let csv = audit_csv(&[("erm".into(), a)]);
/// assert!(csv.starts_with("model,scope,group,metric,value\nerm,overall,,accuracy,1\n"));
/// # Ok::<(), trainer::Error>(())
/// ```
pub fn audit_csv(rows: &[(String, LoraAudit)]) -> String {
    let value = |v: Option<f64>| v.filter(|x| x.is_finite()).map_or(String::new(), |x| x.to_string());
    let mut csv = String::from("model,scope,group,metric,value\n");
    for (name, a) in rows {
        for (metric, v) in [
            ("accuracy", Some(a.accuracy)),
            ("precision", Some(a.precision)),
            ("recall", Some(a.recall)),
            ("fpr", Some(a.fpr)),
            ("auc", a.auc),
            ("dp_ratio", a.dp_ratio),
            ("fpr_ratio", a.fpr_ratio),
            ("tpr_ratio", a.tpr_ratio),
        ] {
            csv.push_str(&format!("{name},overall,,{metric},{}\n", value(v)));
        }
        let scope = a.attribute.as_deref().unwrap_or("sensitive");
        for (g, values) in &a.groups {
            for (metric, v) in ["accuracy", "precision", "recall", "fpr", "selection_rate"].into_iter().zip(values) {
                csv.push_str(&format!("{name},{scope},{g},{metric},{}\n", value(Some(*v))));
            }
        }
    }
    csv
}

/// Audits scores against `task` (binary) and `sensitive` labels at threshold 0.5 (fair-metrics,
/// fairlearn's definitions).
pub fn audit(scores: &[f64], task: &[i64], sensitive: &[i64]) -> Result<LoraAudit> {
    if task.iter().any(|&t| t != 0 && t != 1) {
        return Err(Error::Invalid("the audit needs a binary task label (0 or 1)".into()));
    }
    let labels: Vec<bool> = task.iter().map(|&t| t == 1).collect();
    let groups: Vec<String> = sensitive.iter().map(|s| s.to_string()).collect();
    let attr = Attribute::from_values("sensitive", &groups)?;
    let r = Report::compute(&Predictions::new(labels, scores.to_vec())?, &[attr], &ReportOptions::default())?;
    let a = &r.attributes["sensitive"];
    let o = &r.overall;
    Ok(LoraAudit {
        n: r.n,
        accuracy: o.accuracy.unwrap_or(f64::NAN),
        precision: o.precision,
        recall: o.tpr,
        fpr: o.fpr,
        auc: o.auc,
        dp_ratio: a.dpr,
        fpr_ratio: a.fpr_ratio,
        tpr_ratio: a.eopr,
        groups: a.groups.iter().map(|(k, g)| (k.clone(), [g.accuracy.unwrap_or(f64::NAN), g.precision, g.tpr, g.fpr, g.selection_rate.unwrap_or(f64::NAN)])).collect(),
        attribute: None,
    })
}
