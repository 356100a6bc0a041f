//! The multimodal methods on MultiFair's fundus + note classifier: `late-fusion` (plain
//! cross-entropy), `ogm-ge` (OGM-GE's modality-level modulation) and `multifair` (CGGM-style
//! modality balancing plus the group-level modulation), one training step as papers.md 4.2
//! describes; per-epoch evaluation of the fused model and of each modality's auxiliary head.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use serde::{Deserialize, Serialize};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::backend::AutodiffBackend;
use fair_data::{Prepared, ATTRIBUTES};
use gradmod::{clip_global_norm, direction_loss, scale, GroupModulation, ModalityBalance, OgmGe, ParamSet};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vlm_backbone::{AuxiliaryHeads, MultimodalClassifier, SecondInput};

use crate::config::{attribute_groups, Experiment, Method, MultiFairModeConfig, SelectOn};
use crate::data::ExperimentData;
use crate::error::{Error, Result};
use crate::evaluate::{report, EpochMetrics};
use crate::recipe::value;
use crate::report::FinalReport;
use crate::train::{ckpt_err, init_lock, io_err, open_run, load_safetensors, progress_bar, save_safetensors, write_atomic, EpochLog, Materialize, MultimodalLog, RunOptions, TrainOutcome};

fn gm_err(e: gradmod::Error) -> Error {
    Error::Invalid(format!("gradient modulation: {e}"))
}

fn loss_err(e: fair_losses::Error) -> Error {
    Error::Invalid(format!("loss: {e}"))
}

/// The values of a tensor as f64.
fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap_or_default()
}

/// The glaucoma probability `softmax(logits)[:, 1]`.
fn positive<B: Backend>(logits: Tensor<B, 2>) -> Tensor<B, 1> {
    let n = logits.dims()[0];
    softmax(logits, 1).narrow(1, 1, 1).reshape([n])
}

/// Fused and unimodal probabilities of every sample of a split.
fn predict<B: Backend>(model: &MultimodalClassifier<B>, heads: &AuxiliaryHeads<B>, data: &Prepared, batch_size: usize, device: &B::Device) -> (Vec<f64>, [Vec<f64>; 2]) {
    let mut fused = Vec::with_capacity(data.len());
    let mut uni: [Vec<f64>; 2] = Default::default();
    let rows: Vec<usize> = (0..data.len()).collect();
    for idx in rows.chunks(batch_size.max(1)) {
        let b = data.batch::<B>(idx, device);
        let out = model.forward(b.images, second_input(b.tokens, b.oct));
        fused.extend(values(positive(out.logits)));
        for (u, l) in uni.iter_mut().zip(heads.forward(out.features)) {
            u.extend(values(positive(l)));
        }
    }
    (fused, uni)
}

/// The batch's second modality: the OCT slices when the data has them, else the notes.
fn second_input<B: Backend>(tokens: Tensor<B, 2, Int>, oct: Option<Tensor<B, 4>>) -> SecondInput<B> {
    match oct {
        Some(v) => SecondInput::Oct(v),
        None => SecondInput::Text(tokens),
    }
}

fn auc(labels: &[u8], scores: &[f64]) -> Option<f64> {
    let l: Vec<bool> = labels.iter().map(|&v| v == 1).collect();
    fair_metrics::roc_auc(&l, scores).ok().flatten()
}

type Optim<B, M> = burn::optim::adaptor::OptimizerAdaptor<burn::optim::AdamW, M, B>;

/// The modulation's running statistics, saved with each epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Modulation {
    steps: usize,
    balance: Vec<f64>,
    group_ema: Vec<Vec<f64>>,
}

/// What survives between invocations of a multimodal run (`state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    epochs_done: usize,
    best_epoch: usize,
    best_auc: f64,
    modulation: Modulation,
    history: Vec<EpochLog>,
}

/// The parameters the modulation acts on: the two encoders (MultiFair: names containing
/// `fundus_encoder`, and the text or OCT encoder; projections, fusion and classifier are not
/// modulated), and all of them for clipping. Parameter ids change when a record is loaded, so
/// the sets are rebuilt then.
fn param_sets<B: Backend>(exp: &Experiment, model: &MultimodalClassifier<B>) -> Result<([ParamSet; 2], ParamSet)> {
    let second = match (&model.text_encoder, &model.oct_encoder) {
        (Some(t), _) => ParamSet::of(t),
        (_, Some(o)) => ParamSet::of(o),
        _ => return Err(Error::Invalid("the multimodal classifier has no second encoder".into())),
    };
    let mut encoders = [ParamSet::of(&model.fundus_encoder), second];
    if exp.method == Method::OgmGe && exp.ogm.conv_only {
        encoders = encoders.map(|s| s.with_rank(4));
    }
    Ok((encoders, ParamSet::of(model)))
}

/// The records of an epoch: model, heads, their optimisers (the recorder appends `.bin`).
fn state_files(out: &Path, epoch: usize) -> [PathBuf; 4] {
    ["model", "heads", "optim", "head-optim"].map(|k| out.join(format!("state-{epoch}-{k}")))
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// The loss differentiated for the classifier.
    pub loss: f64,
    /// Its cross-entropy part.
    pub task_loss: f64,
    /// The factor applied to each encoder's gradients (1 without modulation).
    pub encoder_factors: [f64; 2],
    /// Whether MultiFair's group trigger fired.
    pub triggered: bool,
}

/// The state of a multimodal run: the classifier, the auxiliary heads, both optimisers and
/// the modulation's running statistics. [`MultimodalTrainer::step`] is one training step of
/// the experiment's method (papers.md 4.2; docs/methods.md).
pub struct MultimodalTrainer<B: AutodiffBackend> {
    exp: Experiment,
    model: MultimodalClassifier<B>,
    heads: AuxiliaryHeads<B>,
    optim: Optim<B, MultimodalClassifier<B>>,
    head_optim: Optim<B, AuxiliaryHeads<B>>,
    encoders: [ParamSet; 2],
    all: ParamSet,
    ogm: OgmGe,
    attribute: usize,
    n_groups: usize,
    balance: ModalityBalance,
    groups: GroupModulation,
    steps: usize,
}

impl<B: AutodiffBackend> MultimodalTrainer<B> {
    /// The seeded model, heads and optimisers of `exp` for `data`.
    pub fn new(exp: &Experiment, data: &ExperimentData, device: &B::Device) -> Result<Self> {
        let mm = &exp.multimodal;
        // Dropout and GE noise draw from burn's global generator during training, so two runs
        // in one process are reproducible only one after the other (tests run them in their
        // own test binary).
        let (model, heads) = {
            let _guard = init_lock();
            B::seed(device, exp.seed);
            let mut cfg = exp.multimodal_config(data.tokenizer.vocab_size(), data.tokenizer.context_length()).map_err(Error::Invalid)?;
            if let vlm_backbone::SecondModality::Text(text) = &mut cfg.second {
                crate::train::with_tokenizer_ids(text, &data.tokenizer);
            }
            let model: MultimodalClassifier<B> = cfg.init(device);
            // Pretrained fundus and note encoders (MultiFair's ViT and BERT); the OCT slice
            // encoder, at its own image size, starts from scratch.
            let (fundus_encoder, text_encoder) = crate::train::load_towers(exp, model.fundus_encoder, model.text_encoder)?;
            let model = MultimodalClassifier { fundus_encoder, text_encoder, ..model };
            model.visit(&mut Materialize);
            let heads: AuxiliaryHeads<B> = AuxiliaryHeads::new(mm.proj_dim, 2, mm.dropout, device);
            heads.visit(&mut Materialize);
            (model, heads)
        };
        let o = &exp.optim;
        let optim = AdamWConfig::new()
            .with_beta_1(o.betas[0] as f32)
            .with_beta_2(o.betas[1] as f32)
            .with_epsilon(o.eps as f32)
            .with_weight_decay(o.weight_decay as f32)
            .init::<B, MultimodalClassifier<B>>();
        let head_optim = AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(mm.head_weight_decay as f32).init::<B, AuxiliaryHeads<B>>();
        let (encoders, all) = param_sets(exp, &model)?;
        let og = &exp.ogm;
        let ogm = OgmGe { alpha: og.alpha, gaussian_enhancement: og.gaussian_enhancement, start_epoch: og.start_epoch, end_epoch: og.end_epoch };
        let attribute = ATTRIBUTES.iter().position(|a| *a == mm.attribute).ok_or_else(|| Error::Invalid(format!("multimodal.attribute '{}'", mm.attribute)))?;
        let n_groups = attribute_groups(&mm.attribute);
        let groups = GroupModulation::new(2, n_groups, exp.multifair.strength, exp.multifair.threshold).map_err(gm_err)?;
        Ok(Self {
            exp: exp.clone(),
            model,
            heads,
            optim,
            head_optim,
            encoders,
            all,
            ogm,
            attribute,
            n_groups,
            balance: ModalityBalance::new(2),
            groups,
            steps: 0,
        })
    }

    /// The classifier.
    pub fn model(&self) -> &MultimodalClassifier<B> {
        &self.model
    }

    /// The auxiliary heads.
    pub fn heads(&self) -> &AuxiliaryHeads<B> {
        &self.heads
    }

    /// Writes the weights, both optimisers' moments (`state-<epoch>-*.bin`) and returns the
    /// modulation's running statistics, for `state.json`.
    fn save(&self, out: &Path, epoch: usize) -> Result<Modulation> {
        let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
        let [m, h, o, ho] = state_files(out, epoch);
        recorder.record(self.model.clone().into_record(), m.clone()).map_err(|e| ckpt_err(&m, e))?;
        recorder.record(self.heads.clone().into_record(), h.clone()).map_err(|e| ckpt_err(&h, e))?;
        recorder.record(self.optim.to_record(), o.clone()).map_err(|e| ckpt_err(&o, e))?;
        recorder.record(self.head_optim.to_record(), ho.clone()).map_err(|e| ckpt_err(&ho, e))?;
        Ok(Modulation { steps: self.steps, balance: self.balance.previous().to_vec(), group_ema: self.groups.ema().to_vec() })
    }

    /// Restores what [`MultimodalTrainer::save`] wrote after `epoch`.
    fn restore(&mut self, out: &Path, epoch: usize, m: &Modulation, device: &B::Device) -> Result<()> {
        let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
        let [mp, hp, op, hop] = state_files(out, epoch);
        let record = recorder.load(mp.clone(), device).map_err(|e| ckpt_err(&mp, e))?;
        self.model = self.model.clone().load_record(record);
        let record = recorder.load(hp.clone(), device).map_err(|e| ckpt_err(&hp, e))?;
        self.heads = self.heads.clone().load_record(record);
        let record = recorder.load(op.clone(), device).map_err(|e| ckpt_err(&op, e))?;
        self.optim = self.optim.clone().load_record(record);
        let record = recorder.load(hop.clone(), device).map_err(|e| ckpt_err(&hop, e))?;
        self.head_optim = self.head_optim.clone().load_record(record);
        (self.encoders, self.all) = param_sets(&self.exp, &self.model)?;
        self.steps = m.steps;
        let path = out.join("state.json");
        self.balance.set_previous(&m.balance).map_err(|e| ckpt_err(&path, e))?;
        self.groups.set_ema(m.group_ema.clone()).map_err(|e| ckpt_err(&path, e))?;
        Ok(())
    }

    /// One training step on the rows `idx` of `train` in (1-based) `epoch`.
    pub fn step(&mut self, train: &Prepared, idx: &[usize], epoch: usize, device: &B::Device) -> Result<StepStats> {
        let exp = &self.exp;
        let (mm, mf, o) = (&exp.multimodal, &exp.multifair, &exp.optim);
        // Clones share the weights; the optimiser steps below replace them.
        let model = self.model.clone();
        let ce = CrossEntropyLossConfig::new().init(device);
        let batch = train.batch::<B>(idx, device);
        let labels_vec: Vec<i64> = batch.labels.iter().map(|&l| l as i64).collect();
        let labels = Tensor::<B, 1, Int>::from_ints(labels_vec.as_slice(), device);
        let label_bools: Vec<bool> = batch.labels.iter().map(|&l| l == 1).collect();
        let codes: Vec<i64> = batch.attributes.iter().map(|r| r[self.attribute]).collect();

        let outputs = model.forward(batch.images, second_input(batch.tokens, batch.oct));
        let [f0, f1] = outputs.features.clone();
        // Auxiliary heads on detached features, with their own optimiser. (The code runs a
        // second, gradient-free forward for them; the training forward's features are the
        // same function of the weights, with other dropout draws.)
        let aux = self.heads.forward([f0.clone().detach(), f1.clone().detach()]);
        let aux_q: Vec<Vec<f64>> = aux.iter().map(|l| values(positive(l.clone()).inner())).collect();
        let aux_loss = ce.forward(aux[0].clone(), labels.clone()) + ce.forward(aux[1].clone(), labels.clone());
        let g = GradientsParams::from_grads(aux_loss.backward(), &self.heads);
        self.heads = self.head_optim.step(mm.head_lr, self.heads.clone(), g);
        let heads = &self.heads;

        let task = ce.forward(outputs.logits.clone(), labels.clone());
        let task_loss = value(&task);
        let mut total = task;
        let mut factors = [1.0f64; 2];
        let mut ogm_coefficients = None;
        let mut triggered = false;
        match exp.method {
            Method::OgmGe => {
                let [u0, u1] = model
                    .unimodal_logits([f0.detach(), f1.detach()])
                    .ok_or_else(|| Error::Invalid("ogm-ge needs multimodal.fusion = \"concat\"".into()))?;
                let c = self.ogm.coefficients(u0.inner(), u1.inner(), labels.clone().inner()).map_err(gm_err)?;
                if self.ogm.active(epoch) {
                    factors = c.coefficients;
                }
                ogm_coefficients = Some(c);
            }
            Method::Multifair => {
                let aucs: Vec<Option<f64>> = aux_q.iter().map(|q| fair_metrics::roc_auc(&label_bools, q).ok().flatten()).collect();
                let b = self.balance.update(&aucs).map_err(gm_err)?;
                // Surrogate AUC of each head per group (0.5 where undefined), then the EMA.
                let mut surrogate = vec![vec![0.5; self.n_groups]; 2];
                for (i, q) in aux_q.iter().enumerate() {
                    for (g, slot) in surrogate[i].iter_mut().enumerate() {
                        let rows: Vec<usize> = (0..codes.len()).filter(|&r| codes[r] == g as i64).collect();
                        let qs: Vec<f64> = rows.iter().map(|&r| q[r]).collect();
                        let ls: Vec<bool> = rows.iter().map(|&r| label_bools[r]).collect();
                        let t = Tensor::<B::InnerBackend, 1>::from_data(TensorData::new(qs, [rows.len()]), device);
                        if let Some(s) = fair_losses::surrogate_auc(t, &ls).map_err(loss_err)? {
                            *slot = value(&s);
                        }
                    }
                }
                self.groups.update(&surrogate).map_err(gm_err)?;
                let fractions: Vec<f64> = (0..self.n_groups).map(|g| codes.iter().filter(|&&c| c == g as i64).count() as f64 / codes.len() as f64).collect();
                let group_factors = self.groups.factors(&fractions).map_err(gm_err)?;
                let fused_q = positive(outputs.logits.clone());
                let (_, priority) = self.groups.trigger(&label_bools, &values(fused_q.clone().inner()), &codes).map_err(gm_err)?;
                triggered = priority;
                for i in 0..2 {
                    factors[i] = b[i] * mf.rho * if priority { group_factors[i] } else { 1.0 };
                }
                if mf.mode == MultiFairModeConfig::Faithful {
                    if let Some(w) = model.last_weight() {
                        let head_w: Vec<Tensor<B, 2>> = heads.heads.iter().map(|h| h.out.weight.val()).collect();
                        total = total + direction_loss(&b, w, &head_w).map_err(gm_err)? * mf.lambda_gm;
                    }
                    if priority {
                        if let Some(gap) = fair_losses::surrogate_auc_gap(fused_q, &label_bools, &codes, self.n_groups).map_err(loss_err)? {
                            total = total + gap * mf.fairness_coeff;
                        }
                    }
                }
            }
            _ => {}
        }
        let loss = value(&total);
        if !loss.is_finite() {
            return Err(Error::Invalid(format!("epoch {epoch}, step {}: the loss is {loss}; lower optim.lr", self.steps + 1)));
        }
        let mut grads = GradientsParams::from_grads(total.backward(), &model);
        type IB<B> = <B as AutodiffBackend>::InnerBackend;
        let [e0, e1] = &self.encoders;
        match (exp.method, ogm_coefficients) {
            (Method::OgmGe, Some(c)) => self.ogm.apply::<IB<B>>(epoch, &mut grads, [e0, e1], &c).map_err(gm_err)?,
            (Method::Multifair, _) => {
                for (set, f) in self.encoders.iter().zip(factors) {
                    scale::<IB<B>>(&mut grads, set, f).map_err(gm_err)?;
                }
            }
            _ => {}
        }
        if mm.grad_clip > 0.0 {
            clip_global_norm::<IB<B>>(&mut grads, &self.all, mm.grad_clip).map_err(gm_err)?;
        }
        let lr = o.lr * if o.warmup_steps > 0 { ((self.steps + 1) as f64 / o.warmup_steps as f64).min(1.0) } else { 1.0 };
        self.model = self.optim.step(lr, model, grads);
        self.steps += 1;
        Ok(StepStats { loss, task_loss, encoder_factors: factors, triggered })
    }
}

/// Trains a multimodal method in `opts.out`, resumable like the CLIP methods: after every
/// epoch the weights, both optimisers and the modulation statistics are saved, and each
/// epoch's dropout and noise draws come from a generator seeded by (seed, epoch), so a resumed
/// run repeats the uninterrupted one exactly.
pub(crate) fn train_multimodal<B: AutodiffBackend>(exp: &Experiment, opts: &RunOptions, device: &B::Device) -> Result<TrainOutcome> {
    let out = &opts.out;
    let (state, data) = open_run::<State>(exp, opts)?;
    let mut trainer = MultimodalTrainer::<B>::new(exp, &data, device)?;
    let (mut epochs_done, mut best_epoch, mut best_auc, mut history) = (0usize, 0usize, f64::NEG_INFINITY, Vec::new());
    if let Some(st) = state {
        trainer.restore(out, st.epochs_done, &st.modulation, device)?;
        (epochs_done, best_epoch, best_auc, history) = (st.epochs_done, st.best_epoch, st.best_auc, st.history);
    }

    let o = &exp.optim;
    let n = data.train.len();
    let steps_per_epoch = n.div_ceil(o.batch_size);
    let mut ran = 0;
    while epochs_done < o.epochs && opts.stop_after.is_none_or(|k| ran < k) {
        let epoch = epochs_done + 1;
        {
            let _guard = init_lock();
            B::seed(device, exp.seed.wrapping_mul(0x2545_F491_4F6C_DD1D).wrapping_add(epoch as u64));
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(exp.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ epoch as u64));
        let bar = progress_bar(opts.progress, steps_per_epoch as u64, &format!("{} epoch {epoch}/{}", exp.method.name(), o.epochs));
        let start = Instant::now();
        let (mut sum, mut sum_task, mut factor_sum, mut triggered) = (0.0, 0.0, [0.0f64; 2], 0usize);
        for idx in order.chunks(o.batch_size) {
            let st = trainer.step(&data.train, idx, epoch, device)?;
            sum += st.loss;
            sum_task += st.task_loss;
            for (sum, f) in factor_sum.iter_mut().zip(st.encoder_factors) {
                *sum += f;
            }
            triggered += st.triggered as usize;
            bar.inc(1);
            bar.set_message(format!("loss {:.4}", st.loss));
        }
        bar.finish_and_clear();
        let train_seconds = start.elapsed().as_secs_f64();
        let k = steps_per_epoch as f64;
        let (vm, vh) = (trainer.model().valid(), trainer.heads().valid());
        let split_metrics = |d: &Prepared| -> Result<(EpochMetrics, [Option<f64>; 2])> {
            let (fused, uni) = predict(&vm, &vh, d, exp.eval.batch_size, device);
            let metrics = EpochMetrics::from_report(&report(exp, d, fused, None)?);
            Ok((metrics, [auc(&d.labels, &uni[0]), auc(&d.labels, &uni[1])]))
        };
        let (validation, vu) = split_metrics(&data.validation)?;
        let (test, tu) = split_metrics(&data.test)?;
        let log = EpochLog {
            epoch,
            loss: sum / k,
            clip_loss: sum_task / k,
            fair_loss: None,
            fol_loss: None,
            steps: epoch * steps_per_epoch,
            validation,
            test,
            train_seconds,
            samples_per_second: n as f64 / train_seconds,
            multimodal: Some(MultimodalLog { encoder_factors: factor_sum.map(|f| f / k), triggered: triggered as f64 / k, validation_unimodal_auc: vu, test_unimodal_auc: tu }),
        };
        eprintln!("{}", log.one_line(exp));
        let selected = match exp.eval.select_on {
            SelectOn::Validation => log.validation.auc,
            SelectOn::Test => log.test.auc,
        }
        .unwrap_or(f64::NEG_INFINITY);
        save_safetensors(trainer.model(), &out.join("last.safetensors"))?;
        save_safetensors(trainer.heads(), &out.join("last-heads.safetensors"))?;
        if selected > best_auc || best_epoch == 0 {
            best_auc = selected;
            best_epoch = epoch;
            save_safetensors(trainer.model(), &out.join("best.safetensors"))?;
            save_safetensors(trainer.heads(), &out.join("best-heads.safetensors"))?;
        }
        history.push(log);
        // Records under a new name first, then state.json (what a resume trusts), then the
        // previous epoch's records.
        let modulation = trainer.save(out, epoch)?;
        let st = State { epochs_done: epoch, best_epoch, best_auc, modulation, history: history.clone() };
        write_atomic(&out.join("state.json"), serde_json::to_string_pretty(&st).unwrap_or_default().as_bytes())?;
        let jsonl: String = history.iter().map(|l| serde_json::to_string(l).unwrap_or_default() + "\n").collect();
        write_atomic(&out.join("log.jsonl"), jsonl.as_bytes())?;
        for old in 1..epoch {
            for p in state_files(out, old).map(|p| p.with_extension("bin")) {
                if p.exists() {
                    std::fs::remove_file(&p).map_err(io_err(&p))?;
                }
            }
        }
        epochs_done = epoch;
        ran += 1;
    }
    let report = if history.len() == o.epochs {
        let best = load_safetensors(trainer.model().valid(), &out.join("best.safetensors"))?;
        let best_heads = load_safetensors(trainer.heads().valid(), &out.join("best-heads.safetensors"))?;
        let (scores, _) = predict(&best, &best_heads, &data.test, exp.eval.batch_size, device);
        let r = FinalReport::from_scores(exp, &data, scores, &history, best_epoch)?;
        r.write(out)?;
        Some(r)
    } else {
        None
    };
    Ok(TrainOutcome { history, best_epoch, report })
}

/// The fused model's test or validation probabilities from a checkpoint of a finished run
/// (`fairvlm eval`).
pub(crate) fn predict_checkpoint<B: Backend>(exp: &Experiment, data: &ExperimentData, prepared: &Prepared, checkpoint: &Path, device: &B::Device) -> Result<Vec<f64>> {
    let model: MultimodalClassifier<B> = exp.multimodal_config(data.tokenizer.vocab_size(), data.tokenizer.context_length()).map_err(Error::Invalid)?.init(device);
    let model = load_safetensors(model, checkpoint)?;
    // The heads do not change the fused prediction; fresh ones serve the shared predictor.
    let heads = AuxiliaryHeads::new(exp.multimodal.proj_dim, 2, exp.multimodal.dropout, device);
    Ok(predict(&model, &heads, prepared, exp.eval.batch_size, device).0)
}
