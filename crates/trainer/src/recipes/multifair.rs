//! MultiFair (papers.md 4.2): dual-level gradient modulation of the multimodal classifier.
//! - Modality level (CGGM-style): each step the auxiliary heads' AUCs update the balance
//!   `b`, and each encoder's gradients are scaled by `ρ · b_m`.
//! - Group level: per group `g` of `multimodal.attribute`, an EMA of each head's surrogate
//!   AUC; when the fused prediction's group AUC gap exceeds `τ` (the trigger), the encoders'
//!   factors are also multiplied by the group factors, which favour the modality that serves
//!   the worse group.
//! - `mode = "faithful"` adds the paper's differentiable direction term `λ_gm · L_dir` and,
//!   when triggered, the surrogate-AUC group gap; `code-exact` (default) is the released
//!   code, where both are inert.

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use gradmod::{direction_loss, scale, GroupModulation, ModalityBalance, MultiFairMode, MultiFairSettings, ParamSet};
use serde::{Deserialize, Serialize};

use super::multimodal::{positive, Before, Decision, Modulation};
use super::recipe::{value, values};
use crate::config::Experiment;
use crate::data::ExperimentData;
use crate::error::{Error, Result};

/// MultiFair's modulation and its running statistics.
pub struct MultiFair {
    settings: MultiFairSettings,
    attribute: String,
    n_groups: usize,
    balance: ModalityBalance,
    groups: GroupModulation,
}

/// The running statistics saved with each epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Statistics {
    balance: Vec<f64>,
    group_ema: Vec<Vec<f64>>,
}

impl Modulation for MultiFair {
    const NAME: &'static str = "multifair";

    fn validate(exp: &Experiment) -> std::result::Result<(), String> {
        let mf = &exp.multifair;
        if mf.mode == MultiFairMode::Faithful && exp.multimodal.fusion != vlm_backbone::Fusion::Transformer {
            return Err("multimodal.fusion: the faithful direction term aligns the transformer fusion's classifier; set multimodal.fusion = \"transformer\"".into());
        }
        mf.validate()
    }

    fn new(exp: &Experiment, data: &ExperimentData) -> Result<Self> {
        let mm = &exp.multimodal;
        let attribute = mm.attribute.clone();
        let n_groups = data.attribute_groups(&mm.attribute)?;
        let groups: GroupModulation = exp.multifair.group_modulation(2, n_groups)?;
        Ok(Self { settings: exp.multifair, attribute, n_groups, balance: ModalityBalance::new(2), groups })
    }

    fn before<B: AutodiffBackend>(&mut self, step: Before<'_, B>) -> Result<Decision<B>> {
        let mf = &self.settings;
        let label_bools: Vec<bool> = step.batch.labels.iter().map(|&l| l == 1).collect();
        let codes = &step.batch.attributes.column(&self.attribute)?.codes;
        // Modality level: the heads' AUCs on the batch update the balance.
        let aucs: Vec<Option<f64>> = step.unimodal.iter().map(|q| fair_metrics::roc_auc(&label_bools, q).ok().flatten()).collect();
        let b = self.balance.update(&aucs)?;
        // Group level: surrogate AUC of each head per group (0.5 where undefined), then the EMA.
        let mut surrogate = vec![vec![0.5; self.n_groups]; 2];
        for (i, q) in step.unimodal.iter().enumerate() {
            for (g, slot) in surrogate[i].iter_mut().enumerate() {
                let rows: Vec<usize> = (0..codes.len()).filter(|&r| codes[r] == g as i64).collect();
                let qs: Vec<f64> = rows.iter().map(|&r| q[r]).collect();
                let ls: Vec<bool> = rows.iter().map(|&r| label_bools[r]).collect();
                let t = Tensor::<B::InnerBackend, 1>::from_data(TensorData::new(qs, [rows.len()]), step.device);
                if let Some(s) = fair_losses::surrogate_auc(t, &ls)? {
                    *slot = value(&s);
                }
            }
        }
        self.groups.update(&surrogate)?;
        let fractions: Vec<f64> = (0..self.n_groups).map(|g| codes.iter().filter(|&&c| c == g as i64).count() as f64 / codes.len() as f64).collect();
        let group_factors = self.groups.factors(&fractions)?;
        let fused_q = positive(step.logits);
        let (_, triggered) = self.groups.trigger(&label_bools, &values(fused_q.clone().inner()), codes)?;
        let mut factors = [1.0f64; 2];
        for i in 0..2 {
            factors[i] = b[i] * mf.rho * if triggered { group_factors[i] } else { 1.0 };
        }
        let mut extra_terms = Vec::new();
        if mf.mode == MultiFairMode::Faithful {
            if let Some(w) = step.model.last_weight() {
                let head_w: Vec<Tensor<B, 2>> = step.heads.heads.iter().map(|h| h.out.weight.val()).collect();
                extra_terms.push(direction_loss(&b, w, &head_w)? * mf.lambda_gm);
            }
            if triggered {
                if let Some(gap) = fair_losses::surrogate_auc_gap(fused_q, &label_bools, codes, self.n_groups)? {
                    extra_terms.push(gap * mf.fairness_coeff);
                }
            }
        }
        Ok(Decision { extra_terms, factors, triggered })
    }

    fn after<B: AutodiffBackend>(&mut self, grads: &mut GradientsParams, encoders: [&ParamSet; 2], _epoch: usize, decision: &Decision<B>) -> Result<()> {
        for (set, f) in encoders.into_iter().zip(decision.factors) {
            scale::<B::InnerBackend>(grads, set, f)?;
        }
        Ok(())
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(Statistics { balance: self.balance.previous().to_vec(), group_ema: self.groups.ema().to_vec() }).unwrap_or_default()
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        let s: Statistics = serde_json::from_value(state.clone()).map_err(|e| Error::Invalid(format!("state.json: MultiFair's statistics: {e}")))?;
        self.balance.set_previous(&s.balance)?;
        Ok(self.groups.set_ema(s.group_ema)?)
    }
}
