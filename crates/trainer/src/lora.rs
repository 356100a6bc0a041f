//! Fairness-aware LoRA with a privacy-preserving auditor (arXiv 2503.05684 and its follow-up;
//! the concrete forms are papers.md 5.2): a model developer fine-tunes LoRA adapters on a
//! frozen pretrained ViT with task labels; a fairness auditor holds the sensitive labels. Only
//! adapters (and, for Adv, Ent and the ascent reading of Unl, gradients with respect to the
//! developer's adapters) travel between them.
//!
//! - Erm: plain LoRA fine-tuning.
//! - Unl: the auditor trains a sensitive adapter and sends it; the developer subtracts
//!   `β·ΔW_S` from the base weights and fine-tunes on the result (`negate`, default), or the
//!   auditor returns the gradient of `−λ·CE(h_S(f(x′)), s)` each step (`ascent`).
//! - Adv: the auditor trains an adversary on the developer's features and returns the gradient
//!   of `−λ·CE(h_adv(f(x′)), s)` (`alternate`), or one gradient-reversal step per round
//!   (`reversal`, the single-process form).
//! - Orth: `λ·Σ_l ‖A_T A_Sᵀ‖² + ‖B_Tᵀ B_S‖²` against the auditor's sensitive adapter.
//! - Ent: the auditor returns the gradient of `−λ·H(softmax(h_S(f(x′))))`.
//!
//! The developer talks to the auditor through an [`AuditorLink`]: [`LocalAuditor`] in one
//! process, [`FileLink`] / [`serve_files`] across two processes that share only a folder.
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::module::AutodiffModule;
//! use fair_data::LabelledImages;
//! use trainer::lora::{self, Auditor, LocalAuditor, LoraExperiment};
//!
//! type B = Autodiff<Flex>;
//! let device = Default::default();
//! // 16 images of 8 x 8 with a task and a sensitive label.
//! let labels = |f: fn(i64) -> i64| (0..16).map(f).collect::<Vec<i64>>();
//! let set = LabelledImages { size: 8, images: (0..16 * 3 * 64).map(|i| (i % 251) as u8).collect(),
//!     labels: [("task".into(), labels(|i| i % 2)), ("sensitive".into(), labels(|i| (i / 2) % 2))].into() };
//! let exp = LoraExperiment::from_toml_str_with("method = \"orth\"\n[model]\npatch_size = 4\nwidth = 16\nlayers = 1\nheads = 2\n[optim]\nbatch_size = 8\nepochs = 1\n[fair]\nsensitive_epochs = 1", "inline", &[])?;
//! let base = lora::pretrain::<B>(&exp, &set, "task", 1, &device)?; // the stand-in for a pretrained ViT
//! let mut auditor = Auditor::new(&exp, base.clone(), set.with_labels(&[("sensitive", "sensitive")])?, "sensitive", &device)?;
//! let developer_data = set.with_labels(&[("task", "task")])?;
//! let (model, log, _) = lora::train_developer::<B>(&exp, &base, &developer_data, "task", &mut LocalAuditor(&mut auditor), &device)?;
//! assert_eq!(log.orth_penalty.len(), 1);
//! let audit = lora::audit(&lora::scores(&model.valid(), &set, &device), set.label("task")?, set.label("sensitive")?)?;
//! assert_eq!(audit.n, 16);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::module::{AutodiffModule, Module};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use fair_data::LabelledImages;
use fair_metrics::{Attribute, Predictions, Report, ReportOptions};
use lora_fair::{AdapterConfig, LoraAdapter, LoraConfig};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};
use vlm_backbone::{VisionTransformerConfig, VitClassifier, VitClassifierConfig};

use crate::error::{Error, Result};
use crate::train::{ckpt_err, init_lock, io_err, load_safetensors, save_safetensors, Materialize};

/// The five methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LoraMethod {
    /// Fairness-unaware LoRA.
    #[default]
    Erm,
    /// Sensitive unlearning.
    Unl,
    /// Adversarial training at the auditor.
    Adv,
    /// Orthogonality to the auditor's sensitive adapter.
    Orth,
    /// Entropy of the auditor's fixed sensitive head.
    Ent,
}

impl LoraMethod {
    /// All methods, in the paper's order.
    pub const ALL: [LoraMethod; 5] = [LoraMethod::Erm, LoraMethod::Unl, LoraMethod::Adv, LoraMethod::Orth, LoraMethod::Ent];

    /// The name used in configs and tables.
    pub fn name(self) -> &'static str {
        match self {
            LoraMethod::Erm => "erm",
            LoraMethod::Unl => "unl",
            LoraMethod::Adv => "adv",
            LoraMethod::Orth => "orth",
            LoraMethod::Ent => "ent",
        }
    }
}

/// Which reading of Unl.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UnlMode {
    /// Task-arithmetic negation: `W₀′ = W₀ − β·ΔW_S`.
    #[default]
    Negate,
    /// Gradient ascent on the auditor's sensitive loss, returned as a gradient.
    Ascent,
}

/// How the auditor trains the adversary of Adv.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AdvMode {
    /// `adv_steps` adversary updates on detached features, then the encoder's gradient.
    #[default]
    Alternate,
    /// One step through a gradient-reversal layer: adversary and encoder gradients together.
    Reversal,
}

/// The frozen ViT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraModel {
    /// Patch side.
    pub patch_size: usize,
    /// Token width.
    pub width: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
}

impl Default for LoraModel {
    fn default() -> Self {
        LoraModel { patch_size: 4, width: 64, layers: 4, heads: 4 }
    }
}

/// The adapters (papers.md 5.2: r 8, α 16, dropout 0.1 on q and v).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraSettings {
    /// Rank.
    pub r: usize,
    /// `lora_alpha`.
    pub alpha: f64,
    /// Adapter-input dropout.
    pub dropout: f64,
    /// rsLoRA scaling.
    pub use_rslora: bool,
    /// Targeted projections (peft names: q_proj, k_proj, v_proj, out_proj, fc1, fc2).
    pub targets: Vec<String>,
}

impl Default for LoraSettings {
    fn default() -> Self {
        LoraSettings { r: 8, alpha: 16.0, dropout: 0.1, use_rslora: false, targets: vec!["q_proj".into(), "v_proj".into()] }
    }
}

impl LoraSettings {
    /// The projections a target names: the model's own names (`q_proj`, `k_proj`, `v_proj`,
    /// `out_proj`, `fc1`, `fc2`, optionally with a path prefix), and the short forms other
    /// ViTs use (`q`, `k`, `v`, `out`, and timm's fused `qkv` for all three); empty if none.
    pub fn expand(target: &str) -> Vec<String> {
        const NAMES: [&str; 6] = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"];
        let short: &[&str] = match target {
            "q" => &["q_proj"],
            "k" => &["k_proj"],
            "v" => &["v_proj"],
            "qkv" => &["q_proj", "k_proj", "v_proj"],
            "out" => &["out_proj"],
            _ => &[],
        };
        if !short.is_empty() {
            return short.iter().map(|s| s.to_string()).collect();
        }
        if NAMES.iter().any(|n| target == *n || target.ends_with(&format!(".{n}"))) {
            vec![target.to_string()]
        } else {
            vec![]
        }
    }

    /// The targets with short forms expanded, in peft's form.
    ///
    /// ```
    /// let mut lora = trainer::lora::LoraSettings::default();
    /// lora.targets = vec!["qkv".into(), "fc2".into()];
    /// assert_eq!(lora.projections(), ["q_proj", "k_proj", "v_proj", "fc2"]);
    /// ```
    pub fn projections(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.targets {
            for p in Self::expand(t) {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    }

    fn config(&self) -> LoraConfig {
        LoraConfig::new().with_r(self.r).with_alpha(self.alpha).with_dropout(self.dropout).with_use_rslora(self.use_rslora)
    }
}

/// AdamW on adapters and head (papers.md 5.2: lr 1e-4, weight decay 0.01, batch 64).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraOptim {
    /// Learning rate.
    pub lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Batch size.
    pub batch_size: usize,
    /// Epochs over the party's pool.
    pub epochs: usize,
}

impl Default for LoraOptim {
    fn default() -> Self {
        LoraOptim { lr: 1e-3, weight_decay: 0.01, batch_size: 64, epochs: 3 }
    }
}

/// The fairness terms and the auditor's own training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FairLora {
    /// Orth's λ.
    pub lambda_orth: f64,
    /// Adv's λ.
    pub lambda_adv: f64,
    /// Ent's λ.
    pub lambda_ent: f64,
    /// Unl: negation or ascent.
    pub unl_mode: UnlMode,
    /// Unl negate's β.
    pub unl_beta: f64,
    /// Unl ascent's λ.
    pub lambda_unl: f64,
    /// Adv: alternate or reversal.
    pub adv_mode: AdvMode,
    /// Adversary updates per round (alternate).
    pub adv_steps: usize,
    /// Learning rate of the adversary.
    pub adv_lr: f64,
    /// Epochs of the auditor's sensitive adapter and head.
    pub sensitive_epochs: usize,
    /// Batch of the auditor's gradient per round.
    pub auditor_batch: usize,
}

impl Default for FairLora {
    fn default() -> Self {
        FairLora {
            lambda_orth: 1.0,
            lambda_adv: 1.0,
            lambda_ent: 1.0,
            unl_mode: UnlMode::Negate,
            unl_beta: 1.0,
            lambda_unl: 1.0,
            adv_mode: AdvMode::Alternate,
            adv_steps: 1,
            adv_lr: 1e-3,
            sensitive_epochs: 2,
            auditor_batch: 64,
        }
    }
}

/// A fairness-aware LoRA experiment (`fairvlm lora ... --config FILE.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LoraExperiment {
    /// Seed of the adapters' initialisation and of the batch order.
    pub seed: u64,
    /// The method.
    pub method: LoraMethod,
    /// The frozen ViT (its weights come from `--base`).
    pub model: LoraModel,
    /// The adapters.
    pub lora: LoraSettings,
    /// The optimiser of both parties.
    pub optim: LoraOptim,
    /// The fairness terms.
    pub fair: FairLora,
}

impl LoraExperiment {
    /// Reads a config with `key=value` overrides (as [`crate::Experiment::from_file_with`]);
    /// unknown keys and bad values are errors naming the key.
    pub fn from_file_with(path: &Path, overrides: &[String]) -> Result<Self> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.into(), source })?;
        Self::from_toml_str_with(&text, &origin, overrides)
    }

    /// Parses a config text with overrides.
    pub fn from_toml_str_with(text: &str, origin: &str, overrides: &[String]) -> Result<Self> {
        let cfg_err = |message: String| Error::Config { origin: origin.into(), message };
        let text = if overrides.is_empty() { text.to_string() } else { crate::config::apply_overrides(text, overrides).map_err(cfg_err)? };
        let exp: LoraExperiment = toml::from_str(&text).map_err(|e| cfg_err(e.to_string()))?;
        exp.validate().map_err(cfg_err)?;
        Ok(exp)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let m = &self.model;
        if m.patch_size == 0 || m.width == 0 || m.layers == 0 || m.heads == 0 || m.width % m.heads != 0 {
            return Err(format!("model: patch_size {}, width {}, layers {}, heads {}: expected positive sizes with width divisible by heads", m.patch_size, m.width, m.layers, m.heads));
        }
        if self.lora.r == 0 || !(0.0..1.0).contains(&self.lora.dropout) {
            return Err(format!("lora.r = {}, lora.dropout = {}: expected r >= 1 and dropout in [0, 1)", self.lora.r, self.lora.dropout));
        }
        if self.lora.targets.is_empty() {
            return Err("lora.targets: expected at least one of q_proj, k_proj, v_proj, out_proj, fc1, fc2 (or q, k, v, qkv, out)".into());
        }
        for (i, t) in self.lora.targets.iter().enumerate() {
            if LoraSettings::expand(t).is_empty() {
                return Err(format!("lora.targets[{i}] = '{t}': expected q_proj, k_proj, v_proj, out_proj, fc1 or fc2 (or q, k, v, qkv, out)"));
            }
        }
        let o = &self.optim;
        if !(o.lr > 0.0 && o.lr.is_finite()) || o.weight_decay < 0.0 || o.batch_size == 0 || o.epochs == 0 {
            return Err(format!("optim: lr {}, weight_decay {}, batch_size {}, epochs {}: expected lr > 0, weight_decay >= 0, batch and epochs >= 1", o.lr, o.weight_decay, o.batch_size, o.epochs));
        }
        let f = &self.fair;
        for (k, v) in [("fair.lambda_orth", f.lambda_orth), ("fair.lambda_adv", f.lambda_adv), ("fair.lambda_ent", f.lambda_ent), ("fair.unl_beta", f.unl_beta), ("fair.lambda_unl", f.lambda_unl)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(format!("{k} = {v}: expected a number >= 0"));
            }
        }
        if !(f.adv_lr > 0.0) || f.adv_steps == 0 || f.sensitive_epochs == 0 || f.auditor_batch == 0 {
            return Err(format!("fair: adv_lr {}, adv_steps {}, sensitive_epochs {}, auditor_batch {}: expected positive values", f.adv_lr, f.adv_steps, f.sensitive_epochs, f.auditor_batch));
        }
        Ok(())
    }

    /// Whether the developer needs the auditor's sensitive adapter (Unl negate, Orth).
    pub fn needs_sensitive_adapter(&self) -> bool {
        matches!(self.method, LoraMethod::Orth) || (self.method == LoraMethod::Unl && self.fair.unl_mode == UnlMode::Negate)
    }

    /// Whether the auditor returns a gradient every step (Adv, Ent, Unl ascent).
    pub fn needs_gradients(&self) -> bool {
        matches!(self.method, LoraMethod::Adv | LoraMethod::Ent) || (self.method == LoraMethod::Unl && self.fair.unl_mode == UnlMode::Ascent)
    }

    /// Whether the auditor first trains its sensitive adapter and head.
    pub fn needs_sensitive_model(&self) -> bool {
        self.needs_sensitive_adapter() || matches!(self.method, LoraMethod::Ent) || (self.method == LoraMethod::Unl && self.fair.unl_mode == UnlMode::Ascent)
    }

    /// The classifier's sizes for images of `image_size` and `classes` outputs.
    pub fn classifier(&self, image_size: usize, classes: usize) -> VitClassifierConfig {
        let m = &self.model;
        VitClassifierConfig::new(VisionTransformerConfig::new(image_size, m.patch_size, m.width, m.layers, m.heads), classes)
    }
}

/// Normalised images `[n, 3, s, s]` of the rows `idx`.
pub fn image_batch<B: Backend>(set: &LabelledImages, idx: &[usize], device: &B::Device) -> Tensor<B, 4> {
    let (s, px) = (set.size, 3 * set.size * set.size);
    let mut x = Vec::with_capacity(idx.len() * px);
    for &i in idx {
        x.extend(set.images[i * px..(i + 1) * px].iter().map(|&v| (v as f32 / 255.0 - 0.5) / 0.5));
    }
    Tensor::from_data(TensorData::new(x, [idx.len(), 3, s, s]), device)
}

fn label_batch<B: Backend>(labels: &[i64], idx: &[usize], device: &B::Device) -> Tensor<B, 1, Int> {
    let v: Vec<i64> = idx.iter().map(|&i| labels[i]).collect();
    Tensor::from_ints(v.as_slice(), device)
}

/// Number of classes of a label column (max + 1), refusing negative labels.
pub fn classes_of(labels: &[i64], name: &str) -> Result<usize> {
    if let Some(bad) = labels.iter().position(|&l| l < 0) {
        return Err(Error::Invalid(format!("label '{name}' of row {bad} is {}: expected classes 0, 1, ...", labels[bad])));
    }
    Ok(labels.iter().copied().max().map_or(0, |m| m as usize + 1).max(2))
}

fn shuffled(n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(rng);
    idx
}

fn adamw<B: AutodiffBackend, M: AutodiffModule<B>>(weight_decay: f64) -> impl Optimizer<M, B> {
    AdamWConfig::new().with_weight_decay(weight_decay as f32).init::<B, M>()
}

/// Pretrains the whole classifier (the stand-in for ImageNet pretraining) on `set`'s `label`
/// and returns it; LoRA then adapts its tower.
pub fn pretrain<B: AutodiffBackend>(exp: &LoraExperiment, set: &LabelledImages, label: &str, epochs: usize, device: &B::Device) -> Result<VitClassifier<B>> {
    let labels = set.label(label)?;
    let classes = classes_of(labels, label)?;
    let mut model = {
        let _guard = init_lock();
        B::seed(device, exp.seed);
        let m = exp.classifier(set.size, classes).init::<B>(device);
        m.visit(&mut Materialize);
        m
    };
    let mut optim = adamw::<B, VitClassifier<B>>(exp.optim.weight_decay);
    let ce = CrossEntropyLossConfig::new().init(device);
    let mut rng = ChaCha8Rng::seed_from_u64(exp.seed);
    for _ in 0..epochs {
        for idx in shuffled(set.len(), &mut rng).chunks(exp.optim.batch_size) {
            let loss = ce.forward(model.forward(image_batch(set, idx, device)), label_batch(labels, idx, device));
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(exp.optim.lr, model, grads);
        }
    }
    Ok(model)
}

/// The developer's or auditor's model: the frozen tower with fresh adapters and a new head.
fn adapted<B: AutodiffBackend>(exp: &LoraExperiment, base: &VitClassifier<B>, classes: usize, seed: u64, device: &B::Device) -> Result<VitClassifier<B>> {
    let _guard = init_lock();
    B::seed(device, seed);
    let head = LinearConfig::new(exp.model.width, classes).init::<B>(device);
    let m = VitClassifier { vit: base.vit.clone(), classifier: head }.with_lora(&exp.lora.config(), &exp.lora.projections(), device).map_err(|e| Error::Invalid(format!("[lora]: {e}")))?;
    m.visit(&mut Materialize);
    Ok(m)
}

/// Adapter weights by module path: what travels between the parties.
pub type Adapters = BTreeMap<String, (Vec<f32>, [usize; 2], Vec<f32>, [usize; 2])>;

/// The adapters of a model as plain values (A, its shape, B, its shape).
pub fn adapter_values<B: Backend>(model: &VitClassifier<B>) -> Adapters {
    model.vit.lora_adapters().into_iter().map(|(p, a)| (p, values_of(a))).collect()
}

/// One adapter's A and B as plain values with their shapes.
fn values_of<B: Backend>(a: &LoraAdapter<B>) -> (Vec<f32>, [usize; 2], Vec<f32>, [usize; 2]) {
    let v = |t: Tensor<B, 2>| -> (Vec<f32>, [usize; 2]) {
        let d = t.dims();
        (t.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default(), d)
    };
    let ((av, ad), (bv, bd)) = (v(a.lora_a.val()), v(a.lora_b.val()));
    (av, ad, bv, bd)
}

fn adapters_to_modules<B: Backend>(values: &Adapters, scaling: f64, device: &B::Device) -> Result<BTreeMap<String, LoraAdapter<B>>> {
    values
        .iter()
        .map(|(p, (a, ad, b, bd))| {
            let ta = Tensor::from_data(TensorData::new(a.clone(), *ad), device);
            let tb = Tensor::from_data(TensorData::new(b.clone(), *bd), device);
            LoraAdapter::from_weights(ta, tb, scaling).map(|m| (p.clone(), m)).map_err(|e| Error::Invalid(format!("adapter {p}: {e}")))
        })
        .collect()
}

/// Writes adapter values as a peft folder.
pub fn save_adapter_values(dir: &Path, values: &Adapters, exp: &LoraExperiment) -> Result<()> {
    let device = Default::default();
    let modules = adapters_to_modules::<burn_flex::Flex>(values, exp.lora.config().scaling(), &device)?;
    let list: Vec<(String, &LoraAdapter<burn_flex::Flex>)> = modules.iter().map(|(p, a)| (p.clone(), a)).collect();
    let projections = exp.lora.projections();
    let targets: Vec<&str> = projections.iter().map(String::as_str).collect();
    lora_fair::save_adapters(dir, &list, &AdapterConfig::new(&exp.lora.config(), &targets, Some("fairvlm lora base"))).map_err(|e| ckpt_err(dir, e))
}

/// Reads a peft adapter folder as values.
pub fn load_adapter_values(dir: &Path) -> Result<Adapters> {
    let device = Default::default();
    let (_, modules) = lora_fair::load_adapters::<burn_flex::Flex>(dir, &device).map_err(|e| ckpt_err(dir, e))?;
    Ok(modules.iter().map(|(p, a)| (p.clone(), values_of(a))).collect())
}

/// Gradients with respect to the developer's adapters, by module path (`A`, `B`), as the
/// auditor returns them.
pub type AdapterGrads = BTreeMap<String, (Vec<f32>, Vec<f32>)>;

/// What the developer asks of the auditor.
pub trait AuditorLink {
    /// The auditor's sensitive adapter (Unl negate, Orth).
    fn sensitive_adapter(&mut self) -> Result<Adapters>;
    /// The gradient of the auditor's term with respect to the developer's adapters, at
    /// `adapters` (Adv, Ent, Unl ascent); `round` numbers the calls from 0.
    fn gradient(&mut self, round: usize, adapters: &Adapters) -> Result<AdapterGrads>;
    /// Tells the auditor that training is over.
    fn finish(&mut self) -> Result<()>;
}

/// The auditor: the sensitive labels, its sensitive adapter and head, the adversary.
pub struct Auditor<B: AutodiffBackend> {
    exp: LoraExperiment,
    base: VitClassifier<B>,
    data: LabelledImages,
    labels: Vec<i64>,
    classes: usize,
    sensitive: Option<VitClassifier<B>>,
    adversary: Linear<B>,
    adversary_optim: burn::optim::adaptor::OptimizerAdaptor<burn::optim::AdamW, Linear<B>, B>,
    rng: ChaCha8Rng,
    device: B::Device,
}

impl<B: AutodiffBackend> Auditor<B> {
    /// An auditor over its pool (`label` is the sensitive attribute's column).
    pub fn new(exp: &LoraExperiment, base: VitClassifier<B>, data: LabelledImages, label: &str, device: &B::Device) -> Result<Self> {
        let labels = data.label(label)?.to_vec();
        let classes = classes_of(&labels, label)?;
        let adversary = {
            let _guard = init_lock();
            B::seed(device, exp.seed ^ 0xad5e);
            let a = LinearConfig::new(exp.model.width, classes).init::<B>(device);
            a.visit(&mut Materialize);
            a
        };
        Ok(Auditor {
            exp: exp.clone(),
            base,
            data,
            labels,
            classes,
            sensitive: None,
            adversary,
            adversary_optim: AdamWConfig::new().init::<B, Linear<B>>(),
            rng: ChaCha8Rng::seed_from_u64(exp.seed ^ 0xa0d1),
            device: device.clone(),
        })
    }

    /// Stage 1: trains the sensitive adapter and head on `(x′, s)`; returns the final mean
    /// cross-entropy of the last epoch.
    pub fn train_sensitive(&mut self) -> Result<f64> {
        let exp = &self.exp;
        let mut model = adapted(exp, &self.base, self.classes, exp.seed ^ 0x5e45, &self.device)?;
        let mut optim = adamw::<B, VitClassifier<B>>(exp.optim.weight_decay);
        let ce = CrossEntropyLossConfig::new().init(&self.device);
        let mut last = 0.0;
        for _ in 0..exp.fair.sensitive_epochs {
            let (mut sum, mut steps) = (0.0, 0usize);
            for idx in shuffled(self.data.len(), &mut self.rng).chunks(exp.optim.batch_size) {
                let loss = ce.forward(model.forward(image_batch(&self.data, idx, &self.device)), label_batch(&self.labels, idx, &self.device));
                sum += loss.clone().into_scalar().elem::<f64>();
                steps += 1;
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(exp.optim.lr, model, grads);
            }
            last = sum / steps.max(1) as f64;
        }
        self.sensitive = Some(model);
        Ok(last)
    }

    /// The sensitive adapter's values (trained on first use).
    pub fn sensitive_adapter(&mut self) -> Result<Adapters> {
        if self.sensitive.is_none() {
            self.train_sensitive()?;
        }
        Ok(self.sensitive.as_ref().map(adapter_values).unwrap_or_default())
    }

    /// The auditor's term's gradient with respect to `adapters` on one batch of its pool.
    pub fn gradient(&mut self, adapters: &Adapters) -> Result<AdapterGrads> {
        // The sensitive model first, so the batch draws below do not depend on whether it was
        // trained up front (two processes) or on first use (one process).
        if self.exp.needs_sensitive_model() && self.sensitive.is_none() {
            self.train_sensitive()?;
        }
        let n = self.data.len();
        let idx: Vec<usize> = (0..self.exp.fair.auditor_batch.min(n)).map(|_| rand::Rng::random_range(&mut self.rng, 0..n)).collect();
        self.gradient_at(adapters, &idx)
    }

    /// [`Auditor::gradient`] on the auditor's rows `idx`.
    pub fn gradient_at(&mut self, adapters: &Adapters, idx: &[usize]) -> Result<AdapterGrads> {
        let exp = self.exp.clone();
        let device = self.device.clone();
        let vit = self.developer_tower(adapters)?;
        let x = image_batch::<B>(&self.data, idx, &device);
        let s = label_batch::<B>(&self.labels, idx, &device);
        let ce = CrossEntropyLossConfig::new().init(&device);
        let features = vit.forward(x);
        let loss = match (exp.method, exp.fair.adv_mode) {
            (LoraMethod::Adv, AdvMode::Alternate) => {
                for _ in 0..exp.fair.adv_steps {
                    let l = ce.forward(self.adversary.forward(features.clone().detach()), s.clone());
                    let g = GradientsParams::from_grads(l.backward(), &self.adversary);
                    self.adversary = self.adversary_optim.step(exp.fair.adv_lr, self.adversary.clone(), g);
                }
                ce.forward(self.adversary.forward(features), s).mul_scalar(-exp.fair.lambda_adv)
            }
            (LoraMethod::Adv, AdvMode::Reversal) => {
                // One backward trains the adversary (minimising) and gives the encoder −λ
                // times its gradient.
                let l = ce.forward(self.adversary.forward(fair_losses::gradient_reversal(features, exp.fair.lambda_adv)), s);
                let mut grads = l.backward();
                let g = GradientsParams::from_module::<B, Linear<B>>(&mut grads, &self.adversary);
                self.adversary = self.adversary_optim.step(exp.fair.adv_lr, self.adversary.clone(), g);
                return collect_adapter_grads(&vit, &mut grads);
            }
            _ => self.fixed_head_loss(features, s)?,
        };
        let mut grads = loss.backward();
        collect_adapter_grads(&vit, &mut grads)
    }

    /// The value of the fixed-head term (Ent, Unl ascent) at `adapters` on the rows `idx`:
    /// what [`Auditor::gradient_at`] differentiates.
    pub fn term_at(&mut self, adapters: &Adapters, idx: &[usize]) -> Result<f64> {
        let vit = self.developer_tower(adapters)?;
        let features = vit.forward(image_batch::<B>(&self.data, idx, &self.device));
        let s = label_batch::<B>(&self.labels, idx, &self.device);
        Ok(self.fixed_head_loss(features, s)?.into_scalar().elem::<f64>())
    }

    fn developer_tower(&self, adapters: &Adapters) -> Result<vlm_backbone::VisionTransformer<B>> {
        let modules = adapters_to_modules::<B>(adapters, self.exp.lora.config().scaling(), &self.device)?;
        self.base.vit.clone().no_grad().with_lora_adapters(modules).map_err(|e| Error::Invalid(format!("developer adapter: {e}")))
    }

    fn fixed_head_loss(&mut self, features: Tensor<B, 2>, s: Tensor<B, 1, Int>) -> Result<Tensor<B, 1>> {
        let exp = self.exp.clone();
        let head = self.sensitive_head()?;
        match exp.method {
            LoraMethod::Ent => Ok(fair_losses::mean_entropy(head.forward(features)).mul_scalar(-exp.fair.lambda_ent)),
            LoraMethod::Unl => Ok(CrossEntropyLossConfig::new().init(&self.device).forward(head.forward(features), s).mul_scalar(-exp.fair.lambda_unl)),
            m => Err(Error::Invalid(format!("method {}: the auditor returns no gradient", m.name()))),
        }
    }

    fn sensitive_head(&mut self) -> Result<Linear<B>> {
        if self.sensitive.is_none() {
            self.train_sensitive()?;
        }
        // Fixed: a copy without gradient, so only the developer's adapters receive one.
        self.sensitive.as_ref().map(|m| m.classifier.clone().no_grad()).ok_or_else(|| Error::Invalid("the auditor has no sensitive head".into()))
    }

    /// The classes of the sensitive attribute.
    pub fn classes(&self) -> usize {
        self.classes
    }
}

fn collect_adapter_grads<B: AutodiffBackend>(vit: &vlm_backbone::VisionTransformer<B>, grads: &mut B::Gradients) -> Result<AdapterGrads> {
    let mut out = AdapterGrads::new();
    for (p, a) in vit.lora_adapters() {
        let get = |t: Tensor<B, 2>| -> Vec<f32> {
            t.grad(grads).map(|g| g.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default()).unwrap_or_else(|| vec![0.0; t.dims()[0] * t.dims()[1]])
        };
        out.insert(p, (get(a.lora_a.val()), get(a.lora_b.val())));
    }
    Ok(out)
}

/// The auditor in the developer's process (the single-process driver).
pub struct LocalAuditor<'a, B: AutodiffBackend>(pub &'a mut Auditor<B>);

impl<B: AutodiffBackend> AuditorLink for LocalAuditor<'_, B> {
    fn sensitive_adapter(&mut self) -> Result<Adapters> {
        self.0.sensitive_adapter()
    }
    fn gradient(&mut self, _round: usize, adapters: &Adapters) -> Result<AdapterGrads> {
        self.0.gradient(adapters)
    }
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// What a developer's run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeveloperLog {
    /// The method.
    pub method: LoraMethod,
    /// Mean task cross-entropy per epoch.
    pub task_loss: Vec<f64>,
    /// Mean orthogonality penalty per epoch (Orth).
    pub orth_penalty: Vec<f64>,
    /// Trainable scalars (adapters and head).
    pub trainable_parameters: usize,
    /// Scalars of the whole model.
    pub total_parameters: usize,
    /// Seconds of training.
    pub seconds: f64,
}

fn add_grads<B: AutodiffBackend>(grads: &mut GradientsParams, model: &VitClassifier<B>, extra: &AdapterGrads) -> Result<()> {
    for (p, a) in model.vit.lora_adapters() {
        let Some((ga, gb)) = extra.get(&p) else { continue };
        for (param, g) in [(&a.lora_a, ga), (&a.lora_b, gb)] {
            let dims = param.lazy_shape().dims::<2>();
            if g.len() != dims[0] * dims[1] {
                return Err(Error::Invalid(format!("auditor gradient for {p}: {} values for a {dims:?} tensor", g.len())));
            }
            let device = param.val().device();
            let add = Tensor::<B::InnerBackend, 2>::from_data(TensorData::new(g.clone(), dims), &device);
            let sum = match grads.remove::<B::InnerBackend, 2>(param.id) {
                Some(own) => own + add,
                None => add,
            };
            grads.register(param.id, sum);
        }
    }
    Ok(())
}

/// The developer's fine-tuning with the configured method; `base` is the pretrained
/// classifier (its tower is frozen and adapted), `label` the task column of `data`.
pub fn train_developer<B: AutodiffBackend>(
    exp: &LoraExperiment,
    base: &VitClassifier<B>,
    data: &LabelledImages,
    label: &str,
    link: &mut dyn AuditorLink,
    device: &B::Device,
) -> Result<(VitClassifier<B>, DeveloperLog, Option<Adapters>)> {
    let start = Instant::now();
    let labels = data.label(label)?;
    let classes = classes_of(labels, label)?;
    let sensitive = if exp.needs_sensitive_adapter() { Some(link.sensitive_adapter()?) } else { None };
    let base = match (exp.method, &sensitive) {
        (LoraMethod::Unl, Some(s)) => negated_base(exp, base, s, device)?,
        _ => base.clone(),
    };
    let orth_targets: Option<BTreeMap<String, (Tensor<B, 2>, Tensor<B, 2>)>> = match (exp.method, &sensitive) {
        (LoraMethod::Orth, Some(s)) => Some(
            s.iter()
                .map(|(p, (a, ad, b, bd))| (p.clone(), (Tensor::from_data(TensorData::new(a.clone(), *ad), device), Tensor::from_data(TensorData::new(b.clone(), *bd), device))))
                .collect(),
        ),
        _ => None,
    };
    let mut model = adapted(exp, &base, classes, exp.seed, device)?;
    let total_parameters = model.num_params();
    let trainable_parameters = model.vit.lora_adapters().iter().map(|(_, a)| a.lora_a.lazy_shape().num_elements() + a.lora_b.lazy_shape().num_elements()).sum::<usize>()
        + model.classifier.num_params();
    let mut optim = adamw::<B, VitClassifier<B>>(exp.optim.weight_decay);
    let ce = CrossEntropyLossConfig::new().init(device);
    let mut rng = ChaCha8Rng::seed_from_u64(exp.seed ^ 0xde7e);
    let mut log = DeveloperLog { method: exp.method, task_loss: vec![], orth_penalty: vec![], trainable_parameters, total_parameters, seconds: 0.0 };
    let mut round = 0;
    for _ in 0..exp.optim.epochs {
        let (mut sum, mut orth_sum, mut steps) = (0.0, 0.0, 0usize);
        for idx in shuffled(data.len(), &mut rng).chunks(exp.optim.batch_size) {
            let task = ce.forward(model.forward(image_batch(data, idx, device)), label_batch(labels, idx, device));
            sum += task.clone().into_scalar().elem::<f64>();
            let mut loss = task;
            if let Some(targets) = &orth_targets {
                let pairs: Vec<fair_losses::AdapterPair<B>> = model
                    .vit
                    .lora_adapters()
                    .into_iter()
                    .filter_map(|(p, a)| {
                        targets.get(&p).map(|(sa, sb)| fair_losses::AdapterPair { task_a: a.lora_a.val(), task_b: a.lora_b.val(), sensitive_a: sa.clone(), sensitive_b: sb.clone() })
                    })
                    .collect();
                let penalty = fair_losses::lora_orthogonality(&pairs)?;
                orth_sum += penalty.clone().into_scalar().elem::<f64>();
                loss = loss + penalty.mul_scalar(exp.fair.lambda_orth);
            }
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            if exp.needs_gradients() {
                let g = link.gradient(round, &adapter_values(&model))?;
                add_grads(&mut grads, &model, &g)?;
                round += 1;
            }
            model = optim.step(exp.optim.lr, model, grads);
            steps += 1;
        }
        log.task_loss.push(sum / steps.max(1) as f64);
        if orth_targets.is_some() {
            log.orth_penalty.push(orth_sum / steps.max(1) as f64);
        }
    }
    link.finish()?;
    log.seconds = start.elapsed().as_secs_f64();
    let negated = if exp.method == LoraMethod::Unl { sensitive } else { None };
    Ok((model, log, negated))
}

/// Unl's base, `W₀′ = W₀ − β·ΔW_S`: the sensitive adapter attached with scaling `−β·α/r` and
/// merged into the frozen weights.
pub fn negated_base<B: Backend>(exp: &LoraExperiment, base: &VitClassifier<B>, sensitive: &Adapters, device: &B::Device) -> Result<VitClassifier<B>> {
    let modules = adapters_to_modules::<B>(sensitive, -exp.fair.unl_beta * exp.lora.config().scaling(), device)?;
    let vit = base.vit.clone().with_lora_adapters(modules).map_err(|e| Error::Invalid(format!("sensitive adapter: {e}")))?;
    Ok(VitClassifier { vit: vit.merge_and_unload(), classifier: base.classifier.clone() })
}

/// The audit of a fine-tuned model on a set holding task and sensitive labels: utility
/// (accuracy, precision, recall, FPR) overall and per group, and the parity ratios.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoraAudit {
    /// Rows.
    pub n: usize,
    /// Overall accuracy.
    pub accuracy: f64,
    /// Overall precision.
    pub precision: f64,
    /// Overall recall (TPR).
    pub recall: f64,
    /// Overall false positive rate.
    pub fpr: f64,
    /// Overall ROC AUC.
    pub auc: Option<f64>,
    /// Demographic parity ratio (min / max selection rate).
    pub dp_ratio: Option<f64>,
    /// FPR-parity ratio.
    pub fpr_ratio: Option<f64>,
    /// TPR (equal-opportunity) ratio.
    pub tpr_ratio: Option<f64>,
    /// Per group: accuracy, precision, recall, FPR, selection rate.
    pub groups: BTreeMap<String, [f64; 5]>,
}

/// Scores (probability of class 1) of a binary classifier on a set.
pub fn scores<B: Backend>(model: &VitClassifier<B>, set: &LabelledImages, device: &B::Device) -> Vec<f64> {
    let mut out = Vec::with_capacity(set.len());
    let all: Vec<usize> = (0..set.len()).collect();
    for idx in all.chunks(256) {
        let p = burn::tensor::activation::softmax(model.forward(image_batch(set, idx, device)), 1);
        let n = idx.len();
        out.extend(p.slice([0..n, 1..2]).into_data().convert::<f64>().to_vec::<f64>().unwrap_or_default());
    }
    out
}

/// Predicted classes (argmax) of a classifier on a set.
pub fn scores_multiclass<B: Backend>(model: &VitClassifier<B>, set: &LabelledImages, device: &B::Device) -> Vec<usize> {
    let all: Vec<usize> = (0..set.len()).collect();
    let mut out = Vec::with_capacity(set.len());
    for idx in all.chunks(256) {
        let pred = model.forward(image_batch(set, idx, device)).argmax(1);
        out.extend(pred.into_data().convert::<i64>().to_vec::<i64>().unwrap_or_default().into_iter().map(|p| p as usize));
    }
    out
}

/// A Markdown table of audits (one row per named model): utility, then the parity ratios.
pub fn audit_markdown(rows: &[(String, LoraAudit)]) -> String {
    let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
    let mut md = String::from("| model | accuracy | precision | recall | FPR | AUC | DP ratio | FPR ratio | TPR ratio |\n|---|---|---|---|---|---|---|---|---|\n");
    for (name, a) in rows {
        md.push_str(&format!(
            "| {name} | {:.4} | {:.4} | {:.4} | {:.4} | {} | {} | {} | {} |\n",
            a.accuracy, a.precision, a.recall, a.fpr, f(a.auc), f(a.dp_ratio), f(a.fpr_ratio), f(a.tpr_ratio)
        ));
    }
    md
}

/// Audits scores against `task` (binary) and `sensitive` labels at threshold 0.5 (fair-metrics,
/// fairlearn's definitions).
pub fn audit(scores: &[f64], task: &[i64], sensitive: &[i64]) -> Result<LoraAudit> {
    if task.iter().any(|&t| t != 0 && t != 1) {
        return Err(Error::Invalid("the audit needs a binary task label (0 or 1)".into()));
    }
    let labels: Vec<bool> = task.iter().map(|&t| t == 1).collect();
    let groups: Vec<String> = sensitive.iter().map(|s| s.to_string()).collect();
    let attr = Attribute::from_values("sensitive", &groups)?;
    let r = Report::compute(&Predictions::new(labels, scores.to_vec())?, &[attr], &ReportOptions::default())?;
    let a = &r.attributes["sensitive"];
    let o = &r.overall;
    Ok(LoraAudit {
        n: r.n,
        accuracy: o.accuracy.unwrap_or(f64::NAN),
        precision: o.precision,
        recall: o.tpr,
        fpr: o.fpr,
        auc: o.auc,
        dp_ratio: a.dpr,
        fpr_ratio: a.fpr_ratio,
        tpr_ratio: a.eopr,
        groups: a.groups.iter().map(|(k, g)| (k.clone(), [g.accuracy.unwrap_or(f64::NAN), g.precision, g.tpr, g.fpr, g.selection_rate.unwrap_or(f64::NAN)])).collect(),
    })
}

/// Saves the developer's result: the adapters as a peft folder (`adapter/`), the head
/// (`head.safetensors`), the config (`lora.toml`) and, for Unl negate, the sensitive adapter
/// that was subtracted from the base (`negated/`), so the model can be rebuilt from the base.
pub fn save_developer<B: Backend>(dir: &Path, exp: &LoraExperiment, model: &VitClassifier<B>, negated: Option<&Adapters>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    save_adapter_values(&dir.join("adapter"), &adapter_values(model), exp)?;
    if let Some(n) = negated {
        save_adapter_values(&dir.join("negated"), n, exp)?;
    }
    let cfg = dir.join("lora.toml");
    std::fs::write(&cfg, toml::to_string_pretty(exp).unwrap_or_default()).map_err(io_err(&cfg))?;
    save_safetensors(&model.classifier, &dir.join("head.safetensors"))
}

/// Rebuilds a developer's model from the base and the folder [`save_developer`] wrote.
pub fn load_developer<B: Backend>(dir: &Path, exp: &LoraExperiment, base: &VitClassifier<B>, classes: usize, device: &B::Device) -> Result<VitClassifier<B>> {
    let base = if dir.join("negated").is_dir() { negated_base(exp, base, &load_adapter_values(&dir.join("negated"))?, device)? } else { base.clone() };
    let (_, modules) = lora_fair::load_adapters::<B>(&dir.join("adapter"), device).map_err(|e| ckpt_err(dir, e))?;
    let vit = base.vit.no_grad().with_lora_adapters(modules).map_err(|e| ckpt_err(dir, e))?;
    let head = load_safetensors(LinearConfig::new(exp.model.width, classes).init::<B>(device), &dir.join("head.safetensors"))?;
    Ok(VitClassifier { vit, classifier: head })
}

/// What a base checkpoint needs to be rebuilt: written beside it as `<base>.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseInfo {
    /// Image side.
    pub image_size: usize,
    /// Classes of the pretraining head.
    pub classes: usize,
}

fn sidecar(path: &Path) -> PathBuf {
    path.with_extension("json")
}

/// Saves a pretrained base classifier and its sizes.
pub fn save_base<B: Backend>(path: &Path, model: &VitClassifier<B>, info: BaseInfo) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    save_safetensors(model, path)?;
    let side = sidecar(path);
    std::fs::write(&side, serde_json::to_string_pretty(&info).unwrap_or_default()).map_err(io_err(&side))
}

/// Loads a base saved by [`save_base`]; the model sizes come from `exp`, the image size and
/// head from the sidecar.
pub fn load_base<B: Backend>(exp: &LoraExperiment, path: &Path, device: &B::Device) -> Result<(VitClassifier<B>, BaseInfo)> {
    let side = sidecar(path);
    let text = std::fs::read_to_string(&side).map_err(io_err(&side))?;
    let info: BaseInfo = serde_json::from_str(&text).map_err(|e| ckpt_err(&side, e))?;
    let model = exp.classifier(info.image_size, info.classes).init::<B>(device);
    Ok((load_safetensors(model, path)?, info))
}

// ---------------------------------------------------------------------------------------
// Two processes sharing a folder.

/// The exchange folder's layout: `sensitive/` (peft folder of the auditor's sensitive
/// adapter), `rounds/<n>/adapter/` (the developer's adapters at round n),
/// `rounds/<n>/gradient.safetensors` (the auditor's answer), `done` (the developer finished).
pub struct FileLink {
    dir: PathBuf,
    exp: LoraExperiment,
    timeout: Duration,
}

impl FileLink {
    /// A link through `dir`; each wait gives up after `timeout`.
    pub fn new(dir: &Path, exp: &LoraExperiment, timeout: Duration) -> Self {
        FileLink { dir: dir.to_owned(), exp: exp.clone(), timeout }
    }
}

fn wait_for(path: &Path, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > timeout {
            return Err(ckpt_err(path, format!("the other party wrote nothing in {:.0} s", timeout.as_secs_f64())));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Writes a file's content under a temporary name and renames it, so the reader never sees it
/// half-written.
fn publish(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = path.with_extension("partial");
    write(&tmp)?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

fn round_dir(dir: &Path, round: usize) -> PathBuf {
    dir.join("rounds").join(format!("{round:06}"))
}

fn write_grads(path: &Path, grads: &AdapterGrads, adapters: &Adapters) -> Result<()> {
    let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (p, (ga, gb)) in grads {
        let Some((_, ad, _, bd)) = adapters.get(p) else { continue };
        let bytes = |v: &Vec<f32>| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        buffers.push((format!("base_model.model.{p}.lora_A.weight"), ad.to_vec(), bytes(ga)));
        buffers.push((format!("base_model.model.{p}.lora_B.weight"), bd.to_vec(), bytes(gb)));
    }
    let views = buffers
        .iter()
        .map(|(k, s, b)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (k.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| ckpt_err(path, e))?;
    safetensors::serialize_to_file(views, None, path).map_err(|e| ckpt_err(path, e))
}

fn read_grads(path: &Path) -> Result<AdapterGrads> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| ckpt_err(path, e))?;
    let mut out = AdapterGrads::new();
    for name in st.names() {
        let Some(p) = name.strip_prefix("base_model.model.").and_then(|n| n.strip_suffix(".lora_A.weight")) else { continue };
        let f = |key: &str| -> Result<Vec<f32>> {
            let v = st.tensor(key).map_err(|e| ckpt_err(path, format!("{key}: {e}")))?;
            Ok(v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        };
        out.insert(p.to_string(), (f(name)?, f(&format!("base_model.model.{p}.lora_B.weight"))?));
    }
    Ok(out)
}

impl AuditorLink for FileLink {
    fn sensitive_adapter(&mut self) -> Result<Adapters> {
        let dir = self.dir.join("sensitive");
        wait_for(&dir.join("ready"), self.timeout)?;
        load_adapter_values(&dir)
    }

    fn gradient(&mut self, round: usize, adapters: &Adapters) -> Result<AdapterGrads> {
        let rd = round_dir(&self.dir, round);
        std::fs::create_dir_all(&rd).map_err(io_err(&rd))?;
        let exp = self.exp.clone();
        publish(&rd.join("adapter"), |tmp| save_adapter_values(tmp, adapters, &exp))?;
        let g = rd.join("gradient.safetensors");
        wait_for(&g, self.timeout)?;
        let grads = read_grads(&g)?;
        // Nothing of a finished round is needed again.
        std::fs::remove_dir_all(&rd).map_err(io_err(&rd))?;
        Ok(grads)
    }

    fn finish(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        std::fs::write(self.dir.join("done"), b"").map_err(io_err(&self.dir))
    }
}

/// The auditor's side of [`FileLink`]: publishes the sensitive adapter when the method needs
/// it, then answers gradient rounds until the developer writes `done`.
pub fn serve_files<B: AutodiffBackend>(auditor: &mut Auditor<B>, dir: &Path, timeout: Duration) -> Result<usize> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let exp = auditor.exp.clone();
    if exp.needs_sensitive_model() {
        let values = auditor.sensitive_adapter()?;
        if exp.needs_sensitive_adapter() {
            let s = dir.join("sensitive");
            save_adapter_values(&s, &values, &exp)?;
            std::fs::write(s.join("ready"), b"").map_err(io_err(&s))?;
        }
    }
    // Everything the auditor reads is in memory now: the developer may start.
    std::fs::write(dir.join("auditor-ready"), b"").map_err(io_err(dir))?;
    let mut rounds = 0;
    if !exp.needs_gradients() {
        return Ok(rounds);
    }
    let mut last = Instant::now();
    loop {
        let rd = round_dir(dir, rounds);
        let adapter = rd.join("adapter");
        if adapter.exists() {
            let values = load_adapter_values(&adapter)?;
            let grads = auditor.gradient(&values)?;
            publish(&rd.join("gradient.safetensors"), |tmp| write_grads(tmp, &grads, &values))?;
            rounds += 1;
            last = Instant::now();
        } else if dir.join("done").exists() {
            return Ok(rounds);
        } else if last.elapsed() > timeout {
            return Err(ckpt_err(&adapter, format!("the developer wrote nothing in {:.0} s", timeout.as_secs_f64())));
        } else {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Preparing the parties' files.

/// The files a study hands out: `pretrain.npz` (the stand-in for ImageNet, label `class`),
/// `developer.npz` (label `task` only), `auditor.npz` (label `sensitive` only), disjoint pools
/// of one training split, and `audit.npz` (`task` and `sensitive`, the auditor's test set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedSizes {
    /// Images of each file, in the order above.
    pub pretrain: usize,
    /// Developer's pool.
    pub developer: usize,
    /// Auditor's pool.
    pub auditor: usize,
    /// Audit set.
    pub audit: usize,
}

fn write_parties(out: &Path, pretrain: &LabelledImages, train: &LabelledImages, audit: &LabelledImages, auditor_fraction: f64, seed: u64) -> Result<PreparedSizes> {
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let (dev_idx, aud_idx) = fair_data::disjoint_pools(train.len(), auditor_fraction, seed);
    let developer = train.subset(&dev_idx).with_labels(&[("task", "task")])?;
    let auditor = train.subset(&aud_idx).with_labels(&[("sensitive", "sensitive")])?;
    let audit = audit.with_labels(&[("task", "task"), ("sensitive", "sensitive")])?;
    pretrain.write(&out.join("pretrain.npz"))?;
    developer.write(&out.join("developer.npz"))?;
    auditor.write(&out.join("auditor.npz"))?;
    audit.write(&out.join("audit.npz"))?;
    Ok(PreparedSizes { pretrain: pretrain.len(), developer: developer.len(), auditor: auditor.len(), audit: audit.len() })
}

/// Fashion-MNIST (the IDX files in `root`, e.g. Debian's `/usr/share/datasets/fashion-mnist`)
/// with an injected sensitive attribute: pretraining on the classes outside the task, the
/// tinted task on the training split for the parties and on the test split for the audit.
pub fn prepare_fashion_mnist(root: &Path, out: &Path, tint: &fair_data::TintConfig, auditor_fraction: f64, max_pretrain: Option<usize>) -> Result<PreparedSizes> {
    let read = |name: &str| -> Result<(Vec<usize>, Vec<u8>)> {
        let gz = root.join(format!("{name}.gz"));
        let path = if gz.is_file() { gz } else { root.join(name) };
        Ok(fair_data::read_idx(&path)?)
    };
    let (_, train_x) = read("train-images-idx3-ubyte")?;
    let (_, train_y) = read("train-labels-idx1-ubyte")?;
    let (_, test_x) = read("t10k-images-idx3-ubyte")?;
    let (_, test_y) = read("t10k-labels-idx1-ubyte")?;
    let task_classes: Vec<i64> = tint.positive.iter().chain(&tint.negative).copied().collect();
    let others: Vec<i64> = (0..10).filter(|c| !task_classes.contains(c)).collect();
    let plain = fair_data::TintConfig { positive: others.clone(), negative: vec![], tint: 0.0, correlation: 1.0, ..tint.clone() };
    let mut pretrain = fair_data::tinted_fashion_mnist(&train_x, &train_y, &plain)?;
    // Classes renumbered 0.. for the pretraining head.
    let class: Vec<i64> = pretrain.label("class")?.iter().map(|c| others.iter().position(|o| o == c).unwrap_or(0) as i64).collect();
    pretrain.labels = [("class".to_string(), class)].into();
    if let Some(m) = max_pretrain.filter(|&m| m < pretrain.len()) {
        let idx: Vec<usize> = (0..m).collect();
        pretrain = pretrain.subset(&idx);
    }
    let train = fair_data::tinted_fashion_mnist(&train_x, &train_y, tint)?;
    let audit = fair_data::tinted_fashion_mnist(&test_x, &test_y, &fair_data::TintConfig { seed: tint.seed ^ 0x7e57, ..tint.clone() })?;
    write_parties(out, &pretrain, &train, &audit, auditor_fraction, tint.seed)
}

/// The synthetic fundus benchmark (docs/datasets.md) as LoRA parties: pretraining on glaucoma
/// from an independent draw without group effects, the task glaucoma and the sensitive
/// attribute `sensitive` on the default benchmark's training split (parties) and test split
/// (audit).
pub fn prepare_fundus(out: &Path, synth: &fair_data::SynthConfig, sensitive: &str, size: usize, auditor_fraction: f64) -> Result<PreparedSizes> {
    let clean = fair_data::SynthConfig { seed: synth.seed ^ 0x9e37, effects: vec![], ..synth.clone() };
    let [p0, p1, p2] = clean.generate()?;
    let pre: Vec<_> = p0.into_iter().chain(p1).chain(p2).collect();
    let mut pretrain = fair_data::fundus_images(&pre, size);
    pretrain = pretrain.with_labels(&[("glaucoma", "class")])?;
    let [train, _, test] = synth.generate()?;
    let as_parties = |s: &[fair_data::Sample]| -> Result<LabelledImages> { Ok(fair_data::fundus_images(s, size).with_labels(&[("glaucoma", "task"), (sensitive, "sensitive")])?) };
    write_parties(out, &pretrain, &as_parties(&train)?, &as_parties(&test)?, auditor_fraction, synth.seed)
}

/// UTKFace or CelebA (an index from [`fair_data::load_utkface`] / [`fair_data::load_celeba`]) as
/// LoRA parties: images resized to `size`, `task` and `sensitive` label names; CelebA's
/// official split decides train and test where it exists, else the last `test_fraction` of
/// the images (sorted by name) is the audit set. There is no separate pretraining set: the
/// base comes from elsewhere (`pretrain.npz` holds the parties' training images with the task
/// label, for a from-scratch base).
pub fn prepare_faces(index: &fair_data::FaceIndex, out: &Path, task: &str, sensitive: &str, size: usize, test_fraction: f64, auditor_fraction: f64, seed: u64) -> Result<PreparedSizes> {
    let mut train = LabelledImages { size, ..Default::default() };
    let mut test = LabelledImages { size, ..Default::default() };
    let n = index.records.len();
    let cut = n - ((n as f64 * test_fraction).round() as usize).min(n);
    for (i, r) in index.records.iter().enumerate() {
        let is_test = match r.split {
            Some(s) => s == fair_data::Split::Test,
            None => i >= cut,
        };
        let dst = if is_test { &mut test } else { &mut train };
        // Channel-last from the decoder, channel-major here.
        let hwc = fair_data::load_face_image(&r.path, size)?;
        for c in 0..3 {
            dst.images.extend(hwc.iter().skip(c).step_by(3));
        }
        dst.labels.entry("task".into()).or_default().push(r.label(task)?);
        dst.labels.entry("sensitive".into()).or_default().push(r.label(sensitive)?);
    }
    let pretrain = train.with_labels(&[("task", "class")])?;
    write_parties(out, &pretrain, &train, &test, auditor_fraction, seed)
}
