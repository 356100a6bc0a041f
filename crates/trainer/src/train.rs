//! The training loop: recipes' losses, per-epoch evaluation, logs, checkpoints, resume.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use vlm_backbone::{Clip, TextTransformer, VisionTransformer};

use crate::config::{Experiment, OptimizerKind, SelectOn};
use crate::data::ExperimentData;
use crate::error::{Error, Result};
use crate::evaluate::{evaluate, EpochMetrics};
use crate::recipe::{self, GroupLoaders};
use crate::report;

/// Options of one run that are not part of the experiment.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run folder.
    pub out: PathBuf,
    /// Continue a run in `out` after its last completed epoch.
    pub resume: bool,
    /// Show progress bars (on a terminal).
    pub progress: bool,
    /// Stop after this many epochs of this invocation (tests of `--resume` use it to simulate a
    /// kill between epochs); `None` runs to the end.
    pub stop_after: Option<usize>,
}

impl RunOptions {
    /// A run in `out`, from the start, with progress bars.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self { out: out.into(), resume: false, progress: true, stop_after: None }
    }
}

/// One epoch of the log (a line of `log.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean total loss over the epoch's steps.
    pub loss: f64,
    /// Mean task loss: CLIP's InfoNCE, or the cross-entropy of the multimodal methods.
    pub clip_loss: f64,
    /// Mean FairCLIP regulariser (before λ), when the method has one.
    pub fair_loss: Option<f64>,
    /// Mean FOL routing terms (as added to the loss), for `fair-moe`.
    #[serde(default)]
    pub fol_loss: Option<f64>,
    /// Steps so far.
    pub steps: usize,
    /// Validation metrics.
    pub validation: EpochMetrics,
    /// Test metrics.
    pub test: EpochMetrics,
    /// Seconds spent training this epoch (evaluation excluded).
    pub train_seconds: f64,
    /// Training samples per second.
    pub samples_per_second: f64,
    /// The multimodal methods' modulation and unimodal figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multimodal: Option<MultimodalLog>,
}

/// Per epoch, what the modulation did and how each modality alone performs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultimodalLog {
    /// Mean factor applied to each encoder's gradients (fundus, second modality; 1 = none).
    pub encoder_factors: [f64; 2],
    /// Fraction of steps on which MultiFair's group trigger fired.
    pub triggered: f64,
    /// AUC of each auxiliary (unimodal) head on the validation split.
    pub validation_unimodal_auc: [Option<f64>; 2],
    /// The same on the test split.
    pub test_unimodal_auc: [Option<f64>; 2],
}

/// What survives between invocations (`state.json`); the model and optimiser are in
/// `state-<epoch>-model.bin` / `state-<epoch>-optim.bin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    epochs_done: usize,
    steps: usize,
    best_epoch: usize,
    best_auc: f64,
    group_cursors: Vec<usize>,
    history: Vec<EpochLog>,
}

/// The outcome of a finished run.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// Per-epoch log.
    pub history: Vec<EpochLog>,
    /// The selected epoch.
    pub best_epoch: usize,
    /// The final report of the selected model on the test split (None if stopped early).
    pub report: Option<report::FinalReport>,
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a kill never leaves a
/// half-written file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

pub(crate) fn ckpt_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Checkpoint { path: path.to_owned(), message: e.to_string() }
}

/// Saves the model as safetensors (Hugging Face key names), atomically.
pub fn save_safetensors<B: Backend, M: Module<B>>(model: &M, path: &Path) -> Result<()> {
    let tmp = path.with_extension("safetensors.tmp");
    model.save_into(&mut SafetensorsStore::from_file(&tmp).overwrite(true)).map_err(|e| ckpt_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Loads safetensors weights into `model` (every tensor must be present with its shape).
pub fn load_safetensors<B: Backend, M: Module<B>>(mut model: M, path: &Path) -> Result<M> {
    if !path.is_file() {
        return Err(ckpt_err(path, "no such checkpoint"));
    }
    let res = model.load_from(&mut SafetensorsStore::from_file(path)).map_err(|e| ckpt_err(path, e))?;
    if !res.errors.is_empty() || !res.missing.is_empty() {
        return Err(ckpt_err(path, res));
    }
    Ok(model)
}

/// Touches every parameter, so that burn's lazy initialisation happens now.
pub(crate) struct Materialize;

impl<B: Backend> ModuleVisitor<B> for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}

/// The lock under which a model is seeded, created and materialised (burn's generator is
/// global to the process).
pub(crate) fn init_lock() -> std::sync::MutexGuard<'static, ()> {
    static INIT: Mutex<()> = Mutex::new(());
    INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The model of an experiment, with the seed applied to the initialisation. burn's random
/// generator is global to the process and parameters are drawn lazily, so seeding, creating
/// and drawing happen under one lock: two runs in one process (tests, a sweep) cannot
/// interleave their draws.
pub fn init_model<B: Backend>(exp: &Experiment, data: &ExperimentData, device: &B::Device) -> Result<Clip<B>> {
    let _guard = init_lock();
    B::seed(device, exp.seed);
    let mut cfg = exp.model.clip_config(data.tokenizer.vocab_size(), data.tokenizer.context_length()).map_err(Error::Invalid)?;
    with_tokenizer_ids(&mut cfg.text, &data.tokenizer);
    let mut model = load_pretrained(exp, cfg.init(device))?;
    if exp.method.uses_moe() {
        // Experts are copies of the (here freshly initialised, later pretrained) MLPs.
        model.visit(&mut Materialize);
        model = model.with_fo_moe(&exp.moe.fo_moe(&exp.fairclip.attribute), device).map_err(|e| Error::Invalid(format!("[moe]: {e}")))?;
    }
    model.visit(&mut Materialize);
    Ok(model)
}

/// Sets the towers named in `[model.vision]` / `[model.text]` from their checkpoints; a
/// `CLIPModel` named for both also brings its projections and logit scale.
fn load_pretrained<B: Backend>(exp: &Experiment, model: Clip<B>) -> Result<Clip<B>> {
    if let (Some(v), true) = (&exp.model.vision.weights, exp.model.is_whole_clip()) {
        let (model, report) = vlm_backbone::Checkpoint::open(v)?.load_clip(model)?;
        loaded("CLIPModel", v, &report);
        return Ok(model);
    }
    let (vision_model, text_model) = load_towers(exp, model.vision_model, Some(model.text_model))?;
    let text_model = text_model.ok_or_else(|| Error::Invalid("the text tower went missing".into()))?;
    Ok(Clip { vision_model, text_model, ..model })
}

/// The text tower pads and pools with the tokenizer's ids: its padding id (the attention
/// mask of bidirectional towers, mean pooling) and its end id (end-token pooling), whatever
/// the checkpoint's config.json says.
pub(crate) fn with_tokenizer_ids(text: &mut vlm_backbone::TextTransformerConfig, tokenizer: &fair_data::TextTokenizer) {
    text.pad_token_id = tokenizer.pad_id() as usize;
    text.eos_token_id = Some(tokenizer.end_id() as usize);
}

/// Sets an image tower and a text tower from the `[model.vision]` / `[model.text]`
/// checkpoints, where named (the text tower only with `pretrained = true`).
pub(crate) fn load_towers<B: Backend>(exp: &Experiment, mut vision: VisionTransformer<B>, mut text: Option<TextTransformer<B>>) -> Result<(VisionTransformer<B>, Option<TextTransformer<B>>)> {
    if let Some(v) = &exp.model.vision.weights {
        let (tower, report) = vlm_backbone::Checkpoint::open(v)?.load_vision(vision)?;
        loaded("image tower", v, &report);
        vision = tower;
    }
    if let (Some(t), true) = (&exp.model.text.weights, exp.model.text.pretrained) {
        if let Some(tower) = text.take() {
            let (tower, report) = vlm_backbone::Checkpoint::open(t)?.load_text(tower)?;
            loaded("text tower", t, &report);
            text = Some(tower);
        }
    }
    Ok((vision, text))
}

fn loaded(what: &str, path: &Path, report: &vlm_backbone::LoadReport) {
    eprintln!("{what}: {} tensors from {}", report.applied, path.display());
    if !report.unused.is_empty() {
        eprintln!("  unused checkpoint keys: {}", report.unused.join(", "));
    }
}

/// Trains `exp` in `opts.out`, evaluating after every epoch, and writes the final reports.
pub fn train<B: AutodiffBackend>(exp: &Experiment, opts: &RunOptions, device: &B::Device) -> Result<TrainOutcome> {
    if exp.method.is_multimodal() {
        return crate::multimodal::train_multimodal::<B>(exp, opts, device);
    }
    let o = &exp.optim;
    match o.optimizer {
        OptimizerKind::Adam => {
            let cfg = AdamConfig::new()
                .with_beta_1(o.betas[0] as f32)
                .with_beta_2(o.betas[1] as f32)
                .with_epsilon(o.eps as f32)
                .with_weight_decay((o.weight_decay > 0.0).then(|| WeightDecayConfig::new(o.weight_decay as f32)));
            train_with(exp, opts, device, cfg.init::<B, Clip<B>>())
        }
        OptimizerKind::Adamw => {
            let cfg = AdamWConfig::new()
                .with_beta_1(o.betas[0] as f32)
                .with_beta_2(o.betas[1] as f32)
                .with_epsilon(o.eps as f32)
                .with_weight_decay(o.weight_decay as f32);
            train_with(exp, opts, device, cfg.init::<B, Clip<B>>())
        }
    }
}

/// Opens a run folder: a new run writes its config and tokenizer; an existing one is refused
/// without `--resume`, refused with another config, and otherwise yields its `state.json` and
/// its own tokenizer (so token ids cannot change under the model). Then loads the data.
pub(crate) fn open_run<S: serde::de::DeserializeOwned>(exp: &Experiment, opts: &RunOptions) -> Result<(Option<S>, ExperimentData)> {
    let out = &opts.out;
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let has_run = out.join("state.json").is_file();
    if has_run && !opts.resume {
        return Err(ckpt_err(out, "already holds a run; continue it with --resume or choose another --out"));
    }
    let state: Option<S> = if has_run {
        let saved = out.join("config.toml");
        let text = std::fs::read_to_string(&saved).map_err(io_err(&saved))?;
        if Experiment::from_toml_str(&text, &saved.display().to_string())? != *exp {
            return Err(ckpt_err(&saved, "the run was started with a different config; resume with the same one or use a new --out"));
        }
        let path = out.join("state.json");
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        Some(serde_json::from_str(&text).map_err(|e| ckpt_err(&path, e))?)
    } else {
        None
    };
    let tokenizer = match &state {
        Some(_) => Some(fair_data::TextTokenizer::from_file(&out.join("tokenizer.json"), exp.data.context_length)?),
        None => None,
    };
    let data = ExperimentData::load(exp, tokenizer)?;
    if state.is_none() {
        write_atomic(&out.join("config.toml"), exp.to_toml().as_bytes())?;
        data.tokenizer.save(&out.join("tokenizer.json"))?;
    }
    Ok((state, data))
}

fn train_with<B: AutodiffBackend, O: Optimizer<Clip<B>, B>>(
    exp: &Experiment,
    opts: &RunOptions,
    device: &B::Device,
    mut optim: O,
) -> Result<TrainOutcome> {
    let out = &opts.out;
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    let (state, data) = open_run::<State>(exp, opts)?;

    let mut model: Clip<B> = init_model(exp, &data, device)?;
    let mut groups = GroupLoaders::new(exp, &data.train)?;
    let mut st = match state {
        Some(st) => {
            let (mpath, opath) = state_files(out, st.epochs_done);
            let record = recorder.load(mpath.clone(), device).map_err(|e| ckpt_err(&mpath, e))?;
            model = model.load_record(record);
            let record = recorder.load(opath.clone(), device).map_err(|e| ckpt_err(&opath, e))?;
            optim = optim.load_record(record);
            groups.set_cursors(&st.group_cursors);
            st
        }
        None => State { epochs_done: 0, steps: 0, best_epoch: 0, best_auc: f64::NEG_INFINITY, group_cursors: groups.cursors(), history: vec![] },
    };

    let n = data.train.len();
    let bs = exp.optim.batch_size;
    let steps_per_epoch = n.div_ceil(bs);
    let mut ran = 0;
    while st.epochs_done < exp.optim.epochs && opts.stop_after.is_none_or(|k| ran < k) {
        let epoch = st.epochs_done + 1;
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(exp.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ epoch as u64));
        let bar = progress_bar(opts.progress, steps_per_epoch as u64, &format!("{} epoch {epoch}/{}", exp.method.name(), exp.optim.epochs));
        let start = Instant::now();
        let (mut fair_seen, mut fol_seen) = (false, false);
        let (mut sum, mut sum_clip, mut sum_fair, mut sum_fol) = (0.0, 0.0, 0.0, 0.0);
        for idx in order.chunks(bs) {
            let batch = data.train.batch::<B>(idx, device);
            let losses = recipe::loss(exp, &model, batch, &mut groups, &data.train, device)?;
            let lr = exp.optim.lr * if exp.optim.warmup_steps > 0 { ((st.steps + 1) as f64 / exp.optim.warmup_steps as f64).min(1.0) } else { 1.0 };
            let total = recipe::value(&losses.total);
            if !total.is_finite() {
                return Err(Error::Invalid(format!("epoch {epoch}, step {}: the loss is {total}; lower optim.lr", st.steps + 1)));
            }
            let mut grads = losses.total.backward();
            if let Some(text_lr) = exp.optim.text_lr {
                // Two steps of the same optimiser over disjoint parameter sets: its moments are
                // kept per parameter, so this is one step with two learning rates.
                let text = GradientsParams::from_module(&mut grads, &model.text_model);
                model = optim.step(text_lr * lr / exp.optim.lr, model, text);
            }
            let grads = GradientsParams::from_grads(grads, &model);
            model = optim.step(lr, model, grads);
            st.steps += 1;
            sum += total;
            sum_clip += losses.clip;
            sum_fair += losses.fair.unwrap_or(0.0);
            sum_fol += losses.fol.unwrap_or(0.0);
            fair_seen |= losses.fair.is_some();
            fol_seen |= losses.fol.is_some();
            bar.inc(1);
            bar.set_message(format!("loss {total:.4}"));
        }
        bar.finish_and_clear();
        let train_seconds = start.elapsed().as_secs_f64();
        let steps = steps_per_epoch as f64;
        let valid = model.valid();
        let validation = evaluate(exp, &valid, &data.validation, &data.prompt_tokens, device)?;
        let test = evaluate(exp, &valid, &data.test, &data.prompt_tokens, device)?;
        let log = EpochLog {
            epoch,
            loss: sum / steps,
            clip_loss: sum_clip / steps,
            fair_loss: fair_seen.then_some(sum_fair / steps),
            fol_loss: fol_seen.then_some(sum_fol / steps),
            steps: st.steps,
            validation,
            test,
            train_seconds,
            samples_per_second: n as f64 / train_seconds,
            multimodal: None,
        };
        eprintln!("{}", log.one_line(exp));
        let selected = match exp.eval.select_on {
            SelectOn::Validation => log.validation.auc,
            SelectOn::Test => log.test.auc,
        }
        .unwrap_or(f64::NEG_INFINITY);

        // Commit order: weights and optimiser under a new name, then state.json, which is
        // what a resume trusts; older state files are removed only after.
        let (mpath, opath) = state_files(out, epoch);
        recorder.record(model.clone().into_record(), mpath.clone()).map_err(|e| ckpt_err(&mpath, e))?;
        recorder.record(optim.to_record(), opath.clone()).map_err(|e| ckpt_err(&opath, e))?;
        save_safetensors(&model, &out.join("last.safetensors"))?;
        if selected > st.best_auc || st.best_epoch == 0 {
            st.best_auc = selected;
            st.best_epoch = epoch;
            save_safetensors(&model, &out.join("best.safetensors"))?;
        }
        st.epochs_done = epoch;
        st.group_cursors = groups.cursors();
        st.history.push(log);
        write_atomic(&out.join("state.json"), serde_json::to_string_pretty(&st).unwrap_or_default().as_bytes())?;
        let jsonl: String = st.history.iter().map(|l| serde_json::to_string(l).unwrap_or_default() + "\n").collect();
        write_atomic(&out.join("log.jsonl"), jsonl.as_bytes())?;
        for old in 1..epoch {
            let (m, o) = state_files(out, old);
            for p in [m, o].map(|p| p.with_extension("bin")) {
                if p.exists() {
                    std::fs::remove_file(&p).map_err(io_err(&p))?;
                }
            }
        }
        ran += 1;
    }

    let report = if st.epochs_done == exp.optim.epochs {
        let best = load_safetensors(model.valid(), &out.join("best.safetensors"))?;
        let r = report::FinalReport::compute(exp, &best, &data, &st.history, st.best_epoch, device)?;
        r.write(out)?;
        Some(r)
    } else {
        None
    };
    Ok(TrainOutcome { history: st.history, best_epoch: st.best_epoch, report })
}

/// The model and optimiser records of an epoch (burn's recorder appends `.bin`).
fn state_files(out: &Path, epoch: usize) -> (PathBuf, PathBuf) {
    (out.join(format!("state-{epoch}-model")), out.join(format!("state-{epoch}-optim")))
}

pub(crate) fn progress_bar(enabled: bool, len: u64, prefix: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(prefix.to_owned());
    bar
}

impl EpochLog {
    /// A one-line summary for the terminal.
    pub fn one_line(&self, exp: &Experiment) -> String {
        let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
        let es: Vec<String> = self.validation.attributes.iter().map(|(a, m)| format!("{a} {}", f(m.es_auc))).collect();
        format!(
            "{} epoch {}/{}: loss {:.4} | val AUC {} ES-AUC {} | test AUC {} | {:.1} s, {:.0} samples/s",
            exp.method.name(),
            self.epoch,
            exp.optim.epochs,
            self.loss,
            f(self.validation.auc),
            es.join(", "),
            f(self.test.auc),
            self.train_seconds,
            self.samples_per_second
        )
    }
}
