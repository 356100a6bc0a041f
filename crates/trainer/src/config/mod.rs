//! The experiment file (TOML). Every field has a default; unknown keys and bad values are
//! errors that name the key. The defaults of `[optim]` and `[fairclip]` are the papers' (the
//! FairCLIP scripts'); the shipped `configs/benchmark-*.toml` override what training from
//! scratch on the CPU needs.

mod data;
mod eval;
mod methods;
mod model;
mod optim;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use data::{DataConfig, DataSource, OnErrorConfig};
pub use eval::{EvalConfig, SelectOn};
pub use methods::*;
pub use model::{ModelConfig, Preset, TextTower, VisionTower};
pub use optim::{OptimConfig, OptimizerKind};

use crate::error::{Error, Result};

/// A whole experiment.
///
/// ```
/// let exp = trainer::Experiment::from_toml_str("method = \"fairclip\"\n[optim]\nepochs = 3\n", "inline")?;
/// assert_eq!(exp.optim.lr, 1e-5); // FairCLIP's script
/// assert_eq!(exp.fairclip.lambda, 1e-6);
/// assert!(trainer::Experiment::from_toml_str("[optim]\nlearning_rate = 1\n", "inline").is_err());
/// # Ok::<(), trainer::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Experiment {
    /// Seed of the data order, the initialisation and the synthetic data
    /// ([`Experiment::synthetic`]).
    pub seed: u64,
    /// The method.
    pub method: Method,
    /// Data.
    pub data: DataConfig,
    /// Model sizes.
    pub model: ModelConfig,
    /// Optimiser and schedule.
    pub optim: OptimConfig,
    /// FairCLIP's regulariser (method `fairclip`).
    pub fairclip: FairClipConfig,
    /// Evaluation and model selection.
    pub eval: EvalConfig,
    /// FO-MoE layers (methods `fair-moe`, `fo-moe`).
    pub moe: vlm_backbone::FoMoeSettings,
    /// The Fairness-Oriented Loss (method `fair-moe`).
    pub fol: FolConfig,
    /// MultiFair's multimodal classifier (methods `late-fusion`, `ogm-ge`, `multifair`).
    pub multimodal: MultimodalConfig,
    /// OGM-GE's modulation (method `ogm-ge`).
    pub ogm: gradmod::OgmGe,
    /// MultiFair's modulation (method `multifair`).
    pub multifair: gradmod::MultiFairSettings,
}

impl Default for Experiment {
    fn default() -> Self {
        Self {
            seed: 0,
            method: Method::Clip,
            data: DataConfig::default(),
            model: ModelConfig::default(),
            optim: OptimConfig::default(),
            fairclip: FairClipConfig::default(),
            eval: EvalConfig::default(),
            moe: vlm_backbone::FoMoeSettings::default(),
            fol: FolConfig::default(),
            multimodal: MultimodalConfig::default(),
            ogm: gradmod::OgmGe::default(),
            multifair: gradmod::MultiFairSettings::default(),
        }
    }
}

/// Training methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// CLIP fine-tuning with the symmetric InfoNCE loss (FairCLIP's "CLIP" rows).
    Clip,
    /// CLIP loss plus λ · Σ_g Sinkhorn(batch similarities, group-g similarities).
    Fairclip,
    /// Fair-MoE: the FO-MoE model (`[moe]`) trained with the Fairness-Oriented Loss (`[fol]`);
    /// the attribute, group batches and distance term come from `[fairclip]`.
    FairMoe,
    /// The FO-MoE model trained with the CLIP loss only (the paper's "w/o FOL" ablation).
    FoMoe,
    /// MultiFair's fundus + text classifier (`[multimodal]`) trained with cross-entropy, no
    /// modulation: the plain multimodal baseline.
    LateFusion,
    /// The same classifier with OGM-GE's modality-level modulation (`[ogm]`; needs
    /// `multimodal.fusion = "concat"`, whose halves give the unimodal logits).
    OgmGe,
    /// MultiFair: modality-level (CGGM-style) and group-level gradient modulation
    /// (`[multifair]`).
    Multifair,
}

impl Method {
    /// Every method, in the order the docs list them.
    pub const ALL: [Method; 7] = [Method::Clip, Method::Fairclip, Method::FairMoe, Method::FoMoe, Method::LateFusion, Method::OgmGe, Method::Multifair];

    /// The method named `name` (as in configs: `clip`, `fair-moe`, ...).
    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The name used in files and tables.
    pub fn name(self) -> &'static str {
        match self {
            Method::Clip => "clip",
            Method::Fairclip => "fairclip",
            Method::FairMoe => "fair-moe",
            Method::FoMoe => "fo-moe",
            Method::LateFusion => "late-fusion",
            Method::OgmGe => "ogm-ge",
            Method::Multifair => "multifair",
        }
    }

    /// Whether the method trains the multimodal classifier (else the CLIP dual encoder).
    pub fn is_multimodal(self) -> bool {
        matches!(self, Method::LateFusion | Method::OgmGe | Method::Multifair)
    }
}

impl Experiment {
    /// Parses TOML into an experiment without validating it (`crate::experiment` validates
    /// the common sections and the active method's).
    pub(crate) fn parse(text: &str, origin: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Config { origin: origin.into(), message: moved_key_hint(&e.to_string()) })
    }

    /// Reads a config file's text with `key=value` overrides applied.
    pub(crate) fn read_text(path: &Path, overrides: &[String]) -> Result<String> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.into(), source })?;
        if overrides.is_empty() {
            return Ok(text);
        }
        apply_overrides(&text, overrides).map_err(|message| Error::Config { origin, message })
    }

    /// Makes the data and checkpoint paths absolute, relative to the config file's folder, so
    /// that the copy saved in a run folder still points at them.
    pub(crate) fn resolve_paths(&mut self, config: &Path) {
        let base = config.parent().unwrap_or(Path::new("."));
        let m = &mut self.model;
        for p in [&mut self.data.root, &mut self.data.summary_csv, &mut m.vision.weights, &mut m.text.weights, &mut m.text.tokenizer].into_iter().flatten() {
            if p.is_relative() {
                let joined = base.join(&*p);
                *p = std::path::absolute(&joined).unwrap_or(joined);
            }
        }
    }

    /// The config as TOML (saved in every run folder).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks that `attribute` (the value of `key`) names a sensitive attribute of the data:
    /// one of `data.folder.attributes` for source `folder`, else one of FairVLMed's.
    pub(crate) fn check_attribute(&self, key: &str, attribute: &str) -> std::result::Result<(), String> {
        let known: Vec<&str> = match self.data.source {
            DataSource::Folder => self.data.folder.attributes.iter().map(String::as_str).collect(),
            _ => fair_data::ATTRIBUTES.to_vec(),
        };
        if known.contains(&attribute) {
            Ok(())
        } else {
            Err(format!("{key} = '{attribute}': expected one of {}", known.join(", ")))
        }
    }

    /// The number of groups of `attribute` when the config alone tells (FairVLMed's
    /// attributes, or a folder attribute with a value order); else the data tells, when
    /// loaded ([`crate::ExperimentData::attribute_groups`]).
    pub(crate) fn attribute_groups(&self, attribute: &str) -> Option<usize> {
        match self.data.source {
            DataSource::Folder => self.data.folder.order.get(attribute).map(Vec::len),
            _ => fair_data::ATTRIBUTES.iter().position(|a| *a == attribute).map(|i| fair_data::ATTRIBUTE_VALUES[i].len()),
        }
    }

    /// The synthetic benchmark this run draws: `[data.synthetic]` with the seed
    /// `seed XOR data.synthetic.seed`, so that every run seed draws its own subjects (and
    /// `data.synthetic.seed`, 0 by default, picks another draw under the same run seeds; equal
    /// to `seed`, it pins the draw of seed 0).
    ///
    /// ```
    /// let mut exp = trainer::Experiment::default();
    /// exp.seed = 3;
    /// assert_eq!(exp.synthetic().seed, 3);
    /// exp.data.synthetic.seed = 3;
    /// assert_eq!(exp.synthetic().seed, 0);
    /// ```
    pub fn synthetic(&self) -> fair_data::SynthConfig {
        fair_data::SynthConfig { seed: self.seed ^ self.data.synthetic.seed, ..self.data.synthetic.clone() }
    }

    /// The multimodal methods' OCT pairing (FairVision data) rather than fundus + note.
    pub fn oct_pairing(&self) -> bool {
        self.method.is_multimodal() && self.multimodal.pairing == PairingConfig::Oct
    }

    /// Checks the sections every method reads: `[optim]`, `[data]`, `[model]`, `[eval]`.
    pub(crate) fn validate_common(&self) -> std::result::Result<(), String> {
        let o = &self.optim;
        positive("optim.lr", o.lr)?;
        positive("optim.eps", o.eps)?;
        if let Some(lr) = o.text_lr {
            positive("optim.text_lr", lr)?;
        }
        for (i, b) in o.betas.iter().enumerate() {
            if !(0.0..1.0).contains(b) {
                return Err(format!("optim.betas[{i}] = {b}: expected a value in [0, 1)"));
            }
        }
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            return Err(format!("optim.weight_decay = {}: expected a number >= 0", o.weight_decay));
        }
        if !(0.0..1.0).contains(&o.momentum) {
            return Err(format!("optim.momentum = {}: expected a value in [0, 1)", o.momentum));
        }
        at_least("optim.batch_size", o.batch_size, 2)?;
        at_least("optim.epochs", o.epochs, 1)?;
        let d = &self.data;
        at_least("data.context_length", d.context_length, 4)?;
        at_least("data.vocab_size", d.vocab_size, 300)?;
        // Past these a tokenizer or an embedding table aborts on allocation.
        if d.context_length > 8192 {
            return Err(format!("data.context_length = {}: expected at most 8192", d.context_length));
        }
        if d.vocab_size > 1 << 20 {
            return Err(format!("data.vocab_size = {}: expected at most {}", d.vocab_size, 1 << 20));
        }
        at_least("data.note_chars", d.note_chars, 1)?;
        if d.source != DataSource::Synthetic && d.root.is_none() {
            return Err("data.root: required when data.source is not \"synthetic\"".into());
        }
        if d.source == DataSource::Folder {
            d.folder.validate().map_err(|e| e.to_string())?;
        }
        at_least("data.pipeline.prefetch", d.pipeline.prefetch, 1)?;
        if d.source == DataSource::Fairvision && !self.oct_pairing() {
            return Err("data.source = \"fairvision\": only the multimodal methods with multimodal.pairing = \"oct\" read FairVision".into());
        }
        for (i, n) in d.synthetic.sizes.iter().enumerate() {
            at_least(&format!("data.synthetic.sizes[{i}]"), *n, 2)?;
        }
        d.synthetic.validate().map_err(|e| format!("data.synthetic.{}", e))?;
        // Checkpoint files are read when the model is built; here only the preset's sizes.
        self.model.validate(d.vocab_size, d.context_length)?;
        let e = &self.eval;
        if !(0.0..=1.0).contains(&e.threshold) {
            return Err(format!("eval.threshold = {}: expected a value in [0, 1]", e.threshold));
        }
        at_least("eval.batch_size", e.batch_size, 1)?;
        Ok(())
    }
}

/// `Ok` when `v` is a finite number above 0, else an error naming `key`.
pub(crate) fn positive(key: &str, v: f64) -> std::result::Result<(), String> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(format!("{key} = {v}: expected a number > 0"))
    }
}

/// `Ok` when `v` is a finite number of at least 0, else an error naming `key`.
pub(crate) fn non_negative(key: &str, v: f64) -> std::result::Result<(), String> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(format!("{key} = {v}: expected a number >= 0"))
    }
}

/// `Ok` when `v >= min`, else an error naming `key`.
pub(crate) fn at_least(key: &str, v: usize, min: usize) -> std::result::Result<(), String> {
    if v >= min {
        Ok(())
    } else {
        Err(format!("{key} = {v}: expected at least {min}"))
    }
}

/// Keys that moved keep their old spelling's error, with the new key named.
fn moved_key_hint(message: &str) -> String {
    const MOVED: [(&str, &str); 1] = [("unknown field `tokenizer`", "data.tokenizer moved to model.text.tokenizer")];
    match MOVED.iter().find(|(needle, _)| message.contains(needle)) {
        Some((_, hint)) => format!("{message}\n({hint})"),
        None => message.to_string(),
    }
}

/// Applies `key=value` overrides to a TOML document.
pub(crate) fn apply_overrides(text: &str, overrides: &[String]) -> std::result::Result<String, String> {
    let mut doc: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    for o in overrides {
        let (key, raw) = o.split_once('=').ok_or_else(|| format!("override '{o}': expected key=value"))?;
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}")).ok().and_then(|mut t| t.remove("v")).unwrap_or_else(|| toml::Value::String(raw.to_string()));
        let parts: Vec<&str> = key.trim().split('.').collect();
        let (last, path) = parts.split_last().ok_or_else(|| format!("override '{o}': empty key"))?;
        let mut table = &mut doc;
        for p in path {
            let entry = table.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = entry.as_table_mut().ok_or_else(|| format!("override '{o}': '{p}' is not a table"))?;
        }
        table.insert(last.to_string(), value);
    }
    toml::to_string(&doc).map_err(|e| e.to_string())
}
