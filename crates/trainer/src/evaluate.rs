//! Zero-shot predictions of a split and their fair-metrics report.

use burn::prelude::*;
use fair_data::{Prepared, ATTRIBUTES};
use fair_metrics::{Attribute, Bootstrap, Predictions, Report, ReportOptions};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use vlm_backbone::Clip;

use crate::config::Experiment;
use crate::data::group_name;
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

/// FairCLIP's zero-shot glaucoma probabilities of every sample of `data`, in order.
pub fn predict<B: Backend>(model: &Clip<B>, data: &Prepared, prompt_tokens: &[i64], batch_size: usize, device: &B::Device) -> Vec<f64> {
    let context = prompt_tokens.len() / 2;
    let prompts = Tensor::<B, 2, Int>::from_data(TensorData::new(prompt_tokens.to_vec(), [2, context]), device);
    let text = model.encode_text(prompts);
    let mut out = Vec::with_capacity(data.len());
    let rows: Vec<usize> = (0..data.len()).collect();
    for idx in rows.chunks(batch_size.max(1)) {
        let batch = data.batch::<B>(idx, device);
        let image = model.encode_image(batch.images);
        let p = burn::tensor::activation::softmax(image.matmul(text.clone().transpose()), 1).narrow(1, 1, 1);
        out.extend(p.into_data().convert::<f64>().to_vec::<f64>().unwrap_or_default());
    }
    out
}

/// The four attributes of a split as fair-metrics attributes with readable group names.
pub fn attributes(data: &Prepared) -> Result<Vec<Attribute>> {
    ATTRIBUTES
        .iter()
        .enumerate()
        .map(|(a, name)| {
            let values: Vec<&str> = data.attributes.iter().map(|row| group_name(name, row[a])).collect();
            Ok(Attribute::from_values(*name, &values)?)
        })
        .collect()
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

/// Predicts a split and summarises it.
pub fn evaluate<B: Backend>(exp: &Experiment, model: &Clip<B>, data: &Prepared, prompt_tokens: &[i64], device: &B::Device) -> Result<EpochMetrics> {
    let scores = predict(model, data, prompt_tokens, exp.eval.batch_size, device);
    Ok(EpochMetrics::from_report(&report(exp, data, scores, None)?))
}
