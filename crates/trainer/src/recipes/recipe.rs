//! The [`Recipe`] trait: what a method gives the run loop, and what a step receives and
//! returns.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use fair_data::{ClipBatch, Prepared};

use crate::config::Experiment;
use crate::data::ExperimentData;
use crate::error::{Error, Result};
use crate::optim::Schedule;
use crate::parallel::Replica;

/// What one training step receives from the run loop.
pub struct StepInput<'a, B: AutodiffBackend> {
    /// The step's batch of the training split. With several replicas its tensors (images,
    /// tokens, OCT) hold this replica's shard of the rows ([`Replica::shard`]) and its labels
    /// and attributes are the whole batch's: a recipe [gathers](Replica::gather) its
    /// per-sample outputs and computes the whole batch's loss.
    pub batch: ClipBatch<B>,
    /// One batch per group of the attribute the recipe asked for ([`Recipe::group_batches`]),
    /// in the order of the group codes, sharded as `batch`; empty otherwise.
    pub groups: Vec<ClipBatch<B>>,
    /// This replica of a data-parallel run ([`Replica::single`] on one device): gathers
    /// outputs and averages gradients ([`Replica::mean`]) before the optimiser steps.
    pub replica: Replica,
    /// 1-based epoch.
    pub epoch: usize,
    /// 0-based index of this step in the whole run.
    pub step: usize,
    /// The learning rate schedule (`schedule.lr(step)` is this step's rate).
    pub schedule: &'a Schedule,
    /// The device.
    pub device: &'a B::Device,
}

/// What one step did, for the log.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepStats {
    /// The loss that was differentiated.
    pub loss: f64,
    /// Its task part (InfoNCE, or cross-entropy).
    pub task_loss: f64,
    /// FairCLIP's regulariser (before λ), where the method has one.
    pub fair_loss: Option<f64>,
    /// The FOL terms (as added to the loss), for Fair-MoE.
    pub fol_loss: Option<f64>,
    /// The factor applied to each encoder's gradients and whether MultiFair's group trigger
    /// fired, for the multimodal methods.
    pub modulation: Option<([f64; 2], bool)>,
    /// The method's mechanism on this step's group batches, by name, one value per group
    /// batch ([`StepInput::groups`]' order): FairCLIP's `sinkhorn` (each group's divergence
    /// from the batch, before λ) and FOL's `routing_gap.<moe>` (`V_g − V`, the group batch's
    /// mean routing variance minus the batch's). The loop averages them over the epoch into
    /// the log's `mechanism`, keyed `<name>.<group>`.
    pub by_group: Vec<(&'static str, Vec<f64>)>,
}

/// A split's scores under the current weights.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scores {
    /// The probability of the positive class, per sample.
    pub positive: Vec<f64>,
    /// The same from each modality's auxiliary head (multimodal methods).
    pub unimodal: Option<[Vec<f64>; 2]>,
}

/// A training method on the run loop.
pub trait Recipe<B: AutodiffBackend>: Sized + 'static {
    /// The method's name in logs and reports.
    fn name(&self) -> &'static str;

    /// The seeded model(s) and optimiser(s) of `exp` for `data`.
    fn new(exp: &Experiment, data: &ExperimentData, device: &B::Device) -> Result<Self>;

    /// The attribute whose groups must each give a batch every step, and that batch's size
    /// (FairCLIP's per-group loaders); `None` for most methods.
    fn group_batches(&self) -> Option<(&str, usize)> {
        None
    }

    /// Called before the first step of every (1-based) epoch, also after a resume.
    fn begin_epoch(&mut self, _epoch: usize, _device: &B::Device) {}

    /// Called after the last step of every epoch, before evaluation: figures of the method's
    /// mechanism over the whole epoch, by name, for the log's `mechanism` (the multimodal
    /// methods' `encoder_step.<modality>`); none by default.
    fn end_epoch(&mut self) -> Vec<(String, f64)> {
        Vec::new()
    }

    /// One training step.
    fn step(&mut self, input: StepInput<'_, B>) -> Result<StepStats>;

    /// Scores of every sample of `split`.
    fn predict(&self, split: &Prepared, device: &B::Device) -> Result<Scores>;

    /// Writes what a resume needs beyond the loop's own state after `epoch` (weights,
    /// optimiser moments as `state-<epoch>-*` records) and returns the rest as JSON for
    /// `state.json`.
    fn save_state(&self, out: &Path, epoch: usize) -> Result<serde_json::Value>;

    /// Restores what [`Recipe::save_state`] wrote.
    fn restore_state(&mut self, out: &Path, epoch: usize, state: &serde_json::Value, device: &B::Device) -> Result<()>;

    /// Writes the weights as `<out>/<name>.safetensors` (and any companion files).
    fn save_weights(&self, out: &Path, name: &str) -> Result<()>;

    /// Replaces the weights by those [`Recipe::save_weights`] wrote from a checkpoint file
    /// (`<out>/<name>.safetensors` or another path with the same model).
    fn load_weights(&mut self, checkpoint: &Path, device: &B::Device) -> Result<()>;
}

/// The first value of a tensor as f64 (NaN if it has none).
pub(crate) fn value<B: Backend>(t: &Tensor<B, 1>) -> f64 {
    t.clone().into_data().convert::<f64>().to_vec::<f64>().map_or(f64::NAN, |v| v.first().copied().unwrap_or(f64::NAN))
}

/// The values of a tensor as f64.
pub(crate) fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap_or_default()
}

/// Refuses a non-finite loss before it reaches the weights, naming the settings of this run
/// that can cause one; the run stops with its last good checkpoint (the previous epoch's).
pub(crate) fn check_finite(loss: f64, epoch: usize, step: usize, exp: &Experiment) -> Result<()> {
    if loss.is_finite() {
        return Ok(());
    }
    Err(Error::Diverged(format!(
        "epoch {epoch}, step {}: the loss is {loss}. The settings of this run that can cause it: {}. The last completed epoch's checkpoint is kept.",
        step + 1,
        likely_causes(exp).join("; ")
    )))
}

/// What can make this experiment's loss overflow, with the values it has.
pub(crate) fn likely_causes(exp: &Experiment) -> Vec<String> {
    use crate::config::Method;
    let o = &exp.optim;
    let mut causes = vec![format!("optim.lr = {} (too large a step; try a tenth)", o.lr)];
    if let Some(t) = o.text_lr {
        causes.push(format!("optim.text_lr = {t}"));
    }
    if o.warmup_steps == 0 {
        causes.push("optim.warmup_steps = 0 (no warm-up: the first steps of Adam are the largest)".into());
    }
    if o.eps < 1e-8 {
        causes.push(format!("optim.eps = {} (a tiny eps divides by near-zero second moments)", o.eps));
    }
    if o.weight_decay > 0.1 {
        causes.push(format!("optim.weight_decay = {}", o.weight_decay));
    }
    match exp.method {
        Method::Fairclip | Method::FairMoe => {
            causes.push(format!("fairclip.lambda = {} and fairclip.blur = {} (the Sinkhorn term)", exp.fairclip.lambda, exp.fairclip.blur));
            if exp.method == Method::FairMoe {
                causes.push(format!("fol.lambda_moe = {}", exp.fol.lambda_moe));
            }
        }
        Method::OgmGe => causes.push(format!("ogm.alpha = {}", exp.ogm.alpha)),
        Method::Multifair => causes.push(format!("multifair.lambda_gm = {} and multifair.fairness_coeff = {}", exp.multifair.lambda_gm, exp.multifair.fairness_coeff)),
        Method::Clip | Method::FoMoe | Method::LateFusion => {}
    }
    if exp.method.is_multimodal() {
        causes.push(format!("multimodal.head_lr = {}", exp.multimodal.head_lr));
        if exp.multimodal.grad_clip == 0.0 {
            causes.push("multimodal.grad_clip = 0 (no clipping)".into());
        }
    }
    causes
}
