//! Fair-MoE (papers.md 3): the FO-MoE model (`[moe]`, see [`super::fo_moe`]) trained with the
//! Fairness-Oriented Loss (`[fol]`): CLIP's InfoNCE, FairCLIP's Sinkhorn distance term
//! (`fol.distance`, weighted by `fairclip.lambda`, on `[fairclip]`'s group batches), and one
//! routing-variance term per MoE, `F_EI`, `F_ET`, `F_FI`, `F_FT`, comparing the batch's
//! routing weights with each group batch's, in the code's form (`λ_moe`, default) or the
//! paper's (`fol.form`). Each term can be switched off for the ablation.

use burn::tensor::backend::AutodiffBackend;
use fair_losses::{clip_contrastive_loss, fol_term, routing_variance};
use vlm_backbone::Clip;

use super::contrastive::{ContrastiveLoss, Forward, Losses};
use super::fairclip::{self, FairClip};
use super::recipe::{value, StepInput};
use crate::config::{non_negative, Experiment, FolConfig};
use crate::error::Result;

/// The Fairness-Oriented Loss on the FO-MoE model.
pub struct FairMoe {
    fairclip: FairClip,
    fol: FolConfig,
}

impl ContrastiveLoss for FairMoe {
    const NAME: &'static str = "fair-moe";
    const MOE: bool = true;

    fn validate(exp: &Experiment) -> std::result::Result<(), String> {
        fairclip::validate_section(exp)?;
        exp.moe.validate(exp.attribute_groups(&exp.fairclip.attribute).unwrap_or(usize::MAX), &exp.fairclip.attribute)?;
        non_negative("fol.lambda_moe", exp.fol.lambda_moe)
    }

    fn new(exp: &Experiment) -> Result<Self> {
        Ok(Self { fairclip: FairClip::new(exp)?, fol: exp.fol.clone() })
    }

    fn group_batches(&self) -> Option<(&str, usize)> {
        self.fairclip.group_batches()
    }

    fn loss<B: AutodiffBackend>(&self, model: &Clip<B>, input: &StepInput<'_, B>) -> Result<Losses<B>> {
        let f = Forward::of(model, input)?;
        let clip = clip_contrastive_loss(f.logits.clone())?;
        let clip_value = value(&clip);
        let mut sims = self.fairclip.similarities(model, &f, input)?;
        let group_routing = std::mem::take(&mut sims.group_routing);
        let mut by_group = Vec::new();
        let (mut total, fair) = if self.fol.distance {
            let (reg, v, groups) = self.fairclip.regularizer(sims)?;
            by_group.push(("sinkhorn", groups));
            (clip + reg, Some(v))
        } else {
            (clip, None)
        };
        let fol = &self.fol;
        let on = [fol.image_token, fol.text_token, fol.image_feature, fol.text_feature];
        let mut sum = 0.0;
        for (((batch_r, group_r), on), name) in f.routing.into_iter().zip(group_routing).zip(on).zip(ROUTING_GAPS) {
            let Some(r) = batch_r else { continue };
            by_group.push((name, routing_gaps(&r, &group_r)?));
            if on {
                let term = fol_term(r, &group_r, fol.form, fol.lambda_moe)?;
                sum += value(&term);
                total = total + term;
            }
        }
        Ok(Losses { total, clip: clip_value, fair, fol: Some(sum), by_group })
    }
}

/// The mechanism's names of the FOL terms' statistics, in FOL's order of the MoEs.
const ROUTING_GAPS: [&str; 4] = ["routing_gap.image_token", "routing_gap.text_token", "routing_gap.image_feature", "routing_gap.text_feature"];

/// `V_g − V` per group batch: its mean routing variance over the experts minus the batch's,
/// the difference FOL's terms penalise (and, in the code's form, the batch's `V` it raises).
fn routing_gaps<B: burn::prelude::Backend>(batch: &burn::prelude::Tensor<B, 2>, groups: &[burn::prelude::Tensor<B, 2>]) -> Result<Vec<f64>> {
    let v = value(&routing_variance(batch.clone())?.mean());
    groups.iter().map(|g| Ok(value(&routing_variance(g.clone())?.mean()) - v)).collect()
}
