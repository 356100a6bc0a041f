//! What a run logs per epoch (`log.jsonl`, and the history of `report.json`).

use serde::{Deserialize, Serialize};

use crate::evaluate::EpochMetrics;
use crate::recipes::StepStats;

/// One epoch of the log (a line of `log.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean total loss over the epoch's steps.
    pub loss: f64,
    /// Mean task loss: CLIP's InfoNCE, or the cross-entropy of the multimodal methods.
    pub clip_loss: f64,
    /// Mean FairCLIP regulariser (before λ), when the method has one.
    pub fair_loss: Option<f64>,
    /// Mean FOL routing terms (as added to the loss), for `fair-moe`.
    #[serde(default)]
    pub fol_loss: Option<f64>,
    /// Steps so far.
    pub steps: usize,
    /// Validation metrics.
    pub validation: EpochMetrics,
    /// Test metrics.
    pub test: EpochMetrics,
    /// Seconds spent training this epoch (evaluation excluded).
    pub train_seconds: f64,
    /// Training samples per second.
    pub samples_per_second: f64,
    /// The multimodal methods' modulation and unimodal figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multimodal: Option<MultimodalLog>,
    /// What the method's mechanism did this epoch, by name: FairCLIP's per-group Sinkhorn
    /// divergence from the batch (`sinkhorn.<group>`, before λ), FOL's per-group routing
    /// variance gap (`routing_gap.<moe>.<group>`, `V_g − V`), both as epoch means over the
    /// training steps, and the multimodal encoders' relative parameter change over the epoch
    /// (`encoder_step.<modality>`, `‖θ_end − θ_start‖ / ‖θ_start‖`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub mechanism: std::collections::BTreeMap<String, f64>,
    /// The model gave every validation sample the same score (its AUC is 0.5 by ties): it
    /// collapsed, typically from too large a step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub collapsed: bool,
}

/// Per epoch, what the modulation did and how each modality alone performs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultimodalLog {
    /// Mean factor applied to each encoder's gradients (fundus, second modality; 1 = none).
    pub encoder_factors: [f64; 2],
    /// Fraction of steps on which MultiFair's group trigger fired.
    pub triggered: f64,
    /// AUC of each auxiliary (unimodal) head on the validation split.
    pub validation_unimodal_auc: [Option<f64>; 2],
    /// The same on the test split.
    pub test_unimodal_auc: [Option<f64>; 2],
}

impl EpochLog {
    /// A one-line summary for the terminal; `method` and `epochs` frame it.
    pub fn one_line(&self, method: &str, epochs: usize) -> String {
        let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
        let es: Vec<String> = self.validation.attributes.iter().map(|(a, m)| format!("{a} {}", f(m.es_auc))).collect();
        format!(
            "{method} epoch {}/{epochs}: loss {:.4} | val AUC {} ES-AUC {} | test AUC {} | {:.1} s, {:.0} samples/s",
            self.epoch,
            self.loss,
            f(self.validation.auc),
            es.join(", "),
            f(self.test.auc),
            self.train_seconds,
            self.samples_per_second
        )
    }
}

/// The sums of an epoch's step statistics.
#[derive(Default)]
pub(crate) struct Sums {
    pub(crate) loss: f64,
    pub(crate) task: f64,
    pub(crate) fair: Option<f64>,
    pub(crate) fol: Option<f64>,
    pub(crate) modulation: Option<([f64; 2], usize)>,
    /// `<name>.<group>` → (sum, steps) of the recipe's per-group mechanism values.
    by_group: std::collections::BTreeMap<String, (f64, usize)>,
}

impl Sums {
    /// The epoch means of the per-group mechanism values, by `<name>.<group>`.
    pub(crate) fn mechanism(&self) -> std::collections::BTreeMap<String, f64> {
        self.by_group.iter().map(|(k, (sum, n))| (k.clone(), sum / *n as f64)).collect()
    }

    /// Adds one step's statistics; `groups` names the step's group batches.
    pub(crate) fn add(&mut self, s: &StepStats, groups: &[String]) {
        for (name, values) in &s.by_group {
            for (v, group) in values.iter().zip(groups) {
                let e = self.by_group.entry(format!("{name}.{group}")).or_default();
                e.0 += v;
                e.1 += 1;
            }
        }
        self.loss += s.loss;
        self.task += s.task_loss;
        if let Some(v) = s.fair_loss {
            *self.fair.get_or_insert(0.0) += v;
        }
        if let Some(v) = s.fol_loss {
            *self.fol.get_or_insert(0.0) += v;
        }
        if let Some((factors, triggered)) = s.modulation {
            let (sum, fired) = self.modulation.get_or_insert(([0.0; 2], 0));
            for (sum, f) in sum.iter_mut().zip(factors) {
                *sum += f;
            }
            *fired += triggered as usize;
        }
    }
}
