//! CLIP fine-tuning, FairCLIP's "CLIP" rows (Radford et al. 2021; papers.md): the symmetric
//! InfoNCE loss over the batch's image-text logits,
//! `L = ½ (CE(logits, I) + CE(logitsᵀ, I))`, with the learnt logit scale.

use burn::tensor::backend::AutodiffBackend;
use fair_losses::clip_contrastive_loss;

use super::contrastive::{ContrastiveLoss, Forward, Losses};
use super::recipe::{value, StepInput};
use crate::config::Experiment;
use crate::error::Result;

/// The symmetric InfoNCE loss.
pub struct Clip;

impl ContrastiveLoss for Clip {
    const NAME: &'static str = "clip";

    fn new(_exp: &Experiment) -> Result<Self> {
        Ok(Clip)
    }

    fn loss<B: AutodiffBackend>(&self, model: &vlm_backbone::Clip<B>, input: &StepInput<'_, B>) -> Result<Losses<B>> {
        let f = Forward::of(model, input)?;
        let clip = clip_contrastive_loss(f.logits)?;
        let v = value(&clip);
        Ok(Losses { total: clip, clip: v, fair: None, fol: None, by_group: Vec::new() })
    }
}
