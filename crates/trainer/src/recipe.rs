//! The methods' losses on one batch: `clip` and `fo-moe` (symmetric InfoNCE), `fairclip`
//! (InfoNCE plus λ · Σ_g Sinkhorn between the batch's similarity distribution and each
//! group's) and `fair-moe` (InfoNCE plus the Fairness-Oriented Loss: FairCLIP's distance and
//! the routing-variance terms of the four MoEs).

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use fair_data::{ClipBatch, Prepared, ATTRIBUTES};
use fair_losses::{clip_contrastive_loss, fairclip_regularizer, fol_term, official_similarities, FairClipVariant, FolForm, SinkhornConfig};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vlm_backbone::Clip;

use crate::config::{Experiment, FolFormConfig, Method, VariantConfig};
use crate::error::{Error, Result};

/// The loss of one step.
pub struct Losses<B: Backend> {
    /// What is differentiated.
    pub total: Tensor<B, 1>,
    /// The CLIP loss's value.
    pub clip: f64,
    /// The FairCLIP regulariser's value (before λ).
    pub fair: Option<f64>,
    /// The FOL terms' value (as added to the loss).
    pub fol: Option<f64>,
}

/// FairCLIP's endless, shuffled, per-group loaders over the training split: each group of the
/// chosen attribute yields batches of `group_batch_size` of its own samples, reshuffled at
/// every pass (a group smaller than a batch yields all its samples). Their position is part of
/// a checkpoint, so a resumed run draws the same group batches.
#[derive(Debug, Clone)]
pub struct GroupLoaders {
    seed: u64,
    batch: usize,
    groups: Vec<(i64, Vec<usize>)>,
    cursors: Vec<usize>,
}

impl GroupLoaders {
    /// Loaders for the experiment (none unless the method is `fairclip`).
    pub fn new(exp: &Experiment, train: &Prepared) -> Result<Self> {
        let mut groups: Vec<(i64, Vec<usize>)> = Vec::new();
        if exp.method.uses_group_batches() {
            let a = ATTRIBUTES.iter().position(|a| *a == exp.fairclip.attribute).ok_or_else(|| {
                Error::Invalid(format!("fairclip.attribute '{}' is not one of {}", exp.fairclip.attribute, ATTRIBUTES.join(", ")))
            })?;
            for (i, attrs) in train.attributes.iter().enumerate() {
                let code = attrs[a];
                if code < 0 {
                    continue; // FairCLIP's loaders use the known groups only
                }
                match groups.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, m)) => m.push(i),
                    None => groups.push((code, vec![i])),
                }
            }
            groups.sort_by_key(|(c, _)| *c);
            if groups.len() < 2 {
                return Err(Error::Invalid(format!("fairclip.attribute '{}' has fewer than 2 groups in the training split", exp.fairclip.attribute)));
            }
        }
        let cursors = vec![0; groups.len()];
        Ok(Self { seed: exp.seed, batch: exp.fairclip.group_batch_size, groups, cursors })
    }

    /// Whether the method uses group batches.
    pub fn is_active(&self) -> bool {
        !self.groups.is_empty()
    }

    /// The group codes.
    pub fn codes(&self) -> Vec<i64> {
        self.groups.iter().map(|(c, _)| *c).collect()
    }

    /// Batches drawn so far, per group.
    pub fn cursors(&self) -> Vec<usize> {
        self.cursors.clone()
    }

    /// Restores positions saved by [`GroupLoaders::cursors`].
    pub fn set_cursors(&mut self, cursors: &[usize]) {
        for (c, v) in self.cursors.iter_mut().zip(cursors) {
            *c = *v;
        }
    }

    /// The next batch of group `g` (row indices into the training split).
    pub fn next(&mut self, g: usize) -> Vec<usize> {
        let (code, members) = &self.groups[g];
        let size = self.batch.min(members.len());
        let per_pass = members.len() / size; // drop_last within a pass
        let k = self.cursors[g];
        self.cursors[g] += 1;
        let (pass, j) = (k / per_pass, k % per_pass);
        let mut order = members.clone();
        let seed = self.seed ^ (*code as u64).wrapping_mul(0xA24B_AED4_963E_E407) ^ (pass as u64).wrapping_mul(0x9FB2_1C65_1E98_DF25);
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        order[j * size..(j + 1) * size].to_vec()
    }
}

/// The first value of a tensor as f64 (NaN if it has none).
pub(crate) fn value<B: Backend>(t: &Tensor<B, 1>) -> f64 {
    t.clone().into_data().convert::<f64>().to_vec::<f64>().map_or(f64::NAN, |v| v.first().copied().unwrap_or(f64::NAN))
}

/// The routing weights of one forward pass, in FOL's order: image token MoE, text token
/// MoE, image feature MoE, text feature MoE (absent ones are `None`).
fn routings<B: Backend>(image: vlm_backbone::Routing<B>, text: vlm_backbone::Routing<B>) -> [Option<Tensor<B, 2>>; 4] {
    [image.token.into_iter().last(), text.token.into_iter().last(), image.feature, text.feature]
}

/// The method's loss on one batch. `groups` supplies the group batches from `train`.
pub fn loss<B: AutodiffBackend>(
    exp: &Experiment,
    model: &Clip<B>,
    batch: ClipBatch<B>,
    groups: &mut GroupLoaders,
    train: &Prepared,
    device: &B::Device,
) -> Result<Losses<B>> {
    let (image, image_routing) = model.encode_image_routed(batch.images);
    let (text, text_routing) = model.encode_text_routed(batch.tokens);
    let logits = image.clone().matmul(text.clone().transpose()) * model.scale();
    let clip = clip_contrastive_loss(logits.clone())?;
    let clip_value = value(&clip);
    if !exp.method.uses_group_batches() {
        return Ok(Losses { total: clip, clip: clip_value, fair: None, fol: None });
    }
    let f = &exp.fairclip;
    let variant = match f.variant {
        VariantConfig::Official => FairClipVariant::Official,
        VariantConfig::Aligned => FairClipVariant::Aligned,
    };
    let cfg = SinkhornConfig { blur: f.blur, scaling: f.scaling, debias: true, diameter: None };
    let batch_sims = match variant {
        FairClipVariant::Official => official_similarities(logits),
        FairClipVariant::Aligned => (image * text).sum_dim(1).flatten::<1>(0, 1),
    };
    let n_groups = groups.codes().len();
    let mut group_sims = Vec::with_capacity(n_groups);
    // Per FOL term, the routing weights of every group batch (without gradient, as the code).
    let mut group_routing: [Vec<Tensor<B, 2>>; 4] = Default::default();
    // The official code runs the group batches under no_grad; the paper's reading lets the
    // gradient through both sides.
    let frozen = (variant == FairClipVariant::Official).then(|| model.valid());
    for g in 0..n_groups {
        let idx = groups.next(g);
        let (sims, routing) = match &frozen {
            Some(m) => {
                let gb = train.batch::<B::InnerBackend>(&idx, device);
                let ((gi, ri), (gt, rt)) = (m.encode_image_routed(gb.images), m.encode_text_routed(gb.tokens));
                let sims = Tensor::<B, 1>::from_inner(official_similarities(gi.matmul(gt.transpose()) * m.scale()));
                (sims, routings(ri, rt).map(|r| r.map(Tensor::<B, 2>::from_inner)))
            }
            None => {
                let gb = train.batch::<B>(&idx, device);
                let ((gi, ri), (gt, rt)) = (model.encode_image_routed(gb.images), model.encode_text_routed(gb.tokens));
                ((gi * gt).sum_dim(1).flatten::<1>(0, 1), routings(ri, rt).map(|r| r.map(|t| t.detach())))
            }
        };
        group_sims.push(sims);
        for (slot, r) in group_routing.iter_mut().zip(routing) {
            slot.extend(r);
        }
    }
    let distance_on = exp.method == Method::Fairclip || exp.fol.distance;
    let (mut total, fair) = if distance_on {
        let reg = fairclip_regularizer(batch_sims, &group_sims, &cfg, variant)?;
        let v = value(&reg);
        (clip + reg * f.lambda, Some(v))
    } else {
        (clip, None)
    };
    let mut fol = None;
    if exp.method == Method::FairMoe {
        let form = match exp.fol.form {
            FolFormConfig::Code => FolForm::Code,
            FolFormConfig::Paper => FolForm::Paper,
        };
        let on = [exp.fol.image_token, exp.fol.text_token, exp.fol.image_feature, exp.fol.text_feature];
        let mut sum = 0.0;
        for ((batch_r, group_r), on) in routings(image_routing, text_routing).into_iter().zip(group_routing).zip(on) {
            if let (Some(r), true) = (batch_r, on) {
                let term = fol_term(r, &group_r, form, exp.fol.lambda_moe)?;
                sum += value(&term);
                total = total + term;
            }
        }
        fol = Some(sum);
    }
    Ok(Losses { total, clip: clip_value, fair, fol })
}
