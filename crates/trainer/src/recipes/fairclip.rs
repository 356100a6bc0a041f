//! FairCLIP (Luo et al., CVPR 2024; papers.md 2): CLIP's InfoNCE plus
//! `λ · Σ_g Sinkhorn(D_B, D_{B_g})`, the Sinkhorn divergence between the distribution of the
//! batch's image-text similarities and that of a batch drawn from each group `g` of one
//! sensitive attribute (`[fairclip]`). Two readings (docs/methods.md):
//! - `official` (the released code, default): the similarities are the diagonal of the
//!   softmax-normalised logits, and the group batches pass through the model without gradient;
//! - `aligned` (the paper's text): the cosine similarities of matched pairs, with gradient on
//!   both sides.

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use fair_losses::{clip_contrastive_loss, fairclip_group_divergences, official_similarities, FairClipVariant, SinkhornConfig};
use vlm_backbone::Clip;

use super::contrastive::{routings, ContrastiveLoss, Forward, Losses};
use super::recipe::{value, StepInput};
use crate::config::{at_least, non_negative, positive, Experiment, FairClipConfig};
use crate::error::Result;

/// FairCLIP's loss.
pub struct FairClip {
    settings: FairClipConfig,
}

/// Checks `[fairclip]`.
pub(crate) fn validate_section(exp: &Experiment) -> std::result::Result<(), String> {
    let f = &exp.fairclip;
    exp.check_attribute("fairclip.attribute", &f.attribute)?;
    non_negative("fairclip.lambda", f.lambda)?;
    positive("fairclip.blur", f.blur)?;
    if !(f.scaling > 0.0 && f.scaling < 1.0) {
        return Err(format!("fairclip.scaling = {}: expected a value in (0, 1)", f.scaling));
    }
    at_least("fairclip.group_batch_size", f.group_batch_size, 2)
}

/// The similarities FairCLIP compares: the batch's, and one tensor per group batch, plus the
/// group batches' routing weights per FOL term (without gradient, as the code), which
/// Fair-MoE reads.
pub(crate) struct Similarities<B: Backend> {
    pub(crate) batch: Tensor<B, 1>,
    pub(crate) groups: Vec<Tensor<B, 1>>,
    pub(crate) group_routing: [Vec<Tensor<B, 2>>; 4],
}

impl FairClip {
    /// The Sinkhorn settings of the regulariser (geomloss's, debiased).
    fn sinkhorn(&self) -> SinkhornConfig {
        SinkhornConfig { blur: self.settings.blur, scaling: self.settings.scaling, debias: true, diameter: None }
    }

    /// The batch's similarities from its forward pass, then each group batch's.
    pub(crate) fn similarities<B: AutodiffBackend>(&self, model: &Clip<B>, f: &Forward<B>, input: &StepInput<'_, B>) -> Result<Similarities<B>> {
        let replica = &input.replica;
        let variant = self.settings.variant;
        let batch = match variant {
            FairClipVariant::Official => official_similarities(f.logits.clone()),
            FairClipVariant::Aligned => (f.image.clone() * f.text.clone()).sum_dim(1).flatten::<1>(0, 1),
        };
        let mut groups = Vec::with_capacity(input.groups.len());
        let mut group_routing: [Vec<Tensor<B, 2>>; 4] = Default::default();
        // The official code runs the group batches under no_grad; the paper's reading lets the
        // gradient through both sides.
        let frozen = (variant == FairClipVariant::Official).then(|| model.valid());
        for gb in &input.groups {
            let whole = gb.labels.len();
            let (sims, routing) = match &frozen {
                Some(m) => {
                    let ((gi, ri), (gt, rt)) = (m.encode_image_routed(gb.images.clone().inner()), m.encode_text_routed(gb.tokens.clone().inner()));
                    let (gi, gt) = (replica.gather_values(gi, whole)?, replica.gather_values(gt, whole)?);
                    let sims = Tensor::<B, 1>::from_inner(official_similarities(gi.matmul(gt.transpose()) * m.scale()));
                    (sims, routings(ri, rt).map(|r| r.map(|r| replica.gather_values(r, whole).map(Tensor::<B, 2>::from_inner))))
                }
                None => {
                    let ((gi, ri), (gt, rt)) = (model.encode_image_routed(gb.images.clone()), model.encode_text_routed(gb.tokens.clone()));
                    let (gi, gt) = (replica.gather(gi, whole)?, replica.gather(gt, whole)?);
                    ((gi * gt).sum_dim(1).flatten::<1>(0, 1), routings(ri, rt).map(|r| r.map(|t| replica.gather_values(t.detach(), whole))))
                }
            };
            groups.push(sims);
            for (slot, r) in group_routing.iter_mut().zip(routing) {
                slot.extend(r.transpose()?);
            }
        }
        Ok(Similarities { batch, groups, group_routing })
    }

    /// `(λ · regulariser, its value before λ, each group's divergence before λ)`.
    pub(crate) fn regularizer<B: AutodiffBackend>(&self, sims: Similarities<B>) -> Result<(Tensor<B, 1>, f64, Vec<f64>)> {
        let terms = fairclip_group_divergences(sims.batch, &sims.groups, &self.sinkhorn(), self.settings.variant)?;
        let by_group: Vec<f64> = terms.iter().map(value).collect();
        let reg = terms.into_iter().reduce(|total, d| total + d).ok_or_else(|| crate::error::Error::Invalid("FairCLIP needs group batches".into()))?;
        Ok((reg * self.settings.lambda, by_group.iter().sum(), by_group))
    }
}

impl ContrastiveLoss for FairClip {
    const NAME: &'static str = "fairclip";

    fn validate(exp: &Experiment) -> std::result::Result<(), String> {
        validate_section(exp)
    }

    fn new(exp: &Experiment) -> Result<Self> {
        Ok(Self { settings: exp.fairclip.clone() })
    }

    fn group_batches(&self) -> Option<(&str, usize)> {
        Some((&self.settings.attribute, self.settings.group_batch_size))
    }

    fn loss<B: AutodiffBackend>(&self, model: &Clip<B>, input: &StepInput<'_, B>) -> Result<Losses<B>> {
        let f = Forward::of(model, input)?;
        let clip = clip_contrastive_loss(f.logits.clone())?;
        let clip_value = value(&clip);
        let sims = self.similarities(model, &f, input)?;
        let (reg, fair, by_group) = self.regularizer(sims)?;
        Ok(Losses { total: clip + reg, clip: clip_value, fair: Some(fair), fol: None, by_group: vec![("sinkhorn", by_group)] })
    }
}
