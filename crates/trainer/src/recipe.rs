//! The methods' losses on one batch: `clip` (symmetric InfoNCE) and `fairclip` (InfoNCE plus
//! λ · Σ_g Sinkhorn between the batch's similarity distribution and each group's).

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use fair_data::{ClipBatch, Prepared, ATTRIBUTES};
use fair_losses::{clip_contrastive_loss, fairclip_regularizer, official_similarities, FairClipVariant, SinkhornConfig};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vlm_backbone::Clip;

use crate::config::{Experiment, Method, VariantConfig};
use crate::error::{Error, Result};

/// The loss of one step.
pub struct Losses<B: Backend> {
    /// What is differentiated.
    pub total: Tensor<B, 1>,
    /// The CLIP loss's value.
    pub clip: f64,
    /// The FairCLIP regulariser's value (before λ).
    pub fair: Option<f64>,
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
        if exp.method == Method::Fairclip {
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

fn value<B: Backend>(t: &Tensor<B, 1>) -> f64 {
    t.clone().into_data().convert::<f64>().to_vec::<f64>().map_or(f64::NAN, |v| v.first().copied().unwrap_or(f64::NAN))
}

/// The method's loss on one batch. `groups` supplies FairCLIP's group batches from `train`.
pub fn loss<B: AutodiffBackend>(
    exp: &Experiment,
    model: &Clip<B>,
    batch: ClipBatch<B>,
    groups: &mut GroupLoaders,
    train: &Prepared,
    device: &B::Device,
) -> Result<Losses<B>> {
    let image = model.encode_image(batch.images);
    let text = model.encode_text(batch.tokens);
    let logits = image.clone().matmul(text.clone().transpose()) * model.scale();
    let clip = clip_contrastive_loss(logits.clone())?;
    let clip_value = value(&clip);
    if exp.method == Method::Clip {
        return Ok(Losses { total: clip, clip: clip_value, fair: None });
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
    let mut group_sims = Vec::with_capacity(groups.codes().len());
    // The official code runs the group batches under no_grad; the paper's reading lets the
    // gradient through both sides.
    let frozen = (variant == FairClipVariant::Official).then(|| model.valid());
    for g in 0..groups.codes().len() {
        let idx = groups.next(g);
        let sims = match &frozen {
            Some(m) => {
                let gb = train.batch::<B::InnerBackend>(&idx, device);
                let (gi, gt) = (m.encode_image(gb.images), m.encode_text(gb.tokens));
                Tensor::<B, 1>::from_inner(official_similarities(gi.matmul(gt.transpose()) * m.scale()))
            }
            None => {
                let gb = train.batch::<B>(&idx, device);
                (model.encode_image(gb.images) * model.encode_text(gb.tokens)).sum_dim(1).flatten::<1>(0, 1)
            }
        };
        group_sims.push(sims);
    }
    let reg = fairclip_regularizer(batch_sims, &group_sims, &cfg, variant)?;
    let fair = value(&reg);
    Ok(Losses { total: clip + reg * f.lambda, clip: clip_value, fair: Some(fair) })
}
