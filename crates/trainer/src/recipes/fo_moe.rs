//! FO-MoE without FOL, the Fair-MoE paper's "w/o FOL" ablation (papers.md 3): the CLIP model
//! with the fairness-oriented mixtures of experts of `[moe]` (a token-level MoE with expert
//! capacity in each tower's last block, a feature-level MoE after each projection, one
//! feature expert per group of `fairclip.attribute`), trained with CLIP's InfoNCE only.

use burn::tensor::backend::AutodiffBackend;

use super::contrastive::{ContrastiveLoss, Losses};
use super::recipe::StepInput;
use crate::config::Experiment;
use crate::error::Result;

/// CLIP's loss on the FO-MoE model.
pub struct FoMoe;

impl ContrastiveLoss for FoMoe {
    const NAME: &'static str = "fo-moe";
    const MOE: bool = true;

    fn validate(exp: &Experiment) -> std::result::Result<(), String> {
        exp.check_attribute("fairclip.attribute", &exp.fairclip.attribute)?;
        exp.moe.validate(exp.attribute_groups(&exp.fairclip.attribute).unwrap_or(usize::MAX), &exp.fairclip.attribute)
    }

    fn new(_exp: &Experiment) -> Result<Self> {
        Ok(FoMoe)
    }

    fn loss<B: AutodiffBackend>(&self, model: &vlm_backbone::Clip<B>, input: &StepInput<'_, B>) -> Result<Losses<B>> {
        super::clip::Clip.loss(model, input)
    }
}
