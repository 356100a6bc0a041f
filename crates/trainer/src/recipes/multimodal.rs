//! What the multimodal methods share (papers.md 4.2): MultiFair's classifier on the fundus
//! image and the note (or the OCT volume), its auxiliary unimodal heads trained on detached
//! features with their own AdamW, the cross-entropy step with global-norm clipping, and the
//! resumable state. A method supplies its gradient modulation ([`Modulation`]): what it adds
//! to the loss and how it scales each encoder's gradients.

use std::path::Path;

use burn::module::{AutodiffModule, Module};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::backend::AutodiffBackend;
use fair_data::{ClipBatch, Prepared};
use gradmod::{clip_global_norm, ParamSet};
use vlm_backbone::{AuxiliaryHeads, MultimodalClassifier, SecondInput};

use super::recipe::{check_finite, value, values, Recipe, Scores, StepInput, StepStats};
use crate::checkpoint::{init_lock, load_record, load_safetensors, materialized, reseed, save_record, save_safetensors, seeded, state_file, DrawBackend};
use crate::config::{at_least, Experiment, MultimodalConfig, PairingConfig};
use crate::data::ExperimentData;
use crate::error::{Error, Result};
use crate::optim::{LossScaler, Optim};
use crate::towers::{load_towers, with_tokenizer_ids};

/// What a modulation sees of a step before the backward pass.
pub struct Before<'a, B: AutodiffBackend> {
    /// The classifier (the weights of this step).
    pub model: &'a MultimodalClassifier<B>,
    /// The auxiliary heads, already updated on this batch.
    pub heads: &'a AuxiliaryHeads<B>,
    /// The step's batch.
    pub batch: &'a ClipBatch<B>,
    /// The two encoders' projected features.
    pub features: [Tensor<B, 2>; 2],
    /// The fused logits.
    pub logits: Tensor<B, 2>,
    /// The labels as a tensor.
    pub labels: Tensor<B, 1, Int>,
    /// Each auxiliary head's positive-class probabilities on the batch.
    pub unimodal: &'a [Vec<f64>],
    /// 1-based epoch.
    pub epoch: usize,
    /// The device.
    pub device: &'a B::Device,
}

/// What a modulation decided before the backward pass.
pub struct Decision<B: AutodiffBackend> {
    /// Terms added to the cross-entropy, one after the other.
    pub extra_terms: Vec<Tensor<B, 1>>,
    /// The factor for each encoder's gradients (for the log; 1 = none).
    pub factors: [f64; 2],
    /// Whether MultiFair's group trigger fired.
    pub triggered: bool,
}

/// A multimodal method's gradient modulation.
pub trait Modulation: Sized + 'static {
    /// The method's name.
    const NAME: &'static str;

    /// Checks the sections the method reads beyond `[multimodal]`.
    fn validate(_exp: &Experiment) -> std::result::Result<(), String> {
        Ok(())
    }

    /// The modulation of `exp`.
    fn new(exp: &Experiment, data: &ExperimentData) -> Result<Self>;

    /// The parameters of one encoder that the modulation acts on (all of them by default).
    fn encoder_set(&self, set: ParamSet) -> ParamSet {
        set
    }

    /// Before the backward pass: extra loss terms and the factors.
    fn before<B: AutodiffBackend>(&mut self, step: Before<'_, B>) -> Result<Decision<B>>;

    /// After the backward pass, before clipping: modulates the encoders' gradients.
    fn after<B: AutodiffBackend>(&mut self, grads: &mut GradientsParams, encoders: [&ParamSet; 2], epoch: usize, decision: &Decision<B>) -> Result<()>;

    /// Running statistics kept across steps, for `state.json`.
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Restores [`Modulation::state`].
    fn restore(&mut self, _state: &serde_json::Value) -> Result<()> {
        Ok(())
    }
}

/// Checks `[multimodal]` and the method's own sections.
pub fn validate<M: Modulation>(exp: &Experiment) -> std::result::Result<(), String> {
    let mm = &exp.multimodal;
    if exp.optim.text_lr.is_some() {
        return Err("optim.text_lr: the multimodal methods have one learning rate for the encoders (optim.lr)".into());
    }
    let oct = mm.pairing == PairingConfig::Oct;
    if oct && exp.data.source == crate::config::DataSource::Fairvlmed {
        return Err("data.source = \"fairvlmed\": multimodal.pairing = \"oct\" needs OCT volumes (source fairvision or synthetic)".into());
    }
    exp.data.oct.validate().map_err(|e| format!("data.{e}"))?;
    exp.check_attribute("multimodal.attribute", &mm.attribute)?;
    at_least("multimodal.proj_dim", mm.proj_dim, 1)?;
    at_least("multimodal.oct_slices", mm.oct_slices, 1)?;
    at_least("multimodal.oct_layers", mm.oct_layers, 1)?;
    if oct && (exp.model.text.weights.is_some() || exp.model.text.tokenizer.is_some()) {
        return Err("model.text: the OCT pairing has no text encoder; remove model.text.weights / tokenizer".into());
    }
    // With a vision checkpoint, `classifier_config` checks these against its tower.
    if exp.model.vision.weights.is_none() {
        let v = exp.model.preset_vision();
        if mm.oct_heads == 0 || v.width % mm.oct_heads != 0 {
            return Err(format!("multimodal.oct_heads = {}: must divide the image tower's width", mm.oct_heads));
        }
        if v.patch_size == 0 || mm.oct_size % v.patch_size != 0 {
            return Err(format!("multimodal.oct_size = {}: must be a multiple of model.patch_size = {}", mm.oct_size, v.patch_size));
        }
    }
    at_least("multimodal.fusion_layers", mm.fusion_layers, 1)?;
    if mm.fusion_heads == 0 || mm.proj_dim % mm.fusion_heads != 0 {
        return Err(format!("multimodal.fusion_heads = {}: must divide multimodal.proj_dim = {}", mm.fusion_heads, mm.proj_dim));
    }
    if !(0.0..1.0).contains(&mm.dropout) {
        return Err(format!("multimodal.dropout = {}: expected a value in [0, 1)", mm.dropout));
    }
    crate::config::positive("multimodal.head_lr", mm.head_lr)?;
    if !(mm.head_weight_decay >= 0.0 && mm.grad_clip >= 0.0 && mm.grad_clip.is_finite()) {
        return Err(format!("multimodal.head_weight_decay = {}, multimodal.grad_clip = {}: expected numbers >= 0", mm.head_weight_decay, mm.grad_clip));
    }
    if exp.optim.optimizer == crate::config::OptimizerKind::Adam {
        return Err("optim.optimizer: the multimodal methods train with AdamW, as MultiFair, or SGD with momentum, as OGM-GE; set optim.optimizer = \"adamw\" or \"sgd\"".into());
    }
    M::validate(exp)
}

/// `‖now − start‖ / ‖start‖` (0 for an all-zero start).
fn relative_change(start: &[f32], now: &[f32]) -> f64 {
    let (mut moved, mut norm) = (0.0f64, 0.0f64);
    for (&a, &b) in start.iter().zip(now) {
        moved += (f64::from(b) - f64::from(a)).powi(2);
        norm += f64::from(a).powi(2);
    }
    if norm > 0.0 {
        (moved / norm).sqrt()
    } else {
        0.0
    }
}

/// Every float parameter of a module, flattened in visiting order.
struct Flatten(Vec<f32>);

impl<B: Backend> burn::module::ModuleVisitor<B> for Flatten {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
        self.0.extend(param.val().into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default());
    }
}

/// MultiFair's classifier for a vocabulary and context length: the `[model]` image tower for
/// the fundus, its text tower made bidirectional with `[CLS]` pooling (BERT's), or the fundus
/// tower's architecture at the OCT slice size, and the `[multimodal]` fusion.
pub fn classifier_config(exp: &Experiment, vocab_size: usize, context_length: usize) -> std::result::Result<vlm_backbone::MultimodalClassifierConfig, String> {
    use vlm_backbone::{MultimodalClassifierConfig, Pooling, SecondModality};
    let clip = exp.model.clip_config(vocab_size, context_length)?;
    let m: &MultimodalConfig = &exp.multimodal;
    let second = match m.pairing {
        PairingConfig::Text => SecondModality::Text(clip.text.with_causal(false).with_pooling(Pooling::Cls)),
        PairingConfig::Oct => {
            let v = &clip.vision;
            if m.oct_heads == 0 || v.width % m.oct_heads != 0 || m.oct_size % v.patch_size != 0 {
                return Err(format!(
                    "multimodal.oct_heads = {} / oct_size = {}: the heads must divide the image tower's width {} and the size be a multiple of its patch {}",
                    m.oct_heads, m.oct_size, v.width, v.patch_size
                ));
            }
            let mut vit = v.clone();
            vit.image_size = m.oct_size;
            SecondModality::Oct { vit: vit.with_pooler(false), slices: m.oct_slices, layers: m.oct_layers, heads: m.oct_heads }
        }
    };
    Ok(MultimodalClassifierConfig::new(clip.vision, second, m.proj_dim)
        .with_fusion(m.fusion)
        .with_fusion_layers(m.fusion_layers)
        .with_fusion_heads(m.fusion_heads)
        .with_dropout(m.dropout))
}

/// The glaucoma probability `softmax(logits)[:, 1]`.
pub(crate) fn positive<B: Backend>(logits: Tensor<B, 2>) -> Tensor<B, 1> {
    let n = logits.dims()[0];
    softmax(logits, 1).narrow(1, 1, 1).reshape([n])
}

/// The batch's second modality: the OCT slices when the data has them, else the notes.
fn second_input<B: Backend>(tokens: Tensor<B, 2, Int>, oct: Option<Tensor<B, 4>>) -> SecondInput<B> {
    match oct {
        Some(v) => SecondInput::Oct(v),
        None => SecondInput::Text(tokens),
    }
}

/// A multimodal recipe: the classifier, the auxiliary heads, both optimisers and the
/// modulation `M`.
pub struct Multimodal<B: AutodiffBackend, M: Modulation> {
    exp: Experiment,
    model: MultimodalClassifier<B>,
    heads: AuxiliaryHeads<B>,
    optim: Optim<B, MultimodalClassifier<B>>,
    head_optim: Optim<B, AuxiliaryHeads<B>>,
    scaler: LossScaler,
    encoders: [ParamSet; 2],
    all: ParamSet,
    modulation: M,
    /// Each encoder's parameters at the start of the epoch, for its effective step.
    epoch_start: [Vec<f32>; 2],
}

impl<B: AutodiffBackend, M: Modulation> Multimodal<B, M> {
    /// The classifier.
    pub fn model(&self) -> &MultimodalClassifier<B> {
        &self.model
    }

    /// Both encoders' parameters, flattened (fundus, then the text or OCT encoder).
    fn encoder_values(&self) -> [Vec<f32>; 2] {
        let (mut fundus, mut second) = (Flatten(Vec::new()), Flatten(Vec::new()));
        self.model.fundus_encoder.visit(&mut fundus);
        self.model.text_encoder.visit(&mut second);
        self.model.oct_encoder.visit(&mut second);
        [fundus.0, second.0]
    }

    /// The parameters the modulation acts on (the fundus encoder and the text or OCT encoder;
    /// projections, fusion and classifier are not modulated), and all of them for clipping.
    /// Parameter ids change when a record is loaded, so the sets are rebuilt then.
    fn param_sets(&mut self) -> Result<()> {
        let second = match (&self.model.text_encoder, &self.model.oct_encoder) {
            (Some(t), _) => ParamSet::of(t),
            (_, Some(o)) => ParamSet::of(o),
            _ => return Err(Error::Invalid("the multimodal classifier has no second encoder".into())),
        };
        self.encoders = [ParamSet::of(&self.model.fundus_encoder), second].map(|s| self.modulation.encoder_set(s));
        self.all = ParamSet::of(&self.model);
        Ok(())
    }
}

/// The classifier (pretrained fundus and note encoders, MultiFair's ViT and BERT; the OCT slice
/// encoder, at its own image size, starts from scratch) and the auxiliary heads, materialised.
fn build<B: Backend>(exp: &Experiment, data: &ExperimentData, device: &B::Device) -> Result<(MultimodalClassifier<B>, AuxiliaryHeads<B>)> {
    let mm = &exp.multimodal;
    let mut cfg = classifier_config(exp, data.tokenizer.vocab_size(), data.tokenizer.context_length()).map_err(Error::Invalid)?;
    if let vlm_backbone::SecondModality::Text(text) = &mut cfg.second {
        with_tokenizer_ids(text, &data.tokenizer);
    }
    let model: MultimodalClassifier<B> = cfg.init(device);
    let (fundus_encoder, text_encoder) = load_towers(exp, model.fundus_encoder, model.text_encoder)?;
    let model = materialized(MultimodalClassifier { fundus_encoder, text_encoder, ..model });
    Ok((model, materialized(AuxiliaryHeads::new(mm.proj_dim, 2, mm.dropout, device))))
}

impl<B: AutodiffBackend, M: Modulation> Recipe<B> for Multimodal<B, M> {
    fn name(&self) -> &'static str {
        M::NAME
    }

    fn new(exp: &Experiment, data: &ExperimentData, device: &B::Device) -> Result<Self> {
        let mm = &exp.multimodal;
        let (model, heads) = seeded(device, exp.seed, |d| build::<B>(exp, data, d), |d| build::<DrawBackend>(exp, data, d))?;
        let mut recipe = Self {
            exp: exp.clone(),
            model,
            heads,
            optim: Optim::new(&exp.optim),
            head_optim: Optim::adamw(Some(1e-8), mm.head_weight_decay),
            scaler: LossScaler::new(exp.optim.precision),
            encoders: [ParamSet::default(), ParamSet::default()],
            all: ParamSet::default(),
            modulation: M::new(exp, data)?,
            epoch_start: Default::default(),
        };
        recipe.param_sets()?;
        Ok(recipe)
    }

    /// Dropout and GE noise draw from burn's global generator; a generator seeded by (seed,
    /// epoch) makes each epoch's draws the same after a resume.
    fn begin_epoch(&mut self, epoch: usize, device: &B::Device) {
        reseed::<B>(device, self.exp.seed.wrapping_mul(0x2545_F491_4F6C_DD1D).wrapping_add(epoch as u64));
        self.epoch_start = self.encoder_values();
    }

    /// What the modulation is meant to change: how far each encoder moved this epoch,
    /// relative to where it started. (Under Adam a gradient factor largely cancels in the
    /// update; this measures the step the optimiser actually took.)
    fn end_epoch(&mut self) -> Vec<(String, f64)> {
        let now = self.encoder_values();
        let names = ["fundus", if self.model.oct_encoder.is_some() { "oct" } else { "text" }];
        names
            .iter()
            .zip(now.iter().zip(&self.epoch_start))
            .filter(|(_, (now, start))| !start.is_empty() && now.len() == start.len())
            .map(|(name, (now, start))| (format!("encoder_step.{name}"), relative_change(start, now)))
            .collect()
    }

    fn step(&mut self, input: StepInput<'_, B>) -> Result<StepStats> {
        let mm = &self.exp.multimodal;
        let device = input.device;
        // Clones share the weights; the optimiser steps below replace them.
        let model = self.model.clone();
        let ce = CrossEntropyLossConfig::new().init(device);
        let batch = &input.batch;
        let labels_vec: Vec<i64> = batch.labels.iter().map(|&l| l as i64).collect();
        let labels = Tensor::<B, 1, Int>::from_ints(labels_vec.as_slice(), device);

        let outputs = model.forward(batch.images.clone(), second_input(batch.tokens.clone(), batch.oct.clone()));
        // With several replicas: the whole batch's features and logits (each replica's own
        // rows carry its gradient), so the losses and the modulation's statistics are the
        // whole batch's.
        let (replica, whole) = (&input.replica, batch.labels.len());
        let [f0, f1] = outputs.features.clone();
        let (f0, f1, fused) = (replica.gather(f0, whole)?, replica.gather(f1, whole)?, replica.gather(outputs.logits, whole)?);
        // Auxiliary heads on detached features, with their own optimiser. (The code runs a
        // second, gradient-free forward for them; the training forward's features are the
        // same function of the weights, with other dropout draws.)
        let aux = self.heads.forward([f0.clone().detach(), f1.clone().detach()]);
        let unimodal: Vec<Vec<f64>> = aux.iter().map(|l| values(positive(l.clone()).inner())).collect();
        let aux_loss = ce.forward(aux[0].clone(), labels.clone()) + ce.forward(aux[1].clone(), labels.clone());
        let g = replica.mean(GradientsParams::from_grads(aux_loss.backward(), &self.heads), &self.heads)?;
        self.heads = self.head_optim.step(mm.head_lr, self.heads.clone(), g);

        let task = ce.forward(fused.clone(), labels.clone());
        let task_loss = value(&task);
        let before = Before { model: &model, heads: &self.heads, batch, features: [f0, f1], logits: fused, labels, unimodal: &unimodal, epoch: input.epoch, device };
        let decision = self.modulation.before(before)?;
        let total = decision.extra_terms.iter().cloned().fold(task, |total, term| total + term);
        let loss = value(&total);
        check_finite(loss, input.epoch, input.step, &self.exp)?;
        let stats = StepStats { loss, task_loss, fair_loss: None, fol_loss: None, modulation: Some((decision.factors, decision.triggered)), by_group: Vec::new() };
        let mut grads = replica.mean(GradientsParams::from_grads(self.scaler.scaled(total).backward(), &model), &model)?;
        let finite = self.scaler.unscale(&mut grads, &model);
        self.scaler.update(finite);
        if !finite {
            return Ok(stats);
        }
        let [e0, e1] = &self.encoders;
        {
            // Gaussian enhancement draws noise: every replica draws the same (one seed per
            // step, under the lock that keeps the replicas' draws apart).
            let _draws = (replica.count() > 1).then(|| {
                let guard = init_lock();
                B::seed(device, self.exp.seed.wrapping_add(input.step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                guard
            });
            self.modulation.after::<B>(&mut grads, [e0, e1], input.epoch, &decision)?;
        }
        if mm.grad_clip > 0.0 {
            clip_global_norm::<B::InnerBackend>(&mut grads, &self.all, mm.grad_clip)?;
        }
        self.model = self.optim.step(input.schedule.lr(input.step), model, grads);
        Ok(stats)
    }

    fn predict(&self, split: &Prepared, device: &B::Device) -> Result<Scores> {
        let (model, heads) = (self.model.valid(), self.heads.valid());
        let mut fused = Vec::with_capacity(split.len());
        let mut uni: [Vec<f64>; 2] = Default::default();
        let mut batches = split.in_order(self.exp.eval.batch_size);
        while let Some(b) = batches.next_batch::<B::InnerBackend>(device) {
            let b = b?;
            let out = model.forward(b.images, second_input(b.tokens, b.oct));
            fused.extend(values(positive(out.logits)));
            for (u, l) in uni.iter_mut().zip(heads.forward(out.features)) {
                u.extend(values(positive(l)));
            }
        }
        Ok(Scores { positive: fused, unimodal: Some(uni) })
    }

    fn save_state(&self, out: &Path, epoch: usize) -> Result<serde_json::Value> {
        save_record::<B, _>(self.model.clone().into_record(), &state_file(out, epoch, "model"))?;
        save_record::<B, _>(self.heads.clone().into_record(), &state_file(out, epoch, "heads"))?;
        self.optim.save(&state_file(out, epoch, "optim"))?;
        self.head_optim.save(&state_file(out, epoch, "head-optim"))?;
        self.scaler.save(out, epoch)?;
        Ok(self.modulation.state())
    }

    fn restore_state(&mut self, out: &Path, epoch: usize, state: &serde_json::Value, device: &B::Device) -> Result<()> {
        let record = load_record::<B, _>(&state_file(out, epoch, "model"), device)?;
        self.model = self.model.clone().load_record(record);
        let record = load_record::<B, _>(&state_file(out, epoch, "heads"), device)?;
        self.heads = self.heads.clone().load_record(record);
        self.optim.load(&state_file(out, epoch, "optim"), device)?;
        self.head_optim.load(&state_file(out, epoch, "head-optim"), device)?;
        self.scaler.load(out, epoch)?;
        self.param_sets()?;
        self.modulation.restore(state)
    }

    fn save_weights(&self, out: &Path, name: &str) -> Result<()> {
        save_safetensors(&self.model, &out.join(format!("{name}.safetensors")))?;
        save_safetensors(&self.heads, &out.join(format!("{name}-heads.safetensors")))
    }

    fn load_weights(&mut self, checkpoint: &Path, _device: &B::Device) -> Result<()> {
        self.model = load_safetensors(self.model.clone(), checkpoint)?;
        // The heads do not change the fused prediction; those saved beside the checkpoint are
        // restored where they exist.
        let heads = checkpoint.with_file_name(format!("{}-heads.safetensors", checkpoint.file_stem().unwrap_or_default().to_string_lossy()));
        if heads.is_file() {
            self.heads = load_safetensors(self.heads.clone(), &heads)?;
        }
        Ok(())
    }
}
