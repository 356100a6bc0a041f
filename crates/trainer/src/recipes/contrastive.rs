//! What the CLIP-family methods share: the dual encoder and its optimiser, the step around a
//! method's loss (with the text tower's own learning rate, `optim.text_lr`), zero-shot
//! prediction with the two prompts, and the resumable state. A method supplies only its loss
//! ([`ContrastiveLoss`]).

use std::marker::PhantomData;
use std::path::Path;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use fair_data::{ClipBatch, Prepared};
use vlm_backbone::{Clip, Routing};

use super::recipe::{check_finite, value, values, Recipe, Scores, StepInput, StepStats};
use crate::checkpoint::{load_record, load_safetensors, save_record, save_safetensors, state_file};
use crate::config::Experiment;
use crate::data::ExperimentData;
use crate::error::Result;
use crate::optim::{LossScaler, Optim};
use crate::parallel::Replica;
use crate::towers::init_clip;

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
    /// The mechanism's per-group values ([`StepStats::by_group`]).
    pub by_group: Vec<(&'static str, Vec<f64>)>,
}

/// A CLIP-family method: its loss on one step's batches.
pub trait ContrastiveLoss: Sized + 'static {
    /// The method's name.
    const NAME: &'static str;
    /// Whether the model carries FO-MoE layers (`[moe]`).
    const MOE: bool = false;

    /// Checks the sections the method reads.
    fn validate(_exp: &Experiment) -> std::result::Result<(), String> {
        Ok(())
    }

    /// The loss of `exp`.
    fn new(exp: &Experiment) -> Result<Self>;

    /// The attribute whose groups each need a batch every step, and its batch size.
    fn group_batches(&self) -> Option<(&str, usize)> {
        None
    }

    /// The loss of one step.
    fn loss<B: AutodiffBackend>(&self, model: &Clip<B>, input: &StepInput<'_, B>) -> Result<Losses<B>>;
}

/// One forward pass of the dual encoder on a step's batch: the joint embeddings, the scaled
/// image-text logits, and the routing weights of every MoE in FOL's order (image token MoE,
/// text token MoE, image feature MoE, text feature MoE; absent ones are `None`). With several
/// replicas, each encodes its shard and these are the whole batch's ([`Replica::gather`]).
pub struct Forward<B: Backend> {
    /// Image embeddings `[n, d]`.
    pub image: Tensor<B, 2>,
    /// Text embeddings `[n, d]`.
    pub text: Tensor<B, 2>,
    /// `scale · image · textᵀ`.
    pub logits: Tensor<B, 2>,
    /// Routing weights.
    pub routing: [Option<Tensor<B, 2>>; 4],
}

impl<B: AutodiffBackend> Forward<B> {
    /// The forward pass of `model` on the step's batch.
    pub fn of(model: &Clip<B>, input: &StepInput<'_, B>) -> Result<Self> {
        Self::on(model, &input.batch, &input.replica)
    }

    /// The forward pass of `model` on `batch` (a replica's shard of a whole batch of
    /// `batch.labels.len()` samples).
    pub fn on(model: &Clip<B>, batch: &ClipBatch<B>, replica: &Replica) -> Result<Self> {
        let whole = batch.labels.len();
        let (image, image_routing) = model.encode_image_routed(batch.images.clone());
        let (text, text_routing) = model.encode_text_routed(batch.tokens.clone());
        let (image, text) = (replica.gather(image, whole)?, replica.gather(text, whole)?);
        let logits = image.clone().matmul(text.clone().transpose()) * model.scale();
        let routing = routings(image_routing, text_routing).map(|r| r.map(|r| replica.gather(r, whole)));
        let [a, b, c, d] = routing;
        Ok(Self { image, text, logits, routing: [a.transpose()?, b.transpose()?, c.transpose()?, d.transpose()?] })
    }
}

/// The routing weights of one forward pass, in FOL's order.
pub(crate) fn routings<B: Backend>(image: Routing<B>, text: Routing<B>) -> [Option<Tensor<B, 2>>; 4] {
    [image.token.into_iter().last(), text.token.into_iter().last(), image.feature, text.feature]
}

/// A CLIP-family recipe: the dual encoder trained with loss `L`.
pub struct Contrastive<B: AutodiffBackend, L: ContrastiveLoss> {
    exp: Experiment,
    model: Clip<B>,
    optim: Optim<B, Clip<B>>,
    scaler: LossScaler,
    loss: L,
    prompt_tokens: Vec<i64>,
    _backend: PhantomData<B>,
}

impl<B: AutodiffBackend, L: ContrastiveLoss> Contrastive<B, L> {
    /// The model.
    pub fn model(&self) -> &Clip<B> {
        &self.model
    }
}

impl<B: AutodiffBackend, L: ContrastiveLoss> Recipe<B> for Contrastive<B, L> {
    fn name(&self) -> &'static str {
        L::NAME
    }

    fn new(exp: &Experiment, data: &ExperimentData, device: &B::Device) -> Result<Self> {
        let optim = Optim::new(&exp.optim);
        let model = init_clip(exp, data, L::MOE, device)?;
        let scaler = LossScaler::new(exp.optim.precision);
        Ok(Self { exp: exp.clone(), model, optim, scaler, loss: L::new(exp)?, prompt_tokens: data.prompt_tokens.clone(), _backend: PhantomData })
    }

    fn group_batches(&self) -> Option<(&str, usize)> {
        self.loss.group_batches()
    }

    fn step(&mut self, input: StepInput<'_, B>) -> Result<StepStats> {
        let losses = self.loss.loss(&self.model, &input)?;
        let total = value(&losses.total);
        check_finite(total, input.epoch, input.step, &self.exp)?;
        let lr = input.schedule.lr(input.step);
        let stats = StepStats { loss: total, task_loss: losses.clip, fair_loss: losses.fair, fol_loss: losses.fol, modulation: None, by_group: losses.by_group };
        let mut grads = self.scaler.scaled(losses.total).backward();
        let model = self.model.clone();
        let mut text = match self.exp.optim.text_lr {
            Some(_) => Some(input.replica.mean(GradientsParams::from_module(&mut grads, &model.text_model), &model.text_model)?),
            None => None,
        };
        let mut rest = input.replica.mean(GradientsParams::from_grads(grads, &model), &model)?;
        let finite = text.as_mut().is_none_or(|t| self.scaler.unscale(t, &model.text_model)) & self.scaler.unscale(&mut rest, &model);
        self.scaler.update(finite);
        if !finite {
            return Ok(stats);
        }
        let model = match (self.exp.optim.text_lr, text) {
            // Two steps of the same optimiser over disjoint parameter sets: its moments are kept
            // per parameter, so this is one step with two learning rates.
            (Some(text_lr), Some(text)) => self.optim.step(input.schedule.scaled(input.step, text_lr), model, text),
            _ => model,
        };
        self.model = self.optim.step(lr, model, rest);
        Ok(stats)
    }

    fn predict(&self, split: &Prepared, device: &B::Device) -> Result<Scores> {
        Ok(Scores { positive: zero_shot(&self.model.valid(), split, &self.prompt_tokens, self.exp.eval.batch_size, device)?, unimodal: None })
    }

    fn save_state(&self, out: &Path, epoch: usize) -> Result<serde_json::Value> {
        save_record::<B, _>(self.model.clone().into_record(), &state_file(out, epoch, "model"))?;
        self.optim.save(&state_file(out, epoch, "optim"))?;
        self.scaler.save(out, epoch)?;
        Ok(serde_json::Value::Null)
    }

    fn restore_state(&mut self, out: &Path, epoch: usize, _state: &serde_json::Value, device: &B::Device) -> Result<()> {
        let record = load_record::<B, _>(&state_file(out, epoch, "model"), device)?;
        self.model = self.model.clone().load_record(record);
        self.scaler.load(out, epoch)?;
        self.optim.load(&state_file(out, epoch, "optim"), device)
    }

    fn save_weights(&self, out: &Path, name: &str) -> Result<()> {
        save_safetensors(&self.model, &out.join(format!("{name}.safetensors")))
    }

    fn load_weights(&mut self, checkpoint: &Path, _device: &B::Device) -> Result<()> {
        self.model = load_safetensors(self.model.clone(), checkpoint)?;
        Ok(())
    }
}

/// FairCLIP's zero-shot glaucoma probabilities of every sample of `data`, in order: the
/// softmax over the similarities to the two prompts' embeddings.
pub fn zero_shot<B: Backend>(model: &Clip<B>, data: &Prepared, prompt_tokens: &[i64], batch_size: usize, device: &B::Device) -> Result<Vec<f64>> {
    let context = prompt_tokens.len() / 2;
    let prompts = Tensor::<B, 2, Int>::from_data(TensorData::new(prompt_tokens.to_vec(), [2, context]), device);
    let text = model.encode_text(prompts);
    let mut out = Vec::with_capacity(data.len());
    let mut batches = data.in_order(batch_size);
    while let Some(batch) = batches.next_batch::<B>(device) {
        let batch = batch?;
        let image = model.encode_image(batch.images);
        let p = burn::tensor::activation::softmax(image.matmul(text.clone().transpose()), 1).narrow(1, 1, 1);
        out.extend(values(p));
    }
    Ok(out)
}
