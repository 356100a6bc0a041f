//! The LoRA experiment file: the method, the frozen ViT, the adapters, the optimiser and
//! the fairness terms (papers.md 5.2).

use std::path::Path;

use lora_fair::LoraConfig;
use serde::{Deserialize, Serialize};
use vlm_backbone::{VisionTransformerConfig, VitClassifierConfig};

use crate::error::{Error, Result};

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

    pub(crate) fn config(&self) -> LoraConfig {
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
            return Err(format!(
                "model: patch_size {}, width {}, layers {}, heads {}: expected positive sizes with width divisible by heads",
                m.patch_size, m.width, m.layers, m.heads
            ));
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
            return Err(format!(
                "optim: lr {}, weight_decay {}, batch_size {}, epochs {}: expected lr > 0, weight_decay >= 0, batch and epochs >= 1",
                o.lr, o.weight_decay, o.batch_size, o.epochs
            ));
        }
        let f = &self.fair;
        for (k, v) in [
            ("fair.lambda_orth", f.lambda_orth),
            ("fair.lambda_adv", f.lambda_adv),
            ("fair.lambda_ent", f.lambda_ent),
            ("fair.unl_beta", f.unl_beta),
            ("fair.lambda_unl", f.lambda_unl),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(format!("{k} = {v}: expected a number >= 0"));
            }
        }
        let positive_lr = f.adv_lr > 0.0; // false for NaN too
        if !positive_lr || f.adv_steps == 0 || f.sensitive_epochs == 0 || f.auditor_batch == 0 {
            return Err(format!(
                "fair: adv_lr {}, adv_steps {}, sensitive_epochs {}, auditor_batch {}: expected positive values",
                f.adv_lr, f.adv_steps, f.sensitive_epochs, f.auditor_batch
            ));
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
/// LoRA's numerical guard, as the main trainer's: a non-finite loss stops the training with
/// the settings that can cause it (`causes`: key and value).
pub(crate) fn check_finite(what: &str, loss: f64, epoch: usize, causes: &[(&str, f64)]) -> crate::Result<()> {
    if loss.is_finite() {
        return Ok(());
    }
    let settings: Vec<String> = causes.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    Err(crate::Error::Diverged(format!("{what}, epoch {epoch}: the loss is {loss}; the settings that can cause it: {} (lower the step or the weights)", settings.join(", "))))
}
